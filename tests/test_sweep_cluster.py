"""A real Dask cluster on 127.0.0.1: ``dask scheduler`` and two ``dask worker`` processes.

``pimgpt sweep --scheduler`` runs a sweep through them (both workers take points); the driver is
killed (SIGKILL) mid-sweep and the re-run resumes from the consistent files it left. Every
process is started here, in its own session, and stopped here.
"""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import time

import pytest

SPEC = """\
name: cluster
base: pimgpt-gddr6-8ch
models: [gpt2-small]
contexts: [32]
axes:
  dram.channels: [4, 8]
  asic.vector_lanes: [16, 32, 64]
  dram.act_overlap: [false, true]
"""
POINTS = 12
#: Seconds any step may take on a loaded 2-core machine before the test gives up.
STEP_TIMEOUT_S = 90


def _stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=15)


@pytest.fixture
def cluster(tmp_path):
    """``(address, env)`` of a scheduler with two single-threaded worker processes."""
    env = {**os.environ, "PIMGPT_CACHE_DIR": str(tmp_path / "cache")}
    sched_file = tmp_path / "scheduler.json"
    dask = [sys.executable, "-m", "dask"]
    procs = []

    def start(*args, log):
        fh = open(tmp_path / log, "w")
        procs.append(subprocess.Popen([*dask, *args], env=env, stdout=fh, stderr=subprocess.STDOUT,
                                      cwd=tmp_path, start_new_session=True))
        fh.close()

    try:
        # idle/death timeouts: the processes also end on their own if this test dies
        start("scheduler", "--host", "127.0.0.1", "--port", "0", "--no-dashboard",
              "--scheduler-file", str(sched_file), "--idle-timeout", "300", log="scheduler.log")
        for i in range(2):
            start("worker", "--scheduler-file", str(sched_file), "--host", "127.0.0.1",
                  "--nthreads", "1", "--nworkers", "1", "--no-dashboard", "--name", f"w{i}",
                  "--local-directory", str(tmp_path / f"w{i}"), "--death-timeout", "60",
                  log=f"worker{i}.log")
        deadline = time.monotonic() + STEP_TIMEOUT_S
        address = None
        while address is None:
            assert time.monotonic() < deadline, (tmp_path / "scheduler.log").read_text()
            assert procs[0].poll() is None, (tmp_path / "scheduler.log").read_text()
            try:  # the scheduler writes the file in place: retry until it parses
                address = json.loads(sched_file.read_text())["address"]
            except (FileNotFoundError, ValueError, KeyError):
                time.sleep(0.1)
        assert address.startswith("tcp://127.0.0.1:")
        yield address, env
    finally:
        for proc in reversed(procs):
            _stop(proc)


def _sweep(spec, out, address, env):
    return [sys.executable, "-m", "pimgpt.cli", "sweep", str(spec), "-o", str(out),
            "--scheduler", address, "--workers", "2"]


def _lines(path):
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return []
    return data[: data.rfind(b"\n") + 1].splitlines()


def test_sweep_on_a_real_cluster_killed_and_resumed(cluster, tmp_path):
    address, env = cluster
    spec = tmp_path / "spec.yaml"
    spec.write_text(SPEC)
    out = tmp_path / "out"
    results = out / "results.jsonl"
    # 1. start, and kill the driver as soon as the first points are recorded
    log = open(tmp_path / "driver1.log", "w")
    driver = subprocess.Popen(_sweep(spec, out, address, env), env=env, stdout=log,
                              stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline = time.monotonic() + STEP_TIMEOUT_S
        while len(_lines(results)) < 1:
            assert driver.poll() is None, (tmp_path / "driver1.log").read_text()
            assert time.monotonic() < deadline, "no point finished in time"
            time.sleep(0.02)
        os.killpg(driver.pid, signal.SIGKILL)
        driver.wait(timeout=30)
    finally:
        _stop(driver)
        log.close()
    done = [json.loads(line) for line in _lines(results)]  # every complete line parses
    assert 1 <= len(done) < POINTS
    # 2. the same command resumes: the recorded points are skipped, the rest computed
    run = subprocess.run(_sweep(spec, out, address, env), env=env, capture_output=True,
                         text=True, timeout=STEP_TIMEOUT_S * 2)
    assert run.returncode == 0, run.stderr
    skipped = int(run.stdout.split(" already done")[0].rsplit(" ", 1)[1])
    assert skipped >= len([d for d in done if d["status"] == "ok"])
    assert f"{POINTS} points: {skipped} already done, computed {POINTS - skipped} " in run.stdout
    with open(out / "results.csv") as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == POINTS and len({r["id"] for r in rows}) == POINTS
    assert {r["status"] for r in rows} == {"ok"}
    assert all(float(r["latency_ns_per_token"]) > 0 for r in rows)
    # both worker processes took points (their addresses are on 127.0.0.1)
    workers = {r["worker"] for r in rows}
    assert len(workers) == 2 and all(w.startswith("tcp://127.0.0.1:") for w in workers)
    # the workers kept the programs in their own cache directory
    assert list((tmp_path / "cache" / "programs").rglob("*.bin"))
    assert (out / "pareto.png").is_file() and (out / "summary.md").is_file()

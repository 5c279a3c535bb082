"""``pimgpt sweep`` end to end on an in-process Dask cluster: outputs, sharing, resume, failures.

The real multi-process cluster (``dask scheduler`` + two ``dask worker``) is in
``tests/test_sweep_cluster.py``.
"""

from __future__ import annotations

import csv
import json
from contextlib import contextmanager

import pytest

from pimgpt import cli
from pimgpt.apps import sweep_run
from pimgpt.apps.sweep_report import flatten, pareto_front
from pimgpt.apps.sweep_run import ResultStore, run_sweep
from pimgpt.apps.sweep_spec import parse_spec
from pimgpt.core.config import hw_from_dict
from pimgpt.sim.perf.summary import simulate_model
from pimgpt.sw.models import get_model

SPEC = {
    "name": "t",
    "base": "tiny-rtl",
    "models": ["tiny"],
    "contexts": [16, 100],  # 100 is beyond tiny's 64 positions: invalid points
    "axes": {"dram.channels": [1, 2], "dram.act_overlap": [False, True],
             "energy.act_pj": [500.0, 900.0]},
}


@pytest.fixture(scope="module")
def client():
    from dask.distributed import Client, LocalCluster

    cluster = LocalCluster(n_workers=1, threads_per_worker=2, processes=False,
                           dashboard_address=":0")
    c = Client(cluster)
    yield c
    c.close()
    cluster.close()


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("PIMGPT_CACHE_DIR", str(tmp_path / "cache"))
    return tmp_path / "cache"


def _rows(out):
    with open(out / "results.csv") as fh:
        return list(csv.DictReader(fh))


def test_sweep_outputs_and_shared_work(client, cache, tmp_path):
    spec = parse_spec(SPEC)
    out = tmp_path / "o"
    o = run_sweep(spec, out, client, progress=False)
    assert o.points == 16 and o.skipped == 0
    assert dict(o.computed) == {"ok": 8, "invalid": 8}
    # programs: channels x contexts (act_overlap and energy do not change the program);
    # simulations: channels x act_overlap at context 16 (energy values share one)
    assert o.programs == 4 and o.simulations == 4 and o.program_hits == 0
    assert o.cpu_s > 0 and 0 < o.compute_s <= o.wall_s
    rows = _rows(out)
    assert len(rows) == 16 and len({r["id"] for r in rows}) == 16
    ok = [r for r in rows if r["status"] == "ok"]
    assert {r["context"] for r in ok} == {"16"}
    assert all("out of range for tiny" in r["error"] for r in rows if r["status"] == "invalid")
    for col in ("dram.channels", "dram.act_overlap", "energy.act_pj", "latency_ns_per_token",
                "energy_nj_per_token", "whole.cycles", "decode.energy_by_component_nj.activate",
                "breakdown_by_class_ns.asic", "sim_s", "program_cache", "worker"):
        assert col in rows[0], col
    # every statistic is the one `pimgpt run --backend perf --stats` writes for that point
    row = next(r for r in ok if r["dram.channels"] == "2" and r["dram.act_overlap"] == "True"
               and r["energy.act_pj"] == "900.0")
    hw = hw_from_dict(next(p for p in spec.points() if p.id == row["id"]).hw)
    _, _, stats = simulate_model(get_model("tiny"), hw, context=16)
    assert float(row["latency_ns_per_token"]) == stats["latency_ns_per_token"]
    assert float(row["energy_nj_per_token"]) == stats["energy_nj_per_token"]
    assert int(row["whole.cycles"]) == stats["whole"]["cycles"]
    rec = ResultStore(out / "results.jsonl").load()[row["id"]]["stats"]
    mine, ref = flatten(rec), flatten(json.loads(json.dumps(stats, default=float)))
    assert mine.keys() == ref.keys()  # every key of `pimgpt run --backend perf --stats`
    assert rec["attention_plan"] == stats["attention_plan"]  # kept with the cached program
    assert {k: v for k, v in mine.items() if "wall" not in k} == {
        k: v for k, v in ref.items() if "wall" not in k}
    # outputs
    names = sorted(p.name for p in out.iterdir())
    assert names == sorted([".lock", "results.jsonl", "results.csv", "summary.md",
                            "pareto.png", "latency_vs_dram_channels.png",
                            "latency_vs_dram_act_overlap.png", "latency_vs_energy_act_pj.png"])
    for png in out.glob("*.png"):
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    summary = (out / "summary.md").read_text()
    assert "ok 8, invalid 8, error 0" in summary and "### tiny, context 16" in summary
    # a second sweep in another directory takes every program from the cache
    o2 = run_sweep(spec, tmp_path / "o2", client, progress=False)
    assert o2.program_hits == 2 and o2.programs == 4


def test_resume_skips_done_points_and_survives_a_torn_line(client, cache, tmp_path):
    spec = parse_spec(SPEC)
    out = tmp_path / "o"
    run_sweep(spec, out, client, progress=False)
    again = run_sweep(spec, out, client, progress=False)
    assert again.skipped == 16 and sum(again.computed.values()) == 0
    # a sweep killed while writing: the last record torn in the middle, one record missing
    lines = (out / "results.jsonl").read_bytes().splitlines(keepends=True)
    victim = json.loads(lines[-1])
    (out / "results.jsonl").write_bytes(b"".join(lines[:-1]) + lines[-1][:25])
    resumed = run_sweep(spec, out, client, progress=False)
    assert resumed.skipped == 15 and sum(resumed.computed.values()) == 1
    records = ResultStore(out / "results.jsonl").load()
    assert len(records) == 16 and records[victim["id"]]["status"] == victim["status"]
    text = (out / "results.jsonl").read_text()
    assert text.endswith("\n") and all(json.loads(line) for line in text.splitlines())
    assert len(_rows(out)) == 16


def test_a_failing_point_is_recorded_and_retried(client, cache, tmp_path, monkeypatch):
    from pimgpt.sim.perf.engine import PerfEngine

    real_run = PerfEngine.run

    def flaky(self, program, *a, **k):
        if self.hw.dram.channels == 1:
            raise RuntimeError("simulated crash")
        return real_run(self, program, *a, **k)

    monkeypatch.setattr(PerfEngine, "run", flaky)
    spec = parse_spec({**SPEC, "contexts": [16]})
    out = tmp_path / "o"
    o = run_sweep(spec, out, client, progress=False)
    assert dict(o.computed) == {"ok": 4, "error": 4}
    errors = [r for r in _rows(out) if r["status"] == "error"]
    assert len(errors) == 4 and all(r["dram.channels"] == "1" for r in errors)
    assert all(r["error"].startswith("RuntimeError: simulated crash at ") for r in errors)
    assert "## Failed points" in (out / "summary.md").read_text()
    monkeypatch.setattr(PerfEngine, "run", real_run)
    retried = run_sweep(spec, out, client, progress=False)
    assert retried.skipped == 4 and dict(retried.computed) == {"ok": 4}
    assert {r["status"] for r in _rows(out)} == {"ok"}


def test_no_cache_compiles_every_point(client, cache, tmp_path):
    spec = parse_spec({**SPEC, "contexts": [16]})
    o = run_sweep(spec, tmp_path / "o", client, use_cache=False, progress=False)
    assert o.programs == 8 and o.simulations == 8 and o.program_hits == 0
    assert not cache.exists()
    assert {r["program_cache"] for r in _rows(tmp_path / "o")} == {"off"}


def test_pareto_front():
    pts = [(3, 1), (1, 3), (2, 2), (2, 3), (3, 3), (1, 4), (4, 0.5)]
    assert [pts[i] for i in pareto_front(pts)] == [(1, 3), (2, 2), (3, 1), (4, 0.5)]
    assert pareto_front([]) == []


def _cli(capsys, *argv):
    rc = cli.main(["sweep", *argv])
    cap = capsys.readouterr()
    return rc, cap.out, cap.err


def test_cli_runs_quietly_without_a_terminal(capsys, cache, tmp_path, monkeypatch):
    spec = tmp_path / "s.yaml"
    spec.write_text("base: tiny-rtl\nmodels: [tiny]\ncontexts: [8]\n"
                    "axes: {dram.act_overlap: [false, true]}\n")
    monkeypatch.chdir(tmp_path)  # a relative --cache-dir is the driver's, made absolute
    rc, out, err = _cli(capsys, str(spec), "-o", str(tmp_path / "o"), "--workers", "1",
                        "--cache-dir", "progs")
    assert rc == 0, err
    assert "2 points: 0 already done, computed 2 (ok 2, invalid 0, error 0)" in out
    assert "%|" not in err  # no progress bar when stderr is not a terminal
    assert (tmp_path / "o" / "pareto.png").is_file()
    assert len(list((tmp_path / "progs" / "programs").rglob("*.bin"))) == 1


@pytest.mark.parametrize("argv,needle", [
    (["missing.yaml", "-o", "{o}"], "missing.yaml: no such file"),
    (["{spec}", "-o", "{file}"], "exists and is not a folder"),
    (["{spec}", "-o", "{o}", "--workers", "0"], "--workers 0 must be at least 1"),
    (["{spec}", "-o", "{o}", "--workers", "1000000"],
     "--workers 1000000: an embedded cluster runs at most"),
    (["{bad}", "-o", "{o}"], "axes.dram.chanels"),
    (["{spec}", "-o", "{o}", "--cache-dir", "{file}"], "--cache-dir: "),
    (["{spec}", "-o", "{o}", "--cache-dir", ""], "--cache-dir is an empty path"),
])
def test_cli_errors_are_one_line(capsys, tmp_path, argv, needle):
    (tmp_path / "s.yaml").write_text("base: tiny-rtl\nmodels: [tiny]\n")
    (tmp_path / "bad.yaml").write_text("models: [tiny]\naxes: {dram.chanels: [1, 2]}\n")
    (tmp_path / "f").write_text("x")
    fill = {"o": str(tmp_path / "o"), "spec": str(tmp_path / "s.yaml"),
            "bad": str(tmp_path / "bad.yaml"), "file": str(tmp_path / "f")}
    rc, out, err = _cli(capsys, *[a.format(**fill) for a in argv])
    assert rc == 1 and needle in err and len(err.strip().splitlines()) == 1, err
    assert not (tmp_path / "o").exists()


def test_cli_unreachable_scheduler(capsys, tmp_path, monkeypatch):
    import socket

    monkeypatch.setattr(sweep_run, "CONNECT_TIMEOUT_S", 2)
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    (tmp_path / "s.yaml").write_text("base: tiny-rtl\nmodels: [tiny]\n")
    rc, out, err = _cli(capsys, str(tmp_path / "s.yaml"), "-o", str(tmp_path / "o"),
                        "--scheduler", f"tcp://127.0.0.1:{port}")
    assert rc == 1 and "cannot reach the Dask scheduler" in err, err
    assert len(err.strip().splitlines()) == 1


@contextmanager
def _sweep_under_way(tmp_path, **popen):
    """A sweep of 160 points on its embedded cluster (real worker processes) in a new session,
    yielded once its first point is recorded; killed at the end if still running."""
    import os
    import signal
    import subprocess
    import sys
    import time

    spec = tmp_path / "s.yaml"
    spec.write_text("base: tiny-rtl\nmodels: [tiny]\ncontexts: [8, 16, 32, 64]\naxes: "  # 160
                    "{dram.channels: [1, 2], dram.act_overlap: [false, true], "
                    "energy.act_pj: [500, 550, 600, 650, 700, 750, 800, 850, 900, 950]}\n")
    out = tmp_path / "o"
    env = {**os.environ, "PIMGPT_CACHE_DIR": str(tmp_path / "cache")}
    proc = subprocess.Popen([sys.executable, "-m", "pimgpt.cli", "sweep", str(spec), "-o",
                             str(out), "--workers", "1"], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, start_new_session=True, **popen)
    try:
        deadline = time.monotonic() + 120
        while not ((out / "results.jsonl").is_file() and (out / "results.jsonl").read_text()):
            assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()
            time.sleep(0.2)
        yield proc
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def test_ctrl_c_on_a_local_cluster_is_one_line(tmp_path):
    """Ctrl-C (SIGINT to the process group) during a sweep on its embedded cluster (real worker
    processes): the driver says so in one line and exits 130; the workers, which ignore it,
    print nothing (they printed a traceback each)."""
    import os
    import signal
    import time

    # as at a terminal, whatever this test's runner ignores
    with _sweep_under_way(tmp_path, preexec_fn=lambda: signal.signal(signal.SIGINT,
                                                                    signal.SIG_DFL)) as proc:
        time.sleep(3.0)  # the worker in the middle of its points
        os.killpg(proc.pid, signal.SIGINT)  # Ctrl-C: the whole process group
        _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    assert err.strip().splitlines() == ["pimgpt sweep: interrupted"], err


def _descendants(pid: int) -> set[int]:
    """Every process below ``pid`` (Linux /proc)."""
    from pathlib import Path

    out, todo = set(), [pid]
    while todo:
        p = todo.pop()
        for task in Path(f"/proc/{p}/task").glob("*"):
            try:
                kids = [int(k) for k in (task / "children").read_text().split()]
            except OSError:
                continue
            out.update(kids)
            todo += kids
    return out


def test_sigterm_on_a_local_cluster_cleans_up(tmp_path):
    """`kill` (SIGTERM to the driver alone) during a sweep on its embedded cluster: one line,
    exit 143, and the cluster's worker processes end with it (Python's default SIGTERM ended the
    driver at once, leaving them and its temporary files)."""
    import signal
    import time
    from pathlib import Path

    if not Path("/proc/self/task").is_dir():
        pytest.skip("needs Linux /proc to find the worker processes")
    with _sweep_under_way(tmp_path) as proc:
        workers = _descendants(proc.pid)
        assert workers  # the embedded cluster's processes
        proc.send_signal(signal.SIGTERM)  # the driver alone, as `kill PID` does
        _, err = proc.communicate(timeout=120)
        deadline = time.monotonic() + 30
        while (alive := {p for p in workers if Path(f"/proc/{p}").exists()
                         and "zombie" not in Path(f"/proc/{p}/status").read_text()}):
            assert time.monotonic() < deadline, f"worker processes left: {alive}"
            time.sleep(0.2)
    assert proc.returncode == 143, err
    assert err.strip().splitlines() == ["pimgpt sweep: terminated"], err


def test_cli_refuses_an_unwritable_program_cache_before_the_cluster(capsys, tmp_path,
                                                                     monkeypatch):
    """With the embedded cluster the workers use this process's cache folder: one that cannot
    be made is one line before any point (it had made every point invalid, for good)."""
    (tmp_path / "s.yaml").write_text("base: tiny-rtl\nmodels: [tiny]\ncontexts: [8]\n")
    (tmp_path / "f").write_text("x")
    monkeypatch.setenv("PIMGPT_CACHE_DIR", str(tmp_path / "f" / "cache"))
    rc, out, err = _cli(capsys, str(tmp_path / "s.yaml"), "-o", str(tmp_path / "o"),
                        "--workers", "1")
    assert rc == 1 and len(err.strip().splitlines()) == 1, err
    assert f"program cache: {tmp_path / 'f'} is not a folder; set $PIMGPT_CACHE_DIR or pass " \
        "--cache-dir to a writable folder" in err
    assert not (tmp_path / "o").exists()


def test_an_unwritable_cache_on_a_worker_is_an_error_retried(client, tmp_path):
    """A worker whose program cache cannot be written records its points as ``error`` (its
    environment, not the points' input), and a resume computes them again."""
    spec = parse_spec({**SPEC, "contexts": [16], "axes": {"dram.act_overlap": [False, True]}})
    (tmp_path / "f").write_text("x")
    out = tmp_path / "o"
    o = run_sweep(spec, out, client, cache_dir=str(tmp_path / "f"), progress=False)
    assert dict(o.computed) == {"error": 2}
    assert all("program cache" in r["error"] for r in _rows(out))
    again = run_sweep(spec, out, client, cache_dir=str(tmp_path / "c"), progress=False)
    assert again.skipped == 0 and dict(again.computed) == {"ok": 2}

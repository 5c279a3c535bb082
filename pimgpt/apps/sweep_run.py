"""``pimgpt sweep SPEC.yaml -o DIR``: a design-space sweep on a Dask cluster, resumable.

Without ``--scheduler`` an embedded ``LocalCluster`` is started (one single-threaded worker
process per core, or ``--workers N``); with ``--scheduler tcp://HOST:PORT`` the sweep runs on an
existing cluster (``dask scheduler`` / ``dask worker``, see docs/sweep.md).

Robustness: each finished point is appended to ``DIR/results.jsonl`` as one JSON line (a single
``write`` then ``fsync``); a sweep killed at any moment leaves at worst a torn last line, which
the next run drops. Re-running the same spec skips every point already recorded as ``ok`` or
``invalid`` (failed points, ``error``, are retried). ``results.csv`` is rebuilt from the records
(atomically) every few seconds and at the end; ``summary.md`` and the plots at the end.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import signal
import threading
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from pimgpt.apps.sweep_spec import SweepSpec, load_spec
from pimgpt.core.config import hw_from_dict
from pimgpt.core.errors import PimgptError
from pimgpt.core.fileio import OutputError, atomic_write_text, check_directory
from pimgpt.core.progress import progress as progress_bar
from pimgpt.sw.program_cache import program_key

#: Seconds to wait for a scheduler to answer (``--scheduler``) or for ``--workers`` to join it.
CONNECT_TIMEOUT_S = 30
#: Seconds between rebuilds of results.csv while a sweep runs.
CSV_EVERY_S = 10.0
#: Record statuses that a re-run keeps (``error`` points are computed again).
FINAL = ("ok", "invalid")
RESULTS = "results.jsonl"


class SweepError(PimgptError):
    """The sweep cannot run (output directory, cluster connection)."""


def _json_default(value):
    """numpy scalars and arrays in the statistics become plain JSON numbers and lists."""
    if hasattr(value, "item") and getattr(value, "ndim", 0) == 0:
        return value.item()
    if hasattr(value, "tolist"):
        return value.tolist()
    return repr(value)


class ResultStore:
    """Append-only JSON-lines file of point records; the last record of an id wins."""

    def __init__(self, path: Path):
        self.path = path
        self.records: dict[str, dict] = {}
        self._fd: int | None = None

    def load(self) -> dict[str, dict]:
        """Read the records; a torn last line (a killed sweep) is cut off the file."""
        try:
            data = self.path.read_bytes()
        except FileNotFoundError:
            return self.records
        except OSError as exc:
            raise SweepError(f"cannot read {self.path} ({exc.strerror})") from None
        end = data.rfind(b"\n") + 1
        if end < len(data):
            with open(self.path, "r+b") as fh:
                fh.truncate(end)
        for line in data[:end].splitlines():
            try:
                rec = json.loads(line)
            except ValueError:
                continue  # a damaged line: that point is simply computed again
            if isinstance(rec, dict) and isinstance(rec.get("id"), str):
                self.records[rec["id"]] = rec
        return self.records

    def append(self, records: list[dict]) -> None:
        """Append records durably: one ``write`` of whole lines, then ``fsync``."""
        if not records:
            return
        if self._fd is None:
            self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o666)
        data = "".join(json.dumps(r, default=_json_default, separators=(",", ":")) + "\n"
                       for r in records).encode()
        os.write(self._fd, data)
        os.fsync(self._fd)
        for r in records:
            self.records[r["id"]] = r

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


@dataclass
class SweepOutcome:
    """What a run did: point counts by status, work skipped or shared, wall time."""

    points: int = 0
    skipped: int = 0
    computed: Counter = field(default_factory=Counter)
    programs: int = 0
    program_hits: int = 0
    simulations: int = 0
    #: CPU seconds of every compile and simulation task of the run (the work, whatever the load)
    cpu_s: float = 0.0
    #: seconds from the first task submitted to the last point recorded (no report writing)
    compute_s: float = 0.0
    wall_s: float = 0.0
    outputs: list = field(default_factory=list)


def default_workers() -> int:
    """One worker per core this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


#: Most worker processes of an embedded cluster per core: the tasks are CPU-bound, and each
#: worker is a Python process of its own (a million would exhaust the memory, not finish sooner).
MAX_LOCAL_WORKERS_PER_CORE = 4


def check_workers(workers: int | None, scheduler: str | None = None) -> None:
    """Refuse a ``--workers`` count below 1 (None: one per core), or above
    :data:`MAX_LOCAL_WORKERS_PER_CORE` per core for an embedded cluster (no ``scheduler``), in
    one line that says the fix."""
    if workers is not None and (isinstance(workers, bool) or workers < 1):
        raise SweepError(f"--workers {workers} must be at least 1; give a number of worker "
                         "processes, or drop it for one per core")
    most = MAX_LOCAL_WORKERS_PER_CORE * default_workers()
    if workers is not None and not scheduler and workers > most:
        raise SweepError(
            f"--workers {workers}: an embedded cluster runs at most {most} worker processes "
            f"here ({MAX_LOCAL_WORKERS_PER_CORE} per core); give fewer, or start workers with "
            "`dask worker ADDR` on more machines and pass --scheduler ADDR")


def _main_thread() -> bool:
    """Whether this is the main thread (the only one that may set signal handlers)."""
    return threading.current_thread() is threading.main_thread()


@contextlib.contextmanager
def dask_client(workers: int | None = None, scheduler: str | None = None):
    """A Dask ``Client``: an embedded LocalCluster, or a connection to ``scheduler``."""
    from dask.distributed import Client, LocalCluster

    check_workers(workers, scheduler)
    cluster = None
    if scheduler:
        try:
            client = Client(scheduler, timeout=CONNECT_TIMEOUT_S)
        except (OSError, TimeoutError, ValueError) as exc:
            raise SweepError(
                f"cannot reach the Dask scheduler at {scheduler} ({type(exc).__name__}); start "
                "one with `dask scheduler` or drop --scheduler to use a local cluster"
            ) from None
        try:
            client.wait_for_workers(workers or 1, timeout=CONNECT_TIMEOUT_S)
        except (TimeoutError, OSError):
            client.close()
            raise SweepError(
                f"the scheduler at {scheduler} has fewer than {workers or 1} workers after "
                f"{CONNECT_TIMEOUT_S} s; start them with `dask worker {scheduler}`"
            ) from None
    else:
        # The worker processes ignore Ctrl-C (they inherit SIGINT ignored, so Python installs
        # no KeyboardInterrupt handler in them): this process alone reports the interrupt in one
        # line and closes the cluster, instead of every worker printing its traceback.
        previous = signal.signal(signal.SIGINT, signal.SIG_IGN) if _main_thread() else None
        try:
            cluster = LocalCluster(n_workers=workers or default_workers(), threads_per_worker=1,
                                   processes=True, dashboard_address=":0",
                                   worker_dashboard_address=None, silence_logs=logging.ERROR)
        finally:
            if previous is not None:
                signal.signal(signal.SIGINT, previous)
        client = Client(cluster)
    try:
        yield client
    finally:
        client.close()
        if cluster is not None:
            cluster.close()


def _base_record(p) -> dict:
    return {"id": p.id, "model": p.model, "context": p.context, "params": p.params}


def _point_payload(p) -> dict:
    return {**_base_record(p), "hw": p.hw}


def _plan(spec: SweepSpec, todo: list, use_cache: bool):
    """Group the points to compute by program and by simulation; invalid configs directly."""
    from pimgpt.apps.sweep_eval import sim_key

    groups: dict[str, dict[str, list]] = {}
    invalid = []
    for p in todo:
        try:
            hw = hw_from_dict(p.hw, where="hardware")
        except PimgptError as exc:
            invalid.append({**_base_record(p), "status": "invalid",
                            "error": " ".join(str(exc).split())})
            continue
        if use_cache:
            pkey = program_key(spec.model_cfgs[p.model], hw, p.context)
            skey = sim_key(pkey, p.hw)
        else:  # the baseline: every point compiles and simulates on its own
            pkey = skey = p.id
        groups.setdefault(pkey, {}).setdefault(skey, []).append(p)
    return groups, invalid


def run_sweep(spec: SweepSpec, out_dir: str | Path, client, *, cache_dir: str | None = None,
              use_cache: bool = True, progress: bool | None = None) -> SweepOutcome:
    """Run (or resume) a sweep on a Dask ``client``; write results.jsonl/csv, summary, plots.

    Parameters
    ----------
    spec : SweepSpec
    out_dir : path
        Output directory (created).
    client : dask.distributed.Client
    cache_dir : str, optional
        Program cache directory on the workers (default: each worker's user cache directory).
    use_cache : bool
        ``False`` compiles and simulates every point on its own (the baseline of the bench).
    progress : bool, optional
        ``False``: no progress bar; otherwise one on stderr when stderr is a terminal
        (:mod:`pimgpt.core.progress`).

    Returns
    -------
    SweepOutcome
    """
    from dask.distributed import as_completed

    from pimgpt.apps import sweep_report

    t0 = time.perf_counter()
    out = _prepare_dir(out_dir)
    store = ResultStore(out / RESULTS)
    with _locked(out):
        done = store.load()
        if spec.text:
            atomic_write_text(out / "spec.yaml", spec.text)
        points = spec.points()
        todo = [p for p in points if done.get(p.id, {}).get("status") not in FINAL]
        outcome = SweepOutcome(points=len(points), skipped=len(points) - len(todo))
        groups, invalid = _plan(spec, todo, use_cache)
        outcome.programs = len(groups)
        store.append(invalid)
        outcome.computed.update(r["status"] for r in invalid)
        t_submit = time.perf_counter()
        futures, pending = _submit(client, spec, groups, cache_dir, use_cache)
        last_csv = time.perf_counter()
        seen_groups: set = set()
        try:
            with progress_bar(len(todo), f"sweep {spec.name}", unit="point",
                              enabled=progress is not False) as bar:
                for fut in as_completed(futures):
                    records = _records_of(fut, pending)
                    store.append(records)
                    _count(outcome, records, pending[fut.key][0], seen_groups)
                    fut.release()
                    bar.update(len(records))
                    if time.perf_counter() - last_csv > CSV_EVERY_S:
                        sweep_report.write_csv(out, spec, points, store.records)
                        last_csv = time.perf_counter()
            outcome.compute_s = time.perf_counter() - t_submit
        finally:
            store.close()
            sweep_report.write_csv(out, spec, points, store.records)
        outcome.wall_s = time.perf_counter() - t0
        outcome.outputs = sweep_report.write_reports(out, spec, points, store.records, outcome)
    return outcome


def _submit(client, spec: SweepSpec, groups: dict, cache_dir, use_cache: bool):
    """One compile task per program, one simulation task per simulation group depending on it.

    Returns the simulation futures and, by task key, the records to write if a task is lost.
    """
    from pimgpt.apps.sweep_eval import compile_task, simulate_task

    run = uuid.uuid4().hex[:8]  # task keys are unique per run on a shared scheduler
    futures, pending = [], {}
    for gi, sims in enumerate(groups.values()):
        first = next(iter(sims.values()))[0]
        cfut = client.submit(compile_task, spec.model_cfgs[first.model], first.context,
                             first.hw, cache_dir, use_cache, key=f"compile-{run}-{gi}")
        for si, pts in enumerate(sims.values()):
            fut = client.submit(simulate_task, [_point_payload(p) for p in pts], cfut,
                                key=f"simulate-{run}-{gi}-{si}")
            pending[fut.key] = (gi, [_base_record(p) for p in pts])
            futures.append(fut)
        del cfut  # the cluster frees each program once its simulations are done
    return futures, pending


def _records_of(fut, pending: dict) -> list[dict]:
    """The records of a finished simulation task; a lost task (a worker died) becomes errors."""
    if fut.status == "finished":
        return fut.result()
    exc = fut.exception()
    msg = " ".join(f"{type(exc).__name__}: {exc}".split())
    return [{**p, "status": "error", "error": msg} for p in pending[fut.key][1]]


def _count(outcome: SweepOutcome, records: list[dict], group: int, seen: set) -> None:
    """Add one simulation task's records to the outcome (``group``: its compile task)."""
    outcome.computed.update(r["status"] for r in records)
    ok = [r for r in records if r["status"] == "ok"]
    if not ok:
        return
    outcome.simulations += 1
    outcome.cpu_s += ok[0]["sim_cpu_s"]
    if group not in seen:
        seen.add(group)
        outcome.cpu_s += ok[0]["compile_cpu_s"]
        outcome.program_hits += ok[0]["program_cache"] == "hit"


def _prepare_dir(out_dir) -> Path:
    out = check_directory("-o", out_dir)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise SweepError(f"-o {out}: cannot create it ({exc.strerror}); choose another path") \
            from None
    return out


@contextlib.contextmanager
def _locked(out: Path):
    """One sweep per directory at a time (an flock, released even when the process dies)."""
    try:
        import fcntl
    except ImportError:  # not POSIX: no lock
        yield
        return
    fh = open(out / ".lock", "a")
    try:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            raise SweepError(
                f"-o {out}: another pimgpt sweep is writing there; wait for it or use another "
                "directory"
            ) from None
        yield
    finally:
        fh.close()


def cli_sweep(args) -> int:
    """Entry point of ``pimgpt sweep``."""
    spec = load_spec(args.spec)
    check_workers(args.workers, args.scheduler)
    check_directory("-o", args.output)  # before a cluster is started for nothing
    cache_dir = args.cache_dir
    if cache_dir is not None:  # workers of a local cluster may run in another directory
        cache_dir = str(check_directory("--cache-dir", cache_dir).resolve())
    use_cache = not getattr(args, "no_cache", False)
    if use_cache and cache_dir is None and not args.scheduler:
        # The embedded cluster's workers use this process's cache folder: one that cannot be
        # written is refused now, not once per point.
        from pimgpt.core.fileio import CACHE_ENV
        from pimgpt.sw.program_cache import ProgramCache

        try:
            check_directory("program cache", ProgramCache().dir)
        except OutputError as exc:
            problem = str(exc).split("; ")[0]  # the fix is this one, not "another path"
            raise SweepError(f"{problem}; set ${CACHE_ENV} or pass --cache-dir to a writable "
                             "folder") from None
    with dask_client(args.workers, args.scheduler) as client:
        nworkers = len(client.scheduler_info()["workers"])
        where = args.scheduler or "a local cluster"
        n = len(spec.points())
        print(f"sweep {spec.name}: {n} point{'' if n == 1 else 's'} on {where} "
              f"({nworkers} worker{'' if nworkers == 1 else 's'}), output {args.output}",
              flush=True)
        o = run_sweep(spec, args.output, client, cache_dir=cache_dir, use_cache=use_cache)
    from pimgpt.apps.sweep_report import format_outcome

    print(format_outcome(o))
    return 0

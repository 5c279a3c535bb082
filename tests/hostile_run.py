"""Run ``pimgpt`` as a hostile user would, in a child process with a time and memory bound.

The child is forked from the test process (the modules are already imported, so a case costs
milliseconds, not an interpreter start), runs :func:`pimgpt.cli.main` with stdout and stderr on
files, in its own working directory and user cache, and is killed if it outlives ``timeout``. Its
address space is limited, so a runaway allocation fails instead of swapping the machine. A Python
traceback (any exception escaping ``main``) makes the child exit with :data:`CRASH`.
"""

from __future__ import annotations

import io
import os
import signal
import sys
import time
import traceback
from dataclasses import dataclass
from pathlib import Path

#: Exit status of a child whose ``main`` raised (a traceback is a failure of the test).
CRASH = 99
#: Exit status of a child killed for running past its time.
TIMEOUT = -signal.SIGKILL
#: Address space a case may add to the test process's (bytes).
EXTRA_MEMORY = 3 * 2**30


@dataclass
class Result:
    rc: int
    out: str
    err: str
    seconds: float

    @property
    def err_lines(self) -> list[str]:
        return self.err.splitlines()


def _vm_bytes() -> int:
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[0]) * os.sysconf("SC_PAGE_SIZE")


def _child(argv, cwd: Path, env: dict, setup, out_path: Path, err_path: Path) -> int:
    import resource

    os.chdir(cwd)
    if "PIMGPT_PROGRESS" not in env:
        os.environ.pop("PIMGPT_PROGRESS", None)
    os.environ.update(env)
    for fd, path in ((1, out_path), (2, err_path)):
        f = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        os.dup2(f, fd)
        os.close(f)
    # Fresh streams on the redirected descriptors: not terminals, so no progress bars.
    sys.stdout = io.TextIOWrapper(os.fdopen(1, "wb", closefd=False), encoding="utf-8",
                                  line_buffering=True)
    sys.stderr = io.TextIOWrapper(os.fdopen(2, "wb", closefd=False), encoding="utf-8",
                                  errors="backslashreplace", line_buffering=True)
    limit = _vm_bytes() + EXTRA_MEMORY
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    try:
        if setup is not None:
            setup()
        from pimgpt.cli import main

        rc = main([str(a) for a in argv])
    except SystemExit as exc:  # argparse
        rc = exc.code if isinstance(exc.code, int) else 2
    except BaseException:
        traceback.print_exc()
        rc = CRASH
    sys.stdout.flush()
    sys.stderr.flush()
    return rc


def run_cli(argv, cwd, env: dict | None = None, timeout: float = 60.0, setup=None) -> Result:
    """Run ``pimgpt ARGV`` in a forked child; ``setup()`` runs in the child first.

    ``PIMGPT_CACHE_DIR`` points into ``cwd`` (so the user's cache is never touched) and
    ``PIMGPT_PROGRESS`` is unset unless ``env`` sets it.
    """
    cwd = Path(cwd)
    cwd.mkdir(parents=True, exist_ok=True)
    logs = cwd.parent / f".{cwd.name}-logs"
    logs.mkdir(exist_ok=True)
    out_path, err_path = logs / "stdout", logs / "stderr"
    env = {"PIMGPT_CACHE_DIR": str(cwd / ".cache"), **(env or {})}
    sys.stdout.flush()
    sys.stderr.flush()
    t0 = time.perf_counter()
    pid = os.fork()
    if pid == 0:  # the child never returns into pytest
        rc = CRASH
        try:
            rc = _child(argv, cwd, env, setup, out_path, err_path)
        finally:
            os._exit(rc if isinstance(rc, int) and 0 <= rc < 256 else CRASH)
    deadline = t0 + timeout
    status = None
    while status is None:
        done, st = os.waitpid(pid, os.WNOHANG)
        if done:
            status = st
        elif time.perf_counter() > deadline:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
            status = None
            break
        else:
            time.sleep(0.005)
    seconds = time.perf_counter() - t0
    rc = TIMEOUT if status is None else os.waitstatus_to_exitcode(status)
    def read(path):  # newline="": keep carriage returns (progress bars) as written
        with open(path, encoding="utf-8", errors="replace", newline="") as fh:
            return fh.read()

    return Result(rc, read(out_path), read(err_path), seconds)


def snapshot(path) -> dict:
    """Every file and folder under ``path`` (relative name -> (size, mtime) or None)."""
    out = {}
    for root, dirs, files in os.walk(path):
        for d in dirs:
            out[os.path.relpath(os.path.join(root, d), path)] = None
        for f in files:
            p = os.path.join(root, f)
            st = os.stat(p)
            out[os.path.relpath(p, path)] = (st.st_size, st.st_mtime_ns)
    return out

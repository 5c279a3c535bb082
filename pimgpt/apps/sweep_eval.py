"""Worker side of ``pimgpt sweep``: compile a program once, simulate it once, summarise each point.

The driver (:mod:`pimgpt.apps.sweep_run`) groups the points of a sweep twice:

* by **program** (:func:`pimgpt.sw.program_cache.program_key`): one :func:`compile_task` per
  group, which takes the program from the on-disk cache or compiles and stores it;
* within a program group, by **simulation** (:func:`sim_key`): points that differ only in
  :data:`SUMMARY_ONLY_SECTIONS` (the energy figures) run the perf engine once; each point's
  statistics are then :func:`pimgpt.sim.perf.summary.summarize` of that run with its own hardware,
  the same function ``pimgpt run --backend perf --stats`` uses.

Both tasks run in Dask worker processes, never raise, and return plain data: a failing point
becomes a record with ``status`` ``invalid`` (a :class:`PimgptError`: the point's own input is
wrong, e.g. the model does not fit) or ``error`` (anything else, with the exception's type,
message and place; also a program cache the worker cannot write, which is its environment, not
the point: ``error`` points are computed again when the sweep is resumed).
"""

from __future__ import annotations

import hashlib
import json
import threading
import time
import traceback
from collections import OrderedDict

from pimgpt.core.config import hw_from_dict
from pimgpt.core.errors import PimgptError
from pimgpt.core.isa import decode, encode
from pimgpt.sw.models import ModelConfig
from pimgpt.sw.program_cache import (
    ProgramCache,
    ProgramCacheError,
    compile_decode_step_cached,
    program_key,
)

#: Top-level sections of the hardware config that only enter the statistics (energy), never the
#: simulated timing: points differing only there share one simulation.
#: ``tests/test_sweep_cache.py`` checks that the perf engine reads none of them.
SUMMARY_ONLY_SECTIONS = ("energy",)
#: Decoded programs a worker process keeps (points of one program often land on one worker).
PROGRAMS_KEPT = 4

_programs: OrderedDict = OrderedDict()
_programs_lock = threading.Lock()  # a worker may run several tasks in threads


def sim_key(pkey: str, hw: dict) -> str:
    """Key of a simulation: the program plus every hardware field that can change its timing."""
    timing_hw = {k: v for k, v in hw.items() if k not in SUMMARY_ONLY_SECTIONS}
    text = json.dumps({"program": pkey, "hw": timing_hw}, sort_keys=True, default=repr)
    return hashlib.sha256(text.encode()).hexdigest()


def _remember(key: str, program: list, tags: list) -> None:
    with _programs_lock:
        _programs[key] = (program, tags)
        _programs.move_to_end(key)
        while len(_programs) > PROGRAMS_KEPT:
            _programs.popitem(last=False)


def _describe(exc: BaseException) -> str:
    """One line: exception type, message and the innermost frame (for a bug report)."""
    msg = " ".join(str(exc).split()) or "(no message)"
    frames = traceback.extract_tb(exc.__traceback__)
    where = f" at {frames[-1].filename.rsplit('/', 1)[-1]}:{frames[-1].lineno}" if frames else ""
    return f"{type(exc).__name__}: {msg}{where}"


def compile_task(cfg: ModelConfig, context: int, hw: dict, cache_dir: str | None,
                 use_cache: bool) -> dict:
    """Compile (or fetch) one decode-step program.

    Returns
    -------
    dict
        ``status`` (``ok``/``invalid``/``error``); with ``ok``: ``key``, ``blob`` (the encoded
        program), ``tags``, ``plan`` (the compiler's attention plan, or ``None``), ``cache``
        (``hit``/``miss``/``off``), ``compile_s`` and ``compile_cpu_s`` (wall and CPU seconds
        of the task).
    """
    t0, c0 = time.perf_counter(), time.process_time()
    try:
        hwc = hw_from_dict(hw, where="hardware")
        cache = ProgramCache(cache_dir) if use_cache else None
        program, tags, hit, plan = compile_decode_step_cached(cfg, hwc, context, cache)
        key = program_key(cfg, hwc, context)
        blob = encode(program)
    except ProgramCacheError as exc:
        # the worker's environment, not the point's input: an error, tried again on a resume
        return {"status": "error", "error": " ".join(str(exc).split())}
    except PimgptError as exc:
        return {"status": "invalid", "error": " ".join(str(exc).split())}
    except Exception as exc:  # noqa: BLE001 - a crashing point is recorded, the sweep goes on
        return {"status": "error", "error": _describe(exc)}
    _remember(key, program, tags)
    return {"status": "ok", "key": key, "blob": blob, "tags": tags, "plan": plan,
            "cache": ("hit" if hit else "miss") if use_cache else "off",
            "compile_s": time.perf_counter() - t0, "compile_cpu_s": time.process_time() - c0}


def _program(compiled: dict) -> tuple[list, list]:
    with _programs_lock:
        found = _programs.get(compiled["key"])
        if found is not None:
            _programs.move_to_end(compiled["key"])
            return found
    program = decode(compiled["blob"], source="compiled program")
    _remember(compiled["key"], program, compiled["tags"])
    return program, compiled["tags"]


def _worker() -> str:
    """Address of the Dask worker running this task ("" outside a worker)."""
    try:
        from distributed import get_worker

        return get_worker().address
    except (ImportError, ValueError):
        return ""


def _base_record(point: dict) -> dict:
    return {"id": point["id"], "model": point["model"], "context": point["context"],
            "params": point["params"]}


def simulate_task(points: list[dict], compiled: dict) -> list[dict]:
    """Simulate a program once and summarise it for every point of ``points``.

    Parameters
    ----------
    points : list of dict
        ``id``, ``model``, ``context``, ``params`` (swept values) and ``hw`` (the hardware
        mapping) of points that share the program and differ at most in
        :data:`SUMMARY_ONLY_SECTIONS`.
    compiled : dict
        The result of :func:`compile_task`.

    Returns
    -------
    list of dict
        One record per point (``status``, ``error`` or ``stats``, timings, cache use);
        ``sim_cpu_s`` is the CPU time of the whole task, shared by its points.
    """
    from pimgpt.sim.perf.engine import PerfEngine
    from pimgpt.sim.perf.summary import summarize
    from pimgpt.sw.compiler import preamble_length

    if compiled["status"] != "ok":
        return [{**_base_record(p), "status": compiled["status"], "error": compiled["error"]}
                for p in points]
    out, worker, c0 = [], _worker(), time.process_time()
    try:
        program, tags = _program(compiled)
        t0 = time.perf_counter()
        res = PerfEngine(hw_from_dict(points[0]["hw"], where="hardware")).run(
            program, marks=[preamble_length(tags)])  # per-token figures without the preamble
        sim_s = time.perf_counter() - t0
    except PimgptError as exc:
        return [{**_base_record(p), "status": "invalid", "error": " ".join(str(exc).split())}
                for p in points]
    except Exception as exc:  # noqa: BLE001
        return [{**_base_record(p), "status": "error", "error": _describe(exc)} for p in points]
    for p in points:
        rec = _base_record(p)
        try:
            stats = summarize(res, hw_from_dict(p["hw"], where="hardware"), tags, program=program)
            if compiled.get("plan"):  # as `pimgpt run --backend perf` reports it
                stats["attention_plan"] = compiled["plan"]
            stats["model"] = p["model"]
            stats["context"] = p["context"]
        except PimgptError as exc:
            out.append({**rec, "status": "invalid", "error": " ".join(str(exc).split())})
            continue
        except Exception as exc:  # noqa: BLE001
            out.append({**rec, "status": "error", "error": _describe(exc)})
            continue
        out.append({**rec, "status": "ok", "error": "", "program_key": compiled["key"],
                    "program_cache": compiled["cache"], "compile_s": compiled["compile_s"],
                    "compile_cpu_s": compiled["compile_cpu_s"], "sim_s": sim_s,
                    "sim_shared_by": len(points), "worker": worker, "stats": stats})
    cpu = time.process_time() - c0  # decoding, simulating and summarising, for all the points
    for r in out:
        r["sim_cpu_s"] = cpu
    return out

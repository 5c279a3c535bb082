"""``pimgpt bench`` (``make bench``): every benchmark of the tools and of the modelled hardware.

Each section lives beside the code it measures (``pimgpt/apps/bench_*.py``) and exposes a
``main(argv)`` that prints its own table; this command runs them in turn. It prints figures and
asserts nothing about times; the figures are collected in ``BENCHMARKS.md``.
"""

from __future__ import annotations

import argparse
import importlib
import json
import time
from collections.abc import Callable

# (title, module, whether the section takes --quick)
SECTIONS = [
    (
        "Numerics: golden MAC throughput and nonlinear-function errors",
        "pimgpt.apps.bench_numerics",
        True,
    ),
    (
        "Numerics: Llama functions (RMSNorm, SiLU, SwiGLU, RoPE) and tiny-llama-py vs float64",
        "pimgpt.apps.bench_llama_numerics",
        True,
    ),
    ("Compiler speed and golden simulator seconds per token", "pimgpt.apps.bench_compiler", True),
    ("Performance simulator speed", "pimgpt.apps.bench_perf", True),
    ("DRAM side per token: silicon timing, floor, activations, pins", "pimgpt.apps.bench_dram",
     True),
    ("DRAM checker over the paper's decode steps: no timing rule broken", "pimgpt.apps.bench_check",
     True),
    ("RTL MAC unit: area and simulation speed", "pimgpt.apps.bench_rtl_mac", True),
    ("RTL system: co-simulation speed", "pimgpt.apps.bench_rtl_system", True),
    ("RTL vector unit at 128 and 64 lanes: bit- and cycle-exact against golden and ISS",
     "pimgpt.apps.bench_rtl_vu_wide", True),
    ("Design-space sweep: throughput and reuse of work", "pimgpt.apps.bench_sweep", True),
]


def cli_bench(args) -> int:
    """Run every benchmark section, printing each section's figures."""
    failed = []
    for title, module, takes_quick in SECTIONS:
        print(f"\n=== {title} ({module}) ===", flush=True)
        argv = ["--quick"] if args.quick and takes_quick else []
        t0 = time.perf_counter()
        try:
            mod = importlib.import_module(module)
        except ModuleNotFoundError as exc:
            print(f"section unavailable: {exc}")
            failed.append(module)
            continue
        rc = mod.main(argv)
        print(f"--- {module}: {time.perf_counter() - t0:.1f} s wall", flush=True)
        if rc:
            failed.append(module)
    if failed:
        print(f"\nsections that failed: {', '.join(failed)}")
    return 1 if failed else 0


def best_seconds(fn: Callable[[], object], repeat: int = 3) -> float:
    """The shortest wall time of ``repeat`` calls of ``fn`` (seconds)."""
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def figures_main(argv, doc: str, quick_help: str, run: Callable[[bool], dict],
                 print_table: Callable[[dict], None],
                 status: Callable[[dict], int] | None = None) -> int:
    """The command line of a bench section: ``--quick`` (``quick_help``) and ``--json`` (print the
    figures of ``run(quick)`` as JSON instead of ``print_table``'s table). Returns
    ``status(figures)`` (a section whose figures can show a fault), else 0."""
    parser = argparse.ArgumentParser(description=doc.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help=quick_help)
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    args = parser.parse_args(argv)
    res = run(args.quick)
    if args.json:
        print(json.dumps(res, indent=1))
    else:
        print_table(res)
    return status(res) if status is not None else 0

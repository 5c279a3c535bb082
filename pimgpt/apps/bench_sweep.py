"""Benchmarks of ``pimgpt sweep``: throughput per worker count, and what the reuse of work saves.

``python -m pimgpt.apps.bench_sweep [--quick] [--json]``; :func:`run` returns the figures.

* **Throughput**: a sweep of at least 200 points (GPT-2 small over contexts, channels, vector
  lanes, act_overlap and tFAW) on an embedded local cluster with 1 and with 2 worker processes,
  each with an empty program cache: points per minute of the compute phase (first task submitted
  to last point recorded; the cluster's start and the report writing are listed apart), and the
  scaling efficiency ``ppm(2) / (2 ppm(1))``.
* **Reuse**: a hardware-only sweep (one model and context; axes the compiler does not read:
  act_overlap, tFAW, tRRD_S) with the program cache against ``--no-cache`` (every point compiled
  and simulated on its own), 2 workers; then the same sweep with an energy axis, whose points also
  share simulations.

Prints figures; asserts nothing about time (``make bench``).
"""

from __future__ import annotations

import os
import tempfile
import time
from pathlib import Path

import yaml

from pimgpt.apps.sweep_run import dask_client, run_sweep
from pimgpt.apps.sweep_spec import parse_spec

THROUGHPUT = {
    "name": "throughput",
    "models": ["gpt2-small"],
    "contexts": [64, 128, 256, 512, 768, 1024],
    "axes": {"dram.channels": [4, 8, 16], "asic.vector_lanes": [16, 32, 64],
             "dram.act_overlap": [False, True], "timing.nFAW": [42, 84]},
}
HW_ONLY = {
    "name": "hardware-only",
    "models": ["gpt2-medium"],
    "contexts": [1024],
    "axes": {"dram.act_overlap": [False, True], "timing.nFAW": [21, 42, 84],
             "timing.nRRDS": [6, 11]},
}
ENERGY_AXIS = {"energy.act_pj": [500.0, 700.0, 900.0]}
#: --quick: the same shapes on the small models (the throughput sweep keeps >= 200 points).
QUICK = {"throughput": {"models": ["tiny"], "base": "tiny-rtl",
                        "contexts": [8, 16, 24, 32, 48, 64],
                        "axes": {**THROUGHPUT["axes"], "dram.channels": [1, 2, 4]}},
         "hw_only": {"models": ["gpt2-small"], "contexts": [256]}}


def measure(spec_data: dict, workers: int, use_cache: bool = True) -> dict:
    """Run a sweep in a scratch directory with a fresh program cache; its figures."""
    spec = parse_spec(spec_data, text=yaml.safe_dump(spec_data))
    with tempfile.TemporaryDirectory(prefix="pimgpt-bench-sweep-") as tmp:
        t0 = time.perf_counter()
        with dask_client(workers) as client:
            start_s = time.perf_counter() - t0
            o = run_sweep(spec, Path(tmp) / "out", client, cache_dir=str(Path(tmp) / "cache"),
                          use_cache=use_cache, progress=False)
    done = sum(o.computed.values())
    return {"sweep": spec.name, "workers": workers, "cache": use_cache, "points": o.points,
            "ok": o.computed["ok"], "programs": o.programs, "simulations": o.simulations,
            "cluster_start_s": start_s, "compute_s": o.compute_s, "cpu_s": o.cpu_s,
            "cpu_s_per_point": o.cpu_s / done if done else 0.0,
            "points_per_min": done / o.compute_s * 60 if o.compute_s else 0.0,
            "loadavg": os.getloadavg()[0] if hasattr(os, "getloadavg") else None}


def run(quick: bool = False) -> dict:
    """All sweep benchmarks."""
    thr = {**THROUGHPUT, **(QUICK["throughput"] if quick else {})}
    hw = {**HW_ONLY, **(QUICK["hw_only"] if quick else {})}
    hw_energy = {**hw, "name": "hardware-only+energy", "axes": {**hw["axes"], **ENERGY_AXIS}}
    res = {"throughput": [measure(thr, 1), measure(thr, 2)]}
    one, two = res["throughput"]
    res["scaling_efficiency"] = two["points_per_min"] / (2 * one["points_per_min"])
    for name, spec in (("hw_only", hw), ("hw_only_energy", hw_energy)):
        base, cached = measure(spec, 2, use_cache=False), measure(spec, 2)
        res[name] = {"no_cache": base, "cache": cached,
                     "speedup": base["compute_s"] / cached["compute_s"],
                     "cpu_speedup": base["cpu_s"] / cached["cpu_s"]}
    return res


def print_table(res: dict) -> None:
    """The figures of :func:`run` as a table and two lines."""
    print(f"{'sweep':22} {'workers':>7} {'cache':>5} {'points':>6} {'programs':>8} "
          f"{'sims':>5} {'start s':>7} {'compute s':>9} {'points/min':>10} {'CPU s/point':>11} "
          f"{'load':>5}")
    rows = [*res["throughput"]]
    for name in ("hw_only", "hw_only_energy"):
        rows += [res[name]["no_cache"], res[name]["cache"]]
    for r in rows:
        print(f"{r['sweep']:22} {r['workers']:>7} {'on' if r['cache'] else 'off':>5} "
              f"{r['points']:>6} {r['programs']:>8} {r['simulations']:>5} "
              f"{r['cluster_start_s']:>7.1f} {r['compute_s']:>9.1f} {r['points_per_min']:>10.0f} "
              f"{r['cpu_s_per_point']:>11.3f} {r['loadavg'] or 0:>5.1f}")
    print(f"scaling efficiency 1 -> 2 workers: {res['scaling_efficiency'] * 100:.0f} % "
          "(wall; 'load' is the 1-minute load average at the end of each run)")
    for name, label in (("hw_only", "hardware-only sweep (program cache)"),
                        ("hw_only_energy", "with an energy axis (shared simulations too)")):
        print(f"speed-up of reusing work, {label}: {res[name]['speedup']:.2f}x wall, "
              f"{res[name]['cpu_speedup']:.2f}x CPU")


def main(argv=None) -> int:
    from pimgpt.apps.bench import figures_main

    return figures_main(argv, __doc__, "small models", run, print_table)


if __name__ == "__main__":
    from pimgpt.apps.entry import module_main

    module_main(main)

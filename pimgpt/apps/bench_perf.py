"""Benchmarks of the perf simulator itself: how fast it simulates, and what it costs to check.

``python -m pimgpt.apps.bench_perf [--quick]`` prints one JSON object; :func:`run` returns it as
a dict
(used by ``pimgpt bench``). Figures:

* ``gpt2_xl_ctx1024``: compile and simulation wall time of one gpt2-xl decode step at context 1024
  (the requirement: simulation under 5 s on the 2-core development machine), the simulated
  latency and the simulation speed in simulated nanoseconds per wall-clock second;
* ``gpt2_small_ctx128_logged``: the same with the command log kept, plus the checker's time;
* the number of DRAM commands the simulated step issues (trains counted per command).
"""

from __future__ import annotations

import time

from pimgpt.apps.bench import figures_main
from pimgpt.core.config import load_hw
from pimgpt.sim.perf.checker import check_log
from pimgpt.sim.perf.engine import PerfEngine
from pimgpt.sw.compiler import compile_decode_step
from pimgpt.sw.models import get_model


def bench_decode(model: str, ctx: int, hw_name: str | None = None, log: bool = False,
                 check: bool = False) -> dict:
    """Compile and simulate one decode step; wall times and simulation speed."""
    hw = load_hw(hw_name)
    t0 = time.perf_counter()
    comp = compile_decode_step(get_model(model), hw, ctx)
    t1 = time.perf_counter()
    res = PerfEngine(hw).run(comp.program, log=log)
    t2 = time.perf_counter()
    out = {
        "model": model, "ctx": ctx, "hw": hw.name,
        "instructions": len(comp.program),
        "dram_commands": sum(res.counts.values()),
        "compile_wall_s": t1 - t0,
        "sim_wall_s": t2 - t1,
        "simulated_latency_us": res.latency_ns / 1e3,
        "simulated_ns_per_wall_s": res.latency_ns / (t2 - t1),
        "commands_per_wall_s": sum(res.counts.values()) / (t2 - t1),
        "us_per_instruction": (t2 - t1) / len(comp.program) * 1e6,
    }
    if log:
        out["log_records"] = len(res.log)
    if check:
        t3 = time.perf_counter()
        errors = check_log(res.log, hw)
        out["check_wall_s"] = time.perf_counter() - t3
        out["check_violations"] = len(errors)
    return out


def run(quick: bool = False) -> dict:
    """All perf-simulator benchmarks (``quick``: gpt2-small only)."""
    res = {}
    if not quick:
        res["gpt2_xl_ctx1024"] = bench_decode("gpt2-xl", 1024)
    res["gpt2_small_ctx1024"] = bench_decode("gpt2-small", 1024)
    res["gpt2_small_ctx128_logged"] = bench_decode("gpt2-small", 128, log=True, check=True)
    return res


def print_table(res: dict) -> None:
    """The figures of :func:`run` as a table."""
    print(f"{'run':28} {'instr':>7} {'DRAM cmds':>10} {'compile s':>9} {'sim s':>7} "
          f"{'sim ns/wall s':>14} {'check s':>8}")
    for name, r in res.items():
        check = f"{r['check_wall_s']:.2f}" if "check_wall_s" in r else "-"
        print(f"{name:28} {r['instructions']:>7} {r['dram_commands']:>10} "
              f"{r['compile_wall_s']:>9.2f} {r['sim_wall_s']:>7.2f} "
              f"{r['simulated_ns_per_wall_s']:>14.3g} {check:>8}")


def main(argv=None) -> int:
    return figures_main(argv, __doc__, "gpt2-small only", run, print_table)


if __name__ == "__main__":
    raise SystemExit(main())

"""Benchmarks of the perf simulator itself: how fast it simulates, and what it costs to check.

``python -m pimgpt.apps.bench_perf [--quick] [--json]``; :func:`run` returns the figures (used by
``pimgpt bench``). Per decode step of the paper's models (gpt2-small ctx 128, gpt2-medium ctx
1024, gpt2-xl ctx 1024, gpt3-xl ctx 2048; ``--quick``: the first two):

* compile wall time, instructions, DRAM commands (trains counted per command), simulated latency;
* simulation CPU time with an empty memo (``sim_s``: the first run of a hardware config in a
  process, e.g. one sweep point), with the memo warm (``sim_warm_s``: the same timing tables run
  again, e.g. the next point of a sweep that only changes other fields) and with the memo off
  (``sim_full_s``: every command issued in full, the engine before :mod:`pimgpt.sim.perf.memo`);
  the speed-up of the memo and the simulated nanoseconds per CPU second;
* gpt2-small ctx 128 with the command log kept, and the independent checker's time on it.

CPU seconds (``time.process_time``), best of ``repeat`` runs: on a shared machine they vary less
than wall time. Prints figures; asserts nothing about time.
"""

from __future__ import annotations

import time

from pimgpt.apps.bench import figures_main
from pimgpt.core.config import load_hw
from pimgpt.sim.perf.checker import check_log
from pimgpt.sim.perf.engine import PerfEngine
from pimgpt.sim.perf.memo import clear_stores
from pimgpt.sw.compiler import compile_decode_step
from pimgpt.sw.models import get_model

#: The paper's decode steps (model, context).
STEPS = [("gpt2-small", 128), ("gpt2-medium", 1024), ("gpt2-xl", 1024), ("gpt3-xl", 2048)]


def _cpu(fn, repeat: int, before=None) -> tuple:
    """Best CPU seconds of ``repeat`` calls of ``fn`` (``before()`` untimed ahead of each) and
    the last result."""
    best, out = float("inf"), None
    for _ in range(repeat):
        if before is not None:
            before()
        t0 = time.process_time()
        out = fn()
        best = min(best, time.process_time() - t0)
    return best, out


def bench_decode(model: str, ctx: int, hw_name: str | None = None, repeat: int = 3) -> dict:
    """Compile one decode step and simulate it: memo empty, memo warm, memo off."""
    hw = load_hw(hw_name)
    t0 = time.perf_counter()
    comp = compile_decode_step(get_model(model), hw, ctx)
    compile_s = time.perf_counter() - t0
    prog = comp.program
    sim_s, res = _cpu(lambda: PerfEngine(hw).run(prog), repeat, before=clear_stores)
    warm_s, _ = _cpu(lambda: PerfEngine(hw).run(prog), repeat)  # the store is warm now
    full_s, full = _cpu(lambda: PerfEngine(hw, memo=False).run(prog), repeat)
    assert full.cycles == res.cycles and full.counters() == res.counters()
    commands = sum(res.counts.values())
    return {
        "model": model, "ctx": ctx, "hw": hw.name, "instructions": len(prog),
        "dram_commands": commands, "compile_wall_s": compile_s,
        "simulated_latency_us": res.latency_ns / 1e3,
        "sim_s": sim_s, "sim_warm_s": warm_s, "sim_full_s": full_s,
        "memo_speedup": full_s / sim_s, "memo_speedup_warm": full_s / warm_s,
        "simulated_ns_per_cpu_s": res.latency_ns / sim_s,
        "commands_per_cpu_s": commands / sim_s,
        "us_per_instruction": sim_s / len(prog) * 1e6,
    }


def bench_logged(model: str = "gpt2-small", ctx: int = 128, hw_name: str | None = None) -> dict:
    """One decode step simulated with the command log kept, then replayed through the checker."""
    hw = load_hw(hw_name)
    comp = compile_decode_step(get_model(model), hw, ctx)
    clear_stores()
    sim_s, res = _cpu(lambda: PerfEngine(hw).run(comp.program, log=True), 1)
    t0 = time.process_time()
    errors = check_log(res.log, hw)
    return {"model": model, "ctx": ctx, "instructions": len(comp.program),
            "dram_commands": sum(res.counts.values()), "log_records": len(res.log),
            "sim_s": sim_s, "check_s": time.process_time() - t0,
            "check_violations": len(errors)}


def run(quick: bool = False) -> dict:
    """All perf-simulator benchmarks (``quick``: the two smaller decode steps, one run each)."""
    steps = STEPS[:2] if quick else STEPS
    res = {f"{m}_ctx{c}": bench_decode(m, c, repeat=1 if quick else 3) for m, c in steps}
    res["gpt2-small_ctx128_logged"] = bench_logged()
    return res


def print_table(res: dict) -> None:
    """The figures of :func:`run` as a table."""
    print(f"{'decode step':22} {'instr':>6} {'DRAM cmds':>10} {'compile s':>9} {'sim s':>6} "
          f"{'warm s':>6} {'memo off s':>10} {'speed-up':>8} {'sim ns/CPU s':>12}")
    for name, r in res.items():
        if "sim_full_s" not in r:
            continue
        print(f"{name:22} {r['instructions']:>6} {r['dram_commands']:>10} "
              f"{r['compile_wall_s']:>9.2f} {r['sim_s']:>6.3f} {r['sim_warm_s']:>6.3f} "
              f"{r['sim_full_s']:>10.3f} {r['memo_speedup']:>7.2f}x "
              f"{r['simulated_ns_per_cpu_s']:>12.3g}")
    r = res["gpt2-small_ctx128_logged"]
    print(f"gpt2-small ctx {r['ctx']} with the command log: {r['log_records']} records, "
          f"simulation {r['sim_s']:.3f} s, checker {r['check_s']:.2f} s, "
          f"{r['check_violations']} violations")
    print("(CPU seconds, best of 3; speed-up = memo off / memo empty)")


def main(argv=None) -> int:
    return figures_main(argv, __doc__, "the two smaller decode steps, one run each", run,
                        print_table)


if __name__ == "__main__":
    from pimgpt.apps.entry import module_main

    module_main(main)

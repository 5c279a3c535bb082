"""The independent DRAM checker over the paper's decode steps: does any timing rule break?

``python -m pimgpt.apps.bench_check [--quick] [--json]`` (also a section of ``pimgpt bench``)
compiles one decode step per paper point, simulates it on the perf engine with the command log
kept and replays the log through :func:`pimgpt.sim.perf.checker.check_log` (every timing row,
the rolling windows, row and mode state, refresh limits of the DRAM standard, checked without the
engine's code). Points: every GPT-2 model at contexts 128 and 1024, every GPT-3 model at 2048 on
the default hardware, and the Llama presets on the 16- and 32-channel presets
(``--quick``: gpt2-small and gpt2-xl at 128, and the first Llama point). It prints, per point,
the log records, the violations and the checker's CPU seconds; it exits 1 if any point has a
violation (a simulator fault, not a slow run) and asserts nothing about time.
"""

from __future__ import annotations

import sys
import time

from pimgpt.apps.bench import figures_main
from pimgpt.core.config import load_hw
from pimgpt.sim.perf.checker import check_log
from pimgpt.sim.perf.engine import PerfEngine
from pimgpt.sw.compiler import compile_decode_step
from pimgpt.sw.models import get_model

#: (model, hardware preset, context) of every point.
POINTS = (
    [(m, "pimgpt-gddr6-8ch", c) for m in ("gpt2-small", "gpt2-medium", "gpt2-large", "gpt2-xl")
     for c in (128, 1024)]
    + [(m, "pimgpt-gddr6-8ch", 2048)
       for m in ("gpt3-small", "gpt3-medium", "gpt3-large", "gpt3-xl")]
    + [("llama-3.2-1b", "pimgpt-gddr6-16ch", 4096), ("tinyllama-1.1b", "pimgpt-gddr6-32ch", 2048),
       ("llama-3.2-3b", "pimgpt-gddr6-16ch", 1024), ("llama-2-7b", "pimgpt-gddr6-32ch", 1024),
       ("llama-3.1-8b", "pimgpt-gddr6-32ch", 4096)]
)
QUICK = (("gpt2-small", "pimgpt-gddr6-8ch", 128), ("gpt2-xl", "pimgpt-gddr6-8ch", 128),
         ("llama-3.2-1b", "pimgpt-gddr6-16ch", 4096))


def check_point(model: str, hw_name: str, ctx: int) -> dict:
    """One decode step: its command log and what the checker finds in it."""
    hw = load_hw(hw_name)
    comp = compile_decode_step(get_model(model), hw, ctx)
    res = PerfEngine(hw).run(comp.program, log=True)
    t0 = time.process_time()
    errors = check_log(res.log, hw)
    # A record is a train of one command on a group of channels in lockstep: the commands
    # checked are its members on every channel of the group.
    commands = sum(rec[6] * bin(rec[1]).count("1") for rec in res.log)
    return {"model": model, "hw": hw_name, "ctx": ctx, "log_records": len(res.log),
            "commands": commands, "violations": len(errors), "first_violations": errors[:3],
            "check_cpu_s": time.process_time() - t0}


def run(quick: bool = False) -> dict:
    """Every point (``quick``: :data:`QUICK`), keyed ``model hw ctx``."""
    return {f"{m} {h} ctx {c}": check_point(m, h, c) for m, h, c in (QUICK if quick else POINTS)}


def print_table(res: dict) -> None:
    """The figures of :func:`run` as a table, and every violation found."""
    print(f"{'decode step':44} {'log records':>11} {'commands':>10} {'violations':>10} "
          f"{'check CPU s':>11}")
    for name, r in res.items():
        print(f"{name:44} {r['log_records']:>11} {r['commands']:>10} {r['violations']:>10} "
              f"{r['check_cpu_s']:>11.2f}")
        for msg in r["first_violations"]:
            print(f"    {msg}")


def status(res: dict) -> int:
    """1 (naming the points on stderr, so ``--json`` output stays JSON) if any point of
    :func:`run` has a violation, else 0."""
    bad = [k for k, r in res.items() if r["violations"]]
    if bad:
        print(f"violations at: {', '.join(bad)}", file=sys.stderr)
    return 1 if bad else 0


def main(argv=None) -> int:
    return figures_main(argv, __doc__, "three points (gpt2-small and gpt2-xl at 128, llama-3.2-1b)",
                        run, print_table, status)


if __name__ == "__main__":
    from pimgpt.apps.entry import module_main

    module_main(main)

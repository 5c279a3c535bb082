"""Benchmarks of the compiler and the golden simulator.

``python -m pimgpt.apps.bench_compiler [--quick]`` prints

* compile time of one decode step at the model's maximum context for every preset (plus the time
  to encode program.bin and to write the AiM trace), instruction and SYNC counts;
* golden-simulator seconds per model step and per generated token for ``tiny`` and
  ``gpt2-small`` (random weights), with the time to load the weights into the DRAM image;
* with ``--schedules`` only: the serial and the pipelined schedule on the perf simulator
  (latency per token, hidden overlap time, ASIC share, compile time).

:func:`run` returns the same figures as a dict (for ``pimgpt bench``).
"""

from __future__ import annotations

import argparse
import time

from pimgpt.core.config import load_hw
from pimgpt.sw.models import PRESETS, get_model


def bench_compile(models=None, hw_name: str | None = None) -> list[dict]:
    """Compile one decode step at maximum context per model; return timings and counts."""
    from pimgpt.core.isa import Op
    from pimgpt.sw.compiler import compile_decode_step

    hw = load_hw(hw_name)
    rows = []
    for name in models or list(PRESETS):
        cfg = get_model(name)
        t0 = time.perf_counter()
        cp = compile_decode_step(cfg, hw, cfg.ctx)
        t1 = time.perf_counter()
        cp.encode()
        t2 = time.perf_counter()
        aim = cp.to_aim()
        t3 = time.perf_counter()
        rows.append({
            "model": name,
            "context": cfg.ctx,
            "instructions": len(cp.program),
            "syncs": sum(1 for i in cp.program if i.op is Op.SYNC),
            "mac_instructions": sum(1 for i in cp.program if i.op in (Op.MAC_ABK, Op.MAC_SBK)),
            "aim_lines": aim.count("\n"),
            "scratchpad_words": cp.scratchpad_words_used,
            "compile_s": t1 - t0,
            "encode_s": t2 - t1,
            "aim_s": t3 - t2,
        })
    return rows


def bench_golden(models=("tiny", "gpt2-small"), prompt_len: int = 2, new_tokens: int = 3,
                 hw_name: str | None = None) -> list[dict]:
    """Golden-simulator speed on random weights: ``prompt_len`` prefill steps + decode steps."""
    from pimgpt.sim.golden import run_golden
    from pimgpt.sw.checkpoint import random_weights

    hw = load_hw(hw_name)
    rows = []
    for name in models:
        cfg = get_model(name)
        t0 = time.perf_counter()
        weights = random_weights(cfg, 0)
        t1 = time.perf_counter()
        prompt = [(7 * k + 1) % cfg.vocab for k in range(prompt_len)]
        tokens, _, stats = run_golden(cfg, hw, weights, prompt, new_tokens)
        rows.append({
            "model": name,
            "prompt": prompt_len,
            "new_tokens": new_tokens,
            "steps": stats["steps"],
            "instructions": stats["instructions"],
            "weights_s": t1 - t0,
            "compile_s": stats["compile_seconds"],
            "load_s": stats["load_seconds"],
            "run_s": stats["seconds"],
            "s_per_step": stats["seconds"] / stats["steps"],
            "s_per_token": stats["seconds"] / len(tokens),
            "exact_fallback_macs": stats["slow_macs"],
        })
    return rows


#: Decode workloads of the schedule comparison: (model, context).
SCHEDULE_CASES = (("gpt2-small", 128), ("gpt2-small", 1024), ("gpt2-xl", 128),
                  ("gpt2-xl", 1024), ("gpt3-xl", 2048))


def bench_schedules(cases=SCHEDULE_CASES, hw_name: str | None = None) -> list[dict]:
    """Serial vs pipelined schedule on the perf simulator: one decode step per case.

    Per case and schedule: latency per token, the time hidden by PIM/ASIC overlap
    (``hidden_ns`` of :func:`pimgpt.sim.perf.report.breakdown`), the ASIC share of the charged
    time, instruction and SYNC counts, and the compile time.
    """
    from pimgpt.core.isa import Op
    from pimgpt.sim.perf.engine import PerfEngine
    from pimgpt.sim.perf.summary import summarize
    from pimgpt.sw.compiler import compile_decode_step

    hw = load_hw(hw_name)
    rows = []
    for name, ctx in cases:
        cfg = get_model(name)
        for schedule in ("serial", "pipelined"):
            t0 = time.perf_counter()
            cp = compile_decode_step(cfg, hw, ctx, schedule=schedule)
            t1 = time.perf_counter()
            res = PerfEngine(hw).run(cp.program)
            st = summarize(res, hw, cp.tags)["decode"]
            cls = st["by_class_ns"]
            rows.append({
                "model": name,
                "context": ctx,
                "schedule": schedule,
                "us_per_token": st["latency_ns"] / 1e3,
                "hidden_us": st["hidden_ns"] / 1e3,
                "asic_share": cls["asic"] / sum(cls.values()),
                "instructions": len(cp.program),
                "syncs": sum(1 for i in cp.program if i.op is Op.SYNC),
                "compile_s": t1 - t0,
            })
    return rows


def _table(rows: list[dict]) -> str:
    if not rows:
        return ""
    keys = list(rows[0])

    def fmt(v):
        return f"{v:.3f}" if isinstance(v, float) else str(v)

    cells = [[fmt(r[k]) for k in keys] for r in rows]
    widths = [max(len(k), *(len(c[i]) for c in cells)) for i, k in enumerate(keys)]
    lines = ["  ".join(k.rjust(w) for k, w in zip(keys, widths, strict=True))]
    lines += ["  ".join(c.rjust(w) for c, w in zip(row, widths, strict=True)) for row in cells]
    return "\n".join(lines)


def run(quick: bool = False, hw_name: str | None = None) -> dict:
    """All compiler/golden benchmarks; ``quick`` skips the largest models and gpt2-small."""
    models = [m for m in PRESETS if not quick or m in ("tiny", "gpt2-small", "gpt2-xl")]
    golden = ("tiny",) if quick else ("tiny", "gpt2-small")
    return {"compile": bench_compile(models, hw_name), "golden": bench_golden(golden,
                                                                              hw_name=hw_name)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer models")
    parser.add_argument("--hw", default=None, help="hardware preset or YAML")
    parser.add_argument("--schedules", action="store_true",
                        help="only compare the serial and pipelined schedules (perf simulator)")
    args = parser.parse_args(argv)
    if args.schedules:
        print("Decode step, serial vs pipelined schedule (perf simulator)")
        print(_table(bench_schedules(hw_name=args.hw)))
        return 0
    res = run(args.quick, args.hw)
    print("Compile: one decode step at maximum context")
    print(_table(res["compile"]))
    print("\nGolden simulator (random weights)")
    print(_table(res["golden"]))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

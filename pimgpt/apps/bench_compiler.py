"""Benchmarks of the compiler and the golden simulator.

``python -m pimgpt.apps.bench_compiler [--quick]`` prints

* compile time of one decode step at the model's maximum context for every preset (plus the time
  to encode program.bin and to write the AiM trace), instruction, SYNC, MAC and result-read counts,
  scratchpad words and whether the parameters are resident;
* golden-simulator seconds per model step and per generated token for ``tiny`` and
  ``gpt2-small`` (random weights), with the time to load the weights into the DRAM image;
* the schedule comparison on the perf simulator (``--schedules``, also part of the full run):
  serial vs pipelined decode steps, per token: latency and its ratio to the bank-bandwidth floor,
  PIM-side busy time over the floor, vector-unit time exposed, activations and pin bytes over
  their ideal, register-mode visits (the DRAM figures when the perf statistics have them), compile
  time;
* ``--accumulators``: the same figures for 1 to 64 MAC accumulators per bank
  (``dram.accumulators``).

:func:`run` returns the same figures as a dict (for ``pimgpt bench``).
"""

from __future__ import annotations

import argparse
import time

from pimgpt.core.config import hw_from_dict, load_hw
from pimgpt.sw.models import LLAMA_MODELS, PAPER_MODELS, get_model

#: Llama presets are compiled on the hardware that holds them all, at the longest context of the
#: evaluation (their maximum contexts, up to 131072 tokens, fit no preset).
LLAMA_HW, LLAMA_CONTEXT = "pimgpt-gddr6-32ch", 4096


def bench_compile(models=None, hw_name: str | None = None) -> list[dict]:
    """Compile one decode step at maximum context per model (Llama presets: ``LLAMA_CONTEXT``
    on ``LLAMA_HW`` unless ``hw_name`` is given); return timings and counts."""
    from pimgpt.core.isa import Op
    from pimgpt.sw.compiler import compile_decode_step, preamble_length

    rows = []
    for name in models or ["tiny", *PAPER_MODELS, *LLAMA_MODELS]:
        cfg = get_model(name)
        llama = name in LLAMA_MODELS
        hw = load_hw(hw_name or (LLAMA_HW if llama else None))
        ctx = min(cfg.ctx, LLAMA_CONTEXT) if llama else cfg.ctx
        t0 = time.perf_counter()
        cp = compile_decode_step(cfg, hw, ctx)
        t1 = time.perf_counter()
        cp.encode()
        t2 = time.perf_counter()
        aim = cp.to_aim()
        t3 = time.perf_counter()
        step = cp.program[cp.steps[0].start:]
        rows.append({
            "model": name,
            "hw": hw.name,
            "context": ctx,
            "instructions": len(cp.program),
            "syncs": sum(1 for i in step if i.op is Op.SYNC),
            "mac_instructions": sum(1 for i in step if i.op in (Op.MAC_ABK, Op.MAC_SBK)),
            "rd_mac": sum(1 for i in step if i.op is Op.RD_MAC),
            "preamble": preamble_length(cp.tags),
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


def step_figures(cfg, hw, context: int, schedule: str = "pipelined") -> dict:
    """Per-token figures of one decode step on the perf simulator (preamble excluded)."""
    from pimgpt.core.isa import Op
    from pimgpt.sim.perf.summary import run_compiled
    from pimgpt.sw.compiler import compile_decode_step

    t0 = time.perf_counter()
    cp = compile_decode_step(cfg, hw, context, schedule=schedule)
    compile_s = time.perf_counter() - t0
    _, st = run_compiled(cp, hw)
    dec = st["decode"]
    row = {
        "us_per_token": dec["latency_ns"] / 1e3,
        "hidden_us": dec["hidden_ns"] / 1e3,
        "instructions": len(cp.program) - cp.steps[0].start,
        "syncs": sum(1 for i in cp.program[cp.steps[0].start:] if i.op is Op.SYNC),
        "compile_s": compile_s,
    }
    # mac_utilization = bank-bandwidth floor / latency
    row["token_over_floor"] = 1 / dec["mac_utilization"] if dec["mac_utilization"] else None
    if "asic_exposed_ns" in dec:
        row["asic_exposed_us"] = dec["asic_exposed_ns"] / 1e3
    dram = dec.get("dram")
    if dram:
        row.update({
            "pim_busy_over_floor": dram["pim_busy_over_floor"],
            "acts_over_ideal": dram["activations_over_ideal"],
            "pins_over_ideal": dram["pin_bytes_over_ideal"],
            "reg_visits": dram["register_mode_visits"],
        })
    return row


#: Decode workloads of the schedule comparison: (model, context).
SCHEDULE_CASES = (("gpt2-small", 128), ("gpt2-small", 1024), ("gpt2-xl", 128),
                  ("gpt2-xl", 1024), ("gpt3-xl", 2048))


def bench_schedules(cases=SCHEDULE_CASES, hw_name: str | None = None) -> list[dict]:
    """Serial vs pipelined schedule on the perf simulator: one decode step per case."""
    hw = load_hw(hw_name)
    rows = []
    for name, ctx in cases:
        cfg = get_model(name)
        for schedule in ("serial", "pipelined"):
            rows.append({"model": name, "context": ctx, "schedule": schedule,
                         **step_figures(cfg, hw, ctx, schedule)})
    return rows


#: Accumulators per bank of the ``--accumulators`` comparison, and its workloads.
ACCUMULATORS = (1, 4, 8, 16, 32, 64)
ACCUMULATOR_CASES = (("gpt2-small", 128), ("gpt2-xl", 1024))


def bench_accumulators(cases=ACCUMULATOR_CASES, counts=ACCUMULATORS,
                       hw_name: str | None = None) -> list[dict]:
    """The pipelined decode step with ``dram.accumulators`` = each of ``counts``."""
    base = load_hw(hw_name)
    rows = []
    for name, ctx in cases:
        cfg = get_model(name)
        for n in counts:
            raw = base.raw
            hw = hw_from_dict({**raw, "dram": {**raw["dram"], "accumulators": n}},
                              where=f"{base.name} with {n} accumulators")
            rows.append({"model": name, "context": ctx, "accumulators": n,
                         **step_figures(cfg, hw, ctx)})
    return rows


def _table(rows: list[dict]) -> str:
    if not rows:
        return ""
    keys = list(dict.fromkeys(k for r in rows for k in r))

    def fmt(v):
        if v is None:
            return "-"
        return f"{v:.3f}" if isinstance(v, float) else str(v)

    cells = [[fmt(r.get(k)) for k in keys] for r in rows]
    widths = [max(len(k), *(len(c[i]) for c in cells)) for i, k in enumerate(keys)]
    lines = ["  ".join(k.rjust(w) for k, w in zip(keys, widths, strict=True))]
    lines += ["  ".join(c.rjust(w) for c, w in zip(row, widths, strict=True)) for row in cells]
    return "\n".join(lines)


def run(quick: bool = False, hw_name: str | None = None) -> dict:
    """All compiler/golden benchmarks; ``quick`` skips the largest models and gpt2-small."""
    models = [m for m in ["tiny", *PAPER_MODELS, *LLAMA_MODELS]
              if not quick or m in ("tiny", "gpt2-small", "gpt2-xl", "llama-3.2-1b")]
    golden = ("tiny",) if quick else ("tiny", "gpt2-small")
    cases = SCHEDULE_CASES[:1] if quick else SCHEDULE_CASES
    return {"compile": bench_compile(models, hw_name),
            "golden": bench_golden(golden, hw_name=hw_name),
            "schedules": bench_schedules(cases, hw_name)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer models")
    parser.add_argument("--hw", default=None, help="hardware preset or YAML")
    parser.add_argument("--schedules", action="store_true",
                        help="only compare the serial and pipelined schedules (perf simulator)")
    parser.add_argument("--accumulators", action="store_true",
                        help="only compare MAC accumulator counts per bank (perf simulator)")
    args = parser.parse_args(argv)
    if args.schedules:
        print("Decode step, serial vs pipelined schedule (perf simulator, per token)")
        print(_table(bench_schedules(hw_name=args.hw)))
        return 0
    if args.accumulators:
        print("Decode step by MAC accumulators per bank (perf simulator, per token)")
        print(_table(bench_accumulators(hw_name=args.hw)))
        return 0
    res = run(args.quick, args.hw)
    print(f"Compile: one decode step at maximum context (Llama: {LLAMA_CONTEXT} on {LLAMA_HW})")
    print(_table(res["compile"]))
    print("\nGolden simulator (random weights)")
    print(_table(res["golden"]))
    print("\nDecode step, serial vs pipelined schedule (perf simulator, per token)")
    print(_table(res["schedules"]))
    return 0


if __name__ == "__main__":
    from pimgpt.apps.entry import module_main

    module_main(main)

"""Cycles of the vector unit's instructions for every lane count and issue width.

``python -m pimgpt.apps.bench_vu`` prints, for the instruction shapes of a GPT-2 decode step, the
ASIC cycles of the microcode (:mod:`pimgpt.core.vu.cost`, the perf model's source) on 16, 32, 64
and 128 lanes with single and dual issue, the micro-operations issued and the ROM size.
``vu_report()`` returns the same figures as a dict. Pipeline latencies come from the default
hardware (``asic.fp_add_latency`` ...).
"""

from __future__ import annotations

import argparse
import time
from dataclasses import replace

from pimgpt.core.config import load_hw
from pimgpt.core.isa import I, Op
from pimgpt.core.vu.cost import microcode_for, pipeline_of
from pimgpt.core.vu.iss import VectorISS
from pimgpt.core.vu.uisa import LANE_CHOICES

#: (label, instruction): the vector work of GPT-2 small (d 768, 12 heads, context 128) and XL
#: (d 1600, 25 heads, context 1024) decode steps.
SHAPES = (
    ("LAYERNORM n=768", I(Op.LAYERNORM, dst=0, src=4096, gamma=8192, beta=12288, n=768)),
    ("LAYERNORM n=1600", I(Op.LAYERNORM, dst=0, src=4096, gamma=8192, beta=12288, n=1600)),
    # the folded LayerNorm: before the GEMV, under it, and each output group's epilogue
    ("LNCENTRE n=768", I(Op.LNCENTRE, dst=0, src=4096, gamma=8192, n=768)),
    ("LNRSTD n=768", I(Op.LNRSTD, dst=0, src=4096, tmp=8192, n=768)),
    ("VMADS n=1024", I(Op.VMADS, dst=0, a=0, s=8192, b=4096, n=1024)),
    ("VGELU n=3072", I(Op.VGELU, dst=0, src=8192, n=3072)),
    ("SOFTMAX n=128 rows=1", I(Op.SOFTMAX, dst=0, src=0, n=128, rows=1)),
    ("SOFTMAX n=128 rows=12", I(Op.SOFTMAX, dst=0, src=0, n=128, rows=12)),
    ("SOFTMAX n=1024 rows=25", I(Op.SOFTMAX, dst=0, src=0, n=1024, rows=25)),
    ("VADD n=768", I(Op.VADD, dst=0, a=0, b=4096, n=768)),
    ("VSCALE n=128", I(Op.VSCALE, dst=0, a=0, n=128, scale_f32=0x3E000000)),
    ("VREDUCE n=768 k=2", I(Op.VREDUCE, dst=0, src=4096, n=768, k=2)),
    ("ARGMAX n=50257", I(Op.ARGMAX, reg=0, src=0, n=50257)),
    ("ARGMAXC n=1105 (the LM head's last piece)", I(Op.ARGMAXC, reg=0, src=0, lo=49152, n=1105)),
    # Llama-3.2-1B: a K/V head's 4 query heads at context 2048, the 32 query heads' rotation
    ("SOFTMAX n=2048 rows=4", I(Op.SOFTMAX, dst=0, src=0, n=2048, rows=4)),
    ("ROPE half=32 nhead=32", I(Op.ROPE, dst=0, src=0, tab=8192, half=32, nhead=32)),
    ("RMSRSTD n=2048", I(Op.RMSRSTD, dst=0, src=4096, n=2048)),
    ("VMULS n=2048", I(Op.VMULS, dst=0, a=0, s=8192, n=2048)),
)


def vu_report(lanes=LANE_CHOICES, widths=(1, 2)) -> dict:
    """``{(lanes, width): {"rom_words": int, label: (cycles, uops)}}`` for :data:`SHAPES`."""
    base = pipeline_of(load_hw())
    out = {}
    for w in lanes:
        for width in widths:
            mc = microcode_for(w, replace(base, issue=width))
            iss = VectorISS(mc, timing_only=True)
            row = {"rom_words": len(mc.words)}
            for label, ins in SHAPES:
                st = iss.run(ins.op, ins.fields())
                row[label] = (st.cycles, st.uops)
            out[(w, width)] = row
    return out


def format_report(rep: dict) -> str:
    """Markdown table of :func:`vu_report` (cycles; micro-operations in parentheses)."""
    keys = list(rep)
    head = "| instruction | " + " | ".join(f"{w} lanes, issue {i}" for w, i in keys) + " |"
    lines = [head, "|---" * (len(keys) + 1) + "|"]
    for label, _ in SHAPES:
        cells = [f"{rep[k][label][0]} ({rep[k][label][1]})" for k in keys]
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    lines.append("| ROM words | " + " | ".join(str(rep[k]["rom_words"]) for k in keys) + " |")
    return "\n".join(lines)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.parse_args(argv)
    t0 = time.perf_counter()
    print(format_report(vu_report()))
    print(f"\n(ASIC cycles at asic.clock_ghz; report took {time.perf_counter() - t0:.1f} s)")


if __name__ == "__main__":
    from pimgpt.apps.entry import module_main

    module_main(main)

"""Latency attribution and statistics of a simulated program (breakdowns by layer, op kind, class).

Attribution: the program's time is cut at its barriers (``SYNC``/``EOC``). Each segment between two
barriers lasts until the later of its two sides finishes; its duration is charged to the
instructions of that *critical* side, in proportion to their own time (PIM: on the channel that
took longest, from the end of its previous instruction, or the dispatch, to completion; ASIC: busy
time). The charged times add up exactly to the total latency. The other
side's work in the segment is hidden (overlapped) and reported separately as ``hidden_ns``.
"""

from __future__ import annotations

import re
from collections import defaultdict

import numpy as np

from pimgpt.core.isa import Op
from pimgpt.sim.perf.engine import ASIC_SIDE, BARRIER, PIM_SIDE, PerfResult

#: Instruction classes of the paper's time breakdown.
CLASSES = ("gemv", "attention", "asic", "io")
MAC_OPS = frozenset({Op.MAC_ABK, Op.MAC_SBK})
_LAYER = re.compile(r"^L(\d+)\.(.*)$")


def split_tag(tag: str | None) -> tuple[str, str]:
    """``"L3.attn.qkv"`` -> ``("L3", "attn.qkv")``; tags without a layer keep the tag as kind."""
    if not tag:
        return "untagged", "untagged"
    m = _LAYER.match(tag)
    if m:
        return f"L{m.group(1)}", m.group(2)
    return tag, tag


def op_class(op: Op, kind: str) -> str:
    """Class of an instruction: ``gemv`` (weight MACs), ``attention`` (K/V-cache MACs), ``asic``
    (vector unit) or ``io`` (data moved between the ASIC and the DRAM: GB loads, MAC result reads,
    vector reads/writes, cache appends)."""
    if op >= 0x20:
        return "asic"
    if op in MAC_OPS:
        return "attention" if kind.startswith(("attn.score", "attn.av")) else "gemv"
    return "io"


def attribute(res: PerfResult, tags: list | None = None, lo: int = 0, hi: int | None = None):
    """Charge the latency of instructions ``[lo, hi)`` to instructions.

    Returns
    -------
    numpy.ndarray
        Charged cycles per instruction of the range (float); sums to the range's span.
    float
        Hidden (overlapped) cycles: work of the non-critical side.
    """
    hi = res.n_instr if hi is None else hi
    side, start, end = res.side[lo:hi], res.start[lo:hi], res.end[lo:hi]
    span = res.busy[lo:hi].astype(np.float64)
    charged = np.zeros(hi - lo)
    hidden = 0.0
    seg_start_t = float(start[0]) if hi > lo else 0.0
    seg_lo = 0
    bars = list(np.nonzero(side == BARRIER)[0]) + [hi - lo]
    for b in bars:
        idx = np.arange(seg_lo, b)
        t_end = float(end[b]) if b < hi - lo else float(
            max(end[seg_lo:b].max(initial=seg_start_t), seg_start_t))
        dur = max(t_end - seg_start_t, 0.0)
        if len(idx):
            pim = idx[side[idx] == PIM_SIDE]
            asic = idx[side[idx] == ASIC_SIDE]
            pim_end = end[pim].max(initial=0)
            asic_end = end[asic].max(initial=0)
            crit, other = (pim, asic) if pim_end >= asic_end else (asic, pim)
            w = span[crit]
            if w.sum() > 0:
                charged[crit] += dur * w / w.sum()
                hidden += float(span[other].sum())
            elif len(crit):
                charged[crit] += dur / len(crit)
            elif b < hi - lo:
                charged[b] += dur
        elif b < hi - lo:
            charged[b] += dur
        seg_start_t = t_end
        seg_lo = b + 1
    return charged, hidden


def breakdown(res: PerfResult, tags: list | None, lo: int = 0, hi: int | None = None) -> dict:
    """Charged time (ns) by layer, by op kind, by tag and by class, plus hidden time."""
    hi = res.n_instr if hi is None else hi
    charged, hidden = attribute(res, tags, lo, hi)
    ns = res.tck_ns
    by_layer, by_kind, by_tag, by_class = (defaultdict(float) for _ in range(4))
    for k in range(hi - lo):
        i = lo + k
        tag = tags[i] if tags is not None and i < len(tags) else None
        layer, kind = split_tag(tag)
        v = charged[k] * ns
        by_layer[layer] += v
        by_kind[kind] += v
        by_tag[tag or "untagged"] += v
        if res.side[i] != BARRIER:
            by_class[op_class(res.ops[i], kind)] += v
        else:
            by_class["io"] += v
    return {
        "by_layer_ns": dict(by_layer),
        "by_kind_ns": dict(sorted(by_kind.items(), key=lambda kv: -kv[1])),
        "by_tag_ns": dict(by_tag),
        "by_class_ns": {c: by_class.get(c, 0.0) for c in CLASSES},
        "hidden_ns": hidden * ns,
    }

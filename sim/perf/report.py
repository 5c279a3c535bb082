"""Latency attribution and statistics of a simulated program (breakdowns by layer, op kind, class).

Attribution: the program's time is cut at its barriers (``SYNC``/``EOC``). In each segment between
two barriers the two sides start together; the PIM side is charged the time until its last
instruction completes, the vector unit only the time it *extends* the segment beyond that (its
*exposed* time). Within a side the charge is split in proportion to the instructions' own time
(PIM: on the channel that took longest, from the end of its previous instruction, or the
dispatch, to completion; ASIC: busy time). A segment with no instruction is charged to its
barrier. The charged times add up exactly to the total latency; the vector-unit time that runs
under the PIM side is *hidden* (``hidden_ns``). So a segment whose PIM side runs 10 us and whose
vector unit runs 10.1 us charges 10 us to the PIM and 0.1 us to the ASIC, and 10 us are hidden.

Side totals (:func:`side_times`): ``pim_busy_ns`` is the union of the PIM instructions' spans,
``asic_busy_ns`` the vector unit's busy time, ``asic_exposed_ns`` its charged time (the ASIC share
of the token is ``asic_exposed_ns`` / latency).

DRAM figures (:func:`dram_figures`): activations against the whole-row ideal (MAC bank-columns /
columns per row), bytes over the pins against the ideal (input vectors into the global buffers,
results out, and the elements of the K/V-cache appends and the embedding reads; parameter reads
and the unused part of element-wise column writes are the excess), register-mode visits per
channel, and the PIM side's busy time against the bank-bandwidth floor.
"""

from __future__ import annotations

import re
from collections import defaultdict

import numpy as np

from pimgpt.core.config import HwConfig
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
    """Charge the latency of instructions ``[lo, hi)`` to instructions (module docstring).

    Returns
    -------
    numpy.ndarray
        Charged cycles per instruction of the range (float); sums to the range's span.
    float
        Hidden cycles: vector-unit busy time that ran under the PIM side.
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
        pim = idx[side[idx] == PIM_SIDE]
        asic = idx[side[idx] == ASIC_SIDE]
        pim_end = min(max(float(end[pim].max(initial=0)), seg_start_t), t_end)
        pim_part = pim_end - seg_start_t if len(pim) else 0.0
        rest = max(t_end - seg_start_t - pim_part, 0.0)
        _share(charged, pim, span, pim_part)
        if len(asic):
            _share(charged, asic, span, rest)
            hidden += max(float(span[asic].sum()) - rest, 0.0)
        elif b < hi - lo:
            charged[b] += rest
        elif len(pim):
            _share(charged, pim, span, rest)
        seg_start_t = t_end
        seg_lo = b + 1
    return charged, hidden


def _share(charged, idx, weight, amount: float) -> None:
    """Add ``amount`` to ``charged[idx]`` in proportion to ``weight[idx]`` (equally if all 0)."""
    if not len(idx) or amount <= 0:
        return
    w = weight[idx]
    tot = w.sum()
    if tot > 0:
        charged[idx] += amount * w / tot
    else:
        charged[idx] += amount / len(idx)


def side_times(res: PerfResult, lo: int = 0, hi: int | None = None) -> dict:
    """``pim_busy_ns`` (union of PIM-instruction spans), ``asic_busy_ns``, ``asic_exposed_ns``
    (the vector unit's charged time) and ``hidden_ns`` of instructions ``[lo, hi)``."""
    hi = res.n_instr if hi is None else hi
    charged, hidden = attribute(res, None, lo, hi)
    asic = res.side[lo:hi] == ASIC_SIDE
    ns = res.tck_ns
    return {"pim_busy_ns": res.pim_busy(lo, hi) * ns,
            "asic_busy_ns": float(res.busy[lo:hi][asic].sum()) * ns,
            "asic_exposed_ns": float(charged[asic].sum()) * ns,
            "hidden_ns": hidden * ns}


#: Instructions whose whole transfer is data the step must exchange: the input vectors into the
#: global buffers and the MAC results out.
_PIN_ESSENTIAL = frozenset({Op.WR_GB, Op.RD_MAC})
#: Instructions whose *elements* must cross the pins (new K/V-cache entries).
_PIN_APPENDS = frozenset({Op.WR_VEC, Op.WR_ELEM})


def ideal_pin_bytes(res: PerfResult, program, tags, hw: HwConfig, lo: int = 0,
                    hi: int | None = None) -> int:
    """Bytes the instructions ``[lo, hi)`` must move over the pins (module docstring)."""
    hi = res.n_instr if hi is None else hi
    elem = hw.dram.column_bytes // hw.dram.col_elems
    total = 0
    for i in range(lo, hi):
        op = res.ops[i]
        if op in _PIN_ESSENTIAL:
            total += int(res.pins[i])
        elif op in _PIN_APPENDS or (op == Op.RD_VEC and tags is not None
                                    and split_tag(tags[i])[1] == "embed"):
            total += program[i].args["n"] * elem
    return total


def dram_figures(res: PerfResult, cnt: dict, program, tags, hw: HwConfig, lo: int = 0,
                 hi: int | None = None) -> dict:
    """DRAM figures of instructions ``[lo, hi)`` with event counters ``cnt`` (of the same range).

    Returns
    -------
    dict
        ``bank_activations`` and ``ideal_activations`` (MAC bank-columns / columns per row) and
        their ratio; ``pin_bytes``, ``ideal_pin_bytes`` (``None`` without the program) and their
        ratio; ``register_mode_visits`` per channel; ``pim_busy_cycles``, ``floor_cycles`` and
        ``pim_busy_over_floor``.
    """
    hi = res.n_instr if hi is None else hi
    ideal_acts = cnt["mac_bank_cols"] / res.cols_per_row
    pins = int(res.pins[lo:hi].sum())
    ideal = ideal_pin_bytes(res, program, tags, hw, lo, hi) if program is not None else None
    floor = cnt["mac_bank_cols"] / res.slots * res.nccdl
    busy = res.pim_busy(lo, hi)
    return {
        "bank_activations": cnt["bank_acts"],
        "ideal_activations": ideal_acts,
        "activations_over_ideal": cnt["bank_acts"] / ideal_acts if ideal_acts else None,
        "pin_bytes": pins,
        "ideal_pin_bytes": ideal,
        "pin_bytes_over_ideal": pins / ideal if ideal else None,
        "register_mode_visits": cnt["counts"].get("MODREG", 0) / max(res.channels, 1),
        "pim_busy_cycles": busy,
        "floor_cycles": floor,
        "pim_busy_over_floor": busy / floor if floor else None,
    }


def breakdown(res: PerfResult, tags: list | None, lo: int = 0, hi: int | None = None) -> dict:
    """Charged time (ns) by layer, by op kind, by tag and by class, plus hidden time (the
    vector-unit time under the PIM side)."""
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

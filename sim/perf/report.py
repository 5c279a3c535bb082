"""Latency attribution and statistics of a simulated program (breakdowns by layer, op kind, class).

Attribution: the program's time is cut at its barriers (``SYNC``/``EOC``). In each segment between
two barriers the two sides start together; the PIM side is charged the time until its last
instruction completes, the vector unit only the time it *extends* the segment beyond that (its
*exposed* time). Within a side the charge is split in proportion to the instructions' own time
(PIM: on the channel that took longest, from the end of its previous instruction, or the
dispatch, to completion; ASIC: busy time). A segment with no instruction is charged to its
barrier. The charged times add up exactly to the total latency (of a range of instructions, such
as a part of a generation: from the completion of everything before it, :func:`range_begin`, to
that of its own last instruction); the vector-unit time that runs under the PIM side is *hidden*
(``hidden_ns``). So a segment whose PIM side runs 10 us and whose vector unit runs 10.1 us
charges 10 us to the PIM and 0.1 us to the ASIC, and 10 us are hidden.

Side totals (:func:`side_times`): ``pim_busy_ns`` is the union of the PIM instructions' spans,
``asic_busy_ns`` the vector unit's busy time, ``asic_exposed_ns`` its charged time (the ASIC share
of the token is ``asic_exposed_ns`` / latency).

DRAM figures (:func:`dram_figures`): activations against the whole-row ideal (MAC bank-columns /
columns per row), bytes over the pins against the ideal (input vectors into the global buffers,
results out, and the elements of the K/V-cache appends and the embedding reads; parameter reads,
accumulator spills and restores, and the unused part of element-wise column writes are the
excess), register-mode visits per
channel, and the PIM side's busy time against the bank-bandwidth floor.

Lower bounds (:func:`pim_busy_bound`, :func:`latency_bound`): the least PIM busy time, and the
least latency, any schedule of the same PIM work reaches on the configured DRAM. The latency
bound adds the refreshes the standard forces into any window: a channel's ``REFab`` blocks it
for ``nRFC`` (in array mode, so no MAC, register transfer or mode switch of that channel overlaps
it), and a window of ``L`` cycles issues at least ``L / nREFI - 2 - refresh_postpone -
refresh_pull_in`` of them (the standard keeps ``-pull_in <= owed <= postpone`` at every cycle;
one more for the whole intervals in ``L`` and one for a refresh that ends past the window). So
``L >= B + (L / nREFI - s) * nRFC`` per channel, averaged over the channels: ``L >= (B - s * nRFC)
/ (1 - nRFC / nREFI)``, with ``B`` the PIM busy bound and ``s`` the slack above.
"""

from __future__ import annotations

import functools
import json
import re

import numpy as np

from pimgpt.core.config import MAX_CYCLES, HwConfig, hw_from_dict
from pimgpt.core.dram import derived_timing, mode_switching, standard_of
from pimgpt.core.isa import REGISTER_OPS, I, Op
from pimgpt.sim.perf.engine import (
    ASIC_SIDE,
    BARRIER,
    PIM_SIDE,
    PerfEngine,
    PerfResult,
)

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


def range_begin(res: PerfResult, lo: int) -> int:
    """Cycle at which the instructions from ``lo`` on begin: when every instruction before ``lo``
    has completed (0 for the first).

    Parameters
    ----------
    res : PerfResult
    lo : int
        Index of the range's first instruction.

    Returns
    -------
    int
        The boundary between ``[.., lo)`` and ``[lo, ..)``; :func:`attribute` charges a range
        the time from its ``range_begin`` to the next range's.
    """
    return int(res.end[:lo].max(initial=0))


def attribute(res: PerfResult, tags: list | None = None, lo: int = 0, hi: int | None = None):
    """Charge the latency of instructions ``[lo, hi)`` to instructions (module docstring).

    The range's time runs from :func:`range_begin` of ``lo`` (the completion of everything
    before it) to the completion of its last instruction, so consecutive ranges (the parts of a
    generation) charge every cycle of the program once. Vectorised over the segments; every
    charge is the same floating-point expression as a segment-by-segment loop would compute
    (``tests/test_perf_report.py`` compares the two).

    Parameters
    ----------
    res : PerfResult
    tags : list of str or None
        Unused (kept for the callers' symmetry with :func:`breakdown`).
    lo, hi : int
        The range of instructions (``hi``: default the end of the program).

    Returns
    -------
    numpy.ndarray
        Charged cycles per instruction of the range (float); sums to the range's span.
    float
        Hidden cycles: vector-unit busy time that ran under the PIM side.
    """
    hi = res.n_instr if hi is None else hi
    n = hi - lo
    side, end = res.side[lo:hi], res.end[lo:hi]
    span = res.busy[lo:hi].astype(np.float64)
    charged = np.zeros(n)
    if not n:
        return charged, 0.0
    is_bar = side == BARRIER
    bars = np.nonzero(is_bar)[0]
    nseg = len(bars) + 1  # the last segment runs from the last barrier to the end
    seg = np.cumsum(is_bar) - is_bar  # segment of each instruction (barriers: the one they end)
    # Each segment starts where the previous ended: the range's beginning, then its barriers.
    # Not the first instruction's dispatch: a step's opening SYNC dispatches at the previous
    # barrier, inside the previous step's last segment, whose cycles that range already charges.
    t0 = np.empty(nseg)
    t0[0] = float(range_begin(res, lo))
    t0[1:] = end[bars].astype(np.float64)
    t1 = np.empty(nseg)
    t1[:-1] = t0[1:]
    t1[-1] = max(float(end[bars[-1] + 1:].max(initial=t0[-1])) if len(bars) else
                 float(end.max(initial=t0[-1])), t0[-1])
    pim, asic = side == PIM_SIDE, side == ASIC_SIDE
    pim_n = np.bincount(seg[pim], minlength=nseg)
    asic_n = np.bincount(seg[asic], minlength=nseg)
    pim_w = np.bincount(seg[pim], weights=span[pim], minlength=nseg)  # integer-valued: exact
    asic_w = np.bincount(seg[asic], weights=span[asic], minlength=nseg)
    pim_last = np.zeros(nseg, dtype=np.int64)
    np.maximum.at(pim_last, seg[pim], end[pim])
    pim_end = np.minimum(np.maximum(pim_last.astype(np.float64), t0), t1)
    pim_part = np.where(pim_n > 0, pim_end - t0, 0.0)
    rest = np.maximum(t1 - t0 - pim_part, 0.0)
    _shares(charged, pim, seg, span, pim_part, pim_w, pim_n)
    _shares(charged, asic, seg, span, rest, asic_w, asic_n)
    hidden = float(np.maximum(asic_w - rest, 0.0)[asic_n > 0].sum())  # integer-valued: exact
    idle = asic_n[:-1] == 0  # segments without vector work: their rest goes to the barrier
    charged[bars[idle]] += rest[:-1][idle]
    if not asic_n[-1] and pim_n[-1]:  # the last segment has no barrier: to its PIM side
        last = pim & (seg == nseg - 1)
        _shares(charged, last, seg, span, rest, pim_w, pim_n)
    return charged, hidden


def _shares(charged, sel, seg, weight, amount, total, count) -> None:
    """Add each segment's ``amount`` to ``charged[sel]`` in proportion to ``weight`` (equally
    where the segment's ``total`` weight is 0); segments with ``amount <= 0`` add nothing."""
    k = seg[sel]
    a, tot = amount[k], total[k]
    w = weight[sel]
    with np.errstate(divide="ignore", invalid="ignore"):
        add = np.where(tot > 0, a * w / tot, a / np.maximum(count[k], 1))
    charged[sel] += np.where(a > 0, add, 0.0)


def side_times(res: PerfResult, lo: int = 0, hi: int | None = None, attributed=None) -> dict:
    """``pim_busy_ns`` (union of PIM-instruction spans), ``asic_busy_ns``, ``asic_exposed_ns``
    (the vector unit's charged time) and ``hidden_ns`` of instructions ``[lo, hi)``
    (``attributed``: :func:`attribute` of the range, if already computed)."""
    hi = res.n_instr if hi is None else hi
    charged, hidden = attributed or attribute(res, None, lo, hi)
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
    codes = res.op_codes[lo:hi]
    essential = np.isin(codes, [int(op) for op in _PIN_ESSENTIAL])
    # A spilled accumulator's RD_MAC is not a result: every WR_BIAS restores the bytes one read
    # out (sw/compiler/accum.py), so the restores' bytes leave the reads' count as well.
    restores = codes == int(Op.WR_BIAS)
    total = int(res.pins[lo:hi][essential].sum()) - int(res.pins[lo:hi][restores].sum())
    for k in np.nonzero(np.isin(codes, [int(op) for op in (*_PIN_APPENDS, Op.RD_VEC)]))[0]:
        i = lo + int(k)
        if res.ops[i] != Op.RD_VEC or (tags is not None and split_tag(tags[i])[1] == "embed"):
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
        ``pim_busy_over_floor``; ``pim_busy_bound_cycles`` (:func:`pim_busy_bound`),
        ``latency_bound_cycles`` (:func:`latency_bound`) and each over the floor.
    """
    hi = res.n_instr if hi is None else hi
    ideal_acts = cnt["mac_bank_cols"] / res.cols_per_row
    pins = int(res.pins[lo:hi].sum())
    ideal = ideal_pin_bytes(res, program, tags, hw, lo, hi) if program is not None else None
    floor = cnt["mac_bank_cols"] / res.slots * res.nccdl
    busy = res.pim_busy(lo, hi)
    bound = pim_busy_bound(res, hw, floor, lo, hi)
    lat = latency_bound(hw, bound)
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
        "pim_busy_bound_cycles": bound,
        "pim_busy_bound_over_floor": bound / floor if floor else None,
        "latency_bound_cycles": lat,
        "latency_bound_over_floor": lat / floor if floor else None,
    }


#: Full-row ``MAC_ABK`` trains of the row-cost calibration (two lengths: the difference is the
#: marginal cost of a row, free of the first activation and the pipeline drain).
_ROW_TRAINS = (64, 128)


@functools.lru_cache(maxsize=16)
def _row_cycles(raw_json: str) -> float:
    raw = json.loads(raw_json)
    raw["timing"]["nREFI"] = MAX_CYCLES  # refresh is not part of the bound
    hw = hw_from_dict(raw, where="the row-cost calibration")
    cols = hw.dram.row_bytes // hw.dram.column_bytes
    cycles = []
    for n in _ROW_TRAINS:
        prog = [I(Op.MAC_ABK, ch_mask=1, row=r, col=0, ncols=cols, gb_col=0) for r in range(n)]
        cycles.append(PerfEngine(hw).run(prog + [I(Op.EOC)]).cycles)
    return (cycles[1] - cycles[0]) / (_ROW_TRAINS[1] - _ROW_TRAINS[0])


def mac_row_cycles(hw: HwConfig) -> float:
    """Marginal tCK of one full-row ``MAC_ABK`` on distinct rows of ``hw`` (refresh off):
    the streaming of the row's columns plus the row switch the single row buffer cannot hide
    (``nRTP + nRP + nRCDRDMAC`` on ``gddr6-aim``; about none with ``dram.act_overlap``).
    Measured on the perf engine itself, so it follows the standard's timing table."""
    return _row_cycles(json.dumps(hw.raw, sort_keys=True))


def pim_busy_bound(res: PerfResult, hw: HwConfig, floor: float, lo: int = 0,
                   hi: int | None = None) -> float:
    """Lower bound (tCK) on the PIM busy time of instructions ``[lo, hi)`` (module docstring).

    Parameters
    ----------
    res : PerfResult
    hw : HwConfig
    floor : float
        The bank-bandwidth floor of the range (tCK).
    """
    hi = res.n_instr if hi is None else hi
    cols = hw.dram.row_bytes // hw.dram.column_bytes
    # Each bank's first row may have opened before the range (an earlier activation or the
    # second row buffer): only the switches between its rows count.
    switch = mac_row_cycles(hw) - cols * res.nccdl
    bound = floor + max(0.0, floor / (cols * res.nccdl) - 1) * switch
    if mode_switching(hw):
        reg = np.isin(res.op_codes[lo:hi], [int(op) for op in REGISTER_OPS])
        nbytes = float(res.pins[lo:hi][reg].sum())
        bursts = nbytes / hw.dram.column_bytes / max(res.channels, 1)
        bound += bursts * derived_timing(hw)["nIO"]
    return bound


def latency_bound(hw: HwConfig, busy_bound: float) -> float:
    """Lower bound (tCK) on the latency of a range whose PIM busy bound is ``busy_bound``: that
    bound plus the refreshes any window of the range's length must hold (module docstring).

    Parameters
    ----------
    hw : HwConfig
    busy_bound : float
        :func:`pim_busy_bound` of the range (tCK).

    Returns
    -------
    float
        At least ``busy_bound``; equal to it when ``nREFI`` is beyond the refreshes' reach.
    """
    t = derived_timing(hw)
    std = standard_of(hw)
    nrfc, nrefi = float(t["nRFC"]), float(t["nREFI"])
    slack = 2 + std.refresh_postpone + std.refresh_pull_in
    return max(busy_bound, (busy_bound - slack * nrfc) / (1.0 - nrfc / nrefi))


def breakdown(res: PerfResult, tags: list | None, lo: int = 0, hi: int | None = None,
              attributed=None) -> dict:
    """Charged time (ns) by layer, by op kind, by tag and by class, plus hidden time (the
    vector-unit time under the PIM side); ``attributed``: :func:`attribute` of the range, if
    already computed.

    Each total adds its instructions' charges in program order (``numpy.bincount``), as a loop
    over the instructions would; keys in order of first appearance."""
    hi = res.n_instr if hi is None else hi
    charged, hidden = attributed or attribute(res, tags, lo, hi)
    v = charged * res.tck_ns
    # Instructions by tag (None past the end of ``tags``), then per distinct tag its keys.
    seq = list(tags[lo:hi]) if tags is not None else []
    seq += [None] * (hi - lo - len(seq))
    ids = {t: k for k, t in enumerate(dict.fromkeys(seq))}
    tag_of = np.array(list(map(ids.__getitem__, seq)), dtype=np.int64)
    per_tag = [split_tag(tag) for tag in ids]
    layer = _group([lk[0] for lk in per_tag])
    kind = _group([lk[1] for lk in per_tag])
    name = _group([tag or "untagged" for tag in ids])
    # Class (op_class) per distinct (opcode, tag); barriers are charged as data movement (-1).
    codes = np.where(res.side[lo:hi] == BARRIER, -1, res.op_codes[lo:hi])
    n_tags = max(len(ids), 1)
    pairs, pair_of = np.unique((codes + 1) * n_tags + tag_of, return_inverse=True)
    cls = []
    for p in pairs.tolist():
        code, tag = divmod(p, n_tags)
        cls.append(CLASSES.index("io" if code == 0 else op_class(Op(code - 1), per_tag[tag][1])))
    cls_of = np.array(cls, dtype=np.int64)[pair_of] if cls else pair_of
    by_kind = _sums(kind, tag_of, v)
    by_class = np.bincount(cls_of, weights=v, minlength=len(CLASSES)).tolist()
    return {
        "by_layer_ns": _sums(layer, tag_of, v),
        "by_kind_ns": dict(sorted(by_kind.items(), key=lambda kv: -kv[1])),
        "by_tag_ns": _sums(name, tag_of, v),
        "by_class_ns": dict(zip(CLASSES, by_class, strict=True)),
        "hidden_ns": hidden * res.tck_ns,
    }


def _group(keys: list) -> tuple:
    """Distinct ``keys`` in order of first appearance, and the index of each key among them."""
    first: dict = {}
    idx = np.array([first.setdefault(k, len(first)) for k in keys], dtype=np.int64)
    return list(first), idx


def _sums(group: tuple, tag_of: np.ndarray, v: np.ndarray) -> dict:
    """Per key of ``group`` (keys of the distinct tags) the sum of ``v`` over its instructions,
    added in program order."""
    names, of_tag = group
    if not len(v):
        return {}
    sums = np.bincount(of_tag[tag_of], weights=v, minlength=len(names)).tolist()
    return dict(zip(names, sums, strict=True))

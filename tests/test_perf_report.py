"""The vectorised attribution and breakdowns of ``sim/perf/report.py`` against plain loops.

The references below are the segment-by-segment and instruction-by-instruction loops that
``attribute``, ``breakdown``, ``ideal_pin_bytes`` and the MAC busy time of ``summarize`` replaced;
the vectorised versions must give the same numbers to the last bit (floating-point sums in the
same order) and the same key order, on compiled programs and on random ones with empty segments,
segments without a PIM or a vector-unit side and a last segment without a barrier.
"""

from __future__ import annotations

import sys
from collections import defaultdict
from pathlib import Path

import numpy as np
import pytest

from pimgpt.core.config import load_hw
from pimgpt.core.isa import I, Op
from pimgpt.sim.perf.engine import ASIC_SIDE, BARRIER, PIM_SIDE, PerfEngine
from pimgpt.sim.perf.report import (
    _PIN_APPENDS,
    _PIN_ESSENTIAL,
    CLASSES,
    MAC_OPS,
    attribute,
    breakdown,
    ideal_pin_bytes,
    op_class,
    range_begin,
    split_tag,
)
from pimgpt.sw.compiler import compile_decode_step, compile_generation
from pimgpt.sw.models import get_model

sys.path.insert(0, str(Path(__file__).parent))
from test_perf_memo import TINY, random_program, variant  # noqa: E402

DEFAULT = load_hw("pimgpt-gddr6-8ch")


# ---- the references: plain loops -----------------------------------------------------------
def ref_attribute(res, lo=0, hi=None):
    hi = res.n_instr if hi is None else hi
    side, end = res.side[lo:hi], res.end[lo:hi]
    span = res.busy[lo:hi].astype(np.float64)
    charged = np.zeros(hi - lo)
    hidden = 0.0
    # the range begins when every instruction before it has completed
    seg_start_t = float(max((int(e) for e in res.end[:lo]), default=0))
    seg_lo = 0
    for b in list(np.nonzero(side == BARRIER)[0]) + [hi - lo]:
        idx = np.arange(seg_lo, b)
        t_end = float(end[b]) if b < hi - lo else float(
            max(end[seg_lo:b].max(initial=seg_start_t), seg_start_t))
        pim = idx[side[idx] == PIM_SIDE]
        asic = idx[side[idx] == ASIC_SIDE]
        pim_end = min(max(float(end[pim].max(initial=0)), seg_start_t), t_end)
        pim_part = pim_end - seg_start_t if len(pim) else 0.0
        rest = max(t_end - seg_start_t - pim_part, 0.0)
        ref_share(charged, pim, span, pim_part)
        if len(asic):
            ref_share(charged, asic, span, rest)
            hidden += max(float(span[asic].sum()) - rest, 0.0)
        elif b < hi - lo:
            charged[b] += rest
        elif len(pim):
            ref_share(charged, pim, span, rest)
        seg_start_t = t_end
        seg_lo = b + 1
    return charged, hidden


def ref_share(charged, idx, weight, amount):
    if not len(idx) or amount <= 0:
        return
    w = weight[idx]
    tot = w.sum()
    if tot > 0:
        charged[idx] += amount * w / tot
    else:
        charged[idx] += amount / len(idx)


def ref_breakdown(res, tags, lo=0, hi=None):
    hi = res.n_instr if hi is None else hi
    charged, hidden = ref_attribute(res, lo, hi)
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
        by_class[op_class(res.ops[i], kind) if res.side[i] != BARRIER else "io"] += v
    return {"by_layer_ns": dict(by_layer),
            "by_kind_ns": dict(sorted(by_kind.items(), key=lambda kv: -kv[1])),
            "by_tag_ns": dict(by_tag), "by_class_ns": {c: by_class.get(c, 0.0) for c in CLASSES},
            "hidden_ns": hidden * ns}


def ref_ideal_pins(res, program, tags, hw, lo=0, hi=None):
    hi = res.n_instr if hi is None else hi
    elem = hw.dram.column_bytes // hw.dram.col_elems
    total = 0
    for i in range(lo, hi):
        op = res.ops[i]
        if op in _PIN_ESSENTIAL:
            total += int(res.pins[i])
        elif op == Op.WR_BIAS:  # a restore: the spill read that it undoes was no result
            total -= int(res.pins[i])
        elif op in _PIN_APPENDS or (op == Op.RD_VEC and tags is not None
                                    and split_tag(tags[i])[1] == "embed"):
            total += program[i].args["n"] * elem
    return total


def assert_same(res, tags, program, hw, lo=0, hi=None):
    got, want = attribute(res, tags, lo, hi), ref_attribute(res, lo, hi)
    assert got[0].tobytes() == want[0].tobytes() and got[1] == want[1]
    got, want = breakdown(res, tags, lo, hi), ref_breakdown(res, tags, lo, hi)
    assert got == want
    for key in got:  # the same key order too (the JSON statistics keep it)
        assert list(got[key]) == list(want[key]) if isinstance(got[key], dict) else True
    if tags is None or len(tags) == len(program):
        assert ideal_pin_bytes(res, program, tags, hw, lo, hi) == ref_ideal_pins(
            res, program, tags, hw, lo, hi)
    hi = res.n_instr if hi is None else hi
    mac = np.isin(res.op_codes[lo:hi], [int(op) for op in MAC_OPS])
    assert int(res.busy[lo:hi][mac].sum()) == sum(
        int(res.busy[i]) for i in range(lo, hi) if res.ops[i] in MAC_OPS)


# ---- cases -----------------------------------------------------------------------------------
def test_decode_step_whole_and_parts():
    comp = compile_decode_step(get_model("gpt2-small"), DEFAULT, 128)
    res = PerfEngine(DEFAULT).run(comp.program)
    n = res.n_instr
    for lo, hi in ((0, None), (0, n // 3), (n // 3, 2 * n // 3), (n - 7, n), (5, 5)):
        assert_same(res, comp.tags, comp.program, DEFAULT, lo, hi)


def test_generation_steps():
    comp = compile_generation(get_model("tiny"), TINY, [1, 2, 3], 3)
    res = PerfEngine(TINY).run(comp.program)
    for k, step in enumerate(comp.steps):
        hi = comp.steps[k + 1].start if k + 1 < len(comp.steps) else None
        assert_same(res, comp.tags, comp.program, TINY, step.start, hi)
    assert_same(res, None, comp.program, TINY)  # untagged
    assert_same(res, comp.tags[:40], comp.program, TINY)  # breakdown: tags shorter than it


def test_consecutive_ranges_charge_each_cycle_once():
    """The steps of a generation, charged apart, add up to the program's latency: each range
    runs from the completion of everything before it (a step's opening SYNC dispatches at the
    previous barrier, inside the previous step's last segment)."""
    comp = compile_generation(get_model("tiny"), TINY, [1, 2, 3], 3)
    res = PerfEngine(TINY).run(comp.program)
    bounds = [0] + [s.start for s in comp.steps] + [res.n_instr]
    total = 0.0
    for lo, hi in zip(bounds, bounds[1:], strict=False):
        charged = attribute(res, comp.tags, lo, hi)[0].sum()
        end = range_begin(res, hi) if hi < res.n_instr else res.cycles
        assert charged == pytest.approx(end - range_begin(res, lo), rel=1e-12, abs=1e-9)
        total += charged
    assert total == pytest.approx(res.cycles, rel=1e-12)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_random_programs(seed):
    """Random programs: empty segments, PIM-only and ASIC-only segments, idle barriers."""
    hw = variant(TINY, accumulators=2)
    prog = random_program(seed, hw, n=300)
    prog = prog[:-1] + [I(Op.SYNC), I(Op.SYNC), I(Op.VADD, dst=0, a=0, b=64, n=16),
                        I(Op.SYNC), prog[0]]  # ends with a PIM instruction and no barrier
    tags = [f"L{i % 3}.kind{i % 5}" if i % 7 else "head" for i in range(len(prog))]
    res = PerfEngine(hw).run(prog)
    assert (res.side == BARRIER).sum() > 3
    assert_same(res, tags, prog, hw)
    assert_same(res, tags, prog, hw, 10, len(prog) - 3)


def test_what_ifs_are_named_in_the_statistics_and_the_summary():
    """A run on an idealised configuration says so first: its figures are bounds, not a
    machine's (asic.vector_unit_ideal, dram.mode_switch: false on a standard with modes)."""
    from pimgpt.core.config import hw_variant
    from pimgpt.sim.perf.summary import format_summary, simulate_model

    hw = load_hw("pimgpt-gddr6-8ch")
    _, _, st = simulate_model(get_model("tiny"), hw, context=16)
    assert "idealised" not in st and "what-if" not in format_summary(st)
    h = hw_variant(hw_variant(hw, "asic", vector_unit_ideal=True), "dram", mode_switch=False)
    _, _, st = simulate_model(get_model("tiny"), h, context=16)
    assert [w.split(":")[0] for w in st["idealised"]] == ["asic.vector_unit_ideal",
                                                         "dram.mode_switch"]
    lines = format_summary(st).splitlines()
    assert lines[1].startswith("  what-if, not a buildable machine: asic.vector_unit_ideal")
    # the plain JEDEC standard has no register-access mode: nothing idealised by switching off
    plain = hw_variant(hw, "dram", standard="gddr6", mode_switch=False)
    _, _, st = simulate_model(get_model("tiny"), plain, context=16)
    assert "idealised" not in st

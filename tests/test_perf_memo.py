"""The perf engine's memo (``sim/perf/memo.py``) changes no result.

Every case runs one program through ``PerfEngine(hw, memo=False)`` (every command issued in full:
the engine without the memo) and through ``PerfEngine(hw)`` (memo on: with an empty memo, again on
the same engine, and on a new engine sharing the now warm store), and compares a fingerprint of
everything a run returns: cycles, counters, per-instruction start / end / side / channel mask /
own time / pin bytes, the counter snapshots at marks, the command log, and the statistics of
``summarize``. The references are computed here, by the full path, on whatever programs the
compiler makes today.
"""

from __future__ import annotations

import copy
import hashlib
import json

import numpy as np
import pytest

from pimgpt.core.config import hw_from_dict, load_hw
from pimgpt.core.errors import PimgptError
from pimgpt.core.isa import FIELDS, I, Op
from pimgpt.core.progcheck import check_program
from pimgpt.sim.perf import memo as memo_mod
from pimgpt.sim.perf.engine import PerfEngine
from pimgpt.sim.perf.memo import clear_stores
from pimgpt.sim.perf.summary import summarize
from pimgpt.sw.compiler import compile_decode_step, compile_generation
from pimgpt.sw.models import get_model

DEFAULT = load_hw("pimgpt-gddr6-8ch")
TINY = load_hw("tiny-rtl")


def variant(hw, **dram):
    raw = copy.deepcopy(hw.raw)
    raw["dram"].update(dram)
    return hw_from_dict(raw, where="memo test variant")


def fingerprint(res, hw, tags=None, steps=None, program=None) -> dict:
    """Everything a run returns, hashed per part (so a mismatch names the part)."""
    def h(x) -> str:
        return hashlib.sha256(x if isinstance(x, bytes) else repr(x).encode()).hexdigest()

    stats = summarize(res, hw, tags, steps, program)
    stats.pop("sim_wall_s")
    parts = {"cycles": res.cycles, "counters": h(res.counters()), "n_instr": res.n_instr,
             "ops": h([int(o) for o in res.ops]), "marks": h(res.marks),
             "log": h(res.log) if res.log is not None else None,
             "stats": h(json.dumps(stats, sort_keys=True, default=str))}
    for name in ("start", "end", "side", "chmask", "busy", "pins"):
        parts[name] = h(np.ascontiguousarray(getattr(res, name)).tobytes())
    return parts


def assert_identical(program, hw, log=True, marks=(), tags=None, steps=None, min_hits=0.5):
    """Full path vs memo (empty, warm, shared by a new engine); returns the first engine."""
    ref = PerfEngine(hw, memo=False).run(program, log=log, marks=marks)
    want = fingerprint(ref, hw, tags, steps, program)
    clear_stores()
    eng = PerfEngine(hw)
    for attempt, engine in (("empty", eng), ("warm", eng), ("shared", PerfEngine(hw))):
        got = fingerprint(engine.run(program, log=log, marks=marks), hw, tags, steps, program)
        bad = [k for k in want if want[k] != got[k]]
        assert not bad, f"memo ({attempt}) differs from the full path in {bad}"
    memo = eng.dev.memo
    # The memo must have been exercised, else the comparison proves nothing.
    assert memo.hits >= min_hits * (memo.hits + memo.misses)
    return eng


# ---- compiled programs ---------------------------------------------------------------------
@pytest.fixture(scope="module")
def small_step():
    return compile_decode_step(get_model("gpt2-small"), DEFAULT, 128)


@pytest.mark.parametrize("dram", [{}, {"act_overlap": True}, {"mode_switch": False},
                                  {"early_activate": False}])
def test_gpt2_small_decode_step(small_step, dram):
    hw = variant(DEFAULT, **dram)
    comp = small_step
    assert_identical(comp.program, hw, tags=comp.tags, min_hits=0.8)


def test_gpt2_small_without_log(small_step):
    assert_identical(small_step.program, DEFAULT, log=False, tags=small_step.tags, min_hits=0.8)


@pytest.mark.parametrize("dram", [{}, {"mode_switch": True, "early_activate": True},
                                  {"act_overlap": True, "mode_switch": True}])
def test_tiny_generation_with_marks(dram):
    """Prefill and decode steps of the tiny model (counter marks at every step)."""
    hw = variant(TINY, **dram)
    comp = compile_generation(get_model("tiny"), hw, [1, 2, 3, 4], 3)
    marks = [s.start for s in comp.steps]
    assert_identical(comp.program, hw, marks=marks, tags=comp.tags, steps=comp.steps)


# ---- random programs -----------------------------------------------------------------------
#: Operand ranges for random PIM programs on tiny-rtl: few rows (row hits and conflicts), short
#: transfers, every channel mask.
RANGES = {"ch_mask": (1, 4), "ch": (0, 2), "bank": (0, 4), "row": (0, 6), "col": (0, 8),
          "ncols": (1, 9), "gb_col": (0, 8), "acc": (0, 2), "nacc": (1, 3), "elem": (0, 96),
          "n": (1, 97), "vec": (0, 16), "region_row": (0, 8), "n_local": (1, 3),
          "vec_len": (1, 5), "reg": (0, 16), "imm": (0, 8), "k": (1, 3), "rows": (1, 3)}
PIM = [Op.MAC_ABK, Op.MAC_SBK, Op.RD_MAC, Op.WR_BIAS, Op.WR_GB, Op.WR_SBK, Op.RD_SBK,
       Op.WR_ABK, Op.COPY_BKGB, Op.COPY_GBBK, Op.RD_VEC, Op.WR_VEC, Op.WR_ELEM]


def random_instr(rng, hw, op):
    """A random instruction of ``op`` whose operands ``hw`` accepts."""
    for _ in range(200):
        args = {}
        for name in FIELDS[op]:
            lo, hi = RANGES.get(name, (0, 4000))  # others: scratchpad addresses
            args[name] = int(rng.integers(lo, hi)) * (16 if name == "vec_len" else 1)
        ins = I(op, **args)
        try:
            check_program([ins], hw)
        except PimgptError:
            continue
        return ins
    raise AssertionError(f"no valid random {op.name}")


def random_program(seed, hw, n=600):
    """Motifs (short PIM sequences) repeated with their rows shifted, random instructions and
    SYNCs between: the memo hits, misses and refreshes all happen. Now and then every channel
    opens the same row and idles to a SYNC, where diverged channel states merge again."""
    rng = np.random.default_rng(seed)
    motifs = [[random_instr(rng, hw, PIM[int(k)]) for k in rng.integers(0, len(PIM), 4)]
              for _ in range(3)]
    prog = []
    while len(prog) < n:
        r = rng.random()
        if r < 0.6:
            shift = int(rng.integers(0, 3)) * 2
            for ins in motifs[int(rng.integers(0, len(motifs)))]:
                args = dict(ins.args)
                if "row" in args and args["row"] + shift < 16:
                    args["row"] += shift
                prog.append(I(ins.op, **args))
        elif r < 0.8:
            prog.append(random_instr(rng, hw, PIM[int(rng.integers(0, len(PIM)))]))
        elif r < 0.88:
            prog.append(I(Op.VADD, dst=8000, a=8000, b=9000, n=int(rng.integers(1, 300))))
        elif r < 0.97:
            prog.append(I(Op.SYNC))
        else:
            prog += [I(Op.SYNC), I(Op.MAC_ABK, ch_mask=3, row=int(rng.integers(0, 6)), ncols=1),
                     I(Op.VADD, dst=8000, a=8000, b=9000, n=7000), I(Op.SYNC)]
    return prog + [I(Op.EOC)]


@pytest.mark.parametrize("seed,dram", [
    (0, {}), (1, {"mode_switch": True, "early_activate": True}),
    (2, {"act_overlap": True, "mode_switch": True, "early_activate": True}),
    (3, {"act_overlap": True, "accumulators": 2}), (4, {"mode_switch": True}),
])
def test_random_programs(seed, dram):
    hw = variant(TINY, **{"accumulators": 2, **dram})
    prog = random_program(seed, hw)
    eng = assert_identical(prog, hw, marks=range(0, len(prog), 50), min_hits=0.3)
    assert eng.dev.memo.misses > 0


def test_memo_reaches_refresh_and_diverged_channels():
    """The random programs cover what the memo must step around: refreshes between bodies and
    channels whose states diverge and merge again."""
    hw = variant(TINY, accumulators=2)
    res = PerfEngine(hw).run(random_program(0, hw), log=True)
    assert res.counts["REFab"] > 0
    masks = [rec[1] for rec in res.log]
    first_split = min(masks.index(1), masks.index(2))
    assert 3 in masks[first_split:]  # lockstep again after the channels diverged



def test_shared_store_survives_an_aborted_run():
    """A run that stops on a bad instruction leaves no counters pending in the shared memo."""
    hw = variant(TINY, accumulators=2)
    prog = random_program(1, hw)
    clear_stores()
    want = PerfEngine(hw, memo=False).run(prog).counters()
    bad = prog[:300] + [I(Op.MAC_ABK, ch_mask=1 << 5, row=0, ncols=1)] + prog[300:]
    with pytest.raises(PimgptError, match="ch_mask"):
        PerfEngine(hw).run(bad)
    assert PerfEngine(hw).run(prog).counters() == want


def test_full_stores_record_nothing_more(monkeypatch):
    """With the stores full the memo replays what it holds and issues the rest in full."""
    hw = variant(TINY, accumulators=2)
    prog = random_program(2, hw)
    want = fingerprint(PerfEngine(hw, memo=False).run(prog, log=True), hw)
    clear_stores()
    monkeypatch.setattr(memo_mod, "MAX_ENTRIES", 40)
    eng = PerfEngine(hw)
    assert fingerprint(eng.run(prog, log=True), hw) == want
    assert eng.dev.memo.store.entries <= 41 and eng.dev.memo.misses > 100
    assert eng.dev.memo.hits > 0


def test_store_shared_across_channel_counts():
    """The store depends on the timing tables only: a run on 4 channels reuses (and extends) what
    a run on 2 channels recorded, with identical results."""
    clear_stores()
    for channels in (2, 4, 2):
        hw = variant(TINY, channels=channels)
        comp = compile_generation(get_model("tiny"), hw, [1, 2, 3], 2)
        want = fingerprint(PerfEngine(hw, memo=False).run(comp.program, log=True), hw)
        eng = PerfEngine(hw)
        assert fingerprint(eng.run(comp.program, log=True), hw) == want
    assert eng.dev.memo.hits > 0 and len(memo_mod._stores()) == 1


def test_stores_are_per_thread():
    # A Dask worker runs simulations in several threads; an engine mutates its store as it runs,
    # so two threads must never share one (the sweep test once saw wrong energy counters).
    import threading

    key = ("tables", 1)
    mine = memo_mod.shared_store(key)
    assert memo_mod.shared_store(key) is mine
    seen = []
    t = threading.Thread(target=lambda: seen.append(memo_mod.shared_store(key)))
    t.start()
    t.join()
    assert seen and seen[0] is not mine


def test_wr_elem_dispatched_while_its_channel_is_busy():
    """A WR_ELEM asks for its commands at its wave generator's pace from dispatch: dispatched
    while the channel still streams a MAC, its commands depend on how far before the channel's
    last command it came (the memo keys that, up to the last request's offset). Three MACs of
    different lengths put the same WR_ELEM at three such distances."""
    hw = variant(TINY, channels=2)
    elem = I(Op.WR_ELEM, src=0, n=64, vec=0, region_row=40, n_local=8, vec_len=16, elem=0)
    prog = [x for k in (4, 6, 8, 6, 4) for x in
            (I(Op.MAC_ABK, ch_mask=3, row=5, col=0, ncols=k, gb_col=0), elem)] + [I(Op.EOC)]
    assert_identical(prog, hw, min_hits=0.1)

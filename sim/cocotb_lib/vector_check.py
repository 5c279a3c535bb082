"""Check a vector-unit program on the RTL against the golden model and the ISS.

:func:`check_vector_unit` runs one program (a scratchpad image and vector instructions) three
ways -- :class:`pimgpt.sim.golden.GoldenMachine` (the bit-exact spec),
:class:`pimgpt.core.vu.iss.VectorISS` (the microcode's cycles and issue trace) and the RTL
(``VectorUnitTop`` through :class:`~.vector_tb.VectorUnitTB`) -- and compares them on
scoreboards: the whole scratchpad, every ``ARGMAX``/``ARGMAXC`` register write, every logit the
tap delivered, each instruction's cycles and (with ``trace``) every micro-operation's issue cycle.
The verification suite (``tests/cocotb/cocotb_vu.py``) and the wide-unit bench
(:mod:`pimgpt.apps.bench_rtl_vu_wide`) share it.
"""

from __future__ import annotations

import numpy as np
from cocotb.triggers import ClockCycles

from pimgpt.core.config import HwConfig, hw_from_dict
from pimgpt.core.isa import I, Op
from pimgpt.core.vu.cost import microcode_for
from pimgpt.core.vu.iss import VectorISS
from pimgpt.core.vu.uisa import Pipeline
from pimgpt.hdl.isa_layout import instr_word

from .scoreboard import Scoreboard
from .vector_tb import VectorUnitTB

__all__ = ["check_vector_unit", "vu_hw", "SHAPE"]

#: Fields whose product is an instruction's element count (ROPE: twice ``half * nhead``).
SHAPE = ("n", "rows", "seg", "nseg", "half", "nhead")


def vu_hw(lanes: int, words: int) -> HwConfig:
    """``tiny-rtl`` with ``lanes`` vector lanes and a ``words``-word scratchpad (the golden
    model's scratchpad is the hardware's)."""
    return hw_from_dict({"base": "tiny-rtl", "name": f"tiny-rtl-vu{lanes}",
                         "asic": {"vector_lanes": lanes, "scratchpad_words": words}})


def _expected(sp: np.ndarray, prog: list, lanes: int, lat: Pipeline):
    """The golden model after ``prog``; the ISS's cycles, trace and argmax register writes."""
    from pimgpt.sim.golden import GoldenMachine

    golden = GoldenMachine(vu_hw(lanes, len(sp)))
    golden.sp[:] = sp.view(np.float32)
    golden.run(prog + [I(Op.EOC)])
    iss = VectorISS(microcode_for(lanes, lat), sp.copy())
    cycles, trace, sregs = [], [], []
    for ins in prog:
        iss.trace = []
        cycles.append(iss.run(ins.op, ins.fields()).cycles)
        trace += iss.trace
        if ins.op in (Op.ARGMAX, Op.ARGMAXC):  # the chain's steps: the ISS (tests/test_vu.py)
            sregs.append(ins["reg"] << 32 | iss.fe_regs[ins["reg"]])
    # ...and each register's last value: the golden model's
    regs = {ins["reg"] for ins in prog if ins.op in (Op.ARGMAX, Op.ARGMAXC)}
    assert {v >> 32: v & 0xFFFFFFFF for v in sregs} == {r: golden.regs[r] for r in regs}
    return golden, cycles, trace, sregs


async def check_vector_unit(dut, sp: np.ndarray, prog: list, *, lanes: int, seed: int = 0,
                            prefix: str = "", trace: bool = False,
                            pipeline: dict | None = None) -> dict:
    """Run ``prog`` on the unit from the scratchpad ``sp`` and compare it with golden and ISS.

    Parameters
    ----------
    dut : cocotb handle
        The top level holding a ``VectorUnitTop`` (ports ``<prefix><port>``) with a
        ``len(sp)``-word scratchpad.
    sp : numpy.ndarray of uint32
        The scratchpad's initial contents (every word; the RTL's starts zeroed).
    prog : list of Instr
        Vector-unit instructions.
    lanes : int
    seed : int
        Seeds the driver's idle gaps and host-port idle cycles.
    prefix : str
    trace : bool
        Also compare every micro-operation's issue cycle with the ISS's trace.
    pipeline : dict, optional
        ``uisa.Pipeline`` keywords of the unit (its latencies and issue width).

    Returns
    -------
    dict
        One scoreboard summary per comparison, plus ``instructions``, ``elements``, ``cycles``
        (the RTL's total) and ``sreg_idx`` (the registers written, in order).
    """
    lat = Pipeline(**(pipeline or {}))
    golden, want_cycles, want_trace, want_sregs = _expected(sp, prog, lanes, lat)

    tb = VectorUnitTB(dut, lanes, seed, prefix=prefix)
    await tb.reset()
    await tb.load(sp)
    tb.start(trace=trace)
    cycles, got_trace = [], []
    for ins in prog:
        mark = len(tb.issues)
        c, t0 = await tb.send(instr_word(ins))
        cycles.append(c)
        got_trace += [(pc, t - t0) for t, pc in tb.issues[mark:]]
    await ClockCycles(tb.dut.clk, 3)
    got_sp = await tb.dump(len(sp))

    boards = {
        "scratchpad": (golden.sp.view(np.uint32).tolist(), got_sp.tolist(), None),
        "argmax registers": (want_sregs, [r << 32 | v for r, v in tb.sregs],
                             lambda v: f"R{v >> 32} = {v & 0xFFFFFFFF}"),
        "logits": ([int(w) for x in golden.logits for w in x.view(np.uint32)],
                   [-1 if w is None else w for w in tb.logits], None),
        "cycles vs ISS": (want_cycles, cycles, str),
    }
    if trace:  # (pc, cycle) packed into one integer per micro-operation
        boards["issue trace vs ISS"] = ([pc << 32 | t for pc, t in want_trace],
                                        [pc << 32 | t for pc, t in got_trace],
                                        lambda v: f"pc {v >> 32} at cycle {v & 0xFFFFFFFF}")
    summary = {}
    for name, (want, got, fmt) in boards.items():
        board = Scoreboard(name, fmt=fmt) if fmt else Scoreboard(name)
        board.add_expected(want)
        board.compare_all(got)
        summary[name] = board.summary()
    summary["instructions"] = len(prog)
    summary["elements"] = int(sum(np.prod([ins.args.get(f, 1) for f in SHAPE]) *
                                  (2 if ins.op is Op.ROPE else 1) for ins in prog))
    summary["cycles"] = int(sum(cycles))
    summary["sreg_idx"] = [i for i, _ in tb.sregs]
    return summary

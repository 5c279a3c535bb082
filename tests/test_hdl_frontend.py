"""The front end under Amaranth's simulator: two dispatch pointers (PIM and ASIC chains), barriers,
the register operand of ``RD_VEC``, the end of a program (``EOC``, a missing ``EOC``, an unknown
opcode)."""

import random

import pytest
from amaranth.hdl import Module
from amaranth.sim import Simulator

from pimgpt.core.isa import FLAG_VEC_FROM_REG, I, Op
from pimgpt.hdl.frontend import Frontend
from pimgpt.hdl.isa_layout import InstrWord, instr_word

pytestmark = pytest.mark.filterwarnings("ignore:.*created but never used")


def _mac(row):
    return I(Op.MAC_ABK, ch_mask=1, row=row, col=0, ncols=1, gb_col=0, acc=0)


def _vadd(dst):
    return I(Op.VADD, dst=dst, a=0, b=0, n=1)


def _rd_vec_reg(reg):
    return I(Op.RD_VEC, FLAG_VEC_FROM_REG, dst=0, n=16, vec=reg, region_row=0, n_local=1,
             vec_len=16)


def _run(words, *, busy=(), max_cycles=400, seed=0, p_ready=0.8):
    """Load ``words`` (instruction integers), start, and record every dispatch as (cycle, side,
    instruction word) until the program stops. ``busy``: cycles in which both sides report busy
    (the engines accept instructions but have not finished); ``p_ready``: probability that each
    side takes an instruction in a cycle."""
    fe = Frontend(prog_depth=16, out_depth=16)
    rng = random.Random(seed)
    log, status = [], {}

    async def bench(ctx):
        for addr, w in enumerate(words):
            ctx.set(fe.prog_wr.en, 1)
            ctx.set(fe.prog_wr.addr, addr)
            ctx.set(fe.prog_wr.data, w)
            await ctx.tick()
        ctx.set(fe.prog_wr.en, 0)
        ctx.set(fe.start, 1)
        await ctx.tick()
        ctx.set(fe.start, 0)
        for cycle in range(max_cycles):
            idle = cycle not in busy
            ctx.set(fe.pim_idle, idle)
            ctx.set(fe.vu_idle, idle)
            ctx.set(fe.pim.ready, rng.random() < p_ready)
            ctx.set(fe.vu.ready, rng.random() < p_ready)
            for side, port in (("pim", fe.pim), ("vu", fe.vu)):
                if ctx.get(port.valid) and ctx.get(port.ready):
                    log.append((cycle, side, ctx.get(port.payload.as_value())))
            if not ctx.get(fe.running):
                break
            await ctx.tick()
        status.update(done=ctx.get(fe.done), error=ctx.get(fe.error), n_out=ctx.get(fe.n_out))

    m = Module()
    m.submodules.fe = fe
    sim = Simulator(m)
    sim.add_clock(1e-9)
    sim.add_testbench(bench)
    sim.run()
    return log, status


def test_two_sides_dispatch_independently_between_barriers():
    prog = [_mac(1), _mac(2), _mac(3), _vadd(10), _vadd(11), I(Op.SYNC), _vadd(12), _mac(4),
            I(Op.SETR, reg=2, imm=7), I(Op.OUT, reg=2), I(Op.EOC)]
    words = [instr_word(i) for i in prog]
    log, status = _run(words, busy=range(0, 20), p_ready=1.0)
    assert status == {"done": 1, "error": 0, "n_out": 1}
    pim = [w for _, s, w in log if s == "pim"]
    vu = [w for _, s, w in log if s == "vu"]
    assert pim == [words[i] for i in (0, 1, 2, 7)]  # each side in program order
    assert vu == [words[i] for i in (3, 4, 6)]
    t = {w: c for c, _, w in log}
    # The first ASIC instruction does not wait behind the three PIM instructions before it...
    assert t[words[3]] <= t[words[0]] + 1
    # ...and both sides start together after the barrier, once both are idle (busy until 20).
    assert t[words[6]] == t[words[7]] == 21
    for seed in range(4):  # under back-pressure: the same order per side, the same end
        log2, status2 = _run(words, busy=range(0, 20), seed=seed, p_ready=0.5)
        assert status2 == status and [e[1:] for e in log2 if e[1] == "pim"] == \
            [e[1:] for e in log if e[1] == "pim"]
        assert [e[1:] for e in log2 if e[1] == "vu"] == [e[1:] for e in log if e[1] == "vu"]


def test_register_operand_waits_for_the_asic_side():
    """RD_VEC with a register operand after SETR: it leaves once the ASIC pointer has passed it,
    with R[vec] substituted and the flag cleared."""
    prog = [I(Op.SETR, reg=3, imm=9), _vadd(1), _rd_vec_reg(3), I(Op.EOC)]
    log, status = _run([instr_word(i) for i in prog])
    assert status["done"] and not status["error"]
    (_, _, word), = [e for e in log if e[1] == "pim"]
    ins = InstrWord.from_bits(word)
    assert ins.op.name == "RD_VEC" and ins.flags == 0 and ins.args.rd_vec.vec == 9
    assert [e[0] for e in log if e[1] == "vu"][0] <= [e[0] for e in log if e[1] == "pim"][0]


@pytest.mark.parametrize("case", ["unknown opcode", "no EOC"])
def test_bad_programs_stop_with_error(case):
    words = [instr_word(_mac(1)), instr_word(_vadd(1))]
    if case == "unknown opcode":
        words += [0x7F, instr_word(I(Op.EOC))]
    log, status = _run(words, max_cycles=100)
    assert status["done"] == 1 and status["error"] == 1
    assert len(log) == 2  # what came before was dispatched

"""cocotb test of the vector unit (``VectorUnitTop``) against the golden model.

Stimulus (seeded by ``seed``): a scratchpad of random fp32 words drawn from several
distributions plus every corner value (zeros, subnormals, Inf, NaN, extremes, exp clamp edges),
and a program of every vector-unit instruction over it (element-wise functions, binary ops,
moves in both overlap directions, reductions, softmax and layernorm of several lengths, in place
too, argmax with ties and NaNs). The driver sends instructions with random idle gaps and honours
``ready`` (the unit takes one instruction at a time; :class:`~pimgpt.sim.cocotb_lib.vector_tb.
VectorUnitTB`). Scoreboards compare, bit for bit, the whole scratchpad with
:class:`pimgpt.sim.golden.GoldenMachine` after the same program, every ``ARGMAX`` register write
and every tapped logit word, and each instruction's cycle count with the microcode ISS.
Parameters: ``seed``, ``nelem``, ``prefix`` (of the unit's ports); the summary is reported.
"""

from __future__ import annotations

import cocotb
import numpy as np
from cocotb.triggers import ClockCycles

from pimgpt.core import numerics as nx
from pimgpt.core.config import load_hw
from pimgpt.core.isa import I, Op
from pimgpt.hdl.isa_layout import instr_word
from pimgpt.hdl.vu_microcode import VectorISS, f32
from pimgpt.sim.cocotb_lib.exchange import params, report
from pimgpt.sim.cocotb_lib.scoreboard import Scoreboard
from pimgpt.sim.cocotb_lib.vector_tb import VectorUnitTB
from pimgpt.sim.golden import GoldenMachine

WORDS = 16384
CORNERS = [0, 0x80000000, 1, 0x80000001, 0x007FFFFF, 0x807FFFFF, 0x00800000, 0x80800000,
           0x7F800000, 0xFF800000, 0x7FC00000, 0xFFC00001, 0x7F800001, 0x3F800000, 0xBF800000,
           0x7F7FFFFF, 0xFF7FFFFF, f32(89.0), f32(-104.0), f32(88.72), f32(89.01), f32(-103.99),
           f32(-104.01), f32(0.5), f32(-0.5), f32(1e-30), f32(-1e-30), f32(1e30), f32(-1e30),
           f32(100.0), f32(-100.0), f32(3.0), f32(-3.0), f32(1e-38), f32(2.0 ** -126)]


def stimulus(seed: int, n_elem: int):
    """Scratchpad contents and a program exercising every vector-unit instruction."""
    rng = np.random.default_rng(seed)
    sp = np.zeros(WORDS, dtype=np.uint32)
    pieces = [
        np.array(CORNERS, dtype=np.uint32),
        nx.bits_from_f32(rng.normal(0, 3, n_elem).astype(np.float32)),
        nx.bits_from_f32((rng.normal(0, 1, n_elem) * np.exp2(rng.integers(-60, 60, n_elem)))
                         .astype(np.float32)),
        rng.integers(0, 2**32, n_elem, dtype=np.uint64).astype(np.uint32),
    ]
    src = np.concatenate(pieces)[:4096]
    n = len(src)
    sp[:n] = src
    sp[4096:4096 + n] = nx.bits_from_f32(rng.normal(0, 2, n).astype(np.float32))
    out = 8192
    prog = []
    for op in (Op.VEXP, Op.VRECIP, Op.VRSQRT, Op.VGELU):
        prog.append(I(op, dst=out, src=0, n=n))
        out += n
    prog += [
        I(Op.VADD, dst=out, a=0, b=4096, n=n),
        I(Op.VMUL, dst=out + n, a=0, b=4096, n=n),
        I(Op.VSCALE, dst=out + 2 * n, a=4096, n=n, scale_f32=f32(0.125)),
        I(Op.VFILL, dst=out + 3 * n, n=37, value_f32=0x7FC00001),
        I(Op.VMOV, dst=out + 3 * n + 3, src=out + 3 * n, n=40),  # overlap, dst > src
        I(Op.VMOV, dst=out + 2 * n, src=out + 2 * n + 5, n=40),  # overlap, dst < src
        I(Op.VREDUCE, dst=out + 3 * n + 100, src=4096, n=50, k=3),
        I(Op.VREDUCE, dst=out + 3 * n + 200, src=0, n=40, k=1),  # flushes subnormals
        I(Op.VMAX, dst=out + 3 * n + 300, src=4096, n=100),
        I(Op.VMAX, dst=out + 3 * n + 301, src=0, n=30),  # NaNs among corners
    ]
    # Reductions of several lengths on normal data (and one with specials).
    base = out + 4 * n
    for k, length in enumerate((1, 7, 64, 300)):
        prog.append(I(Op.SOFTMAX, dst=base + 400 * k, src=4096 + 16 * k, n=length))
    prog.append(I(Op.SOFTMAX, dst=4096 + 700, src=4096 + 700, n=50))  # in place
    prog.append(I(Op.SOFTMAX, dst=base + 1700, src=0, n=20))  # Inf/NaN inputs
    prog += [
        I(Op.LAYERNORM, dst=base + 2000, src=4096, gamma=4096 + 64, beta=4096 + 128, n=64,
          eps_f32=f32(1e-5)),
        I(Op.LAYERNORM, dst=4096 + 900, src=4096 + 900, gamma=4096 + 64, beta=4096 + 128, n=48,
          eps_f32=f32(1e-5)),  # in place
        I(Op.LAYERNORM, dst=base + 2100, src=4096 + 2, gamma=4096, beta=4096, n=5, eps_f32=0),
    ]
    # ARGMAX: ties (first wins), NaN (first NaN wins), a plain vector.
    sp[3000:3008] = [f32(1.0), f32(5.0), f32(-2.0), f32(5.0), f32(0.0), f32(5.0), 0, 0]
    sp[3010:3016] = [f32(1.0), 0x7FC00000, f32(9.0), 0xFFC00001, f32(2.0), f32(3.0)]
    prog += [I(Op.ARGMAX, reg=3, src=3000, n=8), I(Op.ARGMAX, reg=7, src=3010, n=6),
             I(Op.ARGMAX, reg=15, src=4096, n=257)]
    if base + 2105 > WORDS:
        raise ValueError(f"nelem={n_elem} is too large for a {WORDS}-word scratchpad")
    return sp, prog


@cocotb.test()
async def vector_unit_vs_golden(dut):
    p = params()
    seed = p["seed"]
    sp, prog = stimulus(seed, p["nelem"])
    golden = GoldenMachine(load_hw("tiny-rtl"))
    golden.sp[:] = sp.view(np.float32)
    golden.run(prog + [I(Op.EOC)])
    iss = VectorISS(sp.copy())
    want_cycles = [iss.run(ins.op, ins.fields()) for ins in prog]

    tb = VectorUnitTB(dut, seed, prefix=p.get("prefix", ""))
    await tb.reset()
    await tb.load(sp)
    tb.start()
    cycles = [await tb.send(instr_word(ins)) for ins in prog]
    await ClockCycles(tb.dut.clk, 3)
    got_sp = await tb.dump(WORDS)

    boards = {
        "scratchpad": (golden.sp.view(np.uint32).tolist(), got_sp.tolist(), None),
        "argmax registers": ([golden.regs[r] for r in (3, 7, 15)], [v for _, v in tb.sregs], str),
        "logit tap": (np.concatenate([x.view(np.uint32) for x in golden.logits]).tolist(),
                      tb.taps, None),
        "cycles vs ISS": (want_cycles, cycles, str),
    }
    summary = {}
    for name, (want, got, fmt) in boards.items():
        board = Scoreboard(name, fmt=fmt) if fmt else Scoreboard(name)
        board.add_expected(want)
        board.compare_all(got)
        summary[name] = board.summary()
    summary["instructions"] = len(prog)
    summary["elements"] = int(sum(ins["n"] for ins in prog if "n" in ins.args))
    summary["cycles"] = int(sum(cycles))
    summary["sreg_idx"] = [i for i, _ in tb.sregs]
    report("vector_unit", summary)
    for name, s in summary.items():
        if isinstance(s, dict):
            assert s["mismatched"] == 0 and s["unexpected"] == 0 and not s["pending"], \
                (name, s["reports"])

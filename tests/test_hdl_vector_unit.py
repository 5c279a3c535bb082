"""Vector unit: microcode (ISS) bit-exact vs core/nonlinear and the golden model; the RTL vs both.

These tests run the microcode instruction-set simulator; the cocotb test of the RTL
(``tests/cocotb/cocotb_vu.py``) checks ``VectorUnitTop`` bit for bit against the golden model and
cycle for cycle against the ISS.
"""


import numpy as np
import pytest

from pimgpt.core import nonlinear as nl
from pimgpt.core import numerics as nx
from pimgpt.core.config import load_hw
from pimgpt.core.isa import I, Op
from pimgpt.hdl import vu_microcode as mc
from pimgpt.hdl.vector_unit import VectorUnit, VectorUnitTop
from pimgpt.sim.golden import GoldenMachine

CORNERS = np.array([0, 0x80000000, 1, 0x80000001, 0x007FFFFF, 0x00800000, 0x80800000,
                    0x7F800000, 0xFF800000, 0x7FC00000, 0xFFC00001, 0x7F7FFFFF, 0xFF7FFFFF,
                    mc.f32(89.0), mc.f32(89.01), mc.f32(-104.0), mc.f32(-104.01), mc.f32(0.5),
                    mc.f32(-3.0), mc.f32(1e-30), mc.f32(1e30), mc.f32(-1e30)], dtype=np.uint32)


def _inputs(seed: int, n: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    a = nx.bits_from_f32(rng.normal(0, 3, n).astype(np.float32))
    b = rng.integers(0, 2**32, n, dtype=np.uint64).astype(np.uint32)
    c = nx.bits_from_f32((rng.normal(0, 1, n) * np.exp2(rng.integers(-50, 50, n)))
                         .astype(np.float32))
    return np.concatenate([CORNERS, a, b, c])


@pytest.mark.parametrize("lanes", [16, 4, 1])
@pytest.mark.parametrize("op,fn", [(Op.VEXP, nl.exp), (Op.VRECIP, nl.reciprocal),
                                   (Op.VRSQRT, nl.rsqrt), (Op.VGELU, nl.gelu)])
def test_microcode_elementwise_bit_exact(op, fn, lanes):
    x = _inputs(3, 40 if lanes == 1 else 120)
    n = len(x)
    sp = np.zeros(2 * n, dtype=np.uint32)
    sp[:n] = x
    iss = mc.VectorISS(sp, lanes=lanes)
    cycles = iss.run(op, (n, 0, n))
    want = nx.bits_from_f32(fn(nx.f32_from_bits(x)))
    assert np.array_equal(sp[n:], want)
    # One pass of the branch-free routine serves `lanes` elements.
    passes = -(-n // lanes)
    assert passes * 20 < cycles < passes * 200


def test_microcode_reductions_match_golden():
    hw = load_hw("tiny-rtl")
    rng = np.random.default_rng(7)
    for trial in range(12):
        n = int(rng.integers(1, 70))
        x = rng.normal(0, 4, n).astype(np.float32)
        if trial % 4 == 1:
            x[rng.integers(0, n)] = np.nan
        if trial % 4 == 2:
            x[:] = 0.0
            x[rng.integers(0, n)] = -0.0
        g = rng.normal(1, 0.1, n).astype(np.float32)
        sp = np.zeros(hw.asic.scratchpad_words, dtype=np.float32)
        sp[:n], sp[100:100 + n], sp[200:200 + n] = x, g, g[::-1]
        sp[700:700 + len(CORNERS)] = CORNERS.view(np.float32)
        prog = [I(Op.VMAX, dst=300, src=0, n=n), I(Op.SOFTMAX, dst=400, src=0, n=n),
                I(Op.LAYERNORM, dst=500, src=0, gamma=100, beta=200, n=n, eps_f32=mc.f32(1e-5)),
                I(Op.ARGMAX, reg=2, src=0, n=n), I(Op.VREDUCE, dst=600, src=0, n=n, k=1),
                I(Op.VREDUCE, dst=800, src=700, n=len(CORNERS), k=1),
                I(Op.VREDUCE, dst=900, src=700, n=len(CORNERS) // 2, k=2),
                I(Op.VMOV, dst=1, src=0, n=n)]
        golden = GoldenMachine(hw)
        golden.sp[:] = sp
        golden.run(prog + [I(Op.EOC)])
        iss = mc.VectorISS(sp.view(np.uint32).copy())
        for ins in prog:
            iss.run(ins.op, ins.fields())
        assert np.array_equal(iss.sp, golden.sp.view(np.uint32)), f"trial {trial}"
        assert iss.sregs[2] == golden.regs[2]


def test_microcode_assembler_rejects_bad_programs():
    a = mc.Asm()
    a.j("nowhere")
    with pytest.raises(ValueError, match="undefined microcode label"):
        a.words()
    a = mc.Asm()
    a.label("x")
    with pytest.raises(ValueError, match="duplicate"):
        a.label("x")
    with pytest.raises(ValueError, match="register"):
        mc.encode(mc.UOp.ADD, rd=32)
    word = mc.encode(mc.UOp.FADD, 3, 4, 5, imm=0x3F800000)
    assert mc.decode(word) == (mc.UOp.FADD, 3, 4, 5, True, 0x3F800000, False)
    assert mc.decode(mc.encode(mc.UOp.CMOV, 1, 2, 3, vec=True))[-1] is True
    with pytest.raises(ValueError, match="lanes"):
        mc.build_microcode(3)


def test_microcode_covers_every_vector_op():
    code = mc.build_microcode()
    assert set(code.entries) == set(mc.VU_OPS)
    assert len(code.words) < 1024


def test_vector_unit_parameter_validation():
    with pytest.raises(TypeError):
        VectorUnit(sp_addr_width="14")
    with pytest.raises(ValueError):
        VectorUnit(sp_addr_width=40)
    with pytest.raises(ValueError):
        VectorUnit(sp_addr_width=14, add_latency=0)
    with pytest.raises(ValueError):
        VectorUnitTop(words=3)


def test_iss_fast_fp_paths_match_the_contract():
    rng = np.random.default_rng(9)
    n = 20000
    a = rng.integers(0, 2**32, n, dtype=np.uint64).astype(np.uint32)
    # Products near the bottom of the range (the rounding/flush corner) and ordinary values.
    e = rng.integers(-75, -40, n)
    b = nx.bits_from_f32((rng.uniform(1, 2, n) * np.exp2(e)).astype(np.float32))
    c = nx.bits_from_f32((rng.uniform(1, 2, n) * np.exp2(-e - 88)).astype(np.float32))
    for x, y in ((a, a[::-1]), (b, c), (b, a), (CORNERS.repeat(len(CORNERS)),
                                           np.tile(CORNERS, len(CORNERS)))):
        add = nx.bits_from_f32(nx.f32_add(nx.f32_from_bits(x), nx.f32_from_bits(y)))
        mul = nx.bits_from_f32(nx.f32_mul(nx.f32_from_bits(x), nx.f32_from_bits(y)))
        got_add = [mc.fast_add(int(p), int(q)) for p, q in zip(x, y, strict=True)]
        got_mul = [mc.fast_mul(int(p), int(q)) for p, q in zip(x, y, strict=True)]
        assert np.array_equal(np.array(got_add, dtype=np.uint32), add)
        assert np.array_equal(np.array(got_mul, dtype=np.uint32), mul)

"""The vector unit's micro-architecture: micro-word, cycle rules, routines vs the golden functions,
timing mode vs functional mode, and the cost model derived from them (pimgpt/core/vu)."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pimgpt.core import nonlinear as nl
from pimgpt.core import nonlinear_llama as nll
from pimgpt.core import numerics as nm
from pimgpt.core.config import hw_variant, load_hw
from pimgpt.core.isa import I, Op
from pimgpt.core.vu import routines_red, uisa
from pimgpt.core.vu.asm import Asm, AsmError, SReg
from pimgpt.core.vu.cost import VectorUnitModel, microcode_for, pipeline_of
from pimgpt.core.vu.iss import Microcode, VectorISS
from pimgpt.core.vu.uisa import BSel, Pipeline, UOp, UWord

LANES = (16, 32, 64, 128)
PIPE = Pipeline(add=2, mul=2, load=2, issue=2)


def b32(x) -> np.ndarray:
    return np.asarray(x, dtype=np.float32).view(np.uint32)


# ---------------------------------------------------------------------------------------------
# The micro-word: one field table
# ---------------------------------------------------------------------------------------------
@settings(max_examples=200, deadline=None)
@given(st.sampled_from(list(UOp)), *[st.integers(0, 31) for _ in range(4)],
       st.sampled_from(list(BSel)), st.integers(0, 15), st.integers(0, 2**32 - 1))
def test_word_round_trip(op, rd, ra, rb, rc, bsel, mode, imm):
    w = UWord(op, rd, ra, rb, rc, bsel, mode, imm)
    word = uisa.encode(w)
    assert 0 <= word < 2**uisa.WORD_BITS
    assert uisa.decode(word) == w


def test_word_layout_is_the_field_table():
    assert uisa.WORD_BITS == 64
    layout = uisa.amaranth_layout()
    assert layout.size == 64
    offset = 0
    for name, width in uisa.FIELDS:
        assert layout[name].offset == offset
        assert layout[name].shape.width == width if hasattr(layout[name].shape, "width") else True
        offset += width
    # the enum-typed fields carry the micro-operations and operand sources by name
    op_enum = layout["op"].shape
    assert {m.name for m in op_enum} == {m.name for m in UOp}
    word = uisa.encode(UWord(UOp.VMAD, rd=1, imm=0xDEADBEEF))
    assert word & 0x3F == UOp.VMAD and word >> 32 == 0xDEADBEEF


def test_bad_fields_are_refused():
    with pytest.raises(ValueError, match="rd=32"):
        UWord(UOp.VADD, rd=32)
    with pytest.raises(ValueError, match="mode=16"):
        UWord(UOp.VADD, mode=16)
    with pytest.raises(ValueError, match="lanes"):
        uisa.check_lanes(48)
    with pytest.raises(ValueError, match="issue"):
        Pipeline(issue=3)


# ---------------------------------------------------------------------------------------------
# Cycle rules, on hand-written micro-programs
# ---------------------------------------------------------------------------------------------
def _cycles(build, pipe: Pipeline = PIPE, lanes: int = 16) -> int:
    a = Asm(lanes, pipe)
    build(a)
    a.done()
    words, _ = a.assemble()
    mc = Microcode(words, {Op.VADD: 0}, lanes, pipe)
    sp = np.zeros(4096, np.uint32)
    functional = VectorISS(mc, sp).run(Op.VADD, [0] * 7).cycles
    assert VectorISS(mc, timing_only=True).run(Op.VADD, [0] * 7).cycles == functional
    return functional


def test_dependent_chain_waits_for_each_result():
    def chain(a, n):
        r = a.vreg()
        a.v(UOp.VBCAST, r, None, 0x3F800000)  # cycle 1, ready at 2
        for _ in range(n):
            r2 = a.vreg()
            a.mad(r2, r, r, 0x3F800000)  # Lm + La = 4 cycles each
            r = r2
    # dispatch 0, BCAST 1, MADs at 2, 6, 10, DONE when the last is ready (14): 15 cycles
    assert _cycles(lambda a: chain(a, 3)) == 15
    assert _cycles(lambda a: chain(a, 3), Pipeline(add=3, mul=1)) == 15
    assert _cycles(lambda a: chain(a, 3), Pipeline(add=3, mul=2)) == 18


def test_independent_operations_issue_every_cycle_and_pair_across_classes():
    def prog(a, classes):
        k = a.vreg()
        a.v(UOp.VBCAST, k, None, 0x3F800000)  # cycle 1
        for c in classes:
            r = a.vreg()
            if c == "fp":
                a.v(UOp.VFMUL, r, k, k)  # ready 2 cycles later
            else:
                a.v(UOp.VXOR, r, k, 1)

    # four FP ops: cycles 2..5, the last ready at 7, DONE at 7: 8 cycles
    assert _cycles(lambda a: prog(a, ["fp"] * 4)) == 8
    # FP and INT alternate: two per cycle (2, 2, 3, 3); last FP ready at 5 -> DONE at 5
    assert _cycles(lambda a: prog(a, ["fp", "int"] * 2)) == 6
    # single issue: one per cycle (2..5), FP at 4 ready at 6
    assert _cycles(lambda a: prog(a, ["fp", "int"] * 2), Pipeline(issue=1)) == 7


def test_pair_needs_independence():
    def prog(a):
        k, r1, r2 = a.vreg(), a.vreg(), a.vreg()
        a.v(UOp.VBCAST, k, None, 7)  # 1
        a.v(UOp.VXOR, r1, k, 1)  # 2 (INT), ready 3
        a.v(UOp.VFMUL, r2, r1, k)  # FP but reads r1: waits for 3, ready 5

    assert _cycles(prog) == 6


def test_write_port_conflict_delays_issue():
    def prog(a):
        k, r1, r2 = a.vreg(), a.vreg(), a.vreg()
        a.v(UOp.VBCAST, k, None, 0x3F800000)  # 1
        a.mad(r1, k, k, 0x3F800000)  # 2 -> port F at 6
        x = a.vreg()
        a.v(UOp.VXOR, x, k, 0)  # INT, pairs with the MAD at 2 (port I at 3)
        a.v(UOp.VFMUL, r2, k, k)  # 3 -> F at 5
        r3 = a.vreg()
        a.v(UOp.VFMUL, r3, k, k)  # 4 -> F at 6: taken by the MAD -> issues at 5, ready 7

    assert _cycles(prog) == 8


def test_loops_cost_nothing_per_iteration_and_zero_trips_skip():
    def prog(a, n):
        cnt = SReg(8)
        a.li(cnt, n)
        k = a.vreg()
        a.v(UOp.VBCAST, k, None, 1)
        with a.loop(cnt):
            r = a.vreg()
            a.v(UOp.VXOR, r, k, 1)
            a.v(UOp.VXOR, r, r, 1)

    base = _cycles(lambda a: prog(a, 0))
    assert _cycles(lambda a: prog(a, 1)) == base + 2
    assert _cycles(lambda a: prog(a, 50)) == base + 100


def test_assembler_refuses_bad_code():
    a = Asm(16, PIPE)
    r = a.vreg()
    a.v(UOp.VXOR, r, r, 1)  # read before written
    a.done()
    with pytest.raises(AsmError, match="read before"):
        a.assemble()
    a = Asm(16, PIPE)
    a.br(UOp.BEQ, SReg(0), SReg(0), "nowhere")
    a.done()
    with pytest.raises(AsmError, match="undefined label"):
        a.assemble()


# ---------------------------------------------------------------------------------------------
# Routines: bit-exact with the golden functions, for every lane count
# ---------------------------------------------------------------------------------------------
SPECIAL = np.float32([0.0, -0.0, np.inf, -np.inf, np.nan, 1e-40, -1e-40, 3e38, -3e38, 88.72,
                      -87.34, 1.0, -9.99])


def _data(rng, n: int, scale: float = 4.0) -> np.ndarray:
    x = (rng.standard_normal(n) * scale).astype(np.float32)
    x[: min(n, len(SPECIAL)) // 3] = SPECIAL[: min(n, len(SPECIAL)) // 3]
    return x


def _run(lanes: int, op: Op, fields: tuple, sp: np.ndarray):
    mc = microcode_for(lanes, PIPE)
    iss = VectorISS(mc, sp)
    st_f = iss.run(op, fields)
    st_t = VectorISS(mc, timing_only=True).run(op, fields)
    assert st_t.as_tuple() == st_f.as_tuple(), (op.name, fields)
    return iss, st_f


UNARY = {Op.VEXP: nl.exp, Op.VGELU: nl.gelu, Op.VRECIP: nl.reciprocal, Op.VRSQRT: nl.rsqrt}


@pytest.mark.parametrize("lanes", LANES)
def test_elementwise_routines_match_golden(lanes):
    rng = np.random.default_rng(lanes)
    for n in (1, lanes + 3, 9 * lanes + 5):
        x, y = _data(rng, n), _data(rng, n)
        x = x * np.float32(8.0) if n > 1 else x
        for op, fn in UNARY.items():
            sp = np.zeros(8192, np.uint32)
            sp[100:100 + n] = b32(x)
            _run(lanes, op, (4000, 100, n), sp)
            np.testing.assert_array_equal(sp[4000:4000 + n], b32(fn(x)), err_msg=op.name)
            assert not sp[4000 + n:].any()
        for op, fn in ((Op.VADD, nm.f32_add), (Op.VMUL, nm.f32_mul)):
            sp = np.zeros(8192, np.uint32)
            sp[100:100 + n], sp[2000:2000 + n] = b32(x), b32(y)
            _run(lanes, op, (100, 100, 2000, n), sp)  # in place on a
            np.testing.assert_array_equal(sp[100:100 + n], b32(fn(x, y)), err_msg=op.name)
        sp = np.zeros(8192, np.uint32)
        sp[100:100 + n] = b32(x)
        _run(lanes, Op.VSCALE, (4000, 100, n, int(b32(np.float32(-0.125)))), sp)
        np.testing.assert_array_equal(sp[4000:4000 + n], b32(nm.f32_mul(x, np.float32(-0.125))))


@pytest.mark.parametrize("lanes", LANES)
def test_vadd3_rounds_as_two_vadds(lanes):
    """VADD3 dst = a + (b + c): the microcode's bits are those of two VADDs (b + c rounded,
    then a + it) on short, partial and long vectors with NaN, infinities, zeros of both signs
    and subnormals; in place on a (the residual stream), and ``dst`` beyond touched nowhere."""
    rng = np.random.default_rng(lanes + 11)
    for n in (1, lanes + 3, 9 * lanes + 5):
        x, y, z = _data(rng, n, 64.0), _data(rng, n), rng.permutation(_data(rng, n))
        want = b32(nm.f32_add(x, nm.f32_add(y, z)))
        for dst in (100, 8000):
            sp = np.zeros(16384, np.uint32)
            sp[100:100 + n], sp[2000:2000 + n], sp[4000:4000 + n] = b32(x), b32(y), b32(z)
            _run(lanes, Op.VADD3, (dst, 100, 2000, 4000, n), sp)
            np.testing.assert_array_equal(sp[dst:dst + n], want)
            assert not sp[8000 + n:].any() and not sp[4000 + n:8000].any()
            assert (sp[100:100 + n] == (want if dst == 100 else b32(x))).all()


@pytest.mark.parametrize("lanes", LANES)
def test_move_fill_reduce_routines_match_golden(lanes):
    rng = np.random.default_rng(lanes + 1)
    for n in (1, 2 * lanes + 7):
        x = _data(rng, 3 * n)
        for dst, src in ((1000, 1000 + n // 2 + 1), (1000 + n // 2 + 1, 1000), (5000, 1000)):
            sp = np.zeros(8192, np.uint32)
            sp[1000:1000 + 3 * n] = b32(x)
            want = sp.copy()
            want[dst:dst + n] = sp[src:src + n].copy()
            _run(lanes, Op.VMOV, (dst, src, n), sp)  # memmove in both directions
            np.testing.assert_array_equal(sp, want)
        sp = np.zeros(8192, np.uint32)
        _run(lanes, Op.VFILL, (300, n, int(b32(np.float32(2.5)))), sp)
        assert (sp[300:300 + n] == b32(np.float32(2.5))).all() and not sp[300 + n:].any()
        for k in (1, 3):
            sp = np.zeros(8192, np.uint32)
            sp[1000:1000 + 3 * n] = b32(x)
            _run(lanes, Op.VREDUCE, (1000, 1000, n, k), sp)  # in place on part 0
            parts = x[:k * n].reshape(k, n)
            acc = nm.flush_f32(parts[0])
            for j in range(1, k):
                acc = nm.f32_add(acc, parts[j])
            np.testing.assert_array_equal(sp[1000:1000 + n], b32(acc))


@pytest.mark.parametrize("lanes", LANES)
def test_reduction_routines_match_golden(lanes):
    rng = np.random.default_rng(lanes + 2)
    for n in (1, 5, lanes, 6 * lanes, 3 * 128 + 5):  # 6 W: LAYERNORM fuses passes 2 and 3
        x = _data(rng, n)
        if n > 3:
            x[2] = np.nan if n % 2 else x[2]
        g, bta = _data(rng, n, 1.0), _data(rng, n, 0.2)
        sp = np.zeros(16384, np.uint32)
        sp[100:100 + n], sp[3000:3000 + n], sp[6000:6000 + n] = b32(x), b32(g), b32(bta)
        _run(lanes, Op.VMAX, (9000, 100, n), sp)
        assert sp[9000] == b32(nl.vmax(x))
        iss, _ = _run(lanes, Op.ARGMAX, (5, 100, n), sp)
        assert iss.fe_regs[5] == int(nm.f32_argmax(x))
        eps = int(b32(np.float32(1e-5)))
        _run(lanes, Op.LAYERNORM, (9000, 100, 3000, 6000, n, eps), sp)
        np.testing.assert_array_equal(sp[9000:9000 + n],
                                      b32(nl.layernorm(x, g, bta, np.float32(1e-5))))
        _run(lanes, Op.LAYERNORM, (100, 100, 3000, 6000, n, eps), sp)  # in place
        np.testing.assert_array_equal(sp[100:100 + n], sp[9000:9000 + n])


@pytest.mark.parametrize("lanes", LANES)
def test_argmax_chain_matches_one_argmax(lanes):
    """ARGMAX over a first piece then ARGMAXC over the rest (pieces of 1 word to several blocks,
    at any alignment): R[reg] after each step is numerics.f32_argmax_continue's, and after the
    last ARGMAX's over the whole vector; ties across cuts, NaNs and -0 included; the cost does
    not depend on where the piece lies (timing mode == functional mode in ``_run``)."""
    rng = np.random.default_rng(lanes + 11)
    for trial in range(6):
        n = int(rng.integers(2, 5 * lanes))
        x = _data(rng, n)
        if trial % 2:  # few distinct values: ties everywhere, across the cuts too
            x = rng.choice(np.float32([0.0, -0.0, 1.0, 1.0, np.nan, -np.inf]), n)
        cuts = sorted(set(rng.integers(1, n, size=int(rng.integers(1, 5))).tolist()))
        sp = np.zeros(16384, np.uint32)
        src = 100 + trial
        sp[src:src + n] = b32(x)
        iss, _ = _run(lanes, Op.ARGMAX, (7, src, cuts[0]), sp)
        mc = microcode_for(lanes, PIPE)
        for lo, hi in zip(cuts, cuts[1:] + [n], strict=True):
            prev = iss.fe_regs[7]
            st_f = iss.run(Op.ARGMAXC, (7, src, lo, hi - lo))
            timing = VectorISS(mc, timing_only=True).run(Op.ARGMAXC, (7, src, lo, hi - lo))
            assert timing.as_tuple() == st_f.as_tuple()
            assert iss.fe_regs[7] == nm.f32_argmax_continue(x[:hi], prev, lo)
        assert iss.fe_regs[7] == int(nm.f32_argmax(x)), (lanes, trial, cuts)


@pytest.mark.parametrize("lanes", LANES)
def test_layernorm_every_path_matches_golden_and_writes_only_dst(lanes):
    """LAYERNORM with fewer blocks than its peel of pass 4 (masked blocks beyond ``n``), exactly
    as many, more (the loop after the peel), with and without a partial last block (the fused
    and the split passes 2/3), at the model widths; nothing outside ``dst`` is written."""
    rng = np.random.default_rng(lanes + 7)
    peel = routines_red.LN_PEEL[lanes]
    sizes = {peel // 2 * lanes - 3, peel // 2 * lanes, peel * lanes, (peel + 3) * lanes + 5,
             768, 1600}
    eps = int(b32(np.float32(1e-5)))
    for n in sorted(sizes):
        # finite inputs (a special value would make every output NaN)
        x = (rng.standard_normal(n) * 4 + 1).astype(np.float32)
        g, bta = _data(rng, n, 1.0), _data(rng, n, 0.2)
        sp = np.zeros(16384, np.uint32)
        sp[100:100 + n], sp[5000:5000 + n], sp[7000:7000 + n] = b32(x), b32(g), b32(bta)
        before = sp.copy()
        _run(lanes, Op.LAYERNORM, (9000, 100, 5000, 7000, n, eps), sp)
        np.testing.assert_array_equal(sp[9000:9000 + n],
                                      b32(nl.layernorm(x, g, bta, np.float32(1e-5))), str(n))
        sp[9000:9000 + n] = 0
        np.testing.assert_array_equal(sp, before, f"n={n}: a word outside dst changed")


@pytest.mark.parametrize("lanes", LANES)
def test_folded_layernorm_routines_match_golden(lanes):
    """LNCENTRE, LNRSTD and VMADS against the golden functions, with a partial last block and
    without (LNRSTD's split and fused passes), special values, in place, and nothing written
    outside their outputs; LNRSTD's rstd and its ``tmp`` (= d) are LAYERNORM's bits."""
    rng = np.random.default_rng(lanes + 11)
    eps32 = np.float32(1e-5)
    eps = int(b32(eps32))
    for n in (1, 5, lanes, 6 * lanes, 3 * 128 + 5, 768, 1600):
        x = (rng.standard_normal(n) * 4 + 1).astype(np.float32)
        if n > 7 and n % 2:
            x[3] = np.inf  # every output NaN or Inf, as the golden says
        g, c, acc = _data(rng, n, 1.0), _data(rng, n, 0.2), _data(rng, n, 30.0)
        sp = np.zeros(16384, np.uint32)
        sp[100:100 + n], sp[3000:3000 + n], sp[5000:5000 + n] = b32(x), b32(g), b32(c)
        sp[7000:7000 + n] = b32(acc)
        before = sp.copy()
        _run(lanes, Op.LNCENTRE, (9000, 100, 3000, n), sp)
        np.testing.assert_array_equal(sp[9000:9000 + n], b32(nl.layernorm_centre(x, g)))
        _run(lanes, Op.LNRSTD, (12000, 100, 13000, n, eps), sp)
        d, rstd = nl.layernorm_stats(x, eps32)
        assert sp[12000] == b32(rstd), n
        np.testing.assert_array_equal(sp[13000:13000 + n], b32(d))
        # the LayerNorm's own bits: y = d * rstd * gamma + beta
        np.testing.assert_array_equal(
            b32(nm.f32_mad(nm.f32_mul(d, rstd), g, c)), b32(nl.layernorm(x, g, c, eps32)))
        _run(lanes, Op.VMADS, (9000, 7000, 12000, 5000, n), sp)
        want = nm.f32_add(nm.f32_mul(acc, np.float32(rstd)), c)
        np.testing.assert_array_equal(sp[9000:9000 + n], b32(want))
        changed = sp != before
        changed[9000:9000 + n] = changed[12000] = changed[13000:13000 + n] = False
        assert not changed.any(), f"n={n}: a word outside the outputs changed"
        _run(lanes, Op.VMADS, (7000, 7000, 12000, 5000, n), sp)  # in place
        np.testing.assert_array_equal(sp[7000:7000 + n], b32(want))
        _run(lanes, Op.LNCENTRE, (100, 100, 3000, n), sp)  # in place
        np.testing.assert_array_equal(sp[100:100 + n], b32(nl.layernorm_centre(x, g)))


@pytest.mark.parametrize("lanes", LANES)
def test_folded_rmsnorm_routines_match_golden(lanes):
    """RMSRSTD (RMSNORM's rstd bits) and VMULS (in place too) against the golden functions;
    nothing written outside their outputs."""
    rng = np.random.default_rng(lanes + 13)
    eps32 = np.float32(1e-6)
    for n in (1, 5, lanes + 3, 6 * lanes, 2048):
        x, acc = _data(rng, n), _data(rng, n, 30.0)
        sp = np.zeros(16384, np.uint32)
        sp[100:100 + n], sp[3000:3000 + n] = b32(x), b32(acc)
        before = sp.copy()
        _run(lanes, Op.RMSRSTD, (12000, 100, n, int(b32(eps32))), sp)
        rstd = nll.rmsnorm_rstd(x, eps32)
        assert sp[12000] == b32(rstd), n
        # RMSNORM's own bits: y = (x * rstd) * gamma
        g = _data(rng, n, 1.0)
        np.testing.assert_array_equal(b32(nm.f32_mul(nm.f32_mul(x, rstd), g)),
                                      b32(nll.rmsnorm(x, g, eps32)))
        _run(lanes, Op.VMULS, (9000, 3000, 12000, n), sp)
        np.testing.assert_array_equal(sp[9000:9000 + n], b32(nm.f32_mul(acc, rstd)))
        changed = sp != before
        changed[9000:9000 + n] = changed[12000] = False
        assert not changed.any(), f"n={n}: a word outside the outputs changed"
        _run(lanes, Op.VMULS, (3000, 3000, 12000, n), sp)  # in place
        np.testing.assert_array_equal(sp[3000:3000 + n], b32(nm.f32_mul(acc, rstd)))


@pytest.mark.parametrize("lanes", LANES)
@pytest.mark.parametrize("n,rows", [(1, 3), (7, 5), (130, 3), (64, 12), (20, 9), (200, 9),
                                    (1000, 5), (2100, 2), (1024, 5), (512, 7), (1024, 9)])
def test_softmax_rows_match_golden(lanes, n, rows):
    """Long rows (1000, 2100) take the software-pipelined exp loop (two or more iterations of a
    group of rows at 64 and 128 lanes) beside its plain form and the remainder blocks; rows of a
    multiple of ``W``, at least 8 blocks long, in two groups or more (1024 x 5 and 512 x 7 on 64
    lanes, 1024 x 9 on both) the fused path (the next group's maxima in the exp loop, the rows
    left over through the general one), with NaN and -Inf rows in the first group (maxima of
    the pass before the loop) and in the second (maxima taken in the loop)."""
    rng = np.random.default_rng(n * rows + lanes)
    x = (rng.standard_normal((rows, n)) * 5).astype(np.float32)
    if rows > 3:
        x[1, 0] = np.nan  # one row all NaN, the others untouched
        x[2, :] = -np.inf
    if rows > 6:
        x[5, n - 1] = np.nan
        x[6, :] = -np.inf
    want = b32(nl.softmax(x)).reshape(-1)
    size = 32768
    for dst in (16384 if x.size > 7800 else 8000, 200):  # to another place, and in place
        sp = np.zeros(size, np.uint32)
        sp[200:200 + x.size] = b32(x).reshape(-1)
        _run(lanes, Op.SOFTMAX, (dst, 200, n, rows), sp)
        np.testing.assert_array_equal(sp[dst:dst + x.size], want)
        outside = np.ones(size, bool)
        outside[dst:dst + x.size] = outside[200:200 + x.size] = False
        assert not sp[outside].any()


@pytest.mark.parametrize("lanes", LANES)
@pytest.mark.parametrize("n,rows,rseg", [(7, 5, 3), (130, 3, 64), (200, 9, 1), (1000, 5, 130),
                                         (1024, 9, 64), (2100, 2, 17)])
def test_softmaxu_rows_match_golden(lanes, n, rows, rseg):
    """SOFTMAXU writes ``nonlinear.softmax_parts``: the exponentials, and each row's ``1/sum``
    spread over ``rseg`` words (shorter and longer than a block), nothing else; to another
    place and in place (1024 x 9 in place: the fused path on 64 and 128 lanes), with NaN and
    -Inf rows; ``e * r`` is SOFTMAX bit for bit."""
    rng = np.random.default_rng(n * rows + lanes + rseg)
    x = (rng.standard_normal((rows, n)) * 5).astype(np.float32)
    if rows > 3:
        x[1, 0] = np.nan
        x[2, :] = -np.inf
    e, r = nl.softmax_parts(x)
    np.testing.assert_array_equal(b32(nm.f32_mul(e, r[:, None])), b32(nl.softmax(x)))
    size, rcp = 40000, 36000
    for dst in (18000 if x.size > 8000 else 9000, 200):
        sp = np.zeros(size, np.uint32)
        sp[200:200 + x.size] = b32(x).reshape(-1)
        _run(lanes, Op.SOFTMAXU, (dst, 200, n, rows, rcp, rseg), sp)
        np.testing.assert_array_equal(sp[dst:dst + x.size], b32(e).reshape(-1))
        np.testing.assert_array_equal(sp[rcp:rcp + rows * rseg], b32(np.repeat(r, rseg)))
        outside = np.ones(size, bool)
        outside[dst:dst + x.size] = outside[200:200 + x.size] = False
        outside[rcp:rcp + rows * rseg] = False
        assert not sp[outside].any()


def test_softmaxu_cost_follows_the_reciprocals_spread():
    """SOFTMAXU's cost depends on ``rseg`` (a loop of ``ceil(rseg / W)`` stores a row): the cost
    model's cache tells two spreads apart, and the cost is the ISS's."""
    hw = hw_variant(load_hw("tiny-rtl"), "asic", vector_lanes=16)
    model = VectorUnitModel(hw)
    short, wide = (I(Op.SOFTMAXU, dst=0, src=0, n=100, rows=4, rcp=9000, rseg=r) for r in (16, 200))
    iss = VectorISS(microcode_for(16, pipeline_of(hw)), timing_only=True)
    for ins in (short, wide):
        assert model.cost(ins).cycles == iss.run(ins.op, ins.fields()).cycles
    assert model.cost(wide).cycles > model.cost(short).cycles


def test_softmaxu_saves_the_product_pass_on_long_rows():
    """SOFTMAXU leaves out SOFTMAX's last pass (load, multiply, store of every word): on 128
    lanes 16 rows of 2048 (a gpt3-medium layer at context 2048) take at least 10 % fewer
    cycles, more than the VMUL that normalises ``p . V``'s 16 x 64 outputs costs."""
    iss = VectorISS(microcode_for(128, PIPE), timing_only=True)
    full = iss.run(Op.SOFTMAX, (0, 0, 2048, 16)).cycles
    unnorm = iss.run(Op.SOFTMAXU, (0, 0, 2048, 16, 40000, 64)).cycles
    vmul = iss.run(Op.VMUL, (0, 0, 40000, 16 * 64)).cycles
    assert unnorm < 0.9 * full
    assert unnorm + vmul < full


def test_softmax_long_rows_cost_on_128_lanes():
    """The fused path (the next group's maxima in the exp loop) pays from two groups of rows,
    and the software-pipelined loop advances its pointers in free issue slots: long rows cost
    under 12.5 cycles per 128-lane block over the whole instruction (14.1 with the three
    passes and the advances behind the loop body)."""
    cost = {}
    for n, rows in ((1024, 4), (1024, 16), (4096, 32)):
        cost[n, rows] = VectorISS(microcode_for(128, PIPE), timing_only=True).run(
            Op.SOFTMAX, (0, 0, n, rows)).cycles
    assert cost[1024, 16] / 16 < cost[1024, 4] / 4  # one group keeps the three passes
    assert cost[4096, 32] < 12.5 * (4096 * 32 // 128)


def test_pipelined_loop_takes_the_pointer_advances_into_its_slots():
    """``Asm.modulo`` with the loop's pointers: each gets one ``SADD`` in the prologue and one
    in the body, none in the epilogue, and the memory operations behind it have their offsets
    lowered by the advance once more."""
    a = Asm(128, PIPE)
    p, lo, hi = SReg(8), SReg(9), SReg(10)
    with a.capture() as ops:
        for b in range(4):
            with a.copy(b):
                x, y = a.vreg("x"), a.vreg("y")
                a.ld(x, p, lo, hi, off=b * 128)
                a.v(UOp.VFMUL, y, x, x)
                a.st(y, p, lo, hi, off=b * 128)
    pro, mid, epi, inside = a.modulo(ops, 4 * 128, (p,))
    assert inside
    assert [sum(o.op is UOp.SADD for o in part) for part in (pro, mid, epi)] == [1, 1, 0]
    # run prologue, body 3 times, epilogue: every block's load and store at its own address,
    # once, as the plain loop (pointer advanced after each iteration) would
    ptr, seen = 0, {UOp.VLD: [], UOp.VST: []}
    for part in [pro, mid, mid, mid, epi]:
        for o in part:
            if o.op is UOp.SADD:
                ptr += o.imm
            elif o.mem:
                seen[o.op].append((ptr + o.imm) % (1 << 32))
    for op in (UOp.VLD, UOp.VST):
        assert sorted(seen[op]) == [k * 128 for k in range(16)]
    assert ptr == 4 * 4 * 128  # four iterations advanced once each (none in the epilogue)


@pytest.mark.parametrize("lanes", LANES)
def test_vmacs_and_llama_routines_match_golden(lanes):
    """VMACS (segments shorter and longer than a block, in place), SWIGLU, RMSNORM (also of
    zeros: rsqrt(0) = Inf, and in place) and ROPE (halves shorter and longer than a block, in
    place), on random data with special values."""
    rng = np.random.default_rng(lanes + 7)
    for n in (1, lanes + 3, 5 * lanes + 1):
        x, y, g = _data(rng, n), _data(rng, n), _data(rng, n, 1.0)
        sp = np.zeros(16384, np.uint32)
        sp[100:100 + n], sp[3000:3000 + n], sp[6000:6000 + n] = b32(x), b32(y), b32(g)
        _run(lanes, Op.SWIGLU, (9000, 100, 3000, n), sp)
        np.testing.assert_array_equal(sp[9000:9000 + n], b32(nll.swiglu(x, y)))
        eps = np.float32(1e-6)
        _run(lanes, Op.RMSNORM, (9000, 100, 6000, n, int(b32(eps))), sp)
        np.testing.assert_array_equal(sp[9000:9000 + n], b32(nll.rmsnorm(x, g, eps)))
        _run(lanes, Op.RMSNORM, (100, 100, 6000, n, int(b32(eps))), sp)  # in place
        np.testing.assert_array_equal(sp[100:100 + n], sp[9000:9000 + n])
        _run(lanes, Op.RMSNORM, (9000, 12000, 6000, n, 0), sp)  # zeros, eps 0: x * Inf
        np.testing.assert_array_equal(sp[9000:9000 + n],
                                      b32(nll.rmsnorm(np.zeros(n, np.float32), g, 0.0)))
    for seg, nseg in ((1, 5), (3, 7), (lanes + 5, 3)):
        a, d, sc = _data(rng, seg * nseg), _data(rng, seg * nseg), _data(rng, nseg, 2.0)
        sp = np.zeros(16384, np.uint32)
        sp[100:100 + a.size], sp[3000:3000 + d.size], sp[6000:6000 + nseg] = \
            b32(a), b32(d), b32(sc)
        want = nm.f32_add(d, nm.f32_mul(a, np.repeat(sc, seg)))
        _run(lanes, Op.VMACS, (3000, 100, 6000, seg, nseg), sp)
        np.testing.assert_array_equal(sp[3000:3000 + d.size], b32(want))
        _run(lanes, Op.VMACS, (100, 100, 6000, seg, nseg), sp)  # a is dst
        np.testing.assert_array_equal(sp[100:100 + a.size],
                                      b32(nm.f32_add(a, nm.f32_mul(a, np.repeat(sc, seg)))))
    for half, nhead in ((1, 2), (24, 3), (lanes + 3, 2)):
        x = _data(rng, 2 * half * nhead).reshape(nhead, 2 * half)
        tab = np.concatenate([np.cos(rng.uniform(0, 6, half)), np.sin(rng.uniform(0, 6, half))])
        tab = tab.astype(np.float32)
        want = b32(nll.rope(x, tab[:half], tab[half:])).reshape(-1)
        for dst in (9000, 100):  # to another place, and in place
            sp = np.zeros(16384, np.uint32)
            sp[100:100 + x.size], sp[6000:6000 + 2 * half] = b32(x).reshape(-1), b32(tab)
            _run(lanes, Op.ROPE, (dst, 100, 6000, half, nhead), sp)
            np.testing.assert_array_equal(sp[dst:dst + x.size], want)


# ---------------------------------------------------------------------------------------------
# The cost model
# ---------------------------------------------------------------------------------------------
def test_cost_is_the_microcode_cycles_and_is_cached():
    # one unit: the whole instruction on one microcode run (more units: tests/test_vu_cluster.py)
    hw = hw_variant(load_hw("pimgpt-gddr6-8ch"), "asic", vector_units=1)
    model = VectorUnitModel(hw)
    assert model.microcode is microcode_for(hw.asic.vector_lanes, pipeline_of(hw))
    ins = I(Op.SOFTMAX, dst=0, src=4096, n=300, rows=3)  # rows longer than 2W: three passes
    sp = np.zeros(hw.asic.scratchpad_words, np.uint32)
    cyc = VectorISS(model.microcode, sp).run(ins.op, ins.fields()).cycles
    c = model.cost(ins)
    assert c.cycles == cyc
    assert c.words == 3 * 300 * 5  # read twice, written twice, read once more per element
    assert model.cost(I(Op.SOFTMAX, dst=50000, src=90000, n=300, rows=3)) is c  # per shape
    short = model.cost(I(Op.SOFTMAX, dst=0, src=0, n=model.lanes, rows=4))
    assert short.words == 4 * model.lanes * 2  # rows of one register: read once, written once
    assert model.cost(I(Op.SETR, reg=1, imm=5)).cycles == 1
    assert model.cost(I(Op.OUT, reg=1)).cycles == 1
    # more work costs more; a wider unit costs less on long vectors
    n1 = model.cost(I(Op.VGELU, dst=0, src=8192, n=512)).cycles
    n2 = model.cost(I(Op.VGELU, dst=0, src=8192, n=4096)).cycles
    assert n2 > n1 > 0
    raw = dict(hw.raw)
    raw["asic"] = dict(raw["asic"], vector_lanes=128)
    from pimgpt.core.config import hw_from_dict

    wide = VectorUnitModel(hw_from_dict(raw, where="wide"))
    if hw.asic.vector_lanes < 128:
        assert wide.cost(I(Op.VGELU, dst=0, src=8192, n=4096)).cycles < n2

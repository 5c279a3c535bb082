"""Tests of pimgpt/core/numerics.py: corner cases, and properties against an exact rational model.

The model below is written independently of numerics.py: it decodes bit patterns into exact
``Fraction`` values (subnormal inputs read as signed zero), computes the exact sum/product, rounds
to 24 (or 8) significant bits with an unbounded exponent, ties to even, then flushes results below
2**-126 and overflows results at or above 2**128, exactly as the contract in docs/numerics.md says.
"""

from __future__ import annotations

import warnings
from fractions import Fraction

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pimgpt.core import numerics as nm

CANON32 = 0x7FC00000
CANON16 = 0x7FC0
MIN_NORMAL = Fraction(1, 2**126)
OVERFLOW = Fraction(2**128)


# ---------------------------------------------------------------------------------------------
# Exact scalar model (Python integers and fractions only)
# ---------------------------------------------------------------------------------------------
def decode32(bits: int):
    """-> ("nan",) | ("inf", sign) | ("num", sign, magnitude Fraction; 0 for zeros/subnormals)."""
    sign = bits >> 31
    e = (bits >> 23) & 0xFF
    f = bits & 0x7FFFFF
    if e == 0xFF:
        return ("nan",) if f else ("inf", sign)
    if e == 0:
        return ("num", sign, Fraction(0))  # DAZ
    return ("num", sign, Fraction((1 << 23) | f) * Fraction(2) ** (e - 150))


def round_sig(mag: Fraction, p: int) -> Fraction:
    """Round a positive rational to ``p`` significant bits, ties to even, unbounded exponent."""
    e = mag.numerator.bit_length() - mag.denominator.bit_length()
    if mag < Fraction(2) ** e:
        e -= 1
    scaled = mag / Fraction(2) ** (e - p + 1)  # in [2**(p-1), 2**p)
    n = scaled.numerator // scaled.denominator
    rem = scaled - n
    if rem > Fraction(1, 2) or (rem == Fraction(1, 2) and n % 2):
        n += 1
    return n * Fraction(2) ** (e - p + 1)


def encode32(sign: int, mag: Fraction) -> int:
    """Encode a rounded magnitude, flushing below 2**-126 and overflowing at 2**128."""
    if mag < MIN_NORMAL:
        return sign << 31
    if mag >= OVERFLOW:
        return (sign << 31) | 0x7F800000
    e = mag.numerator.bit_length() - mag.denominator.bit_length()
    if mag < Fraction(2) ** e:
        e -= 1
    frac = mag / Fraction(2) ** e * (1 << 23) - (1 << 23)
    assert frac.denominator == 1
    return (sign << 31) | ((e + 127) << 23) | int(frac)


def exact_add(a: int, b: int) -> int:
    da, db = decode32(a), decode32(b)
    if da[0] == "nan" or db[0] == "nan":
        return CANON32
    if da[0] == "inf" and db[0] == "inf":
        return CANON32 if da[1] != db[1] else a & 0xFF800000
    if da[0] == "inf":
        return (da[1] << 31) | 0x7F800000
    if db[0] == "inf":
        return (db[1] << 31) | 0x7F800000
    va = -da[2] if da[1] else da[2]
    vb = -db[2] if db[1] else db[2]
    s = va + vb
    if s == 0:
        # IEEE: the sum of two zeros of equal sign keeps it; any other exact zero is +0 (RNE).
        both_neg_zero = da[2] == 0 and db[2] == 0 and da[1] == 1 and db[1] == 1
        return 0x80000000 if both_neg_zero else 0
    return encode32(int(s < 0), round_sig(abs(s), 24))


def exact_mul(a: int, b: int) -> int:
    da, db = decode32(a), decode32(b)
    if da[0] == "nan" or db[0] == "nan":
        return CANON32
    sign = da[1] ^ db[1]
    a_zero = da[0] == "num" and da[2] == 0
    b_zero = db[0] == "num" and db[2] == 0
    if (da[0] == "inf" and b_zero) or (db[0] == "inf" and a_zero):
        return CANON32
    if da[0] == "inf" or db[0] == "inf":
        return (sign << 31) | 0x7F800000
    p = da[2] * db[2]
    if p == 0:
        return sign << 31
    return encode32(sign, round_sig(p, 24))


def exact_to_bf16(bits: int) -> int:
    d = decode32(bits)
    if d[0] == "nan":
        return CANON16
    if d[0] == "inf":
        return (d[1] << 15) | 0x7F80
    if d[2] == 0:
        return d[1] << 15
    r = round_sig(d[2], 8)
    if r >= OVERFLOW:
        return (d[1] << 15) | 0x7F80
    return encode32(d[1], r) >> 16  # 8 significant bits: the low 16 bits are zero


def exact_bf16_to_f32(b16: int) -> int:
    bits = b16 << 16
    d = decode32(bits)
    if d[0] == "nan":
        return CANON32
    if d[0] == "num" and d[2] == 0:
        return (b16 >> 15) << 31
    return bits


# ---------------------------------------------------------------------------------------------
# Helpers
# ---------------------------------------------------------------------------------------------
def f(bits) -> np.ndarray:
    return nm.f32_from_bits(np.asarray(bits, dtype=np.uint32))


def b(values) -> np.ndarray:
    return np.atleast_1d(nm.bits_from_f32(np.asarray(values, dtype=np.float32)))


def add_bits(x: int, y: int) -> int:
    return int(b(nm.f32_add(f([x]), f([y])))[0])


def mul_bits(x: int, y: int) -> int:
    return int(b(nm.f32_mul(f([x]), f([y])))[0])


def p2(k: int) -> int:
    """Bits of the normal fp32 2**k."""
    return (k + 127) << 23


POS_ZERO, NEG_ZERO = 0x00000000, 0x80000000
POS_INF, NEG_INF = 0x7F800000, 0xFF800000
ONE = 0x3F800000
MAX_FINITE = 0x7F7FFFFF
SPECIALS = [
    POS_ZERO, NEG_ZERO, POS_INF, NEG_INF, CANON32, 0xFFC00000, 0x7F800001, 0xFFFFFFFF,
    0x00000001, 0x807FFFFF, 0x00400000, p2(-126), p2(-126) | 0x80000000, p2(-126) | 1,
    MAX_FINITE, MAX_FINITE | 0x80000000, ONE, ONE | 0x80000000, ONE + 1, ONE - 1, p2(-63),
    p2(-64), p2(63), p2(64), p2(127),
]

bits32 = st.one_of(st.integers(0, 0xFFFFFFFF), st.sampled_from(SPECIALS))


# ---------------------------------------------------------------------------------------------
# Corner cases
# ---------------------------------------------------------------------------------------------
class TestSignedZero:
    def test_add_zeros(self):
        assert add_bits(POS_ZERO, NEG_ZERO) == POS_ZERO
        assert add_bits(NEG_ZERO, POS_ZERO) == POS_ZERO
        assert add_bits(NEG_ZERO, NEG_ZERO) == NEG_ZERO
        assert add_bits(POS_ZERO, POS_ZERO) == POS_ZERO

    def test_x_minus_x_is_positive_zero(self):
        for x in (ONE, 0x40490FDB, MAX_FINITE, p2(-126)):
            assert add_bits(x, x ^ 0x80000000) == POS_ZERO
            assert add_bits(x ^ 0x80000000, x) == POS_ZERO

    def test_product_sign_is_xor(self):
        assert mul_bits(NEG_ZERO, ONE) == NEG_ZERO
        assert mul_bits(NEG_ZERO, ONE | 0x80000000) == POS_ZERO
        assert mul_bits(POS_ZERO, ONE | 0x80000000) == NEG_ZERO

    def test_tree_sum_keeps_the_sign_of_zeros(self):
        # A sum starts at its first element (not at +0): [-0] and [-0, -0] sum to -0.
        assert b(nm.f32_tree_sum(np.float32([-0.0])))[0] == NEG_ZERO
        assert b(nm.f32_tree_sum(np.float32([-0.0, -0.0])))[0] == NEG_ZERO
        assert b(nm.f32_tree_sum(np.float32([-1.0, 1.0])))[0] == POS_ZERO


class TestInfNan:
    def test_inf_arithmetic(self):
        assert add_bits(POS_INF, ONE) == POS_INF
        assert add_bits(NEG_INF, MAX_FINITE) == NEG_INF
        assert add_bits(POS_INF, POS_INF) == POS_INF
        assert mul_bits(NEG_INF, ONE | 0x80000000) == POS_INF
        assert mul_bits(POS_INF, p2(-126)) == POS_INF

    def test_invalid_gives_canonical_nan(self):
        assert add_bits(POS_INF, NEG_INF) == CANON32
        assert mul_bits(POS_INF, POS_ZERO) == CANON32
        assert mul_bits(NEG_ZERO, NEG_INF) == CANON32
        # Infinity times a subnormal: the subnormal is read as zero (DAZ), so 0 * Inf = NaN.
        assert mul_bits(POS_INF, 0x00000001) == CANON32

    @pytest.mark.parametrize("nan", [0x7F800001, 0xFFC00000, 0xFFFFFFFF, 0x7FBFFFFF])
    def test_nan_inputs_give_canonical_nan(self, nan):
        assert add_bits(nan, ONE) == CANON32
        assert mul_bits(ONE, nan) == CANON32
        assert int(nm.f32_to_bf16(f([nan]))[0]) == CANON16
        assert int(b(nm.flush_f32(f([nan])))[0]) == CANON32

    @pytest.mark.parametrize("nan16", [0x7F81, 0xFFC0, 0xFFFF, 0x7FBF])
    def test_bf16_nan_widens_to_canonical_nan(self, nan16):
        assert int(b(nm.bf16_to_f32(np.uint16([nan16])))[0]) == CANON32

    def test_no_runtime_warnings(self):
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            x = f(SPECIALS)
            nm.flush_f32(x)
            nm.f32_add(x, x[::-1])
            nm.f32_mul(x, x[::-1])
            nm.f32_to_bf16(x)


class TestSubnormals:
    def test_subnormal_inputs_read_as_zero(self):
        assert add_bits(0x00000001, POS_ZERO) == POS_ZERO
        assert add_bits(0x807FFFFF, POS_ZERO) == POS_ZERO
        # Without DAZ this would be 2**-149 * 2**100 = 2**-49.
        assert mul_bits(0x00000001, p2(100)) == POS_ZERO
        assert mul_bits(0x80000001, p2(100)) == NEG_ZERO
        assert add_bits(0x00400000, p2(-126)) == p2(-126)

    def test_subnormal_results_flush_with_sign(self):
        # 1.5 * 2**-126 - 2**-126 = 2**-127: subnormal -> +0; the negated case -> -0.
        a = p2(-126) | 0x400000
        assert add_bits(a, p2(-126) | 0x80000000) == POS_ZERO
        assert add_bits(a | 0x80000000, p2(-126)) == NEG_ZERO
        assert mul_bits(p2(-126), p2(-1)) == POS_ZERO
        assert mul_bits(p2(-126) | 0x80000000, p2(-1)) == NEG_ZERO
        assert int(b(nm.flush_f32(f([0x00000001, 0x80000001])))[1]) == NEG_ZERO

    def test_bf16_subnormals(self):
        assert int(nm.f32_to_bf16(f([0x00010000]))[0]) == 0x0000
        assert int(nm.f32_to_bf16(f([0x80010000]))[0]) == 0x8000
        assert int(b(nm.bf16_to_f32(np.uint16([0x0001])))[0]) == POS_ZERO
        assert int(b(nm.bf16_to_f32(np.uint16([0x8040])))[0]) == NEG_ZERO

    def test_multiply_flush_boundary_rounds_up_to_min_normal(self):
        # (1 - 2**-23)(1 + 2**-23) = 1 - 2**-46 rounds to 1 at 24 bits; scaled to 2**-126 it
        # survives as the smallest normal.
        a = p2(-64) | 0x7FFFFE  # (2 - 2**-22) * 2**-64 = (1 - 2**-23) * 2**-63
        c = p2(-63) | 1  # (1 + 2**-23) * 2**-63
        assert mul_bits(a, c) == p2(-126)
        assert mul_bits(a | 0x80000000, c) == p2(-126) | 0x80000000

    def test_multiply_flush_boundary_unbounded_exponent_rule(self):
        # 4095 * 4097 = 2**24 - 1, so the exact product is 2**-126 - 2**-150: it has 24 significant
        # bits, so it is exact at 24 bits with an unbounded exponent and lies below 2**-126 ->
        # flushed. (IEEE subnormal rounding would give 2**-126 by ties-to-even; the contract's rule
        # is the unbounded one.)
        x = int(b(np.float32(4095 * 2.0**-75))[0])
        y = int(b(np.float32(4097 * 2.0**-75))[0])
        assert mul_bits(x, y) == POS_ZERO
        # And just above: 2**-126 exactly survives.
        assert mul_bits(p2(-63), p2(-63)) == p2(-126)

    def test_add_never_rounds_below_min_normal(self):
        # The smallest non-zero difference of normals near 2**-126 is 2**-149: flushed.
        assert add_bits(p2(-126) | 1, p2(-126) | 0x80000000) == POS_ZERO
        assert add_bits(p2(-125), p2(-126) | 0x80000000) == p2(-126)


class TestOverflow:
    def test_add_overflow(self):
        assert add_bits(MAX_FINITE, MAX_FINITE) == POS_INF
        assert add_bits(MAX_FINITE | 0x80000000, MAX_FINITE | 0x80000000) == NEG_INF
        # MAX_FINITE's ulp is 2**104. Adding less than half of it does not overflow (RNE) ...
        assert add_bits(MAX_FINITE, p2(102)) == MAX_FINITE
        # ... exactly half is a tie, and MAX_FINITE's significand is odd, so it rounds up to Inf.
        assert add_bits(MAX_FINITE, p2(103)) == POS_INF

    def test_mul_overflow(self):
        assert mul_bits(p2(64), p2(64)) == POS_INF
        assert mul_bits(p2(64) | 0x80000000, p2(64)) == NEG_INF
        assert mul_bits(p2(63), p2(64)) == p2(127)

    def test_bf16_overflow(self):
        assert int(nm.f32_to_bf16(f([MAX_FINITE]))[0]) == 0x7F80
        assert int(nm.f32_to_bf16(f([MAX_FINITE | 0x80000000]))[0]) == 0xFF80
        assert int(nm.f32_to_bf16(f([0x7F7F7FFF]))[0]) == 0x7F7F


class TestRoundingTies:
    def test_bf16_ties_to_even(self):
        cases = {
            0x3F808000: 0x3F80,  # tie, even below
            0x3F818000: 0x3F82,  # tie, odd below -> up
            0x3F808001: 0x3F81,  # above the tie
            0x3F807FFF: 0x3F80,  # below the tie
            0xBF818000: 0xBF82,  # negative tie
            0x3FFF8000: 0x4000,  # tie carries into the exponent
        }
        got = nm.f32_to_bf16(f(list(cases)))
        assert [int(g) for g in got] == list(cases.values())

    def test_add_ties_to_even(self):
        assert add_bits(ONE, p2(-24)) == ONE  # 1 + half ulp -> 1 (even)
        assert add_bits(ONE | 1, p2(-24)) == ONE + 2  # odd + half ulp -> up
        assert add_bits(ONE, p2(-24) | 1) == ONE + 1  # above half -> up
        assert add_bits(ONE | 0x80000000, p2(-24) | 0x80000000) == ONE | 0x80000000


class TestMacOrder:
    def test_adder_tree_pairs(self):
        # Products [1, 0, 2**-24, 2**-24, 0...]: tree (1+0) + (2**-24+2**-24) = 1 + 2**-23, whereas
        # a sequential sum would lose both halves.
        a = np.zeros(16, dtype=np.float32)
        a[0], a[2], a[3] = 1.0, 2.0**-24, 2.0**-24
        assert nm.f32_fma_free_dot_tree(a) == np.float32(1 + 2.0**-23)

    def test_tree_needs_16_lanes(self):
        with pytest.raises(ValueError, match="16 lanes"):
            nm.f32_fma_free_dot_tree(np.zeros(8, dtype=np.float32))

    def test_dot_length_multiple_of_16(self):
        with pytest.raises(ValueError, match="multiple of 16"):
            nm.dot_bf16(np.zeros(20, np.uint16), np.zeros(20, np.uint16))


# ---------------------------------------------------------------------------------------------
# Properties against the exact model
# ---------------------------------------------------------------------------------------------
@settings(max_examples=400, deadline=None)
@given(bits32, bits32)
def test_add_matches_exact(x, y):
    assert add_bits(x, y) == exact_add(x, y)


@settings(max_examples=300, deadline=None)
@given(st.integers(0, 0xFFFFFFFF), st.integers(0, 0xFFFF), st.booleans())
def test_add_near_cancellation(x, delta, flip):
    """Operands of nearly equal magnitude and opposite sign (massive cancellation)."""
    y = ((x & 0x7FFFFFFF) ^ delta) | ((~x if flip else x) & 0x80000000)
    y ^= 0x80000000
    assert add_bits(x, y) == exact_add(x, y)


@settings(max_examples=400, deadline=None)
@given(bits32, bits32)
def test_mul_matches_exact(x, y):
    assert mul_bits(x, y) == exact_mul(x, y)


@settings(max_examples=400, deadline=None)
@given(st.integers(1, 254), st.integers(-2, 1), st.integers(0, 0x7FFFFF), st.integers(0, 0x7FFFFF),
       st.booleans())
def test_mul_near_flush_boundary(ea, d, fa, fb, neg):
    """Products whose exponent lands at -128..-125, around the flush threshold 2**-126."""
    eb = min(max(128 + d - ea, 1), 254)  # unbiased exponents sum to -126 + d where possible
    x = (ea << 23) | fa | (0x80000000 if neg else 0)
    y = (eb << 23) | fb
    assert mul_bits(x, y) == exact_mul(x, y)


@settings(max_examples=400, deadline=None)
@given(bits32)
def test_to_bf16_matches_exact(x):
    assert int(nm.f32_to_bf16(f([x]))[0]) == exact_to_bf16(x)


def test_bf16_widening_all_patterns():
    pats = np.arange(1 << 16, dtype=np.uint32)
    got = b(nm.bf16_to_f32(pats.astype(np.uint16)))
    want = [exact_bf16_to_f32(int(p)) for p in pats]
    assert [int(g) for g in got] == want


def test_bf16_mul_is_exact_for_normal_range():
    """Every product of two bf16 values within range is exact in fp32 (8 + 8 <= 24 bits)."""
    rng = np.random.default_rng(0)
    a = rng.integers(0x3000, 0x4F00, 5000).astype(np.uint16)  # moderate exponents, both signs
    c = rng.integers(0x3000, 0x4F00, 5000).astype(np.uint16) | np.uint16(0x8000)
    prod = nm.bf16_mul(a, c).astype(np.float64)
    want = nm.bf16_to_f32(a).astype(np.float64) * nm.bf16_to_f32(c).astype(np.float64)
    np.testing.assert_array_equal(prod, want)


def test_bulk_random_add_mul_against_exact():
    """Vectorised calls on many random patterns agree with the scalar exact model lane by lane."""
    rng = np.random.default_rng(1)
    n = 3000
    x = rng.integers(0, 1 << 32, n, dtype=np.uint64).astype(np.uint32)
    # Half the y operands share x's exponent range (so sums round and cancel); half are random.
    y = np.where(rng.random(n) < 0.5, x ^ rng.integers(0, 1 << 24, n).astype(np.uint32),
                 rng.integers(0, 1 << 32, n, dtype=np.uint64).astype(np.uint32))
    s = b(nm.f32_add(f(x), f(y)))
    p = b(nm.f32_mul(f(x), f(y)))
    for i in range(n):
        assert int(s[i]) == exact_add(int(x[i]), int(y[i])), (hex(x[i]), hex(y[i]))
        assert int(p[i]) == exact_mul(int(x[i]), int(y[i])), (hex(x[i]), hex(y[i]))


def _exact_mac_dot(a16: list[int], c16: list[int], acc_bits: int = 0) -> int:
    """Scalar MAC: products, the pairwise tree per 16-column, then acc + tree, column by column."""
    acc = acc_bits
    for col in range(0, len(a16), 16):
        level = [
            exact_mul(exact_bf16_to_f32(a16[col + i]), exact_bf16_to_f32(c16[col + i]))
            for i in range(16)
        ]
        while len(level) > 1:
            level = [exact_add(level[2 * i], level[2 * i + 1]) for i in range(len(level) // 2)]
        acc = exact_add(acc, level[0])
    return acc


bf16_finite = st.integers(0, 0xFFFF).filter(lambda v: (v >> 7) & 0xFF != 0xFF)


@settings(max_examples=150, deadline=None)
@given(st.lists(bf16_finite, min_size=32, max_size=32), st.lists(bf16_finite, min_size=32,
                                                                  max_size=32), bits32)
def test_dot_bf16_matches_exact_mac(a16, c16, acc):
    got = nm.dot_bf16(np.uint16(a16), np.uint16(c16), acc=f([acc])[0])
    assert int(b(got)[0]) == _exact_mac_dot(a16, c16, acc)


def test_dot_bf16_random_gaussian_against_exact_mac():
    rng = np.random.default_rng(2)
    a = nm.f64_to_bf16(rng.standard_normal((20, 64)))
    c = nm.f64_to_bf16(rng.standard_normal((20, 64)))
    got = b(nm.dot_bf16(a, c))
    for i in range(20):
        assert int(got[i]) == _exact_mac_dot([int(v) for v in a[i]], [int(v) for v in c[i]])


# ---------------------------------------------------------------------------------------------
# Vector-unit reductions: tree sum, total-order max, argmax, multiply-add
# ---------------------------------------------------------------------------------------------
def _exact_tree_sum(xs: list[int]) -> int:
    """The contract's order written out: fold into 128 lanes, then halve (empty lanes: None)."""
    lanes = [None] * nm.REDUCE_LANES
    for i, x in enumerate(xs):
        lane = i % nm.REDUCE_LANES
        lanes[lane] = x if lanes[lane] is None else exact_add(lanes[lane], x)
    h = nm.REDUCE_LANES // 2
    while h:
        for i in range(h):
            a, c = lanes[i], lanes[i + h]
            lanes[i] = c if a is None else (a if c is None else exact_add(a, c))
        h //= 2
    return exact_add(lanes[0], 0x80000000)  # x + (-0) = x after DAZ: the flush of one element


@settings(max_examples=60, deadline=None)
@given(st.lists(bits32, min_size=1, max_size=300))
def test_tree_sum_matches_exact_order(xs):
    assert int(b(nm.f32_tree_sum(f(xs)))[0]) == _exact_tree_sum(xs)


@pytest.mark.parametrize("lanes", [16, 32, 64, 128])
def test_tree_sum_is_what_a_w_lane_unit_computes(lanes):
    """A unit with W lanes: block k adds into register k mod (128/W), registers pair up, then
    lane shifts halve the last register; the bits do not depend on W."""
    rng = np.random.default_rng(lanes)
    for n in (1, 7, lanes, 128, 129, 300, 1000):
        x = (rng.standard_normal(n) * np.exp(rng.uniform(-30, 30, n))).astype(np.float32)
        regs = [np.full(lanes, -0.0, np.float32) for _ in range(nm.REDUCE_LANES // lanes)]
        pad = np.concatenate([x, np.full(-n % lanes, -0.0, np.float32)])
        for k in range(len(pad) // lanes):
            r = k % len(regs)
            regs[r] = nm.f32_add(regs[r], pad[k * lanes:(k + 1) * lanes])
        while len(regs) > 1:
            h = len(regs) // 2
            regs = [nm.f32_add(regs[i], regs[i + h]) for i in range(h)]
        v, h = regs[0], lanes // 2
        while h:
            shifted = np.concatenate([v[h:], np.full(h, -0.0, np.float32)])
            v, h = nm.f32_add(v, shifted), h // 2
        assert b(v[0]) == b(nm.f32_tree_sum(x)), n


def test_tree_sum_batched_and_axis():
    rng = np.random.default_rng(3)
    x = rng.standard_normal((3, 4, 200)).astype(np.float32)
    got = nm.f32_tree_sum(x)
    assert got.shape == (3, 4)
    for i in range(3):
        for j in range(4):
            assert b(got[i, j]) == b(nm.f32_tree_sum(x[i, j]))
    np.testing.assert_array_equal(b(nm.f32_tree_sum(x, axis=1)),
                                  b(nm.f32_tree_sum(np.moveaxis(x, 1, -1))))
    with pytest.raises(ValueError, match="empty"):
        nm.f32_tree_sum(np.zeros(0, np.float32))


def test_order_key_and_total_max():
    vals = np.float32([-np.inf, -3.0, -0.0, 0.0, 1e-30, 2.0, np.inf, np.nan])
    keys = nm.f32_order_key(vals)
    assert (np.diff(keys.astype(np.int64)) > 0).all()
    assert b(nm.f32_max_total(np.float32([-0.0, 0.0])))[0] == POS_ZERO
    assert b(nm.f32_max_total(np.float32([0.0, -0.0])))[0] == POS_ZERO
    assert b(nm.f32_max_total(np.float32([1.0, np.nan, np.inf])))[0] == 0x7FC00000
    assert nm.f32_max_total(np.float32([-np.inf])) == -np.inf
    assert b(nm.f32_max_total(f([0x80000001, 0x80000002])))[0] == NEG_ZERO  # DAZ first
    rng = np.random.default_rng(4)
    x = rng.standard_normal((6, 50)).astype(np.float32)
    for perm in (rng.permutation(50) for _ in range(3)):  # order-independent
        np.testing.assert_array_equal(nm.f32_max_total(x[:, perm]), x.max(axis=-1))


def test_argmax_first_index():
    assert nm.f32_argmax(np.float32([1, 5, 3, 5])) == 1
    assert nm.f32_argmax(np.float32([-0.0, 0.0])) == 0  # -0 == +0: the first wins
    assert nm.f32_argmax(np.float32([0.0, -0.0, 0.0])) == 0
    assert nm.f32_argmax(np.float32([1, np.nan, np.inf, np.nan])) == 1  # first NaN
    assert nm.f32_argmax(np.float32([-np.inf, -np.inf])) == 0
    assert nm.f32_argmax(f([0x00000001, 0x80000000])) == 0  # DAZ: both zero
    with pytest.raises(ValueError, match="empty"):
        nm.f32_argmax(np.zeros(0, np.float32))


#: Words that stress the argmax order: NaNs (two payloads, both signs), both zeros, denormals
#: (DAZ: equal to zero), infinities, and repeated ordinary values (ties).
_ARGMAX_WORDS = [0x7FC00000, 0xFFC00001, 0x7F800001, 0x00000000, 0x80000000, 0x00000001,
                 0x80000001, 0x7F800000, 0xFF800000, 0x3F800000, 0x3F800000, 0xBF800000,
                 0x40000000, 0x7F7FFFFF]


@settings(max_examples=400, deadline=None)
@given(st.lists(st.sampled_from(_ARGMAX_WORDS), min_size=2, max_size=40), st.data())
def test_argmax_continue_chain_is_one_argmax(words, data):
    """ARGMAX over a first piece, then ARGMAXC over each further piece: the chain's result is
    ARGMAX over the whole vector for every split (ties, NaNs, -0, denormals)."""
    x = f(words)
    cuts = sorted(data.draw(st.sets(st.integers(1, len(x) - 1), min_size=1)))
    r = int(nm.f32_argmax(x[:cuts[0]]))
    for lo, hi in zip(cuts, cuts[1:] + [len(x)], strict=True):
        r = nm.f32_argmax_continue(x[:hi], r, lo)
    assert r == int(nm.f32_argmax(x))


def test_argmax_continue_corners():
    # a tie across the cut keeps the earlier index; -0 ties +0; the first NaN stays first
    assert nm.f32_argmax_continue(np.float32([1, 5, 5]), 1, 2) == 1
    assert nm.f32_argmax_continue(np.float32([0.0, -0.0]), 0, 1) == 0
    assert nm.f32_argmax_continue(np.float32([-0.0, 0.0]), 0, 1) == 0
    assert nm.f32_argmax_continue(np.float32([np.nan, 2, np.nan]), 0, 1) == 0
    assert nm.f32_argmax_continue(np.float32([np.inf, 2, np.nan]), 0, 1) == 2
    assert nm.f32_argmax_continue(f([0x00000001, 0x80000000]), 0, 1) == 0  # DAZ
    assert nm.f32_argmax_continue(np.float32([1, 2, 3, 0]), 0, 1) == 2
    with pytest.raises(ValueError, match="prev"):
        nm.f32_argmax_continue(np.float32([1, 2, 3]), 1, 1)


@settings(max_examples=200, deadline=None)
@given(bits32, bits32, bits32)
def test_mad_is_multiply_then_add(x, y, z):
    want = exact_add(exact_mul(x, y), z)
    assert int(b(nm.f32_mad(f(x), f(y), f(z)))[0]) == want
    # one pipeline does all three: mad(a, 1, c) = add(a, c), mad(a, c, -0) = mul(a, c)
    assert int(b(nm.f32_mad(f(x), np.float32(1.0), f(z)))[0]) == exact_add(x, z)
    assert int(b(nm.f32_mad(f(x), f(y), np.float32(-0.0)))[0]) == exact_mul(x, y)

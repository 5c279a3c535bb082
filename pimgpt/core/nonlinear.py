"""The vector unit's nonlinear functions, bit exact, built only from fp32 adds and multiplies.

Every function here is the executable specification of one vector-unit operation (``VEXP``,
``VRECIP``, ``VRSQRT``, ``VGELU``, ``VMAX``, ``SOFTMAX``, ``LAYERNORM`` in ``docs/isa.md``). Each is
a *fixed* sequence of

* ``numerics.f32_add`` / ``numerics.f32_mul`` / ``numerics.f32_mad`` (fp32, RNE, DAZ/FTZ,
  canonical NaN; ``mad`` is a multiply then an add, two roundings),
* sign-bit operations (negate = flip bit 31, absolute value = clear bit 31), which never round,
* 32-bit integer work on bit patterns (shifts, adds, masks: exponent-field insertion, seeds),
* a lookup in a small constant table (``EXP_TABLE``, 8 entries),
* comparisons and selects (``fmax``/``fmin`` in the total order of ``numerics.f32_order_key``).

No other floating-point operation is used, so a vector unit made of per-lane fp32 multiply-add
pipelines and integer logic reproduces every output bit for bit (``pimgpt/core/vu`` holds its
microcode). Constants are fp32 values; their bit patterns are the module constants ``*_BITS``.
All functions are vectorised over ``float32`` numpy arrays, flush subnormal inputs (DAZ) and return
``float32`` arrays of the input's shape. Sums are ``numerics.f32_tree_sum`` (lane-parallel order).

Error bounds (measured by ``python -m pimgpt.apps.bench_numerics``, ``docs/numerics.md``): every
function is within 0.1 bf16 ulp of float64 math on its documented domain.
"""

from __future__ import annotations

import math

import numpy as np

from pimgpt.core.numerics import (
    FP32_CANONICAL_NAN,
    f32_add,
    f32_from_bits,
    f32_mad,
    f32_max_total,
    f32_mul,
    f32_order_key,
    f32_tree_sum,
    flush_f32,
)


# ---------------------------------------------------------------------------------------------
# Constants (fp32 bit patterns are the specification; the float values are derived from them)
# ---------------------------------------------------------------------------------------------
def _bits_of(value: float) -> int:
    return int(np.float32(value).view(np.uint32))


#: 1.5 * 2**23: ``mad(v, c, ROUND_MAGIC)`` leaves ``round_half_even(v*c)`` in the low bits.
ROUND_MAGIC_BITS = 0x4B400000
#: exp: 8 / ln 2, the scale to units of ln(2)/8.
EXP_C8_BITS = _bits_of(8.0 / math.log(2.0))
#: exp: ``2**(r/8) ~ 1 + r*(P1 + P2*r)`` on ``|r| <= 1/2`` (relative error 3.5e-6).
EXP_P1_BITS = 0x3DB17CAF
EXP_P2_BITS = 0x3B75FE88
#: exp: ``EXP_TABLE[j]`` = fp32(2**(j/8)); ``EXP_TABLE_ADJ[j] = EXP_TABLE[j] - (j << 20)`` (mod
#: 2**32) so that ``EXP_TABLE_ADJ[t & 7] + (t << 20)`` inserts the exponent (see :func:`exp`).
EXP_TABLE = tuple(_bits_of(2.0 ** (j / 8.0)) for j in range(8))
EXP_TABLE_ADJ = tuple((b - (j << 20)) & 0xFFFFFFFF for j, b in enumerate(EXP_TABLE))
#: exp clamps: below ``EXP_X_LO`` the result flushes to +0, above ``EXP_X_HI`` it is +Inf.
EXP_X_LO = np.float32(-87.35)
EXP_X_HI = np.float32(88.75)
#: Seed constant of the reciprocal (max relative seed error 0.0505).
RECIP_MAGIC = 0x7EF311C3
RECIP_NEWTON_STEPS = 3
#: Seed constant of the inverse square root (max relative seed error 0.0344 on [1, 4)).
RSQRT_MAGIC = 0x5F3759DF
RSQRT_NEWTON_STEPS = 3
#: GELU (tanh form): ``w = -2u = x*(G1 + G3*x**2)``, G1 = fp32(-2*sqrt(2/pi)),
#: G3 = fp32(-2*sqrt(2/pi)*0.044715).
GELU_G1_BITS = _bits_of(-2.0 * math.sqrt(2.0 / math.pi))
GELU_G3_BITS = _bits_of(-2.0 * math.sqrt(2.0 / math.pi) * 0.044715)
#: GELU clamps: x below GELU_X_MIN gives -0; w is kept in [EXP_X_LO, GELU_W_HI].
GELU_X_MIN = np.float32(-16.0)
GELU_W_HI = np.float32(87.6)
GELU_NEWTON_STEPS = 2

_SIGN = np.uint32(0x80000000)
_ABS = np.uint32(0x7FFFFFFF)
_MANT = np.uint32(0x007FFFFF)
_ONE_BITS = np.uint32(0x3F800000)
_INF_BITS = np.uint32(0x7F800000)


def _c(bits: int) -> np.float32:
    return np.uint32(bits).view(np.float32)


ROUND_MAGIC = _c(ROUND_MAGIC_BITS)
EXP_C8 = _c(EXP_C8_BITS)
EXP_P1 = _c(EXP_P1_BITS)
EXP_P2 = _c(EXP_P2_BITS)
GELU_G1 = _c(GELU_G1_BITS)
GELU_G3 = _c(GELU_G3_BITS)

_F1 = np.float32(1.0)
_F2 = np.float32(2.0)
_FHALF = np.float32(0.5)
_FM1 = np.float32(-1.0)


# ---------------------------------------------------------------------------------------------
# Bit-level helpers (no rounding happens in any of them)
# ---------------------------------------------------------------------------------------------
def _bits(x: np.ndarray) -> np.ndarray:
    return np.asarray(x, dtype=np.float32).view(np.uint32)


def _neg(x: np.ndarray) -> np.ndarray:
    """Flip the sign bit (exact negation; NaN stays NaN)."""
    return f32_from_bits(_bits(x) ^ _SIGN)


def _abs(x: np.ndarray) -> np.ndarray:
    """Clear the sign bit."""
    return f32_from_bits(_bits(x) & _ABS)


def _pow2(k: np.ndarray) -> np.ndarray:
    """``2.0**k`` as fp32 by writing ``k + 127`` into the exponent field; needs -126 <= k <= 127."""
    k = np.asarray(k, dtype=np.int64)
    return f32_from_bits((k + 127).astype(np.uint32) << np.uint32(23))


def _canonical_nan(shape) -> np.ndarray:
    return f32_from_bits(np.full(shape, FP32_CANONICAL_NAN, dtype=np.uint32))


def _split_normal(a: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """For normal ``a``: the exponent field ``E`` (int64) and the significand ``m`` in [1, 2).

    ``m`` keeps the 23 fraction bits of ``a`` and gets the exponent field 127 (and sign +).
    """
    b = _bits(a)
    e_field = ((b >> np.uint32(23)) & np.uint32(0xFF)).astype(np.int64)
    m = f32_from_bits((b & _MANT) | _ONE_BITS)
    return e_field, m


def _u32(a, b, sub: bool = False) -> np.ndarray:
    """32-bit integer ``a + b`` (or ``a - b``) with wrap-around, as the hardware adds."""
    a = np.asarray(a, dtype=np.uint32).astype(np.int64)
    b = np.asarray(b, dtype=np.uint32).astype(np.int64)
    return ((a - b if sub else a + b) & 0xFFFFFFFF).astype(np.uint32)


def _as_f32(x) -> np.ndarray:
    """Input conversion of every function: float32, subnormals flushed (DAZ), canonical NaN."""
    return flush_f32(np.asarray(x, dtype=np.float32))


def _check_vector(name: str, x) -> np.ndarray:
    """``_as_f32(x)`` of a function over the last axis, which must be non-empty."""
    x = _as_f32(x)
    if x.ndim == 0 or x.shape[-1] == 0:
        raise ValueError(f"{name} needs a non-empty last axis, got shape {x.shape}")
    return x


def fmax(a, b) -> np.ndarray:
    """Larger of ``a`` and ``b`` in the total order (``numerics.f32_order_key``); NaN if either is.
    """
    a, b = _as_f32(a), _as_f32(b)
    a, b = np.broadcast_arrays(a, b)
    out = np.where(f32_order_key(b) > f32_order_key(a), b, a)
    return np.where(np.isnan(a) | np.isnan(b), _canonical_nan(out.shape), out).astype(np.float32)


def fmin(a, b) -> np.ndarray:
    """Smaller of ``a`` and ``b`` in the total order; NaN if either is NaN."""
    a, b = _as_f32(a), _as_f32(b)
    a, b = np.broadcast_arrays(a, b)
    out = np.where(f32_order_key(b) < f32_order_key(a), b, a)
    return np.where(np.isnan(a) | np.isnan(b), _canonical_nan(out.shape), out).astype(np.float32)


# ---------------------------------------------------------------------------------------------
# exp
# ---------------------------------------------------------------------------------------------
def _exp2_parts(xc: np.ndarray, negate: bool = False):
    """Steps 2-4 of :func:`exp` on clamped ``xc``: ``(t bits, p, EXP_TABLE_ADJ[t & 7])``; with
    ``negate`` the polynomial is evaluated with negated constants, giving exactly ``-p``."""
    t = f32_mad(xc, EXP_C8, ROUND_MAGIC)
    nnf = f32_mad(t, _FM1, ROUND_MAGIC)
    r = f32_mad(xc, EXP_C8, nnf)
    sg = _FM1 if negate else _F1
    q = f32_mad(r, sg * EXP_P2, sg * EXP_P1)
    p = f32_mad(q, r, sg)
    tb = np.asarray(EXP_TABLE_ADJ, dtype=np.uint32)[_bits(t) & np.uint32(7)]
    return _bits(t), p, tb


def exp(x) -> np.ndarray:
    """Element-wise ``e**x`` (``VEXP``; SOFTMAX uses it on ``x <= 0``).

    Algorithm (``x`` after DAZ; ``mad(a, b, c) = add(mul(a, b), c)``):

    1. ``xc = fmin(fmax(x, EXP_X_LO), EXP_X_HI)`` (total order; NaN stays NaN, -Inf becomes
       ``EXP_X_LO`` whose result flushes to +0, +Inf becomes ``EXP_X_HI`` whose result is +Inf).
    2. ``t = mad(xc, C8, ROUND_MAGIC)`` with ``C8 = fp32(8/ln 2)``: the bits of ``t`` are
       ``0x4B400000 + m`` with ``m = round_half_even(mul(xc, C8))``, ``|m| <= 1025``.
    3. ``nnf = mad(t, -1, ROUND_MAGIC)`` (= ``-m`` exactly); ``r = mad(xc, C8, nnf)`` (=
       ``mul(xc, C8) - m``, exact, ``|r| <= 1/2``).
    4. ``p = mad(mad(r, P2, P1), r, 1)``: ``2**(r/8)`` (relative error 3.5e-6; ``p(0) = 1``).
    5. ``s = EXP_TABLE_ADJ[t & 7] + (t << 20)`` (32-bit integer add): ``t << 20`` is
       ``m << 20 = (k << 23) + (j << 20)`` with ``m = 8k + j``, ``0 <= j < 8`` (the high bits of
       ``t`` shift out), so ``s = 2**(k + j/8)`` exactly, a normal for ``-126 <= k <= 127``.
    6. ``y = mul(p, s)`` (flushes to +0 below ``2**-126``). Where ``x > 0`` instead
       ``y = mul(mul(p, s'), 2.0)`` with ``s' = EXP_TABLE_ADJ[t & 7] + ((t - 8) << 20) =
       2**(k - 1 + j/8)`` (integer ``t - 8``), which reaches ``k = 128`` and overflows to +Inf
       correctly; where both are normal the two give the same bits.

    ``exp(+-0) = 1`` exactly, ``exp(+Inf) = +Inf``, ``exp(-Inf) = +0``, NaN gives NaN.

    Parameters
    ----------
    x : array_like of float32
        Arguments.

    Returns
    -------
    numpy.ndarray
        ``float32`` results, same shape.
    """
    x = _as_f32(x)
    xc = fmin(fmax(x, EXP_X_LO), EXP_X_HI)
    t, p, tb = _exp2_parts(xc)
    y = f32_mul(p, f32_from_bits(_u32(tb, t << np.uint32(20))))
    hi = x > 0
    if hi.any():
        s_hi = f32_from_bits(_u32(tb, _u32(t, 8, sub=True) << np.uint32(20)))
        y = np.where(hi, f32_mul(f32_mul(p, s_hi), _F2), y)
    return np.asarray(y, dtype=np.float32)


# ---------------------------------------------------------------------------------------------
# reciprocal
# ---------------------------------------------------------------------------------------------
def reciprocal(x) -> np.ndarray:
    """Element-wise ``1 / x`` (``VRECIP``).

    Algorithm (``x`` after DAZ):

    0. Specials (selected at the end): NaN -> canonical NaN; ``+-0 -> +-Inf``; ``+-Inf -> +-0``.
    1. Split ``|x|`` into its exponent field ``E`` (1..254) and ``m`` = ``|x|``'s fraction bits
       with exponent field 127, so ``m`` is in [1, 2) and ``|x| = m * 2**(E-127)``.
    2. Seed: ``y = bits_to_f32(RECIP_MAGIC - f32_to_bits(m))`` (32-bit integer subtraction;
       ``RECIP_MAGIC = 0x7EF311C3``; relative error <= 0.0505, ``y`` in (0.47, 0.96]).
    3. Three Newton-Raphson steps, each::

           e = add(1.0, neg(mul(m, y)))     # exact by Sterbenz once m*y is near 1
           y = add(y, mul(y, e))

       (error 0.0505 -> 2.6e-3 -> 6.5e-6 -> 4e-11, then only rounding; ``y`` in [0.5, 1]).
    4. Sign: ``y = y`` with the sign bit of ``x`` copied in.
    5. Scale by ``2**k``, ``k = 127 - E`` in [-127, 126], split as ``k1 = floor(k/2)``,
       ``k2 = k - k1``: ``result = mul(mul(y, 2**k1), 2**k2)``. The first product is exact; the
       second rounds only if the result leaves the normal range, where it flushes to signed zero
       (``|x| > 2**126``) by the multiplier's rule.

    Parameters
    ----------
    x : array_like of float32
        Arguments.

    Returns
    -------
    numpy.ndarray
        ``float32`` results, same shape.
    """
    x = _as_f32(x)
    sign = _bits(x) & _SIGN
    a = _abs(x)
    e_field, m = _split_normal(a)
    y = f32_from_bits(np.uint32(RECIP_MAGIC) - _bits(m))
    for _ in range(RECIP_NEWTON_STEPS):
        e = f32_add(_F1, _neg(f32_mul(m, y)))
        y = f32_add(y, f32_mul(y, e))
    y = f32_from_bits(_bits(y) | sign)
    k = 127 - e_field
    k = np.clip(k, -127, 126)  # zero/Inf/NaN lanes have E = 0/255; they are replaced below
    k1 = k >> 1
    out = f32_mul(f32_mul(y, _pow2(k1)), _pow2(k - k1))
    out = np.where(a == 0, f32_from_bits(_INF_BITS | sign), out)
    out = np.where(np.isinf(a), f32_from_bits(sign), out)
    out = np.where(np.isnan(x), _canonical_nan(x.shape), out)
    return np.asarray(out, dtype=np.float32)


def recip_newton(s) -> np.ndarray:
    """``1/s`` for positive ``s`` in ``[2**-100, 2**100]`` (SOFTMAX's sum: ``1 <= s <= n``).

    Algorithm: seed ``y = bits_to_f32(RECIP_MAGIC - f32_to_bits(s))`` (32-bit integer subtraction
    on the whole pattern: relative error <= 0.0505), then ``RECIP_NEWTON_STEPS`` steps
    ``e = mad(neg(s), y, 1); y = mad(y, e, y)`` (error 4e-11 before rounding; the same bits as
    :func:`reciprocal` on the domain, within 1.13 fp32 ulp). A NaN gives NaN; outside the domain
    the result is what these steps give (no special cases; above 2**100 the last correction
    ``y*e`` flushes to zero).
    """
    s = _as_f32(s)
    ns = _neg(s)
    y = f32_from_bits(_u32(RECIP_MAGIC, _bits(s), sub=True))
    for _ in range(RECIP_NEWTON_STEPS):
        y = f32_mad(y, f32_mad(ns, y, _F1), y)
    return np.asarray(y, dtype=np.float32)


# ---------------------------------------------------------------------------------------------
# rsqrt
# ---------------------------------------------------------------------------------------------
def rsqrt(x) -> np.ndarray:
    """Element-wise ``1 / sqrt(x)`` (``VRSQRT``).

    Algorithm (``x`` after DAZ):

    0. Specials (selected at the end): NaN and ``x < 0`` (not -0) -> canonical NaN;
       ``+0 -> +Inf`` and ``-0 -> -Inf`` (IEEE 754 ``rSqrt``; DAZ turns a negative subnormal into
       -0); ``+Inf -> +0``.
    1. Split ``x = m * 2**e`` with ``m`` in [1, 2) (fraction bits with exponent field 127) and
       ``e = E - 127``. If ``e`` is odd: ``m = mul(m, 2.0)`` (exact) and ``e = e - 1``. Now ``m`` is
       in [1, 4) and ``e`` is even.
    2. Seed: ``y = bits_to_f32(RSQRT_MAGIC - (f32_to_bits(m) >> 1))`` with ``RSQRT_MAGIC =
       0x5F3759DF`` (relative error <= 0.0344).
    3. ``h = mul(m, 0.5)`` (exact). Three Newton steps, each::

           t = mul(mul(y, y), h)
           e = add(0.5, neg(t))             # exact by Sterbenz once t is near 0.5
           y = add(y, mul(y, e))

       (error 0.0344 -> 1.8e-3 -> 4.7e-6 -> 3e-11, then only rounding; ``y`` in (0.5, 1]).
    4. ``result = mul(y, 2**(-e/2))``; ``-e/2`` is in [-63, 63], so the product is exact.

    Parameters
    ----------
    x : array_like of float32
        Arguments.

    Returns
    -------
    numpy.ndarray
        ``float32`` results, same shape.
    """
    x = _as_f32(x)
    e_field, m = _split_normal(x)
    e = e_field - 127
    odd = (e & 1).astype(bool)
    m = np.where(odd, f32_mul(m, _F2), m)
    e = np.where(odd, e - 1, e)
    y = f32_from_bits(np.uint32(RSQRT_MAGIC) - (_bits(m) >> np.uint32(1)))
    h = f32_mul(m, _FHALF)
    for _ in range(RSQRT_NEWTON_STEPS):
        t = f32_mul(f32_mul(y, y), h)
        err = f32_add(_FHALF, _neg(t))
        y = f32_add(y, f32_mul(y, err))
    k = np.clip(-(e // 2), -126, 127)  # zero/Inf/NaN lanes are out of range; replaced below
    out = f32_mul(y, _pow2(k))
    sign = _bits(x) & _SIGN
    out = np.where(x == 0, f32_from_bits(_INF_BITS | sign), out)
    out = np.where(np.isposinf(x), np.float32(0.0), out)
    out = np.where(np.isnan(x) | (x < 0), _canonical_nan(x.shape), out)
    return np.asarray(out, dtype=np.float32)


def rsqrt_newton(x) -> np.ndarray:
    """``1/sqrt(x)`` for positive ``x`` in ``[2**-100, 2**100]`` (LAYERNORM's ``var + eps``).

    Algorithm: seed ``y = bits_to_f32(RSQRT_MAGIC - (f32_to_bits(x) >> 1))`` on the whole pattern,
    ``hn = mul(x, -0.5)``, then ``RSQRT_NEWTON_STEPS`` steps ``y = mad(y, mad(mul(y, y), hn, 0.5),
    y)``. On the domain these are :func:`rsqrt`'s steps scaled by a power of two, so the bits are
    the same (tested); a NaN gives NaN; outside the domain the result is what the steps give.
    """
    x = _as_f32(x)
    hn = f32_mul(x, np.float32(-0.5))
    y = f32_from_bits(_u32(RSQRT_MAGIC, _bits(x) >> np.uint32(1), sub=True))
    for _ in range(RSQRT_NEWTON_STEPS):
        y = f32_mad(y, f32_mad(f32_mul(y, y), hn, _FHALF), y)
    return np.asarray(y, dtype=np.float32)


# ---------------------------------------------------------------------------------------------
# GELU
# ---------------------------------------------------------------------------------------------
def gelu(x) -> np.ndarray:
    """Element-wise GELU, tanh form (``VGELU``).

    ``gelu(x) = 0.5 * x * (1 + tanh(u))`` with ``u = sqrt(2/pi) * (x + 0.044715 * x**3)``,
    computed as the identical ``x / (1 + exp(w))`` with ``w = -2u``: no cancellation for negative
    ``x`` (the quotient keeps its relative accuracy) and one reciprocal of ``den >= 1``.

    Algorithm (``x`` after DAZ; ``exp`` steps 2-5 are those of :func:`exp`):

    1. ``xc = fmax(x, GELU_X_MIN)`` (-16; NaN stays NaN, -Inf gives -16).
    2. ``w = mul(mad(mul(xc, xc), G3, G1), xc)``.
    3. ``wc = fmax(fmin(w, GELU_W_HI), EXP_X_LO)``.
    4. ``t, s`` of ``exp`` steps 2-5 on ``wc`` and ``pn = mad(mad(r, -P2, -P1), r, -1)`` (exactly
       ``-p``), then ``nd = mad(pn, s, -1)`` (``-(p*s + 1)``, the negated denominator).
    5. Seed ``y = bits_to_f32(RECIP_MAGIC - f32_to_bits(neg(nd)))`` (32-bit integer subtraction).
    6. Two Newton steps ``y = mul(y, mad(nd, y, 2))`` (the form ``y*(2 - den*y)``: no product
       smaller than ``y`` itself, so nothing flushes while ``y`` is normal).
    7. ``result = mul(xc, y)``.

    For ``w`` at ``GELU_W_HI`` the seed is below 2**-126, so ``y`` is +0 and the result is -0:
    that is every ``x`` below about -10.01 (true results below 2**-126 start at -10.06).

    Parameters
    ----------
    x : array_like of float32
        Arguments.

    Returns
    -------
    numpy.ndarray
        ``float32`` results, same shape.
    """
    x = _as_f32(x)
    xc = fmax(x, GELU_X_MIN)
    w = f32_mul(f32_mad(f32_mul(xc, xc), GELU_G3, GELU_G1), xc)
    wc = fmax(fmin(w, GELU_W_HI), EXP_X_LO)
    t, pn, tb = _exp2_parts(wc, negate=True)
    s = f32_from_bits(_u32(tb, t << np.uint32(20)))
    nd = f32_mad(pn, s, _FM1)
    y = f32_from_bits(_u32(RECIP_MAGIC, _bits(nd) ^ _SIGN, sub=True))
    for _ in range(GELU_NEWTON_STEPS):
        y = f32_mul(y, f32_mad(nd, y, _F2))
    return np.asarray(f32_mul(xc, y), dtype=np.float32)


# ---------------------------------------------------------------------------------------------
# Reductions: max, softmax, layernorm
# ---------------------------------------------------------------------------------------------
def vmax(x, axis: int = -1) -> np.ndarray:
    """Maximum along ``axis`` (``VMAX``; the softmax maximum): ``numerics.f32_max_total``.

    The total order ``-Inf < ... < -0 < +0 < ... < +Inf < NaN`` makes the result independent of the
    order of comparison: any NaN gives the canonical NaN, ``vmax([-0.0, +0.0]) = +0``.

    Parameters
    ----------
    x : array_like of float32
        Values (length >= 1 along ``axis``).
    axis : int
        Axis to reduce.

    Returns
    -------
    numpy.ndarray
        ``float32`` maxima, ``axis`` removed.
    """
    return f32_max_total(_as_f32(x), axis=axis)


def softmax(x) -> np.ndarray:
    """Softmax along the last axis (``SOFTMAX``, ``rows`` = the product of the leading axes).

    Algorithm for each row ``x[0..n-1]`` (after DAZ):

    1. ``m = vmax(x)`` (total order).
    2. ``d[i] = add(x[i], neg(m))`` (``d[i] <= 0``; the maximum gives +0).
    3. ``e[i] = exp(d[i])`` (the maximum gives exactly 1.0, so the sum is >= 1).
    4. ``s = f32_tree_sum(e)`` (``1 <= s <= n``, or NaN).
    5. ``r = recip_newton(s)``.
    6. ``p[i] = mul(e[i], r)``.

    A NaN anywhere, or an infinite maximum, makes every output of the row NaN (``Inf - Inf``).

    Parameters
    ----------
    x : array_like of float32
        Scores, shape ``(..., n)`` with ``n >= 1``.

    Returns
    -------
    numpy.ndarray
        ``float32`` probabilities, same shape.
    """
    e, r = softmax_parts(x)
    return np.asarray(f32_mul(e, r[..., None]), dtype=np.float32)


def softmax_parts(x) -> tuple[np.ndarray, np.ndarray]:
    """Steps 1-5 of :func:`softmax` (``SOFTMAXU``): ``softmax(x) == mul(e, r[..., None])`` bit
    for bit; ``SOFTMAXU`` stores both so that the product can follow ``p . V``.

    Parameters
    ----------
    x : array_like of float32
        Scores, shape ``(..., n)`` with ``n >= 1``.

    Returns
    -------
    tuple of numpy.ndarray
        ``e`` (``float32``, the shape of ``x``) and ``r`` (``float32``, the last axis removed).
    """
    x = _check_vector("softmax", x)
    e = exp(f32_add(x, _neg(vmax(x, axis=-1))[..., None]))
    return np.asarray(e, dtype=np.float32), np.asarray(recip_newton(f32_tree_sum(e)), np.float32)


def layernorm(x, gamma, beta, eps) -> np.ndarray:
    """LayerNorm along the last axis (``LAYERNORM``); 1-D or batched.

    Algorithm for each vector ``x[0..n-1]`` (after DAZ; ``sum`` is ``numerics.f32_tree_sum``):

    1. ``inv_n = recip_newton(float(n))`` (the vector unit's own reciprocal of the length, the
       same bits as ``reciprocal``; equals fp32(1/n) for powers of two).
    2. ``mean = mul(sum(x), inv_n)``.
    3. ``d[i] = add(x[i], neg(mean))``.
    4. ``var = mul(sum(mul(d[i], d[i])), inv_n)`` (biased variance, as GPT-2).
    5. ``rstd = rsqrt_newton(add(var, eps))`` (the same bits as ``rsqrt`` for ``var + eps`` in
       ``[2**-100, 2**100]``).
    6. ``y[i] = mad(mul(d[i], rstd), gamma[i], beta[i])``.

    Parameters
    ----------
    x : array_like of float32
        Inputs, shape ``(..., n)`` with ``n >= 1``.
    gamma, beta : array_like of float32
        Scale and shift, shape ``(n,)`` (or broadcastable to ``x``).
    eps : float
        Variance epsilon, rounded to fp32.

    Returns
    -------
    numpy.ndarray
        ``float32`` outputs, same shape as ``x``.
    """
    x = _check_vector("layernorm", x)
    gamma = _as_f32(gamma)
    beta = _as_f32(beta)
    for name, v in (("gamma", gamma), ("beta", beta)):
        try:
            np.broadcast_shapes(v.shape, x.shape)
        except ValueError as err:
            raise ValueError(
                f"layernorm {name} shape {v.shape} does not fit x shape {x.shape}"
            ) from err
    d, rstd = _ln_stats(x, eps)
    y = f32_mad(f32_mul(d, rstd[..., None]), gamma, beta)
    return np.asarray(y, dtype=np.float32)


def _ln_centre(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Steps 1-3 of :func:`layernorm` on DAZ'd ``x``: ``(d, inv_n)``."""
    inv_n = recip_newton(np.float32(x.shape[-1]))
    mean = f32_mul(f32_tree_sum(x), inv_n)
    return f32_add(x, _neg(mean)[..., None]), inv_n


def _ln_stats(x: np.ndarray, eps) -> tuple[np.ndarray, np.ndarray]:
    """Steps 1-5 of :func:`layernorm` on DAZ'd ``x``: ``(d, rstd)``."""
    d, inv_n = _ln_centre(x)
    var = f32_mul(f32_tree_sum(f32_mul(d, d)), inv_n)
    return d, rsqrt_newton(f32_add(var, _as_f32(eps)))


def layernorm_centre(x, gamma) -> np.ndarray:
    """The centred, scaled input of a LayerNorm folded into its GEMV (``LNCENTRE``).

    ``h[i] = mul(d[i], gamma[i])`` with ``d`` of :func:`layernorm` (steps 1-3): the same bits
    as ``layernorm``'s ``d`` times the gain. The GEMV consumes ``bf16(h)``; ``rstd``
    (:func:`layernorm_rstd`) scales its fp32 results and the shift ``beta`` is folded into the
    GEMV's bias (``docs/numerics.md``, "LayerNorm folded into the next GEMV").

    Parameters
    ----------
    x : array_like of float32
        Inputs, shape ``(..., n)``, ``n >= 1``.
    gamma : array_like of float32
        Gain, shape ``(n,)``.

    Returns
    -------
    numpy.ndarray
        ``float32``, the shape of ``x``.
    """
    d, _ = _ln_centre(_check_vector("layernorm_centre", x))
    return np.asarray(f32_mul(d, _as_f32(gamma)), dtype=np.float32)


def layernorm_stats(x, eps) -> tuple[np.ndarray, np.ndarray]:
    """``d`` and ``rstd`` of :func:`layernorm` (steps 1-5, the same bits; ``LNRSTD``).

    Parameters
    ----------
    x : array_like of float32
        Inputs, shape ``(..., n)``, ``n >= 1``.
    eps : float
        Variance epsilon, rounded to fp32.

    Returns
    -------
    d : numpy.ndarray
        ``float32`` centred inputs ``x - mean``, the shape of ``x``.
    rstd : numpy.ndarray
        ``float32``, shape ``x.shape[:-1]``.
    """
    d, rstd = _ln_stats(_check_vector("layernorm_stats", x), eps)
    return np.asarray(d, dtype=np.float32), np.asarray(rstd, dtype=np.float32)

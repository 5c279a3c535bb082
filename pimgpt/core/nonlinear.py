"""The vector unit's nonlinear functions, bit exact, built only from fp32 adds and multiplies.

Every function here is the executable specification of one vector-unit operation (``VEXP``,
``VRECIP``, ``VRSQRT``, ``VGELU``, ``VMAX``, ``SOFTMAX``, ``LAYERNORM`` in ``docs/isa.md``). Each is
a *fixed* sequence of

* ``numerics.f32_add`` / ``numerics.f32_mul`` (fp32, RNE, DAZ/FTZ, canonical NaN),
* sign-bit operations (negate = flip bit 31, absolute value = clear bit 31), which never round,
* integer work on bit fields (extract the exponent field, insert an exponent field to build ``2**k``
  or to normalise a significand into ``[1, 2)``, integer subtraction for the bit-trick seeds),
* float -> integer rounding (round half to even) of an in-range value,
* comparisons and selects.

No other floating-point operation is used, so an RTL vector unit made of one fp32 adder, one fp32
multiplier and some integer logic reproduces every output bit for bit by running the steps listed
in each docstring in order. Constants are fp32 values; their bit patterns are given in the module
constants below (``*_BITS``). All functions are vectorised over ``float32`` numpy arrays, flush
subnormal inputs (DAZ) and return ``float32`` arrays of the input's shape.

Accuracy against float64 (measured by ``python -m pimgpt.apps.bench_numerics``, see
``docs/numerics.md``)
is within a few fp32 ulps for ``exp``, ``reciprocal`` and ``rsqrt``, and far below one bf16 ulp for
``gelu``, ``softmax`` and ``layernorm``.
"""

from __future__ import annotations

import numpy as np

from pimgpt.core.numerics import (
    FP32_CANONICAL_NAN,
    FP32_MIN_NORMAL,
    f32_add,
    f32_from_bits,
    f32_mul,
    f32_sum_sequential,
    flush_f32,
)

# ---------------------------------------------------------------------------------------------
# Constants (fp32 bit patterns are the specification; the float values are derived from them)
# ---------------------------------------------------------------------------------------------
#: log2(e) rounded to fp32 (1.44269502...).
LOG2E_BITS = 0x3FB8AA3B
#: High part of ln(2) for the Cody-Waite reduction: 0.693145751953125, 15 significant bits, so
#: ``n * LN2_HI`` is exact for ``|n| <= 2**9``.
LN2_HI_BITS = 0x3F317200
#: Low part: fp32(ln(2) - LN2_HI) = 1.42860677e-06.
LN2_LO_BITS = 0x35BFBE8E
#: Inputs above this give +Inf, below ``EXP_X_MIN`` give +0 (the clamp keeps ``n`` in [-150, 129]).
EXP_X_MAX = np.float32(89.0)
EXP_X_MIN = np.float32(-104.0)
#: Taylor coefficients 1/k! for k = 2..7, each rounded to fp32 (k = 0, 1 use the exact 1.0).
EXP_TAYLOR_DEGREE = 7
#: Seed constant of the reciprocal (max relative seed error 0.0505 on [1, 2)).
RECIP_MAGIC = 0x7EF311C3
RECIP_NEWTON_STEPS = 3
#: Seed constant of the inverse square root (max relative seed error 0.0344 on [1, 4)).
RSQRT_MAGIC = 0x5F3759DF
RSQRT_NEWTON_STEPS = 3
#: GELU (tanh form) constants: fp32(0.044715) and fp32(sqrt(2/pi)).
GELU_A_BITS = 0x3D372713
GELU_SQRT_2_OVER_PI_BITS = 0x3F4C422A

_SIGN = np.uint32(0x80000000)
_ABS = np.uint32(0x7FFFFFFF)
_MANT = np.uint32(0x007FFFFF)
_ONE_BITS = np.uint32(0x3F800000)
_INF_BITS = np.uint32(0x7F800000)


def _c(bits: int) -> np.float32:
    return np.uint32(bits).view(np.float32)


LOG2E = _c(LOG2E_BITS)
LN2_HI = _c(LN2_HI_BITS)
LN2_LO = _c(LN2_LO_BITS)
GELU_A = _c(GELU_A_BITS)
GELU_SQRT_2_OVER_PI = _c(GELU_SQRT_2_OVER_PI_BITS)
#: fp32(1/k!) for k = 0..7 (index k).
EXP_TAYLOR = tuple(np.float32(1.0 / float(np.prod(np.arange(1, k + 1)))) for k in range(8))

_F1 = np.float32(1.0)
_F2 = np.float32(2.0)
_FHALF = np.float32(0.5)
_FM2 = np.float32(-2.0)


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


def _as_f32(x) -> np.ndarray:
    """Input conversion of every function: float32, subnormals flushed (DAZ), canonical NaN."""
    return flush_f32(np.asarray(x, dtype=np.float32))


# ---------------------------------------------------------------------------------------------
# exp
# ---------------------------------------------------------------------------------------------
def exp(x) -> np.ndarray:
    """Element-wise ``e**x`` (``VEXP``).

    Algorithm (``x`` after DAZ; every ``add``/``mul`` is ``f32_add``/``f32_mul``):

    0. Specials: NaN -> canonical NaN. Clamp ``xc = min(max(x, -104.0), 89.0)`` (compare and
       select); this maps +Inf to 89 (result overflows to +Inf in step 5) and -Inf to -104 (result
       flushes to +0), and keeps ``n`` in [-150, 129].
    1. ``t = mul(xc, LOG2E)``; ``n = round_half_even(t)`` as an integer (float -> int conversion;
       ``|t| <= 150.1``); ``nf = float(n)`` (exact).
    2. Cody-Waite reduction: ``r = add(xc, neg(mul(nf, LN2_HI)))``; ``r = add(r, neg(mul(nf,
       LN2_LO)))``. ``mul(nf, LN2_HI)`` is exact (15 + 8 significant bits) and the first add is
       exact (Sterbenz), so ``r`` carries only the rounding of the ``LN2_LO`` step and the last
       add; ``|r| <= 0.3467``.
    3. Taylor polynomial of degree 7 by Horner, ``c_k = fp32(1/k!)`` (``EXP_TAYLOR``)::

           p = c7
           p = add(mul(p, r), c6);  p = add(mul(p, r), c5);  p = add(mul(p, r), c4)
           p = add(mul(p, r), c3);  p = add(mul(p, r), c2)
           p = add(mul(p, r), 1.0); p = add(mul(p, r), 1.0)

       (truncation error below 7e-9 relative on ``|r| <= ln2/2``; ``p`` in [0.70, 1.42]).
    4. Split the scale: ``n1 = floor(n / 2)`` (arithmetic shift), ``n2 = n - n1``, both in
       [-75, 65]; ``s1 = 2**n1``, ``s2 = 2**n2`` built by exponent-field insertion.
    5. ``y = mul(mul(p, s1), s2)``. The first product is exact; the second is ``p * 2**n`` rounded
       by the multiplier, so overflow gives +Inf and a result below 2**-126 flushes to +0 exactly
       as the numerics contract says.

    ``exp(+-0) = 1`` exactly, ``exp(+Inf) = +Inf``, ``exp(-Inf) = +0``.

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
    nan = np.isnan(x)
    xc = np.minimum(np.maximum(np.where(nan, np.float32(0.0), x), EXP_X_MIN), EXP_X_MAX)
    t = f32_mul(xc, LOG2E)
    n = np.rint(t).astype(np.int64)  # numpy rint is round half to even
    nf = n.astype(np.float32)
    r = f32_add(xc, _neg(f32_mul(nf, LN2_HI)))
    r = f32_add(r, _neg(f32_mul(nf, LN2_LO)))
    p = np.full(r.shape, EXP_TAYLOR[EXP_TAYLOR_DEGREE], dtype=np.float32)
    for k in range(EXP_TAYLOR_DEGREE - 1, -1, -1):
        p = f32_add(f32_mul(p, r), EXP_TAYLOR[k])
    n1 = n >> 1  # floor division by 2 for negative n as well
    n2 = n - n1
    y = f32_mul(f32_mul(p, _pow2(n1)), _pow2(n2))
    if nan.any():
        y = np.where(nan, _canonical_nan(y.shape), y)
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


# ---------------------------------------------------------------------------------------------
# GELU
# ---------------------------------------------------------------------------------------------
def gelu(x) -> np.ndarray:
    """Element-wise GELU, tanh form (``VGELU``).

    ``gelu(x) = 0.5 * x * (1 + tanh(u))`` with ``u = sqrt(2/pi) * (x + 0.044715 * x**3)``. Since
    ``0.5 * (1 + tanh(u)) = 1 / (1 + exp(-2u))``, it is computed as ``x * sigmoid(2u)``, with the
    sigmoid evaluated on ``-2|u|`` so that ``exp`` never overflows and no ``Inf/Inf`` appears.

    Algorithm (``x`` after DAZ; ``exp`` and ``reciprocal`` are this module's functions):

    1. ``x3 = mul(mul(x, x), x)``
    2. ``u = mul(GELU_SQRT_2_OVER_PI, add(x, mul(GELU_A, x3)))``
    3. ``z = exp(mul(-2.0, abs(u)))``  (``z`` in [0, 1]; ``abs`` clears the sign bit)
    4. ``s = reciprocal(add(1.0, z))``  (``s`` in [0.5, 1])
    5. ``g = s`` if the sign bit of ``u`` is clear, else ``g = mul(z, s)`` (select)
    6. ``y = mul(x, g)``
    7. Specials (select): NaN -> canonical NaN; ``-Inf -> -0`` (step 6 would give ``-Inf * 0``).

    Large ``|x|`` needs no special case: ``x3`` or ``u`` may overflow to +-Inf, giving ``z = 0``,
    hence ``y = x`` for positive and ``y = -0`` for negative ``x``. For ``x`` below about -9.9 the
    true result is under about 1.3e-37 and ``z`` flushes to +0, so the result is -0.

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
    x3 = f32_mul(f32_mul(x, x), x)
    u = f32_mul(GELU_SQRT_2_OVER_PI, f32_add(x, f32_mul(GELU_A, x3)))
    z = exp(f32_mul(_FM2, _abs(u)))
    s = reciprocal(f32_add(_F1, z))
    u_neg = (_bits(u) & _SIGN) != 0
    g = np.where(u_neg, f32_mul(z, s), s)
    y = f32_mul(x, g)
    y = np.where(np.isneginf(x), np.float32(-0.0), y)
    y = np.where(np.isnan(x), _canonical_nan(x.shape), y)
    return np.asarray(y, dtype=np.float32)


# ---------------------------------------------------------------------------------------------
# Reductions: max, softmax, layernorm
# ---------------------------------------------------------------------------------------------
#: Up to this many vectors, sums run as a scalar loop (same bits, far less numpy call overhead).
_SCALAR_SUM_MAX_ROWS = 8


def sum_sequential(x) -> np.ndarray:
    """``numerics.f32_sum_sequential`` along the last axis, bit for bit, faster for few vectors.

    The vector unit's reduction: ``acc = +0; acc = add(acc, x[i])`` for ``i = 0..n-1``. For a
    handful of vectors (a decode step's LayerNorm and softmax) the per-element numpy calls of
    ``f32_sum_sequential`` dominate, so this runs the same adds on ``float32`` scalars (IEEE
    binary32 RNE, exactly ``f32_add`` on flushed operands) and flushes each partial sum below
    2**-126 to signed zero, as ``f32_add`` does; NaNs are canonicalised at the end (a NaN partial
    sum stays NaN). Larger batches call ``f32_sum_sequential`` itself.
    """
    x = _as_f32(x)
    lead = x.shape[:-1]
    rows = int(np.prod(lead, dtype=np.int64))
    if rows > _SCALAR_SUM_MAX_ROWS:
        return f32_sum_sequential(x, axis=-1)
    flat = x.reshape(rows, x.shape[-1])
    out = np.zeros(rows, dtype=np.float32)
    tiny = FP32_MIN_NORMAL
    zero = np.float32(0.0)
    with np.errstate(over="ignore", invalid="ignore"):
        for r in range(rows):
            acc = zero
            for v in flat[r]:
                acc = acc + v
                if -tiny < acc < tiny:
                    acc = acc * zero  # keeps the sign
            out[r] = acc
    return flush_f32(out.reshape(lead))


def vmax(x, axis: int = -1) -> np.ndarray:
    """Maximum along ``axis`` as the vector unit scans it (``VMAX``).

    ``m = x[0]``; for ``i = 1..n-1``: ``m = x[i] if x[i] > m else m``; the result is the canonical
    NaN if any element is NaN. Hence among equal maxima the first wins, which only matters for the
    sign of a zero maximum (``vmax([-0.0, +0.0]) = -0.0``).

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
    x = _as_f32(x)
    if x.shape[axis] == 0:
        raise ValueError("vmax of an empty vector")
    x = np.moveaxis(x, axis, -1)
    # np.argmax returns the first index of the maximum (and the first NaN if any is present).
    idx = np.argmax(x, axis=-1)
    m = np.take_along_axis(x, idx[..., None], axis=-1)[..., 0]
    return flush_f32(m)


def softmax(x) -> np.ndarray:
    """Softmax along the last axis (``SOFTMAX``); 1-D or batched.

    Algorithm for each vector ``x[0..n-1]`` (after DAZ):

    1. ``m = vmax(x)`` (left to right, first maximum wins).
    2. ``d[i] = add(x[i], neg(m))`` (so ``d[i] <= 0`` and the maximum gives exactly +0).
    3. ``e[i] = exp(d[i])`` (the maximum gives exactly 1.0, so the sum is >= 1).
    4. ``s = ((e[0] + e[1]) + e[2]) + ...`` with ``add``, left to right starting from +0
       (``numerics.f32_sum_sequential``).
    5. ``r = reciprocal(s)``.
    6. ``p[i] = mul(e[i], r)``.

    A NaN anywhere, or an infinite maximum, makes every output NaN (``Inf - Inf``).

    Parameters
    ----------
    x : array_like of float32
        Scores, shape ``(..., n)`` with ``n >= 1``.

    Returns
    -------
    numpy.ndarray
        ``float32`` probabilities, same shape.
    """
    x = _as_f32(x)
    if x.ndim == 0 or x.shape[-1] == 0:
        raise ValueError(f"softmax needs a non-empty last axis, got shape {x.shape}")
    m = vmax(x, axis=-1)
    e = exp(f32_add(x, _neg(m)[..., None]))
    r = reciprocal(sum_sequential(e))
    return np.asarray(f32_mul(e, r[..., None]), dtype=np.float32)


def layernorm(x, gamma, beta, eps) -> np.ndarray:
    """LayerNorm along the last axis (``LAYERNORM``); 1-D or batched.

    Algorithm for each vector ``x[0..n-1]`` (after DAZ; ``sum`` is the left-to-right
    ``f32_sum_sequential`` starting from +0):

    1. ``inv_n = reciprocal(float(n))`` (the vector unit's own reciprocal of the length; equals
       fp32(1/n) for powers of two).
    2. ``mean = mul(sum(x), inv_n)``.
    3. ``d[i] = add(x[i], neg(mean))``.
    4. ``var = mul(sum(mul(d[i], d[i])), inv_n)`` (biased variance, as GPT-2).
    5. ``rstd = rsqrt(add(var, eps))``.
    6. ``y[i] = add(mul(mul(d[i], rstd), gamma[i]), beta[i])``.

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
    x = _as_f32(x)
    if x.ndim == 0 or x.shape[-1] == 0:
        raise ValueError(f"layernorm needs a non-empty last axis, got shape {x.shape}")
    n = x.shape[-1]
    gamma = _as_f32(gamma)
    beta = _as_f32(beta)
    for name, v in (("gamma", gamma), ("beta", beta)):
        try:
            np.broadcast_shapes(v.shape, x.shape)
        except ValueError as err:
            raise ValueError(
                f"layernorm {name} shape {v.shape} does not fit x shape {x.shape}"
            ) from err
    eps32 = _as_f32(eps)
    inv_n = reciprocal(np.float32(n))
    mean = f32_mul(sum_sequential(x), inv_n)
    d = f32_add(x, _neg(mean)[..., None])
    var = f32_mul(sum_sequential(f32_mul(d, d)), inv_n)
    rstd = rsqrt(f32_add(var, eps32))
    y = f32_add(f32_mul(f32_mul(d, rstd[..., None]), gamma), beta)
    return np.asarray(y, dtype=np.float32)

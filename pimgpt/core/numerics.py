"""The pimgpt numerics contract: bf16 storage, exact products, fp32 sums with RNE and FTZ.

Every function here is the executable specification that the RTL, the functional simulator and the
reference model follow bit for bit. All functions are vectorised over numpy arrays of *bit patterns*
(``uint16`` for bf16, ``uint32`` for fp32) or, where stated, ``float32`` values.

Rules (see ``docs/numerics.md``):

* **Rounding**: round to nearest, ties to even (RNE), everywhere.
* **Subnormals**: flushed to zero, keeping the sign, on every input (DAZ) and every output (FTZ).
  A result is flushed when its magnitude *after rounding to 24 significant bits with an unbounded
  exponent* is below 2**-126 (the smallest normal).
* **Signed zeros**: IEEE 754 rules (``+0 + -0 = +0``, ``x - x = +0``, sign of a product is the XOR).
* **Overflow**: to +-Inf (RNE overflow).
* **NaN**: any NaN result is the one canonical quiet NaN, ``0x7FC00000`` (fp32) / ``0x7FC0`` (bf16).
* **MAC step**: 16 exact bf16 x bf16 products (fp32), an adder tree ``((p0+p1)+(p2+p3))+...`` in
  pairs, level by level, then ``acc = acc + tree``; every add is one fp32 RNE/FTZ add.
* **Vector-unit sums** (:func:`f32_tree_sum`): a fold into 128 virtual lanes, then a halving tree;
  the same bits for every lane count that divides 128. Maxima use a total order
  (:func:`f32_max_total`), ARGMAX the first index (:func:`f32_argmax`): both order-independent.
"""

from __future__ import annotations

import numpy as np

FP32_CANONICAL_NAN = np.uint32(0x7FC00000)
BF16_CANONICAL_NAN = np.uint16(0x7FC0)
FP32_MIN_NORMAL = np.float32(2.0**-126)
MAC_LANES = 16

_EXP_MASK32 = np.uint32(0x7F800000)
_MANT_MASK32 = np.uint32(0x007FFFFF)
_SIGN_MASK32 = np.uint32(0x80000000)


# ---------------------------------------------------------------------------------------------
# Bit-pattern views and flushing
# ---------------------------------------------------------------------------------------------
def f32_from_bits(bits) -> np.ndarray:
    """Reinterpret ``uint32`` bit patterns as ``float32`` values (no conversion; shape kept)."""
    return np.asarray(bits, dtype=np.uint32).view(np.float32)


def bits_from_f32(values) -> np.ndarray:
    """Reinterpret ``float32`` values as ``uint32`` bit patterns (no conversion; shape kept)."""
    return np.asarray(values, dtype=np.float32).view(np.uint32)


def flush_f32(x: np.ndarray) -> np.ndarray:
    """Flush subnormal ``float32`` values to signed zero and canonicalise NaNs.

    Parameters
    ----------
    x : numpy.ndarray
        ``float32`` values.

    Returns
    -------
    numpy.ndarray
        ``float32`` values with no subnormals and only the canonical NaN.
    """
    x = np.asarray(x, dtype=np.float32)
    with np.errstate(invalid="ignore"):  # Inf * 0 in the lanes np.where discards
        out = np.where(np.abs(x) < FP32_MIN_NORMAL, x * np.float32(0.0), x)
    nan = np.isnan(out)
    if nan.any():
        out = np.where(nan, f32_from_bits(np.full(out.shape, FP32_CANONICAL_NAN)), out)
    return out.astype(np.float32, copy=False)


# ---------------------------------------------------------------------------------------------
# bf16 <-> fp32
# ---------------------------------------------------------------------------------------------
def bf16_to_f32(bits16) -> np.ndarray:
    """Widen bf16 bit patterns to ``float32`` values (exact; subnormals flushed, NaN canonical).

    Parameters
    ----------
    bits16 : array_like of uint16
        bf16 bit patterns.

    Returns
    -------
    numpy.ndarray
        ``float32`` values.
    """
    b = np.asarray(bits16, dtype=np.uint16).astype(np.uint32) << np.uint32(16)
    return flush_f32(f32_from_bits(b))


def f32_to_bf16(values) -> np.ndarray:
    """Round ``float32`` values to bf16 bit patterns, round-to-nearest-even.

    Subnormal inputs become signed zero; overflow gives +-Inf; NaN gives ``0x7FC0``. A normal input
    never rounds to a bf16 subnormal, since bf16 shares fp32's exponent range.

    Parameters
    ----------
    values : array_like of float32
        Values to round.

    Returns
    -------
    numpy.ndarray
        ``uint16`` bf16 bit patterns.
    """
    x = flush_f32(np.asarray(values, dtype=np.float32))
    b = bits_from_f32(x).astype(np.uint64)
    rounded = (b + np.uint64(0x7FFF) + ((b >> np.uint64(16)) & np.uint64(1))) >> np.uint64(16)
    out = rounded.astype(np.uint16)
    nan = np.isnan(x)
    if nan.any():
        out = np.where(nan, BF16_CANONICAL_NAN, out).astype(np.uint16)
    return out


def f64_to_bf16(values) -> np.ndarray:
    """Round float64 values to bf16 via fp32 (double rounding accepted; used for weights only)."""
    return f32_to_bf16(np.asarray(values, dtype=np.float64).astype(np.float32))


# ---------------------------------------------------------------------------------------------
# fp32 arithmetic
# ---------------------------------------------------------------------------------------------
def f32_add(a, b) -> np.ndarray:
    """fp32 addition, RNE, DAZ/FTZ, canonical NaN.

    The exact sum of two normals is a multiple of 2**-149, so IEEE addition never rounds in the
    subnormal range; flushing the IEEE result afterwards equals flushing by the contract's rule.

    Parameters
    ----------
    a, b : array_like of float32
        Operands (broadcast together).

    Returns
    -------
    numpy.ndarray
        ``float32`` sums.
    """
    a = flush_f32(a)
    b = flush_f32(b)
    with np.errstate(over="ignore", invalid="ignore"):
        return flush_f32(a + b)


def _f32_round_unbounded(exact: np.ndarray) -> np.ndarray:
    """Round exact float64 values (products of fp32s) to fp32 with the contract's underflow rule."""
    with np.errstate(over="ignore", invalid="ignore", under="ignore"):
        direct = exact.astype(np.float32)
        # Tiny results: scale up by 2**64 (exact), round at 24 bits, then scale back. A value that
        # rounds to >= 2**-126 survives (as a normal); anything smaller flushes to signed zero.
        tiny = np.abs(exact) < 2.0**-100
        if tiny.any():
            scaled = (exact * 2.0**64).astype(np.float32)
            back = scaled.astype(np.float64) * 2.0**-64
            back = np.where(np.abs(back) < 2.0**-126, back * 0.0, back).astype(np.float32)
            direct = np.where(tiny, back, direct)
    return flush_f32(direct)


def f32_mul(a, b) -> np.ndarray:
    """fp32 multiplication, RNE, DAZ/FTZ, canonical NaN.

    The float64 product of two fp32 values is exact (24 + 24 <= 53 bits), so rounding it once to
    fp32 is correct rounding.
    """
    a64 = flush_f32(a).astype(np.float64)
    b64 = flush_f32(b).astype(np.float64)
    with np.errstate(over="ignore", invalid="ignore"):
        return _f32_round_unbounded(a64 * b64)


def bf16_mul(a16, b16) -> np.ndarray:
    """Exact product of two bf16 bit patterns as fp32 (only range limits round: FTZ / Inf)."""
    return f32_mul(bf16_to_f32(a16), bf16_to_f32(b16))


def f32_fma_free_dot_tree(products: np.ndarray) -> np.ndarray:
    """Sum the last axis (length 16) with the contract's fixed pairwise adder tree.

    Level by level, element ``2i`` is added to element ``2i+1``:
    ``((((p0+p1)+(p2+p3))+((p4+p5)+(p6+p7)))+...)``.
    """
    level = np.asarray(products, dtype=np.float32)
    if level.shape[-1] != MAC_LANES:
        raise ValueError(f"adder tree needs {MAC_LANES} lanes, got {level.shape[-1]}")
    while level.shape[-1] > 1:
        level = f32_add(level[..., 0::2], level[..., 1::2])
    return level[..., 0]


def mac_step(acc, a16, b16) -> np.ndarray:
    """One MAC-unit step: ``acc + tree(a[0:16] * b[0:16])``.

    Parameters
    ----------
    acc : array_like of float32, shape (...)
        Accumulator values.
    a16, b16 : array_like of uint16, shape (..., 16)
        One 32-byte column of bf16 operands each.

    Returns
    -------
    numpy.ndarray
        New ``float32`` accumulator values.
    """
    return f32_add(acc, f32_fma_free_dot_tree(bf16_mul(a16, b16)))


def mac_columns(acc, a16, b16) -> np.ndarray:
    """Run MAC steps over columns: ``a16``/``b16`` of shape (..., ncols, 16), in column order.

    The products and adder trees of all columns are computed at once; only the accumulation into
    ``acc`` (column 0 first) is sequential.
    """
    a16 = np.asarray(a16, dtype=np.uint16)
    b16 = np.asarray(b16, dtype=np.uint16)
    trees = f32_fma_free_dot_tree(bf16_mul(a16, b16))  # (..., ncols)
    acc = flush_f32(np.broadcast_to(np.asarray(acc, dtype=np.float32), trees.shape[:-1]).copy())
    for c in range(trees.shape[-1]):
        acc = f32_add(acc, trees[..., c])
    return acc


def dot_bf16(a16, b16, acc=0.0) -> np.ndarray:
    """Dot product of bf16 vectors along the last axis as the MAC unit computes it.

    The length must be a multiple of 16 (callers pad with +0, which changes no result).
    """
    a16 = np.asarray(a16, dtype=np.uint16)
    b16 = np.asarray(b16, dtype=np.uint16)
    n = a16.shape[-1]
    if n % MAC_LANES:
        raise ValueError(f"dot length {n} is not a multiple of {MAC_LANES}; pad with zeros")
    shape_a = a16.shape[:-1] + (n // MAC_LANES, MAC_LANES)
    shape_b = b16.shape[:-1] + (n // MAC_LANES, MAC_LANES)
    return mac_columns(acc, a16.reshape(shape_a), b16.reshape(shape_b))


def f32_mad(a, b, c) -> np.ndarray:
    """Multiply-add with two roundings: ``f32_add(f32_mul(a, b), c)`` (the vector unit's ``MAD``).

    Not fused: the product is rounded (RNE, FTZ) before the add, exactly as the two operations
    written out. ``MAD(a, 1.0, c)`` is ``f32_add(a, c)``, ``MAD(a, b, -0.0)`` is ``f32_mul(a, b)``
    (``-0`` is an exact additive identity), so one multiply-add pipeline does all three.
    """
    return f32_add(f32_mul(a, b), c)


#: Width of the contract's reduction: every sum folds its input into this many partial sums (one
#: per "virtual lane") before the tree. Any vector unit whose lane count divides it computes the
#: same bits; see :func:`f32_tree_sum`.
REDUCE_LANES = 128


def f32_tree_sum(x, axis: int = -1) -> np.ndarray:
    """Sum along ``axis`` in the contract's fixed lane-parallel order (every vector-unit sum).

    With ``F = REDUCE_LANES`` (128) and ``n`` elements (after DAZ):

    1. **Fold**: virtual lane ``l < min(n, F)`` starts at ``x[l]`` and adds ``x[l + F]``,
       ``x[l + 2F]``, ... in order (each ``acc = acc + x``); lanes ``l >= n`` are empty.
    2. **Tree**: for ``h = F/2, F/4, ..., 1``: ``acc[i] = acc[i] + acc[i + h]`` for ``i < h``,
       where adding an empty lane leaves ``acc[i]`` as it is.
    3. The result is ``acc[0]``.

    A unit with ``W`` lanes (``W`` divides ``F``) keeps virtual lane ``l`` in lane ``l % W`` of
    register ``l // W``: the fold and the tree levels ``h >= W`` are plain vector adds, the last
    ``log2(W)`` levels shift lanes. An empty lane behaves as ``-0``, an exact additive identity,
    so hardware pads with ``-0`` (or ``+0`` where every value is ``>= +0``). A sum of one element
    is that element (``[-0]`` sums to ``-0``).

    Parameters
    ----------
    x : array_like of float32
        Values; the summed axis must not be empty.
    axis : int
        Axis to sum.

    Returns
    -------
    numpy.ndarray
        ``float32`` sums, ``axis`` removed.
    """
    x = flush_f32(np.moveaxis(np.asarray(x, dtype=np.float32), axis, -1))
    n = x.shape[-1]
    if n == 0:
        raise ValueError("tree sum of an empty vector")
    lanes = REDUCE_LANES
    blocks = -(-n // lanes)
    pad = np.full(x.shape[:-1] + (blocks * lanes - n,), -0.0, dtype=np.float32)
    v = np.concatenate([x, pad], axis=-1).reshape(x.shape[:-1] + (blocks, lanes))
    acc = v[..., 0, :]
    for b in range(1, blocks):
        acc = f32_add(acc, v[..., b, :])
    h = lanes // 2
    while h >= 1:
        acc = f32_add(acc[..., :h], acc[..., h:2 * h])
        h //= 2
    return acc[..., 0]


def f32_order_key(x) -> np.ndarray:
    """Total-order key of fp32 values (``uint32``; larger key = larger value), after DAZ.

    ``-Inf < ... < -0 < +0 < ... < +Inf < NaN`` (NaNs become the canonical NaN first). This is the
    order of ``VMAX``/``FMAX`` and of the softmax maximum: a maximum under it does not depend on
    the order in which elements are compared.
    """
    b = bits_from_f32(flush_f32(x))
    return np.where(b >> np.uint32(31) != 0, ~b, b | _SIGN_MASK32).astype(np.uint32)


def f32_max_total(x, axis: int = -1) -> np.ndarray:
    """Maximum along ``axis`` under :func:`f32_order_key` (canonical NaN if any element is NaN).

    Order-independent (ties are identical bit patterns), so any tree gives these bits.
    """
    x = flush_f32(np.moveaxis(np.asarray(x, dtype=np.float32), axis, -1))
    if x.shape[-1] == 0:
        raise ValueError("maximum of an empty vector")
    idx = np.argmax(f32_order_key(x), axis=-1)
    return np.take_along_axis(x, idx[..., None], axis=-1)[..., 0]


def f32_argmax(x, axis: int = -1) -> np.ndarray:
    """First index of the maximum along ``axis`` (``ARGMAX``), comparing as floats after DAZ.

    ``-0 == +0``; a NaN is greater than every number and equal to every NaN (so the first NaN wins
    if there is one). Order-independent with the index tie-break (the smaller index wins a tie).
    """
    x = np.moveaxis(np.asarray(x, dtype=np.float32), axis, -1)
    if x.shape[-1] == 0:
        raise ValueError("argmax of an empty vector")
    return np.argmax(_argmax_key(x), axis=-1)


def _argmax_key(x) -> np.ndarray:
    """The order ``ARGMAX`` compares by: :func:`f32_order_key` after DAZ with ``-0`` tied to
    ``+0`` (and every NaN equal: the order key makes them the canonical NaN)."""
    key = f32_order_key(x)
    return np.where(key == np.uint32(0x7FFFFFFF), np.uint32(0x80000000), key)


def f32_argmax_continue(x, prev: int, lo: int) -> int:
    """``ARGMAXC``: the first index of the maximum of ``x`` (1-D), given ``prev`` (``< lo``), the
    first index of the maximum of ``x[:lo]``.

    The maximum of ``x[lo:]`` (first index) replaces ``prev`` only when strictly greater than
    ``x[prev]``: ``prev`` is below every index of the piece, so it wins a tie. When ``prev`` is
    what it claims, the result is ``f32_argmax(x)`` (the merge of two first maxima is exact and
    associative); only ``x[prev]`` and ``x[lo:]`` are read.
    """
    x = np.asarray(x, dtype=np.float32)
    if not 0 <= prev < lo < x.shape[-1]:
        raise ValueError(f"need 0 <= prev ({prev}) < lo ({lo}) < len(x) ({x.shape[-1]})")
    j = lo + int(np.argmax(_argmax_key(x[lo:])))
    return j if _argmax_key(x[j]) > _argmax_key(x[prev]) else prev

"""Operands, directed corner cases, payload packing and golden results for the arithmetic blocks.

Pure numpy (no cocotb): the same stimulus feeds the Amaranth simulator tests, the cocotb tests and
the benches. Golden results always come from :mod:`pimgpt.core.numerics`.
"""

from __future__ import annotations

import numpy as np

from pimgpt.core import numerics as nx

__all__ = [
    "FP32_DIRECTED",
    "BF16_DIRECTED",
    "cross_pairs",
    "fp32_random",
    "bf16_random",
    "fp32_add_pairs",
    "fp32_mul_pairs",
    "golden",
    "pack_pairs",
    "mac_random",
    "mac_directed",
    "mac_reference",
    "pack_mac_columns",
]

#: fp32 corner values: signed zeros, subnormals (DAZ), smallest/largest normals, ones and their
#: neighbours, Inf, quiet/signalling NaNs, values around the rounding and range limits.
FP32_DIRECTED = np.array([
    0x00000000, 0x80000000,                         # +-0
    0x00000001, 0x807FFFFF, 0x00400000,             # subnormals: zeros on input
    0x00800000, 0x80800000, 0x00800001, 0x00FFFFFF,  # smallest normals
    0x7F7FFFFF, 0xFF7FFFFF, 0x7F7FFFFE, 0x7F000000,  # largest normals
    0x3F800000, 0xBF800000, 0x3F800001, 0x3F7FFFFF,  # 1, -1, 1 +- ulp
    0x3FC00000, 0x40000000, 0x33800000, 0x33800001,  # 1.5, 2, 2**-24 (half ulp of 1), ...
    0x34000000, 0x1F800000, 0x5F800000, 0x20000000,  # 2**-23, 2**-64, 2**64, 2**-63
    0x7F800000, 0xFF800000,                         # +-Inf
    0x7FC00000, 0xFFC00000, 0x7F800001, 0xFFFFFFFF,  # NaNs (quiet, signalling, negative)
], dtype=np.uint32)

#: bf16 corner values, in the same spirit.
BF16_DIRECTED = np.array([
    0x0000, 0x8000, 0x0001, 0x807F,                 # +-0, subnormals
    0x0080, 0x8080, 0x00FF, 0x0100,                 # smallest normals
    0x7F7F, 0xFF7F, 0x7F00, 0x7E80,                 # largest normals
    0x3F80, 0xBF80, 0x3F81, 0x3FFF, 0x4000, 0x3F00,  # around 1
    0x1F80, 0x2000, 0x5F80, 0x6000,                 # 2**-64, 2**-63, 2**64, 2**65
    0x7F80, 0xFF80, 0x7FC0, 0xFFC0, 0x7F81, 0xFFFF,  # Inf, NaNs
], dtype=np.uint16)


def cross_pairs(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Every ordered pair of ``values`` (``len(values)**2`` pairs)."""
    a, b = np.meshgrid(values, values, indexing="ij")
    return a.ravel().copy(), b.ravel().copy()


def _fp32(sign, exp, mant) -> np.ndarray:
    return ((np.asarray(sign, np.uint32) << 31) | (np.asarray(exp, np.uint32) << 23)
            | np.asarray(mant, np.uint32)).astype(np.uint32)


def fp32_random(rng: np.random.Generator, n: int) -> np.ndarray:
    """Random fp32 bit patterns: half near 1 (exponents 110..145), a quarter any normal, an eighth
    any bit pattern, an eighth drawn from :data:`FP32_DIRECTED`."""
    n1, n2, n3 = n // 2, n // 4, n // 8
    n4 = n - n1 - n2 - n3
    parts = [
        _fp32(rng.integers(0, 2, n1), rng.integers(110, 146, n1), rng.integers(0, 1 << 23, n1)),
        _fp32(rng.integers(0, 2, n2), rng.integers(1, 255, n2), rng.integers(0, 1 << 23, n2)),
        rng.integers(0, 1 << 32, n3, dtype=np.uint64).astype(np.uint32),
        rng.choice(FP32_DIRECTED, n4),
    ]
    return rng.permutation(np.concatenate(parts)).astype(np.uint32)


def bf16_random(rng: np.random.Generator, n: int, *, near: float = 0.75) -> np.ndarray:
    """Random bf16 bit patterns: a fraction ``near`` with exponents 112..142 (sums of their products
    round and cancel in interesting ways), the rest split between any bit pattern and
    :data:`BF16_DIRECTED`."""
    n1 = int(n * near)
    n2 = (n - n1) // 2
    n3 = n - n1 - n2
    sign = rng.integers(0, 2, n1).astype(np.uint16) << 15
    near_v = sign | (rng.integers(112, 143, n1).astype(np.uint16) << 7) | rng.integers(0, 128, n1)
    parts = [near_v.astype(np.uint16), rng.integers(0, 1 << 16, n2).astype(np.uint16),
             rng.choice(BF16_DIRECTED, n3)]
    return rng.permutation(np.concatenate(parts)).astype(np.uint16)


def fp32_add_pairs(rng: np.random.Generator, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Adder operands: random pairs, plus pairs built to cancel (``b ~ -a``), to need every
    alignment shift 0..30, and to land exactly on rounding ties."""
    a = fp32_random(rng, n)
    b = fp32_random(rng, n)
    q = n // 4
    idx = rng.permutation(n)
    cancel, shift, tie = idx[:q], idx[q:2 * q], idx[2 * q:2 * q + q // 2]
    # b = -(a +- a few ulps): massive cancellation, exact zeros, long normalisation shifts.
    b[cancel] = (a[cancel] ^ np.uint32(0x80000000)) + rng.integers(-3, 4, len(cancel)).astype(
        np.uint32)
    # b = a scaled by 2**-d with a random significand: every alignment distance.
    ea = (a[shift] >> 23) & 0xFF
    eb = np.clip(ea.astype(np.int64) - rng.integers(0, 31, len(shift)), 1, 254)
    b[shift] = _fp32(rng.integers(0, 2, len(shift)), eb, rng.integers(0, 1 << 23, len(shift)))
    # a = 1.m, b = exactly half an ulp of a (or that plus a sticky bit): ties to even and above.
    a[tie] = _fp32(rng.integers(0, 2, len(tie)), rng.integers(100, 150, len(tie)),
                   rng.integers(0, 1 << 23, len(tie)))
    sticky = rng.integers(0, 2, len(tie)).astype(np.uint32)
    b[tie] = _fp32(a[tie] >> 31, ((a[tie] >> 23) & 0xFF) - 24, sticky)
    return a, b


def fp32_mul_pairs(rng: np.random.Generator, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Multiplier operands: random pairs, plus pairs whose product is near the underflow limit
    (including exact products just below 2**-126 that round up to it) and near overflow."""
    a = fp32_random(rng, n)
    b = fp32_random(rng, n)
    q = n // 6
    idx = rng.permutation(n)
    under, over, edge = idx[:q], idx[q:2 * q], idx[2 * q:3 * q]
    for sel, lo, hi in ((under, 123, 131), (over, 250, 258)):
        ea = rng.integers(max(1, lo - 254), 255, len(sel))
        ea = np.clip(ea, 1, 254)
        eb = np.clip(rng.integers(lo, hi, len(sel)) - ea, 1, 254)
        a[sel] = _fp32(rng.integers(0, 2, len(sel)), ea, rng.integers(0, 1 << 23, len(sel)))
        b[sel] = _fp32(rng.integers(0, 2, len(sel)), eb, rng.integers(0, 1 << 23, len(sel)))
    # Significands whose 48-bit product lies in [2**47 - 2**23, 2**47): it rounds up to 2**47,
    # i.e. to exactly 2**-126 when the exponents add up to 127 (the unbounded-rounding rule).
    ma = rng.integers(1 << 23, 1 << 24, len(edge)).astype(np.uint64)
    target = np.uint64((1 << 47) - (1 << 22))
    mb = (target + ma - np.uint64(1)) // ma
    ok = (mb >= (1 << 23)) & (mb < (1 << 24)) & (ma * mb < np.uint64(1 << 47))
    ma, mb, sel = ma[ok], mb[ok], edge[ok]
    ea = rng.integers(1, 127, len(sel))
    a[sel] = _fp32(rng.integers(0, 2, len(sel)), ea, ma & np.uint64((1 << 23) - 1))
    b[sel] = _fp32(rng.integers(0, 2, len(sel)), 127 - ea, mb & np.uint64((1 << 23) - 1))
    return a, b


def golden(op: str, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Golden result bit patterns of ``op`` in {"bf16mul", "fp32add", "fp32mul"}."""
    with np.errstate(all="ignore"):
        if op == "bf16mul":
            return nx.bits_from_f32(nx.bf16_mul(a, b)).copy()
        fa, fb = nx.f32_from_bits(a), nx.f32_from_bits(b)
        if op == "fp32add":
            return nx.bits_from_f32(nx.f32_add(fa, fb)).copy()
        if op == "fp32mul":
            return nx.bits_from_f32(nx.f32_mul(fa, fb)).copy()
    raise ValueError(f"unknown op {op!r}; use bf16mul, fp32add or fp32mul")


def pack_pairs(a: np.ndarray, b: np.ndarray, width: int) -> list[int]:
    """Payload integers of an operand-pair struct: ``a`` in the low ``width`` bits, then ``b``."""
    a = np.asarray(a, np.uint64)
    b = np.asarray(b, np.uint64)
    return ((b << np.uint64(width)) | a).tolist()


# ---------------------------------------------------------------------------------------------
# MAC unit
# ---------------------------------------------------------------------------------------------
def mac_random(rng: np.random.Generator, ncols: int, lanes: int = nx.MAC_LANES,
               max_len: int = 8) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Random dot products totalling ``ncols`` columns.

    Returns
    -------
    a16, b16 : numpy.ndarray
        ``(ncols, lanes)`` uint16 operands.
    lengths : numpy.ndarray
        Columns per dot product (1..``max_len``; a quarter of them a single column, which checks
        every column's tree on its own), summing to ``ncols``.
    """
    lens = []
    total = 0
    while total < ncols:
        k = 1 if rng.random() < 0.25 else int(rng.integers(1, max_len + 1))
        k = min(k, ncols - total)
        lens.append(k)
        total += k
    # Mostly clean columns (values near 1, so the tree and the accumulator round and cancel);
    # specials are injected sparsely, else nearly every dot product would end as Inf or NaN.
    a16 = bf16_random(rng, ncols * lanes, near=1.0).reshape(ncols, lanes)
    b16 = bf16_random(rng, ncols * lanes, near=1.0).reshape(ncols, lanes)
    for ops in (a16, b16):
        lane_mask = rng.random((ncols, lanes)) < 0.02  # scattered zeros, subnormals, tiny normals
        ops[lane_mask] = rng.choice(BF16_DIRECTED[:8], int(lane_mask.sum()))
    special = rng.random(ncols) < 0.04  # a column with one Inf/NaN/limit operand
    a16[special, rng.integers(0, lanes, int(special.sum()))] = rng.choice(
        BF16_DIRECTED, int(special.sum()))
    wild = rng.random(ncols) < 0.03  # a column of arbitrary bit patterns
    a16[wild] = rng.integers(0, 1 << 16, (int(wild.sum()), lanes)).astype(np.uint16)
    # Negate the previous column of a: the accumulator cancels (exactly, or nearly so).
    neg = np.nonzero(rng.random(ncols) < 0.05)[0]
    neg = neg[neg > 0]
    a16[neg] = a16[neg - 1] ^ np.uint16(0x8000)
    b16[neg] = b16[neg - 1]
    return a16, b16, np.array(lens, dtype=np.int64)


def _bf(x: float) -> int:
    return int(nx.f32_to_bf16(np.float32(x)).reshape(-1)[0])


def mac_directed(lanes: int = nx.MAC_LANES) -> tuple[np.ndarray, np.ndarray, np.ndarray, list]:
    """Directed MAC dot products: zeros, Inf/NaN, range limits, cancellation, rounding ties.

    Returns
    -------
    a16, b16, lengths, names
        As :func:`mac_random`, plus one name per dot product (used in failure reports).
    """
    one, zero, nzero = 0x3F80, 0x0000, 0x8000
    inf, ninf, nan, snan = 0x7F80, 0xFF80, 0x7FC0, 0x7F81
    big, tiny, sub = 0x7F7F, 0x0080, 0x0001
    cols_a, cols_b, lens, names = [], [], [], []

    def dot(name, pairs_per_col):
        for pa, pb in pairs_per_col:
            ra = np.zeros(lanes, np.uint16)
            rb = np.zeros(lanes, np.uint16)
            ra[:len(pa)] = pa
            rb[:len(pb)] = pb
            cols_a.append(ra)
            cols_b.append(rb)
        lens.append(len(pairs_per_col))
        names.append(name)

    dot("all +0", [([], [])])
    dot("-0 products only: +0 + -0 = +0", [([nzero] * lanes, [one] * lanes)])
    dot("-0 then -0 columns", [([nzero], [one]), ([one], [nzero])])
    dot("Inf product", [([inf, one], [one, one])])
    dot("-Inf accumulates", [([ninf], [one]), ([one], [one])])
    dot("Inf - Inf in tree = NaN", [([inf, inf], [one, 0xBF80])])
    dot("Inf - Inf across columns = NaN", [([inf], [one]), ([ninf], [one])])
    dot("Inf * 0 = NaN", [([inf], [zero])])
    dot("NaN input", [([nan, one], [one, one])])
    dot("signalling NaN input", [([snan], [one]), ([one], [one])])
    dot("largest normal product overflows", [([big], [big])])
    dot("largest normals overflow in the tree", [([big, big], [one, one])])
    dot("overflow in the accumulator", [([big], [one]), ([big], [one])])
    dot("smallest normal * 1 survives", [([tiny], [one])])
    dot("smallest normal squared flushes", [([tiny], [tiny])])
    dot("subnormal input is zero", [([sub, 0x807F], [one, one])])
    dot("exact cancellation in the tree", [([0x4049, 0xC049], [0x3FC0, 0x3FC0])])
    dot("exact cancellation across columns", [([0x4049], [0x3FC0]), ([0xC049], [0x3FC0])])
    # Level-2 tie: (1 + 2**-23) + 2**-24 rounds up to even 1 + 2**-22; 1 + 2**-24 rounds down.
    e23, e24 = _bf(2.0**-23), _bf(2.0**-24)
    dot("tie rounds to even (up)", [([one, e23, e24], [one, one, one])])
    dot("tie rounds to even (down)", [([one, zero, e24], [one, one, one])])
    dot("above tie rounds up", [([one, zero, e24, _bf(2.0**-40)], [one, one, one, one])])
    dot("accumulator tie", [([one], [one]), ([e24], [one])])
    # acc = -1.5 * 2**-126, then + 2**-126 -> -2**-127 flushes to -0, then + 0 -> +0.
    m15 = _bf(-1.5 * 2.0**-126)
    dot("FTZ gives -0 in the accumulator, then +0",
        [([m15], [one]), ([tiny], [one]), ([zero], [zero])])
    dot("FTZ result is the last", [([m15], [one]), ([tiny], [one])])
    alt = [one if k % 2 == 0 else 0xBF80 for k in range(lanes)]
    dot("alternating +-1 cancels level 0", [(alt, [one] * lanes)])
    dot("full column of ones", [([one] * lanes, [one] * lanes)] * 3)
    return (np.array(cols_a, np.uint16), np.array(cols_b, np.uint16),
            np.array(lens, np.int64), names)


def mac_reference(a16: np.ndarray, b16: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """Golden dot products (uint32 bit patterns), one per entry of ``lengths``.

    Equivalent to ``numerics.dot_bf16`` on each dot product; vectorised across dot products (the
    accumulation is sequential in column order within each).
    """
    a16 = np.asarray(a16, np.uint16)
    b16 = np.asarray(b16, np.uint16)
    lengths = np.asarray(lengths, np.int64)
    with np.errstate(all="ignore"):
        trees = nx.f32_fma_free_dot_tree(nx.bf16_mul(a16, b16))  # (ncols,)
        starts = np.concatenate([[0], np.cumsum(lengths)[:-1]])
        acc = np.zeros(len(lengths), np.float32)
        for k in range(int(lengths.max(initial=0))):
            live = lengths > k
            acc[live] = nx.f32_add(acc[live], trees[starts[live] + k])
    return nx.bits_from_f32(acc).copy()


def pack_mac_columns(a16: np.ndarray, b16: np.ndarray, lengths: np.ndarray) -> list[int]:
    """Payload integers of the MAC column layout (see ``hdl.mac.mac_column_layout``).

    ``a`` occupies bits ``[0, 16*lanes)``, ``b`` the next ``16*lanes`` bits, then ``first`` and
    ``last``, derived from ``lengths``.
    """
    a16 = np.asarray(a16, np.uint16)
    b16 = np.asarray(b16, np.uint16)
    ncols, lanes = a16.shape
    lengths = np.asarray(lengths, np.int64)
    ends = np.cumsum(lengths)
    first = np.zeros(ncols, np.uint8)
    last = np.zeros(ncols, np.uint8)
    first[ends - lengths] = 1
    last[ends - 1] = 1
    raw = np.concatenate([a16.astype("<u2").view(np.uint8).reshape(ncols, -1),
                          b16.astype("<u2").view(np.uint8).reshape(ncols, -1),
                          (first | (last << 1)).reshape(ncols, 1)], axis=1)
    return [int.from_bytes(row.tobytes(), "little") for row in raw]

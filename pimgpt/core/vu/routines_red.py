"""Routines with reductions: VMAX, ARGMAX, ARGMAXC, SOFTMAX (``rows`` rows) and LAYERNORM.

Sums follow ``numerics.f32_tree_sum`` exactly: block ``b`` of a row adds into accumulator
``b mod A`` (``A = 128/W`` registers = the contract's 128 virtual lanes), the accumulators are
added pairwise (tree levels ``h >= W``), then the in-register levels: with two rows, one ``VUZP``
pair puts both rows' halves side by side and one add does level ``W/2`` for both, then ``VSHD``
shifts serve the remaining levels of both rows at once. Maxima (order-independent) use the same
trees with ``VFMAX``; ARGMAX carries an index register per value register and breaks ties towards
the smaller index; ARGMAXC scans a piece the same way and merges it with ``src[R[reg]]``.
"""

from __future__ import annotations

from pimgpt.core import nonlinear as nl
from pimgpt.core.numerics import REDUCE_LANES

from . import routines_fn as fn
from .asm import Asm, SReg, VReg
from .routines import ZERO, F, Scalars, blocks, blocks_of, by_groups, copy_reg, log2, window
from .uisa import MODE_UPPER, Fill, UOp

NEG_INF = 0xFF800000
NEG_ZERO = 0x80000000


def _op(a: Asm, op: UOp, x: VReg, y: VReg) -> VReg:
    z = a.vreg()
    a.v(op, z, x, y)
    return z


def tree_regs(a: Asm, op: UOp, regs: list[VReg]) -> VReg:
    """Register levels of the tree: ``r[i] = op(r[i], r[i + len/2])`` until one is left."""
    regs = list(regs)
    while len(regs) > 1:
        h = len(regs) // 2
        regs = [_op(a, op, regs[i], regs[i + h]) for i in range(h)]
    return regs[0]


def tree_rows(a: Asm, op: UOp, rows: list[VReg]) -> VReg:
    """In-register levels for ``G`` rows (one register each, ``G`` a power of two): zip levels
    ``h = W/2 .. W/G`` pack the rows side by side, shift levels finish them. Row ``q``'s result
    is lane ``q * W/G`` of the returned register."""
    W = a.lanes
    regs, h = list(rows), W // 2
    while len(regs) > 1:
        nxt = []
        for i in range(0, len(regs), 2):
            lo, hi = a.vreg("zl"), a.vreg("zh")
            a.v(UOp.VUZP, lo, regs[i], h, vc=regs[i + 1])
            a.v(UOp.VUZP, hi, regs[i], h, mode=MODE_UPPER, vc=regs[i + 1])
            nxt.append(_op(a, op, lo, hi))
        regs, h = nxt, h // 2
    r = regs[0]
    while h >= 1:
        sh = a.vreg("sh")
        a.v(UOp.VSHD, sh, r, h)
        r = _op(a, op, r, sh)
        h //= 2
    return r


def _bcast(a: Asm, value: int) -> VReg:
    r = a.vreg("init")
    a.v(UOp.VBCAST, r, None, value)
    return r


# ---------------------------------------------------------------------------------------------
# VMAX, ARGMAX
# ---------------------------------------------------------------------------------------------
def vmax(a: Asm) -> None:
    """VMAX dst=s1 src=s2 n=s3: ``dst[0] = numerics.f32_max_total(src)``."""
    a.label("vmax")
    S = Scalars()
    K = 4
    acc = [_bcast(a, NEG_INF) for _ in range(K)]
    p, hi = copy_reg(a, S, F[2]), window(a, S, F[2], F[3])
    nb = blocks_of(a, S, F[3])

    def body(q, b, off):
        x = a.vreg("x")
        a.ld(x, p, F[2], hi, Fill.NEG_INF, off=off)
        a.v(UOp.VFMAX, acc[b], acc[b], x)

    blocks(a, S, nb, 1, K, [p], body)
    m = tree_rows(a, UOp.VFMAX, [tree_regs(a, UOp.VFMAX, acc)])
    one = window(a, S, F[1], SReg(0))
    a.s(UOp.SADD, one, F[1], 1)
    a.st(m, F[1], F[1], one)
    a.done()


def _pick(a: Asm, v1: VReg, i1: VReg, v2: VReg, i2: VReg) -> tuple[VReg, VReg]:
    """``(v2, i2)`` where it beats ``(v1, i1)``: greater, or equal with a smaller index."""
    gt, eq, lt, tie, take = (a.vreg() for _ in range(5))
    a.v(UOp.VFGT, gt, v2, v1)
    a.v(UOp.VFEQ, eq, v2, v1)
    a.v(UOp.VSLTU, lt, i2, i1)
    a.v(UOp.VAND, tie, eq, lt)
    a.v(UOp.VOR, take, gt, tie)
    a.v(UOp.VCMOV, v1, take, v2)
    a.v(UOp.VCMOV, i1, take, i2)
    return v1, i1


def _argmax_scan(a: Asm, S: Scalars, start: SReg, n: SReg, base: SReg) -> tuple[VReg, VReg]:
    """First maximum of the ``n`` words at ``start``: lane 0 of the returned (value, index)
    registers, the index counted from ``base``.

    ``K`` (value, index) register pairs. The first ``K`` blocks are loaded directly (lanes beyond
    ``n`` read -Inf with an index past the piece, so they never win a tie); each later block
    replaces a lane only when strictly greater, which keeps the first index within a lane. The
    index register records the block pointer; lane and block offsets are added at the end, then
    the pairs are combined with the tie-break.
    """
    W, K = a.lanes, 4
    p, hi = copy_reg(a, S, start), window(a, S, start, n)
    nb = blocks_of(a, S, n)
    val = [a.vreg("av") for _ in range(K)]
    idx = [a.vreg("ai") for _ in range(K)]
    with a.sched():
        for b in range(K):
            with a.copy(b):
                a.ld(val[b], p, start, hi, Fill.NEG_INF, off=b * W)
                a.v(UOp.VBCAST, idx[b], None, p)
        a.s(UOp.SADD, p, p, K * W)
    rest = S()
    a.s(UOp.SMAX, rest, nb, K)
    a.s(UOp.SSUB, rest, rest, K)

    def body(q, b, off):
        x, c = a.vreg("x"), a.vreg("c")
        a.ld(x, p, start, hi, Fill.NEG_INF, off=off)
        a.v(UOp.VFGT, c, x, val[b])
        a.v(UOp.VCMOV, val[b], c, x)
        a.v(UOp.VCMOV, idx[b], c, p)

    blocks(a, S, rest, 1, K, [p], body)
    for b in range(K):  # element index = pointer + b*W + lane - base
        io, t = a.vreg(), a.vreg()
        a.v(UOp.VIOTA, io, None, b * W)
        a.v(UOp.VADD, t, idx[b], io)
        a.v(UOp.VSUB, idx[b], t, base)
    v, i = val, idx
    while len(v) > 1:
        h = len(v) // 2
        pairs = [_pick(a, v[j], i[j], v[j + h], i[j + h]) for j in range(h)]
        v, i = [x for x, _ in pairs], [y for _, y in pairs]
    v0, i0 = v[0], i[0]
    h = W // 2
    while h >= 1:
        sv, si = a.vreg(), a.vreg()
        a.v(UOp.VSHD, sv, v0, h)
        a.v(UOp.VSHD, si, i0, h)
        v0, i0 = _pick(a, v0, i0, sv, si)
        h //= 2
    return v0, i0


def _write_index(a: Asm, S: Scalars, i0: VReg) -> None:
    """``R[reg] = i0[0]``."""
    r = S()
    a.movv(r, i0, 0)
    a.wsr(r, F[1])
    a.done()


def argmax(a: Asm) -> None:
    """ARGMAX reg=s1 src=s2 n=s3: ``R[reg] = numerics.f32_argmax(src)``."""
    a.label("argmax")
    S = Scalars()
    _, i0 = _argmax_scan(a, S, F[2], F[3], F[2])
    _write_index(a, S, i0)


def argmaxc(a: Asm) -> None:
    """ARGMAXC reg=s1 src=s2 lo=s3 n=s4: ``R[reg] = numerics.f32_argmax_continue(src[0 .. lo+n),
    R[reg], lo)``: the piece's first maximum replaces ``R[reg]`` only when strictly greater than
    ``src[R[reg]]`` (lane 0 of a one-word window; the other lanes are -Inf and never matter)."""
    a.label("argmaxc")
    S = Scalars()
    start = window(a, S, F[2], F[3])
    v0, i0 = _argmax_scan(a, S, start, F[4], F[2])
    prev, at, one = S(), S(), S()
    a.rsr(prev, F[1])
    a.s(UOp.SADD, at, F[2], prev)
    a.s(UOp.SADD, one, at, 1)
    pv, pi = a.vreg("pv"), a.vreg("pi")
    a.ld(pv, at, at, one, Fill.NEG_INF)
    a.v(UOp.VBCAST, pi, None, prev)
    _, i0 = _pick(a, pv, pi, v0, i0)
    _write_index(a, S, i0)


# ---------------------------------------------------------------------------------------------
# SOFTMAX
# ---------------------------------------------------------------------------------------------
def _softmax_group(a: Asm, S: Scalars, k: fn.Consts, G: int, base_s: SReg, base_d: SReg,
                   n: SReg, nb: SReg, rcp: tuple) -> None:
    """Softmax of ``G`` rows starting at ``base_s`` (results at ``base_d``). Row ``q``'s window is
    ``[0, end of row q)``: its blocks never reach below its start, so the lower bound can be 0.
    ``rcp``: the ``(pointer, rseg)`` registers of :func:`store_rcp` (:func:`product_or_rcp`)."""
    W = a.lanes
    A = REDUCE_LANES // W
    seg = W // G
    hi, p, dhi, dp = ([S() for _ in range(G)] for _ in range(4))

    def starts(ptrs, bases, ends):
        for q in range(G):
            a.s(UOp.SADD, ptrs[q], bases if q == 0 else ends[q - 1], 0)

    # pass 1: maxima (order-independent: K accumulators per row); the set-up scheduled (the
    # scalar bounds pair with the accumulators' broadcasts)
    Km = max(2, 8 // G)
    with a.sched():
        for q in range(G):
            a.s(UOp.SADD, hi[q], base_s if q == 0 else hi[q - 1], n)
            a.s(UOp.SADD, dhi[q], base_d if q == 0 else dhi[q - 1], n)
        mx = [[_bcast(a, NEG_INF) for _ in range(Km)] for _ in range(G)]
        starts(p, base_s, hi)

    def max_body(q, b, off):
        x = a.vreg("x")
        a.ld(x, p[q], ZERO, hi[q], Fill.NEG_INF, off=off)
        a.v(UOp.VFMAX, mx[q][b], mx[q][b], x)

    blocks(a, S, nb, G, Km, p, max_body)
    neg_m = a.vreg("nm")
    nm = [a.vreg("nmq") for _ in range(G)]
    with a.sched():
        a.v(UOp.VXOR, neg_m, tree_rows(a, UOp.VFMAX, [tree_regs(a, UOp.VFMAX, r) for r in mx]),
            fn.SIGN)
        for q in range(G):
            a.v(UOp.VBCL, nm[q], neg_m, q * seg)
        starts(p, base_s, hi)
        starts(dp, base_d, dhi)
        acc = [[_bcast(a, NEG_ZERO) for _ in range(A)] for _ in range(G)]
    # pass 2: e = exp(x - m), stored; the sums in the contract's order
    Ks = max(A, 4)

    pipe = G > 1  # a single row: too few copies per iteration for the pipelined loop to pay

    def exp_body(q, b, off):
        # pipelined: every add as mad(., 1.0, .) and the product as mad(., ., -0) (the same
        # bits): one latency for all fp results, so the loop issues one per cycle (with two
        # latencies no steady order gives every result its own write-port cycle)
        x, d, s = a.vreg("x"), a.vreg("d"), acc[q][b % A]
        a.ld(x, p[q], ZERO, hi[q], Fill.NEG_INF, off=off)
        if pipe:
            a.mad(d, x, fn.ONE, nm[q])
        else:
            a.v(UOp.VFADD, d, x, nm[q])
        e = fn.exp_nonpos(a, k, d, mad_only=pipe)
        a.st(e, dp[q], ZERO, dhi[q], off=off)
        if pipe:
            a.mad(s, e, fn.ONE, s)
        else:
            a.v(UOp.VFADD, s, s, e)

    blocks(a, S, nb, G, Ks, p + dp, exp_body, max_open=4 if G <= 2 else 5, period=A,
           pipelined=pipe)
    rq = [a.vreg("rq") for _ in range(G)]
    with a.sched():
        row_reciprocals(a, acc, rq, seg)
        starts(dp, base_d, dhi)
        a.s(UOp.SADD, base_s, hi[G - 1], 0)  # the next group starts where this one ends
    # pass 3, p = e * r (SOFTMAX: rseg = 0), or SOFTMAXU's reciprocals (the row pointers are
    # dead after the exp pass: the scratch)
    product_or_rcp(a, rcp, lambda: scale_rows(a, S, nb, dp, dhi, rq),
                   lambda: store_rcp(a, rq, *rcp, p[0], dp[0]))
    a.s(UOp.SADD, base_d, dhi[G - 1], 0)  # (the branches' join: a label needs an operation)


def product_or_rcp(a: Asm, rcp: tuple, product, reciprocals) -> None:
    """The end of a group of rows: ``product()`` for SOFTMAX (``rseg``, a field SOFTMAX does
    not have, reads 0), ``reciprocals()`` for SOFTMAXU; the caller emits an operation after."""
    unnorm, join = a.fresh("smax.rcp"), a.fresh("smax.join")
    a.br(UOp.BNE, rcp[1], ZERO, unnorm)
    product()
    a.br(UOp.BEQ, ZERO, ZERO, join)
    a.label(unnorm)
    reciprocals()
    a.label(join)


def store_rcp(a: Asm, rq: list, ptr: SReg, rseg: SReg, hi: SReg, cnt: SReg) -> None:
    """SOFTMAXU: row ``q``'s ``1/sum`` (every lane of ``rq[q]``) to the ``rseg`` words from
    ``ptr``, one row after another (a loop of ``ceil(rseg / W)`` stores, the last masked at
    the row's end); ``ptr`` moves past the group. ``hi`` and ``cnt`` are scratch."""
    W = a.lanes
    a.s(UOp.SADD, cnt, rseg, W - 1)
    a.s(UOp.SSHR, cnt, cnt, log2(W))
    for r in rq:
        a.s(UOp.SADD, hi, ptr, rseg)
        with a.loop(cnt):
            a.st(r, ptr, ZERO, hi)
            a.s(UOp.SADD, ptr, ptr, W)
        a.s(UOp.SADD, ptr, hi, 0)


def row_reciprocals(a: Asm, acc: list, rq: list, seg: int) -> None:
    """``rq[q]`` = ``1 / sum`` of row ``q`` in every lane, from its sum registers ``acc[q]`` (the
    contract's tree, the rows side by side in ``seg`` lanes each)."""
    inv = fn.recip_newton(
        a, tree_rows(a, UOp.VFADD, [tree_regs(a, UOp.VFADD, r) for r in acc]))
    for q, r in enumerate(rq):
        a.v(UOp.VBCL, r, inv, q * seg)


def scale_rows(a: Asm, S: Scalars, nb: SReg, dp: list, his: list, rq: list) -> None:
    """SOFTMAX's last pass: row ``q``'s exponentials at ``dp[q]`` (window ``[0, his[q])``)
    times ``rq[q]``, in place."""
    def scale_body(q, b, off):
        e, y = a.vreg("e"), a.vreg("y")
        a.ld(e, dp[q], ZERO, his[q], Fill.NEG_ZERO, off=off)
        a.v(UOp.VFMUL, y, e, rq[q])
        a.st(y, dp[q], ZERO, his[q], off=off)

    blocks(a, S, nb, len(dp), max(2, 4 // len(dp)), dp, scale_body)


#: Rows per group of the SOFTMAX routine, by lane count (bounded by the vector registers).
SOFTMAX_ROWS = {16: 1, 32: 1, 64: 2, 128: 4}
#: Rows per group when a row fits one register (``n <= W``): everything stays in registers.
SOFTMAX_SHORT_ROWS = 8


def _softmax_short(a: Asm, S: Scalars, k: fn.Consts, G: int, B: int, base_s: SReg,
                   base_d: SReg, n: SReg, rcp: tuple | None = None) -> None:
    """Softmax of ``G`` rows of ``n <= B*W`` (``B`` = 1 or 2): ``B`` registers per row, loaded
    once, stored once, the whole group in one scheduled region. Row ``q`` spans
    ``[bs[q], bs[q+1])``. With two registers the sum's first step is ``e0 + e1`` (the fold, or
    the register-level tree level of the contract, with the empty virtual lanes left out).
    ``rcp`` (SOFTMAXU): the ``(pointer, rseg)`` registers of :func:`store_rcp`."""
    W = a.lanes
    seg = W // G
    bs, bd = [base_s] + [S() for _ in range(G)], [base_d] + [S() for _ in range(G)]
    with a.sched(max_open=6):  # 8 rows in flight would need more than the 32 registers
        # the row bounds in the region: the first loads need only the first ones
        for q in range(G):
            a.s(UOp.SADD, bs[q + 1], bs[q], n)
            a.s(UOp.SADD, bd[q + 1], bd[q], n)
        x = [[a.vreg("x") for _ in range(B)] for _ in range(G)]
        for q in range(G):
            for j in range(B):
                with a.copy(q * B + j):
                    a.ld(x[q][j], bs[q], ZERO, bs[q + 1], Fill.NEG_INF, off=j * W)
        neg_m = a.vreg("nm")
        a.v(UOp.VXOR, neg_m, tree_rows(a, UOp.VFMAX, [tree_regs(a, UOp.VFMAX, r) for r in x]),
            fn.SIGN)
        e = [[None] * B for _ in range(G)]
        for q in range(G):
            nm = a.vreg("nmq")
            a.v(UOp.VBCL, nm, neg_m, q * seg)
            for j in range(B):
                with a.copy(G * B + q * B + j):
                    d = a.vreg("d")
                    a.v(UOp.VFADD, d, x[q][j], nm)
                    e[q][j] = fn.exp_nonpos(a, k, d)
        inv = fn.recip_newton(a, tree_rows(a, UOp.VFADD, [tree_regs(a, UOp.VFADD, r) for r in e]))
        rq = [a.vreg("rq") for _ in range(G if rcp is not None else 0)]
        if rcp is not None:  # SOFTMAXU: the exponentials and the reciprocals as they are
            for q in range(G):
                for j in range(B):
                    with a.copy(2 * G * B + q * B + j):
                        a.st(e[q][j], bd[q], ZERO, bd[q + 1], off=j * W)
                a.v(UOp.VBCL, rq[q], inv, q * seg)
        for q in range(G if rcp is None else 0):
            r = a.vreg("rq")
            a.v(UOp.VBCL, r, inv, q * seg)
            for j in range(B):
                with a.copy(2 * G * B + q * B + j):
                    y = a.vreg("y")
                    a.v(UOp.VFMUL, y, e[q][j], r)
                    a.st(y, bd[q], ZERO, bd[q + 1], off=j * W)
        a.s(UOp.SADD, base_s, bs[G], 0)
        a.s(UOp.SADD, base_d, bd[G], 0)
    if rcp is not None:  # the row bounds are dead now: the scratch
        store_rcp(a, rq, *rcp, bs[1], bd[1])


def softmax(a: Asm) -> None:
    """SOFTMAX dst=s1 src=s2 n=s3 rows=s4, and SOFTMAXU (the same fields, then rcp=s5 rseg=s6):
    ``rows`` contiguous rows of ``n``. Rows that fit one register (``n <= W``) go
    :data:`SOFTMAX_SHORT_ROWS` at a time through registers only, rows that fit two half as many
    (the registers bound both); longer rows ``G`` at a time (:data:`SOFTMAX_ROWS`) in three
    passes over the scratchpad. One routine for both opcodes: ``rseg`` (0 for SOFTMAX, whose
    unused fields are cleared at dispatch) selects, at the end of each group of rows, the
    product by ``1/sum`` or SOFTMAXU's reciprocals over ``rseg`` words from ``rcp + row * rseg``
    (:func:`store_rcp`; long rows then take two passes)."""
    a.label("softmax")
    S = Scalars()
    k = fn.Consts(a)
    k.need(*fn.EXP_CONSTS)
    n = F[3]
    # the fields' own registers: the fused path needs every scalar temporary
    rows, base_s, base_d = F[4], F[2], F[1]
    rcp = (F[5], F[6])
    S.shared("niter"), S.shared("nrem")
    wreg = S.shared("kb")
    a.s(UOp.SMAX, rows, rows, 1)  # a program of format 1 has no rows field: one row
    mark = S.next
    end = a.fresh("smax.end")
    for B, G in ((1, SOFTMAX_SHORT_ROWS), (2, SOFTMAX_SHORT_ROWS // 2)):
        longer, unnorm = a.fresh("smax.longer"), a.fresh("smax.short_u")
        a.li(wreg, B * a.lanes + 1)
        a.br(UOp.BGEU, n, wreg, longer)
        # each short group is one scheduled region, which cannot branch: a copy for each
        a.br(UOp.BNE, rcp[1], ZERO, unnorm)
        for r in (None, rcp):
            S.next = mark
            by_groups(a, S, rows, G,
                      lambda g, B=B, r=r: _softmax_short(a, S, k, g, B, base_s, base_d, n, r))
            a.br(UOp.BEQ, ZERO, ZERO, end)
            if r is None:
                a.label(unnorm)
        a.label(longer)
    S.next = mark
    nb = blocks_of(a, S, n)
    from .routines_smax import FUSED_LANES, FUSED_MIN_BLOCKS, softmax_fused

    G = SOFTMAX_ROWS[a.lanes]
    fused = a.fresh("smax.fused")
    use_fused = a.lanes in FUSED_LANES
    if use_fused:
        # n a multiple of W, in place: the next group's maxima in this group's exp loop. It
        # pays from two groups of rows of 8 blocks (its loop runs at 9 cycles a block, not 8,
        # and saves the max pass of every group but the first; bench_vu)
        plain = a.fresh("smax.plain")
        a.s(UOp.SAND, wreg, n, a.lanes - 1)
        a.br(UOp.BNE, wreg, ZERO, plain)
        a.li(wreg, FUSED_MIN_BLOCKS * a.lanes)
        a.br(UOp.BLTU, n, wreg, plain)
        a.li(wreg, 2 * G)
        a.br(UOp.BNE, base_s, base_d, plain)  # in place only (routines_smax: the registers)
        a.br(UOp.BGEU, rows, wreg, fused)
        a.label(plain)
    mark = S.next
    by_groups(a, S, rows, G, lambda g: _softmax_group(a, S, k, g, base_s, base_d, n, nb, rcp))
    a.label(end)
    a.done()
    if use_fused:
        # last in the routine: the constant registers of the paths above are dead here (the
        # fused loop keeps its constants in scalar registers; the registers are the bound)
        a.label(fused)
        S.next = mark
        softmax_fused(a, S, G, base_s, base_d, n, nb, rows, rcp)
        S.next = mark
        k2 = fn.Consts(a)
        k2.need(*fn.EXP_CONSTS)
        by_groups(a, S, rows, G,
                  lambda g: _softmax_group(a, S, k2, g, base_s, base_d, n, nb, rcp), full=False)
        a.done()


# ---------------------------------------------------------------------------------------------
# LAYERNORM
# ---------------------------------------------------------------------------------------------
#: Blocks of LAYERNORM's last pass whose loads are hoisted into the shadow of the variance's
#: tree and ``rsqrt`` chain (their scratchpad port is otherwise idle), by lane count; the
#: registers bound it (three loads per block stay live until ``rstd`` is ready, beside the
#: ``128 / W`` accumulators).
LN_PEEL = {16: 4, 32: 6, 64: 8, 128: 8}


def _square_add(a: Asm, acc: VReg, d: VReg, A: int) -> None:
    """``acc = add(mul(d, d), acc)``: one multiply-add, or (when the chain through ``acc`` is
    the bound: few accumulators) a multiply then an add, the same two roundings in the same
    order, so that the chain waits for the adder only."""
    lat = a.lat
    if (lat.mul + lat.add) / A > max(3, lat.add / A):
        dd = a.vreg("dd")
        a.v(UOp.VFMUL, dd, d, d)
        a.v(UOp.VFADD, acc, dd, acc)
    else:
        a.mad(acc, d, d, acc)


def layernorm(a: Asm) -> None:
    """LAYERNORM dst=s1 src=s2 gamma=s3 beta=s4 n=s5 eps=s6 (``nonlinear.layernorm``).

    Passes: (1) ``sum(x)``; (2) ``d = x - mean`` stored in ``dst``; (3) ``sum(d*d)`` from ``dst``
    (lanes beyond ``n`` read +0, so their squares add nothing; when ``n`` is a multiple of ``W``
    there are none and pass 3 runs in pass 2's loop); (4) ``y = (d*rstd)*gamma + beta``. When
    ``n`` has at least :data:`LN_PEEL` blocks, pass 4's first blocks are loaded while the variance
    is reduced and ``rsqrt`` runs, in the same scheduled region (from half as many blocks on: the
    peeled blocks beyond ``n`` are masked by the windows, cheaper than a remainder loop).
    """
    a.label("layernorm")
    S = Scalars()
    W = a.lanes
    A = REDUCE_LANES // W
    P = LN_PEEL[W]
    n = F[5]
    # pass 1: sum(x) (shared with LNCENTRE and LNRSTD; imported here: that module builds on
    # this one's trees)
    from .routines_ln import ln_centred_squares, ln_neg_mean, ln_sum

    acc, nf, xhi, p = ln_sum(a, S, F[2], n)
    nb = S()
    dhi, dp, rest = S(), S(), S()
    K2 = max(A, 4)
    rem = S()
    with a.sched():
        a.s(UOp.SADD, nb, n, W - 1)
        a.s(UOp.SSHR, nb, nb, log2(W))
        a.li(rest, P // 2)
        a.s(UOp.SAND, rem, n, W - 1)
        a.s(UOp.SSHR, S.shared("niter"), nb, log2(K2))
        sq = [_bcast(a, NEG_ZERO) for _ in range(A)]
        nmean, inv_n = ln_neg_mean(a, acc, nf)
        a.s(UOp.SADD, dhi, F[1], n)
        a.s(UOp.SADD, p, F[2], 0)
        a.s(UOp.SADD, dp, F[1], 0)
    # passes 2 and 3: d = x - mean into dst, sum(d*d)
    ln_centred_squares(a, S, nb, rem, p, dp, xhi, dhi, nmean, sq, F[1])
    # pass 4: y = (d * rstd) * gamma + beta; its first P blocks (when there are) are loaded in the
    # shadow of the variance's tree and rsqrt chain
    ghi, bhi, gp, bp = S(), S(), S(), S()
    rstd = a.vreg("rstd")

    def y_body(q, b, off):
        d, g, be, e, y = (a.vreg(s) for s in ("d", "g", "b", "e", "y"))
        a.ld(d, dp, F[1], dhi, Fill.NEG_ZERO, off=off)
        a.ld(g, gp, F[3], ghi, Fill.NEG_ZERO, off=off)
        a.ld(be, bp, F[4], bhi, Fill.NEG_ZERO, off=off)
        a.v(UOp.VFMUL, e, d, rstd)
        a.mad(y, e, g, be)
        a.st(y, dp, F[1], dhi, off=off)

    def variance(peel: int):
        var, ve = a.vreg("var"), a.vreg("ve")
        with a.sched(max_open=max(peel, 1), ports=True, slack=1):
            a.v(UOp.VFMUL, var, tree_rows(a, UOp.VFADD, [tree_regs(a, UOp.VFADD, sq)]), inv_n)
            a.v(UOp.VFADD, ve, var, F[6])
            a.v(UOp.VBCL, rstd, fn.rsqrt_newton(a, ve), 0)
            for reg, base in ((ghi, F[3]), (bhi, F[4])):
                a.s(UOp.SADD, reg, base, n)
            for reg, base in ((dp, F[1]), (gp, F[3]), (bp, F[4])):
                a.s(UOp.SADD, reg, base, 0)
            for b in range(peel):
                with a.copy(b):
                    y_body(0, b, b * W)
            for reg in (dp, gp, bp):
                a.s(UOp.SADD, reg, reg, peel * W)
            a.s(UOp.SMAX, rest, nb, peel)
            a.s(UOp.SSUB, rest, rest, peel)

    short, tail, end = a.fresh("ln.short"), a.fresh("ln.tail"), a.fresh("ln.end")
    a.br(UOp.BLTU, nb, rest, short)  # rest = P/2 (set with pass 2's pointers)
    variance(P)
    a.br(UOp.BEQ, rest, ZERO, end)
    a.br(UOp.BEQ, ZERO, ZERO, tail)
    a.label(short)
    variance(0)
    a.label(tail)
    blocks(a, S, rest, 1, 4, [dp, gp, bp], y_body)
    a.label(end)
    a.done()


__all__ = ["argmax", "argmaxc", "layernorm", "nl", "product_or_rcp", "softmax", "store_rcp",
           "tree_regs", "tree_rows", "vmax"]

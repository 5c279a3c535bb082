"""Routines of a LayerNorm folded into the GEMV it feeds: LNCENTRE, LNRSTD and VMADS.

``docs/numerics.md`` ("LayerNorm folded into the next GEMV"): the GEMV starts on
``h = (x - mean) * gamma`` (``LNCENTRE``: one sum and one elementwise pass, the short part on the
critical path); ``rstd`` (``LNRSTD``, the variance's sum, tree and ``rsqrt`` chain) runs on the
vector unit while the banks stream the GEMV; each output group is finished with
``y = acc * rstd + c`` (``VMADS``). The sums are LAYERNORM's: :func:`ln_sum` is its first pass,
:func:`ln_neg_mean` its mean, and LNRSTD's second and third passes are LAYERNORM's (``d`` into
``tmp`` instead of ``dst``), so ``mean``, ``d`` and ``rstd`` are the same bits.
"""

from __future__ import annotations

from pimgpt.core.numerics import REDUCE_LANES

from . import routines_fn as fn
from .asm import Asm, SReg, VReg
from .routines import ZERO, F, Scalars, blocks, copy_reg, log2, window
from .routines_red import _square_add, tree_regs, tree_rows
from .uisa import Fill, UOp

NEG_ZERO = 0x80000000


def ln_sum(a: Asm, S: Scalars, src: SReg, n: SReg) -> tuple[list[VReg], VReg, SReg, SReg]:
    """Pass 1 of a LayerNorm: ``sum(x)`` of the ``n`` words at ``src`` into ``128 / W``
    accumulators, software-pipelined (each iteration adds ``K`` blocks and loads the next
    ``K``; blocks beyond ``n`` read -0, the sum's exact identity); ``float(n)`` alongside.

    Returns
    -------
    acc : list of VReg
        The accumulators (reduce them with ``tree_regs`` then ``tree_rows``).
    nf : VReg
        ``float(n)`` in every lane.
    xhi, p : SReg
        The end of ``src``'s window, and a free pointer register (past the loads).
    """
    W = a.lanes
    A = REDUCE_LANES // W
    K = max(A, 2)
    xs = [a.vreg("x") for _ in range(K)]
    acc = [a.vreg("acc") for _ in range(A)]
    fnv, fl, nf = a.vreg(), a.vreg(), a.vreg()
    xhi, p, n1 = S(), S(), S()
    with a.sched():
        a.s(UOp.SADD, xhi, src, n)
        for j in range(K):
            a.ld(xs[j], src, src, xhi, Fill.NEG_ZERO, off=j * W)
        a.s(UOp.SADD, p, src, K * W)
        a.s(UOp.SADD, n1, n, K * W - 1)  # ceil(n / (K*W)) iterations
        a.s(UOp.SSHR, n1, n1, log2(K * W))
        for r in acc:
            a.v(UOp.VBCAST, r, None, NEG_ZERO)
        # float(n) = (2**23 | n) - 2**23 (n < 2**23); its reciprocal overlaps the first tree
        a.v(UOp.VBCAST, fnv, None, n)
        a.v(UOp.VOR, fl, fnv, 0x4B000000)
        a.v(UOp.VFADD, nf, fl, 0xCB000000)
    with a.loop(n1), a.sched():
        for j in range(K):
            with a.copy(j):
                a.v(UOp.VFADD, acc[j % A], acc[j % A], xs[j])
                a.ld(xs[j], p, src, xhi, Fill.NEG_ZERO, off=j * W)
        a.s(UOp.SADD, p, p, K * W)
    return acc, nf, xhi, p


def ln_neg_mean(a: Asm, acc: list[VReg], nf: VReg) -> tuple[VReg, VReg]:
    """``(-mean in every lane, 1/n)`` from :func:`ln_sum`'s accumulators (call inside a
    scheduled region: the reciprocal overlaps the tree)."""
    mean, nm0, nmean = a.vreg("mean"), a.vreg(), a.vreg("nmean")
    inv_n = fn.recip_newton(a, nf)
    a.v(UOp.VFMUL, mean, tree_rows(a, UOp.VFADD, [tree_regs(a, UOp.VFADD, acc)]), inv_n)
    a.v(UOp.VXOR, nm0, mean, fn.SIGN)
    a.v(UOp.VBCL, nmean, nm0, 0)
    return nmean, inv_n


def ln_centred_squares(a: Asm, S: Scalars, nb: SReg, rem: SReg, p: SReg, dp: SReg, xhi: SReg,
                       dhi: SReg, nmean: VReg, sq: list[VReg], dbuf: SReg) -> None:
    """Passes 2 and 3 of a LayerNorm: ``d = x - mean`` from the window ``[src, xhi)`` (pointer
    ``p``) stored at ``dbuf`` (pointer ``dp``, window end ``dhi``), and ``sum(d*d)`` into the
    accumulators ``sq``. When ``n`` is a multiple of ``W`` (``rem`` zero) there is no lane beyond
    ``n`` and pass 3 runs in pass 2's loop on the ``d`` it just computed (the words pass 3 would
    load back: the same sums); otherwise pass 3 loads ``d`` back with +0 beyond ``n``, whose
    squares add nothing. ``S.shared("niter")`` must hold ``nb >> log2(max(128/W, 4))``."""
    W = a.lanes
    A = REDUCE_LANES // W
    K, K2 = max(A, 2), max(A, 4)
    split, fused_end = a.fresh("ln.split"), a.fresh("ln.fused")
    a.br(UOp.BNE, rem, ZERO, split)

    def d_body(q, b, off, square=False):
        x, d = a.vreg("x"), a.vreg("d")
        a.ld(x, p, F[2], xhi, Fill.NEG_ZERO, off=off)
        a.v(UOp.VFADD, d, x, nmean)
        a.st(d, dp, dbuf, dhi, off=off)
        if square:
            _square_add(a, sq[b % A], d, A)

    blocks(a, S, nb, 1, K2, [p, dp], lambda q, b, off: d_body(q, b, off, True), period=A,
           counted=True)
    a.br(UOp.BEQ, ZERO, ZERO, fused_end)
    a.label(split)
    blocks(a, S, nb, 1, 4, [p, dp], d_body)
    a.s(UOp.SADD, dp, dbuf, 0)

    def sq_body(q, b, off):
        d = a.vreg("d")
        a.ld(d, dp, dbuf, dhi, Fill.POS_ZERO, off=off)
        _square_add(a, sq[b % A], d, A)

    blocks(a, S, nb, 1, K, [dp], sq_body, period=A)
    a.label(fused_end)


def lncentre(a: Asm) -> None:
    """LNCENTRE dst=s1 src=s2 gamma=s3 n=s4 (``nonlinear.layernorm_centre``):
    ``dst = (src + (-mean)) * gamma``, in place or not."""
    a.label("lncentre")
    S = Scalars()
    W, n = a.lanes, F[4]
    acc, nf, xhi, p = ln_sum(a, S, F[2], n)
    nb, ghi, dhi, gp, dp = S(), S(), S(), S(), S()
    with a.sched():
        a.s(UOp.SADD, nb, n, W - 1)
        a.s(UOp.SSHR, nb, nb, log2(W))
        nmean, _ = ln_neg_mean(a, acc, nf)
        a.s(UOp.SADD, ghi, F[3], n)
        a.s(UOp.SADD, dhi, F[1], n)
        for reg, base in ((p, F[2]), (gp, F[3]), (dp, F[1])):
            a.s(UOp.SADD, reg, base, 0)

    def body(q, b, off):
        x, g, d, y = (a.vreg(s) for s in ("x", "g", "d", "y"))
        a.ld(x, p, F[2], xhi, Fill.NEG_ZERO, off=off)
        a.ld(g, gp, F[3], ghi, Fill.NEG_ZERO, off=off)
        a.v(UOp.VFADD, d, x, nmean)
        a.v(UOp.VFMUL, y, d, g)
        a.st(y, dp, F[1], dhi, off=off)

    blocks(a, S, nb, 1, 4, [p, gp, dp], body)
    a.done()


def lnrstd(a: Asm) -> None:
    """LNRSTD dst=s1 src=s2 tmp=s3 n=s4 eps=s5 (``nonlinear.layernorm_stats``): ``tmp = d``,
    ``dst[0] = rstd``; LAYERNORM's passes 1-3 and its variance (``d`` into ``tmp``)."""
    a.label("lnrstd")
    S = Scalars()
    W, n = a.lanes, F[4]
    A = REDUCE_LANES // W
    K2 = max(A, 4)
    acc, nf, xhi, p = ln_sum(a, S, F[2], n)
    nb, dhi, dp, rem = S(), S(), S(), S()
    with a.sched():
        a.s(UOp.SADD, nb, n, W - 1)
        a.s(UOp.SSHR, nb, nb, log2(W))
        a.s(UOp.SAND, rem, n, W - 1)
        a.s(UOp.SSHR, S.shared("niter"), nb, log2(K2))
        sq = []
        for _ in range(A):
            r = a.vreg("sq")
            a.v(UOp.VBCAST, r, None, NEG_ZERO)
            sq.append(r)
        nmean, inv_n = ln_neg_mean(a, acc, nf)
        a.s(UOp.SADD, dhi, F[3], n)
        a.s(UOp.SADD, p, F[2], 0)
        a.s(UOp.SADD, dp, F[3], 0)
    ln_centred_squares(a, S, nb, rem, p, dp, xhi, dhi, nmean, sq, F[3])
    one = S()
    var, ve = a.vreg("var"), a.vreg("ve")
    with a.sched():
        a.v(UOp.VFMUL, var, tree_rows(a, UOp.VFADD, [tree_regs(a, UOp.VFADD, sq)]), inv_n)
        a.v(UOp.VFADD, ve, var, F[5])
        rstd = fn.rsqrt_newton(a, ve)
        a.s(UOp.SADD, one, F[1], 1)
        a.st(rstd, F[1], F[1], one)
    a.done()


def scaled(a: Asm, name: str, srcs: tuple[int, ...], s_field: int, n_field: int, func) -> None:
    """``dst[i] = func(a, scale, src...[i])`` with ``scale`` the word at field ``s_field``
    broadcast, the sources at the fields ``srcs``, ``dst`` in field 1 and ``n`` in ``n_field``
    (in place or not): the epilogues of a folded norm (VMADS, VMULS)."""
    a.label(name)
    S = Scalars()
    W, n = a.lanes, F[n_field]
    ptrs = [copy_reg(a, S, F[f]) for f in (*srcs, 1)]
    his = [window(a, S, F[f], n) for f in (*srcs, 1)]
    shi, nb = S(), S()
    sv, scale = a.vreg("sv"), a.vreg("scale")
    with a.sched():
        a.s(UOp.SADD, shi, F[s_field], 1)
        a.ld(sv, F[s_field], F[s_field], shi, Fill.NEG_ZERO)
        a.v(UOp.VBCL, scale, sv, 0)
        a.s(UOp.SADD, nb, n, W - 1)
        a.s(UOp.SSHR, nb, nb, log2(W))

    def body(q, b, off):
        xs = []
        for f, ptr, hi in zip(srcs, ptrs, his, strict=False):
            x = a.vreg("x")
            a.ld(x, ptr, F[f], hi, Fill.NEG_ZERO, off=off)
            xs.append(x)
        a.st(func(a, scale, *xs), ptrs[-1], F[1], his[-1], off=off)

    blocks(a, S, nb, 1, 4, ptrs, body)
    a.done()


def _mads(a: Asm, scale: VReg, x: VReg, c: VReg) -> VReg:
    y = a.vreg("y")
    a.mad(y, x, scale, c)
    return y


def vmads(a: Asm) -> None:
    """VMADS dst=s1 a=s2 s=s3 b=s4 n=s5: ``dst[i] = a[i] * s[0] + b[i]`` (the product rounded,
    then the add, as ``f32_add(f32_mul(a, s), b)``), in place or not."""
    scaled(a, "vmads", (2, 4), 3, 5, _mads)


__all__ = ["ln_centred_squares", "ln_neg_mean", "ln_sum", "lncentre", "lnrstd", "scaled",
           "vmads"]

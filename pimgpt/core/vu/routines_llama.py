"""Routines of the Llama-family instructions: SWIGLU, RMSNORM, ROPE (``nonlinear_llama.py``
step by step, bit for bit).

* **SWIGLU** ``dst gate up n``: element-wise, the lane template :func:`silu` times ``up``.
* **RMSNORM** ``dst src gamma n eps``: two passes as LAYERNORM's last two: the sum of squares in
  the contract's tree order (accumulator ``b mod 128/W``), ``rsqrt`` of ``mean + eps`` with its
  special values (the reference uses ``rsqrt`` on any input), then ``y = (x * rstd) * gamma``.
* **ROPE** ``dst src tab half nhead``: when a half fits one register, four heads per scheduled
  region with the table loaded once; else a loop over the heads and in each, the blocks of the
  first half and the matching blocks of the second half with the table's cosines and sines:
  ``lo' = lo*c + hi*(-s)``, ``hi' = hi*c + lo*s`` (each a multiply, then a multiply-add: the
  product rounded, then the add, as the reference; ``neg`` after a multiply is the multiply by the
  negated sine, exact).
"""

from __future__ import annotations

from pimgpt.core import nonlinear as nl
from pimgpt.core.numerics import REDUCE_LANES

from . import routines_fn as fn
from .asm import Asm, SReg, VReg
from .routines import ZERO, F, Scalars, blocks, blocks_of, by_groups, copy_reg, window
from .routines_ln import scaled
from .routines_red import tree_regs, tree_rows
from .uisa import MODE_SIGN, Fill, UOp

NEG_ZERO = 0x80000000
NEG_INF = 0xFF800000


def silu(a: Asm, k: fn.Consts, x: VReg) -> VReg:
    """``nonlinear_llama.silu`` (needs ``fn.EXP_CONSTS`` in ``k``)."""
    ax, nax, one_z, zs, g, y, ni, c = (a.vreg(n) for n in ("ax", "nax", "oz", "zs", "g", "y",
                                                            "ni", "c"))
    a.v(UOp.VAND, ax, x, fn.ABS)
    a.v(UOp.VXOR, nax, ax, fn.SIGN)  # -|x| (a bit operation, as the reference's neg(abs(x)))
    z = fn.exp_nonpos(a, k, nax)
    a.v(UOp.VFADD, one_z, z, fn.ONE)  # add(1, z): the add commutes bit for bit
    s = fn.recip_newton(a, one_z)  # 1 + z in [1, 2] (or NaN): reciprocal's bits
    a.v(UOp.VFMUL, zs, z, s)
    a.v(UOp.VOR, g, s, 0)  # g = s ...
    a.v(UOp.VCMOV, g, x, zs, mode=MODE_SIGN)  # ... or z * s where x is negative
    a.v(UOp.VFMUL, y, x, g)
    a.v(UOp.VXOR, ni, x, NEG_INF)
    a.v(UOp.VSLTU, c, ni, 1)  # x is -Inf: -0
    a.v(UOp.VCMOV, y, c, NEG_ZERO)
    a.v(UOp.VCMOV, y, fn._is_nan(a, x), fn.NAN)
    return y


def swiglu_lane(a: Asm, k: fn.Consts, gate: VReg, up: VReg) -> VReg:
    """``mul(silu(gate), up)``."""
    out = a.vreg("sw")
    a.v(UOp.VFMUL, out, silu(a, k, gate), up)
    return out


def _rms_rstd(a: Asm, S: Scalars, src: SReg, n: SReg, eps: SReg) -> tuple[VReg, SReg, SReg]:
    """RMSNORM's first pass and its ``rstd`` (in every lane) of the ``n`` words at ``src``;
    returns ``(rstd, xhi, p)``: the window's end and a pointer register, free afterwards."""
    W = a.lanes
    A = REDUCE_LANES // W
    nb = blocks_of(a, S, n)
    xhi = window(a, S, src, n)
    # float(n) = (2**23 | n) - 2**23 (n < 2**23); its reciprocal overlaps the sum
    fnv, fl, nf = a.vreg(), a.vreg(), a.vreg()
    a.v(UOp.VBCAST, fnv, None, n)
    a.v(UOp.VOR, fl, fnv, 0x4B000000)
    a.v(UOp.VFADD, nf, fl, 0xCB000000)
    p = copy_reg(a, S, src)
    sq = [_zero(a) for _ in range(A)]

    def sq_body(q, b, off):
        x = a.vreg("x")
        a.ld(x, p, src, xhi, Fill.POS_ZERO, off=off)  # squares of +0 add nothing
        a.mad(sq[b % A], x, x, sq[b % A])

    blocks(a, S, nb, 1, max(A, 2), [p], sq_body, period=A)
    ms, ve, rstd = a.vreg("ms"), a.vreg("ve"), a.vreg("rstd")
    with a.sched():
        inv_n = fn.recip_newton(a, nf)  # reciprocal(float(n))'s bits
        a.v(UOp.VFMUL, ms, tree_rows(a, UOp.VFADD, [tree_regs(a, UOp.VFADD, sq)]), inv_n)
        a.v(UOp.VFADD, ve, ms, eps)
        a.v(UOp.VBCL, rstd, fn.rsqrt(a, ve), 0)
    return rstd, xhi, p


def rmsnorm(a: Asm) -> None:
    """RMSNORM dst=s1 src=s2 gamma=s3 n=s4 eps=s5 (``nonlinear_llama.rmsnorm``)."""
    a.label("rmsnorm")
    S = Scalars()
    n = F[4]
    rstd, xhi, p = _rms_rstd(a, S, F[2], n, F[5])
    nb = blocks_of(a, S, n)
    dhi, ghi = window(a, S, F[1], n), window(a, S, F[3], n)
    a.s(UOp.SADD, p, F[2], 0)
    dp, gp = copy_reg(a, S, F[1]), copy_reg(a, S, F[3])

    def y_body(q, b, off):
        x, g, e, y = (a.vreg(s) for s in ("x", "g", "e", "y"))
        a.ld(x, p, F[2], xhi, Fill.NEG_ZERO, off=off)
        a.ld(g, gp, F[3], ghi, Fill.NEG_ZERO, off=off)
        a.v(UOp.VFMUL, e, x, rstd)
        a.v(UOp.VFMUL, y, e, g)
        a.st(y, dp, F[1], dhi, off=off)

    blocks(a, S, nb, 1, 4, [p, dp, gp], y_body)
    a.done()


def rmsrstd(a: Asm) -> None:
    """RMSRSTD dst=s1 src=s2 n=s3 eps=s4 (``nonlinear_llama.rmsnorm_rstd``): ``dst[0] = rstd``,
    RMSNORM's first pass (an RMSNorm folded into its GEMV)."""
    a.label("rmsrstd")
    S = Scalars()
    rstd, _, _ = _rms_rstd(a, S, F[2], F[3], F[4])
    one = S()
    a.s(UOp.SADD, one, F[1], 1)
    a.st(rstd, F[1], F[1], one)
    a.done()


def _muls(a: Asm, scale: VReg, x: VReg) -> VReg:
    y = a.vreg("y")
    a.v(UOp.VFMUL, y, x, scale)
    return y


def vmuls(a: Asm) -> None:
    """VMULS dst=s1 a=s2 s=s3 n=s4: ``dst[i] = a[i] * s[0]``, in place or not (a folded
    RMSNorm's GEMV epilogue)."""
    scaled(a, "vmuls", (2,), 3, 4, _muls)


def _zero(a: Asm) -> VReg:
    r = a.vreg("acc")
    a.v(UOp.VBCAST, r, None, NEG_ZERO)
    return r


#: Heads per scheduled region of ROPE when a half fits one register (the scalar temporaries
#: bound it: four per head).
ROPE_HEADS = 4


def rope(a: Asm) -> None:
    """ROPE dst=s1 src=s2 tab=s3 half=s4 nhead=s5 (``nonlinear_llama.rope`` per head, with
    ``cos = tab[0:half]``, ``sin = tab[half:2 half]``). Halves that fit one register go
    :data:`ROPE_HEADS` heads per scheduled region (the table loaded once); longer ones head by
    head, block by block."""
    a.label("rope")
    S = Scalars()
    half = F[4]
    d = S()
    a.s(UOp.SADD, d, half, half)
    tmid, tend = window(a, S, F[3], half), window(a, S, F[3], d)
    bs, bd = copy_reg(a, S, F[2]), copy_reg(a, S, F[1])
    wreg = S()
    long_halves, end = a.fresh("rope.long"), a.fresh("rope.end")
    a.li(wreg, a.lanes + 1)
    a.br(UOp.BGEU, half, wreg, long_halves)
    mark = S.next

    def group(g: int) -> None:
        src, dst, ms, md = [bs], [bd], [], []
        with a.sched():
            for q in range(g):
                m1, e1, m2, e2 = S(), S(), S(), S()
                a.s(UOp.SADD, m1, src[q], half)
                a.s(UOp.SADD, e1, src[q], d)
                a.s(UOp.SADD, m2, dst[q], half)
                a.s(UOp.SADD, e2, dst[q], d)
                ms.append(m1), md.append(m2), src.append(e1), dst.append(e2)
            c, s, ns = a.vreg("c"), a.vreg("s"), a.vreg("ns")
            a.ld(c, F[3], F[3], tmid, Fill.NEG_ZERO)
            a.ld(s, tmid, tmid, tend, Fill.NEG_ZERO)
            a.v(UOp.VXOR, ns, s, fn.SIGN)
            for q in range(g):
                with a.copy(q):
                    lo, hi, p1, p2, ylo, yhi = (a.vreg(n) for n in (
                        "lo", "hi", "p1", "p2", "ylo", "yhi"))
                    a.ld(lo, src[q], src[q], ms[q], Fill.NEG_ZERO)
                    a.ld(hi, ms[q], ms[q], src[q + 1], Fill.NEG_ZERO)
                    a.v(UOp.VFMUL, p1, hi, ns)
                    a.mad(ylo, lo, c, p1)
                    a.v(UOp.VFMUL, p2, lo, s)
                    a.mad(yhi, hi, c, p2)
                    a.st(ylo, dst[q], dst[q], md[q])
                    a.st(yhi, md[q], md[q], dst[q + 1])
        a.s(UOp.SADD, bs, src[g], 0)
        a.s(UOp.SADD, bd, dst[g], 0)

    by_groups(a, S, F[5], ROPE_HEADS, group)
    a.br(UOp.BEQ, ZERO, ZERO, end)
    a.label(long_halves)
    S.next = mark
    nb = blocks_of(a, S, half)
    smid, send, dmid, dend = S(), S(), S(), S()
    pl, ph, ql, qh, tc, ts = (S() for _ in range(6))
    with a.loop(F[5]):
        with a.sched():
            for mid, end_, base in ((smid, send, bs), (dmid, dend, bd)):
                a.s(UOp.SADD, mid, base, half)
                a.s(UOp.SADD, end_, base, d)
            for ptr, src in ((pl, bs), (ph, smid), (ql, bd), (qh, dmid), (tc, F[3]), (ts, tmid)):
                a.s(UOp.SADD, ptr, src, 0)

        def body(q, b, off):
            lo, hi, c, s, ns, p1, p2, ylo, yhi = (a.vreg(n) for n in (
                "lo", "hi", "c", "s", "ns", "p1", "p2", "ylo", "yhi"))
            a.ld(lo, pl, bs, smid, Fill.NEG_ZERO, off=off)
            a.ld(hi, ph, smid, send, Fill.NEG_ZERO, off=off)
            a.ld(c, tc, F[3], tmid, Fill.NEG_ZERO, off=off)
            a.ld(s, ts, tmid, tend, Fill.NEG_ZERO, off=off)
            a.v(UOp.VXOR, ns, s, fn.SIGN)
            a.v(UOp.VFMUL, p1, hi, ns)
            a.mad(ylo, lo, c, p1)
            a.v(UOp.VFMUL, p2, lo, s)
            a.mad(yhi, hi, c, p2)
            a.st(ylo, ql, bd, dmid, off=off)
            a.st(yhi, qh, dmid, dend, off=off)

        blocks(a, S, nb, 1, 2, [pl, ph, ql, qh, tc, ts], body)
        a.s(UOp.SADD, bs, send, 0)
        a.s(UOp.SADD, bd, dend, 0)
    a.label(end)
    a.done()


__all__ = ["nl", "rmsnorm", "rope", "silu", "swiglu_lane"]

"""Lane templates of the nonlinear functions: the steps of ``pimgpt/core/nonlinear.py`` as
micro-operations on one vector register (every lane independent, no branches).

Each template takes the assembler, the routine's constant registers and the input register, emits
its micro-operations (inside the caller's copy/scheduled region) and returns the result register.
Constants that an operation cannot take as its immediate live in registers (:class:`Consts`,
broadcast once at the start of a routine). Rewrites that are exact by construction:
``neg(mul(a, c))`` before an add is ``mul(a, -c)`` (RNE is sign-symmetric), ``add(a, b)`` is
``mad(a, 1.0, b)``, and the clamps are ``VFMAX``/``VFMIN`` in the total order.
"""

from __future__ import annotations

import numpy as np

from pimgpt.core import nonlinear as nl

from .asm import Asm, VReg
from .uisa import MODE_SIGN, UOp

SIGN = 0x80000000
ABS = 0x7FFFFFFF
MANT = 0x007FFFFF
ONE = 0x3F800000
INF = 0x7F800000
NAN = 0x7FC00000


def f32(value: float) -> int:
    """fp32 bit pattern of ``value``."""
    return int(np.float32(value).view(np.uint32))


class Consts:
    """Constant registers of a routine: ``k[bits]`` is a register holding ``bits`` in every lane.
    :meth:`need` must run before the routine's loops (it emits the broadcasts)."""

    def __init__(self, a: Asm):
        self.a = a
        self.regs: dict[int, VReg] = {}

    def need(self, *values: int) -> None:
        for b in values:
            b &= 0xFFFFFFFF
            if b not in self.regs:
                r = self.a.vreg("k")
                self.a.v(UOp.VBCAST, r, None, b)
                self.regs[b] = r

    def __getitem__(self, b: int) -> VReg:
        return self.regs[b & 0xFFFFFFFF]


# ---------------------------------------------------------------------------------------------
# exp (nonlinear.exp)
# ---------------------------------------------------------------------------------------------
EXP_CONSTS = (nl.EXP_C8_BITS, nl.ROUND_MAGIC_BITS, nl.EXP_P1_BITS)
GELU_CONSTS = (nl.EXP_C8_BITS, nl.ROUND_MAGIC_BITS, nl.EXP_P1_BITS ^ SIGN, nl.GELU_G1_BITS)


def _exp2(a: Asm, k: Consts, xc: VReg, negate: bool = False,
          sk: tuple | None = None) -> tuple[VReg, VReg, VReg]:
    """Steps 2-5 of ``exp`` on clamped ``xc``: ``(t, p or -p, s = 2**(k + j/8))``. With ``sk``
    (scalar registers holding ``EXP_C8``, ``-1.0``, ``EXP_P2``) the constants come from them
    (broadcast ``B`` operands, the other term as the immediate ``C``: the same products and
    sums) and ``k`` is not used: three vector registers fewer."""
    t, nnf, r, q, p, tb, sh, s = (a.vreg(n) for n in ("t", "nnf", "r", "q", "p", "tb", "sh", "s"))
    sg = SIGN if negate else 0
    if sk is not None and not negate:
        c8, m1, p2 = sk
        a.mad(t, xc, c8, nl.ROUND_MAGIC_BITS)
        a.mad(nnf, t, m1, nl.ROUND_MAGIC_BITS)
        a.mad(r, xc, c8, nnf)
        a.mad(q, r, p2, nl.EXP_P1_BITS)
    else:
        a.mad(t, xc, k[nl.EXP_C8_BITS], nl.ROUND_MAGIC_BITS)
        a.mad(nnf, t, f32(-1.0), k[nl.ROUND_MAGIC_BITS])
        a.mad(r, xc, k[nl.EXP_C8_BITS], nnf)
        a.mad(q, r, nl.EXP_P2_BITS ^ sg, k[nl.EXP_P1_BITS ^ sg])
    a.mad(p, q, r, f32(1.0) ^ sg)
    a.v(UOp.VTBL, tb, t, 0, mode=0)
    a.v(UOp.VSHL, sh, t, 20)
    a.v(UOp.VADD, s, tb, sh)
    return t, p, s


def exp_nonpos(a: Asm, k: Consts, d: VReg, mad_only: bool = False,
               sk: tuple | None = None) -> VReg:
    """``nonlinear.exp`` for ``d <= 0`` or NaN (SOFTMAX): 10 micro-operations. With
    ``mad_only`` the last product is ``mad(p, s, -0)`` (the same bits: a product is never
    subnormal and ``x + -0 = x``), so that every fp operation has the multiply-add's latency
    (a steady pipelined loop then finds a free write-port slot for each). ``sk``: see
    :func:`_exp2`."""
    xc, y = a.vreg("xc"), a.vreg("y")
    a.v(UOp.VFMAX, xc, d, f32(nl.EXP_X_LO))
    _, p, s = _exp2(a, k, xc, sk=sk)
    if mad_only:
        a.mad(y, p, s, SIGN)
    else:
        a.v(UOp.VFMUL, y, p, s)
    return y


def exp_full(a: Asm, k: Consts, x: VReg) -> VReg:
    """``nonlinear.exp`` on any input (``VEXP``)."""
    x1, xc, ylo, t8, sh8, shi, y1, yhi, c = (a.vreg() for _ in range(9))
    a.v(UOp.VFMAX, x1, x, f32(nl.EXP_X_LO))
    a.v(UOp.VFMIN, xc, x1, f32(nl.EXP_X_HI))
    t, p, s = _exp2(a, k, xc)
    a.v(UOp.VFMUL, ylo, p, s)
    a.v(UOp.VSUB, t8, t, 8)
    a.v(UOp.VSHL, sh8, t8, 20)
    tb = a.vreg("tb")
    a.v(UOp.VTBL, tb, t, 0, mode=0)
    a.v(UOp.VADD, shi, tb, sh8)
    a.v(UOp.VFMUL, y1, p, shi)
    a.v(UOp.VFMUL, yhi, y1, f32(2.0))
    a.v(UOp.VFGT, c, x, 0)
    # ``x > 0`` in numpy is false for NaN; VFGT says true, but then both paths are NaN.
    a.v(UOp.VCMOV, ylo, c, yhi)
    return ylo


# ---------------------------------------------------------------------------------------------
# GELU (nonlinear.gelu)
# ---------------------------------------------------------------------------------------------
def gelu(a: Asm, k: Consts, x: VReg) -> VReg:
    """``nonlinear.gelu``: 21 micro-operations."""
    xc, x2, vv, w, w1, wc, nd, y = (a.vreg(n) for n in ("xc", "x2", "vv", "w", "w1", "wc", "nd",
                                                         "y"))
    a.v(UOp.VFMAX, xc, x, f32(nl.GELU_X_MIN))
    a.v(UOp.VFMUL, x2, xc, xc)
    a.mad(vv, x2, nl.GELU_G3_BITS, k[nl.GELU_G1_BITS])
    a.v(UOp.VFMUL, w, vv, xc)
    a.v(UOp.VFMIN, w1, w, f32(nl.GELU_W_HI))
    a.v(UOp.VFMAX, wc, w1, f32(nl.EXP_X_LO))
    _, pn, s = _exp2(a, k, wc, negate=True)
    a.mad(nd, pn, s, f32(-1.0))
    a.v(UOp.VRSUB, y, nd, (nl.RECIP_MAGIC ^ SIGN))
    for _ in range(nl.GELU_NEWTON_STEPS):
        e, y2 = a.vreg("e"), a.vreg("y")
        a.mad(e, nd, y, f32(2.0))
        a.v(UOp.VFMUL, y2, y, e)
        y = y2
    out = a.vreg("g")
    a.v(UOp.VFMUL, out, xc, y)
    return out


# ---------------------------------------------------------------------------------------------
# reciprocal and rsqrt (nonlinear.reciprocal / rsqrt, specials selected lane by lane)
# ---------------------------------------------------------------------------------------------
def _is_nan(a: Asm, x: VReg) -> VReg:
    """1 in the lanes where ``x`` is a NaN (``|x| > Inf`` as integers)."""
    ax, c, n = a.vreg(), a.vreg(), a.vreg()
    a.v(UOp.VAND, ax, x, ABS)
    a.v(UOp.VSLTU, c, ax, INF + 1)
    a.v(UOp.VXOR, n, c, 1)
    return n


def _scale2(a: Asm, y: VReg, kk: VReg) -> VReg:
    """``mul(mul(y, 2**k1), 2**k2)`` with ``k1 = kk >> 1`` (arithmetic), ``k2 = kk - k1``."""
    k1, k2, p1, p2, e1, e2, y1, out = (a.vreg() for _ in range(8))
    a.v(UOp.VSRA, k1, kk, 1)
    a.v(UOp.VSUB, k2, kk, k1)
    a.v(UOp.VADD, e1, k1, 127)
    a.v(UOp.VSHL, p1, e1, 23)
    a.v(UOp.VADD, e2, k2, 127)
    a.v(UOp.VSHL, p2, e2, 23)
    a.v(UOp.VFMUL, y1, y, p1)
    a.v(UOp.VFMUL, out, y1, p2)
    return out


def reciprocal(a: Asm, x: VReg) -> VReg:
    """``nonlinear.reciprocal`` (three Newton steps on the significand, specials by select)."""
    sign, e0, ee, m0, m, mn, y = (a.vreg() for _ in range(7))
    a.v(UOp.VAND, sign, x, SIGN)
    a.v(UOp.VSHR, e0, x, 23)
    a.v(UOp.VAND, ee, e0, 0xFF)
    a.v(UOp.VAND, m0, x, MANT)
    a.v(UOp.VOR, m, m0, ONE)
    a.v(UOp.VOR, mn, m, SIGN)
    a.v(UOp.VRSUB, y, m, nl.RECIP_MAGIC)
    y = _recip_steps(a, mn, y)
    ys, kk = a.vreg(), a.vreg()
    a.v(UOp.VOR, ys, y, sign)
    a.v(UOp.VRSUB, kk, ee, 127)
    out = _scale2(a, ys, kk)
    z, zv, c0, c1 = a.vreg(), a.vreg(), a.vreg(), a.vreg()
    a.v(UOp.VSLTU, z, ee, 1)  # zero (or subnormal): +-Inf
    a.v(UOp.VOR, zv, sign, INF)
    a.v(UOp.VCMOV, out, z, zv)
    a.v(UOp.VSLTU, c0, ee, 0xFF)  # Inf (and NaN, replaced next): +-0
    a.v(UOp.VXOR, c1, c0, 1)
    a.v(UOp.VCMOV, out, c1, sign)
    a.v(UOp.VCMOV, out, _is_nan(a, x), NAN)
    return out


def recip_newton(a: Asm, s: VReg) -> VReg:
    """``nonlinear.recip_newton`` (SOFTMAX's 1/sum): 8 micro-operations."""
    ns, y = a.vreg(), a.vreg()
    a.v(UOp.VXOR, ns, s, SIGN)
    a.v(UOp.VRSUB, y, s, nl.RECIP_MAGIC)
    return _recip_steps(a, ns, y)


def _recip_steps(a: Asm, neg: VReg, y: VReg) -> VReg:
    """``nonlinear``'s Newton steps for ``1/m`` from the seed ``y``, given ``neg = -m``:
    ``e = mad(-m, y, 1)``, ``y = mad(y, e, y)`` (shared by ``reciprocal`` and ``recip_newton``)."""
    for _ in range(nl.RECIP_NEWTON_STEPS):
        e, y2 = a.vreg(), a.vreg()
        a.mad(e, neg, y, f32(1.0))
        a.mad(y2, y, e, y)
        y = y2
    return y


def rsqrt_newton(a: Asm, x: VReg) -> VReg:
    """``nonlinear.rsqrt_newton`` (LAYERNORM's 1/sqrt(var + eps)): 11 micro-operations."""
    hn, sh, y = a.vreg(), a.vreg(), a.vreg()
    a.v(UOp.VFMUL, hn, x, f32(-0.5))
    a.v(UOp.VSHR, sh, x, 1)
    a.v(UOp.VRSUB, y, sh, nl.RSQRT_MAGIC)
    for _ in range(nl.RSQRT_NEWTON_STEPS):
        t1, t2, y2 = a.vreg(), a.vreg(), a.vreg()
        a.v(UOp.VFMUL, t1, y, y)
        a.mad(t2, t1, hn, f32(0.5))
        a.mad(y2, y, t2, y)
        y = y2
    return y


def rsqrt(a: Asm, x: VReg) -> VReg:
    """``nonlinear.rsqrt`` (three Newton steps on the significand, specials by select)."""
    e0, ee, m0, m, e, odd, m2, e1, sh, y, hn = (a.vreg() for _ in range(11))
    a.v(UOp.VSHR, e0, x, 23)
    a.v(UOp.VAND, ee, e0, 0xFF)
    a.v(UOp.VAND, m0, x, MANT)
    a.v(UOp.VOR, m, m0, ONE)
    a.v(UOp.VSUB, e, ee, 127)
    a.v(UOp.VAND, odd, e, 1)
    a.v(UOp.VFMUL, m2, m, f32(2.0))
    a.v(UOp.VCMOV, m, odd, m2)
    a.v(UOp.VSUB, e1, e, 1)
    a.v(UOp.VCMOV, e, odd, e1)
    a.v(UOp.VSHR, sh, m, 1)
    a.v(UOp.VRSUB, y, sh, nl.RSQRT_MAGIC)
    a.v(UOp.VFMUL, hn, m, f32(-0.5))
    for _ in range(nl.RSQRT_NEWTON_STEPS):
        t1, t2, y2 = a.vreg(), a.vreg(), a.vreg()
        a.v(UOp.VFMUL, t1, y, y)
        a.mad(t2, t1, hn, f32(0.5))
        a.mad(y2, y, t2, y)
        y = y2
    h, kk, p2, out = a.vreg(), a.vreg(), a.vreg(), a.vreg()
    a.v(UOp.VSRA, h, e, 1)
    a.v(UOp.VRSUB, kk, h, 127)  # 127 - e/2: the exponent field of 2**(-e/2)
    a.v(UOp.VSHL, p2, kk, 23)
    a.v(UOp.VFMUL, out, y, p2)
    z, sgn, zv, pinf, c2 = a.vreg(), a.vreg(), a.vreg(), a.vreg(), a.vreg()
    a.v(UOp.VSLTU, z, ee, 1)  # zero (or subnormal): +-Inf by the sign
    a.v(UOp.VAND, sgn, x, SIGN)
    a.v(UOp.VOR, zv, sgn, INF)
    a.v(UOp.VCMOV, out, z, zv)
    a.v(UOp.VXOR, pinf, x, INF)  # +Inf: +0
    a.v(UOp.VSLTU, c2, pinf, 1)
    a.v(UOp.VCMOV, out, c2, 0)
    nan, neg, nz, sb, bad = _is_nan(a, x), a.vreg(), a.vreg(), a.vreg(), a.vreg()
    a.v(UOp.VXOR, nz, z, 1)  # exponent field non-zero
    a.v(UOp.VSHR, sb, x, 31)
    a.v(UOp.VAND, neg, nz, sb)  # negative and non-zero
    a.v(UOp.VOR, bad, nan, neg)
    a.v(UOp.VCMOV, out, bad, NAN)
    return out


__all__ = ["Consts", "EXP_CONSTS", "GELU_CONSTS", "MODE_SIGN", "exp_full", "exp_nonpos", "f32",
           "gelu", "reciprocal", "rsqrt"]

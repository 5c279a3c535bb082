"""fp32 + fp32 -> fp32 adder: RNE, DAZ/FTZ, IEEE signed zeros, canonical NaN.

Bit-exact with :func:`pimgpt.core.numerics.f32_add`. The datapath is the classic single-path adder
with guard, round and sticky bits:

1. *align*: classify, order the operands by magnitude, shift the smaller significand right by the
   exponent difference into a 27-bit field (24 bits, guard, round, and a sticky bit that ORs
   everything shifted further out);
2. *add*: add or subtract the 27-bit significands, then normalise (right by one on a carry, left by
   the leading-zero count after a cancellation);
3. *round*: round to nearest even at 24 bits, re-normalise on a carry, apply the range rules and
   the special cases.

The exact sum of two normals is a multiple of 2**-149, so a result whose normalised exponent is
below 1 is exactly representable as a subnormal and never rounded: it is flushed to a zero with its
own sign (FTZ). An exact zero is +0 unless both operands are -0 (``x - x = +0``, ``-0 + -0 = -0``).

Pipeline: ``latency=3`` registers after each stage; ``latency=2`` after *align* and at the output;
``latency=1`` only at the output; ``latency=0`` is purely combinational (the MAC unit's accumulator
uses it inside its one-cycle feedback loop).
"""

from __future__ import annotations

from amaranth.hdl import Cat, Const, Module, Mux, Signal, signed
from amaranth.lib import data, wiring
from amaranth.lib.wiring import In, Out

from .fp import FP32, FP32Pair, check_int, fp32_special, pipe, valid_stream

__all__ = ["FP32Add", "fp32_add_comb", "AddAligned", "AddNormalised"]

_W = 27  # 24 significand bits + guard + round + sticky

#: Stage 1 -> stage 2: operands ordered by magnitude and aligned.
AddAligned = data.StructLayout({
    "big": _W,            # larger significand << 3
    "small": _W,          # smaller significand, aligned, sticky in bit 0
    "exp": 8,             # exponent of the larger operand
    "sign": 1,            # sign of the larger operand (= sign of a non-zero result)
    "sub": 1,             # effective subtraction
    "zero_sign": 1,       # sign of an exact-zero result: only -0 + -0 gives -0
    "nan": 1,
    "inf": 1,
    "inf_sign": 1,
})

#: Stage 2 -> stage 3: normalised significand (leading one at bit 26) and exponent.
AddNormalised = data.StructLayout({
    "mant": _W,
    "exp": signed(11),
    "is_zero": 1,          # the exact sum is zero
    "sign": 1,
    "zero_sign": 1,
    "nan": 1,
    "inf": 1,
    "inf_sign": 1,
})


def _align(m: Module, a, b, name: str):
    s = Signal(AddAligned, name=f"{name}_s1")
    ma, mb = a.significand(), b.significand()
    ea = Mux(a.is_zero(), 0, a.exp)
    eb = Mux(b.is_zero(), 0, b.exp)
    # Compare magnitudes as (exponent, significand): the exponent is the more significant part.
    swap = Cat(mb, eb) > Cat(ma, ea)
    m_big, m_small = Mux(swap, mb, ma), Mux(swap, ma, mb)
    e_big, e_small = Mux(swap, eb, ea), Mux(swap, ea, eb)
    diff = Signal(8, name=f"{name}_diff")
    m.d.comb += diff.eq(e_big - e_small)
    # Shifts of 27 or more leave only the sticky bit; clamping keeps the shifter 5 bits wide.
    shamt = Mux(diff > _W, _W, diff)
    wide = Signal(2 * _W, name=f"{name}_wide")
    m.d.comb += wide.eq(Cat(Const(0, _W + 3), m_small) >> shamt)
    aligned, sticky = wide[_W:], wide[:_W] != 0

    a_inf, b_inf = a.is_inf(), b.is_inf()
    m.d.comb += [
        s.big.eq(Cat(Const(0, 3), m_big)),
        s.small.eq(aligned | sticky),
        s.exp.eq(e_big),
        s.sign.eq(Mux(swap, b.sign, a.sign)),
        s.sub.eq(a.sign ^ b.sign),
        s.zero_sign.eq(a.sign & b.sign),
        s.nan.eq(a.is_nan() | b.is_nan() | (a_inf & b_inf & (a.sign ^ b.sign))),
        s.inf.eq(a_inf | b_inf),
        s.inf_sign.eq(Mux(a_inf, a.sign, b.sign)),
    ]
    return s


def _normalise(m: Module, s, name: str):
    n = Signal(AddNormalised, name=f"{name}_s2")
    total = Signal(_W + 1, name=f"{name}_sum")
    # |big| >= |small| after ordering, so the difference is never negative.
    m.d.comb += total.eq(Mux(s.sub, s.big - s.small, s.big + s.small))
    lzc = Signal(range(_W + 1), name=f"{name}_lzc")
    for i in range(_W):  # later assignments win: the highest set bit decides
        with m.If(total[i]):
            m.d.comb += lzc.eq(_W - 1 - i)
    left = Signal(_W, name=f"{name}_left")
    m.d.comb += left.eq(total[:_W] << lzc)
    carry = total[_W]
    m.d.comb += [
        # A carry shifts right by one; the bit shifted out joins the sticky bit.
        n.mant.eq(Mux(carry, Cat(total[0] | total[1], total[2:]), left)),
        n.exp.eq(Mux(carry, s.exp + 1, s.exp - lzc)),
        n.is_zero.eq(total == 0),
        n.sign.eq(s.sign),
        n.zero_sign.eq(s.zero_sign),
        n.nan.eq(s.nan),
        n.inf.eq(s.inf),
        n.inf_sign.eq(s.inf_sign),
    ]
    return n


def _round(m: Module, n, name: str):
    keep = n.mant[3:]
    guard = n.mant[2]
    sticky = n.mant[:2] != 0
    round_up = guard & (sticky | keep[0])
    rounded = Signal(25, name=f"{name}_rounded")
    m.d.comb += rounded.eq(keep + round_up)
    exp = Signal(signed(12), name=f"{name}_exp")
    m.d.comb += exp.eq(n.exp + rounded[24])
    mant = Mux(rounded[24], 0, rounded[:23])
    overflow = exp >= 255
    flush = exp <= 0
    zero = Cat(Const(0, 31), Mux(n.is_zero, n.zero_sign, n.sign))
    normal = Mux(n.is_zero | flush, zero, Cat(mant, exp[:8], n.sign))
    out = Signal(32, name=f"{name}_out")
    inf = n.inf | (~n.is_zero & overflow)
    m.d.comb += out.eq(fp32_special(n.nan, inf, Mux(n.inf, n.inf_sign, n.sign), normal))
    return out


def fp32_add_comb(m: Module, a, b, *, name: str = "add"):
    """Describe a combinational fp32 adder of views ``a`` and ``b`` in module ``m``.

    Returns
    -------
    amaranth.hdl.Signal
        32-bit bit pattern of ``a + b``.
    """
    return _round(m, _normalise(m, _align(m, a, b, name), name), name)


class FP32Add(wiring.Component):
    """Pipelined fp32 adder, bit-exact with ``numerics.f32_add``.

    Parameters
    ----------
    latency : int
        Cycles from ``i`` to ``o``, 0..3 (default 2; see the module docstring for where the
        registers go). A new operand pair is accepted every cycle at any latency.

    Attributes
    ----------
    i : In(valid_stream(FP32Pair))
        Operands ``a``, ``b``.
    o : Out(valid_stream(FP32))
        Sum, ``latency`` cycles after ``i``; ``o.valid`` follows ``i.valid``.
    """

    def __init__(self, *, latency: int = 2):
        self._latency = check_int("latency", latency, 0, 3)
        super().__init__({"i": In(valid_stream(FP32Pair)), "o": Out(valid_stream(FP32))})

    @property
    def latency(self) -> int:
        """Cycles from input to output."""
        return self._latency

    def elaborate(self, platform):
        m = Module()
        lat = self._latency
        s1 = _align(m, self.i.payload.a, self.i.payload.b, "add")
        v1 = pipe(m, self.i.valid, register=lat >= 2, name="valid_s1_q")
        s1 = pipe(m, s1, register=lat >= 2, name="add_s1_q")
        s2 = _normalise(m, s1, "add")
        v2 = pipe(m, v1, register=lat >= 3, name="valid_s2_q")
        s2 = pipe(m, s2, register=lat >= 3, name="add_s2_q")
        out = _round(m, s2, "add")
        m.d.comb += [
            self.o.payload.eq(pipe(m, out, register=lat >= 1, name="out_q")),
            self.o.valid.eq(pipe(m, v2, register=lat >= 1, name="valid_q")),
        ]
        return m

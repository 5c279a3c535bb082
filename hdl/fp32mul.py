"""fp32 x fp32 -> fp32 multiplier: RNE, DAZ/FTZ, canonical NaN (shared with the vector unit).

Rounding follows :func:`pimgpt.core.numerics.f32_mul`: the 48-bit exact product is rounded to 24
significant bits with an *unbounded* exponent first, and only then is the range checked; a result
that rounds up to 2**-126 therefore survives as the smallest normal, anything smaller becomes a
signed zero, and 2**128 or more becomes a signed Inf.

Pipeline (``latency``): stage 1 classifies the operands and forms the 24 x 24 product; stage 2
normalises, rounds and packs. ``latency=2`` registers between the stages and at the output,
``latency=1`` only at the output, ``latency=0`` is purely combinational.
"""

from __future__ import annotations

from amaranth.hdl import Cat, Const, Module, Mux, Signal, signed
from amaranth.lib import data, wiring
from amaranth.lib.wiring import In, Out

from .fp import FP32, FP32Pair, check_int, fp32_special, pipe, valid_stream

__all__ = ["FP32Mul", "MulStage1"]

#: What stage 1 hands to stage 2.
MulStage1 = data.StructLayout({
    "prod": 48,             # exact product of the two 24-bit significands
    "exp": signed(11),      # ea + eb - bias, before normalisation
    "sign": 1,
    "nan": 1,
    "inf": 1,
    "zero": 1,
})


def _stage1(m: Module, a, b):
    s = Signal(MulStage1, name="mul_s1")
    a_zero, b_zero = a.is_zero(), b.is_zero()
    m.d.comb += [
        s.prod.eq(a.significand() * b.significand()),
        s.exp.eq(a.exp + b.exp - 127),
        s.sign.eq(a.sign ^ b.sign),
        s.nan.eq(a.is_nan() | b.is_nan() | (a.is_inf() & b_zero) | (a_zero & b.is_inf())),
        s.inf.eq(a.is_inf() | b.is_inf()),
        s.zero.eq(a_zero | b_zero),
    ]
    return s


def _stage2(m: Module, s):
    p = s.prod
    top = p[47]  # product in [2, 4)
    # 24 kept bits, the guard bit just below them and a sticky OR of everything further down.
    keep = Mux(top, p[24:48], p[23:47])
    guard = Mux(top, p[23], p[22])
    sticky = Mux(top, p[0:23] != 0, p[0:22] != 0)
    round_up = guard & (sticky | keep[0])
    rounded = Signal(25, name="mul_rounded")
    m.d.comb += rounded.eq(keep + round_up)
    exp = Signal(signed(12), name="mul_exp")
    m.d.comb += exp.eq(s.exp + top + rounded[24])
    # On a rounding carry the significand is exactly 2**24: its fraction bits are all zero.
    mant = Mux(rounded[24], 0, rounded[0:23])
    overflow = exp >= 255
    underflow = exp <= 0
    out = Signal(32, name="mul_out")
    normal = Mux(s.zero | underflow, Cat(Const(0, 31), s.sign), Cat(mant, exp[0:8], s.sign))
    m.d.comb += out.eq(fp32_special(s.nan, s.inf | (~s.zero & overflow), s.sign, normal))
    return out


class FP32Mul(wiring.Component):
    """fp32 multiplier, RNE, DAZ/FTZ with unbounded-exponent rounding, canonical NaN.

    Parameters
    ----------
    latency : int
        Cycles from ``i`` to ``o``: 0, 1 or 2 (default 2, see the module docstring).

    Attributes
    ----------
    i : In(valid_stream(FP32Pair))
        Operands ``a``, ``b``.
    o : Out(valid_stream(FP32))
        Product ``latency`` cycles later; a new operand pair is accepted every cycle.
    """

    def __init__(self, *, latency: int = 2):
        self._latency = check_int("latency", latency, 0, 2)
        super().__init__({"i": In(valid_stream(FP32Pair)), "o": Out(valid_stream(FP32))})

    @property
    def latency(self) -> int:
        """Cycles from input to output."""
        return self._latency

    def elaborate(self, platform):
        m = Module()
        s1 = _stage1(m, self.i.payload.a, self.i.payload.b)
        s1 = pipe(m, s1, register=self._latency >= 2, name="mul_s1_q")
        valid = pipe(m, self.i.valid, register=self._latency >= 2, name="valid_s1_q")
        out = _stage2(m, s1)
        m.d.comb += [
            self.o.payload.eq(pipe(m, out, register=self._latency >= 1, name="out_q")),
            self.o.valid.eq(pipe(m, valid, register=self._latency >= 1, name="valid_q")),
        ]
        return m

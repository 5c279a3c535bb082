"""bf16 x bf16 -> fp32 multiplier, exact (the MAC unit's lane multiplier).

The product of two 8-bit significands has at most 16 significant bits, so it always fits the fp32
significand: nothing is ever rounded. Only the exponent range limits apply, as in
:func:`pimgpt.core.numerics.bf16_mul`: a product below 2**-126 becomes a signed zero (FTZ), one of
2**128 or more becomes a signed Inf.
"""

from __future__ import annotations

from amaranth.hdl import Cat, Const, Module, Mux, Signal, signed
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from .fp import FP32, BF16Pair, check_int, fp32_special, pipe, valid_stream

__all__ = ["BF16Mul", "bf16_mul_comb"]


def bf16_mul_comb(m: Module, a, b, *, name: str = "bf16mul"):
    """Describe the combinational exact bf16 product of views ``a`` and ``b`` in module ``m``.

    Parameters
    ----------
    m : amaranth.hdl.Module
        Module receiving the combinational logic.
    a, b : BF16 views
        Operands.
    name : str
        Prefix of the internal signal names.

    Returns
    -------
    amaranth.hdl.Signal
        32-bit fp32 bit pattern of the product.
    """
    sign = a.sign ^ b.sign
    a_zero, b_zero = a.is_zero(), b.is_zero()
    nan = a.is_nan() | b.is_nan() | (a.is_inf() & b_zero) | (a_zero & b.is_inf())
    inf = a.is_inf() | b.is_inf()
    zero = a_zero | b_zero

    prod = Signal(16, name=f"{name}_prod")
    m.d.comb += prod.eq(a.significand() * b.significand())
    top = prod[15]  # product in [2, 4): one more exponent step
    # Left-align the 15 (or 14) fraction bits below the leading one into the 23-bit fraction.
    mant = Mux(top, Cat(Const(0, 8), prod[0:15]), Cat(Const(0, 9), prod[0:14]))
    exp = Signal(signed(11), name=f"{name}_exp")
    m.d.comb += exp.eq(a.exp + b.exp - 127 + top)
    overflow = exp >= 255
    underflow = exp <= 0  # exact value below 2**-126: flush to signed zero

    out = Signal(32, name=f"{name}_out")
    normal = Mux(zero | underflow, Cat(Const(0, 31), sign), Cat(mant, exp[0:8], sign))
    m.d.comb += out.eq(fp32_special(nan, inf | (~zero & overflow), sign, normal))
    return out


class BF16Mul(wiring.Component):
    """Exact bf16 x bf16 -> fp32 multiplier with a valid stream interface.

    Parameters
    ----------
    latency : int
        Cycles from ``i`` to ``o``: 0 (combinational) or 1 (registered output, the default).

    Attributes
    ----------
    i : In(valid_stream(BF16Pair))
        Operands ``a``, ``b``.
    o : Out(valid_stream(FP32))
        Product, ``latency`` cycles after ``i``; ``o.valid`` follows ``i.valid``.
    """

    def __init__(self, *, latency: int = 1):
        self._latency = check_int("latency", latency, 0, 1)
        super().__init__({"i": In(valid_stream(BF16Pair)), "o": Out(valid_stream(FP32))})

    @property
    def latency(self) -> int:
        """Cycles from input to output."""
        return self._latency

    def elaborate(self, platform):
        m = Module()
        prod = bf16_mul_comb(m, self.i.payload.a, self.i.payload.b)
        reg = self._latency == 1
        m.d.comb += [
            self.o.payload.eq(pipe(m, prod, register=reg, name="prod_q")),
            self.o.valid.eq(pipe(m, self.i.valid, register=reg, name="valid_q")),
        ]
        return m

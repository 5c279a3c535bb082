"""Shared floating-point layouts and helpers for the pimgpt RTL.

The layouts mirror Amaranth's ``IEEE754Single`` example: fields from the least significant bit up,
``mant`` (fraction without the hidden bit), ``exp`` (biased exponent), ``sign``. Every arithmetic
block follows the numerics contract of :mod:`pimgpt.core.numerics` bit for bit: inputs with a zero
exponent field are zeros (DAZ), results below the smallest normal are signed zeros (FTZ), rounding
is round-to-nearest-even and every NaN result is the canonical quiet NaN.

Blocks talk through *valid streams*: a ``payload`` and a ``valid`` bit, no ``ready``. The in-bank
MAC datapath is fed by DRAM column reads at a fixed rate and can never stall, so back-pressure would
only cost area; every block is a fixed-latency pipeline that accepts one item per cycle.
"""

# No ``from __future__ import annotations`` here: data.Struct reads its field annotations as
# objects when the class is created.
from amaranth.hdl import Const, Mux, Signal
from amaranth.lib import data, wiring
from amaranth.lib.wiring import Out

from pimgpt.core import numerics

__all__ = [
    "BF16",
    "FP32",
    "FP32_CANONICAL_NAN",
    "BF16_CANONICAL_NAN",
    "BF16Pair",
    "FP32Pair",
    "valid_stream",
    "check_int",
    "pipe",
    "fp32_special",
]

#: Canonical quiet NaN bit patterns (the numerics contract).
FP32_CANONICAL_NAN = int(numerics.FP32_CANONICAL_NAN)
BF16_CANONICAL_NAN = int(numerics.BF16_CANONICAL_NAN)


class _FloatMixin:
    """Classification helpers shared by :class:`BF16` and :class:`FP32` views (DAZ semantics)."""

    def is_zero(self):
        """True for +-0 and for subnormals, which the contract treats as zeros (DAZ)."""
        return self.exp == 0

    def is_special(self):
        """True for Inf and NaN (all-ones exponent)."""
        return self.exp == (1 << len(self.exp)) - 1

    def is_inf(self):
        """True for +-Inf."""
        return (self.exp == (1 << len(self.exp)) - 1) & (self.mant == 0)

    def is_nan(self):
        """True for any NaN (quiet or signalling)."""
        return (self.exp == (1 << len(self.exp)) - 1) & (self.mant != 0)

    def significand(self):
        """The significand with its hidden bit, ``1.mant``; zero for (DAZ) zeros."""
        return Mux(self.is_zero(), 0, self.mant | (1 << len(self.mant)))


class BF16(_FloatMixin, data.Struct):
    """bfloat16: 7-bit fraction, 8-bit exponent (bias 127), sign."""

    mant: 7
    exp: 8
    sign: 1


class FP32(_FloatMixin, data.Struct):
    """IEEE 754 binary32: 23-bit fraction, 8-bit exponent (bias 127), sign."""

    mant: 23
    exp: 8
    sign: 1


class BF16Pair(data.Struct):
    """Operands of a bf16 x bf16 multiplier."""

    a: BF16
    b: BF16


class FP32Pair(data.Struct):
    """Operands of an fp32 adder or multiplier."""

    a: FP32
    b: FP32


def valid_stream(payload_shape) -> wiring.Signature:
    """Signature of a valid-only stream (source view): ``payload`` and ``valid``, no ``ready``.

    Parameters
    ----------
    payload_shape : ShapeLike
        Shape of the payload, usually a :class:`~amaranth.lib.data.Struct`.

    Returns
    -------
    amaranth.lib.wiring.Signature
        Use ``In(valid_stream(...))`` for a sink port and ``Out(...)`` for a source port.
    """
    return wiring.Signature({"payload": Out(payload_shape), "valid": Out(1)})


def check_int(name: str, value, lo: int, hi: int | None = None) -> int:
    """Validate an integer constructor parameter.

    Parameters
    ----------
    name : str
        Parameter name used in the error message.
    value : object
        The value given.
    lo, hi : int
        Inclusive bounds (``hi`` None: no upper bound).

    Returns
    -------
    int
        ``value`` unchanged.

    Raises
    ------
    TypeError
        If ``value`` is not an ``int`` (``bool`` is rejected too).
    ValueError
        If ``value`` is out of range.
    """
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an integer, not {value!r}")
    if value < lo or (hi is not None and value > hi):
        rng = f">= {lo}" if hi is None else f"in {lo}..{hi}"
        raise ValueError(f"{name} must be {rng}, not {value!r}")
    return value


def pipe(m, value, *, register: bool, name: str):
    """Return ``value`` delayed by one ``sync`` cycle if ``register``, else ``value`` itself.

    This is how the blocks place (or omit) pipeline registers at stage boundaries, so a single
    description serves every latency.
    """
    if not register:
        return value
    reg = Signal(value.shape(), name=name)
    m.d.sync += reg.eq(value)
    return reg


def fp32_special(nan, inf, sign, normal):
    """Select the fp32 result: canonical NaN, signed Inf, or the ``normal`` 32-bit value."""
    inf_bits = Mux(sign, Const(0xFF800000, 32), Const(0x7F800000, 32))
    return Mux(nan, Const(FP32_CANONICAL_NAN, 32), Mux(inf, inf_bits, normal))

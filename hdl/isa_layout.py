"""Hardware views of the instruction set (``pimgpt/core/isa.py``): the 256-bit instruction word.

The binary instruction (``opcode u16 | flags u16 | f0..f6 u32``, little endian, 32 bytes) read as
one little-endian 256-bit integer is exactly :class:`InstrWord`, so program memory holds the
binary form unchanged and decoding is wiring.
"""

# No ``from __future__ import annotations``: data.Struct reads its annotations as objects.
from amaranth.lib import data

from pimgpt.core import isa

__all__ = ["InstrWord", "instr_word", "INSTR_BITS"]

INSTR_BITS = 8 * isa.INSTR.size


class InstrWord(data.Struct):
    """One decoded instruction: opcode, flags and the seven 32-bit fields."""

    op: 16
    flags: 16
    f: data.ArrayLayout(32, isa.N_FIELDS)


def instr_word(ins: isa.Instr) -> int:
    """The 256-bit integer of one instruction (its 32 bytes, little endian)."""
    return int.from_bytes(isa.INSTR.pack(int(ins.op), ins.flags, *ins.fields()), "little")

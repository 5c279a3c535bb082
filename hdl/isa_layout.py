"""Hardware views of the instruction set, generated from its definition (``pimgpt/core/isa.py``).

The binary instruction (``opcode u16 | flags u16 | f0..f6 u32``, little endian, 32 bytes) read as
one little-endian 256-bit integer is exactly :class:`InstrWord`, so program memory holds the
binary form unchanged and decoding is wiring. Everything here is derived from
:data:`pimgpt.core.isa.SPEC`, once:

* :class:`Opcode`: an ``amaranth.lib.enum.Enum`` with the values of :class:`pimgpt.core.isa.Op`
  (decode with ``m.Switch(ins.op)`` / ``m.Case(Opcode.MAC_ABK)``);
* :func:`fields_layout`: per opcode a ``StructLayout`` of its fields by name, in slot order;
  :class:`InstrWord`'s ``args`` is the union of all of them (``ins.args_of(Op.MAC_ABK).ncols``),
  beside the raw slots ``ins.f[k]``;
* :func:`sp_access`: the scratchpad word range a PIM instruction reads or writes, as hardware,
  from the opcode's ``Access`` records (the hazard logic of the PIM engine uses it).
"""

# No ``from __future__ import annotations``: data.Struct reads its annotations as objects.
import types

from amaranth.hdl import Const, Value
from amaranth.lib import data, enum

from pimgpt.core import isa

__all__ = ["Opcode", "opcode", "InstrWord", "fields_layout", "ARGS_LAYOUT", "instr_word",
           "sp_access", "INSTR_BITS", "OP_BITS", "FLAG_BITS", "FIELD_BITS"]

INSTR_BITS = 8 * isa.INSTR.size
#: Widths of the binary form's opcode, flags and field slots (``isa.INSTR``: ``<HH7I``).
OP_BITS, FLAG_BITS, FIELD_BITS = 16, 16, 32
assert OP_BITS + FLAG_BITS + isa.N_FIELDS * FIELD_BITS == INSTR_BITS, "isa.INSTR changed"


def _opcode_enum() -> type:
    def body(ns):
        ns["__module__"] = __name__
        ns["__doc__"] = "Opcodes as an Amaranth enum (the values of pimgpt.core.isa.Op)."
        for op in isa.Op:
            ns[op.name] = op.value
    return types.new_class("Opcode", (enum.Enum,), {"shape": OP_BITS}, body)


#: The opcode enum; member ``Opcode.X`` has the value of ``isa.Op.X``.
Opcode = _opcode_enum()


def opcode(op: isa.Op) -> "Opcode":
    """The :class:`Opcode` member of an :class:`pimgpt.core.isa.Op`."""
    return Opcode(int(op))


def fields_layout(op: isa.Op) -> data.StructLayout:
    """The named fields of ``op`` in slot order, ``FIELD_BITS`` each (``isa.SPEC[op].fields``)."""
    return data.StructLayout({name: FIELD_BITS for name in isa.SPEC[op].fields})


#: The seven field slots, raw (``f``) or as any opcode's named fields (``mac_abk``, ...).
ARGS_LAYOUT = data.UnionLayout({
    "f": data.ArrayLayout(FIELD_BITS, isa.N_FIELDS),
    **{op.name.lower(): fields_layout(op) for op in isa.Op},
})


class InstrWord(data.Struct):
    """One instruction: opcode, flags and the seven 32-bit field slots.

    ``ins.f[k]`` is slot ``k``; ``ins.args_of(Op.X)`` (or ``ins.args.x``) names the slots as
    ``isa.SPEC[Op.X].fields`` does.
    """

    op: Opcode
    flags: FLAG_BITS
    args: ARGS_LAYOUT

    @property
    def f(self):
        """The raw field slots (an array view of ``FIELD_BITS``-bit values)."""
        return self.args.f

    def args_of(self, op: isa.Op):
        """The fields of opcode ``op`` by name (a view of the same bits)."""
        return getattr(self.args, isa.Op(op).name.lower())


def instr_word(ins: isa.Instr) -> int:
    """The 256-bit integer of one instruction (its 32 bytes, little endian)."""
    return int.from_bytes(isa.INSTR.pack(int(ins.op), ins.flags, *ins.fields()), "little")


def sp_access(op: isa.Op, args, *, banks: int, channels: int, width: int):
    """Scratchpad range of PIM instruction ``op`` from its ``Access`` record, as hardware.

    Parameters
    ----------
    op : isa.Op
        A PIM opcode.
    args : View
        The instruction's fields (``InstrWord.args_of(op)``).
    banks, channels : int
        Banks per channel (the symbol ``BANKS``) and channels of the machine (``ch_mask`` bits
        counted for ``CHANS``).
    width : int
        Width of the returned values (terms are truncated to it).

    Returns
    -------
    (Value, Value, bool) or None
        ``(lo, length, write)`` of the one scratchpad access of ``op``; None when it has none.

    Raises
    ------
    ValueError
        If ``op`` has more than one scratchpad access (the PIM engine tracks one range).
    """
    accs = [a for a in isa.SPEC[op].accesses if a.space == "sp"]
    if not accs:
        return None
    if len(accs) > 1:
        raise ValueError(f"{isa.Op(op).name} has {len(accs)} scratchpad accesses; the PIM "
                         "engine's hazard logic tracks one range per instruction")
    acc = accs[0]
    length = Const(1, width)
    for term in acc.length:
        if isinstance(term, int):
            factor = Const(term, width)
        elif term == "COL":
            factor = Const(isa.COL, width)
        elif term == "BANKS":
            factor = Const(banks, width)
        elif term == "CHANS":
            mask = args.ch_mask
            factor = sum((mask[c] for c in range(channels)), Const(0, width))
        else:
            factor = Value.cast(getattr(args, term))[:width]
        length = (length * factor)[:width]
    return Value.cast(getattr(args, acc.base))[:width], length, acc.write

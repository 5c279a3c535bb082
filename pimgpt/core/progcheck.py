"""Operand validation of a whole program against the hardware, before anything executes.

A program is checked once, up front, so that an executor never starts work it cannot finish: every
scratchpad range and register an instruction touches (from :func:`pimgpt.core.isa.effects`, the one
definition of what an instruction reads and writes), every count that :data:`~pimgpt.core.isa.SPEC`
says must be nonzero, and every DRAM operand (channel mask, channel, bank, row, columns, elements,
accumulators, regions) against the hardware's sizes. Because each of these bounds a loop or an
allocation of the executor (a ``VFILL`` of ``n`` words allocates ``n`` words, a ``VREDUCE`` of ``k``
partial vectors loops ``k`` times), a program that passes cannot make an executor allocate more
than the machine's own memories or loop longer than its operands allow.

Also the overlap rule of the vector unit's instructions (destination in place or disjoint). What
only a run can know is checked by the executor: the vector index a register holds (``RD_VEC`` with
``FLAG_VEC_FROM_REG``).
"""

from __future__ import annotations

from collections.abc import Sequence

from pimgpt.core.config import HwConfig
from pimgpt.core.errors import PimgptError
from pimgpt.core.isa import COL, N_REGS, SPEC, Instr, Op, ProgramError, Side, access_length, effects

#: Opcodes whose ``elem``/``n`` fields address elements of one DRAM row.
_ROW_ELEMS = ("elem", "n", "row")
#: Fields that describe a region (``docs/isa.md``, "Regions").
_REGION = ("region_row", "n_local", "vec_len")


class _Limits:
    """The sizes of one hardware config that operands are checked against."""

    def __init__(self, hw: HwConfig):
        d = hw.dram
        self.name = hw.name
        self.channels, self.banks, self.rows = d.channels, d.banks, d.rows
        self.row_elems, self.gb_elems = d.row_elems, d.gb_elems
        self.row_cols, self.gb_cols = d.row_elems // COL, d.gb_elems // COL
        self.accumulators = getattr(d, "accumulators", 1)
        self.sp_words = hw.asic.scratchpad_words
        self.slots = d.channels * d.banks


def _problem(ins: Instr, lim: _Limits) -> str | None:
    """What is wrong with one instruction's operands on this hardware, or None."""
    spec = SPEC[ins.op]
    a = ins.args
    for name in spec.nonzero:
        if a[name] == 0:
            return f"{name} must be at least 1"
    fields = spec.fields
    if "ch_mask" in fields and a["ch_mask"] >> lim.channels:
        return (f"ch_mask {a['ch_mask']:#x} selects a channel beyond the {lim.channels} "
                "channels")
    if "ch" in fields and a["ch"] >= lim.channels:
        return f"channel {a['ch']} out of range (0..{lim.channels - 1})"
    if "bank" in fields and a["bank"] >= lim.banks:
        return f"bank {a['bank']} out of range (0..{lim.banks - 1})"
    if "row" in fields and a["row"] >= lim.rows:
        return f"row {a['row']} out of range (0..{lim.rows - 1})"
    if "col" in fields and a["col"] + a["ncols"] > lim.row_cols:
        return f"columns [{a['col']}, {a['col'] + a['ncols']}) do not fit a row of {lim.row_cols}"
    if "gb_col" in fields and a["gb_col"] + a["ncols"] > lim.gb_cols:
        return (f"global-buffer columns [{a['gb_col']}, {a['gb_col'] + a['ncols']}) do not fit "
                f"the {lim.gb_cols}-column global buffer")
    if "acc" in fields:
        n = a.get("nacc", 1)
        if a["acc"] + n > lim.accumulators:
            return (f"accumulators [{a['acc']}, {a['acc'] + n}) do not exist (the hardware has "
                    f"{lim.accumulators} per bank)")
    if all(f in fields for f in _ROW_ELEMS) and a["elem"] + a["n"] > lim.row_elems:
        return f"elements [{a['elem']}, {a['elem'] + a['n']}) exceed a row of {lim.row_elems}"
    if "region_row" in fields:
        bad = _region_problem(ins, lim)
        if bad:
            return bad
    _, reads, writes = effects(ins, lim.banks)
    for space, lo, hi in reads + writes:
        size = lim.sp_words if space == "sp" else N_REGS
        if hi > size:
            what = "scratchpad words" if space == "sp" else "registers"
            return f"{what} [{lo}, {hi}) exceed the {size} the hardware has"
    return None


#: Vector-unit sources read after the destination may have been written (a later pass, a
#: per-segment scale, a per-head table): they must not overlap the destination at all.
_READ_LATE = {Op.LAYERNORM: ("gamma", "beta"), Op.VMACS: ("s",), Op.ROPE: ("tab",)}
#: Vector-unit destinations written while sources are still to be read (a ``SOFTMAXU`` writes
#: each group's reciprocals before the next group's rows are read): disjoint from every other
#: operand.
_WRITE_LATE = {Op.SOFTMAXU: ("rcp",)}


def _overlap_problem(ins: Instr, banks: int) -> str | None:
    """The vector unit works block by block: an ASIC instruction's destination is one of its
    sources exactly (in place: the same first word) or disjoint from it, never shifted against
    it (``VMOV`` excepted: it copies in the safe direction); :data:`_READ_LATE` sources are
    disjoint from it, :data:`_WRITE_LATE` destinations from every other operand
    (``docs/isa.md``)."""
    spec = SPEC[ins.op]
    if spec.side is not Side.ASIC or ins.op is Op.VMOV:
        return None
    a = ins.args
    ranges = [(acc, a[acc.base] + (a[acc.offset] if acc.offset else 0),
               access_length(acc, a, banks)) for acc in spec.accesses if acc.space == "sp"]
    for acc_d, dst, nd in ranges:
        if not acc_d.write:
            continue
        late = acc_d.base in _WRITE_LATE.get(ins.op, ())
        for acc, lo, n in ranges:
            if acc is acc_d or (acc.write and not late) or not (
                    n and nd and lo < dst + nd and dst < lo + n):
                continue
            if late:
                return (f"{acc_d.base} [{dst}, {dst + nd}) overlaps {acc.base} [{lo}, {lo + n}); "
                        f"{acc_d.base} must be disjoint from the other operands")
            if lo != dst or acc.base in _READ_LATE.get(ins.op, ()):
                return (f"dst [{dst}, {dst + nd}) overlaps a source [{lo}, {lo + n}) ({acc.base}); "
                        "use the same start (in place) or disjoint ranges")
    return None


def _region_problem(ins: Instr, lim: _Limits) -> str | None:
    a = ins.args
    n_local, vec_len = a["n_local"], a["vec_len"]
    if vec_len % COL:
        return f"bad region: vec_len {vec_len} is not a positive multiple of {COL}"
    end = a["region_row"] + -(-(n_local * vec_len) // lim.row_elems)
    if end > lim.rows:
        return (f"the region (rows {a['region_row']}..{end - 1}) exceeds the {lim.rows} rows "
                "of a bank")
    vectors = n_local * lim.slots
    if ins.op is Op.WR_ELEM:
        if a["elem"] >= vec_len:
            return f"element {a['elem']} is beyond the vector length {vec_len}"
        if a["vec"] + a["n"] > vectors:
            return f"vectors [{a['vec']}, {a['vec'] + a['n']}) are beyond the region's {vectors}"
        return None
    if a["n"] > vec_len:
        return f"elements [0, {a['n']}) are beyond the vector length {vec_len}"
    from_reg = ins.op is Op.RD_VEC and ins.flags & SPEC[Op.RD_VEC].flags
    if not from_reg and a["vec"] >= vectors:
        return f"vector {a['vec']} is beyond the region's {vectors} vectors"
    return None


def check_program(program: Sequence[Instr], hw: HwConfig, source: str = "program",
                  error: type[PimgptError] = ProgramError) -> None:
    """Check every instruction's operands against ``hw`` before a run.

    Parameters
    ----------
    program : sequence of Instr
    hw : HwConfig
    source : str
        Name of the program in messages.
    error : type
        The error class to raise (an executor's own, e.g. ``GoldenError``).

    Raises
    ------
    ProgramError
        (or ``error``) naming the first bad instruction, its operand and the hardware limit.
    """
    lim = _Limits(hw)
    for index, ins in enumerate(program):
        bad = _problem(ins, lim)
        if bad:
            raise error(f"{source}: instruction {index} ({ins.op.name}): {bad} on "
                        f"hardware {lim.name}; the program was not made for it")
        bad = _overlap_problem(ins, lim.banks)
        if bad:
            raise error(f"{source}: instruction {index} ({ins.op.name}): {bad}")

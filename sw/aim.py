"""AiM command traces (``program.aim``): writer for pimgpt programs, and a parser/validator.

Grammar (the trace format read by the open GDDR6-AiM simulators built on Ramulator 2)::

    # comment
    AiM <OP> [opsize] [GPR_0] [GPR_1] [channel_mask] [bank] [row]
    W|R GPR <id>
    W|R CFR <id> <data>
    W|R MEM <channel> <bank> <row>

How pimgpt instructions become trace lines (one or more per PIM instruction, in program order;
ASIC-side instructions have no line):

=============  ==============================================================================
``WR_GB``      ``AiM WR_GB <ncols> <src> <ch_mask>``
``MAC_ABK``    ``AiM MAC_ABK <ncols> <ch_mask> <row>``
``MAC_SBK``    ``AiM MAC_SBK <ncols> <ch_mask> <bank> <row>``
``RD_MAC``     ``AiM RD_MAC <dst> <ch_mask>``
``WR_BIAS``    ``AiM WR_BIAS <src> <ch_mask>``
``COPY_*``     ``AiM COPY_BKGB|COPY_GBBK <ncols> <ch_mask> <bank> <row>``
``WR_SBK``     one ``AiM WR_SBK <gpr> <1<<ch> <bank> <row>`` per 32-byte column written
``WR_ABK``     one ``AiM WR_ABK <gpr> <ch_mask> <row>`` per column written
``RD_SBK``     one ``AiM RD_SBK <gpr> <1<<ch> <bank> <row>`` per column read
``RD_VEC``     one ``AiM RD_SBK`` per (channel, bank, row, column) the vector's elements occupy
``WR_VEC``     one ``AiM WR_SBK`` per column touched (K-cache append)
``WR_ELEM``    one ``AiM WR_SBK`` per column touched (one per vector: V-cache append)
``SYNC``       ``AiM SYNC``
``EOC``        ``AiM EOC`` (last line)
=============  ==============================================================================

The GPR fields carry scratchpad word addresses (where the host side reads or writes the data).
Single-bank transfers are expanded per column because the AiM ``RD_SBK``/``WR_SBK`` move one
32-byte column each, so the trace carries the real number of transfers. The AiM grammar has no
column field: the starting column of a MAC or copy within its row is not represented (rows and
column counts are, which is what the DRAM timing depends on). A register-indexed ``RD_VEC``
(token embedding of a generated token) is traced with vector 0 of its region: the actual row is
only known at run time, the number and shape of the transfers are the same.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from pimgpt.core.config import HwConfig
from pimgpt.core.errors import PimgptError
from pimgpt.core.isa import FLAG_VEC_FROM_REG, Instr, Op
from pimgpt.sw.mapper import COL, element_address


class AimError(PimgptError):
    """A malformed AiM trace; the message names the line."""


#: Field names of every AiM op, in trace order (the open AiM simulators' trace format).
AIM_FIELDS: dict[str, tuple[str, ...]] = {
    "WR_SBK": ("gpr", "ch_mask", "bank", "row"),
    "WR_ABK": ("gpr", "ch_mask", "row"),
    "WR_GB": ("opsize", "gpr", "ch_mask"),
    "WR_BIAS": ("gpr", "ch_mask"),
    "RD_MAC": ("gpr", "ch_mask"),
    "RD_AF": ("gpr", "ch_mask"),
    "RD_SBK": ("gpr", "ch_mask", "bank", "row"),
    "COPY_BKGB": ("opsize", "ch_mask", "bank", "row"),
    "COPY_GBBK": ("opsize", "ch_mask", "bank", "row"),
    "MAC_SBK": ("opsize", "ch_mask", "bank", "row"),
    "MAC_ABK": ("opsize", "ch_mask", "row"),
    "AF": ("ch_mask",),
    "EWMUL": ("opsize", "ch_mask", "row"),
    "EWADD": ("opsize", "gpr0", "gpr1"),
    "SYNC": (),
    "EOC": (),
}


@dataclass(frozen=True)
class AimLine:
    """One parsed trace line: ``kind`` is ``AiM``, ``W`` or ``R``; ``op`` the AiM op or the
    ``GPR``/``CFR``/``MEM`` target; ``fields`` by name."""

    lineno: int
    kind: str
    op: str
    fields: dict


def _column_lines(op: str, ch, bank, row, elem, gpr) -> list[str]:
    """One line per distinct (channel, bank, row, column) in order of first touch."""
    col = np.asarray(elem) // COL
    key = np.stack(np.broadcast_arrays(ch, bank, row, col), axis=-1).reshape(-1, 4)
    gpr = np.broadcast_to(np.asarray(gpr), key.shape[:1])
    if key.shape[0] == 0:
        return []
    change = np.ones(key.shape[0], dtype=bool)
    change[1:] = np.any(key[1:] != key[:-1], axis=1)
    out = []
    for (c, b, r, _), g in zip(key[change], gpr[change], strict=True):
        out.append(f"AiM {op} {int(g)} {1 << int(c):#x} {int(b)} {int(r)}")
    return out


def instr_lines(ins: Instr, hw: HwConfig) -> list[str]:
    """The AiM trace lines of one instruction (empty for ASIC-side instructions)."""
    d = hw.dram
    op, a = ins.op, ins.args
    if op is Op.WR_GB:
        return [f"AiM WR_GB {a['ncols']} {a['src']} {a['ch_mask']:#x}"]
    if op is Op.MAC_ABK:
        return [f"AiM MAC_ABK {a['ncols']} {a['ch_mask']:#x} {a['row']}"]
    if op is Op.MAC_SBK:
        return [f"AiM MAC_SBK {a['ncols']} {a['ch_mask']:#x} {a['bank']} {a['row']}"]
    if op is Op.RD_MAC:
        return [f"AiM RD_MAC {a['dst']} {a['ch_mask']:#x}"]
    if op is Op.WR_BIAS:
        return [f"AiM WR_BIAS {a['src']} {a['ch_mask']:#x}"]
    if op in (Op.COPY_BKGB, Op.COPY_GBBK):
        return [f"AiM {op.name} {a['ncols']} {a['ch_mask']:#x} {a['bank']} {a['row']}"]
    if op is Op.SYNC:
        return ["AiM SYNC"]
    if op is Op.EOC:
        return ["AiM EOC"]
    if op in (Op.WR_SBK, Op.RD_SBK):
        e = a["elem"] + np.arange(a["n"])
        gpr = (a["src"] if op is Op.WR_SBK else a["dst"]) + np.arange(a["n"])
        return _column_lines(op.name, a["ch"], a["bank"], a["row"], e, gpr)
    if op is Op.WR_ABK:
        cols = sorted(set(((a["elem"] + np.arange(a["n"])) // COL).tolist()))
        return [f"AiM WR_ABK {a['src'] + max(0, c * COL - a['elem'])} {a['ch_mask']:#x} "
                f"{a['row']}" for c in cols]
    if op in (Op.RD_VEC, Op.WR_VEC, Op.WR_ELEM):
        n = a["n"]
        geo = {"channels": d.channels, "banks": d.banks, "row_elems": d.row_elems,
               "gb_elems": d.gb_elems}
        if op is Op.WR_ELEM:
            vec, elem = a["vec"] + np.arange(n), a["elem"]
        else:
            vec = 0 if op is Op.RD_VEC and ins.flags & FLAG_VEC_FROM_REG else a["vec"]
            elem = np.arange(n)
        ch, bank, row, el = element_address(a["region_row"], a["n_local"], a["vec_len"], vec,
                                            elem, **geo)
        base = a["dst"] if op is Op.RD_VEC else a["src"]
        name = "RD_SBK" if op is Op.RD_VEC else "WR_SBK"
        return _column_lines(name, ch, bank, row, el, base + np.arange(n))
    return []


def to_aim(program: list[Instr], hw: HwConfig, header: str | None = None) -> str:
    """The AiM trace of a program (must end with ``EOC``)."""
    lines = []
    if header:
        lines.append(f"# pimgpt AiM trace: {header} on {hw.name}")
    for ins in program:
        lines.extend(instr_lines(ins, hw))
    if not lines or lines[-1] != "AiM EOC":
        lines.append("AiM EOC")
    return "\n".join(lines) + "\n"


def _int(token: str, what: str, where: str) -> int:
    try:
        value = int(token, 0)
    except ValueError:
        raise AimError(f"{where}: {what} {token!r} is not an integer") from None
    if value < 0:
        raise AimError(f"{where}: {what} {token!r} is negative")
    return value


def parse_aim(text: str, hw: HwConfig | None = None, source: str = "program.aim") -> list[AimLine]:
    """Parse and validate an AiM trace.

    Checks the grammar (known ops, exact field counts, integers, hex or decimal channel masks),
    that ``EOC`` ends the trace, and, if ``hw`` is given, every channel mask, bank, row and
    ``opsize`` against it.

    Raises
    ------
    AimError
        Naming the first bad line.
    """
    out: list[AimLine] = []
    ended = False
    d = hw.dram if hw is not None else None
    for lineno, raw in enumerate(text.splitlines(), 1):
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        where = f"{source}:{lineno}"
        if ended:
            raise AimError(f"{where}: {line!r} after EOC; EOC must be the last command")
        toks = line.split()
        kind = toks[0]
        if kind == "AiM":
            if len(toks) < 2:
                raise AimError(f"{where}: 'AiM' without an op")
            op = toks[1]
            if op not in AIM_FIELDS:
                raise AimError(f"{where}: unknown AiM op {op!r}; known: {', '.join(AIM_FIELDS)}")
            names = AIM_FIELDS[op]
            if len(toks) - 2 != len(names):
                raise AimError(
                    f"{where}: AiM {op} takes {len(names)} fields ({' '.join(names) or 'none'}), "
                    f"got {len(toks) - 2}"
                )
            fields = {n: _int(t, n, where) for n, t in zip(names, toks[2:], strict=True)}
            if d is not None:
                _check_fields(fields, d, where)
            ended = op == "EOC"
        elif kind in ("W", "R"):
            if len(toks) < 2 or toks[1] not in ("GPR", "CFR", "MEM"):
                raise AimError(f"{where}: expected '{kind} GPR|CFR|MEM ...', got {line!r}")
            op = toks[1]
            names = {"GPR": ("id",), "CFR": ("id", "data"), "MEM": ("ch", "bank", "row")}[op]
            if len(toks) - 2 != len(names):
                raise AimError(f"{where}: {kind} {op} takes fields {' '.join(names)}")
            fields = {n: _int(t, n, where) for n, t in zip(names, toks[2:], strict=True)}
            if d is not None and op == "MEM":
                _check_fields({"ch_mask": 1 << fields["ch"], "bank": fields["bank"],
                               "row": fields["row"]}, d, where)
        else:
            raise AimError(f"{where}: a line starts with AiM, W or R, got {kind!r}")
        out.append(AimLine(lineno, kind, op, fields))
    if not ended:
        raise AimError(f"{source}: the trace does not end with 'AiM EOC'; it is truncated")
    return out


def _check_fields(f: dict, d, where: str) -> None:
    if "ch_mask" in f and (f["ch_mask"] == 0 or f["ch_mask"] >> d.channels):
        raise AimError(f"{where}: channel mask {f['ch_mask']:#x} is empty or beyond "
                       f"{d.channels} channels")
    if "bank" in f and f["bank"] >= d.banks:
        raise AimError(f"{where}: bank {f['bank']} out of range ({d.banks} banks)")
    if "row" in f and f["row"] >= d.rows:
        raise AimError(f"{where}: row {f['row']} out of range ({d.rows} rows)")
    if "opsize" in f and not 1 <= f["opsize"] <= d.cols_per_row:
        raise AimError(f"{where}: opsize {f['opsize']} not in 1..{d.cols_per_row}")

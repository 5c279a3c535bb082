"""Decode of the vector unit's micro-word, generated from the micro-ISA (``core/vu/uisa.py``).

The micro-word's Amaranth layout is ``uisa.amaranth_layout()`` (:data:`UWORD`: the same field
table that encodes the ROM). What the issue logic needs of a word -- its issue class, latency,
write port, which fields name vector or scalar registers it reads or writes -- is not written a
second time here: :func:`decode_table` asks ``uisa.unit_of``, ``Pipeline.of`` and
``uisa.vector_reads``/``vector_writes``/``scalar_reads``/``scalar_writes`` about every opcode
with every operand selection (a word whose register fields are all different tells which field
each register came from), and :class:`UDecode` is that table as an ``m.Switch`` on the enum-typed
``op`` field.
"""

# No ``from __future__ import annotations``: data layouts are built from objects.
from functools import lru_cache

from amaranth.hdl import Module
from amaranth.lib import data, wiring
from amaranth.lib import enum as aenum
from amaranth.lib.wiring import In, Out

from pimgpt.core.vu import uisa
from pimgpt.core.vu.uisa import BSel, Pipeline, Unit, UOp, UWord

__all__ = ["UWORD", "UnitShape", "UCTL", "UDecode", "decode_table", "uop", "MAX_LATENCY"]

#: The micro-word as an Amaranth layout (``uisa.FIELDS``; ``op`` and ``bsel`` enum-typed).
UWORD = uisa.amaranth_layout()
_OP_SHAPE = UWORD["op"].shape
_BSEL_SHAPE = UWORD["bsel"].shape

#: Issue classes as an Amaranth enum (the values of ``uisa.Unit``).
UnitShape = aenum.Enum("UnitShape", [(u.name, u.value) for u in Unit])

#: Longest latency a pipeline may have (``Pipeline`` bounds each depth by 8; ``VMAD`` adds two).
MAX_LATENCY = 16

#: Register-use flags of one word: ``v*`` vector, ``s*`` scalar; ``r`` read, ``w`` written;
#: the letter is the field (``a`` = ``ra``, ``b`` = ``rb``, ``c`` = ``rc``, ``d`` = ``rd``).
_FLAGS = ("vr_a", "vr_b", "vr_c", "vr_d", "vw_d", "sr_a", "sr_b", "sr_c", "sw_d")

#: What :class:`UDecode` tells about a word.
UCTL = data.StructLayout({
    "unit": UnitShape,
    "lat": range(MAX_LATENCY + 1),  # issue to ready result (0: writes no vector register)
    "port_f": 1,  # result through write port F
    "port_i": 1,  # result through write port I
    **{f: 1 for f in _FLAGS},
})

_FIELD_OF = {1: "d", 2: "a", 3: "b", 4: "c"}


def uop(op: UOp):
    """The enum member of the micro-word's ``op`` field for ``op``."""
    return _OP_SHAPE(int(op))


def _flags(w: UWord) -> dict:
    out = {f: 0 for f in _FLAGS}
    for r in uisa.vector_reads(w):
        out[f"vr_{_FIELD_OF[r]}"] = 1
    for r in uisa.vector_writes(w):
        out[f"vw_{_FIELD_OF[r]}"] = 1
    for r in uisa.scalar_reads(w):
        out[f"sr_{_FIELD_OF[r]}"] = 1
    for r in uisa.scalar_writes(w):  # rd = 1 here; the hardware adds "rd != 0"
        out[f"sw_{_FIELD_OF[r]}"] = 1
    return out


@lru_cache(maxsize=16)
def decode_table(lat: Pipeline) -> dict:
    """``{op: {(bsel, cimm): ctl}}``: the decode of every micro-operation, from ``uisa``.

    ``cimm`` is ``mode`` bit 0 (the only mode bit that changes which registers are read; the
    table checks that the others do not). ``ctl`` has the keys of :data:`UCTL`.
    """
    table = {}
    for op in UOp:
        unit = uisa.unit_of(op)
        rows = {}
        for bsel in BSel:
            for mode in range(16):
                w = UWord(op, rd=1, ra=2, rb=3, rc=4, bsel=bsel, mode=mode)
                ctl = _flags(w)
                vw = bool(uisa.vector_writes(w))
                ctl.update(unit=unit, lat=lat.of(op), port_f=int(unit is Unit.FP),
                           port_i=int(unit is not Unit.FP and vw))
                key = (bsel, mode & uisa.MODE_CIMM)
                if key in rows and rows[key] != ctl:
                    raise AssertionError(f"{op.name}: mode bits above bit 0 change the decode")
                rows[key] = ctl
        table[op] = rows
    return table


class UDecode(wiring.Component):
    """Combinational decode of one micro-word (:func:`decode_table` as logic).

    Parameters
    ----------
    lat : Pipeline
        Pipeline latencies (``ctl.lat``).

    Attributes
    ----------
    word : In(UWORD)
    ctl : Out(UCTL)
        ``sw_d`` is already qualified by ``rd != 0`` (``s0`` is never written).
    """

    def __init__(self, lat: Pipeline):
        if not isinstance(lat, Pipeline):
            raise TypeError(f"lat must be a uisa.Pipeline, not {lat!r}")
        self._lat = lat
        super().__init__({"word": In(UWORD), "ctl": Out(UCTL)})

    def elaborate(self, platform):
        m = Module()
        w, c = self.word, self.ctl

        def assign(ctl: dict):
            m.d.comb += c.unit.eq(UnitShape(int(ctl["unit"])))
            m.d.comb += [c.lat.eq(ctl["lat"]), c.port_f.eq(ctl["port_f"]),
                         c.port_i.eq(ctl["port_i"])]
            for f in _FLAGS:
                value = ctl[f] & (w.rd != 0) if f == "sw_d" else ctl[f]
                m.d.comb += getattr(c, f).eq(value)

        with m.Switch(w.op):
            for op, rows in decode_table(self._lat).items():
                with m.Case(uop(op)):
                    by_bsel = {b: (rows[(b, 0)], rows[(b, 1)]) for b in BSel}
                    if len({repr(v) for v in rows.values()}) == 1:
                        assign(rows[(BSel.REG, 0)])
                        continue
                    with m.Switch(w.bsel):
                        for b, (plain, cimm) in by_bsel.items():
                            with m.Case(_BSEL_SHAPE(int(b))):
                                if plain == cimm:
                                    assign(plain)
                                else:
                                    with m.If(w.mode[0]):
                                        assign(cimm)
                                    with m.Else():
                                        assign(plain)
            with m.Default():  # not an operation: nothing read or written, issues alone
                m.d.comb += c.unit.eq(UnitShape.CONTROL)
        return m

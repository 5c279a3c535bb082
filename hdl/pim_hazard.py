"""Scratchpad hazards between PIM instructions, from the ISA's access records.

PIM instructions that read the scratchpad (``WR_GB``, ``WR_BIAS``, ``WR_SBK`` ...) must see the data
of earlier PIM instructions that write it (``RD_MAC``, ``RD_SBK``, ``RD_VEC``), whose reads land
later (as in the perf model). Which instructions read or write which words is
:data:`pimgpt.core.isa.SPEC`'s ``Access`` records, turned into hardware by
:func:`.isa_layout.sp_access`. The tracker keeps one entry per writer instruction in flight: its
word range and its reads not landed yet; a reader is held while its range overlaps an entry's.
"""

from __future__ import annotations

from amaranth.hdl import Cat, Module, Mux, Signal
from amaranth.lib import data, wiring
from amaranth.lib.wiring import In, Out

from pimgpt.core import isa
from pimgpt.core.config import HwConfig

from .isa_layout import InstrWord, opcode, sp_access
from .pim_ops import check_engine_args, ent_bits

__all__ = ["HazardTracker"]


class HazardTracker(wiring.Component):
    """Read-after-write tracking of the scratchpad words PIM instructions touch.

    Attributes
    ----------
    ins : In(InstrWord)
        The instruction offered to the engine.
    accept : In(1)
        It is accepted this cycle (a writer then takes a free entry, :attr:`ent`).
    idle : In(1)
        No instruction is being expanded: the current entry receives no more reads.
    tag_push : In(6)
        Reads created this cycle (by the instruction being expanded).
    done : In(StructLayout)
        ``valid``/``ent``: a read of entry ``ent`` landed.
    block : Out(1)
        ``ins`` must wait: it reads words an in-flight read will write, or it writes and no entry
        is free.
    ent : Out(ent_bits(hw))
        Entry of the writer being expanded (from the cycle it is accepted); one of
        ``asic.pim_read_entries`` (the perf engine holds a writer back as long, ``sim/perf``).
    """

    def __init__(self, hw: HwConfig, *, sp_addr_width: int):
        self._aw = check_engine_args(hw, sp_addr_width)
        self.hw = hw
        eb = ent_bits(hw)
        super().__init__({
            "ins": In(InstrWord), "accept": In(1), "idle": In(1), "tag_push": In(6),
            "done": In(data.StructLayout({"valid": 1, "ent": eb})),
            "block": Out(1), "ent": Out(eb),
        })

    def elaborate(self, platform):
        m = Module()
        w = self._aw + 2
        n_ent = self.hw.asic.pim_read_entries
        ins = self.ins
        r_lo = Signal(w)
        r_len = Signal(w)
        is_reader = Signal()
        is_writer = Signal()
        with m.Switch(ins.op):
            for op in sorted(isa.PIM_OPS):
                rng = sp_access(op, ins.args_of(op), banks=self.hw.dram.banks,
                                channels=self.hw.dram.channels, width=w)
                if rng is None:
                    continue
                lo, length, write = rng
                with m.Case(opcode(op)):
                    m.d.comb += [r_lo.eq(lo), r_len.eq(length),
                                 (is_writer if write else is_reader).eq(1)]
        r_hi = r_lo + r_len

        ent_valid = Signal(n_ent)
        ent_open = Signal(n_ent)  # its instruction is still being expanded
        ent_lo = [Signal(w, name=f"ent_lo{k}") for k in range(n_ent)]
        ent_hi = [Signal(w + 1, name=f"ent_hi{k}") for k in range(n_ent)]
        ent_cnt = [Signal(10, name=f"ent_cnt{k}") for k in range(n_ent)]
        conflict = Cat(*[ent_valid[k] & (r_lo < ent_hi[k]) & (ent_lo[k] < r_hi)
                         for k in range(n_ent)]).any()
        free = ~ent_valid
        free_idx = Signal(ent_bits(self.hw))
        for k in reversed(range(n_ent)):
            with m.If(free[k]):
                m.d.comb += free_idx.eq(k)
        m.d.comb += self.block.eq((is_reader & conflict) | (is_writer & (free == 0)))

        # The entry of the instruction being expanded: a writer accepted now takes a free one
        # (its first op may create a read in the same cycle).
        ent_reg = Signal(ent_bits(self.hw))
        m.d.comb += self.ent.eq(Mux(self.accept & is_writer, free_idx, ent_reg))
        for k in range(n_ent):
            up = Mux(self.ent == k, self.tag_push, 0)
            down = Mux(self.done.valid & (self.done.ent == k), 1, 0)
            m.d.sync += ent_cnt[k].eq(ent_cnt[k] + up - down)
            with m.If(ent_valid[k] & ~ent_open[k] & (ent_cnt[k] == 0) & (up == 0)):
                m.d.sync += ent_valid[k].eq(0)
        with m.If(self.idle):
            m.d.sync += ent_open.eq(0)  # the previous instruction is fully expanded
        with m.If(self.accept & is_writer):
            m.d.sync += ent_reg.eq(free_idx)
            for k in range(n_ent):
                with m.If(free_idx == k):
                    m.d.sync += [ent_valid[k].eq(1), ent_open[k].eq(1), ent_lo[k].eq(r_lo),
                                 ent_hi[k].eq(r_hi)]
        return m

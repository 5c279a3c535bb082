"""``WR_ELEM``: element ``elem`` of region vectors ``vec .. vec+n-1``, written in waves.

The perf engine's expansion (``sim/perf``): per channel, the elements are cut into *waves* in
which each bank appears once. Elements are scanned in order; an element whose bank already has one
in its channel's wave closes that wave: the wave opens every row it needs (one ``OPEN`` op per
distinct row, in first-appearance order, the last one folded into the first write), then writes its
elements one per ``WR`` (a one-lane mask). At the end the partial waves are emitted channel by
channel.
"""

from __future__ import annotations

from amaranth.hdl import Array, Cat, Const, Module, Mux, Signal
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out
from amaranth.utils import ceil_log2

from pimgpt.core.config import HwConfig

from .dram_timing import DramCmd
from .pim_gen import region_address
from .pim_ops import WORD, DataMode, check_engine_args, elem_cmd_layout, engine_op_layout
from .pim_sched import OP_COL, OP_OPEN, chop_layout

__all__ = ["ElemWaveGen"]


class ElemWaveGen(wiring.Component):
    """``WR_ELEM`` op generator (see the module docstring).

    Parameters
    ----------
    hw : HwConfig
    sp_addr_width : int

    Attributes
    ----------
    cmd : In(stream.Signature(elem_cmd_layout()))
    o : Out(stream.Signature(engine_op_layout(hw, aw)))
    busy : Out(1)
    """

    def __init__(self, hw: HwConfig, *, sp_addr_width: int):
        self._aw = check_engine_args(hw, sp_addr_width)
        self.hw = hw
        super().__init__({
            "cmd": In(stream.Signature(elem_cmd_layout())),
            "o": Out(stream.Signature(engine_op_layout(hw, self._aw))),
            "busy": Out(1),
        })

    def elaborate(self, platform):
        m = Module()
        d = self.hw.dram
        C, B = d.channels, d.banks
        lg_re = ceil_log2(d.row_elems)
        c_layout = chop_layout(self.hw)["c"].shape
        v = Signal(elem_cmd_layout())  # the instruction; v.vec advances with the element
        e = Signal(WORD)
        where = region_address(m, self.hw, v.vec, v.elem, v.region_row, v.n_local, v.vec_len)

        # Per channel, the wave being collected: up to B entries (bank, row, col, lane, sp).
        el_layout = data.StructLayout({"bank": max(1, ceil_log2(B)), "row": c_layout["row"].shape,
                                       "col": c_layout["col"].shape, "lane": 4, "sp": self._aw})
        wave = [[Signal(el_layout, name=f"wave{c}_{k}") for k in range(B)] for c in range(C)]
        wcount = [Signal(range(B + 1), name=f"wcount{c}") for c in range(C)]
        wseen = [Signal(B, name=f"wseen{c}") for c in range(C)]
        wch = Signal(range(C + 1))  # channel whose wave is being emitted (C: none left)
        widx = Signal(range(B + 1))
        pending_fa = Signal(B)
        wv = Array(Array(w) for w in wave)[wch]
        wc = Array(wcount)[wch]
        fa, rbanks, last_fa, low_pending = self._wave_rows(m, wv, wc, pending_fa)

        o = self.o.payload
        take = self.o.valid & self.o.ready
        with m.FSM():
            with m.State("IDLE"):
                m.d.comb += self.cmd.ready.eq(1)
                with m.If(self.cmd.valid):
                    m.d.sync += [v.eq(self.cmd.payload), e.eq(0)]
                    m.d.sync += [w.eq(0) for w in wcount + wseen]
                    m.next = "SCAN"
            with m.State("SCAN"):
                m.d.comb += self.busy.eq(1)
                with m.If(e >= v.n):
                    m.d.sync += wch.eq(0)
                    m.next = "FLUSH"
                with m.Else():
                    m.next = "SCAN_EL"
            with m.State("SCAN_EL"):
                m.d.comb += self.busy.eq(1)
                vch, vbank, flat = where["ch"], where["bank"], where["flat"]
                inrow = flat[:lg_re]
                with m.If(Array(wseen)[vch].bit_select(vbank, 1)):
                    m.d.sync += wch.eq(vch)
                    m.next = "WAVE_OPEN_INIT"
                with m.Else():
                    for c in range(C):
                        with m.If(vch == c):
                            for k in range(B):
                                with m.If(wcount[c] == k):
                                    m.d.sync += [wave[c][k].bank.eq(vbank),
                                                 wave[c][k].row.eq(flat >> lg_re),
                                                 wave[c][k].col.eq(inrow[4:]),
                                                 wave[c][k].lane.eq(inrow[:4]),
                                                 wave[c][k].sp.eq(v.sp + e)]
                            m.d.sync += [wcount[c].eq(wcount[c] + 1),
                                         wseen[c].eq(wseen[c] | (Const(1, B) << vbank))]
                    m.d.sync += [e.eq(e + 1), v.vec.eq(v.vec + 1)]
                    m.next = "SCAN"
            with m.State("WAVE_OPEN_INIT"):
                m.d.comb += self.busy.eq(1)
                m.d.sync += [pending_fa.eq(fa & ~(Const(1, B) << last_fa)), widx.eq(0)]
                m.next = "WAVE_OPEN"
            with m.State("WAVE_OPEN"):
                m.d.comb += self.busy.eq(1)
                with m.If(pending_fa == 0):
                    m.next = "WAVE_WR"
                with m.Else():
                    m.d.comb += [
                        self.o.valid.eq(1), o.chm.eq(Const(1, C) << wch),
                        o.dmode.eq(DataMode.NONE), o.op.kind.eq(OP_OPEN), o.op.open.eq(1),
                        o.op.bmask.eq(Array(rbanks)[low_pending]),
                        o.op.c.row.eq(wv[low_pending].row),
                    ]
                    with m.If(take):
                        m.d.sync += pending_fa.eq(pending_fa & ~(Const(1, B) << low_pending))
            with m.State("WAVE_WR"):
                m.d.comb += self.busy.eq(1)
                with m.If(widx >= wc):
                    for c in range(C):
                        with m.If(wch == c):
                            m.d.sync += [wcount[c].eq(0), wseen[c].eq(0)]
                    m.next = "SCAN"
                    with m.If(e >= v.n):
                        m.next = "FLUSH"
                with m.Else():
                    ent = wv[widx]
                    m.d.comb += [
                        self.o.valid.eq(1), o.chm.eq(Const(1, C) << wch),
                        o.dmode.eq(DataMode.BF16), o.op.kind.eq(OP_COL), o.op.open.eq(widx == 0),
                        o.op.bmask.eq(Array(rbanks)[last_fa]), o.op.c.row.eq(wv[last_fa].row),
                        o.op.c.cmd.eq(DramCmd.WR), o.op.c.fpi.eq(ent.bank),
                        o.op.c.col.eq(ent.col), o.op.c.mask.eq(Const(1, 16) << ent.lane),
                        o.sp.eq(ent.sp - ent.lane),
                    ]
                    with m.If(take):
                        m.d.sync += widx.eq(widx + 1)
            with m.State("FLUSH"):
                # Emit the last (partial) wave of every channel, in channel order.
                m.d.comb += self.busy.eq(1)
                with m.If(wch >= C):
                    m.next = "IDLE"
                with m.Elif(Array(wcount)[wch] == 0):
                    m.d.sync += wch.eq(wch + 1)
                with m.Else():
                    m.next = "WAVE_OPEN_INIT"
        return m

    def _wave_rows(self, m, wv, wc, pending_fa):
        """Rows of the wave ``wv`` (``wc`` entries): ``fa[k]`` (entry k's row differs from every
        earlier entry's), ``rbanks[k]`` (banks of entries with entry k's row), the last
        first-appearance entry and the lowest entry still to be opened."""
        B = self.hw.dram.banks
        fa = Signal(B)
        for k in range(B):
            earlier = [wv[j].row == wv[k].row for j in range(k)]
            m.d.comb += fa[k].eq((k < wc) & ~Cat(*earlier).any() if earlier else (k < wc))
        rbanks = [Signal(B, name=f"rbanks{k}") for k in range(B)]
        for k in range(B):
            m.d.comb += rbanks[k].eq(sum(
                (Mux((j < wc) & (wv[j].row == wv[k].row), Const(1, B) << wv[j].bank, 0)
                 for j in range(B)), Const(0, B)) if B > 1 else Mux(wc > 0, 1, 0))
        last_fa = Signal(range(max(2, B)))
        for k in range(B):
            with m.If(fa[k]):
                m.d.comb += last_fa.eq(k)
        low_pending = Signal(range(max(2, B)))
        for k in reversed(range(B)):
            with m.If(pending_fa[k]):
                m.d.comb += low_pending.eq(k)
        return fa, rbanks, last_fa, low_pending

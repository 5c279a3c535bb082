"""The PIM engine's op generators: column runs, region-vector chunks, accumulator transfers.

Each generator is a component with a typed command stream in and ops out, and ``busy`` while it
works; the engine starts one generator per instruction and only when all are idle, so the ops of
consecutive instructions never interleave. They produce what the perf engine's expansion
(``sim/perf``) schedules, one op per cycle:

* :class:`ColumnRunGen`: a run of columns ``[cur, end)`` (flat element addresses) split at column
  boundaries, each row's first column opening the row; the first op is offered in the cycle the
  run is taken (``WR_GB``, ``MAC_*``, ``COPY_*``,
  ``*_SBK``, ``WR_ABK`` directly; region vectors through :class:`RegionGen`); partial columns carry
  a lane mask;
* :class:`RegionGen`: ``RD_VEC``/``WR_VEC``: the region vector's chunks (one per
  ``gb_elems`` elements, :func:`region_address`), each as a run for :class:`ColumnRunGen`;
* :class:`AccGen`: ``RD_MAC``: ``nacc`` x ``RDMAC16`` bursts of 8 accumulators to all selected
  channels; ``WR_BIAS``: ``WRMAC16`` bursts channel by channel (each its own fp32 data).
"""

from __future__ import annotations

from amaranth.hdl import Const, Module, Mux, Signal
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out
from amaranth.utils import ceil_log2

from pimgpt.core.config import HwConfig

from .bank import ACCS_PER_BURST, acc_burst_col
from .dram_timing import DramCmd
from .pim_ops import (
    WORD,
    DataMode,
    TagKind,
    acc_cmd_layout,
    check_engine_args,
    engine_op_layout,
    popcount,
    region_cmd_layout,
    run_layout,
)
from .pim_sched import OP_COL

__all__ = ["ColumnRunGen", "RegionGen", "AccGen", "region_address"]


def region_address(m: Module, hw: HwConfig, vec, x, region_row, n_local, vec_len) -> dict:
    """Where element ``x`` of region vector ``vec`` lives (``docs/dataflow.md``'s region layout).

    Vector ``vec`` is in slot ``vec % S`` (channel ``slot // B``, bank ``slot % B``) at local index
    ``loc = vec // S``; its element ``x`` is in chunk ``tk = x // G`` of ``lt`` elements, at flat
    element ``region_row * RE + tk * n_local * G + loc * lt + (x - tk * G)``.

    Returns
    -------
    dict of Signal
        ``ch``, ``bank``, ``tk``, ``lt`` and ``flat``.
    """
    d = hw.dram
    C, B, G, RE = d.channels, d.banks, d.gb_elems, d.row_elems
    S = C * B
    slot = Signal(range(S))
    loc = Signal(WORD)
    ch = Signal(range(max(2, C)))
    bank = Signal(range(max(2, B)))
    tk = Signal(WORD)
    lt = Signal(WORD)
    flat = Signal(ceil_log2(d.rows * RE) + 10)
    m.d.comb += [slot.eq(vec % S), loc.eq(vec // S), ch.eq(slot // B), bank.eq(slot % B),
                 tk.eq(x // G), lt.eq(Mux(vec_len - tk * G < G, vec_len - tk * G, G)),
                 flat.eq(region_row * RE + tk * n_local * G + loc * lt + (x - tk * G))]
    return {"ch": ch, "bank": bank, "tk": tk, "lt": lt, "flat": flat}


class ColumnRunGen(wiring.Component):
    """Column ops of runs of flat element addresses.

    Attributes
    ----------
    run : In(stream.Signature(run_layout(hw, aw)))
        Runs (taken only when idle).
    o : Out(stream.Signature(engine_op_layout(hw, aw)))
        One op per column: ``cmd`` on lanes ``[cur % 16, ...)`` of column ``cur // 16``.
    busy : Out(1)
    """

    def __init__(self, hw: HwConfig, *, sp_addr_width: int):
        self._aw = check_engine_args(hw, sp_addr_width)
        self.hw = hw
        super().__init__({
            "run": In(stream.Signature(run_layout(hw, self._aw))),
            "o": Out(stream.Signature(engine_op_layout(hw, self._aw))),
            "busy": Out(1),
        })

    def elaborate(self, platform):
        m = Module()
        lg_re = ceil_log2(self.hw.dram.row_elems)
        r = Signal.like(self.run.payload)  # the run in progress (cur/spp/gbc advance)
        newrow = Signal()
        # The run the next op comes from: a new one is taken and its first op offered in the
        # same cycle (no bubble between an instruction and its first command).
        taking = Signal()
        cur_run = Signal.like(r)
        first = Signal()  # the op starts a row
        m.d.comb += [cur_run.eq(Mux(taking, self.run.payload.as_value(), r.as_value())),
                     first.eq(taking | newrow)]
        lo = cur_run.cur[:4]
        cnt = Signal(5)
        m.d.comb += cnt.eq(Mux(cur_run.end - cur_run.cur < 16 - lo, cur_run.end - cur_run.cur,
                               16 - lo))
        lane_mask = Signal(16)
        m.d.comb += lane_mask.eq(((Const(1, 17) << cnt) - 1) << lo)
        o = self.o.payload
        take = self.o.valid & self.o.ready
        nxt = cur_run.cur + cnt
        with m.FSM():
            with m.State("IDLE"):
                m.d.comb += [self.run.ready.eq(1), taking.eq(self.run.valid)]
                with m.If(self.run.valid):
                    m.d.sync += [r.eq(self.run.payload), newrow.eq(1)]
                    # (an empty run, or one of a single op taken now, ends here)
                    with m.If((cur_run.cur < cur_run.end) & ~(take & (nxt >= cur_run.end))):
                        m.next = "RUN"
            with m.State("RUN"):
                m.d.comb += self.busy.eq(1)
                with m.If((r.cur >= r.end) | (take & (nxt >= r.end))):
                    m.next = "IDLE"
        with m.If((taking | self.busy) & (cur_run.cur < cur_run.end)):
            m.d.comb += [
                self.o.valid.eq(1), o.chm.eq(cur_run.chm), o.dmode.eq(cur_run.dmode),
                o.op.kind.eq(OP_COL), o.op.open.eq(first & ~cur_run.rowless),
                o.op.bmask.eq(cur_run.bmask), o.op.c.cmd.eq(cur_run.cmd),
                o.op.c.fpi.eq(cur_run.fpi), o.op.c.row.eq(cur_run.cur >> lg_re),
                o.op.c.col.eq(cur_run.cur[4:lg_re]), o.op.c.gbcol.eq(cur_run.gbc),
                o.op.c.mask.eq(lane_mask), o.op.c.acc.eq(cur_run.acc),
                o.sp.eq(cur_run.spp - lo), o.tag.eq(cur_run.reading),
                o.tagkind.eq(TagKind.RD), o.tagbase.eq(cur_run.spp - lo),
                o.tagmask.eq(lane_mask),
            ]
            with m.If(take):
                m.d.sync += [r.cur.eq(nxt), r.spp.eq(cur_run.spp + cnt),
                             r.gbc.eq(cur_run.gbc + 1), newrow.eq(nxt[:lg_re] == 0)]
        return m


class RegionGen(wiring.Component):
    """``RD_VEC``/``WR_VEC``: the chunks of a region vector as runs.

    Attributes
    ----------
    cmd : In(stream.Signature(region_cmd_layout()))
    run : Out(stream.Signature(run_layout(hw, aw)))
        One run per chunk, to one bank of one channel.
    busy : Out(1)
    """

    def __init__(self, hw: HwConfig, *, sp_addr_width: int):
        self._aw = check_engine_args(hw, sp_addr_width)
        self.hw = hw
        super().__init__({
            "cmd": In(stream.Signature(region_cmd_layout())),
            "run": Out(stream.Signature(run_layout(self.hw, self._aw))),
            "busy": Out(1),
        })

    def elaborate(self, platform):
        m = Module()
        d = self.hw.dram
        C, B = d.channels, d.banks
        v = Signal(region_cmd_layout())
        e = Signal(WORD)  # next element of the vector
        where = region_address(m, self.hw, v.vec, e, v.region_row, v.n_local, v.vec_len)
        stop = Signal(WORD + 1)  # end of the chunk: min(n, tk * G + lt)
        m.d.comb += stop.eq(Mux(v.n < where["tk"] * d.gb_elems + where["lt"], v.n,
                                where["tk"] * d.gb_elems + where["lt"]))
        r = self.run.payload
        with m.FSM():
            with m.State("IDLE"):
                m.d.comb += self.cmd.ready.eq(1)
                with m.If(self.cmd.valid):
                    m.d.sync += [v.eq(self.cmd.payload), e.eq(0)]
                    m.next = "CHUNK"
            with m.State("CHUNK"):
                m.d.comb += self.busy.eq(1)
                with m.If(e >= v.n):
                    # Done once the last chunk's run has been emitted (the column generator
                    # is ready again): the engine then takes the next instruction.
                    with m.If(self.run.ready):
                        m.next = "IDLE"
                with m.Else():
                    m.d.comb += [
                        self.run.valid.eq(1), r.chm.eq(Const(1, C) << where["ch"]),
                        r.fpi.eq(where["bank"]), r.bmask.eq(Const(1, B) << where["bank"]),
                        r.cur.eq(where["flat"]), r.end.eq(where["flat"] + (stop - e)),
                        r.spp.eq(v.sp + e),
                        r.cmd.eq(Mux(v.read, DramCmd.RD, DramCmd.WR)),
                        r.reading.eq(v.read), r.dmode.eq(Mux(v.read, DataMode.NONE,
                                                             DataMode.BF16)),
                    ]
                    with m.If(self.run.ready):
                        m.d.sync += e.eq(stop)
        return m


class AccGen(wiring.Component):
    """``RD_MAC`` / ``WR_BIAS``: accumulator bursts.

    Per channel, accumulator-major: for each of the ``nacc`` accumulators, one burst per group of
    8 banks (:func:`pimgpt.hdl.bank.acc_transfer_bursts`, the DRAM standard's count); ``RDMAC16``
    to all selected channels at once, ``WRMAC16`` channel by channel (each its own data).
    Accumulator ``acc + a`` of the ``j``-th selected bank is scratchpad word ``sp + a * S + j``
    (``S`` selected banks, ``docs/isa.md``), so a burst's words are contiguous.

    Attributes
    ----------
    cmd : In(stream.Signature(acc_cmd_layout(hw)))
    o : Out(stream.Signature(engine_op_layout(hw, aw)))
    busy : Out(1)
    """

    def __init__(self, hw: HwConfig, *, sp_addr_width: int):
        self._aw = check_engine_args(hw, sp_addr_width)
        self.hw = hw
        super().__init__({
            "cmd": In(stream.Signature(acc_cmd_layout(hw))),
            "o": Out(stream.Signature(engine_op_layout(hw, self._aw))),
            "busy": Out(1),
        })

    def elaborate(self, platform):
        m = Module()
        d = self.hw.dram
        C, B = d.channels, d.banks
        groups = -(-B // ACCS_PER_BURST)
        k = Signal(acc_cmd_layout(self.hw))
        a = Signal(WORD)  # accumulator offset
        g = Signal(range(groups))  # group of 8 banks
        a_sp = Signal(self._aw)  # a * S: its scratchpad offset
        cidx = Signal(range(C + 1))  # WR_BIAS: channel being written
        stride = Signal(self._aw)  # S
        m.d.comb += stride.eq(popcount(k.chm, C) * B)
        words = Signal(range(ACCS_PER_BURST + 1))  # banks of group g
        m.d.comb += words.eq(Mux(B - g * ACCS_PER_BURST < ACCS_PER_BURST,
                                 B - g * ACCS_PER_BURST, ACCS_PER_BURST))
        wmask = Signal(ACCS_PER_BURST)
        m.d.comb += wmask.eq((Const(1, ACCS_PER_BURST + 1) << words) - 1)
        last = (g == groups - 1) & (a == k.nacc - 1)
        o = self.o.payload
        take = self.o.valid & self.o.ready
        common = [self.o.valid.eq(1), o.op.kind.eq(OP_COL), o.op.c.mask.eq(wmask),
                  o.op.c.col.eq(acc_burst_col(self.hw, (k.acc + a)[:WORD], g))]

        def advance():
            """Next group of banks, then the next accumulator; after the last, from the start
            again (for the next channel of WR_BIAS)."""
            with m.If(g != groups - 1):
                m.d.sync += g.eq(g + 1)
            with m.Else():
                m.d.sync += g.eq(0)
                with m.If(~last):
                    m.d.sync += [a.eq(a + 1), a_sp.eq(a_sp + stride)]
                with m.Else():
                    m.d.sync += [a.eq(0), a_sp.eq(0)]

        with m.FSM():
            with m.State("IDLE"):
                m.d.comb += self.cmd.ready.eq(1)
                with m.If(self.cmd.valid):
                    m.d.sync += [k.eq(self.cmd.payload), a.eq(0), g.eq(0), a_sp.eq(0),
                                 cidx.eq(0)]
                    with m.If(self.cmd.payload.write):
                        m.next = "WRBIAS"
                    with m.Else():
                        m.next = "RDMAC"
            with m.State("RDMAC"):
                m.d.comb += self.busy.eq(1)
                m.d.comb += common + [
                    o.chm.eq(k.chm), o.dmode.eq(DataMode.NONE),
                    o.op.c.cmd.eq(DramCmd.RDMAC16), o.tag.eq(1), o.tagkind.eq(TagKind.ACC),
                    o.tagbase.eq(k.sp + a_sp + g * ACCS_PER_BURST), o.tagmask.eq(wmask),
                ]
                with m.If(take):
                    advance()
                    with m.If(last):
                        m.next = "IDLE"
            with m.State("WRBIAS"):
                # One channel at a time (different data).
                m.d.comb += self.busy.eq(1)
                with m.If(cidx >= C):
                    m.next = "IDLE"
                with m.Elif(~k.chm.bit_select(cidx, 1)):
                    m.d.sync += cidx.eq(cidx + 1)
                with m.Else():
                    rk = sum((Mux(j < cidx, k.chm[j], 0) for j in range(C)), Const(0, 6))
                    m.d.comb += common + [
                        o.chm.eq(Const(1, C) << cidx), o.dmode.eq(DataMode.FP32),
                        o.op.c.cmd.eq(DramCmd.WRMAC16),
                        o.sp.eq(k.sp + a_sp + rk * B + g * ACCS_PER_BURST),
                    ]
                    with m.If(take):
                        advance()
                        with m.If(last):
                            m.d.sync += cidx.eq(cidx + 1)
        return m

"""The ASIC's per-channel DRAM command scheduler: channel ops in, timed DRAM commands out.

The PIM engine (:mod:`.pim_engine`) turns instructions into *channel ops* (:func:`chop_layout`):

* ``COL``: one column command (``RD``, ``WR``, ``MAC16``, ``WRGB``, ``RDMAC16`` ...). With ``open``
  set, the rows ``row`` of the banks in ``bmask`` are opened first;
* ``OPEN``: only open ``row`` in the banks of ``bmask``;
* ``mark`` (on the first op of each instruction for this channel): refresh, if due, first.

The scheduler executes ops strictly in order and issues each command at the earliest cycle the
DRAM standard allows (:class:`.dram_timing.TimingTables`: ready counters per channel-tree node,
the activation window, one command per cycle). Row opening follows the perf engine's policy so
that both produce the same command stream: banks that need the row and hold another are closed
with ``PREA`` when they are all the open banks (and more than one), else per bank group with
``PRE4`` (a whole group) or ``PRE``; then the row is opened with ``ACT16`` when every bank needs
it, else ``ACT4`` per whole bank group or ``ACT``. The plan is recomputed every cycle from the
row state, which gives the same commands as planning up front. Refresh: ``REFab`` (after ``PREA``
if a row is open) every ``nREFI`` cycles, issued when due at an instruction boundary or while the
scheduler is idle. Modes (``gddr6-aim`` with ``dram.mode_switch``): the channel's mode register
changes only by ``MODREG``/``MODARR``, inserted exactly when the next command needs the other mode
(the standard's ``mode_of``; a refresh in register mode first returns to array mode), as the perf
engine does; the switch rows (``nMODCH`` after a switch, register data off the pins or landed
before one) are ordinary rows of the timing tables.
"""

from __future__ import annotations

from amaranth.hdl import Cat, Const, Module, Mux, Signal
from amaranth.lib import data, stream, wiring
from amaranth.lib.fifo import SyncFIFO
from amaranth.lib.wiring import In, Out

from pimgpt.core import dram as S
from pimgpt.core.config import HwConfig

from .bank import dram_cmd_layout
from .dram_timing import BANK, BANKGROUP, CHANNEL, DramCmd, TimingTables
from .fp import check_int

__all__ = ["ChannelScheduler", "chop_layout", "OP_COL", "OP_OPEN"]

OP_COL, OP_OPEN = 0, 1


def chop_layout(hw: HwConfig) -> data.StructLayout:
    """A channel op: ``kind`` (COL/OPEN), ``mark``, ``open``, ``bmask`` and the command ``c``."""
    return data.StructLayout({
        "kind": 1, "mark": 1, "open": 1, "bmask": hw.dram.banks, "c": dram_cmd_layout(hw),
    })


class ChannelScheduler(wiring.Component):
    """In-order DRAM command scheduler of one channel.

    Parameters
    ----------
    hw : HwConfig
        Hardware configuration (geometry and the DRAM standard's timing).
    depth : int
        Op queue depth (2..1024).

    Attributes
    ----------
    op : In(stream.Signature(chop_layout(hw)))
        Channel ops.
    bus : Out(StructLayout)
        The command bus: ``valid`` and ``p`` (:func:`pimgpt.hdl.bank.dram_cmd_layout`).
    start : In(1)
        Restart the refresh interval (pulse when a program starts).
    run : In(1)
        A program is running: refresh is issued only then (not while the host loads).
    idle : Out(1)
        No op queued or in progress and every issued command's effect complete
        (the standard's ``done_after``).
    """

    def __init__(self, hw: HwConfig, *, depth: int = 32):
        if not isinstance(hw, HwConfig):
            raise TypeError(f"hw must be a HwConfig, not {hw!r}")
        self.hw = hw
        self.tables = TimingTables(hw)
        self._depth = check_int("depth", depth, 2, 1024)
        super().__init__({
            "op": In(stream.Signature(chop_layout(hw))),
            "bus": Out(data.StructLayout({"valid": 1, "p": dram_cmd_layout(hw)})),
            "start": In(1),
            "run": In(1),
            "idle": Out(1),
        })

    def elaborate(self, platform):
        m = Module()
        hw = self.hw
        layout = chop_layout(hw)
        m.submodules.fifo = fifo = SyncFIFO(width=layout.size, depth=self._depth)
        # An op arriving at an empty queue is the head at once (bypass); it is queued only if
        # it is not consumed in that cycle.
        direct = ~fifo.r_rdy & self.op.valid
        head = data.View(layout, Mux(fifo.r_rdy, fifo.r_data, self.op.payload.as_value()))
        have = fifo.r_rdy | self.op.valid
        pop = Signal()
        m.d.comb += [fifo.w_data.eq(self.op.payload.as_value()),
                     fifo.w_en.eq(self.op.valid & ~(direct & pop)),
                     self.op.ready.eq(fifo.w_rdy), fifo.r_en.eq(pop & fifo.r_rdy)]

        # Row state.
        nb = hw.dram.banks
        is_open = Signal(nb)
        open_row = [Signal(len(head.c.row), name=f"open_row{b}") for b in range(nb)]
        # Refresh: the interval counter and the PREA/MODARR ... REFab sequence in progress.
        nrefi = hw.timing["nREFI"]
        ref_w = max(nrefi.bit_length() + 2, 8)
        to_ref = Signal(range(-(1 << ref_w), 1 << ref_w), init=nrefi)  # next_ref - now
        refreshing = Signal()
        m.d.sync += to_ref.eq(to_ref - 1)
        do_refresh = Signal()
        # Refresh when due at an instruction boundary (mark) or while idle; not due, a mark costs
        # nothing.
        m.d.comb += do_refresh.eq(refreshing | (self.run & (to_ref <= 0) &
                                                ((have & head.mark) | ~have)))

        want, want_valid, want_pops, skip_op = self._wanted(m, head, have, is_open, open_row,
                                                            do_refresh)
        cand, cand_valid, cand_pops = self._with_mode(m, want, want_valid, want_pops)
        legal = self._legal(m, cand)
        issue = Signal()
        m.d.comb += [issue.eq(cand_valid & legal),
                     self.bus.valid.eq(issue), self.bus.p.eq(cand)]
        self._row_state(m, issue, cand, is_open, open_row)

        # Refresh sequence: everything issued for it up to REFab.
        with m.If(issue & do_refresh & (cand.cmd != DramCmd.REFab)):
            m.d.sync += refreshing.eq(1)
        with m.If(issue & (cand.cmd == DramCmd.REFab)):
            m.d.sync += [refreshing.eq(0), to_ref.eq(to_ref - 1 + nrefi)]
        with m.If(self.start):
            m.d.sync += to_ref.eq(nrefi)

        done_cnt = self._done(m, issue, cand)
        m.d.comb += pop.eq((issue & cand_pops & ~do_refresh) | skip_op)
        m.d.comb += self.idle.eq(~have & (done_cnt == 0) & ~issue)
        return m

    def _wanted(self, m, head, have, is_open, open_row, do_refresh):
        """The command the head op (or a due refresh) needs next, before any mode switch: the
        perf engine's row policy, recomputed every cycle from the row state.

        Returns ``(want, valid, pops, skip_op)``: ``pops`` when issuing it completes the head op;
        ``skip_op`` when the head is an OPEN op with nothing left to do (consumed without a
        command)."""
        hw = self.hw
        nb, ng = hw.dram.banks, hw.dram.bank_groups
        bpg = nb // ng
        wants_open = have & ((head.kind == OP_OPEN) | head.open)
        row_hit = Cat(*[is_open[b] & (open_row[b] == head.c.row) for b in range(nb)])
        need = Signal(nb)
        m.d.comb += need.eq(Mux(wants_open, head.bmask & ~row_hit, 0))
        close = Signal(nb)
        m.d.comb += close.eq(need & is_open)
        # PREA when more than one bank must close and no other bank is open.
        use_prea = ((close & (close - 1)) != 0) & ((is_open & ~close) == 0)
        low_close = Signal(range(max(2, nb)))
        low_need = Signal(range(max(2, nb)))
        for b in reversed(range(nb)):
            with m.If(close[b]):
                m.d.comb += low_close.eq(b)
            with m.If(need[b]):
                m.d.comb += low_need.eq(b)

        def group_bits(sig, g):
            return sig[g * bpg:(g + 1) * bpg]

        g_close = Signal(range(max(2, ng)))
        g_need = Signal(range(max(2, ng)))
        m.d.comb += [g_close.eq(low_close // bpg), g_need.eq(low_need // bpg)]
        close_whole = Signal()
        need_whole = Signal()
        with m.Switch(g_close):
            for g in range(ng):
                with m.Case(g):
                    cb, ob = group_bits(close, g), group_bits(is_open, g)
                    m.d.comb += close_whole.eq(((cb & (cb - 1)) != 0) & ((ob & ~cb) == 0))
        with m.Switch(g_need):
            for g in range(ng):
                with m.Case(g):
                    m.d.comb += need_whole.eq(group_bits(need, g) == (1 << bpg) - 1)

        want = Signal(dram_cmd_layout(hw))
        valid = Signal()
        pops = Signal()
        with m.If(do_refresh):
            m.d.comb += valid.eq(1)
            with m.If(is_open != 0):
                m.d.comb += want.cmd.eq(DramCmd.PREA)
            with m.Else():
                m.d.comb += want.cmd.eq(DramCmd.REFab)
        with m.Elif(have & (close != 0)):
            m.d.comb += valid.eq(1)
            with m.If(use_prea):
                m.d.comb += want.cmd.eq(DramCmd.PREA)
            with m.Elif(close_whole):
                m.d.comb += [want.cmd.eq(DramCmd.PRE4), want.fpi.eq(g_close)]
            with m.Else():
                m.d.comb += [want.cmd.eq(DramCmd.PRE), want.fpi.eq(low_close)]
        with m.Elif(have & (need != 0)):
            m.d.comb += [valid.eq(1), want.row.eq(head.c.row)]
            with m.If(need == (1 << nb) - 1):
                m.d.comb += want.cmd.eq(DramCmd.ACT16)
            with m.Elif(need_whole):
                m.d.comb += [want.cmd.eq(DramCmd.ACT4), want.fpi.eq(g_need)]
            with m.Else():
                m.d.comb += [want.cmd.eq(DramCmd.ACT), want.fpi.eq(low_need)]
        with m.Elif(have & (head.kind == OP_COL)):
            m.d.comb += [valid.eq(1), want.eq(head.c), pops.eq(1)]
        skip_op = Signal()
        m.d.comb += skip_op.eq(~do_refresh & have & (head.kind == OP_OPEN) & (need == 0))
        return want, valid, pops, skip_op

    def _with_mode(self, m, want, want_valid, want_pops):
        """The command to issue: ``want``, or first the switch into the mode it needs.

        The channel's mode (array after reset) changes only by ``MODREG``/``MODARR``, inserted
        lazily: exactly when the wanted command needs the other mode (the standard's
        ``mode_of``), as the perf engine does; a refresh in register mode first returns to array
        mode. Without modes (``dram.mode_switch: false`` or a standard without them) ``want`` is
        issued as is."""
        std = self.tables.std
        if not std.modes:
            return want, want_valid, want_pops
        mode = Signal(2, init=S.ARRAY_MODE)
        need_mode = Signal(2)
        with m.Switch(want.cmd):
            for cmd in DramCmd:
                if std.mode_of[cmd.value] != S.ANY_MODE:
                    with m.Case(cmd):
                        m.d.comb += need_mode.eq(std.mode_of[cmd.value])
        switch = (need_mode != S.ANY_MODE) & (need_mode != mode)
        cand = Signal(dram_cmd_layout(self.hw))
        pops = Signal()
        with m.If(switch):
            to_reg = DramCmd(std.switch_to[S.REGISTER_MODE])
            to_arr = DramCmd(std.switch_to[S.ARRAY_MODE])
            m.d.comb += cand.cmd.eq(Mux(need_mode == S.REGISTER_MODE, to_reg, to_arr))
        with m.Else():
            m.d.comb += [cand.eq(want), pops.eq(want_pops)]
        with m.If(self.bus.valid):
            for target, code in enumerate(std.switch_to):
                if code >= 0:
                    with m.If(cand.cmd == DramCmd(code)):
                        m.d.sync += mode.eq(target)
        return cand, want_valid, pops

    def _legal(self, m, cand):
        """Whether ``cand`` may issue now: the ready counters of the channel-tree nodes above it
        and the activation window (both updated here on issue)."""
        t = self.tables
        width = t.max_latency().bit_length() + 1
        cnt = {}
        for ctr in t.counters():
            cnt[(ctr.level, ctr.index, ctr.cmd)] = Signal(
                width, name=f"rdy_{DramCmd(ctr.cmd).name}_{'bgc'[ctr.level]}{ctr.index}")
        legal = Signal()
        with m.Switch(cand.cmd):
            for cmd in DramCmd:
                f = cmd.value
                with m.Case(cmd):
                    per_fpi = []
                    for fpi in range(t.fpi_count(f)):
                        zero = [cnt[(e, t.ancestor(f, fpi, e), f)] == 0 for e in t.checks[f]]
                        per_fpi.append(Cat(*zero).all() if zero else Const(1, 1))
                    ok = per_fpi[0]
                    for fpi, p in enumerate(per_fpi[1:], 1):
                        ok = Mux(cand.fpi == fpi, p, ok)
                    m.d.comb += legal.eq(ok)
        wcnt = []
        if t.window:
            w_lat, w_size, w_weight = t.window
            wcnt = [Signal(width, name=f"faw{i}") for i in range(w_size)]
            for cmd in DramCmd:
                k = w_weight[cmd.value]
                if k:
                    need_idx = w_size - k  # the (size-k+1)-th most recent entry
                    with m.If(cand.cmd == cmd):
                        with m.If(wcnt[need_idx] != 0):
                            m.d.comb += legal.eq(0)
        self._update_counters(m, cand, cnt, wcnt, width)
        return legal

    def _update_counters(self, m, cand, cnt, wcnt, width):
        """On issue (``bus.valid``), raise the counters the command constrains; every cycle,
        count down."""
        t = self.tables
        issue = self.bus.valid
        for (level, idx, f), sig in cnt.items():
            dec = Mux(sig != 0, sig - 1, 0)
            raise_to = Signal(width, name=f"{sig.name}_raise")
            with m.Switch(cand.cmd):
                for cmd in DramCmd:
                    p = cmd.value
                    lats = [t.raise_by(p, fpi, _Ctr(level, idx, f)) for fpi in
                            range(t.fpi_count(p))]
                    if not any(lats):
                        continue
                    with m.Case(cmd):
                        if len(set(lats)) == 1:
                            m.d.comb += raise_to.eq(max(lats[0] - 1, 0))
                        else:
                            with m.Switch(cand.fpi):
                                for fpi, lat in enumerate(lats):
                                    with m.Case(fpi):
                                        m.d.comb += raise_to.eq(max(lat - 1, 0))
            m.d.sync += sig.eq(Mux(issue & (raise_to > dec), raise_to, dec))
        if wcnt:
            w_lat, w_size, w_weight = t.window
            decs = [Mux(w != 0, w - 1, 0) for w in wcnt]
            m.d.sync += [w.eq(d) for w, d in zip(wcnt, decs, strict=True)]
            for cmd in DramCmd:
                k = w_weight[cmd.value]
                if k:
                    with m.If(issue & (cand.cmd == cmd)):
                        for i in range(w_size):
                            m.d.sync += wcnt[i].eq(w_lat - 1 if i < k else decs[i - k])

    def _row_state(self, m, issue, cand, is_open, open_row):
        """Open rows after ACT*/PRE* (the bank, bank group or channel of the footprint)."""
        t = self.tables
        nb = self.hw.dram.banks
        bpg = nb // self.hw.dram.bank_groups
        fp = Signal(2)
        with m.Switch(cand.cmd):
            for cmd in DramCmd:
                with m.Case(cmd):
                    m.d.comb += fp.eq(t.footprint(cmd.value))
        acts = Cat(*[cand.cmd == DramCmd[c] for c in S.ACTS]).any()
        pres = Cat(*[cand.cmd == DramCmd[c] for c in S.PRES]).any()
        for b in range(nb):
            hit = ((fp == BANK) & (cand.fpi == b)) | ((fp == BANKGROUP) & (cand.fpi == b // bpg)) \
                | (fp == CHANNEL)
            with m.If(issue & hit):
                with m.If(acts):
                    m.d.sync += [is_open[b].eq(1), open_row[b].eq(cand.row)]
                with m.If(pres):
                    m.d.sync += is_open[b].eq(0)

    def _done(self, m, issue, cand):
        """Cycles until every issued command's effect is complete (the standard's done-after).

        Refresh is no instruction's work, and a mode switch is always followed by the command
        that needed it, which completes later: neither counts."""
        t = self.tables
        width = t.max_latency().bit_length() + 1
        done_cnt = Signal(width)
        done_raise = Signal(width)
        skip = {DramCmd.REFab} | {DramCmd[c] for c in S.MODE_SWITCHES}
        with m.Switch(cand.cmd):
            for cmd in DramCmd:
                if cmd not in skip and t.done_after[cmd.value] > 1:
                    with m.Case(cmd):
                        m.d.comb += done_raise.eq(t.done_after[cmd.value] - 1)
        dec = Mux(done_cnt != 0, done_cnt - 1, 0)
        m.d.sync += done_cnt.eq(Mux(issue & (done_raise > dec), done_raise, dec))
        return done_cnt


class _Ctr:
    """Counter key with the attributes :meth:`TimingTables.raise_by` reads."""

    __slots__ = ("level", "index", "cmd")

    def __init__(self, level, index, cmd):
        self.level, self.index, self.cmd = level, index, cmd

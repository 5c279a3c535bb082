"""The ASIC: the top that joins the ASIC's blocks (and the clock ratio of its vector unit).

The front end (:mod:`.frontend`) fetches and dispatches on two sides: PIM instructions to the PIM
engine (:mod:`.pim_engine`), ASIC instructions to the vector unit (:mod:`.vector_unit`); the two
sides run concurrently between ``SYNC``\\ s, each in order, as ``docs/isa.md`` allows.

:class:`Asic` wires front end, vector unit, PIM engine, one :class:`.ChannelScheduler` per channel
and the :class:`.Scratchpad`; its outward ports are the channels' command buses and read-data
returns, and the host's side doors (program memory, scratchpad words, output tokens, logit tap).
"""

from __future__ import annotations

from amaranth.hdl import Cat, EnableInserter, Module, Mux, Signal
from amaranth.lib import data, wiring
from amaranth.lib.fifo import SyncFIFO
from amaranth.lib.wiring import In, Out
from amaranth.utils import ceil_log2, exact_log2

from pimgpt.core.config import ConfigError, HwConfig
from pimgpt.core.isa import Op

from .bank import dram_cmd_layout
from .fp import check_int
from .frontend import Frontend
from .isa_layout import INSTR_BITS, InstrWord, opcode
from .pim_engine import PimEngine, return_signature
from .pim_sched import ChannelScheduler
from .scratchpad import Scratchpad, sp_read_signature, sp_write_signature
from .vector_unit import VectorUnit

__all__ = ["Frontend", "Asic", "asic_clock_ratio"]


def asic_clock_ratio(hw: HwConfig) -> int:
    """DRAM clocks (tCK) per ASIC clock: ``1 / (asic.clock_ghz * dram.tck_ns)``, an integer.

    The RTL's time base is tCK; the vector unit advances on every ``ratio``-th cycle.
    """
    ratio = 1.0 / (hw.asic.clock_ghz * hw.dram.tck_ns)
    if ratio < 1 - 1e-9 or abs(ratio - round(ratio)) > 1e-6:
        raise ConfigError(f"{hw.name}: asic.clock_ghz {hw.asic.clock_ghz} must be the DRAM clock "
                         f"(1/tck_ns = {1 / hw.dram.tck_ns:g} GHz) divided by an integer")
    return int(round(ratio))


class Asic(wiring.Component):
    """The PIM-GPT ASIC.

    Parameters
    ----------
    hw : HwConfig
        Hardware configuration (channels, banks, timing, ``asic.scratchpad_words``).
    prog_depth, out_depth : int
        Program and output-token memory sizes.
    cap_depth : int
        Words of the logit-capture memory (every word ``ARGMAX``/``ARGMAXC`` reads is appended),
        16..2**20.
    queue_depth : int
        Op queue depth of each channel scheduler.
    iq_depth, vq_depth : int
        Depths of the PIM and vector instruction queues behind the front end.

    Attributes
    ----------
    bus : list of Out
        Command bus of channel ``c`` (``bus0`` ...): ``valid`` and the command payload.
    ret : list of In(return_signature(hw))
        Read data from channel ``c``.
    host_prog : In
        Program memory write (``en``, ``addr``, ``data``).
    host_sp_rd, host_sp_wr : In(sp_read_signature), In(sp_write_signature)
        Scratchpad word ports (use only while stopped).
    host_out_addr/data, host_cap_addr/data : In, Out
        Read ports of the output tokens and the logit capture (data one cycle after the address).
    start : In(1)
        Start the program.
    running, done, error, n_out, n_cap, cycles, pc : Out
        Status; ``cycles`` counts cycles from ``start`` to the end of the program.
    """

    #: The vector unit's class (a subclass with stand-in lanes counts the area by parts:
    #: ``pimgpt.apps.bench_rtl_system``)
    VECTOR_UNIT = VectorUnit

    def __init__(self, hw: HwConfig, *, prog_depth: int = 8192, out_depth: int = 256,
                 cap_depth: int = 8192, queue_depth: int = 32, iq_depth: int = 64,
                 vq_depth: int = 32):
        if not isinstance(hw, HwConfig):
            raise TypeError(f"hw must be a HwConfig, not {hw!r}")
        self.hw = hw
        self.prog_depth = check_int("prog_depth", prog_depth, 16, 1 << 20)
        if prog_depth & (prog_depth - 1):
            raise ValueError(f"prog_depth must be a power of two, not {prog_depth!r}")
        self.out_depth = check_int("out_depth", out_depth, 16, 1 << 16)
        self.cap_depth = check_int("cap_depth", cap_depth, 16, 1 << 20)
        self.queue_depth = check_int("queue_depth", queue_depth, 2, 1024)
        self.iq_depth = check_int("iq_depth", iq_depth, 2, 1024)
        self.vq_depth = check_int("vq_depth", vq_depth, 2, 1024)
        asic_clock_ratio(hw)  # validates the clocks
        words = hw.asic.scratchpad_words
        self.sp_aw = max(4, ceil_log2(words))
        members = {}
        for c in range(hw.dram.channels):
            members[f"bus{c}"] = Out(data.StructLayout({"valid": 1, "p": dram_cmd_layout(hw)}))
            members[f"ret{c}"] = In(return_signature(hw))
        cw = ceil_log2(self.cap_depth)
        members.update({
            "host_prog": In(data.StructLayout({"en": 1, "addr": ceil_log2(prog_depth),
                                               "data": INSTR_BITS})),
            "host_sp_rd": In(sp_read_signature(self.sp_aw)),
            "host_sp_wr": In(sp_write_signature(self.sp_aw)),
            "host_out_addr": In(ceil_log2(out_depth)),
            "host_out_data": Out(32),
            "host_cap_addr": In(cw),
            "host_cap_data": Out(32),
            "start": In(1),
            "running": Out(1),
            "done": Out(1),
            "error": Out(1),
            "n_out": Out(ceil_log2(out_depth) + 1),
            "n_cap": Out(cw + 1),
            "cycles": Out(48),
            "pc": Out(ceil_log2(prog_depth)),
            "advance": Out(1),
            "apc": Out(ceil_log2(prog_depth)),
            "a_advance": Out(1),
        })
        super().__init__(members)

    def elaborate(self, platform):
        m = Module()
        hw = self.hw
        C = hw.dram.channels
        m.submodules.fe = fe = Frontend(prog_depth=self.prog_depth, out_depth=self.out_depth)
        N = hw.asic.vector_units
        vus = [self.VECTOR_UNIT.from_hw(hw, self.sp_aw) for _ in range(N)]
        vu = vus[0]
        W = vu.lanes
        # The vector units run at the ASIC clock: one step every `ratio` DRAM clocks (tCK).
        ratio = asic_clock_ratio(hw)
        ce = Signal()
        if ratio > 1:
            phase = Signal(range(ratio))
            m.d.sync += phase.eq(Mux(phase == ratio - 1, 0, phase + 1))
            m.d.comb += ce.eq(phase == 0)
        else:
            m.d.comb += ce.eq(1)
        for u, v in enumerate(vus):
            m.submodules[f"vu{u}" if u else "vu"] = EnableInserter(ce)(v) if ratio > 1 else v
        m.submodules.pim = pim = PimEngine(hw, sp_addr_width=self.sp_aw)
        # Banks: one DRAM column (PIM engine) or one vector register (each vector unit) per
        # cycle, each client on ports of its own.
        m.submodules.sp = sp = Scratchpad(hw.asic.scratchpad_words, lanes=max(16, W),
                                          word_read_ports=1, word_write_ports=1,
                                          wide_ports=1 + N, wide_widths=(16,) + (W,) * N)
        scheds = []
        for c in range(C):
            s = ChannelScheduler(hw, depth=self.queue_depth)
            m.submodules[f"sched{c}"] = s
            scheds.append(s)
            wiring.connect(m, pim.ch[c], s.op)
            m.d.comb += [getattr(self, f"bus{c}").eq(s.bus), s.start.eq(self.start),
                         s.run.eq(self.running)]
            wiring.connect(m, wiring.flipped(getattr(self, f"ret{c}")), pim.ret[c])

        # Instruction queues decouple the two sides: the front end keeps dispatching PIM
        # instructions while the vector unit works and vice versa (as the perf model assumes).
        m.submodules.pim_q = pim_q = SyncFIFO(width=INSTR_BITS, depth=self.iq_depth)
        m.submodules.vu_q = vu_q = SyncFIFO(width=INSTR_BITS, depth=self.vq_depth)
        # An instruction reaching an empty PIM queue goes straight to the engine if it takes it.
        pim_direct = ~pim_q.r_rdy & fe.pim.valid
        m.d.comb += [
            pim_q.w_data.eq(fe.pim.payload.as_value()),
            pim_q.w_en.eq(fe.pim.valid & ~(pim_direct & pim.instr.ready)),
            fe.pim.ready.eq(pim_q.w_rdy),
            pim.instr.payload.eq(Mux(pim_q.r_rdy, pim_q.r_data, fe.pim.payload.as_value())),
            pim.instr.valid.eq(pim_q.r_rdy | fe.pim.valid),
            pim_q.r_en.eq(pim.instr.ready & pim_q.r_rdy),
        ]
        # Handshakes and strobes of the vector units count only on their clock's edges.
        # Likewise the vector queue (the units take an instruction on an ASIC clock edge, all
        # of them together: each is idle then).
        vu_direct = ~vu_q.r_rdy & fe.vu.valid
        all_ready = Cat(*[v.cmd.ready for v in vus]).all()
        vu_take = all_ready & ce
        word = Mux(vu_q.r_rdy, vu_q.r_data, fe.vu.payload.as_value())
        offer = (vu_q.r_rdy | fe.vu.valid) & vu_take
        m.d.comb += [
            vu_q.w_data.eq(fe.vu.payload.as_value()),
            vu_q.w_en.eq(fe.vu.valid & ~(vu_direct & vu_take)),
            fe.vu.ready.eq(vu_q.w_rdy),
            vu_q.r_en.eq(vu_take & vu_q.r_rdy),
            fe.sreg.idx.eq(vu.sreg.idx), fe.sreg.data.eq(vu.sreg.data),
            fe.sreg.en.eq(vu.sreg.en & ce),
            fe.rsr.idx.eq(vu.rsr.idx),
        ]
        if N == 1:
            m.d.comb += [vu.cmd.payload.eq(word), vu.cmd.valid.eq((vu_q.r_rdy | fe.vu.valid) & ce)]
        else:
            self._share_out(m, vus, word, offer)
        for u, v in enumerate(vus):
            rd, wr = getattr(sp, f"wide_rd{u + 1}"), getattr(sp, f"wide_wr{u + 1}")
            m.d.comb += [
                v.rsr.data.eq(fe.rsr.data),
                rd.addr.eq(v.sp_rd.addr), rd.en.eq(v.sp_rd.en & ce), v.sp_rd.data.eq(rd.data),
                wr.addr.eq(v.sp_wr.addr), wr.data.eq(v.sp_wr.data),
                wr.mask.eq(v.sp_wr.mask & ce.replicate(W)),
            ]
        wiring.connect(m, pim.sp_rd, sp.wide_rd)
        wiring.connect(m, pim.sp_wr, sp.wide_wr)
        wiring.connect(m, wiring.flipped(self.host_sp_rd), sp.rd0)
        wiring.connect(m, wiring.flipped(self.host_sp_wr), sp.wr0)

        pim_idle = ~pim.busy & Cat(*[s.idle for s in scheds]).all() & ~pim_q.r_rdy
        m.d.comb += [
            fe.start.eq(self.start), fe.pim_idle.eq(pim_idle),
            fe.vu_idle.eq(~Cat(*[v.busy for v in vus]).any() & ~vu_q.r_rdy),
            fe.prog_wr.eq(self.host_prog),
            fe.out_addr.eq(self.host_out_addr), self.host_out_data.eq(fe.out_data),
            self.running.eq(fe.running), self.done.eq(fe.done), self.error.eq(fe.error),
            self.n_out.eq(fe.n_out), self.pc.eq(fe.pc), self.advance.eq(fe.advance),
            self.apc.eq(fe.apc), self.a_advance.eq(fe.a_advance),
        ]

        self._capture(m, vu, ce, fe)
        return m

    def _share_out(self, m, vus, word, offer):
        """Dispatch to several vector units (``pimgpt/core/vu/cluster.py``): a ``SOFTMAX`` or
        ``SOFTMAXU`` goes to every unit with rows to take, each with its share's ``rows``,
        ``src`` and ``dst`` (and ``rcp``)
        (``row_share``: ``q, r = divmod(rows, N)``, unit ``u`` from row ``u * q + min(u, r)``,
        ``q + (u < r)`` rows); anything else to unit 0 alone."""
        N = len(vus)
        ins = InstrWord(word)
        # SOFTMAXU's first four fields are SOFTMAX's (isa.SPEC): one view serves both
        sm, su = ins.args_of(Op.SOFTMAX), ins.args_of(Op.SOFTMAXU)
        unnorm = ins.op == opcode(Op.SOFTMAXU)
        split = (ins.op == opcode(Op.SOFTMAX)) | unnorm
        q, r = sm.rows >> exact_log2(N), sm.rows[:exact_log2(N)]
        for u, v in enumerate(vus):
            sub = Signal(InstrWord, name=f"vu{u}_ins")
            share, share_u = sub.args_of(Op.SOFTMAX), sub.args_of(Op.SOFTMAXU)
            first = q * u + Mux(r < u, r, u)
            count = q + (r > u)
            m.d.comb += sub.eq(ins)
            with m.If(split):
                m.d.comb += [share.rows.eq(count), share.src.eq(sm.src + first * sm.n),
                             share.dst.eq(sm.dst + first * sm.n)]
                with m.If(unnorm):
                    m.d.comb += share_u.rcp.eq(su.rcp + first * su.rseg)
            takes = (split & (count != 0)) if u else 1
            m.d.comb += [v.cmd.payload.eq(sub), v.cmd.valid.eq(offer & takes)]

    def _capture(self, m, vu, ce, fe):
        """Logit capture: the words every ``ARGMAX``/``ARGMAXC`` loads, at ``n_cap`` + their
        element index (a memory of ``lanes`` banks takes one tapped block per cycle); ``n_cap``
        grows by the instruction's ``n`` when it ends. An ``ARGMAXC``'s index counts from its
        piece (``src + lo``), so a chain lands contiguous, and its load of ``src[R[reg]]`` (index
        ``R[reg] - lo < 0``) rewrites that word of an earlier piece with the same value."""
        W = vu.lanes
        m.submodules.cap = cap = Scratchpad(self.cap_depth, lanes=W, word_read_ports=1,
                                            word_write_ports=0, wide_ports=1)
        tap = vu.tap
        at = (self.n_cap + tap.index)[:32]
        fits = Cat(*[at + k < self.cap_depth for k in range(W)])
        m.d.comb += [cap.wide_wr.addr.eq(at), cap.wide_wr.data.eq(tap.data),
                     cap.wide_wr.mask.eq(tap.mask & fits & (tap.valid & ce).replicate(W)),
                     cap.wide_rd.en.eq(0),
                     cap.rd0.addr.eq(self.host_cap_addr), cap.rd0.en.eq(1),
                     self.host_cap_data.eq(cap.rd0.data)]
        with m.If(self.start):
            m.d.sync += [self.n_cap.eq(0), self.cycles.eq(0)]
        with m.Else():
            with m.If(tap.end & ce):
                total = self.n_cap + tap.count
                m.d.sync += self.n_cap.eq(Mux(total < self.cap_depth, total, self.cap_depth))
            with m.If(fe.running):
                m.d.sync += self.cycles.eq(self.cycles + 1)
        return m

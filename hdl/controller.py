"""The ASIC: instruction fetch/decode/dispatch, and the top that joins the ASIC's blocks.

:class:`Frontend` reads the program memory and dispatches in order:

* PIM instructions to the PIM engine (:mod:`.pim_engine`), ASIC instructions to the vector unit
  (:mod:`.vector_unit`); the two sides run concurrently between ``SYNC``\\ s, each in order, as
  ``docs/isa.md`` allows (the compiler placed a ``SYNC`` wherever one side reads what the other
  produces);
* ``SYNC`` waits until both sides are idle (every DRAM command's effect complete, every read
  landed, the vector unit done); ``EOC`` does the same and stops;
* ``SETR`` and ``OUT`` (ASIC side) execute in the front end once the vector unit is idle, so they
  stay in order behind ``ARGMAX``; ``RD_VEC`` with ``FLAG_VEC_FROM_REG`` gets ``R[vec]`` substituted
  (after the vector unit is idle);
* an unknown opcode, or a PIM instruction the PIM engine does not implement
  (:data:`.pim_engine.SUPPORTED_OPS`), stops the program with ``error`` set.

:class:`Asic` wires front end, vector unit, PIM engine, one :class:`.ChannelScheduler` per channel
and the :class:`.Scratchpad`; its outward ports are the channels' command buses and read-data
returns, and the host's side doors (program memory, scratchpad words, output tokens, logit tap).
"""

from __future__ import annotations

from amaranth.hdl import Array, Cat, EnableInserter, Module, Mux, Signal
from amaranth.lib import data, stream, wiring
from amaranth.lib.fifo import SyncFIFO
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out
from amaranth.utils import ceil_log2

from pimgpt.core.config import HwConfig
from pimgpt.core.isa import FLAG_VEC_FROM_REG, N_REGS, PIM_OPS, Op

from .bank import dram_cmd_layout
from .fp import check_int
from .isa_layout import INSTR_BITS, InstrWord, opcode
from .pim_engine import SUPPORTED_OPS, PimEngine, return_signature
from .pim_sched import ChannelScheduler
from .scratchpad import Scratchpad, sp_read_signature, sp_write_signature
from .vector_unit import VectorUnit, sreg_write_signature
from .vu_microcode import VU_OPS

__all__ = ["Frontend", "Asic", "asic_clock_ratio"]


def asic_clock_ratio(hw: HwConfig) -> int:
    """DRAM clocks (tCK) per ASIC clock: ``1 / (asic.clock_ghz * dram.tck_ns)``, an integer.

    The RTL's time base is tCK; the vector unit advances on every ``ratio``-th cycle.
    """
    ratio = 1.0 / (hw.asic.clock_ghz * hw.dram.tck_ns)
    if ratio < 1 - 1e-9 or abs(ratio - round(ratio)) > 1e-6:
        raise ValueError(f"{hw.name}: asic.clock_ghz {hw.asic.clock_ghz} must be the DRAM clock "
                         f"(1/tck_ns = {1 / hw.dram.tck_ns:g} GHz) divided by an integer")
    return int(round(ratio))

PIM_CODES = [opcode(o) for o in sorted(PIM_OPS & SUPPORTED_OPS)]
VU_CODES = [opcode(o) for o in VU_OPS]


class Frontend(wiring.Component):
    """Program memory, fetch, decode and in-order dispatch.

    Parameters
    ----------
    prog_depth : int
        Program memory size in instructions (a power of two, 16..2**20).
    out_depth : int
        Output-token memory size (16..2**16).

    Attributes
    ----------
    start : In(1)
        Pulse: run the program from instruction 0 (clears the token count).
    pim, vu : Out(stream.Signature(InstrWord))
        Dispatch to the PIM engine and the vector unit.
    pim_idle, vu_idle : In(1)
        The two sides are idle.
    sreg : In(sreg_write_signature())
        Scalar-register writes from the vector unit.
    prog_wr : In(StructLayout)
        Host write port of the program memory (``en``, ``addr``, ``data``).
    out_addr, out_data : In, Out
        Host read port of the output tokens (data one cycle after the address).
    running, done, error, n_out, pc : Out
        Status.
    """

    def __init__(self, *, prog_depth: int = 8192, out_depth: int = 256):
        check_int("prog_depth", prog_depth, 16, 1 << 20)
        if prog_depth & (prog_depth - 1):
            raise ValueError(f"prog_depth must be a power of two, not {prog_depth!r}")
        self.prog_depth = prog_depth
        self.out_depth = check_int("out_depth", out_depth, 16, 1 << 16)
        pw = ceil_log2(prog_depth)
        ow = ceil_log2(out_depth)
        super().__init__({
            "start": In(1),
            "pim": Out(stream.Signature(InstrWord)),
            "vu": Out(stream.Signature(InstrWord)),
            "pim_idle": In(1),
            "vu_idle": In(1),
            "sreg": In(sreg_write_signature()),
            "prog_wr": In(data.StructLayout({"en": 1, "addr": pw, "data": INSTR_BITS})),
            "out_addr": In(ow),
            "out_data": Out(32),
            "running": Out(1),
            "done": Out(1),
            "error": Out(1),
            "n_out": Out(ow + 1),
            "pc": Out(pw),
            "advance": Out(1),
        })

    def elaborate(self, platform):
        m = Module()
        pw = ceil_log2(self.prog_depth)
        m.submodules.prog = prog = Memory(shape=INSTR_BITS, depth=self.prog_depth, init=[])
        wp = prog.write_port()
        rp = prog.read_port()
        m.d.comb += [wp.addr.eq(self.prog_wr.addr), wp.data.eq(self.prog_wr.data),
                     wp.en.eq(self.prog_wr.en)]
        m.submodules.outs = outs = Memory(shape=32, depth=self.out_depth, init=[])
        out_w = outs.write_port()
        out_r = outs.read_port()
        m.d.comb += [out_r.addr.eq(self.out_addr), self.out_data.eq(out_r.data)]

        regs = Array(Signal(32, name=f"R{i}") for i in range(N_REGS))
        with m.If(self.sreg.en):
            m.d.sync += regs[self.sreg.idx].eq(self.sreg.data)

        pc = self.pc
        advance = self.advance
        primed = Signal()  # rp.data holds instruction pc
        m.d.comb += [rp.addr.eq(Mux(advance, pc + 1, pc)[:pw]), rp.en.eq(1)]
        with m.If(advance):
            m.d.sync += pc.eq(pc + 1)
        ins = InstrWord(rp.data)
        op = ins.op
        both_idle = self.pim_idle & self.vu_idle & ~self.pim.valid & ~self.vu.valid

        m.d.comb += [self.pim.payload.eq(ins), self.vu.payload.eq(ins)]
        reg_vec = (ins.flags & FLAG_VEC_FROM_REG) != 0
        rd_vec = op == opcode(Op.RD_VEC)
        with m.If(rd_vec & reg_vec):
            vec = ins.args_of(Op.RD_VEC).vec
            m.d.comb += [self.pim.payload.args_of(Op.RD_VEC).vec.eq(regs[vec[:4]]),
                         self.pim.payload.flags.eq(0)]

        with m.If(self.start):
            m.d.sync += [pc.eq(0), primed.eq(0), self.running.eq(1), self.done.eq(0),
                         self.error.eq(0), self.n_out.eq(0)]
        with m.Elif(self.running):
            m.d.sync += primed.eq(1)
            with m.If(primed):
                with m.Switch(op):
                    with m.Case(*PIM_CODES):
                        ok = Mux(rd_vec & reg_vec, self.vu_idle, 1)
                        m.d.comb += self.pim.valid.eq(ok)
                        m.d.comb += advance.eq(self.pim.valid & self.pim.ready)
                    with m.Case(*VU_CODES):
                        m.d.comb += self.vu.valid.eq(1)
                        m.d.comb += advance.eq(self.vu.ready)
                    with m.Case(opcode(Op.SETR)):
                        setr = ins.args_of(Op.SETR)
                        with m.If(self.vu_idle):
                            m.d.sync += regs[setr.reg[:4]].eq(setr.imm)
                            m.d.comb += advance.eq(1)
                    with m.Case(opcode(Op.OUT)):
                        with m.If(self.vu_idle):
                            reg = ins.args_of(Op.OUT).reg
                            m.d.comb += [out_w.addr.eq(self.n_out), out_w.data.eq(regs[reg[:4]]),
                                         out_w.en.eq(self.n_out < self.out_depth),
                                         advance.eq(1)]
                            m.d.sync += self.n_out.eq(self.n_out + 1)
                    with m.Case(opcode(Op.SYNC)):
                        m.d.comb += advance.eq(both_idle)
                    with m.Case(opcode(Op.EOC)):
                        with m.If(both_idle):
                            m.d.sync += [self.running.eq(0), self.done.eq(1)]
                    with m.Default():
                        m.d.sync += [self.running.eq(0), self.done.eq(1), self.error.eq(1)]
                with m.If(advance & (pc == self.prog_depth - 1)):
                    # Ran off the end of program memory without EOC.
                    m.d.sync += [self.running.eq(0), self.done.eq(1), self.error.eq(1)]
        return m


class Asic(wiring.Component):
    """The PIM-GPT ASIC.

    Parameters
    ----------
    hw : HwConfig
        Hardware configuration (channels, banks, timing, ``asic.scratchpad_words``).
    prog_depth, out_depth : int
        Program and output-token memory sizes.
    cap_depth : int
        Words of the logit-capture memory (every word ``ARGMAX`` reads is appended), 16..2**20.
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
        })
        super().__init__(members)

    def elaborate(self, platform):
        m = Module()
        hw = self.hw
        C = hw.dram.channels
        m.submodules.fe = fe = Frontend(prog_depth=self.prog_depth, out_depth=self.out_depth)
        vu = VectorUnit(sp_addr_width=self.sp_aw, lanes=hw.asic.vector_lanes)
        # The vector unit runs at the ASIC clock: one step every `ratio` DRAM clocks (tCK).
        ratio = asic_clock_ratio(hw)
        ce = Signal()
        if ratio > 1:
            phase = Signal(range(ratio))
            m.d.sync += phase.eq(Mux(phase == ratio - 1, 0, phase + 1))
            m.d.comb += ce.eq(phase == 0)
            m.submodules.vu = EnableInserter(ce)(vu)
        else:
            m.d.comb += ce.eq(1)
            m.submodules.vu = vu
        m.submodules.pim = pim = PimEngine(hw, sp_addr_width=self.sp_aw)
        m.submodules.sp = sp = Scratchpad(hw.asic.scratchpad_words, lanes=16,
                                          word_read_ports=2, word_write_ports=2, wide_ports=2)
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
        # Handshakes and strobes of the vector unit count only on its clock's edges.
        # Likewise the vector queue (the unit takes an instruction on an ASIC clock edge).
        vu_direct = ~vu_q.r_rdy & fe.vu.valid
        vu_take = vu.cmd.ready & ce
        m.d.comb += [
            vu_q.w_data.eq(fe.vu.payload.as_value()),
            vu_q.w_en.eq(fe.vu.valid & ~(vu_direct & vu_take)),
            fe.vu.ready.eq(vu_q.w_rdy),
            vu.cmd.payload.eq(Mux(vu_q.r_rdy, vu_q.r_data, fe.vu.payload.as_value())),
            vu.cmd.valid.eq((vu_q.r_rdy | fe.vu.valid) & ce),
            vu_q.r_en.eq(vu_take & vu_q.r_rdy),
            fe.sreg.idx.eq(vu.sreg.idx), fe.sreg.data.eq(vu.sreg.data),
            fe.sreg.en.eq(vu.sreg.en & ce),
            sp.rd0.addr.eq(vu.sp_rd.addr), sp.rd0.en.eq(vu.sp_rd.en & ce),
            vu.sp_rd.data.eq(sp.rd0.data),
            sp.wr0.addr.eq(vu.sp_wr.addr), sp.wr0.data.eq(vu.sp_wr.data),
            sp.wr0.en.eq(vu.sp_wr.en & ce),
            sp.wide_rd1.addr.eq(vu.sp_vrd.addr), sp.wide_rd1.en.eq(vu.sp_vrd.en & ce),
            vu.sp_vrd.data.eq(sp.wide_rd1.data),
            sp.wide_wr1.addr.eq(vu.sp_vwr.addr), sp.wide_wr1.data.eq(vu.sp_vwr.data),
            sp.wide_wr1.mask.eq(vu.sp_vwr.mask & ce.replicate(16)),
        ]
        tap_valid = vu.tap.valid & ce
        wiring.connect(m, pim.sp_rd, sp.wide_rd)
        wiring.connect(m, pim.sp_wr, sp.wide_wr)
        wiring.connect(m, wiring.flipped(self.host_sp_rd), sp.rd1)
        wiring.connect(m, wiring.flipped(self.host_sp_wr), sp.wr1)

        pim_idle = ~pim.busy & Cat(*[s.idle for s in scheds]).all() & ~pim_q.r_rdy
        m.d.comb += [
            fe.start.eq(self.start), fe.pim_idle.eq(pim_idle),
            fe.vu_idle.eq(~vu.busy & ~vu_q.r_rdy),
            fe.prog_wr.eq(self.host_prog),
            fe.out_addr.eq(self.host_out_addr), self.host_out_data.eq(fe.out_data),
            self.running.eq(fe.running), self.done.eq(fe.done), self.error.eq(fe.error),
            self.n_out.eq(fe.n_out), self.pc.eq(fe.pc), self.advance.eq(fe.advance),
        ]

        # Logit capture: every word ARGMAX loads, appended.
        m.submodules.cap = cap = Memory(shape=32, depth=self.cap_depth, init=[])
        cap_w = cap.write_port()
        cap_r = cap.read_port()
        m.d.comb += [cap_w.addr.eq(self.n_cap), cap_w.data.eq(vu.tap.data),
                     cap_w.en.eq(tap_valid & (self.n_cap < self.cap_depth)),
                     cap_r.addr.eq(self.host_cap_addr), self.host_cap_data.eq(cap_r.data)]
        with m.If(self.start):
            m.d.sync += [self.n_cap.eq(0), self.cycles.eq(0)]
        with m.Else():
            with m.If(tap_valid & (self.n_cap < self.cap_depth)):
                m.d.sync += self.n_cap.eq(self.n_cap + 1)
            with m.If(fe.running):
                m.d.sync += self.cycles.eq(self.cycles + 1)
        return m

"""The ASIC's front end: program memory, fetch, decode and dispatch on two sides.

Between two ``SYNC``\\ s the PIM side and the ASIC side are independent (``docs/isa.md``: each
side in order, the compiler put a ``SYNC`` wherever one reads what the other produces), and the
performance model starts both at the barrier. The front end therefore fetches with two pointers,
one per side, so that neither side's first instruction waits behind the other side's:

* **Chains.** When the host writes the program (instruction 0 first, upward), every instruction
  is linked to the next one of its side: the PIM chain holds the PIM instructions, the ASIC chain
  the vector-unit instructions and ``SETR``/``OUT``; both hold every barrier (``SYNC``, ``EOC``,
  and an opcode this hardware does not implement -- unknown, a PIM instruction the engine lacks
  (``pim_engine.SUPPORTED_OPS``), an ASIC instruction without a microcode routine -- which stops
  the program with ``error`` when reached). Two link memories beside the program memory hold the
  next index of each chain.
* **Dispatch.** The PIM pointer hands its instruction to the PIM engine, the ASIC pointer to the
  vector unit (``SETR`` and ``OUT`` execute here once the vector unit is idle, so they stay in
  order behind ``ARGMAX``), each following its chain, one instruction per cycle each.
  ``RD_VEC`` with ``FLAG_VEC_FROM_REG`` waits until the ASIC pointer has passed it and the vector
  unit is idle, then gets ``R[vec]`` substituted.
* **Barriers.** When both pointers stand on the same barrier and both sides are idle, ``SYNC``
  moves both on, ``EOC`` stops the program.

A chain that ends without a barrier (the program runs off its end without ``EOC``) stops the
program with ``error``.
"""

from __future__ import annotations

from amaranth.hdl import Array, Module, Mux, Signal
from amaranth.lib import data, stream, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out
from amaranth.utils import ceil_log2

from pimgpt.core.isa import FLAG_VEC_FROM_REG, N_REGS, PIM_OPS, Op
from pimgpt.core.vu.routines import VU_OPS

from .fp import check_int
from .isa_layout import INSTR_BITS, InstrWord, opcode
from .pim_engine import SUPPORTED_OPS
from .vu_seq import sreg_read_signature, sreg_write_signature

__all__ = ["Frontend", "PIM_CODES", "VU_CODES"]

PIM_CODES = [opcode(o) for o in sorted(PIM_OPS & SUPPORTED_OPS)]
VU_CODES = [opcode(o) for o in VU_OPS]
#: Instructions the front end itself executes (ASIC side).
FE_CODES = [opcode(Op.SETR), opcode(Op.OUT)]
BARRIER_CODES = [opcode(Op.SYNC), opcode(Op.EOC)]


class Frontend(wiring.Component):
    """Program memory, fetch, decode and dispatch (see the module docstring).

    Parameters
    ----------
    prog_depth : int
        Program memory size in instructions (a power of two, 16..2**20).
    out_depth : int
        Output-token memory size (16..2**16).

    Attributes
    ----------
    start : In(1)
        Pulse: run the program from its first instructions (clears the token count).
    pim, vu : Out(stream.Signature(InstrWord))
        Dispatch to the PIM engine and the vector unit.
    pim_idle, vu_idle : In(1)
        The two sides are idle.
    sreg : In(sreg_write_signature())
        Scalar-register writes from the vector unit.
    rsr : In(sreg_read_signature())
        Scalar-register reads of the vector unit (``ARGMAXC``: it is in order behind the writes).
    prog_wr : In(StructLayout)
        Host write port of the program memory (``en``, ``addr``, ``data``); a program is written
        from instruction 0 upward (the chains are linked as it arrives).
    out_addr, out_data : In, Out
        Host read port of the output tokens (data one cycle after the address).
    running, done, error, n_out : Out
        Status.
    pc, advance : Out
        The PIM pointer, and that it moves on this cycle (a PIM dispatch or a barrier passed).
    apc, a_advance : Out
        The ASIC pointer, and that it moves on this cycle.
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
            "rsr": In(sreg_read_signature()),
            "prog_wr": In(data.StructLayout({"en": 1, "addr": pw, "data": INSTR_BITS})),
            "out_addr": In(ow),
            "out_data": Out(32),
            "running": Out(1),
            "done": Out(1),
            "error": Out(1),
            "n_out": Out(ow + 1),
            "pc": Out(pw),
            "advance": Out(1),
            "apc": Out(pw),
            "a_advance": Out(1),
        })

    def _chains(self, m, pw):
        """Link each written instruction to the previous member of its chains. Returns per chain
        (link memory, first member, last member)."""
        wr = self.prog_wr
        op = InstrWord(wr.data).op
        in_p, in_a = Signal(), Signal()
        with m.Switch(op):
            with m.Case(*PIM_CODES):
                m.d.comb += in_p.eq(1)
            with m.Case(*(VU_CODES + FE_CODES)):
                m.d.comb += in_a.eq(1)
            with m.Default():  # barriers and unknown opcodes: both chains
                m.d.comb += [in_p.eq(1), in_a.eq(1)]
        chains = []
        for name, member in (("p", in_p), ("a", in_a)):
            link = Memory(shape=pw, depth=self.prog_depth, init=[])
            m.submodules[f"link_{name}"] = link
            first, last = Signal(pw, name=f"first_{name}"), Signal(pw, name=f"last_{name}")
            seen = Signal(name=f"seen_{name}")
            wp = link.write_port()
            fresh = wr.addr == 0  # a new program: its chains start over
            m.d.comb += [wp.addr.eq(last), wp.data.eq(wr.addr),
                         wp.en.eq(wr.en & member & seen & ~fresh)]
            with m.If(wr.en & member):
                m.d.sync += [last.eq(wr.addr), seen.eq(1)]
                with m.If(fresh | ~seen):
                    m.d.sync += first.eq(wr.addr)
            with m.Elif(wr.en & fresh):
                m.d.sync += seen.eq(0)
            chains.append((link, first, last))
        return chains

    def elaborate(self, platform):
        m = Module()
        pw = ceil_log2(self.prog_depth)
        m.submodules.prog = prog = Memory(shape=INSTR_BITS, depth=self.prog_depth, init=[])
        wp = prog.write_port()
        m.d.comb += [wp.addr.eq(self.prog_wr.addr), wp.data.eq(self.prog_wr.data),
                     wp.en.eq(self.prog_wr.en)]
        m.submodules.outs = outs = Memory(shape=32, depth=self.out_depth, init=[])
        out_w = outs.write_port()
        out_r = outs.read_port()
        m.d.comb += [out_r.addr.eq(self.out_addr), self.out_data.eq(out_r.data)]
        regs = Array(Signal(32, name=f"R{i}") for i in range(N_REGS))
        with m.If(self.sreg.en):
            m.d.sync += regs[self.sreg.idx].eq(self.sreg.data)
        m.d.comb += self.rsr.data.eq(regs[self.rsr.idx])

        (link_p, first_p, last_p), (link_a, first_a, last_a) = self._chains(m, pw)
        primed = Signal()  # the read ports hold the instructions at the pointers
        ptr_p, ptr_a = self.pc, self.apc
        adv_p, adv_a = self.advance, self.a_advance
        ports = []
        for ptr, adv, link in ((ptr_p, adv_p, link_p), (ptr_a, adv_a, link_a)):
            rp, lp = prog.read_port(), link.read_port()
            nxt = lp.data
            m.d.comb += [rp.addr.eq(Mux(adv, nxt, ptr)), lp.addr.eq(Mux(adv, nxt, ptr)),
                         rp.en.eq(1), lp.en.eq(1)]
            with m.If(adv):
                m.d.sync += ptr.eq(nxt)
            ports.append(InstrWord(rp.data))
        ins_p, ins_a = ports
        stop = Signal()
        err = Signal()
        with m.If(self.start):
            m.d.sync += [ptr_p.eq(first_p), ptr_a.eq(first_a), primed.eq(0),
                         self.running.eq(1), self.done.eq(0), self.error.eq(0),
                         self.n_out.eq(0)]
        with m.Elif(self.running):
            m.d.sync += primed.eq(1)
            with m.If(stop):
                m.d.sync += [self.running.eq(0), self.done.eq(1), self.error.eq(err)]
        go = self.running & primed & ~self.start
        m.d.comb += [self.pim.payload.eq(ins_p), self.vu.payload.eq(ins_a)]
        self._pim_side(m, ins_p, go, regs, ptr_a)
        self._asic_side(m, ins_a, go, regs, out_w)
        # Barriers: both pointers on the same one, both sides idle.
        both_idle = self.pim_idle & self.vu_idle & ~self.pim.valid & ~self.vu.valid
        at_barrier = go & (ptr_p == ptr_a)
        with m.If(at_barrier & both_idle):
            with m.Switch(ins_p.op):
                with m.Case(opcode(Op.SYNC)):
                    m.d.comb += [adv_p.eq(1), adv_a.eq(1)]
                with m.Case(opcode(Op.EOC)):
                    m.d.comb += stop.eq(1)
                with m.Case(*(PIM_CODES + VU_CODES + FE_CODES)):
                    pass
                with m.Default():  # an unknown opcode
                    m.d.comb += [stop.eq(1), err.eq(1)]
        # A pointer leaving the last member of its chain: the program has no EOC.
        with m.If((adv_p & (ptr_p == last_p)) | (adv_a & (ptr_a == last_a))):
            m.d.comb += [stop.eq(1), err.eq(1)]
        return m

    def _pim_side(self, m, ins, go, regs, ptr_a):
        """Dispatch the PIM pointer's instruction (``RD_VEC`` register operand substituted)."""
        reg_vec = (ins.flags & FLAG_VEC_FROM_REG) != 0
        rd_vec = ins.op == opcode(Op.RD_VEC)
        with m.If(rd_vec & reg_vec):
            vec = ins.args_of(Op.RD_VEC).vec
            m.d.comb += [self.pim.payload.args_of(Op.RD_VEC).vec.eq(regs[vec[:4]]),
                         self.pim.payload.flags.eq(0)]
        with m.Switch(ins.op):
            with m.Case(*PIM_CODES):
                # A register operand: every earlier ASIC instruction done first.
                ok = Mux(rd_vec & reg_vec, self.vu_idle & (ptr_a > self.pc), 1)
                m.d.comb += self.pim.valid.eq(go & ok)
                m.d.comb += self.advance.eq(self.pim.valid & self.pim.ready)

    def _asic_side(self, m, ins, go, regs, out_w):
        """Dispatch the ASIC pointer's instruction; execute ``SETR``/``OUT`` in order."""
        with m.Switch(ins.op):
            with m.Case(*VU_CODES):
                m.d.comb += [self.vu.valid.eq(go), self.a_advance.eq(go & self.vu.ready)]
            with m.Case(opcode(Op.SETR)):
                setr = ins.args_of(Op.SETR)
                with m.If(go & self.vu_idle):
                    m.d.sync += regs[setr.reg[:4]].eq(setr.imm)
                    m.d.comb += self.a_advance.eq(1)
            with m.Case(opcode(Op.OUT)):
                with m.If(go & self.vu_idle):
                    reg = ins.args_of(Op.OUT).reg
                    m.d.comb += [out_w.addr.eq(self.n_out), out_w.data.eq(regs[reg[:4]]),
                                 out_w.en.eq(self.n_out < self.out_depth),
                                 self.a_advance.eq(1)]
                    m.d.sync += self.n_out.eq(self.n_out + 1)

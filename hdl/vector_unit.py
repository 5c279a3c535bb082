"""The ASIC vector unit: a one-lane, in-order microcoded sequencer over one fp32 adder and one
fp32 multiplier.

Each ASIC instruction (``VADD`` ... ``LAYERNORM``, ``ARGMAX``, ``VFILL``) runs the microcode routine
of :mod:`.vu_microcode`, which follows :mod:`pimgpt.sim.nonlinear` step by step, so results are bit
for bit those of the golden model. The micro-architecture is deliberately simple (the micro-ISA and
cycle costs are tabled in :mod:`.vu_microcode`):

* a 64-bit microcode ROM read combinationally at ``upc``;
* 32 x 32-bit registers (``r0`` reads as zero); on dispatch the instruction's fields go to
  ``r1..r7`` in the same cycle;
* integer ALU and fp32 compare in one cycle; fp add/multiply through :class:`.FP32Add` /
  :class:`.FP32Mul` (the sequencer waits for the result: ``1 + latency`` cycles);
* one scratchpad read port (``LD``: address this cycle, data next) and one write port (``ST``);
* one scalar-register write port for ``ARGMAX`` (``WSR``).

The cycle count of every instruction equals :class:`.vu_microcode.VectorISS`'s.
"""

from __future__ import annotations

from amaranth.hdl import Array, Const, Module, Mux, Signal
from amaranth.lib import data, stream, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from pimgpt.sw.isa import Op

from .fp import check_int
from .fp32add import FP32Add
from .fp32mul import FP32Mul
from .isa_layout import InstrWord
from .scratchpad import sp_read_signature, sp_write_signature
from .vu_microcode import N_REGS, VU_OPS, UOp, build_microcode

__all__ = ["VectorUnit", "VectorUnitTop", "sreg_write_signature"]


def sreg_write_signature() -> wiring.Signature:
    """Write port into the front end's scalar registers ``R0..R15``."""
    return wiring.Signature({"en": Out(1), "idx": Out(4), "data": Out(32)})


def _fp_lt(a, b):
    """fp32 ``a < b`` of 32-bit values with DAZ (zeros and subnormals equal +0); false on NaN."""

    def parts(x):
        exp, mant, sign = x[23:31], x[:23], x[31]
        nan = (exp == 0xFF) & (mant != 0)
        # Order-preserving unsigned key: negatives reversed below the positives, zeros in between.
        key = Mux(exp == 0, Const(0x80000000, 32), Mux(sign, ~x, x | 0x80000000))
        return nan, key

    na, ka = parts(a)
    nb, kb = parts(b)
    return ~na & ~nb & (ka < kb)


class VectorUnit(wiring.Component):
    """Microcoded one-lane vector unit.

    Parameters
    ----------
    sp_addr_width : int
        Scratchpad address width (``ceil_log2(scratchpad_words)``), 4..26.
    add_latency, mul_latency : int
        Pipeline latencies of the fp32 adder (1..3) and multiplier (1..2).

    Attributes
    ----------
    cmd : In(stream.Signature(InstrWord))
        Instructions; accepted only when the unit is idle (``ready``), one at a time.
    sp_rd, sp_wr : Out(sp_read_signature), Out(sp_write_signature)
        Scratchpad ports.
    sreg : Out(sreg_write_signature())
        Scalar-register writes (``ARGMAX``).
    tap : Out(StructLayout)
        ``valid``/``data``: every word an ``ARGMAX`` loads, in index order (the logits; a test
        and debug port that costs no cycles).
    busy : Out(1)
        An instruction is executing.
    """

    def __init__(self, *, sp_addr_width: int = 14, add_latency: int = 1, mul_latency: int = 1):
        self._aw = check_int("sp_addr_width", sp_addr_width, 4, 26)
        self._add_latency = check_int("add_latency", add_latency, 1, 3)
        self._mul_latency = check_int("mul_latency", mul_latency, 1, 2)
        self.microcode = build_microcode()
        super().__init__({
            "cmd": In(stream.Signature(InstrWord)),
            "sp_rd": Out(sp_read_signature(sp_addr_width)),
            "sp_wr": Out(sp_write_signature(sp_addr_width)),
            "sreg": Out(sreg_write_signature()),
            "tap": Out(data.StructLayout({"valid": 1, "data": 32})),
            "busy": Out(1),
        })

    @property
    def add_latency(self) -> int:
        return self._add_latency

    @property
    def mul_latency(self) -> int:
        return self._mul_latency

    def elaborate(self, platform):
        m = Module()
        mc = self.microcode
        m.submodules.rom = rom = Memory(shape=64, depth=len(mc.words), init=mc.words)
        upc = Signal(range(len(mc.words)))
        rom_rd = rom.read_port(domain="comb")
        m.d.comb += rom_rd.addr.eq(upc)
        word = rom_rd.data

        op, rd, ra, rb = word[0:6], word[6:11], word[11:16], word[16:21]
        use_imm, imm = word[21], word[32:64]
        regs = Array(Signal(32, name=f"r{i}") for i in range(N_REGS))
        a = Signal(32)
        b = Signal(32)
        d = Signal(32)
        m.d.comb += [a.eq(regs[ra]), b.eq(Mux(use_imm, imm, regs[rb])), d.eq(regs[rd])]

        m.submodules.fadd = fadd = FP32Add(latency=self._add_latency)
        m.submodules.fmul = fmul = FP32Mul(latency=self._mul_latency)
        m.d.comb += [
            fadd.i.payload.a.eq(a), fadd.i.payload.b.eq(b),
            fmul.i.payload.a.eq(a), fmul.i.payload.b.eq(b),
        ]

        addr = (a + b)[:self._aw]
        m.d.comb += [self.sp_rd.addr.eq(addr), self.sp_wr.addr.eq(addr), self.sp_wr.data.eq(d)]

        c = regs[rb]
        a_s, b_s, c_s = a.as_signed(), b.as_signed(), c.as_signed()
        alu = Signal(32)
        with m.Switch(op):
            for uop, value in (
                (UOp.ADD, a + b), (UOp.SUB, a - b), (UOp.AND, a & b), (UOp.OR, a | b),
                (UOp.XOR, a ^ b), (UOp.SHL, a << b[:5]), (UOp.SHR, a >> b[:5]),
                (UOp.SRA, a_s >> b[:5]), (UOp.SLT, a_s < b_s), (UOp.SLTU, a < b),
                (UOp.FLT, _fp_lt(a, b)),
            ):
                with m.Case(uop):
                    m.d.comb += alu.eq(value)
        taken = Signal()
        with m.Switch(op):
            for uop, value in ((UOp.BEQ, a == c), (UOp.BNE, a != c), (UOp.BLT, a_s < c_s),
                               (UOp.BGE, a_s >= c_s), (UOp.BLTU, a < c), (UOp.BGEU, a >= c)):
                with m.Case(uop):
                    m.d.comb += taken.eq(value)

        pending = Signal(5)  # destination of an outstanding LD / fp op
        cur_op = Signal(16)  # the ASIC opcode being executed

        def write(reg, value):
            with m.If(reg != 0):
                m.d.sync += regs[reg].eq(value)

        with m.FSM():
            with m.State("IDLE"):
                m.d.comb += self.cmd.ready.eq(1)
                with m.If(self.cmd.valid):
                    ins = self.cmd.payload
                    m.d.sync += cur_op.eq(ins.op)
                    for k in range(7):
                        m.d.sync += regs[1 + k].eq(ins.f[k])
                    with m.Switch(ins.op):
                        for vop in VU_OPS:
                            with m.Case(int(vop)):
                                m.d.sync += upc.eq(mc.entries[vop])
                    m.next = "RUN"
            with m.State("RUN"):
                m.d.comb += self.busy.eq(1)
                m.d.sync += upc.eq(upc + 1)
                with m.Switch(op):
                    with m.Case(*[int(u) for u in (UOp.ADD, UOp.SUB, UOp.AND, UOp.OR, UOp.XOR,
                                                   UOp.SHL, UOp.SHR, UOp.SRA, UOp.SLT,
                                                   UOp.SLTU, UOp.FLT)]):
                        write(rd, alu)
                    with m.Case(UOp.FADD):
                        m.d.comb += fadd.i.valid.eq(1)
                        m.d.sync += pending.eq(rd)
                        m.next = "WAIT_ADD"
                    with m.Case(UOp.FMUL):
                        m.d.comb += fmul.i.valid.eq(1)
                        m.d.sync += pending.eq(rd)
                        m.next = "WAIT_MUL"
                    with m.Case(UOp.LD):
                        m.d.comb += self.sp_rd.en.eq(1)
                        m.d.sync += pending.eq(rd)
                        m.next = "WAIT_LD"
                    with m.Case(UOp.ST):
                        m.d.comb += self.sp_wr.en.eq(1)
                    with m.Case(*[int(u) for u in (UOp.BEQ, UOp.BNE, UOp.BLT, UOp.BGE,
                                                   UOp.BLTU, UOp.BGEU)]):
                        with m.If(taken):
                            m.d.sync += upc.eq(imm)
                    with m.Case(UOp.JAL):
                        write(rd, upc + 1)
                        m.d.sync += upc.eq(imm)
                    with m.Case(UOp.JR):
                        m.d.sync += upc.eq(a)
                    with m.Case(UOp.WSR):
                        m.d.comb += [self.sreg.en.eq(1), self.sreg.idx.eq(a[:4]),
                                     self.sreg.data.eq(c)]
                    with m.Case(UOp.DONE):
                        m.next = "IDLE"
            # Waiting states hold upc (already advanced) and write the result when it arrives.
            for state, unit in (("WAIT_ADD", fadd), ("WAIT_MUL", fmul)):
                with m.State(state):
                    m.d.comb += self.busy.eq(1)
                    with m.If(unit.o.valid):
                        write(pending, unit.o.payload.as_value())
                        m.next = "RUN"
            with m.State("WAIT_LD"):
                m.d.comb += [self.busy.eq(1), self.tap.valid.eq(cur_op == int(Op.ARGMAX)),
                             self.tap.data.eq(self.sp_rd.data)]
                write(pending, self.sp_rd.data)
                m.next = "RUN"
        return m


class VectorUnitTop(wiring.Component):
    """A vector unit with its own scratchpad and host ports (block tests, benchmarks).

    Parameters
    ----------
    words : int
        Scratchpad size (fp32 words, a multiple of 16).
    add_latency, mul_latency : int
        Passed to :class:`VectorUnit`.

    Attributes
    ----------
    cmd : In(stream.Signature(InstrWord))
    host_rd, host_wr : In(sp_read_signature), In(sp_write_signature)
        Scratchpad access for the testbench.
    sreg, tap, busy : Out
        The vector unit's ports.
    """

    def __init__(self, words: int = 4096, *, add_latency: int = 1, mul_latency: int = 1):
        from amaranth.utils import ceil_log2

        self.words = check_int("words", words, 16, 1 << 26)
        self.aw = max(4, ceil_log2(words))
        self._lat = (add_latency, mul_latency)
        super().__init__({
            "cmd": In(stream.Signature(InstrWord)),
            "host_rd": In(sp_read_signature(self.aw)),
            "host_wr": In(sp_write_signature(self.aw)),
            "sreg": Out(sreg_write_signature()),
            "tap": Out(data.StructLayout({"valid": 1, "data": 32})),
            "busy": Out(1),
        })

    def elaborate(self, platform):
        from .scratchpad import Scratchpad

        m = Module()
        m.submodules.vu = vu = VectorUnit(sp_addr_width=self.aw, add_latency=self._lat[0],
                                          mul_latency=self._lat[1])
        m.submodules.sp = sp = Scratchpad(self.words, word_read_ports=2, word_write_ports=2)
        wiring.connect(m, wiring.flipped(self.cmd), vu.cmd)
        wiring.connect(m, vu.sp_rd, sp.rd0)
        wiring.connect(m, vu.sp_wr, sp.wr0)
        wiring.connect(m, wiring.flipped(self.host_rd), sp.rd1)
        wiring.connect(m, wiring.flipped(self.host_wr), sp.wr1)
        wiring.connect(m, vu.sreg, wiring.flipped(self.sreg))
        m.d.comb += [self.tap.eq(vu.tap), self.busy.eq(vu.busy)]
        m.d.comb += [sp.wide_rd.en.eq(0), sp.wide_wr.mask.eq(0)]
        return m

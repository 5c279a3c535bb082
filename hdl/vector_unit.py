"""The ASIC vector unit: an in-order microcoded sequencer with a scalar part and ``L`` SIMD lanes.

Each ASIC instruction (``VADD`` ... ``LAYERNORM``, ``ARGMAX``, ``VFILL``) runs the microcode routine
of :mod:`.vu_microcode`, which follows :mod:`pimgpt.core.nonlinear` step by step, so results are bit
for bit those of the golden model. The micro-architecture (micro-ISA and cycle costs are tabled in
:mod:`.vu_microcode`):

* a 64-bit microcode ROM read combinationally at ``upc``, one micro-instruction at a time;
* scalar part: 32 x 32-bit registers (``r0`` reads as zero; on dispatch the instruction's fields
  go to ``r1..r7``), integer ALU, fp32 compare, one :class:`.FP32Add` and one :class:`.FP32Mul`
  (the sequencer waits for the result: ``1 + latency`` cycles), a scratchpad word port, and a
  scalar-register write port for ``ARGMAX``;
* ``L`` lanes (``asic.vector_lanes``): 32 vector registers of ``L`` words (a register-file
  memory: three reads, one write per cycle), per lane an integer
  ALU, an fp32 compare, an :class:`.FP32Add` and an :class:`.FP32Mul`, conditional moves, and a
  scratchpad port of ``L`` consecutive words at any alignment (stores write lanes ``< VL``).

Element-wise instructions process ``L`` elements per pass of their routine; the sums and scans
that the numerics contract orders left to right run on the scalar part. The cycle count of every
instruction equals :class:`.vu_microcode.VectorISS`'s.
"""

from __future__ import annotations

from amaranth.hdl import Array, Cat, Const, Module, Mux, Signal
from amaranth.lib import data, stream, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from pimgpt.core.isa import Op

from .fp import check_int
from .fp32add import FP32Add
from .fp32mul import FP32Mul
from .isa_layout import InstrWord
from .scratchpad import (
    sp_read_signature,
    sp_wide_read_signature,
    sp_wide_write_signature,
    sp_write_signature,
)
from .vu_microcode import MAX_LANES, N_REGS, VU_OPS, UOp, build_microcode

__all__ = ["VectorUnit", "VectorUnitTop", "sreg_write_signature"]

ALU_UOPS = (UOp.ADD, UOp.SUB, UOp.AND, UOp.OR, UOp.XOR, UOp.SHL, UOp.SHR, UOp.SRA, UOp.SLT,
            UOp.SLTU, UOp.FLT)


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


def _alu(m: Module, op, a, b, name: str):
    """32-bit result of the integer/compare micro-op ``op`` on ``a`` and ``b``."""
    out = Signal(32, name=name)
    a_s, b_s = a.as_signed(), b.as_signed()
    with m.Switch(op):
        for uop, value in (
            (UOp.ADD, a + b), (UOp.SUB, a - b), (UOp.AND, a & b), (UOp.OR, a | b),
            (UOp.XOR, a ^ b), (UOp.SHL, a << b[:5]), (UOp.SHR, a >> b[:5]),
            (UOp.SRA, a_s >> b[:5]), (UOp.SLT, a_s < b_s), (UOp.SLTU, a < b),
            (UOp.FLT, _fp_lt(a, b)),
        ):
            with m.Case(uop):
                m.d.comb += out.eq(value)
    return out


class VectorUnit(wiring.Component):
    """Microcoded vector unit with ``lanes`` SIMD lanes.

    Parameters
    ----------
    sp_addr_width : int
        Scratchpad address width (``ceil_log2(scratchpad_words)``), 4..26.
    lanes : int
        SIMD lanes (``asic.vector_lanes``), a power of two 1..16.
    add_latency, mul_latency : int
        Pipeline latencies of the fp32 adders (1..3) and multipliers (1..2).

    Attributes
    ----------
    cmd : In(stream.Signature(InstrWord))
        Instructions; accepted only when the unit is idle (``ready``), one at a time.
    sp_rd, sp_wr : Out(sp_read_signature), Out(sp_write_signature)
        Scratchpad word ports (scalar ``LD``/``ST``).
    sp_vrd, sp_vwr : Out(sp_wide_read_signature), Out(sp_wide_write_signature)
        Scratchpad wide ports (vector ``LD``/``ST``; 16 words, the first ``lanes`` used).
    sreg : Out(sreg_write_signature())
        Scalar-register writes (``ARGMAX``).
    tap : Out(StructLayout)
        ``valid``/``data``: every word an ``ARGMAX`` loads, in index order (the logits; a test
        and debug port that costs no cycles).
    busy : Out(1)
        An instruction is executing.
    """

    def __init__(self, *, sp_addr_width: int = 14, lanes: int = MAX_LANES, add_latency: int = 1,
                 mul_latency: int = 1):
        self._aw = check_int("sp_addr_width", sp_addr_width, 4, 26)
        self._lanes = check_int("lanes", lanes, 1, MAX_LANES)
        if lanes & (lanes - 1):
            raise ValueError(f"lanes must be a power of two, not {lanes!r}")
        self._add_latency = check_int("add_latency", add_latency, 1, 3)
        self._mul_latency = check_int("mul_latency", mul_latency, 1, 2)
        self.microcode = build_microcode(lanes)
        super().__init__({
            "cmd": In(stream.Signature(InstrWord)),
            "sp_rd": Out(sp_read_signature(sp_addr_width)),
            "sp_wr": Out(sp_write_signature(sp_addr_width)),
            "sp_vrd": Out(sp_wide_read_signature(sp_addr_width, MAX_LANES)),
            "sp_vwr": Out(sp_wide_write_signature(sp_addr_width, MAX_LANES)),
            "sreg": Out(sreg_write_signature()),
            "tap": Out(data.StructLayout({"valid": 1, "data": 32})),
            "busy": Out(1),
        })

    @property
    def lanes(self) -> int:
        return self._lanes

    @property
    def add_latency(self) -> int:
        return self._add_latency

    @property
    def mul_latency(self) -> int:
        return self._mul_latency

    def elaborate(self, platform):  # noqa: C901 - one sequencer, kept in one place
        m = Module()
        mc = self.microcode
        L = self._lanes
        m.submodules.rom = rom = Memory(shape=64, depth=len(mc.words), init=mc.words)
        upc = Signal(range(len(mc.words)))
        rom_rd = rom.read_port(domain="comb")
        m.d.comb += rom_rd.addr.eq(upc)
        word = rom_rd.data

        op, rd, ra, rb = word[0:6], word[6:11], word[11:16], word[16:21]
        use_imm, vec, imm = word[21], word[22], word[32:64]

        # ---- scalar part ------------------------------------------------------------------
        regs = Array(Signal(32, name=f"r{i}") for i in range(N_REGS))
        a = Signal(32)
        b = Signal(32)
        d = Signal(32)
        m.d.comb += [a.eq(regs[ra]), b.eq(Mux(use_imm, imm, regs[rb])), d.eq(regs[rd])]
        m.submodules.fadd = fadd = FP32Add(latency=self._add_latency)
        m.submodules.fmul = fmul = FP32Mul(latency=self._mul_latency)
        m.d.comb += [fadd.i.payload.a.eq(a), fadd.i.payload.b.eq(b),
                     fmul.i.payload.a.eq(a), fmul.i.payload.b.eq(b)]
        addr = (a + b)[:self._aw]
        m.d.comb += [self.sp_rd.addr.eq(addr), self.sp_wr.addr.eq(addr), self.sp_wr.data.eq(d),
                     self.sp_vrd.addr.eq(addr), self.sp_vwr.addr.eq(addr)]
        alu = _alu(m, op, a, b, "alu")
        c = regs[rb]
        a_s, c_s = a.as_signed(), c.as_signed()
        taken = Signal()
        with m.Switch(op):
            for uop, value in ((UOp.BEQ, a == c), (UOp.BNE, a != c), (UOp.BLT, a_s < c_s),
                               (UOp.BGE, a_s >= c_s), (UOp.BLTU, a < c), (UOp.BGEU, a >= c)):
                with m.Case(uop):
                    m.d.comb += taken.eq(value)

        # ---- lanes ------------------------------------------------------------------------
        lane_layout = data.ArrayLayout(32, L)
        # Vector registers: a register-file memory, three combinational reads, one write.
        m.submodules.vrf = vrf = Memory(shape=lane_layout, depth=N_REGS, init=[])
        rd_a, rd_b, rd_d = (vrf.read_port(domain="comb") for _ in range(3))
        vrf_w = vrf.write_port()
        va = Signal(lane_layout)
        vb = Signal(lane_layout)
        vd = Signal(lane_layout)
        m.d.comb += [rd_a.addr.eq(ra), rd_b.addr.eq(rb), rd_d.addr.eq(rd),
                     va.eq(rd_a.data), vd.eq(rd_d.data)]
        with m.If(use_imm):
            m.d.comb += [vb[k].eq(imm) for k in range(L)]
        with m.Else():
            m.d.comb += vb.eq(rd_b.data)
        vl = Signal(range(L + 1))
        valu = Signal(lane_layout)
        vcmov = Signal(lane_layout)
        vbcast = Signal(lane_layout)
        vadds, vmuls = [], []
        for k in range(L):
            add = FP32Add(latency=self._add_latency)
            mul = FP32Mul(latency=self._mul_latency)
            m.submodules[f"vadd{k}"] = add
            m.submodules[f"vmul{k}"] = mul
            vadds.append(add)
            vmuls.append(mul)
            m.d.comb += [add.i.payload.a.eq(va[k]), add.i.payload.b.eq(vb[k]),
                         mul.i.payload.a.eq(va[k]), mul.i.payload.b.eq(vb[k]),
                         valu[k].eq(_alu(m, op, va[k], vb[k], f"valu{k}")),
                         vcmov[k].eq(Mux(va[k] != 0, vb[k], vd[k])),
                         vbcast[k].eq(Mux(use_imm, imm, a))]
            m.d.comb += [self.sp_vwr.data[k].eq(vd[k])]
        m.d.comb += self.sp_vwr.mask.eq(0)  # default; set by vector ST below

        pending = Signal(5)  # destination of an outstanding load / fp op
        cur_op = Signal(16)  # the ASIC opcode being executed

        def write(reg, value):
            with m.If(reg != 0):
                m.d.sync += regs[reg].eq(value)

        def vwrite(reg, value):
            m.d.comb += [vrf_w.addr.eq(reg), vrf_w.data.eq(value), vrf_w.en.eq(1)]

        def vresult(units):
            return Cat(*[u.o.payload.as_value() for u in units])

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
                with m.If(vec):
                    with m.Switch(op):
                        with m.Case(*[int(u) for u in ALU_UOPS]):
                            vwrite(rd, valu)
                        with m.Case(UOp.FADD):
                            m.d.comb += [u.i.valid.eq(1) for u in vadds]
                            m.d.sync += pending.eq(rd)
                            m.next = "WAIT_VADD"
                        with m.Case(UOp.FMUL):
                            m.d.comb += [u.i.valid.eq(1) for u in vmuls]
                            m.d.sync += pending.eq(rd)
                            m.next = "WAIT_VMUL"
                        with m.Case(UOp.LD):
                            m.d.comb += self.sp_vrd.en.eq(1)
                            m.d.sync += pending.eq(rd)
                            m.next = "WAIT_VLD"
                        with m.Case(UOp.ST):
                            m.d.comb += self.sp_vwr.mask.eq(
                                Cat(*[vl > k for k in range(L)]))
                        with m.Case(UOp.CMOV):
                            vwrite(rd, vcmov)
                        with m.Case(UOp.BCAST):
                            vwrite(rd, vbcast)
                with m.Else():
                    with m.Switch(op):
                        with m.Case(*[int(u) for u in ALU_UOPS]):
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
                        with m.Case(UOp.SETVL):
                            m.d.sync += vl.eq(Mux(a < L, a, L))
                        with m.Case(UOp.DONE):
                            m.next = "IDLE"
            # Waiting states hold upc (already advanced) and write the result when it arrives.
            for state, unit in (("WAIT_ADD", fadd), ("WAIT_MUL", fmul)):
                with m.State(state):
                    m.d.comb += self.busy.eq(1)
                    with m.If(unit.o.valid):
                        write(pending, unit.o.payload.as_value())
                        m.next = "RUN"
            for state, units in (("WAIT_VADD", vadds), ("WAIT_VMUL", vmuls)):
                with m.State(state):
                    m.d.comb += self.busy.eq(1)
                    with m.If(units[0].o.valid):
                        vwrite(pending, vresult(units))
                        m.next = "RUN"
            with m.State("WAIT_LD"):
                m.d.comb += [self.busy.eq(1), self.tap.valid.eq(cur_op == int(Op.ARGMAX)),
                             self.tap.data.eq(self.sp_rd.data)]
                write(pending, self.sp_rd.data)
                m.next = "RUN"
            with m.State("WAIT_VLD"):
                m.d.comb += self.busy.eq(1)
                vwrite(pending, Cat(*[self.sp_vrd.data[k] for k in range(L)]))
                m.next = "RUN"
        return m


class VectorUnitTop(wiring.Component):
    """A vector unit with its own scratchpad and host ports (block tests, benchmarks).

    Parameters
    ----------
    words : int
        Scratchpad size (fp32 words, a multiple of 16).
    lanes, add_latency, mul_latency : int
        Passed to :class:`VectorUnit`.

    Attributes
    ----------
    cmd : In(stream.Signature(InstrWord))
    host_rd, host_wr : In(sp_read_signature), In(sp_write_signature)
        Scratchpad access for the testbench.
    sreg, tap, busy : Out
        The vector unit's ports.
    """

    def __init__(self, words: int = 4096, *, lanes: int = MAX_LANES, add_latency: int = 1,
                 mul_latency: int = 1):
        from amaranth.utils import ceil_log2

        self.words = check_int("words", words, 16, 1 << 26)
        self.aw = max(4, ceil_log2(words))
        self._lat = (add_latency, mul_latency)
        self._lanes = lanes
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
        m.submodules.vu = vu = VectorUnit(sp_addr_width=self.aw, lanes=self._lanes,
                                          add_latency=self._lat[0], mul_latency=self._lat[1])
        m.submodules.sp = sp = Scratchpad(self.words, word_read_ports=2, word_write_ports=2,
                                          wide_ports=2)
        wiring.connect(m, wiring.flipped(self.cmd), vu.cmd)
        wiring.connect(m, vu.sp_rd, sp.rd0)
        wiring.connect(m, vu.sp_wr, sp.wr0)
        wiring.connect(m, wiring.flipped(self.host_rd), sp.rd1)
        wiring.connect(m, wiring.flipped(self.host_wr), sp.wr1)
        wiring.connect(m, vu.sreg, wiring.flipped(self.sreg))
        m.d.comb += [self.tap.eq(vu.tap), self.busy.eq(vu.busy)]
        wiring.connect(m, vu.sp_vrd, sp.wide_rd1)
        wiring.connect(m, vu.sp_vwr, sp.wide_wr1)
        m.d.comb += [sp.wide_rd.en.eq(0), sp.wide_wr.mask.eq(0)]
        return m

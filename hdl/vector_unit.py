"""The ASIC vector unit: the micro-architecture of ``pimgpt/core/vu`` in RTL.

Each ASIC instruction (``VADD`` ... ``LAYERNORM``, ``ARGMAX``, ``VFILL``) runs its routine from
the microcode ROM that ``pimgpt.core.vu.cost.microcode_for`` assembles for the configuration; the
cycle rules and the semantics of every micro-operation are those of ``pimgpt/core/vu/uisa.py``,
so results are bit for bit the golden model's and cycles are the ISS's (and therefore the perf
model's). Blocks:

* :class:`~.vu_seq.Sequencer`: ROM, in-order dual issue, scoreboard, write-port reservations,
  hardware loops, scalar registers and ALU;
* :class:`~.vu_lanes.VectorLanes`: ``W`` lanes (multiply-add pipelines, integer/compare/select
  units) and the lane network;
* :class:`VRegFile`: 32 vector registers of ``W`` x 32 bits (flip-flops), eight read ports (three
  per FP and INT operation, the stored register of ``VST``, the register of ``SMOVV``) and the two
  write ports F and I;
* the memory stage here: ``VLD``/``VST`` of ``W`` consecutive scratchpad words at any alignment
  masked by the address window ``[lo, hi)``, loads filled and written through port I
  ``asic.sp_read_latency`` cycles after issue.

``ARGMAX``'s and ``ARGMAXC``'s loads also leave on the ``tap`` port (the logits they scan, with
each block's element index from the piece's first word: ``src``, or ``src + lo`` for
``ARGMAXC``, whose load of ``src[R[reg]]`` thus has a negative index, a word of an earlier piece),
which costs no cycles. ``RSR`` reads the front end's registers on the ``rsr`` port.
"""

from __future__ import annotations

from amaranth.hdl import Array, Cat, Module, Mux, Signal
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out
from amaranth.utils import ceil_log2

from pimgpt.core.config import ConfigError, HwConfig
from pimgpt.core.isa import Op
from pimgpt.core.vu import uisa
from pimgpt.core.vu.cost import microcode_for, pipeline_of
from pimgpt.core.vu.iss import Microcode
from pimgpt.core.vu.uisa import MODE_CIMM, BSel, Fill, Pipeline, UOp

from .fp import check_int
from .isa_layout import InstrWord, opcode
from .scratchpad import sp_wide_read_signature, sp_wide_write_signature
from .vu_decode import uop
from .vu_lanes import VectorLanes, delay, write_port_layout
from .vu_seq import TRACE, Sequencer, sreg_read_signature, sreg_write_signature

__all__ = ["VectorUnit", "VectorUnitTop", "VRegFile", "READ_PORTS", "sreg_write_signature",
           "tap_layout"]

_FILL = {Fill.NEG_ZERO: 0x80000000, Fill.NEG_INF: 0xFF800000, Fill.POS_ZERO: 0}
#: Read ports of the register file, by use.
READ_PORTS = ("fa", "fb", "fc", "ia", "ib", "ic", "st", "mv")


def tap_layout(lanes: int) -> data.StructLayout:
    """The logit tap: a block ``ARGMAX``/``ARGMAXC`` loaded (element index of lane 0 from the
    piece's first word, 32-bit two's complement; lanes inside the vector; their words), and the
    end of one (``end``, with the piece's length ``count``)."""
    return data.StructLayout({"valid": 1, "index": 32, "mask": lanes,
                              "data": data.ArrayLayout(32, lanes), "end": 1, "count": 32})


#: The least scratchpad read latency the RTL vector unit takes (a synchronous read, then the
#: lanes' alignment); the performance model accepts 1.
MIN_SP_READ_LATENCY = 2


def check_vector_unit_hw(hw: HwConfig) -> None:
    """Refuse a vector unit the RTL does not build.

    Parameters
    ----------
    hw : HwConfig

    Raises
    ------
    ConfigError
        For ``asic.vector_unit_ideal`` (the performance model's what-if) and an
        ``asic.sp_read_latency`` below :data:`MIN_SP_READ_LATENCY`.
    """
    if hw.asic.vector_unit_ideal:
        raise ConfigError(f"{hw.name}: asic.vector_unit_ideal is a what-if of the performance "
                          "model (every vector instruction in one cycle) that no RTL builds; "
                          "set it false")
    if hw.asic.sp_read_latency < MIN_SP_READ_LATENCY:
        raise ConfigError(f"{hw.name}: asic.sp_read_latency {hw.asic.sp_read_latency} must be at "
                          f"least {MIN_SP_READ_LATENCY} in the RTL (the scratchpad read is "
                          "synchronous, then the lanes take the words)")


class VRegFile(wiring.Component):
    """32 vector registers of ``lanes`` words: read ports :data:`READ_PORTS` (combinational),
    write ports ``wf`` and ``wi`` (the sequencer never lets both write one register at once)."""

    def __init__(self, lanes: int):
        self.lanes = uisa.check_lanes(lanes)
        vec = data.ArrayLayout(32, lanes)
        members = {}
        for p in READ_PORTS:
            members[f"{p}_addr"] = In(5)
            members[f"{p}_data"] = Out(vec)
        members.update(wf=In(write_port_layout(lanes)), wi=In(write_port_layout(lanes)))
        super().__init__(members)

    def elaborate(self, platform):
        m = Module()
        regs = [Signal(data.ArrayLayout(32, self.lanes), name=f"v{r}")
                for r in range(uisa.N_VREGS)]
        arr = Array(regs)
        for p in READ_PORTS:
            m.d.comb += getattr(self, f"{p}_data").eq(arr[getattr(self, f"{p}_addr")])
        for r, reg in enumerate(regs):
            with m.If(self.wf.en & (self.wf.rd == r)):
                m.d.sync += reg.eq(self.wf.data)
            with m.Elif(self.wi.en & (self.wi.rd == r)):
                m.d.sync += reg.eq(self.wi.data)
        return m


class VectorUnit(wiring.Component):
    """The vector unit (see the module docstring).

    Parameters
    ----------
    lanes : int
        SIMD lanes (``asic.vector_lanes``: 16, 32, 64 or 128).
    lat : Pipeline
        Latencies and issue width (``pimgpt.core.vu.cost.pipeline_of(hw)``); ``lat.load`` >= 2
        (one cycle of synchronous SRAM read, the rest pipeline).
    sp_addr_width : int
        Scratchpad address width, 4..26.
    microcode : Microcode, optional
        The ROM (default: ``microcode_for(lanes, lat)``, the one the perf model costs).

    Attributes
    ----------
    cmd : In(stream.Signature(InstrWord))
        Instructions; taken only while idle (``ready``), one at a time.
    sp_rd, sp_wr : Out(sp_wide_read_signature), Out(sp_wide_write_signature)
        ``lanes`` consecutive scratchpad words (read data one cycle after ``en``).
    sreg : Out(sreg_write_signature())
        Front-end register writes (``ARGMAX``, ``ARGMAXC``).
    rsr : Out(sreg_read_signature())
        Front-end register reads (``ARGMAXC``).
    tap : Out(tap_layout(lanes))
        ``ARGMAX``'s and ``ARGMAXC``'s loads (a test and debug port that costs no cycles).
    busy : Out(1)
    trace : Out(TRACE)
        Micro-operations issued this cycle and the ``pc`` of the first.
    """

    #: The lanes block (an area breakdown replaces its per-lane parts; see bench_rtl_system).
    LANES = VectorLanes

    def __init__(self, *, lanes: int = 16, lat: Pipeline | None = None,
                 sp_addr_width: int = 14, microcode: Microcode | None = None):
        self.lanes = uisa.check_lanes(lanes)
        lat = Pipeline() if lat is None else lat
        if not isinstance(lat, Pipeline):
            raise TypeError(f"lat must be a uisa.Pipeline, not {lat!r}")
        if lat.load < MIN_SP_READ_LATENCY:
            raise ValueError(f"sp_read_latency {lat.load} must be >= {MIN_SP_READ_LATENCY} in "
                             "RTL (the scratchpad read is synchronous, then the lanes take the "
                             "words)")
        self.lat = lat
        self._aw = check_int("sp_addr_width", sp_addr_width, 4, 26)
        self.microcode = microcode_for(lanes, lat) if microcode is None else microcode
        if self.microcode.lanes != lanes or self.microcode.lat != lat:
            raise ValueError("microcode was assembled for other lanes or latencies")
        super().__init__({
            "cmd": In(stream.Signature(InstrWord)),
            "sp_rd": Out(sp_wide_read_signature(sp_addr_width, lanes)),
            "sp_wr": Out(sp_wide_write_signature(sp_addr_width, lanes)),
            "sreg": Out(sreg_write_signature()),
            "rsr": Out(sreg_read_signature()),
            "tap": Out(tap_layout(lanes)),
            "busy": Out(1),
            "trace": Out(TRACE),
        })

    @classmethod
    def from_hw(cls, hw: HwConfig, sp_addr_width: int) -> VectorUnit:
        """The vector unit of a hardware configuration."""
        check_vector_unit_hw(hw)
        return cls(lanes=hw.asic.vector_lanes, lat=pipeline_of(hw), sp_addr_width=sp_addr_width)

    def elaborate(self, platform):
        m = Module()
        W = self.lanes
        m.submodules.seq = seq = Sequencer(self.microcode)
        m.submodules.lanes = lanes = self.LANES(W, self.lat)
        m.submodules.vrf = vrf = VRegFile(W)
        wiring.connect(m, wiring.flipped(self.cmd), seq.cmd)
        wiring.connect(m, seq.sreg, wiring.flipped(self.sreg))
        wiring.connect(m, seq.rsr, wiring.flipped(self.rsr))
        m.d.comb += [self.busy.eq(seq.busy), self.trace.eq(seq.trace)]

        def port(p, reg):
            m.d.comb += getattr(vrf, f"{p}_addr").eq(reg)
            return getattr(vrf, f"{p}_data")

        def operand_b(slot, reg_value, name):
            w = slot.word
            out = Signal(data.ArrayLayout(32, W), name=name)
            scalar = Mux(w.bsel == BSel.IMM, w.imm, slot.sb)
            with m.If(w.bsel == BSel.REG):
                m.d.comb += out.eq(reg_value)
            with m.Else():
                m.d.comb += [out[k].eq(scalar) for k in range(W)]
            return out

        fw, iw = seq.fp.word, seq.vint.word
        fc = port("fc", fw.rc)
        cimm = (fw.op == uop(UOp.VMAD)) & ((fw.mode & MODE_CIMM) != 0)
        m.d.comb += [
            lanes.fp.valid.eq(seq.fp.valid), lanes.fp.op.eq(fw.op), lanes.fp.rd.eq(fw.rd),
            lanes.fp.mode.eq(fw.mode),
            lanes.fa.eq(port("fa", fw.ra)),
            lanes.fb.eq(operand_b(seq.fp, port("fb", fw.rb), "fp_b")),
            lanes.vint.valid.eq(seq.vint.valid), lanes.vint.op.eq(iw.op), lanes.vint.rd.eq(iw.rd),
            lanes.vint.mode.eq(iw.mode),
            lanes.ia.eq(port("ia", iw.ra)),
            lanes.ib.eq(operand_b(seq.vint, port("ib", iw.rb), "int_b")),
            lanes.ic.eq(port("ic", Mux(iw.op == uop(UOp.VCMOV), iw.rd, iw.rc))),
        ]
        with m.If(cimm):
            m.d.comb += [lanes.fc[k].eq(fw.imm) for k in range(W)]
        with m.Else():
            m.d.comb += lanes.fc.eq(fc)
        mv = port("mv", seq.smovv_reg)
        m.d.comb += seq.smovv_data.eq(Array(mv[k] for k in range(W))[seq.smovv_lane])
        m.d.comb += vrf.wf.eq(lanes.wf)
        self._memory(m, seq, lanes, vrf, port)
        return m

    def _memory(self, m, seq, lanes, vrf, port):
        """``VLD``/``VST``: window mask, store, load fill and delay, port I, the logit tap."""
        W, aw = self.lanes, self._aw
        slot = seq.mem
        w = slot.word
        is_ld = slot.valid & (w.op == uop(UOp.VLD))
        is_st = slot.valid & (w.op == uop(UOp.VST))
        inside = Signal(W)
        for k in range(W):
            addr = (slot.addr + k)[:32]
            m.d.comb += inside[k].eq((addr >= slot.lo) & (addr < slot.hi))
        m.d.comb += [self.sp_rd.addr.eq(slot.addr[:aw]), self.sp_rd.en.eq(is_ld),
                     self.sp_wr.addr.eq(slot.addr[:aw]),
                     self.sp_wr.mask.eq(Mux(is_st, inside, 0)),
                     self.sp_wr.data.eq(port("st", w.rd))]
        # The piece's first word and length, kept for the tap: ARGMAX src, n (fields 2, 3);
        # ARGMAXC src + lo, n (fields 2 + 3, 4).
        src, count = Signal(32), Signal(32)
        f = self.cmd.payload.f
        chained = self.cmd.payload.op == opcode(Op.ARGMAXC)
        with m.If(self.cmd.valid & self.cmd.ready):
            m.d.sync += [src.eq(Mux(chained, f[1] + f[2], f[1])),
                         count.eq(Mux(chained, f[3], f[2]))]
        argmax = (seq.op == int(Op.ARGMAX)) | (seq.op == int(Op.ARGMAXC))
        ld = data.StructLayout({"valid": 1, "rd": 5, "mask": W, "fill": 32, "tap": 1,
                                "index": 32})
        q = Signal(ld)  # the load whose words arrive this cycle
        fill = Signal(32)
        with m.Switch(w.mode):
            for f, bits in _FILL.items():
                with m.Case(int(f)):
                    m.d.comb += fill.eq(bits)
        m.d.sync += [q.valid.eq(is_ld), q.rd.eq(w.rd), q.mask.eq(inside), q.fill.eq(fill),
                     q.tap.eq(is_ld & argmax), q.index.eq(slot.addr - src)]
        words = Signal(data.ArrayLayout(32, W))
        m.d.comb += [words[k].eq(Mux(q.mask[k], self.sp_rd.data[k], q.fill)) for k in range(W)]
        late = delay(m, Cat(q.valid, q.rd, words.as_value()), self.lat.load - 2, "ld")
        ld_valid, ld_rd, ld_words = late[0], late[1:6], late[6:]
        wi = lanes.wi
        m.d.comb += [vrf.wi.en.eq(wi.en | ld_valid), vrf.wi.rd.eq(Mux(ld_valid, ld_rd, wi.rd)),
                     vrf.wi.data.eq(Mux(ld_valid, ld_words, wi.data.as_value()))]
        m.d.comb += [self.tap.valid.eq(q.valid & q.tap), self.tap.index.eq(q.index),
                     self.tap.mask.eq(q.mask),
                     self.tap.data.eq(self.sp_rd.data.as_value()),
                     self.tap.end.eq(seq.done & argmax), self.tap.count.eq(count)]


class VectorUnitTop(wiring.Component):
    """A vector unit with its own scratchpad, front-end registers ``R0..R15`` (written by its
    ``WSR``, read by its ``RSR``) and host ports (block tests, benchmarks).

    Parameters
    ----------
    words : int
        Scratchpad size (fp32 words, a multiple of ``lanes``).
    lanes : int
    lat : Pipeline, optional

    Attributes
    ----------
    cmd : In(stream.Signature(InstrWord))
    host_rd, host_wr : In(sp_read_signature), In(sp_write_signature)
        Scratchpad access for the testbench.
    sreg, tap, busy, trace : Out
        The vector unit's ports.
    """

    def __init__(self, words: int = 4096, *, lanes: int = 16, lat: Pipeline | None = None):
        from .scratchpad import sp_read_signature, sp_write_signature

        self.lanes = uisa.check_lanes(lanes)
        self.words = check_int("words", words, lanes, 1 << 26)
        if words % lanes:
            raise ValueError(f"words ({words}) must be a multiple of lanes ({lanes})")
        self.aw = max(4, ceil_log2(words))
        self.lat = Pipeline() if lat is None else lat
        super().__init__({
            "cmd": In(stream.Signature(InstrWord)),
            "host_rd": In(sp_read_signature(self.aw)),
            "host_wr": In(sp_write_signature(self.aw)),
            "sreg": Out(sreg_write_signature()),
            "tap": Out(tap_layout(lanes)),
            "busy": Out(1),
            "trace": Out(TRACE),
        })

    def elaborate(self, platform):
        from .scratchpad import Scratchpad

        m = Module()
        m.submodules.vu = vu = VectorUnit(lanes=self.lanes, lat=self.lat, sp_addr_width=self.aw)
        m.submodules.sp = sp = Scratchpad(self.words, lanes=self.lanes, word_read_ports=1,
                                          word_write_ports=1, wide_ports=1)
        wiring.connect(m, wiring.flipped(self.cmd), vu.cmd)
        wiring.connect(m, wiring.flipped(self.host_rd), sp.rd0)
        wiring.connect(m, wiring.flipped(self.host_wr), sp.wr0)
        wiring.connect(m, vu.sp_rd, sp.wide_rd)
        wiring.connect(m, vu.sp_wr, sp.wide_wr)
        wiring.connect(m, vu.sreg, wiring.flipped(self.sreg))
        # The front end's registers R0..R15 as the unit sees them (its own writes).
        regs = Array(Signal(32, name=f"R{i}") for i in range(16))
        with m.If(vu.sreg.en):
            m.d.sync += regs[vu.sreg.idx].eq(vu.sreg.data)
        m.d.comb += vu.rsr.data.eq(regs[vu.rsr.idx])
        m.d.comb += [self.tap.eq(vu.tap), self.busy.eq(vu.busy), self.trace.eq(vu.trace)]
        return m


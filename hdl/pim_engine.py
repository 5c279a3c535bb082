"""The PIM command generator: expands PIM instructions into channel ops for the schedulers.

Instructions (``WR_GB`` ... ``WR_ELEM``, ``docs/isa.md``) arrive one at a time; each becomes, per
selected channel, the op sequence the perf engine schedules (``sim/perf``), so the RTL and the perf
model issue the same DRAM commands. The engine is a chain of components joined by typed streams
(payloads in :mod:`.pim_ops`)::

    instr ─► PimDecode ─┬─ run ──────────────► ColumnRunGen ─┐
                        ├─ region ─► RegionGen ─ run ─┘        │
                        ├─ acc ────► AccGen ───────────────────┼─► IssueStage ─► ch0 .. ch{C-1}
                        └─ elem ───► ElemWaveGen ──────────────┘     │  │  tags
              HazardTracker ◄── ranges from isa.SPEC                 │  └──► ReturnWriter ◄─ ret
                                                        scratchpad ◄─┘ (read)      │ (write)

* :class:`PimDecode` reads the instruction's named fields (:class:`.isa_layout.InstrWord`, one
  ``m.Switch`` on the opcode enum) into the command of the generator for its class, and accepts an
  instruction only when every generator is idle, the issue stage can take an op and the
  :class:`.pim_hazard.HazardTracker` lets it pass: ops of consecutive instructions never
  interleave, and a PIM instruction that reads the scratchpad waits for earlier reads of the words
  it reads (as in the perf model);
* the generators (:mod:`.pim_gen`, :mod:`.pim_wave`) produce one op per cycle;
* :class:`.pim_issue.IssueStage` gathers and converts the operand words and pushes each op into
  its channels' queues; :class:`.pim_issue.ReturnWriter` writes read data back.
"""

from __future__ import annotations

from amaranth.hdl import Cat, Const, Module, Mux
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out
from amaranth.utils import ceil_log2

from pimgpt.core.config import HwConfig
from pimgpt.core.isa import Op

from .dram_timing import DramCmd
from .fp import check_int
from .isa_layout import InstrWord, opcode
from .pim_gen import AccGen, ColumnRunGen, RegionGen
from .pim_hazard import HazardTracker
from .pim_issue import IssueStage, ReturnWriter, tag_port
from .pim_ops import (
    DataMode,
    TagKind,
    acc_cmd_layout,
    bf16_to_f32,
    check_engine_args,
    elem_cmd_layout,
    f32_to_bf16,
    popcount,
    region_cmd_layout,
    return_signature,
    run_layout,
)
from .pim_sched import chop_layout
from .pim_wave import ElemWaveGen
from .scratchpad import sp_wide_read_signature, sp_wide_write_signature

__all__ = ["PimEngine", "PimDecode", "SUPPORTED_OPS", "f32_to_bf16", "bf16_to_f32",
           "return_signature"]

#: Instructions that are one run of columns, and their DRAM command.
_RUN_CMDS = {Op.WR_GB: DramCmd.WRGB, Op.MAC_ABK: DramCmd.MAC16, Op.MAC_SBK: DramCmd.MAC,
             Op.COPY_BKGB: DramCmd.RDCP, Op.COPY_GBBK: DramCmd.WRCP, Op.WR_SBK: DramCmd.WR,
             Op.RD_SBK: DramCmd.RD, Op.WR_ABK: DramCmd.WR16}
#: The PIM instructions the engine expands (the front end stops with ``error`` on any other).
SUPPORTED_OPS = frozenset(_RUN_CMDS) | {Op.RD_VEC, Op.WR_VEC, Op.WR_ELEM, Op.RD_MAC, Op.WR_BIAS}


class PimDecode(wiring.Component):
    """Instruction decode: named fields into the command of one generator.

    Attributes
    ----------
    instr : In(stream.Signature(InstrWord))
        PIM instructions; taken when ``free`` (every generator idle, the issue stage ready) and not
        ``block``. ``SYNC``/``EOC`` and unknown opcodes are taken and dropped.
    free, block : In(1)
    run, region, acc, elem : Out(stream.Signature(...))
        Commands of :class:`.pim_gen.ColumnRunGen`, :class:`.pim_gen.RegionGen`,
        :class:`.pim_gen.AccGen`, :class:`.pim_wave.ElemWaveGen` (valid in the cycle the
        instruction is taken; the generators are idle then, so ready).
    accept : Out(1)
        An instruction is taken this cycle.
    """

    def __init__(self, hw: HwConfig, *, sp_addr_width: int):
        self._aw = check_engine_args(hw, sp_addr_width)
        self.hw = hw
        super().__init__({
            "instr": In(stream.Signature(InstrWord)), "free": In(1), "block": In(1),
            "run": Out(stream.Signature(run_layout(hw, self._aw))),
            "region": Out(stream.Signature(region_cmd_layout())),
            "acc": Out(stream.Signature(acc_cmd_layout(hw))),
            "elem": Out(stream.Signature(elem_cmd_layout())),
            "accept": Out(1),
        })

    def elaborate(self, platform):
        m = Module()
        d = self.hw.dram
        C, B, RE = d.channels, d.banks, d.row_elems
        ins = self.instr.payload
        m.d.comb += [self.instr.ready.eq(self.free & ~self.block),
                     self.accept.eq(self.instr.valid & self.instr.ready)]
        go = self.accept
        r = self.run.payload
        all_banks = (1 << B) - 1

        def one_bank(bank):
            return Const(1, B) << bank[:max(1, ceil_log2(B))]

        with m.Switch(ins.op):
            for op, cmd in _RUN_CMDS.items():
                with m.Case(opcode(op)):
                    a = ins.args_of(op)
                    m.d.comb += [self.run.valid.eq(go), r.cmd.eq(cmd)]
                    if op == Op.WR_GB:  # GB columns: no rows
                        m.d.comb += [r.chm.eq(a.ch_mask), r.end.eq(a.ncols * 16), r.spp.eq(a.src),
                                     r.gbc.eq(a.gb_col), r.dmode.eq(DataMode.BF16),
                                     r.rowless.eq(1)]
                    elif op in (Op.MAC_ABK, Op.MAC_SBK, Op.COPY_BKGB, Op.COPY_GBBK):
                        m.d.comb += [r.chm.eq(a.ch_mask), r.cur.eq(a.row * RE + a.col * 16),
                                     r.end.eq(a.row * RE + (a.col + a.ncols) * 16),
                                     r.gbc.eq(a.gb_col)]
                        if op == Op.MAC_ABK:
                            m.d.comb += r.bmask.eq(all_banks)
                        else:
                            m.d.comb += [r.fpi.eq(a.bank), r.bmask.eq(one_bank(a.bank))]
                        if op in (Op.MAC_ABK, Op.MAC_SBK):
                            m.d.comb += r.acc.eq(a.acc)
                    elif op in (Op.WR_SBK, Op.RD_SBK):
                        chm = Const(1, C) << a.ch[:max(1, ceil_log2(C))]
                        m.d.comb += [r.chm.eq(Mux(a.ch < C, chm, 0)),
                                     r.fpi.eq(a.bank), r.bmask.eq(one_bank(a.bank)),
                                     r.cur.eq(a.row * RE + a.elem),
                                     r.end.eq(a.row * RE + a.elem + a.n)]
                        if op == Op.WR_SBK:
                            m.d.comb += [r.spp.eq(a.src), r.dmode.eq(DataMode.BF16)]
                        else:
                            m.d.comb += [r.spp.eq(a.dst), r.reading.eq(1)]
                    else:  # WR_ABK
                        m.d.comb += [r.chm.eq(a.ch_mask), r.bmask.eq(all_banks),
                                     r.cur.eq(a.row * RE + a.elem),
                                     r.end.eq(a.row * RE + a.elem + a.n), r.spp.eq(a.src),
                                     r.dmode.eq(DataMode.BF16)]
            for op in (Op.RD_VEC, Op.WR_VEC):
                with m.Case(opcode(op)):
                    a = ins.args_of(op)
                    g = self.region.payload
                    m.d.comb += [self.region.valid.eq(go), g.read.eq(op == Op.RD_VEC),
                                 g.sp.eq(a.dst if op == Op.RD_VEC else a.src)]
                    m.d.comb += [getattr(g, f).eq(getattr(a, f))
                                 for f in ("n", "vec", "region_row", "n_local", "vec_len")]
            with m.Case(opcode(Op.WR_ELEM)):
                a = ins.args_of(Op.WR_ELEM)
                g = self.elem.payload
                m.d.comb += [self.elem.valid.eq(go), g.sp.eq(a.src)]
                m.d.comb += [getattr(g, f).eq(getattr(a, f))
                             for f in ("n", "vec", "region_row", "n_local", "vec_len", "elem")]
            for op in (Op.RD_MAC, Op.WR_BIAS):
                with m.Case(opcode(op)):
                    a = ins.args_of(op)
                    g = self.acc.payload
                    m.d.comb += [self.acc.valid.eq(go), g.write.eq(op == Op.WR_BIAS),
                                 g.chm.eq(a.ch_mask), g.sp.eq(a.dst if op == Op.RD_MAC else a.src),
                                 g.acc.eq(a.acc), g.nacc.eq(a.nacc)]
        return m


class PimEngine(wiring.Component):
    """PIM instruction expander (see the module docstring).

    Parameters
    ----------
    hw : HwConfig
        Hardware configuration.
    sp_addr_width : int
        Scratchpad address width.
    tag_depth : int
        Outstanding reads per channel and kind (2..256).

    Attributes
    ----------
    instr : In(stream.Signature(InstrWord))
        PIM instructions (``RD_VEC``'s register operand already substituted).
    ch : list of Out(stream.Signature(chop_layout(hw)))
        Channel ops, ``ch0`` .. ``ch{C-1}``.
    ret : list of In(return_signature(hw))
        Read data from the channels, ``ret0`` ...
    sp_rd, sp_wr : Out(wide scratchpad ports)
    busy : Out(1)
        An instruction is being expanded, an op is waiting to be queued or a read is outstanding.
    """

    def __init__(self, hw: HwConfig, *, sp_addr_width: int, tag_depth: int = 16):
        self._aw = check_engine_args(hw, sp_addr_width)
        self.hw = hw
        self._tag_depth = check_int("tag_depth", tag_depth, 2, 256)
        members = {"instr": In(stream.Signature(InstrWord))}
        for c in range(hw.dram.channels):
            members[f"ch{c}"] = Out(stream.Signature(chop_layout(hw)))
            members[f"ret{c}"] = In(return_signature(hw))
        members.update({
            "sp_rd": Out(sp_wide_read_signature(sp_addr_width, 16)),
            "sp_wr": Out(sp_wide_write_signature(sp_addr_width, 16)),
            "busy": Out(1),
        })
        super().__init__(members)

    @property
    def ch(self) -> list:
        return [getattr(self, f"ch{c}") for c in range(self.hw.dram.channels)]

    @property
    def ret(self) -> list:
        return [getattr(self, f"ret{c}") for c in range(self.hw.dram.channels)]

    def elaborate(self, platform):
        m = Module()
        hw, aw = self.hw, self._aw
        C = hw.dram.channels
        m.submodules.decode = dec = PimDecode(hw, sp_addr_width=aw)
        m.submodules.runs = runs = ColumnRunGen(hw, sp_addr_width=aw)
        m.submodules.region = region = RegionGen(hw, sp_addr_width=aw)
        m.submodules.accs = accs = AccGen(hw, sp_addr_width=aw)
        m.submodules.elems = elems = ElemWaveGen(hw, sp_addr_width=aw)
        m.submodules.issue = issue = IssueStage(hw, sp_addr_width=aw)
        m.submodules.writer = writer = ReturnWriter(hw, sp_addr_width=aw,
                                                    tag_depth=self._tag_depth)
        m.submodules.hazard = hazard = HazardTracker(hw, sp_addr_width=aw)

        wiring.connect(m, wiring.flipped(self.instr), dec.instr)
        wiring.connect(m, dec.region, region.cmd)
        wiring.connect(m, dec.acc, accs.cmd)
        wiring.connect(m, dec.elem, elems.cmd)
        # Runs come from the decoder or the region generator (never both: one is idle).
        m.d.comb += [
            runs.run.valid.eq(dec.run.valid | region.run.valid),
            runs.run.payload.eq(Mux(region.run.valid, region.run.payload.as_value(),
                                    dec.run.payload.as_value())),
            dec.run.ready.eq(runs.run.ready), region.run.ready.eq(runs.run.ready),
        ]
        # Ops from whichever generator is active.
        gens = [runs.o, accs.o, elems.o]
        payload = gens[0].payload.as_value()
        for g in gens[1:]:
            payload = Mux(g.valid, g.payload.as_value(), payload)
        m.d.comb += [issue.i.valid.eq(Cat(*[g.valid for g in gens]).any()),
                     issue.i.payload.eq(payload)]
        m.d.comb += [g.ready.eq(issue.i.ready) for g in gens]
        op = issue.i.payload
        took_tag = issue.i.valid & issue.i.ready & op.tag

        generating = Cat(runs.busy, region.busy, accs.busy, elems.busy).any()
        m.d.comb += [
            dec.free.eq(~generating & issue.i.ready), dec.block.eq(hazard.block),
            hazard.ins.eq(self.instr.payload), hazard.accept.eq(dec.accept),
            hazard.idle.eq(~generating),
            hazard.tag_push.eq(Mux(took_tag, popcount(op.chm, C), 0)),
            hazard.done.eq(writer.done),
            issue.ent.eq(hazard.ent), issue.new_instr.eq(dec.accept),
        ]
        for c in range(C):
            wiring.connect(m, getattr(issue, f"ch{c}"), wiring.flipped(self.ch[c]))
            for k in TagKind:
                wiring.connect(m, getattr(issue, tag_port(c, k)), getattr(writer, tag_port(c, k)))
            wiring.connect(m, wiring.flipped(self.ret[c]), getattr(writer, f"ret{c}"))
        wiring.connect(m, issue.sp_rd, wiring.flipped(self.sp_rd))
        wiring.connect(m, writer.sp_wr, wiring.flipped(self.sp_wr))
        m.d.comb += self.busy.eq(generating | issue.busy | writer.busy)
        return m

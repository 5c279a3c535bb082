"""The PIM engine's back end: operand gather/convert and issue, and the read-return writer.

* :class:`IssueStage` holds one op. The scratchpad read of its 16 operand words starts when it
  takes the op (a wide port, any alignment); a cycle later it converts them (fp32 -> bf16 RNE for
  column writes, fp32 as is for WRMAC16) and pushes the op into the queue of every target channel
  at once, with one read tag per channel for ``RD`` / ``RDMAC16``. The first op of an instruction
  in each channel carries ``mark`` (the scheduler's refresh point).
* :class:`ReturnWriter` keeps the read tags and the returned data per channel and kind (RD
  columns, RDMAC16 bursts: each channel returns them in order) and writes one returned column per
  cycle into the scratchpad (bf16 -> fp32 for RD), lowest (channel, kind) first.
"""

from __future__ import annotations

from amaranth.hdl import Cat, Module, Mux, Signal
from amaranth.lib import data, stream, wiring
from amaranth.lib.fifo import SyncFIFO
from amaranth.lib.wiring import In, Out

from pimgpt.core.config import HwConfig

from .bank import ACCS_PER_BURST
from .fp import check_int
from .pim_ops import (
    ENT_BITS,
    DataMode,
    TagKind,
    bf16_to_f32,
    check_engine_args,
    engine_op_layout,
    f32_to_bf16,
    popcount,
    return_signature,
    tag_layout,
)
from .pim_sched import chop_layout
from .scratchpad import sp_wide_read_signature, sp_wide_write_signature

__all__ = ["IssueStage", "ReturnWriter", "tag_port"]


def tag_port(c: int, kind: TagKind) -> str:
    """Name of the tag stream of channel ``c`` and kind ``kind`` (``tag0_rd``, ``tag1_acc``)."""
    return f"tag{c}_{kind.name.lower()}"


class IssueStage(wiring.Component):
    """Operand gather/convert and push into the channel queues (see the module docstring).

    Attributes
    ----------
    i : In(stream.Signature(engine_op_layout(hw, aw)))
        Ops; ``i.ready`` is high when the stage is empty or pushes this cycle.
    ent : In(ENT_BITS)
        Hazard entry of the instruction being expanded (recorded in its read tags).
    new_instr : In(1)
        An instruction is accepted: the next op of every channel carries ``mark``.
    ch0 ... : Out(stream.Signature(chop_layout(hw)))
        Channel op queues.
    tag0_rd, tag0_acc, ... : Out(stream.Signature(tag_layout(hw, aw)))
        Read tags, per channel and kind.
    sp_rd : Out(sp_wide_read_signature(aw, 16))
    busy : Out(1)
        An op is held.
    """

    def __init__(self, hw: HwConfig, *, sp_addr_width: int):
        self._aw = check_engine_args(hw, sp_addr_width)
        self.hw = hw
        members = {"i": In(stream.Signature(engine_op_layout(hw, self._aw))), "ent": In(ENT_BITS),
                   "new_instr": In(1)}
        for c in range(hw.dram.channels):
            members[f"ch{c}"] = Out(stream.Signature(chop_layout(hw)))
            for k in TagKind:
                members[tag_port(c, k)] = Out(stream.Signature(tag_layout(hw, self._aw)))
        members.update({"sp_rd": Out(sp_wide_read_signature(self._aw, 16)), "busy": Out(1)})
        super().__init__(members)

    def elaborate(self, platform):
        m = Module()
        d = self.hw.dram
        C, B = d.channels, d.banks
        aw = self._aw
        b = Signal(engine_op_layout(self.hw, aw))
        b_valid = Signal()
        b_ent = Signal(ENT_BITS)
        marked = Signal(C)  # channels that already got this instruction's first op
        chans = [getattr(self, f"ch{c}") for c in range(C)]
        tags = {(c, k): getattr(self, tag_port(c, k)) for c in range(C) for k in TagKind}

        ch_ready = Cat(*[chans[c].ready | ~b.chm[c] for c in range(C)]).all()
        tag_ready = Cat(*[tags[(c, k)].ready | ~b.chm[c] | ~b.tag | (b.tagkind != k)
                          for c in range(C) for k in TagKind]).all()
        push = Signal()
        m.d.comb += [push.eq(b_valid & ch_ready & tag_ready), self.busy.eq(b_valid),
                     self.i.ready.eq(~b_valid | push)]
        take = self.i.valid & self.i.ready
        with m.If(take):
            m.d.sync += [b_valid.eq(1), b.eq(self.i.payload), b_ent.eq(self.ent)]
        with m.Elif(push):
            m.d.sync += b_valid.eq(0)
        m.d.comb += [self.sp_rd.en.eq(take), self.sp_rd.addr.eq(self.i.payload.sp)]

        # The scratchpad words (read when the op was taken) as the op's data.
        words = self.sp_rd.data
        bf = Cat(*[f32_to_bf16(words[k]) for k in range(16)])
        fp = Cat(*[words[k] for k in range(ACCS_PER_BURST)])  # WRMAC16: 8 accumulator words
        op_data = Mux(b.dmode == DataMode.BF16, bf,
                      Mux(b.dmode == DataMode.FP32, fp, b.op.c.data))
        for c in range(C):
            port = chans[c]
            m.d.comb += [
                port.valid.eq(b_valid & b.chm[c] & ch_ready & tag_ready),
                port.payload.eq(b.op),
                port.payload.mark.eq(~marked[c]),
                port.payload.c.data.eq(op_data),
            ]
            for k in TagKind:
                # RDMAC16 words of channel c land after those of the selected channels below it.
                base = b.tagbase + (popcount(b.chm, c) * B if k == TagKind.ACC and c else 0)
                t = tags[(c, k)]
                m.d.comb += [
                    t.valid.eq(push & b.chm[c] & b.tag & (b.tagkind == k)),
                    t.payload.base.eq(base[:aw]), t.payload.mask.eq(b.tagmask),
                    t.payload.ent.eq(b_ent),
                ]
        with m.If(push):
            m.d.sync += marked.eq(marked | b.chm)
        with m.If(self.new_instr):
            m.d.sync += marked.eq(0)
        return m


class ReturnWriter(wiring.Component):
    """Read tags and returned data per channel and kind; one scratchpad write per cycle.

    Parameters
    ----------
    hw : HwConfig
    sp_addr_width : int
    tag_depth : int
        Outstanding reads per channel and kind (2..256).

    Attributes
    ----------
    tag0_rd, tag0_acc, ... : In(stream.Signature(tag_layout(hw, aw)))
        Read tags (queued; ``ready`` while there is room).
    ret0 ... : In(return_signature(hw))
        Read data from the channels.
    sp_wr : Out(sp_wide_write_signature(aw, 16))
    done : Out(StructLayout)
        ``valid``/``ent``: a read landed in the scratchpad (for the hazard tracker).
    busy : Out(1)
        Some read has not landed.
    """

    def __init__(self, hw: HwConfig, *, sp_addr_width: int, tag_depth: int = 16):
        self._aw = check_engine_args(hw, sp_addr_width)
        self._tag_depth = check_int("tag_depth", tag_depth, 2, 256)
        self.hw = hw
        members = {}
        for c in range(hw.dram.channels):
            for k in TagKind:
                members[tag_port(c, k)] = In(stream.Signature(tag_layout(hw, self._aw)))
            members[f"ret{c}"] = In(return_signature(hw))
        members.update({
            "sp_wr": Out(sp_wide_write_signature(self._aw, 16)),
            "done": Out(data.StructLayout({"valid": 1, "ent": ENT_BITS})),
            "busy": Out(1),
        })
        super().__init__(members)

    def elaborate(self, platform):
        m = Module()
        d = self.hw.dram
        layout = tag_layout(self.hw, self._aw)
        sources = [(c, k) for c in range(d.channels) for k in TagKind]
        tags, rets = {}, {}
        for c, k in sources:
            tf = SyncFIFO(width=layout.size, depth=self._tag_depth)
            rf = SyncFIFO(width=8 * d.column_bytes, depth=4)
            m.submodules[f"tag{c}_{k.value}"] = tags[(c, k)] = tf
            m.submodules[f"ret{c}_{k.value}"] = rets[(c, k)] = rf
            tin = getattr(self, tag_port(c, k))
            port = getattr(self, f"ret{c}")
            valid, dat = ((port.rd_valid, port.rd_data) if k == TagKind.RD
                          else (port.acc_valid, port.acc_data))
            m.d.comb += [tf.w_en.eq(tin.valid), tf.w_data.eq(tin.payload), tin.ready.eq(tf.w_rdy),
                         rf.w_en.eq(valid), rf.w_data.eq(dat)]
        m.d.comb += self.busy.eq(Cat(*[tags[s].r_rdy for s in sources]).any())

        first = Signal(len(sources))
        avail = Cat(*[rets[s].r_rdy & tags[s].r_rdy for s in sources])
        m.d.comb += first.eq(avail & -avail)  # lowest available source, one-hot
        for idx, (c, k) in enumerate(sources):
            rf, tf = rets[(c, k)], tags[(c, k)]
            tag = data.View(layout, tf.r_data)
            with m.If(first[idx]):
                m.d.comb += [rf.r_en.eq(1), tf.r_en.eq(1), self.done.valid.eq(1),
                             self.done.ent.eq(tag.ent), self.sp_wr.addr.eq(tag.base),
                             self.sp_wr.mask.eq(tag.mask)]
                for w in range(16):
                    if k == TagKind.RD:
                        val = bf16_to_f32(rf.r_data[16 * w:][:16])
                    else:  # 8 fp32 accumulators (lanes 8..15 are masked off)
                        val = rf.r_data[32 * (w % ACCS_PER_BURST):][:32]
                    m.d.comb += self.sp_wr.data[w].eq(val)
        return m

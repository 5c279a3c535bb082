"""The PIM engine's back end: operand gather/convert and issue, and the read-return writer.

* :class:`IssueStage` holds one op. The scratchpad read of its 16 operand words starts when it
  takes the op (a wide port, any alignment); a cycle later it converts them (fp32 -> bf16 RNE for
  column writes, fp32 as is for WRMAC16) and pushes the op into the queue of every target channel
  at once, with one read tag per channel for ``RD`` / ``RDMAC16``. An op without scratchpad data
  (MAC, RD, RDMAC16, OPEN ...) that finds the stage empty is pushed in the cycle it arrives. The
  first op of an instruction in each channel carries ``mark`` (the scheduler's refresh point).
* :class:`ReturnWriter` keeps the read tags and the returned data per channel and kind (RD
  columns, RDMAC16 bursts: each channel returns them in order) and writes one returned column per
  cycle into the scratchpad (bf16 -> fp32 for RD), lowest (channel, kind) first; a column that
  arrives while its queue is empty is written in the cycle it arrives.
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
    DataMode,
    TagKind,
    bf16_to_f32,
    check_engine_args,
    engine_op_layout,
    ent_bits,
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
    ent : In(ent_bits(hw))
        Hazard entry of the instruction being expanded (recorded in its read tags).
    new_instr : In(1)
        An instruction is accepted: its first op for every channel (this cycle or later) carries
        ``mark``.
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
        members = {"i": In(stream.Signature(engine_op_layout(hw, self._aw))),
                   "ent": In(ent_bits(hw)), "new_instr": In(1)}
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
        b_ent = Signal(ent_bits(self.hw))
        marked = Signal(C)  # channels that already got this instruction's first op
        # An instruction accepted now has no op out yet; the held op is still the previous one's.
        marked_now = Mux(self.new_instr, 0, marked)
        chans = [getattr(self, f"ch{c}") for c in range(C)]
        tags = {(c, k): getattr(self, tag_port(c, k)) for c in range(C) for k in TagKind}

        # The op at the push point: the one held, else (bypass) an op that needs no scratchpad
        # data, in the cycle it arrives.
        direct = ~b_valid & self.i.valid & (self.i.payload.dmode == DataMode.NONE)
        src = Signal.like(b)
        m.d.comb += src.eq(Mux(b_valid, b.as_value(), self.i.payload.as_value()))
        src_ent = Mux(b_valid, b_ent, self.ent)

        def room(op):  # every target channel and tag queue of ``op`` can take it
            return Cat(*[chans[c].ready | ~op.chm[c] for c in range(C)] +
                       [tags[(c, k)].ready | ~op.chm[c] | ~op.tag | (op.tagkind != k)
                        for c in range(C) for k in TagKind]).all()

        push_b = Signal()  # the held op leaves
        push = Signal()  # an op (held or bypassing) goes to its channels
        m.d.comb += [push_b.eq(b_valid & room(b)), push.eq(push_b | (direct & room(src))),
                     self.busy.eq(b_valid), self.i.ready.eq(~b_valid | push_b)]
        take = self.i.valid & self.i.ready
        load = take & ~(direct & push)
        with m.If(load):
            m.d.sync += [b_valid.eq(1), b.eq(self.i.payload), b_ent.eq(self.ent)]
        with m.Elif(push):
            m.d.sync += b_valid.eq(0)
        m.d.comb += [self.sp_rd.en.eq(load), self.sp_rd.addr.eq(self.i.payload.sp)]

        # The scratchpad words (read when the op was taken) as the op's data.
        words = self.sp_rd.data
        bf = Cat(*[f32_to_bf16(words[k]) for k in range(16)])
        fp = Cat(*[words[k] for k in range(ACCS_PER_BURST)])  # WRMAC16: 8 accumulator words
        op_data = Mux(src.dmode == DataMode.BF16, bf,
                      Mux(src.dmode == DataMode.FP32, fp, src.op.c.data))
        for c in range(C):
            port = chans[c]
            m.d.comb += [
                port.valid.eq(push & src.chm[c]),
                port.payload.eq(src.op),
                port.payload.mark.eq(~Mux(b_valid, marked[c], marked_now[c])),
                port.payload.c.data.eq(op_data),
            ]
            for k in TagKind:
                # RDMAC16 words of channel c land after those of the selected channels below it.
                base = src.tagbase + (popcount(src.chm, c) * B if k == TagKind.ACC and c else 0)
                t = tags[(c, k)]
                m.d.comb += [
                    t.valid.eq(push & src.chm[c] & src.tag & (src.tagkind == k)),
                    t.payload.base.eq(base[:aw]), t.payload.mask.eq(src.tagmask),
                    t.payload.ent.eq(src_ent),
                ]
        with m.If(push & ~b_valid):  # an op of the current instruction, bypassing
            m.d.sync += marked.eq(marked_now | src.chm)
        with m.Elif(self.new_instr):
            m.d.sync += marked.eq(0)
        with m.Elif(push):
            m.d.sync += marked.eq(marked | src.chm)
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
            "done": Out(data.StructLayout({"valid": 1, "ent": ent_bits(hw)})),
            "busy": Out(1),
        })
        super().__init__(members)

    def elaborate(self, platform):
        m = Module()
        d = self.hw.dram
        layout = tag_layout(self.hw, self._aw)
        sources = [(c, k) for c in range(d.channels) for k in TagKind]
        tags, rets = {}, {}
        ins = {}  # per source: (valid, data) arriving from the channel this cycle
        for c, k in sources:
            tf = SyncFIFO(width=layout.size, depth=self._tag_depth)
            rf = SyncFIFO(width=8 * d.column_bytes, depth=4)
            m.submodules[f"tag{c}_{k.value}"] = tags[(c, k)] = tf
            m.submodules[f"ret{c}_{k.value}"] = rets[(c, k)] = rf
            tin = getattr(self, tag_port(c, k))
            port = getattr(self, f"ret{c}")
            ins[(c, k)] = ((port.rd_valid, port.rd_data) if k == TagKind.RD
                           else (port.acc_valid, port.acc_data))
            m.d.comb += [tf.w_en.eq(tin.valid), tf.w_data.eq(tin.payload), tin.ready.eq(tf.w_rdy),
                         rf.w_data.eq(ins[(c, k)][1])]
        m.d.comb += self.busy.eq(Cat(*[tags[s].r_rdy for s in sources]).any())

        # A source is ready with its oldest returned column: queued, or (bypass) arriving now
        # while its queue is empty.
        first = Signal(len(sources))
        avail = Cat(*[tags[s].r_rdy & (rets[s].r_rdy | ins[s][0]) for s in sources])
        m.d.comb += first.eq(avail & -avail)  # lowest available source, one-hot
        for idx, (c, k) in enumerate(sources):
            rf, tf = rets[(c, k)], tags[(c, k)]
            valid, arriving = ins[(c, k)]
            bypass = ~rf.r_rdy
            # Arriving data are queued unless they go straight to the scratchpad.
            m.d.comb += rf.w_en.eq(valid & ~(first[idx] & bypass))
            column = Mux(bypass, arriving, rf.r_data)
            tag = data.View(layout, tf.r_data)
            with m.If(first[idx]):
                m.d.comb += [rf.r_en.eq(rf.r_rdy), tf.r_en.eq(1), self.done.valid.eq(1),
                             self.done.ent.eq(tag.ent), self.sp_wr.addr.eq(tag.base),
                             self.sp_wr.mask.eq(tag.mask)]
                for w in range(16):
                    if k == TagKind.RD:
                        val = bf16_to_f32(column[16 * w:][:16])
                    else:  # 8 fp32 accumulators (lanes 8..15 are masked off)
                        val = column[32 * (w % ACCS_PER_BURST):][:32]
                    m.d.comb += self.sp_wr.data[w].eq(val)
        return m

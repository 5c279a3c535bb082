"""The PIM command generator: expands PIM instructions into channel ops for the schedulers.

Instructions (``WR_GB`` ... ``WR_ELEM``, ``docs/isa.md``) arrive one at a time; each becomes, per
selected channel, the op sequence the perf engine schedules (``sim/perf/engine.py``), so the RTL
and the perf model issue the same DRAM commands:

* ``WR_GB``: ``ncols`` x ``WRGB`` (bf16 of 16 scratchpad words each); ``MAC_ABK``/``MAC_SBK``:
  open the row (all banks / one bank), ``ncols`` x ``MAC16``/``MAC``; ``COPY_*``: open, then
  ``RDCP``/``WRCP``;
* ``RD_MAC``: ``RDMAC16`` bursts of 8 accumulators; ``WR_BIAS``: ``WRMAC16`` bursts (fp32 data);
* ``WR_SBK``/``RD_SBK``/``WR_ABK``/``RD_VEC``/``WR_VEC``: runs of columns within a row (a region
  vector is split into its chunks and then at row boundaries), each run opening its row; partial
  columns carry an element mask;
* ``WR_ELEM``: per channel, the elements are cut into *waves* in which each bank appears once;
  a wave opens every row it needs, then writes its elements one per ``WR``.

Datapath: stage A (the generator FSM) produces one column op per cycle and starts the scratchpad
read of its operands (a 16-word wide port, any alignment); stage B converts the words (fp32 ->
bf16, RNE) and pushes the op into the queue of every target channel at once (setting ``mark`` on
an instruction's first op per channel), together with a *read tag* for ``RD``/``RDMAC16``. Read
data come back from each channel in order per kind and are written into the scratchpad (bf16 ->
fp32) by a one-port writer. A PIM instruction that reads the scratchpad waits until every earlier
read has landed (as in the perf model).
"""

from __future__ import annotations

from amaranth.hdl import Array, Cat, Const, Module, Mux, Signal
from amaranth.lib import data, stream, wiring
from amaranth.lib.fifo import SyncFIFO
from amaranth.lib.wiring import In, Out
from amaranth.utils import ceil_log2

from pimgpt.core import isa
from pimgpt.core.config import HwConfig
from pimgpt.core.isa import Op

from .bank import ACCS_PER_BURST
from .dram_timing import DramCmd
from .fp import check_int
from .isa_layout import InstrWord
from .pim_sched import OP_COL, OP_OPEN, chop_layout
from .scratchpad import sp_wide_read_signature, sp_wide_write_signature

__all__ = ["PimEngine", "f32_to_bf16", "bf16_to_f32", "return_signature"]

DM_NONE, DM_BF16, DM_FP32 = 0, 1, 2
#: Scratchpad ranges of in-flight PIM reads tracked for read-after-write hazards.
N_ENT = 8
TAG_RD, TAG_ACC = 0, 1
#: PIM instructions that read the scratchpad (they wait for earlier reads to land) and those that
#: write it (their reads land later): from the ISA metadata.
SP_READERS = tuple(sorted(isa.PIM_SP_READERS))
SP_WRITERS = tuple(sorted(isa.PIM_SP_WRITERS))


def f32_to_bf16(x):
    """bf16 bits of fp32 ``x`` (RNE, DAZ, canonical NaN): ``numerics.f32_to_bf16``."""
    exp, mant, sign = x[23:31], x[:23], x[31]
    rounded = (x + 0x7FFF + x[16])[16:32]
    return Mux(exp == 0, Cat(Const(0, 15), sign),
               Mux((exp == 0xFF) & (mant != 0), Const(0x7FC0, 16), rounded))


def bf16_to_f32(h):
    """fp32 bits of bf16 ``h`` (exact; DAZ; canonical NaN): ``numerics.bf16_to_f32``."""
    exp, mant, sign = h[7:15], h[:7], h[15]
    return Mux(exp == 0, Cat(Const(0, 31), sign),
               Mux((exp == 0xFF) & (mant != 0), Const(0x7FC00000, 32), Cat(Const(0, 16), h)))


def return_signature(hw: HwConfig) -> wiring.Signature:
    """Read data coming back from one channel (to the engine): RD columns and RDMAC16 bursts."""
    w = 8 * hw.dram.column_bytes
    return wiring.Signature({"rd_valid": Out(1), "rd_data": Out(w),
                             "acc_valid": Out(1), "acc_data": Out(w)})


class PimEngine(wiring.Component):
    """PIM instruction expander.

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
        if not isinstance(hw, HwConfig):
            raise TypeError(f"hw must be a HwConfig, not {hw!r}")
        self.hw = hw
        self._aw = check_int("sp_addr_width", sp_addr_width, 4, 26)
        self._tag_depth = check_int("tag_depth", tag_depth, 2, 256)
        d = hw.dram
        if d.col_elems != 16 or d.row_elems % 16:
            raise ValueError("the PIM engine needs 16-element columns")
        if d.accumulators != 1:
            raise ValueError(f"the RTL bank has one MAC accumulator; dram.accumulators is "
                             f"{d.accumulators} (set it to 1 for RTL runs)")
        members = {"instr": In(stream.Signature(InstrWord))}
        for c in range(d.channels):
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

    def elaborate(self, platform):  # noqa: C901 - one FSM, kept in one place on purpose
        m = Module()
        d = self.hw.dram
        C, B, RE, G = d.channels, d.banks, d.row_elems, d.gb_elems
        S = C * B
        lg_re = ceil_log2(RE)
        all_banks = (1 << B) - 1
        cw = max(1, ceil_log2(C))
        bursts = -(-B // ACCS_PER_BURST)
        aw = self._aw
        flat_w = ceil_log2(d.rows * RE) + 2
        layout = chop_layout(self.hw)

        # ------------------------------------------------------------------------------------
        # Stage B: one op waiting to be pushed into its channels' queues
        # ------------------------------------------------------------------------------------
        b_valid = Signal()
        b_op = Signal(layout)
        b_chm = Signal(C)
        b_dmode = Signal(2)
        b_tag = Signal()  # push a read tag
        b_tagkind = Signal()
        b_tagbase = Signal(aw)  # sp address of word 0 (RDMAC16: + channel rank * banks)
        b_tagmask = Signal(16)
        b_ent = Signal(max(1, ceil_log2(N_ENT)))
        cur_ent = Signal.like(b_ent)  # hazard-table entry of the instruction being expanded
        marked = Signal(C)  # channels that already got this instruction's first op

        # Read tags and returned data, per channel and kind.
        tag_layout = data.StructLayout({"base": aw, "mask": 16, "ent": max(1, ceil_log2(N_ENT))})
        tags = {}
        rets = {}
        for c in range(C):
            for kind in (TAG_RD, TAG_ACC):
                tf = SyncFIFO(width=tag_layout.size, depth=self._tag_depth)
                rf = SyncFIFO(width=8 * d.column_bytes, depth=4)
                m.submodules[f"tag{c}_{kind}"] = tf
                m.submodules[f"ret{c}_{kind}"] = rf
                tags[(c, kind)] = tf
                rets[(c, kind)] = rf
                port = self.ret[c]
                valid = port.rd_valid if kind == TAG_RD else port.acc_valid
                dat = port.rd_data if kind == TAG_RD else port.acc_data
                m.d.comb += [rf.w_en.eq(valid), rf.w_data.eq(dat)]
        outstanding = Signal(16)
        inc = Signal(6)
        dec = Signal()

        # Channel rank of c within the op's mask (RD_MAC/WR_BIAS word offsets).
        def rank(mask, c):
            return sum((mask[k] for k in range(c)), Const(0, 6)) if c else Const(0, 6)

        ch_ready = Cat(*[self.ch[c].ready | ~b_chm[c] for c in range(C)]).all()
        tag_ready = Cat(*[tags[(c, k)].w_rdy | ~b_chm[c] | ~b_tag | (b_tagkind != k)
                          for c in range(C) for k in (TAG_RD, TAG_ACC)]).all()
        b_push = Signal()
        m.d.comb += b_push.eq(b_valid & ch_ready & tag_ready)

        # Data conversion from the scratchpad words (read one cycle before, held since).
        words = self.sp_rd.data
        bf = Cat(*[f32_to_bf16(words[k]) for k in range(16)])
        fp = Cat(*[words[k] for k in range(8)])
        op_data = Mux(b_dmode == DM_BF16, bf, Mux(b_dmode == DM_FP32, fp, b_op.c.data))
        for c in range(C):
            port = self.ch[c]
            m.d.comb += [
                port.valid.eq(b_valid & b_chm[c] & ch_ready & tag_ready),
                port.payload.eq(b_op),
                port.payload.mark.eq(~marked[c]),
                port.payload.c.data.eq(op_data),
            ]
            for k in (TAG_RD, TAG_ACC):
                tf = tags[(c, k)]
                base = b_tagbase + (rank(b_chm, c) * B if k == TAG_ACC else 0)
                m.d.comb += [
                    tf.w_en.eq(b_push & b_chm[c] & b_tag & (b_tagkind == k)),
                    tf.w_data.eq(Cat(base[:aw], b_tagmask, b_ent)),
                ]
        with m.If(b_push):
            m.d.sync += marked.eq(marked | b_chm)
        # One read tag per target channel.
        m.d.comb += inc.eq(Mux(b_push & b_tag, sum((b_chm[c] for c in range(C)), Const(0, 6)), 0))

        # ------------------------------------------------------------------------------------
        # Return writer: one (channel, kind) per cycle into the scratchpad
        # ------------------------------------------------------------------------------------
        sources = [(c, k) for c in range(C) for k in (TAG_RD, TAG_ACC)]
        done_one = Signal()
        done_ent = Signal.like(b_ent)
        first = Signal(len(sources))
        avail = Cat(*[rets[s].r_rdy & tags[s].r_rdy for s in sources])
        m.d.comb += first.eq(avail & -avail)  # lowest available source, one-hot
        for idx, (c, k) in enumerate(sources):
            rf, tf = rets[(c, k)], tags[(c, k)]
            tag = data.View(tag_layout, tf.r_data)
            with m.If(first[idx]):
                m.d.comb += [rf.r_en.eq(1), tf.r_en.eq(1), done_one.eq(1), done_ent.eq(tag.ent),
                             self.sp_wr.addr.eq(tag.base), self.sp_wr.mask.eq(tag.mask)]
                for w in range(16):
                    if k == TAG_RD:
                        val = bf16_to_f32(rf.r_data[16 * w:16 * w + 16])
                    else:
                        val = rf.r_data[32 * (w % ACCS_PER_BURST):32 * (w % ACCS_PER_BURST) + 32]
                    m.d.comb += self.sp_wr.data[w].eq(val)
        m.d.comb += dec.eq(done_one)
        m.d.sync += outstanding.eq(outstanding + inc - dec)

        # ------------------------------------------------------------------------------------
        # Stage A: the generator
        # ------------------------------------------------------------------------------------
        ins = self.instr.payload
        f = Array(Signal(32, name=f"f{k}") for k in range(7))
        opc = Signal(8)
        a_valid = Signal()  # A offers an op to B this cycle
        a_op = Signal(layout)
        a_chm = Signal(C)
        a_dmode = Signal(2)
        a_tag = Signal()
        a_tagkind = Signal()
        a_tagbase = Signal(aw)
        a_tagmask = Signal(16)
        a_sp = Signal(aw)  # scratchpad address of the op's 16 operand words
        a_take = Signal()  # B accepts A's op
        m.d.comb += a_take.eq(a_valid & (~b_valid | b_push))
        with m.If(a_take):
            m.d.sync += [b_valid.eq(1), b_op.eq(a_op), b_chm.eq(a_chm), b_dmode.eq(a_dmode),
                         b_tag.eq(a_tag), b_tagkind.eq(a_tagkind), b_tagbase.eq(a_tagbase),
                         b_tagmask.eq(a_tagmask), b_ent.eq(cur_ent)]
        with m.Elif(b_push):
            m.d.sync += b_valid.eq(0)
        m.d.comb += [self.sp_rd.en.eq(a_take), self.sp_rd.addr.eq(a_sp)]

        # Cursor of column runs.
        cmd = Signal(DramCmd)
        chm = Signal(C)
        fpi = Signal.like(a_op.c.fpi)
        bmask = Signal(B)
        cur = Signal(flat_w)
        end = Signal(flat_w)
        spp = Signal(aw)
        gbc = Signal(len(a_op.c.gbcol))
        newrow = Signal()
        dmode = Signal(2)
        reading = Signal()
        rowless = Signal()  # WRGB: columns without rows
        lo = cur[:4]
        cnt = Signal(5)
        m.d.comb += cnt.eq(Mux(end - cur < 16 - lo, end - cur, 16 - lo))
        lane_mask = Signal(16)
        m.d.comb += lane_mask.eq(((Const(1, 17) << cnt) - 1) << lo)

        def emit_run_op():
            """Offer the cursor's next column op to stage B."""
            m.d.comb += [
                a_valid.eq(1), a_chm.eq(chm), a_dmode.eq(dmode),
                a_op.kind.eq(OP_COL), a_op.open.eq(newrow & ~rowless), a_op.bmask.eq(bmask),
                a_op.c.cmd.eq(cmd), a_op.c.fpi.eq(fpi), a_op.c.row.eq(cur >> lg_re),
                a_op.c.col.eq(cur[4:lg_re]), a_op.c.gbcol.eq(gbc), a_op.c.mask.eq(lane_mask),
                a_sp.eq(spp - lo),
                a_tag.eq(reading), a_tagkind.eq(TAG_RD), a_tagbase.eq(spp - lo),
                a_tagmask.eq(lane_mask),
            ]
            with m.If(a_take):
                nxt = cur + cnt
                m.d.sync += [cur.eq(nxt), spp.eq(spp + cnt), gbc.eq(gbc + 1),
                             newrow.eq(nxt[:lg_re] == 0)]

        # Region arithmetic (RD_VEC / WR_VEC / WR_ELEM).
        vec = Signal(32)
        e = Signal(32)
        n = Signal(32)
        slot = Signal(range(S))
        loc = Signal(32)
        m.d.comb += [slot.eq(vec % S), loc.eq(vec // S)]
        vch = Signal(range(max(2, C)))
        vbank = Signal(range(max(2, B)))
        m.d.comb += [vch.eq(slot // B), vbank.eq(slot % B)]
        region_row, n_local, vec_len = f[3], f[4], f[5]
        tk = Signal(32)
        lt = Signal(32)
        m.d.comb += [tk.eq(e // G), lt.eq(Mux(vec_len - tk * G < G, vec_len - tk * G, G))]
        chunk_end = Signal(33)  # stop = min(n, tk*G + lt)
        m.d.comb += chunk_end.eq(Mux(n < tk * G + lt, n, tk * G + lt))
        chunk_flat = Signal(flat_w + 8)
        m.d.comb += chunk_flat.eq(region_row * RE + tk * n_local * G + loc * lt + (e - tk * G))

        # RD_MAC / WR_BIAS
        burst = Signal(range(bursts + 1))
        cidx = Signal(range(C + 1))

        # WR_ELEM waves: per channel, up to B entries (bank, row, col, lane, sp).
        el_layout = data.StructLayout({"bank": max(1, ceil_log2(B)), "row": len(a_op.c.row),
                                       "col": len(a_op.c.col), "lane": 4, "sp": aw})
        wave = [[Signal(el_layout, name=f"wave{c}_{k}") for k in range(B)] for c in range(C)]
        wcount = [Signal(range(B + 1), name=f"wcount{c}") for c in range(C)]
        wseen = [Signal(B, name=f"wseen{c}") for c in range(C)]
        wch = Signal(range(C + 1))  # channel whose wave is being emitted (C: none left)
        widx = Signal(range(B + 1))
        pending_fa = Signal(B)
        # The element j = e of WR_ELEM: vector vec + j, element f[6].
        el_elem = f[6]
        el_tk = Signal(32)
        el_lt = Signal(32)
        m.d.comb += [el_tk.eq(el_elem // G),
                     el_lt.eq(Mux(vec_len - el_tk * G < G, vec_len - el_tk * G, G))]
        el_flat = Signal(flat_w + 8)
        m.d.comb += el_flat.eq(region_row * RE + el_tk * n_local * G + loc * el_lt +
                               (el_elem - el_tk * G))

        # The wave of channel wch: rows in first-appearance order.
        wv = Array(Array(w) for w in wave)[wch]
        wc = Array(wcount)[wch]
        fa = Signal(B)  # entry k's row differs from every earlier entry's
        for k in range(B):
            earlier = [wv[j].row == wv[k].row for j in range(k)]
            m.d.comb += fa[k].eq((k < wc) & ~Cat(*earlier).any() if earlier else (k < wc))
        # rmask[k] as a bank mask.
        rbanks = [Signal(B, name=f"rbanks{k}") for k in range(B)]
        for k in range(B):
            m.d.comb += rbanks[k].eq(sum(
                (Mux((j < wc) & (wv[j].row == wv[k].row), Const(1, B) << wv[j].bank, 0)
                 for j in range(B)), Const(0, B)) if B > 1 else Mux(wc > 0, 1, 0))
        last_fa = Signal(range(max(2, B)))
        for k in range(B):
            with m.If(fa[k]):
                m.d.comb += last_fa.eq(k)
        low_pending = Signal(range(max(2, B)))
        for k in reversed(range(B)):
            with m.If(pending_fa[k]):
                m.d.comb += low_pending.eq(k)

        # ---- scratchpad hazards between PIM instructions (as the perf model): a reader waits
        # only for earlier reads whose landing range overlaps what it reads. One entry per
        # writer instruction: its range and its reads not yet landed.
        ew = max(1, ceil_log2(N_ENT))
        ent_valid = Signal(N_ENT)
        ent_open = Signal(N_ENT)  # its instruction is still being expanded
        ent_lo = [Signal(aw + 1, name=f"ent_lo{k}") for k in range(N_ENT)]
        ent_hi = [Signal(aw + 2, name=f"ent_hi{k}") for k in range(N_ENT)]
        ent_cnt = [Signal(10, name=f"ent_cnt{k}") for k in range(N_ENT)]
        fi = ins.f
        nch = sum((fi[0][k] for k in range(C)), Const(0, 6))
        r_lo = Signal(aw + 1)
        r_len = Signal(aw + 2)
        with m.Switch(ins.op):
            with m.Case(Op.WR_GB):
                m.d.comb += [r_lo.eq(fi[3]), r_len.eq(fi[2] * 16)]
            with m.Case(Op.WR_BIAS, Op.RD_MAC):
                m.d.comb += [r_lo.eq(fi[1]), r_len.eq(nch * B)]
            with m.Case(Op.WR_SBK, Op.RD_SBK):
                m.d.comb += [r_lo.eq(fi[5]), r_len.eq(fi[4])]
            with m.Case(Op.WR_ABK):
                m.d.comb += [r_lo.eq(fi[4]), r_len.eq(fi[3])]
            with m.Default():  # WR_VEC, WR_ELEM, RD_VEC
                m.d.comb += [r_lo.eq(fi[0]), r_len.eq(fi[1])]
        r_hi = r_lo + r_len
        conflict = Cat(*[ent_valid[k] & (r_lo < ent_hi[k]) & (ent_lo[k] < r_hi)
                         for k in range(N_ENT)]).any()
        free = ~ent_valid
        free_idx = Signal(ew)
        for k in reversed(range(N_ENT)):
            with m.If(free[k]):
                m.d.comb += free_idx.eq(k)
        tags_out = Signal(6)  # tags created by stage A this cycle (one per target channel)
        m.d.comb += tags_out.eq(Mux(a_take & a_tag, sum((a_chm[c] for c in range(C)),
                                                        Const(0, 6)), 0))
        for k in range(N_ENT):
            up = Mux(cur_ent == k, tags_out, 0)
            down = Mux(done_one & (done_ent == k), 1, 0)
            m.d.sync += ent_cnt[k].eq(ent_cnt[k] + up - down)
            with m.If(ent_valid[k] & ~ent_open[k] & (ent_cnt[k] == 0) & (up == 0)):
                m.d.sync += ent_valid[k].eq(0)
        is_writer = Cat(*[ins.op == int(o) for o in SP_WRITERS]).any()
        is_reader = Cat(*[ins.op == int(o) for o in SP_READERS]).any()
        with m.FSM() as fsm:
            with m.State("IDLE"):
                # A new instruction resets the per-channel marks, so the previous instruction's
                # last op must have left stage B; scratchpad readers wait for every read.
                m.d.comb += self.instr.ready.eq((~b_valid | b_push) & ~(is_reader & conflict) &
                                                ~(is_writer & (free == 0)))
                m.d.sync += ent_open.eq(0)  # the previous instruction is fully expanded
                with m.If(self.instr.valid & self.instr.ready & is_writer):
                    m.d.sync += [cur_ent.eq(free_idx)]
                    for k in range(N_ENT):
                        with m.If(free_idx == k):
                            m.d.sync += [ent_valid[k].eq(1), ent_open[k].eq(1),
                                         ent_lo[k].eq(r_lo), ent_hi[k].eq(r_hi)]
                with m.If(self.instr.valid & self.instr.ready):
                    m.d.sync += [opc.eq(ins.op), marked.eq(0), newrow.eq(1), e.eq(0),
                                 burst.eq(0), cidx.eq(0), rowless.eq(0), reading.eq(0),
                                 dmode.eq(DM_NONE)]
                    for k in range(7):
                        m.d.sync += f[k].eq(ins.f[k])
                    fi = ins.f
                    with m.Switch(ins.op):
                        with m.Case(Op.WR_GB):
                            m.d.sync += [chm.eq(fi[0]), cmd.eq(DramCmd.WRGB), cur.eq(0), fpi.eq(0),
                                         end.eq(fi[2] * 16), spp.eq(fi[3]), gbc.eq(fi[1]),
                                         dmode.eq(DM_BF16), rowless.eq(1), bmask.eq(0)]
                            m.next = "RUN"
                        with m.Case(Op.MAC_ABK):
                            m.d.sync += [chm.eq(fi[0]), cmd.eq(DramCmd.MAC16),
                                         cur.eq(fi[1] * RE + fi[2] * 16),
                                         end.eq(fi[1] * RE + (fi[2] + fi[3]) * 16),
                                         gbc.eq(fi[4]), bmask.eq(all_banks), fpi.eq(0)]
                            m.next = "RUN"
                        with m.Case(Op.MAC_SBK, Op.COPY_BKGB, Op.COPY_GBBK):
                            with m.Switch(ins.op):
                                with m.Case(Op.MAC_SBK):
                                    m.d.sync += cmd.eq(DramCmd.MAC)
                                with m.Case(Op.COPY_BKGB):
                                    m.d.sync += cmd.eq(DramCmd.RDCP)
                                with m.Case(Op.COPY_GBBK):
                                    m.d.sync += cmd.eq(DramCmd.WRCP)
                            m.d.sync += [chm.eq(fi[0]), fpi.eq(fi[1]),
                                         bmask.eq(Const(1, B) << fi[1][:max(1, ceil_log2(B))]),
                                         cur.eq(fi[2] * RE + fi[3] * 16),
                                         end.eq(fi[2] * RE + (fi[3] + fi[4]) * 16),
                                         gbc.eq(fi[5])]
                            m.next = "RUN"
                        with m.Case(Op.WR_SBK, Op.RD_SBK):
                            m.d.sync += [chm.eq(Mux(fi[0] < C, Const(1, C) << fi[0][:cw], 0)),
                                         fpi.eq(fi[1]),
                                         bmask.eq(Const(1, B) << fi[1][:max(1, ceil_log2(B))]),
                                         cur.eq(fi[2] * RE + fi[3]),
                                         end.eq(fi[2] * RE + fi[3] + fi[4]), spp.eq(fi[5])]
                            with m.If(ins.op == Op.WR_SBK):
                                m.d.sync += [cmd.eq(DramCmd.WR), dmode.eq(DM_BF16)]
                            with m.Else():
                                m.d.sync += [cmd.eq(DramCmd.RD), reading.eq(1)]
                            m.next = "RUN"
                        with m.Case(Op.WR_ABK):
                            m.d.sync += [chm.eq(fi[0]), cmd.eq(DramCmd.WR16), fpi.eq(0),
                                         bmask.eq(all_banks), cur.eq(fi[1] * RE + fi[2]),
                                         end.eq(fi[1] * RE + fi[2] + fi[3]), spp.eq(fi[4]),
                                         dmode.eq(DM_BF16)]
                            m.next = "RUN"
                        with m.Case(Op.RD_VEC, Op.WR_VEC):
                            m.d.sync += [vec.eq(fi[2]), n.eq(fi[1])]
                            with m.If(ins.op == Op.RD_VEC):
                                m.d.sync += [cmd.eq(DramCmd.RD), reading.eq(1)]
                            with m.Else():
                                m.d.sync += [cmd.eq(DramCmd.WR), dmode.eq(DM_BF16)]
                            m.next = "CHUNK"
                        with m.Case(Op.RD_MAC):
                            m.d.sync += chm.eq(fi[0])
                            m.next = "RDMAC"
                        with m.Case(Op.WR_BIAS):
                            m.d.sync += chm.eq(fi[0])
                            m.next = "WRBIAS"
                        with m.Case(Op.WR_ELEM):
                            m.d.sync += [vec.eq(fi[2]), n.eq(fi[1]), e.eq(0)]
                            for c in range(C):
                                m.d.sync += [wcount[c].eq(0), wseen[c].eq(0)]
                            m.next = "SCAN"
                        with m.Default():
                            pass  # SYNC/EOC never come here; anything else is dropped

            with m.State("RUN"):
                chunked = (opc == Op.RD_VEC) | (opc == Op.WR_VEC)
                with m.If(cur >= end):
                    m.next = "IDLE"
                    with m.If(chunked):
                        m.next = "CHUNK"
                with m.Else():
                    emit_run_op()
                    with m.If(a_take & (cur + cnt >= end)):
                        m.next = "IDLE"
                        with m.If(chunked):
                            m.next = "CHUNK"

            with m.State("CHUNK"):
                # Next chunk of the region vector: flat range of elements [e, stop).
                with m.If(e >= n):
                    m.next = "IDLE"
                with m.Else():
                    sp0 = f[0]  # RD_VEC dst / WR_VEC src
                    m.d.sync += [chm.eq(Const(1, C) << vch), fpi.eq(vbank),
                                 bmask.eq(Const(1, B) << vbank),
                                 cur.eq(chunk_flat), end.eq(chunk_flat + (chunk_end - e)),
                                 spp.eq(sp0 + e), e.eq(chunk_end), newrow.eq(1)]
                    m.next = "RUN"

            with m.State("RDMAC"):
                m.d.comb += [
                    a_valid.eq(1), a_chm.eq(chm), a_dmode.eq(DM_NONE),
                    a_op.kind.eq(OP_COL), a_op.c.cmd.eq(DramCmd.RDMAC16), a_op.c.col.eq(burst),
                    a_tag.eq(1), a_tagkind.eq(TAG_ACC),
                    a_tagbase.eq(f[1] + burst * ACCS_PER_BURST),
                ]
                count = Signal(5)
                left = B - burst * ACCS_PER_BURST
                m.d.comb += [count.eq(Mux(left < ACCS_PER_BURST, left, ACCS_PER_BURST)),
                             a_tagmask.eq((Const(1, 17) << count) - 1)]
                with m.If(a_take):
                    m.d.sync += burst.eq(burst + 1)
                    with m.If(burst == bursts - 1):
                        m.next = "IDLE"

            with m.State("WRBIAS"):
                # One channel at a time (different data), bursts in order.
                with m.If(cidx >= C):
                    m.next = "IDLE"
                with m.Elif(~chm.bit_select(cidx, 1)):
                    m.d.sync += cidx.eq(cidx + 1)
                with m.Else():
                    rk = sum((Mux(k < cidx, chm[k], 0) for k in range(C)), Const(0, 6))
                    m.d.comb += [
                        a_valid.eq(1), a_chm.eq(Const(1, C) << cidx), a_dmode.eq(DM_FP32),
                        a_op.kind.eq(OP_COL), a_op.c.cmd.eq(DramCmd.WRMAC16),
                        a_op.c.col.eq(burst), a_op.c.mask.eq(0xFFFF),
                        a_sp.eq(f[1] + rk * B + burst * ACCS_PER_BURST),
                    ]
                    with m.If(a_take):
                        with m.If(burst == bursts - 1):
                            m.d.sync += [burst.eq(0), cidx.eq(cidx + 1)]
                        with m.Else():
                            m.d.sync += burst.eq(burst + 1)

            # ---- WR_ELEM -------------------------------------------------------------------
            with m.State("SCAN"):
                # Element e: vector f[2] + e (vec holds f[2]; loc/slot are of vec + e below).
                with m.If(e >= n):
                    m.d.sync += wch.eq(0)
                    m.next = "FLUSH"
                with m.Else():
                    m.next = "SCAN_EL"
            with m.State("SCAN_EL"):
                # vec = f[2] + e was set on entry; the address is combinational from vec.
                row = (el_flat >> lg_re)
                inrow = el_flat[:lg_re]
                seen = Array(wseen)[vch]
                with m.If(seen.bit_select(vbank, 1)):
                    m.d.sync += [wch.eq(vch)]
                    m.next = "WAVE_OPEN_INIT"
                with m.Else():
                    for c in range(C):
                        with m.If(vch == c):
                            for k in range(B):
                                with m.If(wcount[c] == k):
                                    m.d.sync += [wave[c][k].bank.eq(vbank), wave[c][k].row.eq(row),
                                                 wave[c][k].col.eq(inrow[4:]),
                                                 wave[c][k].lane.eq(inrow[:4]),
                                                 wave[c][k].sp.eq(f[0] + e)]
                            m.d.sync += [wcount[c].eq(wcount[c] + 1),
                                         wseen[c].eq(wseen[c] | (Const(1, B) << vbank))]
                    m.d.sync += [e.eq(e + 1), vec.eq(vec + 1)]
                    m.next = "SCAN"
            with m.State("WAVE_OPEN_INIT"):
                m.d.sync += [pending_fa.eq(fa & ~(Const(1, B) << last_fa)), widx.eq(0)]
                m.next = "WAVE_OPEN"
            with m.State("WAVE_OPEN"):
                with m.If(pending_fa == 0):
                    m.next = "WAVE_WR"
                with m.Else():
                    ent = wv[low_pending]
                    m.d.comb += [
                        a_valid.eq(1), a_chm.eq(Const(1, C) << wch), a_dmode.eq(DM_NONE),
                        a_op.kind.eq(OP_OPEN), a_op.open.eq(1),
                        a_op.bmask.eq(Array(rbanks)[low_pending]), a_op.c.row.eq(ent.row),
                    ]
                    with m.If(a_take):
                        m.d.sync += pending_fa.eq(pending_fa & ~(Const(1, B) << low_pending))
            with m.State("WAVE_WR"):
                with m.If(widx >= wc):
                    for c in range(C):
                        with m.If(wch == c):
                            m.d.sync += [wcount[c].eq(0), wseen[c].eq(0)]
                    with m.If(e >= n):
                        m.next = "FLUSH"
                    with m.Else():
                        m.next = "SCAN"
                with m.Else():
                    ent = wv[widx]
                    lane = ent.lane
                    m.d.comb += [
                        a_valid.eq(1), a_chm.eq(Const(1, C) << wch), a_dmode.eq(DM_BF16),
                        a_op.kind.eq(OP_COL), a_op.open.eq(widx == 0),
                        a_op.bmask.eq(Array(rbanks)[last_fa]), a_op.c.row.eq(wv[last_fa].row),
                        a_op.c.cmd.eq(DramCmd.WR), a_op.c.fpi.eq(ent.bank),
                        a_op.c.col.eq(ent.col), a_op.c.mask.eq(Const(1, 16) << lane),
                        a_sp.eq(ent.sp - lane),
                    ]
                    with m.If(a_take):
                        m.d.sync += widx.eq(widx + 1)
            with m.State("FLUSH"):
                # Emit the last (partial) wave of every channel, in channel order.
                with m.If(wch >= C):
                    m.next = "IDLE"
                with m.Elif(Array(wcount)[wch] == 0):
                    m.d.sync += wch.eq(wch + 1)
                with m.Else():
                    m.next = "WAVE_OPEN_INIT"

        m.d.comb += self.busy.eq(~fsm.ongoing("IDLE") | b_valid | (outstanding != 0))
        return m

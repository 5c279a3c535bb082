"""The vector unit's sequencer: microcode ROM, in-order dual issue, scoreboard, hardware loops and
the scalar part (``pimgpt/core/vu/uisa.py``: cycle rules 1-6).

Every cycle the sequencer looks at the micro-word at ``pc`` (the *head*) and the one after it:

* the head issues when every vector register it reads or writes is ready (a countdown per
  register: cycles until its last write completes), the write port of its class (F or I) is free
  at ``t + latency`` (a reservation bit per future cycle and port), and, for ``DONE``, when every
  register is ready;
* the next word issues in the same cycle (``asic.vector_issue_width: 2``) when the head is not a
  control operation and does not jump (a taken branch, a loop's back edge), the two belong to
  different issue classes, the second touches no register the head writes, and the rule above
  holds for it with the head's reservation taken into account.

Issued operations leave on one *slot* per class (at most one operation per class and cycle):
``fp``, ``vint``, ``mem`` (with the address and window read from the scalar registers) and the
scalar class, which executes here (``SADD`` .. ``SMAX``, ``SMOVV`` with the lane the vector unit
returns, ``WSR`` on the ``sreg`` port, ``RSR`` from the ``rsr`` port). ``LOOP`` pushes a frame
(start, end, iterations left) on a 4-deep stack; leaving the last word of a body with
iterations left jumps back at no cost, and loops that end on the same word unwind together.
``DONE`` ends the instruction: the unit takes the next one in the following cycle.
"""

from __future__ import annotations

from amaranth.hdl import Array, Const, Module, Mux, Signal
from amaranth.lib import data, stream, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out
from amaranth.utils import ceil_log2

from pimgpt.core.vu import uisa
from pimgpt.core.vu.iss import Microcode
from pimgpt.core.vu.uisa import BSel, UOp

from .isa_layout import InstrWord, opcode
from .vu_decode import MAX_LATENCY, UWORD, UDecode, UnitShape, uop

__all__ = ["Sequencer", "SLOT", "MEM_SLOT", "sreg_read_signature", "sreg_write_signature"]

#: A vector operation leaving the sequencer: the word and ``s[rb]`` (operand ``B`` of ``SREG``).
SLOT = data.StructLayout({"valid": 1, "word": UWORD, "sb": 32})
#: A memory operation: the word, its address ``s[ra] + imm`` and its window ``[lo, hi)``.
MEM_SLOT = data.StructLayout({"valid": 1, "word": UWORD, "addr": 32, "lo": 32, "hi": 32})
#: Issue trace: operations issued this cycle (0..2) and the ``pc`` of the first.
TRACE = data.StructLayout({"n": 2, "pc": 16})

_M32 = 0xFFFFFFFF
_N = uisa.N_SREGS


def sreg_write_signature() -> wiring.Signature:
    """Write port into the front end's scalar registers ``R0..R15`` (``WSR``, i.e. ``ARGMAX``)."""
    return wiring.Signature({"en": Out(1), "idx": Out(4), "data": Out(32)})


def sreg_read_signature() -> wiring.Signature:
    """Read port of the front end's scalar registers (``RSR``, i.e. ``ARGMAXC``): the register
    the issuing ``RSR`` names, its value in the same cycle."""
    return wiring.Signature({"idx": Out(4), "data": In(32)})


def _onehot(index, enable):
    """32-bit mask with bit ``index`` set when ``enable``."""
    return Mux(enable, (Const(1, 32) << index)[:32], 0)


class Sequencer(wiring.Component):
    """Issue logic and scalar part of the vector unit.

    Parameters
    ----------
    microcode : Microcode
        The ROM (``pimgpt.core.vu.cost.microcode_for``): words, entry points, lanes, latencies.

    Attributes
    ----------
    cmd : In(stream.Signature(InstrWord))
        ASIC instructions; taken only while idle.
    fp, vint : Out(SLOT)
        The FP-class and INT-class operation issued this cycle.
    mem : Out(MEM_SLOT)
        The ``VLD``/``VST`` issued this cycle.
    smovv_reg, smovv_lane : Out
        Vector register and lane an issuing ``SMOVV`` reads; ``smovv_data`` (In) is that word.
    sreg : Out(sreg_write_signature())
        ``WSR`` writes.
    rsr : Out(sreg_read_signature())
        ``RSR`` reads.
    op : Out(16)
        Opcode of the instruction being executed.
    busy, done : Out(1)
        An instruction is executing; ``DONE`` issues this cycle.
    trace : Out(TRACE)
        Operations issued this cycle and the ``pc`` of the first (verification).
    """

    def __init__(self, microcode: Microcode):
        if not isinstance(microcode, Microcode):
            raise TypeError(f"microcode must be a pimgpt.core.vu.iss.Microcode, not {microcode!r}")
        self.mc = microcode
        self.lanes = microcode.lanes
        self.depth = len(microcode.words) + 1  # one DONE beyond the end: the look-ahead read
        if self.depth > 1 << 16:
            raise ValueError(f"microcode of {len(microcode.words)} words does not fit 16-bit pcs")
        super().__init__({
            "cmd": In(stream.Signature(InstrWord)),
            "fp": Out(SLOT),
            "vint": Out(SLOT),
            "mem": Out(MEM_SLOT),
            "smovv_reg": Out(5),
            "smovv_lane": Out(range(self.lanes)),
            "smovv_data": In(32),
            "sreg": Out(sreg_write_signature()),
            "rsr": Out(sreg_read_signature()),
            "op": Out(16),
            "busy": Out(1),
            "done": Out(1),
            "trace": Out(TRACE),
        })

    # ---- helpers -------------------------------------------------------------------------------
    @staticmethod
    def _masks(m, w, c, name):
        """(vector registers needed: read or written; vector touched; vector written; scalar
        touched; scalar written) as 32-bit masks."""
        vr = _onehot(w.ra, c.vr_a) | _onehot(w.rb, c.vr_b) | _onehot(w.rc, c.vr_c) | \
            _onehot(w.rd, c.vr_d)
        vw = _onehot(w.rd, c.vw_d)
        sw = _onehot(w.rd, c.sw_d)
        sr = _onehot(w.ra, c.sr_a) | _onehot(w.rb, c.sr_b) | _onehot(w.rc, c.sr_c)
        out = [Signal(32, name=f"{name}_{k}") for k in ("need", "vw", "st", "sw")]
        m.d.comb += [out[0].eq(vr | vw), out[1].eq(vw), out[2].eq(sr | sw), out[3].eq(sw)]
        return out

    def _unwind(self, m, depth, start, end, left, npc, name):
        """Back edges after an operation whose next pc is ``npc``: while ``npc`` is one past the
        innermost loop's last word, jump back if it has iterations left, else pop it."""
        d, n, lefts = depth, npc, list(left)
        stop = Const(0)
        for k in range(uisa.LOOP_DEPTH):
            top = (d - 1)[:2]
            hit = Signal(name=f"{name}_hit{k}")
            back = Signal(name=f"{name}_back{k}")
            m.d.comb += [hit.eq(~stop & (d != 0) & (n == Array(end)[top] + 1)),
                         back.eq(hit & (Array(lefts)[top] > 1))]
            d2 = Signal.like(depth, name=f"{name}_d{k}")
            n2 = Signal.like(npc, name=f"{name}_n{k}")
            m.d.comb += [d2.eq(Mux(hit & ~back, d - 1, d)),
                         n2.eq(Mux(back, Array(start)[top], n))]
            new_lefts = []
            for i, lv in enumerate(lefts):
                li = Signal(32, name=f"{name}_left{k}_{i}")
                m.d.comb += li.eq(Mux(back & (top == i), lv - 1, lv))
                new_lefts.append(li)
            stop = stop | ~hit | back
            d, n, lefts = d2, n2, new_lefts
        return d, n, lefts

    # ---- elaboration ---------------------------------------------------------------------------
    def elaborate(self, platform):
        m = Module()
        mc = self.mc
        pw = ceil_log2(self.depth + 1)
        words = [uisa.encode(w) for w in mc.words] + [uisa.encode(uisa.UWord(UOp.DONE))]
        m.submodules.rom = rom = Memory(shape=uisa.WORD_BITS, depth=len(words), init=words)
        pc = Signal(pw)
        rp_h, rp_s = rom.read_port(domain="comb"), rom.read_port(domain="comb")
        m.d.comb += [rp_h.addr.eq(pc), rp_s.addr.eq(pc + 1)]
        head, sec = UWORD(rp_h.data), UWORD(rp_s.data)
        m.submodules.dec_h = dec_h = UDecode(mc.lat)
        m.submodules.dec_s = dec_s = UDecode(mc.lat)
        m.d.comb += [dec_h.word.eq(head), dec_s.word.eq(sec)]
        ch, cs = dec_h.ctl, dec_s.ctl

        s = [Const(0, 32)] + [Signal(32, name=f"s{i}") for i in range(1, _N)]
        sa = Array(s)
        running = Signal()
        m.d.comb += [self.busy.eq(running), self.trace.pc.eq(pc)]

        # Scoreboard (cycles until each vector register is ready) and port reservations (bit k:
        # the port is written k cycles from now).
        cnt = [Signal(range(MAX_LATENCY + 1), name=f"cnt{r}") for r in range(uisa.N_VREGS)]
        busy_v = Signal(uisa.N_VREGS)
        m.d.comb += [busy_v[r].eq(cnt[r] != 0) for r in range(uisa.N_VREGS)]
        res_f, res_i = Signal(MAX_LATENCY + 1), Signal(MAX_LATENCY + 1)

        need_h, vw_h, _, sw_h = self._masks(m, head, ch, "h")
        need_s, _, st_s, _ = self._masks(m, sec, cs, "s")
        touch_s = need_s  # vector registers the second reads or writes

        def port_free(c, rf, ri):
            return ~((c.port_f & rf.bit_select(c.lat, 1)) | (c.port_i & ri.bit_select(c.lat, 1)))

        def reservation(c, issue, port):
            return Mux(issue & port, (Const(1, MAX_LATENCY + 1) << c.lat)[:MAX_LATENCY + 1], 0)

        is_done_h = head.op == uop(UOp.DONE)
        head_issue = Signal()
        m.d.comb += head_issue.eq(running & ((need_h & busy_v) == 0) & port_free(ch, res_f, res_i)
                                  & (~is_done_h | (busy_v == 0)))
        new_f_h = reservation(ch, head_issue, ch.port_f)
        new_i_h = reservation(ch, head_issue, ch.port_i)

        # ---- the head's control flow: loops and branches
        depth = Signal(range(uisa.LOOP_DEPTH + 1))
        start = [Signal(pw, name=f"loop_start{i}") for i in range(uisa.LOOP_DEPTH)]
        end = [Signal(pw, name=f"loop_end{i}") for i in range(uisa.LOOP_DEPTH)]
        left = [Signal(32, name=f"loop_left{i}") for i in range(uisa.LOOP_DEPTH)]
        a_h, b_h = sa[head.ra], sa[head.rb]
        taken = Signal()
        with m.Switch(head.op):
            for op, cond in ((UOp.BEQ, a_h == b_h), (UOp.BNE, a_h != b_h), (UOp.BLTU, a_h < b_h),
                             (UOp.BGEU, a_h >= b_h)):
                with m.Case(uop(op)):
                    m.d.comb += taken.eq(cond)
        is_loop = head.op == uop(UOp.LOOP)
        push = is_loop & (a_h != 0)
        npc_raw = Signal(pw + 1)
        m.d.comb += npc_raw.eq(Mux(is_loop & (a_h == 0), head.imm[:pw] + 1,
                                   Mux(taken, head.imm[:pw], pc + 1)))
        p_depth = Signal.like(depth)
        p_start = [Signal(pw, name=f"p_start{i}") for i in range(uisa.LOOP_DEPTH)]
        p_end = [Signal(pw, name=f"p_end{i}") for i in range(uisa.LOOP_DEPTH)]
        p_left = [Signal(32, name=f"p_left{i}") for i in range(uisa.LOOP_DEPTH)]
        m.d.comb += p_depth.eq(Mux(push, depth + 1, depth))
        for i in range(uisa.LOOP_DEPTH):
            here = push & (depth == i)
            m.d.comb += [p_start[i].eq(Mux(here, pc + 1, start[i])),
                         p_end[i].eq(Mux(here, head.imm[:pw], end[i])),
                         p_left[i].eq(Mux(here, a_h, left[i]))]
        d_h, npc_h, left_h = self._unwind(m, p_depth, p_start, p_end, p_left, npc_raw, "uw_h")

        # ---- dual issue (rule 3)
        control = UnitShape.CONTROL
        sec_issue = Signal()
        if mc.lat.issue == 2:
            m.d.comb += sec_issue.eq(
                head_issue & (ch.unit != control) & (npc_h == pc + 1) & (cs.unit != control)
                & (cs.unit != ch.unit) & ((touch_s & vw_h) == 0) & ((st_s & sw_h) == 0)
                & ((need_s & busy_v) == 0)
                & port_free(cs, res_f | new_f_h, res_i | new_i_h))
        d_s, npc_s, left_s = self._unwind(m, d_h, p_start, p_end, left_h, pc + 2, "uw_s")
        new_f = new_f_h | reservation(cs, sec_issue, cs.port_f)
        new_i = new_i_h | reservation(cs, sec_issue, cs.port_i)
        m.d.sync += [res_f.eq((res_f | new_f) >> 1), res_i.eq((res_i | new_i) >> 1)]
        m.d.comb += self.trace.n.eq(head_issue + sec_issue)

        # ---- scoreboard update
        for r in range(uisa.N_VREGS):
            with m.If(head_issue & ch.vw_d & (head.rd == r)):
                m.d.sync += cnt[r].eq(ch.lat - 1)
            with m.Elif(sec_issue & cs.vw_d & (sec.rd == r)):
                m.d.sync += cnt[r].eq(cs.lat - 1)
            with m.Elif(cnt[r] != 0):
                m.d.sync += cnt[r].eq(cnt[r] - 1)

        # ---- pc and loop stack
        for issue, npc, d, lefts in ((head_issue, npc_h, d_h, left_h),  # the later one wins
                                     (sec_issue, npc_s, d_s, left_s)):
            with m.If(issue):
                m.d.sync += [pc.eq(npc), depth.eq(d)]
                m.d.sync += [lv.eq(x) for lv, x in zip(left, lefts, strict=True)]
        with m.If(head_issue & push):
            m.d.sync += [x.eq(y) for x, y in zip(start + end, p_start + p_end, strict=True)]

        self._slots(m, head, sec, ch, cs, head_issue, sec_issue, sa)
        self._scalar(m, head, sec, ch, cs, head_issue, sec_issue, s, sa)
        self._dispatch(m, running, pc, depth, s, is_done_h & head_issue)
        return m

    def _slots(self, m, head, sec, ch, cs, head_issue, sec_issue, sa):
        """Route the issued operations to the slot of their class."""
        for slot, unit in ((self.fp, UnitShape.FP), (self.vint, UnitShape.INT),
                           (self.mem, UnitShape.MEM)):
            from_head = head_issue & (ch.unit == unit)
            word = Mux(from_head, head.as_value(), sec.as_value())
            w = UWORD(word)
            m.d.comb += [slot.valid.eq(from_head | (sec_issue & (cs.unit == unit))),
                         slot.word.eq(w)]
            if slot is self.mem:
                m.d.comb += [slot.addr.eq(sa[w.ra] + w.imm), slot.lo.eq(sa[w.rc]),
                             slot.hi.eq(sa[w.rb])]
            else:
                m.d.comb += slot.sb.eq(sa[w.rb])

    def _scalar(self, m, head, sec, ch, cs, head_issue, sec_issue, s, sa):
        """The scalar class: ``SADD`` .. ``SMAX``, ``SMOVV``, ``WSR``, ``RSR``."""
        from_head = head_issue & (ch.unit == UnitShape.SCALAR)
        w = UWORD(Mux(from_head, head.as_value(), sec.as_value()))
        valid = from_head | (sec_issue & (cs.unit == UnitShape.SCALAR))
        a = sa[w.ra]
        b = Mux(w.bsel == BSel.IMM, w.imm, sa[w.rb])
        m.d.comb += [self.smovv_reg.eq(w.ra), self.smovv_lane.eq(b[:ceil_log2(self.lanes)]),
                     self.rsr.idx.eq(b[:4])]
        res = Signal(32)
        with m.Switch(w.op):
            for op, value in ((UOp.SADD, a + b), (UOp.SSUB, a - b), (UOp.SAND, a & b),
                              (UOp.SOR, a | b), (UOp.SSHL, a << b[:5]), (UOp.SSHR, a >> b[:5]),
                              (UOp.SMIN, Mux(a < b, a, b)), (UOp.SMAX, Mux(a < b, b, a)),
                              (UOp.SMOVV, self.smovv_data), (UOp.RSR, self.rsr.data)):
                with m.Case(uop(op)):
                    m.d.comb += res.eq(value)
            with m.Case(uop(UOp.WSR)):
                m.d.comb += [self.sreg.en.eq(valid), self.sreg.idx.eq(b[:4]),
                             self.sreg.data.eq(a)]
        writes = valid & Mux(from_head, ch.sw_d, cs.sw_d)
        for i in range(1, _N):
            with m.If(writes & (w.rd == i)):
                m.d.sync += s[i].eq(res)

    def _dispatch(self, m, running, pc, depth, s, done):
        """Take an instruction while idle: fields to ``s1..s7``, the other scalars cleared, ``pc``
        at the routine's entry."""
        mc = self.mc
        m.d.comb += [self.cmd.ready.eq(~running), self.done.eq(done)]
        with m.If(done):
            m.d.sync += running.eq(0)
        ins = self.cmd.payload
        with m.If(self.cmd.valid & ~running):
            m.d.sync += [running.eq(1), depth.eq(0), self.op.eq(ins.op.as_value())]
            for i in range(1, _N):
                m.d.sync += s[i].eq(ins.f[i - 1] if i <= 7 else 0)
            with m.Switch(ins.op):
                for op, entry in mc.entries.items():
                    with m.Case(opcode(op)):
                        m.d.sync += pc.eq(entry)

"""Instruction-set simulator of the vector unit: the bit and cycle reference of the RTL.

:class:`VectorISS` runs the microcode of :mod:`.routines` with the cycle rules of :mod:`.uisa`.

* **Functional mode** (``timing_only=False``): every lane of every micro-operation is computed
  with ``pimgpt/core/numerics.py``, the scratchpad is read and written; results are bit for bit
  those of ``pimgpt/core/nonlinear.py`` (the golden model), cycles are those of the RTL.
* **Timing mode** (``timing_only=True``): only the scalar part runs (addresses, loop counts,
  branches: they depend on the instruction's fields alone), vector operations only occupy the
  scoreboard and the write port. A hardware loop whose iterations repeat exactly (the same
  relative scoreboard state at the start of two consecutive iterations, scalar registers changing
  by the same amounts, no changing register steering control flow inside) is fast-forwarded to its
  last two iterations (a loop may load one iteration ahead, past its window, in both), so the
  cost of a routine is found in a few hundred steps whatever ``n``. Both modes give the same
  cycle counts and words (tested).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from pimgpt.core import nonlinear as nl
from pimgpt.core import numerics as nx
from pimgpt.core.isa import Op

from .uisa import (
    BRANCH_OPS,
    MODE_CIMM,
    MODE_SIGN,
    MODE_UPPER,
    N_SREGS,
    N_VREGS,
    TABLES,
    VFP_OPS,
    BSel,
    Fill,
    Pipeline,
    Unit,
    UOp,
    UWord,
    scalar_reads,
    scalar_writes,
    unit_of,
    vector_reads,
    vector_writes,
)

_M32 = 0xFFFFFFFF
_FILL_BITS = {Fill.NEG_ZERO: 0x80000000, Fill.NEG_INF: 0xFF800000, Fill.POS_ZERO: 0}


class ISSError(RuntimeError):
    """The microcode did something the machine cannot (scratchpad out of range, loop overflow)."""


@dataclass
class Microcode:
    """An assembled ROM: micro-words, the entry of every vector opcode, the labels."""

    words: list[UWord]
    entries: dict[Op, int]
    lanes: int
    lat: Pipeline
    labels: dict[str, int] = field(default_factory=dict, repr=False)


@dataclass
class RunStats:
    """What one instruction cost: cycles, micro-operations, fp lane operations, words moved."""

    cycles: int = 0
    uops: int = 0
    fp_ops: int = 0
    words: int = 0

    def as_tuple(self) -> tuple[int, int, int, int]:
        return self.cycles, self.uops, self.fp_ops, self.words


def _key2(bits: np.ndarray) -> np.ndarray:
    """Float-order key with ``-0 == +0`` and NaN above everything (VFGT/VFEQ)."""
    k = nx.f32_order_key(nx.f32_from_bits(bits))
    return np.where(k == np.uint32(0x7FFFFFFF), np.uint32(0x80000000), k)


class VectorISS:
    """Executes vector instructions on a scratchpad (``uint32`` words) with the microcode.

    Parameters
    ----------
    microcode : Microcode
        The ROM (:func:`pimgpt.core.vu.routines.build_microcode`).
    scratchpad : numpy.ndarray of uint32, optional
        Modified in place (functional mode); not needed in timing mode.
    timing_only : bool
        Timing mode (see the module docstring).
    """

    def __init__(self, microcode: Microcode, scratchpad: np.ndarray | None = None,
                 timing_only: bool = False):
        self.mc = microcode
        self.W = microcode.lanes
        self.lat = microcode.lat
        self.sp = scratchpad
        self.timing_only = timing_only
        if not timing_only and scratchpad is None:
            raise ISSError("functional mode needs a scratchpad")
        self.fe_regs = [0] * 16
        #: Set to a list to record ``(pc, issue cycle)`` of every micro-operation.
        self.trace: list | None = None
        self._lane = np.arange(self.W, dtype=np.int64)
        self._info = [self._decode(w) for w in microcode.words]

    def _decode(self, w: UWord) -> tuple:
        """Per micro-word: the word, vector reads, vector writes, latency, issue class, write
        port, and every register it touches / writes (scalars as ``32 + n``) for dual issue."""
        vr, vw = vector_reads(w), vector_writes(w)
        sw = scalar_writes(w)
        touched = frozenset(vr + vw + tuple(32 + r for r in scalar_reads(w) + sw))
        writes = frozenset(vw + tuple(32 + r for r in sw))
        unit = unit_of(w.op)
        port = "F" if unit is Unit.FP else ("I" if vw else None)
        return w, vr, vw, self.lat.of(w.op), unit, port, touched, writes

    # ---- one instruction ---------------------------------------------------------------------
    def run(self, op: Op, fields) -> RunStats:
        """Run one ASIC instruction (its field values in slot order); return its cost."""
        s = [0] * N_SREGS
        for k, v in enumerate(list(fields)[:7]):
            s[1 + k] = int(v) & _M32
        v = None if self.timing_only else np.zeros((N_VREGS, self.W), dtype=np.uint32)
        st = RunStats()
        ready = [0] * N_VREGS
        reserved = {"F": set(), "I": set()}
        t = 0  # cycle of the last issue (dispatch is cycle 0)
        pc = self.mc.entries[Op(op)]
        frames: list[dict] = []
        info = self._info
        dual = self.lat.issue == 2
        prev = None  # (pc, class, registers written) of the last op if its cycle has room
        while True:
            w, vr, vw, lat, unit, port, touched, writes = info[pc]
            uop = w.op
            # ---- issue time (cycle rules 1-3, 6)
            ti = None
            if (dual and prev is not None and prev[0] == pc - 1 and unit is not Unit.CONTROL
                    and unit is not prev[1] and not touched & prev[2]
                    and all(ready[r] <= t for r in vr + vw)
                    and (port is None or t + lat not in reserved[port])):
                ti = t  # paired with the previous operation
            if ti is None:
                ti = t + 1
                for r in vr:
                    if ready[r] > ti:
                        ti = ready[r]
                for r in vw:
                    if ready[r] > ti:
                        ti = ready[r]
                if uop is UOp.DONE:
                    ti = max([ti] + ready)
                if port is not None:
                    while ti + lat in reserved[port]:
                        ti += 1
                prev = None if unit is Unit.CONTROL else (pc, unit, writes)
            else:
                prev = None
            if port is not None:
                reserved[port].add(ti + lat)
                for r in vw:
                    ready[r] = ti + lat
            t = ti
            if self.trace is not None:
                self.trace.append((pc, ti))
            st.uops += 1
            if uop in VFP_OPS:
                st.fp_ops += self.W * (2 if uop is UOp.VMAD else 1)
            if uop is UOp.DONE:
                break
            npc = pc + 1
            # ---- effects
            if uop is UOp.LOOP:
                count = s[w.ra]
                if frames:
                    frames[-1]["ctrl"].add(w.ra)
                if count == 0:
                    npc = w.imm + 1
                else:
                    if len(frames) >= 4:
                        raise ISSError("hardware loops nested deeper than 4")
                    frames.append({"start": pc + 1, "end": w.imm, "left": count, "hist": [],
                                   "ctrl": set()})
            elif uop in BRANCH_OPS:
                a, b = s[w.ra], s[w.rb]
                if frames:
                    frames[-1]["ctrl"].update((w.ra, w.rb))
                taken = {UOp.BEQ: a == b, UOp.BNE: a != b, UOp.BLTU: a < b,
                         UOp.BGEU: a >= b}[uop]
                if taken:
                    npc = w.imm
            elif uop in (UOp.VLD, UOp.VST):
                st.words += self._mem(w, s, v)
            elif w.op.name.startswith("V"):
                if v is not None:
                    self._vector(w, s, v)
            else:
                self._scalar(w, s, v)
            # ---- loop back edge (cycle rule 4: free): leaving the body's last micro-op
            while frames and npc == frames[-1]["end"] + 1:
                f = frames[-1]
                if f["left"] > 1:
                    f["left"] -= 1
                    npc = f["start"]
                    if self.timing_only:
                        t = self._fast_forward(f, t, s, ready, reserved, st)
                    break
                frames.pop()  # an enclosing loop may end at the same micro-op
            if npc != pc + 1:
                prev = None
            pc = npc
            for port_set in reserved.values():
                if len(port_set) > 64:
                    live = {c for c in port_set if c > t}
                    port_set.clear()
                    port_set.update(live)
        st.cycles = t + 1
        return st

    def _fast_forward(self, f: dict, t: int, s: list, ready: list, reserved: dict,
                      st: RunStats) -> int:
        """At the start of an iteration: skip to the last two if iterations repeat exactly (the
        last two run: a loop that loads one iteration ahead moves fewer words in both, where its
        loads reach past their window)."""
        rel = (tuple(max(r - t, 0) for r in ready),
               tuple(tuple(sorted(c - t for c in p if c > t)) for p in reserved.values()))
        hist = f["hist"]
        hist.append((t, rel, tuple(s), st.as_tuple()))
        if len(hist) < 3 or f["left"] < 3:
            return t
        (t0, r0, s0, q0), (t1, r1, s1, q1), (t2, r2, s2, q2) = hist[-3:]
        if r1 != r2 or t2 - t1 != t1 - t0:
            return t
        ds = [(b - a) & _M32 for a, b in zip(s1, s2, strict=True)]
        if ds != [(b - a) & _M32 for a, b in zip(s0, s1, strict=True)]:
            return t
        if any(ds[r] for r in f["ctrl"]):
            return t
        dq = [b - a for a, b in zip(q1, q2, strict=True)]
        if dq != [b - a for a, b in zip(q0, q1, strict=True)]:
            return t
        m = f["left"] - 2
        dt = m * (t2 - t1)
        for k in range(N_SREGS):
            s[k] = (s[k] + m * ds[k]) & _M32
        for k in range(N_VREGS):
            if ready[k] > t:
                ready[k] += dt
        for port_set in reserved.values():
            shifted = {c + dt for c in port_set if c > t}
            port_set.clear()
            port_set.update(shifted)
        st.uops += m * dq[1]
        st.fp_ops += m * dq[2]
        st.words += m * dq[3]
        f["left"] = 2
        f["hist"] = []
        return t + dt

    # ---- semantics ---------------------------------------------------------------------------
    def _b(self, w: UWord, s: list, v) -> np.ndarray:
        if w.bsel is BSel.REG:
            return v[w.rb]
        value = w.imm if w.bsel is BSel.IMM else s[w.rb]
        return np.full(self.W, value, dtype=np.uint32)

    def _mem(self, w: UWord, s: list, v) -> int:
        W = self.W
        a = (s[w.ra] + w.imm) & _M32
        lo, hi = s[w.rc], s[w.rb]
        addr = (a + self._lane) & _M32
        valid = (addr >= lo) & (addr < hi)
        count = int(valid.sum())
        if v is None:
            return count
        if count and int(addr[valid].max()) >= len(self.sp):
            raise ISSError(f"{w.op.name} at word {int(addr[valid].max())} is beyond the "
                           f"{len(self.sp)}-word scratchpad")
        if w.op is UOp.VLD:
            new = np.full(W, _FILL_BITS[Fill(w.mode)], dtype=np.uint32)
            new[valid] = self.sp[addr[valid]]
            v[w.rd] = new
        else:
            self.sp[addr[valid]] = v[w.rd][valid]
        return count

    def _scalar(self, w: UWord, s: list, v) -> None:
        uop = w.op
        a = s[w.ra]
        b = w.imm if w.bsel is BSel.IMM else s[w.rb]
        if uop is UOp.WSR:
            self.fe_regs[b & 15] = a
            return
        if uop is UOp.SMOVV:
            res = 0 if v is None else int(v[w.ra][b % self.W])
        elif uop is UOp.RSR:
            res = self.fe_regs[b & 15]
        elif uop is UOp.SADD:
            res = a + b
        elif uop is UOp.SSUB:
            res = a - b
        elif uop is UOp.SAND:
            res = a & b
        elif uop is UOp.SOR:
            res = a | b
        elif uop is UOp.SSHL:
            res = a << (b & 31)
        elif uop is UOp.SSHR:
            res = a >> (b & 31)
        elif uop is UOp.SMIN:
            res = min(a, b)
        elif uop is UOp.SMAX:
            res = max(a, b)
        else:
            raise ISSError(f"unknown micro-operation {uop.name}")
        if w.rd:
            s[w.rd] = res & _M32

    def _vector(self, w: UWord, s: list, v) -> None:  # noqa: C901 - one table of lane semantics
        uop, W = w.op, self.W
        a = v[w.ra]
        f = nx.f32_from_bits
        if uop is UOp.VMAD:
            c = np.full(W, w.imm, dtype=np.uint32) if w.mode & MODE_CIMM else v[w.rc]
            res = nx.bits_from_f32(nx.f32_mad(f(a), f(self._b(w, s, v)), f(c)))
        elif uop is UOp.VIOTA:
            res = (self._lane + int(self._b(w, s, v)[0])).astype(np.uint32)
        elif uop is UOp.VBCAST:
            res = self._b(w, s, v).copy()
        else:
            b = self._b(w, s, v)
            if uop is UOp.VFADD:
                res = nx.bits_from_f32(nx.f32_add(f(a), f(b)))
            elif uop is UOp.VFMUL:
                res = nx.bits_from_f32(nx.f32_mul(f(a), f(b)))
            elif uop is UOp.VADD:
                res = a + b
            elif uop is UOp.VSUB:
                res = a - b
            elif uop is UOp.VRSUB:
                res = b - a
            elif uop is UOp.VAND:
                res = a & b
            elif uop is UOp.VOR:
                res = a | b
            elif uop is UOp.VXOR:
                res = a ^ b
            elif uop is UOp.VSHL:
                res = a << (b & np.uint32(31))
            elif uop is UOp.VSHR:
                res = a >> (b & np.uint32(31))
            elif uop is UOp.VSRA:
                res = (a.view(np.int32) >> (b & np.uint32(31)).astype(np.int32)).view(np.uint32)
            elif uop is UOp.VFMAX:
                res = nx.bits_from_f32(nl.fmax(f(a), f(b)))
            elif uop is UOp.VFMIN:
                res = nx.bits_from_f32(nl.fmin(f(a), f(b)))
            elif uop is UOp.VFGT:
                res = (_key2(a) > _key2(b)).astype(np.uint32)
            elif uop is UOp.VFEQ:
                res = (_key2(a) == _key2(b)).astype(np.uint32)
            elif uop is UOp.VSLTU:
                res = (a < b).astype(np.uint32)
            elif uop is UOp.VCMOV:
                cond = (a >> np.uint32(31)) != 0 if w.mode & MODE_SIGN else a != 0
                res = np.where(cond, b, v[w.rd])
            elif uop is UOp.VTBL:
                table = np.asarray(TABLES[w.mode], dtype=np.uint32)
                res = table[a & np.uint32(len(table) - 1)]
            elif uop is UOp.VSHD:
                h = int(b[0])
                src = self._lane + h
                res = np.where(src < W, a[np.minimum(src, W - 1)], np.uint32(0x80000000))
            elif uop is UOp.VBCL:
                res = np.full(W, a[int(b[0]) % W], dtype=np.uint32)
            elif uop is UOp.VUZP:
                seg = int(b[0])
                half = W // 2
                if seg < 1 or seg > half or seg & (seg - 1):
                    raise ISSError(f"VUZP segment {seg} is not a power of two in 1..{half}")
                j = self._lane % half
                src = (j // seg) * 2 * seg + j % seg + (seg if w.mode & MODE_UPPER else 0)
                res = np.where(self._lane < half, a[src], v[w.rc][src])
            else:
                raise ISSError(f"unknown micro-operation {uop.name}")
        v[w.rd] = np.asarray(res, dtype=np.uint32)

"""Assembler of the vector unit's microcode: virtual vector registers, hardware loops, forward
branches, and scheduled regions.

Routines are written with *virtual* vector registers (:class:`VReg`) and physical scalar
registers (:class:`SReg`). Two passes turn them into micro-words:

1. **Scheduling** (inside ``with asm.sched():``): the operations of the region form a dependency
   graph (register read/write order, scratchpad order within a copy, scalar address registers)
   and are reordered by a greedy list scheduler that knows the latencies of :mod:`.uisa`, so that
   independent copies of a loop body (``asm.copy(c)``) interleave and the pipelines stay full. At
   most ``max_open`` copies are in flight at a time, which bounds the registers they need.
2. **Register allocation**: every virtual register gets one of the 32 physical ones by linear
   scan over the final code, with live ranges widened over a loop when the register is used across
   its iterations (defined outside and used inside, or read before written inside).

Loops are ``LOOP`` micro-operations (zero-overhead hardware loops); branches only jump forward
(to skip code that the instruction's fields do not need), so the code stays a straight line with
holes and a linear-scan allocation is exact.
"""

from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass, field

from .uisa import (
    MODE_CIMM,
    N_SREGS,
    N_VREGS,
    BSel,
    Fill,
    Pipeline,
    Unit,
    UOp,
    UWord,
    unit_of,
)


class AsmError(ValueError):
    """The microcode cannot be assembled (undefined label, too many live registers, ...)."""


@dataclass(frozen=True)
class SReg:
    """A physical scalar register ``s<n>``."""

    n: int

    def __post_init__(self):
        if not 0 <= self.n < N_SREGS:
            raise AsmError(f"scalar register s{self.n} does not exist")


@dataclass(eq=False)
class VReg:
    """A virtual vector register (a physical one is chosen by the allocator)."""

    name: str
    phys: int | None = None

    def __repr__(self):
        return f"%{self.name}"


@dataclass(eq=False)
class _Op:
    """One micro-operation before allocation. ``vr``/``vw``/``sr``/``sw``: registers read and
    written (for dependencies); ``regs``: the VReg/SReg/int of rd, ra, rb, rc."""

    op: UOp
    regs: tuple
    bsel: BSel
    mode: int
    imm: object  # int, or a label name (LOOP end, branch target)
    vr: tuple = ()
    vw: tuple = ()
    sr: tuple = ()
    sw: tuple = ()
    mem: bool = False
    copy: int | None = None
    pos: int = -1


@dataclass
class _Label:
    name: str


@dataclass
class _LoopEnd:
    name: str


@dataclass
class _Sched:
    ops: list = field(default_factory=list)
    max_open: int = 4


class Asm:
    """Microcode assembler for a ``lanes``-wide unit with pipeline latencies ``lat``."""

    def __init__(self, lanes: int, lat: Pipeline):
        self.lanes = lanes
        self.lat = lat
        self.items: list = []
        self._sched: _Sched | None = None
        self._copy: int | None = None
        self._n = 0

    # ---- names -------------------------------------------------------------------------------
    def fresh(self, stem: str) -> str:
        """A unique label name."""
        self._n += 1
        return f"{stem}.{self._n}"

    def vreg(self, name: str = "v") -> VReg:
        """A fresh virtual vector register."""
        self._n += 1
        return VReg(f"{name}{self._n}")

    # ---- emission ----------------------------------------------------------------------------
    def _emit(self, o: _Op) -> None:
        o.copy = self._copy
        if self._sched is not None:
            if o.op in (UOp.LOOP, UOp.DONE) or o.op.name.startswith("B"):
                raise AsmError(f"{o.op.name} inside a scheduled region")
            self._sched.ops.append(o)
        else:
            self.items.append(o)

    @staticmethod
    def _b(b):
        """(register field, bsel, imm, vector reads, scalar reads) of operand B."""
        if isinstance(b, VReg):
            return b, BSel.REG, 0, (b,), ()
        if isinstance(b, SReg):
            return b, BSel.SREG, 0, (), (b,)
        if isinstance(b, int):
            return 0, BSel.IMM, b & 0xFFFFFFFF, (), ()
        raise AsmError(f"bad operand {b!r}")

    def v(self, op: UOp, vd: VReg, va: VReg | None, b=0, mode: int = 0, vc: VReg | None = None):
        """A vector operation ``vd = op(va, B)`` (``b``: VReg, SReg broadcast or immediate)."""
        rb, bsel, imm, vrb, srb = self._b(b)
        reads = ((va,) if va is not None else ()) + vrb + ((vc,) if vc is not None else ())
        if op is UOp.VCMOV:
            reads += (vd,)
        self._emit(_Op(op, (vd, va or 0, rb, vc or 0), bsel, mode, imm, reads, (vd,), srb))

    def mad(self, vd: VReg, va: VReg, b, c):
        """``vd = va*B + C`` with ``C`` a VReg or an immediate (then ``B`` must be a register)."""
        if isinstance(c, int):
            if isinstance(b, int):
                raise AsmError("VMAD takes at most one immediate")
            rb, bsel, _, vrb, srb = self._b(b)
            self._emit(_Op(UOp.VMAD, (vd, va, rb, 0), bsel, MODE_CIMM, c & 0xFFFFFFFF,
                           (va,) + vrb, (vd,), srb))
        else:
            self.v(UOp.VMAD, vd, va, b, vc=c)

    def ld(self, vd: VReg, addr: SReg, lo: SReg, hi: SReg, fill: Fill = Fill.NEG_ZERO,
           off: int = 0):
        """``vd`` = the ``W`` words at ``addr + off`` inside the window ``[lo, hi)``."""
        self._emit(_Op(UOp.VLD, (vd, addr, hi, lo), BSel.REG, int(fill), off & 0xFFFFFFFF, (),
                       (vd,), (addr, hi, lo), (), mem=True))

    def st(self, vs: VReg, addr: SReg, lo: SReg, hi: SReg, off: int = 0):
        """Store ``vs`` to the ``W`` words at ``addr + off`` inside the window ``[lo, hi)``."""
        self._emit(_Op(UOp.VST, (vs, addr, hi, lo), BSel.REG, 0, off & 0xFFFFFFFF, (vs,), (),
                       (addr, hi, lo), (), mem=True))

    def s(self, op: UOp, rd: SReg, ra: SReg, b=0):
        """A scalar operation ``rd = op(ra, B)`` (``b``: SReg or immediate)."""
        if isinstance(b, SReg):
            rb, bsel, imm, srb = b, BSel.REG, 0, (b,)
        else:
            rb, bsel, imm, srb = 0, BSel.IMM, int(b) & 0xFFFFFFFF, ()
        self._emit(_Op(op, (rd, ra, rb, 0), bsel, 0, imm, (), (), (ra,) + srb, (rd,)))

    def li(self, rd: SReg, value: int):
        """``rd = value``."""
        self.s(UOp.SADD, rd, SReg(0), value)

    def movv(self, rd: SReg, va: VReg, lane: int = 0):
        """``rd = va[lane]``."""
        self._emit(_Op(UOp.SMOVV, (rd, va, 0, 0), BSel.IMM, 0, lane, (va,), (), (), (rd,)))

    def wsr(self, src: SReg, reg: SReg):
        """Front-end register ``R[reg] = src``."""
        self._emit(_Op(UOp.WSR, (0, src, reg, 0), BSel.SREG, 0, 0, (), (), (src, reg), ()))

    def rsr(self, rd: SReg, reg: SReg):
        """``rd`` = front-end register ``R[reg]``."""
        self._emit(_Op(UOp.RSR, (rd, 0, reg, 0), BSel.SREG, 0, 0, (), (), (reg,), (rd,)))

    def br(self, op: UOp, ra: SReg, rb: SReg, target: str):
        """Forward branch to ``target`` if ``ra cmp rb``."""
        self._emit(_Op(op, (0, ra, rb, 0), BSel.REG, 0, target, (), (), (ra, rb), ()))

    def label(self, name: str):
        if self._sched is not None:
            raise AsmError("label inside a scheduled region")
        self.items.append(_Label(name))

    def done(self):
        self._emit(_Op(UOp.DONE, (0, 0, 0, 0), BSel.REG, 0, 0))

    @contextmanager
    def loop(self, count: SReg):
        """``with asm.loop(s):`` runs the body ``s`` times (a ``LOOP`` micro-operation)."""
        end = self.fresh("loopend")
        self._emit(_Op(UOp.LOOP, (0, count, 0, 0), BSel.IMM, 0, end, (), (), (count,), ()))
        start = len(self.items)
        yield
        if len(self.items) == start:
            raise AsmError("empty loop body")
        self.items.append(_LoopEnd(end))

    @contextmanager
    def copy(self, c: int):
        """Operations emitted inside belong to copy ``c`` of an unrolled body."""
        old, self._copy = self._copy, c
        yield
        self._copy = old

    @contextmanager
    def sched(self, max_open: int = 4, tail: int = 0, ports: bool = False, slack: int = 0):
        """Collect the operations of the block and emit them list-scheduled (see module doc):
        at most ``max_open`` copies in flight, not counting those with ``tail`` or fewer
        operations left; ``ports`` and ``slack``: see :func:`_schedule` (for regions where a
        critical chain shares a write port with many independent loads)."""
        if self._sched is not None:
            raise AsmError("nested scheduled regions")
        self._sched = _Sched(max_open=max_open)
        yield
        ops, self._sched = self._sched.ops, None
        self.items.extend(_schedule(ops, self.lat, max_open, tail, ports, slack))

    @contextmanager
    def capture(self):
        """Collect the operations emitted inside into the yielded list instead of emitting them
        (for :meth:`modulo`)."""
        if self._sched is not None:
            raise AsmError("capture inside a scheduled region")
        self._sched = _Sched()
        box: list = []
        yield box
        box.extend(self._sched.ops)
        self._sched = None

    def modulo(self, ops: list, advance: int, ptrs: tuple = ()) -> tuple | None:
        """Software-pipeline one loop iteration of identical copies
        (:func:`.modulo.software_pipeline`): ``(prologue, body, epilogue, advanced)`` or None
        when the copies do not fit two stages; ``advanced``: the pointers ``ptrs`` advance
        inside the prologue and the body."""
        from .modulo import software_pipeline

        return software_pipeline(ops, self.lat, advance, self.vreg, tuple(ptrs))

    def emit_ops(self, ops: list) -> None:
        """Append already formed operations (a part of :meth:`modulo`'s plan) in order."""
        for o in ops:
            self._emit(o)

    # ---- assembly ----------------------------------------------------------------------------
    def assemble(self) -> tuple[list[UWord], dict[str, int]]:
        """Allocate registers, resolve labels; return the micro-words and the label addresses."""
        ops = [it for it in self.items if isinstance(it, _Op)]
        labels: dict[str, int] = {}
        loops: list[tuple[int, int]] = []
        open_loops: list[int] = []
        pc = 0
        for it in self.items:
            if isinstance(it, _Op):
                it.pos = pc
                if it.op is UOp.LOOP:
                    open_loops.append(pc)
                pc += 1
            elif isinstance(it, _Label):
                if it.name in labels:
                    raise AsmError(f"duplicate label {it.name!r}")
                labels[it.name] = pc
            else:  # loop end: the last op of the body is pc - 1
                labels[it.name] = pc - 1
                loops.append((open_loops.pop(), pc - 1))
        _allocate(ops, loops)
        words = []
        for o in ops:
            imm = o.imm
            if isinstance(imm, str):
                if imm not in labels:
                    raise AsmError(f"undefined label {imm!r}")
                imm = labels[imm]
                if o.op is not UOp.LOOP and imm <= o.pos:
                    raise AsmError(f"branch to {o.imm!r} jumps backwards")
            fields = [_num(r) for r in o.regs]
            words.append(UWord(o.op, *fields, o.bsel, o.mode, imm))
        return words, labels


def _num(r) -> int:
    if isinstance(r, VReg):
        return r.phys
    if isinstance(r, SReg):
        return r.n
    return int(r)


# ---------------------------------------------------------------------------------------------
# List scheduling of a straight-line region
# ---------------------------------------------------------------------------------------------
def _schedule(ops: list[_Op], lat: Pipeline, max_open: int, tail: int = 0,
              ports: bool = False, slack: int = 0) -> list[_Op]:
    """List-schedule ``ops``; a copy with at most ``tail`` operations left no longer counts
    against ``max_open`` (its last operations overlap the next copy's first ones). With
    ``ports`` the register-file write ports are modelled (cycle rule 2) and an operation may
    be chosen up to ``slack`` cycles after the earliest candidate when it is more critical."""
    n = len(ops)
    preds: list[list[tuple[int, int]]] = [[] for _ in range(n)]
    last_w: dict = {}
    reads_since: dict = {}
    last_mem: dict = {}
    for i, o in enumerate(ops):
        for r in o.vr + o.sr:
            if r in last_w:
                j = last_w[r]
                preds[i].append((j, _lat(ops[j], r, lat)))
        for r in o.vw + o.sw:
            if r in last_w:  # write after write: wait for the earlier result (interlock)
                j = last_w[r]
                preds[i].append((j, _lat(ops[j], r, lat)))
            for j in reads_since.get(r, ()):  # write after read: keep the order
                preds[i].append((j, 0))
        if o.mem:
            key = o.copy
            if key in last_mem:
                preds[i].append((last_mem[key], 0))
            if key is not None and None in last_mem:
                preds[i].append((last_mem[None], 0))
            if key is None:
                preds[i].extend((j, 0) for k, j in last_mem.items() if k is not None)
            last_mem[key] = i
        for r in o.vr + o.sr:
            reads_since.setdefault(r, []).append(i)
        for r in o.vw + o.sw:
            last_w[r] = i
            reads_since[r] = []
    succs: list[list[tuple[int, int]]] = [[] for _ in range(n)]
    for i, ps in enumerate(preds):
        for j, d in ps:
            succs[j].append((i, d))
    height = [0] * n
    for i in range(n - 1, -1, -1):
        height[i] = max((d + height[k] for k, d in succs[i]), default=0) + 1
    remaining = [len(p) for p in preds]
    earliest = [0] * n
    left_in_copy: dict = {}
    for o in ops:
        left_in_copy[o.copy] = left_in_copy.get(o.copy, 0) + 1
    opened: set = set()
    ready = [i for i in range(n) if remaining[i] == 0]
    out: list[_Op] = []
    unit = [unit_of(o.op) for o in ops]
    # register-file write ports (cycle rule 2): FP results on F, other vector results on I
    port = [("F" if unit[i] is Unit.FP else ("I" if o.vw else None)) for i, o in enumerate(ops)]
    wlat = [lat.of(o.op) for o in ops]
    taken: dict = {"F": set(), "I": set()} if ports else {}
    t, room = 0, None  # cycle of the last issue; the class there if a second op may join it
    while ready:
        n_live = sum(1 for c in opened if c is not None and left_in_copy[c] > tail)
        cands = [i for i in ready if ops[i].copy is None or ops[i].copy in opened
                 or n_live < max_open] or ready

        def when(i, t=t, room=room):
            busy = taken.get(port[i], ())
            if (room is not None and unit[i] is not room and earliest[i] <= t
                    and t + wlat[i] not in busy):
                return t
            tb = max(earliest[i], t + 1)
            while tb + wlat[i] in busy:
                tb += 1
            return tb

        tw = {i: when(i) for i in cands}
        first = min(tw.values())
        # a more critical operation may wait a cycle rather than lose its write port slot to
        # a string of less critical ones
        # (with ports) an operation that writes no register-file port and pairs with the last
        # one takes a free slot: it goes first
        best = min(cands, key=lambda i: (not (ports and tw[i] == t and port[i] is None),
                                         tw[i] > first + slack, -height[i], tw[i], i))
        ready.remove(best)
        tb = when(best)
        room = None if (tb == t or lat.issue == 1 or unit[best] is Unit.CONTROL) else unit[best]
        t = tb
        if port[best] in taken:
            taken[port[best]].add(t + wlat[best])
        o = ops[best]
        opened.add(o.copy)
        left_in_copy[o.copy] -= 1
        out.append(o)
        for k, d in succs[best]:
            earliest[k] = max(earliest[k], t + max(d, 1 if d else 0))
            remaining[k] -= 1
            if remaining[k] == 0:
                ready.append(k)
    if len(out) != n:
        raise AsmError("dependency cycle in a scheduled region")
    return out


def _lat(producer: _Op, reg, lat: Pipeline) -> int:
    if isinstance(reg, SReg):
        return 1
    return max(lat.of(producer.op), 1)


# ---------------------------------------------------------------------------------------------
# Register allocation (linear scan over the final code)
# ---------------------------------------------------------------------------------------------
def _allocate(ops: list[_Op], loops: list[tuple[int, int]]) -> None:
    first: dict = {}
    last: dict = {}
    first_is_read: dict = {}
    refs: dict = {}
    for o in ops:
        regs = [r for r in o.regs if isinstance(r, VReg)]
        for r in regs:
            refs.setdefault(r, []).append(o.pos)
            if r not in first:
                first[r] = o.pos
                first_is_read[r] = r in o.vr
            last[r] = o.pos
    changed = True
    while changed:  # widen live ranges over loops until stable (nested loops)
        changed = False
        for lo, hi in loops:
            for r, ps in refs.items():
                inside = [p for p in ps if lo < p <= hi]
                if not inside:
                    continue
                outside = first[r] <= lo or last[r] > hi
                carried = _first_ref_reads(ops, r, lo, hi)
                if (outside or carried) and (first[r] > lo or last[r] < hi):
                    first[r] = min(first[r], lo)
                    last[r] = max(last[r], hi)
                    changed = True
    for r, is_read in first_is_read.items():
        if is_read and first[r] == refs[r][0]:
            raise AsmError(f"virtual register {r} is read before it is written")
    order = sorted(first, key=lambda r: (first[r], last[r]))
    free = list(range(N_VREGS))
    active: list[VReg] = []
    for r in order:
        for a in list(active):
            if last[a] < first[r]:
                active.remove(a)
                free.append(a.phys)
        if not free:
            raise AsmError(f"more than {N_VREGS} vector registers live at micro-op {first[r]}")
        r.phys = free.pop(0)
        active.append(r)


def _first_ref_reads(ops: list[_Op], r: VReg, lo: int, hi: int) -> bool:
    for o in ops[lo + 1:hi + 1]:
        if r in o.vr:
            return True
        if r in o.vw:
            return False
    return False

"""Modulo scheduling (software pipelining) of a loop iteration made of identical copies of one
body: :meth:`pimgpt.core.vu.asm.Asm.modulo` (used by ``routines.blocks(pipelined=True)``)."""

from __future__ import annotations

from dataclasses import replace

from .asm import VReg, _Op
from .uisa import BSel, Pipeline, Unit, UOp, unit_of


def _copy_slots(ops: list[_Op], lat: Pipeline) -> tuple[int, list[int]] | None:
    """A modulo schedule of one copy: the initiation interval ``II`` (cycles between copies) and
    each operation's issue offset, such that copies started ``II`` apart never compete for an
    issue slot (at most ``issue`` per cycle, of different classes) or a write port. The
    smallest ``II`` the resources allow first (:func:`_fit`)."""
    units = [unit_of(o.op) for o in ops]
    ports = [("F" if u is Unit.FP else ("I" if o.vw else None))
             for u, o in zip(units, ops, strict=True)]
    wl = [lat.of(o.op) for o in ops]
    deps: list[list[tuple[int, int]]] = []
    for i, o in enumerate(ops):
        d = []
        for j, p in enumerate(ops[:i]):
            if set(p.vw + p.sw) & set(o.vr + o.sr + o.vw + o.sw):  # RAW, WAW: the result
                d.append((j, max(wl[j], 1)))
            elif set(p.vr + p.sr) & set(o.vw + o.sw) or (p.mem and o.mem):  # order only
                d.append((j, 0))
        deps.append(d)
    counts = [sum(u is k for u in units) for k in Unit] + [ports.count("F"), ports.count("I")]
    lo = max(max(counts), -(-len(ops) // lat.issue))
    for ii in range(lo, 2 * lo + 1):
        at = _fit(ii, lat.issue, units, ports, wl, deps)
        if at is not None:
            return ii, at
    return None


def _fit(ii: int, issue: int, units: list, ports: list, wl: list[int],
         deps: list[list[tuple[int, int]]]) -> list[int] | None:
    """Issue offsets for interval ``ii``: each operation as early as its inputs allow, by a
    depth-first search (bounded) that moves earlier operations when a later one finds no
    free slot modulo ``ii``."""
    slots: list[list] = [[] for _ in range(ii)]
    taken: dict = {"F": set(), "I": set()}
    at: list[int] = []
    budget = [20000]

    def place(i: int) -> bool:
        if i == len(units):
            return True
        t0 = max((at[j] + d for j, d in deps[i]), default=0)
        for t in range(t0, t0 + ii):
            budget[0] -= 1
            if budget[0] < 0:
                return False
            sl, pt, w = slots[t % ii], ports[i], (t + wl[i]) % ii
            if len(sl) >= issue or units[i] in sl or (pt is not None and w in taken[pt]):
                continue
            sl.append(units[i])
            if pt is not None:
                taken[pt].add(w)
            at.append(t)
            if place(i + 1):
                return True
            at.pop()
            sl.remove(units[i])
            if pt is not None:
                taken[pt].discard(w)
        return False

    return at if place(0) else None


def _advance_slots(placed: list, T: int, n: int) -> list[int] | None:
    """Cycles of the iteration (``[0, T)``) where a pointer's ``SADD`` can pair with the one
    operation issued there (not a scalar one), the first ``n`` of them; None if too few."""
    per: dict = {}
    for t, _st, _c, _i, o in placed:
        per.setdefault(t, []).append(unit_of(o.op))
    free = [t for t in range(T) if len(per.get(t, ())) == 1 and per[t][0] is not Unit.SCALAR]
    return free[:n] if len(free) >= n else None


def software_pipeline(ops: list[_Op], lat: Pipeline, advance: int,
                      fresh, ptrs: tuple = ()) -> tuple[list, list, list, bool] | None:
    """Software pipelining of one loop iteration: ``ops`` are ``C`` copies of one body (the same
    operations in the same order, copy numbers ``0..C-1``), every memory operation addressed
    from a pointer that the caller advances by ``advance`` after each part. Copy ``c`` starts
    ``c * II`` cycles into the iteration (:func:`_copy_slots`); what falls past the iteration's
    ``T = C * II`` cycles (stage 1) runs in the next one, beside the next copies' start, so the
    iteration has no ramp. Returns the prologue (stage 0 of the first iteration), the loop body
    (stage 1 of the previous iteration, then stage 0, merged in time order) and the epilogue
    (stage 1 of the last); stage-1 memory offsets are lowered by ``advance``. Values passed from
    stage 0 to stage 1 keep their virtual register across the three parts (live across the
    loop); the others are renamed per part. None when a copy needs more than two stages or a
    passed value would be overwritten before it is read.

    ``ptrs``: the pointer registers the caller would advance after the prologue and after each
    body. When the iteration has an issue slot for each beside a lone operation, their ``SADD``
    operations go there instead (in the prologue and the body, at the same cycles), and every
    memory operation behind one in program order has its offset lowered by ``advance`` once
    more; the last element of the result then says so (the caller advances nothing). Scalar
    operations behind the loop body took a cycle each (12 per iteration of SOFTMAX's fused exp
    loop)."""
    by_copy: dict = {}
    for o in ops:
        by_copy.setdefault(o.copy, []).append(o)
    copies = [by_copy[c] for c in sorted(by_copy)]
    shape = [(o.op, o.bsel, o.mode) for o in copies[0]]
    if any([(o.op, o.bsel, o.mode) for o in cp] != shape for cp in copies):
        return None
    plan = _copy_slots(copies[0], lat)
    if plan is None:
        return None
    ii, at = plan
    T = ii * len(copies)
    placed = []  # (time in the iteration, stage, order, op)
    written: set = set()
    external: set = set()
    for o in ops:
        external.update(r for r in o.vr if r not in written)
        written.update(o.vw)
    passed: set = set()
    for c, cp in enumerate(copies):
        stage_of: dict = {}
        for i, o in enumerate(cp):
            g = c * ii + at[i]
            st = g // T
            if st > 1:
                return None
            placed.append((g - st * T, st, c, i, o))
            for r in o.vr:
                if r in stage_of and stage_of[r][0] == 0 and st == 1:
                    if g - T > stage_of[r][1]:  # read in the next iteration after its rewrite
                        return None
                    passed.add(r)
            for r in o.vw:
                stage_of[r] = (st, g)
    placed.sort(key=lambda x: (x[0], -x[1], x[2], x[3]))
    slots = _advance_slots(placed, T, len(ptrs)) if ptrs else None
    inside = slots is not None
    if inside:
        for k, (t, r) in enumerate(zip(slots, ptrs, strict=True)):
            sadd = _Op(UOp.SADD, (r, r, 0, 0), BSel.IMM, 0, advance & 0xFFFFFFFF, (), (), (r,),
                       (r,))
            placed.append((t, 0, len(copies), k, sadd))  # after the slot's operation
        placed.sort(key=lambda x: (x[0], -x[1], x[2], x[3]))

    def part(stages):
        names: dict = {}

        def ren(r):
            if isinstance(r, VReg) and r not in external and r not in passed:
                if r not in names:
                    names[r] = fresh(r.name.rstrip("0123456789"))
                return names[r]
            return r

        out = []
        moved: set = set()  # pointers advanced so far in this part
        for _, st, _, _, o in placed:
            if o.op is UOp.SADD:
                if 0 in stages:  # not in the epilogue
                    moved.add(o.regs[0])
                    out.append(o)
                continue
            if st not in stages:
                continue
            imm = o.imm
            if o.mem:
                times = (st == 1) + (o.regs[1] in moved)
                imm = (o.imm - times * advance) & 0xFFFFFFFF
            out.append(replace(o, regs=tuple(ren(r) for r in o.regs), imm=imm,
                               vr=tuple(ren(r) for r in o.vr), vw=tuple(ren(r) for r in o.vw),
                               copy=None, pos=-1))
        return out

    return part({0}), part({0, 1}), part({1}), inside


__all__ = ["software_pipeline"]

"""The microcode ROM: one routine per ASIC instruction, assembled for ``W`` lanes.

Every routine is branch-free with respect to data: its loops and branches depend on the
instruction's fields only (``n``, ``k``, ``rows``), so its cycle count is a function of the fields
and of ``W`` (what :mod:`.cost` relies on). Common structure:

* **Blocks**: a vector of ``n`` words is processed in blocks of ``W`` (the last one masked by the
  address window). A hardware loop runs ``K`` blocks per iteration (``K`` independent copies,
  list-scheduled so that the pipelines stay full), pointers advance by ``K*W`` once per
  iteration, and the last ``nb mod K`` blocks run in straight-line code behind forward branches
  (:func:`blocks`).
* **Sums** (:mod:`.routines_red`): block ``b`` of a row adds into accumulator ``b mod A``
  (``A = 128 / W``: register ``i`` holds virtual lanes ``iW .. iW+W-1`` of the contract's fold),
  then the tree: register pairs, then two rows at a time in one register (``VUZP``), then lane
  shifts (``VSHD``), exactly ``numerics.f32_tree_sum``.

Scalar register use: ``s1..s7`` the instruction's fields; ``s8..s31`` routine temporaries
(:class:`Scalars`).
"""

from __future__ import annotations

from pimgpt.core.isa import Op
from pimgpt.core.numerics import REDUCE_LANES

from . import routines_fn as fn
from .asm import Asm, AsmError, SReg, VReg
from .iss import Microcode
from .uisa import Fill, Pipeline, UOp, check_lanes

F = [SReg(i) for i in range(8)]  # F[1..7]: the instruction's fields
ZERO = SReg(0)


class Scalars:
    """Allocator of the scalar temporaries ``s8..s31`` of one routine."""

    def __init__(self):
        self.next = 8
        self._shared: dict[str, SReg] = {}

    def shared(self, name: str) -> SReg:
        """A temporary reused by every call that asks for ``name`` (e.g. loop counts)."""
        if name not in self._shared:
            self._shared[name] = self()
        return self._shared[name]

    def __call__(self) -> SReg:
        if self.next > 31:
            raise AsmError("routine needs more than 24 scalar temporaries")
        self.next += 1
        return SReg(self.next - 1)


def log2(x: int) -> int:
    return x.bit_length() - 1


def blocks_of(a: Asm, S: Scalars, n: SReg) -> SReg:
    """``ceil(n / W)``."""
    nb = S()
    a.s(UOp.SADD, nb, n, a.lanes - 1)
    a.s(UOp.SSHR, nb, nb, log2(a.lanes))
    return nb


def window(a: Asm, S: Scalars, lo: SReg, n: SReg) -> SReg:
    """``hi = lo + n``: the end of the address window of a vector at ``lo``."""
    hi = S()
    a.s(UOp.SADD, hi, lo, n)
    return hi


def copy_reg(a: Asm, S: Scalars, src: SReg) -> SReg:
    r = S()
    a.s(UOp.SADD, r, src, 0)
    return r


def blocks(a: Asm, S: Scalars, nb: SReg, rows: int, K: int, ptrs: list[SReg], body,
           max_open: int = 4, period: int = 1, tail: int = 0, rem_loop: bool = False,
           counted: bool = False, pipelined: bool = False) -> None:
    """Run ``body(q, b, off)`` for every block of ``rows`` rows.

    A loop runs ``K`` blocks per iteration (offsets ``off = b*W`` from the pointers ``ptrs``,
    which advance with the blocks done; block ``b`` of row ``q`` is copy ``b*rows + q`` of the
    scheduled body). The ``nb mod K`` blocks left run in chunks of ``K/2, K/4, ..., period``
    (each when its bit of the count is set), then the last ``< period`` one by one, all behind
    forward branches. ``body`` may depend on ``b mod period`` only (``period = A`` for the
    accumulators of a sum). With ``rem_loop`` (``period`` 1) the blocks left run in a loop of
    one block instead: ``K + 1`` copies of the body in the ROM rather than ``2K - 1``. With
    ``counted`` the caller has set ``S.shared("niter")`` to ``nb >> log2(K)`` (in an earlier
    scheduled region, where the scalar slot is free). With ``pipelined`` the loop is software
    pipelined (:meth:`Asm.modulo`: the copies start at a steady interval and the end of one
    iteration's copies runs beside the start of the next one's), when the body allows."""
    W = a.lanes
    niter, nrem, bit = S.shared("niter"), S.shared("nrem"), S.shared("kb")

    def copies(n_blocks: int):
        for b in range(n_blocks):
            for q in range(rows):
                with a.copy(b * rows + q):
                    body(q, b, b * W)

    def advance(n_blocks: int):
        for p in ptrs:
            a.s(UOp.SADD, p, p, n_blocks * W)

    def chunk(n_blocks: int, adv: bool):
        with a.sched(max_open, tail):
            copies(n_blocks)
            if adv:
                advance(n_blocks)

    if not counted:
        a.s(UOp.SSHR, niter, nb, log2(K))
    plan = None
    if pipelined:
        with a.capture() as ops:
            copies(K)
        plan = a.modulo(ops, K * W, ptrs)
    if plan is not None:  # prologue, niter - 1 iterations, epilogue
        pro, mid, epi, inside = plan
        plain, end = a.fresh("pipe.plain"), a.fresh("pipe.end")
        # the fill and drain cost about one iteration's ramp each: with fewer than 16 copies an
        # iteration's ramp is short, so the plain loop stays cheaper for two iterations
        a.li(bit, 2 if K * rows >= 16 else 3)
        a.br(UOp.BLTU, niter, bit, plain)
        a.emit_ops(pro)
        if not inside:
            advance(K)
        a.s(UOp.SSUB, niter, niter, 1)
        with a.loop(niter):
            a.emit_ops(mid)
            if not inside:
                advance(K)
        a.emit_ops(epi)
        a.br(UOp.BEQ, ZERO, ZERO, end)
        a.label(plain)  # one iteration (or none) costs less without the stagger
    with a.loop(niter):
        chunk(K, True)
    if plan is not None:
        a.label(end)
    if K == 1:
        return
    a.s(UOp.SAND, nrem, nb, K - 1)
    if rem_loop:
        if period != 1:
            raise AsmError("a remainder loop needs a body that does not depend on the block")
        with a.loop(nrem):
            chunk(1, True)
        return
    c = K // 2
    while c >= period:
        skip = a.fresh("chunk")
        a.s(UOp.SAND, bit, nrem, c)
        a.br(UOp.BEQ, bit, ZERO, skip)
        chunk(c, True)
        a.label(skip)
        c //= 2
    end = a.fresh("rem.end")
    for b in range(period - 1):
        a.s(UOp.SAND, bit, nrem, period - 1)
        a.li(niter, b + 1)
        a.br(UOp.BLTU, bit, niter, end)
        with a.sched(max_open, tail):
            for q in range(rows):
                with a.copy(q):
                    body(q, b, b * W)
    a.label(end)


# ---------------------------------------------------------------------------------------------
# Element-wise instructions
# ---------------------------------------------------------------------------------------------
def _elementwise(a: Asm, name: str, ins: tuple[int, ...], n_field: int, func, consts=(),
                 K: int = 8, max_open: int = 4, rem_loop: bool = False) -> None:
    """``dst[i] = func(src...[i])``: inputs at the fields ``ins``, ``dst`` in field 1."""
    a.label(name)
    S = Scalars()
    k = fn.Consts(a)
    k.need(*consts)
    n = F[n_field]
    srcs = [(copy_reg(a, S, F[f]), F[f], window(a, S, F[f], n)) for f in ins]
    dptr, dhi = copy_reg(a, S, F[1]), window(a, S, F[1], n)
    nb = blocks_of(a, S, n)

    def body(q, b, off):
        xs = []
        for p, lo, hi in srcs:
            x = a.vreg("x")
            a.ld(x, p, lo, hi, Fill.NEG_ZERO, off=off)
            xs.append(x)
        a.st(func(a, k, *xs), dptr, F[1], dhi, off=off)

    blocks(a, S, nb, 1, K, [p for p, _, _ in srcs] + [dptr], body, max_open, rem_loop=rem_loop)
    a.done()


def _binary(op: UOp):
    def f(a, k, x, y):
        z = a.vreg("z")
        a.v(op, z, x, y)
        return z
    return f


def _add3(a, k, x, y, z):
    """``x + (y + z)``: VADD3, two VADDs' roundings in one pass."""
    t = a.vreg("t")
    a.v(UOp.VFADD, t, y, z)
    r = a.vreg("r")
    a.v(UOp.VFADD, r, x, t)
    return r


def _scale(a, k, x):
    z = a.vreg("z")
    a.v(UOp.VFMUL, z, x, F[4])
    return z


def _flush(a, k, x):
    z = a.vreg("z")
    a.v(UOp.VFADD, z, x, fn.SIGN)  # x + (-0) = x after DAZ: the flush of VREDUCE k=1
    return z


def _vmov(a: Asm) -> None:
    """VMOV dst=s1 src=s2 n=s3 with memmove semantics: ascending blocks when dst <= src, else
    descending from the end (windows mask the partial block); every scratchpad access in order."""
    a.label("vmov")
    S = Scalars()
    n, W = F[3], a.lanes
    shi, dhi = window(a, S, F[2], n), window(a, S, F[1], n)
    nb = blocks_of(a, S, n)
    back, end = a.fresh("vmov.back"), a.fresh("vmov.end")
    a.br(UOp.BLTU, F[2], F[1], back)
    for direction in (1, -1):
        sp, dp = S(), S()
        if direction == 1:
            a.s(UOp.SADD, sp, F[2], 0)
            a.s(UOp.SADD, dp, F[1], 0)
        else:
            a.label(back)
            a.s(UOp.SADD, sp, shi, -W)
            a.s(UOp.SADD, dp, dhi, -W)
        with a.loop(nb):
            x = a.vreg("x")
            a.ld(x, sp, F[2], shi, Fill.NEG_ZERO)
            a.st(x, dp, F[1], dhi)
            a.s(UOp.SADD, sp, sp, direction * W)
            a.s(UOp.SADD, dp, dp, direction * W)
        if direction == 1:
            a.br(UOp.BEQ, ZERO, ZERO, end)
    a.label(end)
    a.done()


def _vfill(a: Asm) -> None:
    """VFILL dst=s1 n=s2 value=s3."""
    a.label("vfill")
    S = Scalars()
    v = a.vreg("fill")
    a.v(UOp.VBCAST, v, None, F[3])
    dptr, dhi = copy_reg(a, S, F[1]), window(a, S, F[1], F[2])
    nb = blocks_of(a, S, F[2])
    blocks(a, S, nb, 1, 4, [dptr], lambda q, b, off: a.st(v, dptr, F[1], dhi, off=off))
    a.done()


def _vreduce(a: Asm) -> None:
    """VREDUCE dst=s1 src=s2 n=s3 k=s4: ``dst[i] = ((src[i] + src[n+i]) + ...)`` over k parts,
    part 0 flushed (``k == 1`` is a flushing copy). Four blocks at a time (then single blocks),
    an inner loop over the parts; each part is read inside its own window."""
    a.label("vreduce")
    S = Scalars()
    W, n = a.lanes, F[3]
    one = S()
    a.li(one, 1)
    general = a.fresh("vred.k")
    a.br(UOp.BNE, F[4], one, general)
    _elementwise_body_only(a, S, n, _flush)
    a.label(general)
    S = Scalars()
    km1, nb = S(), blocks_of(a, S, n)
    a.s(UOp.SSUB, km1, F[4], 1)
    dptr, dhi = copy_reg(a, S, F[1]), window(a, S, F[1], n)
    off, plo, phi, p, nk = S(), S(), S(), S(), S()
    a.li(off, 0)
    for K in (4, 1):
        if K == 4:
            a.s(UOp.SSHR, nk, nb, 2)
        else:
            a.s(UOp.SAND, nk, nb, 3)
        with a.loop(nk):
            acc = [a.vreg("acc") for _ in range(K)]
            a.s(UOp.SADD, plo, F[2], 0)
            a.s(UOp.SADD, phi, F[2], n)
            a.s(UOp.SADD, p, F[2], off)
            with a.sched():
                for b in range(K):
                    with a.copy(b):
                        a.ld(acc[b], p, plo, phi, Fill.NEG_ZERO, off=b * W)
            with a.loop(km1):
                with a.sched():
                    a.s(UOp.SADD, plo, plo, n)
                    a.s(UOp.SADD, phi, phi, n)
                    a.s(UOp.SADD, p, p, n)
                    for b in range(K):
                        with a.copy(b):
                            x = a.vreg("x")
                            a.ld(x, p, plo, phi, Fill.NEG_ZERO, off=b * W)
                            a.v(UOp.VFADD, acc[b], acc[b], x)
            with a.sched():
                for b in range(K):
                    with a.copy(b):
                        a.st(acc[b], dptr, F[1], dhi, off=b * W)
                a.s(UOp.SADD, off, off, K * W)
                a.s(UOp.SADD, dptr, dptr, K * W)
    a.done()


def _vmacs(a: Asm) -> None:
    """VMACS dst=s1 a=s2 s=s3 seg=s4 nseg=s5: ``dst[i] = dst[i] + a[i] * s[i // seg]``.

    A loop over the segments: the segment's scale is loaded (lane 0 of a load inside the window
    ``[s, s + nseg)``) and broadcast, then the segment's blocks, masked by the segment's own
    windows in ``a`` and ``dst``, multiply-add in place (``VMAD``: the product rounded, then the
    add, as ``f32_add(dst, f32_mul(a, s))``; the add commutes bit for bit)."""
    a.label("vmacs")
    S = Scalars()
    seg = F[4]
    dlo, alo, sp = copy_reg(a, S, F[1]), copy_reg(a, S, F[2]), copy_reg(a, S, F[3])
    shi = window(a, S, F[3], F[5])
    nb = blocks_of(a, S, seg)
    dhi, ahi, dp, ap = S(), S(), S(), S()
    with a.loop(F[5]):
        sv, scale = a.vreg("sv"), a.vreg("scale")
        with a.sched():
            a.ld(sv, sp, F[3], shi, Fill.NEG_ZERO)
            a.v(UOp.VBCL, scale, sv, 0)
            a.s(UOp.SADD, dhi, dlo, seg)
            a.s(UOp.SADD, ahi, alo, seg)
            a.s(UOp.SADD, dp, dlo, 0)
            a.s(UOp.SADD, ap, alo, 0)

        def body(q, b, off):
            x, d, y = a.vreg("x"), a.vreg("d"), a.vreg("y")
            a.ld(x, ap, alo, ahi, Fill.NEG_ZERO, off=off)
            a.ld(d, dp, dlo, dhi, Fill.NEG_ZERO, off=off)
            a.mad(y, x, scale, d)
            a.st(y, dp, dlo, dhi, off=off)

        blocks(a, S, nb, 1, 4, [ap, dp], body)
        a.s(UOp.SADD, dlo, dhi, 0)
        a.s(UOp.SADD, alo, ahi, 0)
        a.s(UOp.SADD, sp, sp, 1)
    a.done()


def _elementwise_body_only(a: Asm, S: Scalars, n: SReg, func) -> None:
    sp, shi = copy_reg(a, S, F[2]), window(a, S, F[2], n)
    dptr, dhi = copy_reg(a, S, F[1]), window(a, S, F[1], n)
    nb = blocks_of(a, S, n)

    def body(q, b, off):
        x = a.vreg("x")
        a.ld(x, sp, F[2], shi, Fill.NEG_ZERO, off=off)
        a.st(func(a, None, x), dptr, F[1], dhi, off=off)

    blocks(a, S, nb, 1, 4, [sp, dptr], body)
    a.done()


def by_groups(a: Asm, S: Scalars, rows: SReg, G: int, group, full: bool = True) -> None:
    """``group(g)`` for ``rows // G`` groups of ``G`` rows (a loop), then one group of each
    ``g = G/2, G/4, ..., 1`` whose bit is set in ``rows`` (SOFTMAX's rows, ROPE's heads).
    Without ``full`` only the latter (the caller has done the full groups)."""
    if full:
        ngroups = S()
        a.s(UOp.SSHR, ngroups, rows, log2(G))
    mark = S.next
    if full:
        with a.loop(ngroups):
            group(G)
    g = G // 2
    while g >= 1:
        S.next = mark
        bit, skip = S(), a.fresh("rows.skip")
        a.s(UOp.SAND, bit, rows, g)
        a.br(UOp.BEQ, bit, ZERO, skip)
        group(g)
        a.label(skip)
        g //= 2


# ---------------------------------------------------------------------------------------------
# The ROM
# ---------------------------------------------------------------------------------------------
#: ASIC opcodes the vector unit executes (SETR and OUT are done by the front end).
VU_OPS = (Op.VADD, Op.VMUL, Op.VSCALE, Op.VMOV, Op.VREDUCE, Op.VMAX, Op.VEXP, Op.VRECIP,
          Op.VRSQRT, Op.VGELU, Op.SOFTMAX, Op.LAYERNORM, Op.ARGMAX, Op.VFILL, Op.VMACS,
          Op.RMSNORM, Op.ROPE, Op.SWIGLU, Op.ARGMAXC, Op.LNCENTRE, Op.LNRSTD, Op.VMADS,
          Op.RMSRSTD, Op.VMULS, Op.SOFTMAXU, Op.VADD3)


def build_microcode(lanes: int, lat: Pipeline | None = None) -> Microcode:
    """Assemble the ROM for ``lanes`` lanes (16, 32, 64 or 128) and pipeline latencies ``lat``.

    The routines do not depend on the latencies for correctness; the scheduler uses them to order
    independent work.
    """
    from . import routines_llama as llama
    from . import routines_ln as ln
    from . import routines_red as red

    check_lanes(lanes)
    if REDUCE_LANES % lanes:
        raise ValueError(f"lanes {lanes} must divide the contract's {REDUCE_LANES} reduce lanes")
    lat = lat or Pipeline()
    a = Asm(lanes, lat)
    _elementwise(a, "vadd", (2, 3), 4, _binary(UOp.VFADD))
    _elementwise(a, "vmul", (2, 3), 4, _binary(UOp.VFMUL))
    _elementwise(a, "vadd3", (2, 3, 4), 5, _add3)
    _elementwise(a, "vscale", (2,), 3, _scale)
    _elementwise(a, "vgelu", (2,), 3, fn.gelu, fn.GELU_CONSTS)
    # Long bodies that the compiler does not emit: four blocks per iteration, the rest in a loop
    # of one block (a quarter of the ROM words of the fully unrolled form).
    _elementwise(a, "vexp", (2,), 3, fn.exp_full, fn.EXP_CONSTS, K=4, rem_loop=True)
    _elementwise(a, "vrecip", (2,), 3, lambda a, k, x: fn.reciprocal(a, x), K=4, max_open=2,
                 rem_loop=True)
    _elementwise(a, "vrsqrt", (2,), 3, lambda a, k, x: fn.rsqrt(a, x), K=4, max_open=2,
                 rem_loop=True)
    _vmov(a)
    _vfill(a)
    _vreduce(a)
    _vmacs(a)
    red.vmax(a)
    red.argmax(a)
    red.argmaxc(a)
    red.softmax(a)  # SOFTMAX and SOFTMAXU
    red.layernorm(a)
    _elementwise(a, "swiglu", (2, 3), 4, llama.swiglu_lane, fn.EXP_CONSTS, max_open=3)
    llama.rmsnorm(a)
    llama.rope(a)
    ln.lncentre(a)
    ln.lnrstd(a)
    ln.vmads(a)
    llama.rmsrstd(a)
    llama.vmuls(a)
    words, labels = a.assemble()
    names = {Op.VADD: "vadd", Op.VMUL: "vmul", Op.VSCALE: "vscale", Op.VMOV: "vmov",
             Op.VREDUCE: "vreduce", Op.VMAX: "vmax", Op.VEXP: "vexp", Op.VRECIP: "vrecip",
             Op.VRSQRT: "vrsqrt", Op.VGELU: "vgelu", Op.SOFTMAX: "softmax",
             Op.LAYERNORM: "layernorm", Op.ARGMAX: "argmax", Op.VFILL: "vfill",
             Op.VMACS: "vmacs", Op.RMSNORM: "rmsnorm", Op.ROPE: "rope", Op.SWIGLU: "swiglu",
             Op.ARGMAXC: "argmaxc", Op.LNCENTRE: "lncentre", Op.LNRSTD: "lnrstd",
             Op.VMADS: "vmads", Op.RMSRSTD: "rmsrstd", Op.VMULS: "vmuls",
             Op.SOFTMAXU: "softmax", Op.VADD3: "vadd3"}
    return Microcode(words, {op: labels[nm] for op, nm in names.items()}, lanes, lat, labels)


__all__ = ["VReg", "VU_OPS", "build_microcode", "blocks", "blocks_of", "by_groups", "window"]

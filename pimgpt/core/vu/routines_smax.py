"""SOFTMAX's and SOFTMAXU's long rows when ``n`` is a multiple of ``W`` (:func:`softmax_fused`):
the maxima of the next group of rows are taken inside this group's ``exp`` loop.

The ``exp`` loop is bound by its 8 fp operations per block (port F); the maxima need a load and a
``VFMAX`` per block (port I, INT class), which fit beside them (on 64 lanes in the same 8 cycles;
on 128 lanes, where each row's ``-max`` is a scalar register and its subtraction a ``VFADD`` of
latency 2 among the multiply-adds, in 9). So the separate max pass (about 2.4 cycles per block)
runs once per instruction, for the first group, instead of once per group.

With every block whole (``n`` a multiple of ``W``) no load or store needs its row's own window:
one window over all full groups serves every row (``[0, E)``), and in place (the path requires
it) one pointer register per row serves its loads and stores (the scalar registers bound the rows
in flight). The next group's loads in the last group's loop lie past ``E`` and read -Inf
(maxima nobody uses); the rows left over (``rows mod G``) run through the general routine.
"""

from __future__ import annotations

from pimgpt.core import nonlinear as nl
from pimgpt.core.numerics import REDUCE_LANES

from . import routines_fn as fn
from .asm import Asm, SReg
from .routines import ZERO, F, Scalars, blocks, log2
from .routines_red import (
    NEG_INF,
    NEG_ZERO,
    _bcast,
    product_or_rcp,
    row_reciprocals,
    scale_rows,
    store_rcp,
    tree_regs,
    tree_rows,
)
from .uisa import Fill, UOp

#: Lane counts that take this path. On 128 lanes (4 rows per group) the loop's negated maxima
#: are scalar registers (a ``VFADD`` with a broadcast ``B``: the same bits as the ``mad`` by 1.0)
#: so that it fits the 32 vector registers; its interval is then 9 cycles a block, not 8, and
#: it pays from two groups of rows of :data:`FUSED_MIN_BLOCKS` blocks (``bench_vu``: SOFTMAX
#: n=4096 rows=32 13961 -> 12729 cycles, n=1024 rows=16 2189 -> 2041; n=4096 rows=4 would lose
#: 1760 -> 1900 and keeps the three passes).
FUSED_LANES = (64, 128)
#: Blocks per row from which the fused loop pays (with at least two groups of rows).
FUSED_MIN_BLOCKS = 8


def softmax_fused(a: Asm, S: Scalars, G: int, base_s: SReg, base_d: SReg,
                  n: SReg, nb: SReg, rows: SReg, rcp: tuple) -> None:
    """The ``rows // G`` full groups of ``G`` rows (``G >= 2``, ``n`` a multiple of ``W``) in
    place (``base_s = base_d``: one pointer and one window per row serve the loads and the
    stores, which leaves scalar registers for exp's constants: ``s7`` and two temporaries);
    ``base_s``/``base_d`` are left at the first row after them. Numerics as
    :func:`.routines_red._softmax_group`: the same maxima (order-free), the same sums in the same
    order, the same products or reciprocals (``rcp``: :func:`.routines_red.product_or_rcp`;
    the scratch of :func:`.routines_red.store_rcp` is two row pointers, dead after the ``exp``
    loop)."""
    W = a.lanes
    A = REDUCE_LANES // W
    seg = W // G
    Km, Ks = max(2, 8 // G), max(A, 4)
    ngroups, E = S(), S()
    sk = (F[7], S(), S())  # s5, s6: SOFTMAXU's rcp and rseg
    # exp's constants in the unused field registers: the loop's vector registers are the bound
    for reg, bits in zip(sk, (nl.EXP_C8_BITS, fn.f32(-1.0), nl.EXP_P2_BITS), strict=True):
        a.li(reg, bits)
    p, pn, nm = ([S() for _ in range(G)] for _ in range(3))
    gn = S.shared("kb")  # free until the first blocks()
    skip = a.fresh("smaxf.none")
    a.s(UOp.SSHR, ngroups, rows, log2(G))
    a.br(UOp.BEQ, ngroups, ZERO, skip)
    # the windows' end: the full groups' end (a loop of one add per group; no scalar multiply)
    with a.sched():
        a.s(UOp.SSHL, gn, n, log2(G))
        a.s(UOp.SADD, E, base_s, 0)
    with a.loop(ngroups):
        a.s(UOp.SADD, E, E, gn)

    # the first group's maxima: K accumulators per row, folded to one per row (the loop's form)
    with a.sched():
        mx2 = [[_bcast(a, NEG_INF) for _ in range(Km)] for _ in range(G)]
        _chain(a, pn, base_s, n)

    def max_body(q, b, off):
        x = a.vreg("x")
        a.ld(x, pn[q], ZERO, E, Fill.NEG_INF, off=off)
        a.v(UOp.VFMAX, mx2[q][b], mx2[q][b], x)

    blocks(a, S, nb, G, Km, pn, max_body)
    mx = [a.vreg("mx") for _ in range(G)]
    with a.sched():
        for q in range(G):
            a.v(UOp.VFMAX, mx[q], tree_regs(a, UOp.VFMAX, mx2[q]), NEG_INF)

    with a.loop(ngroups):
        _group(a, S, G, A, seg, Ks, base_s, base_d, n, nb, E, p, pn, mx, nm, sk, rcp)
    a.label(skip)


def _chain(a: Asm, ptrs: list, first: SReg, n: SReg) -> None:
    """Row pointers ``ptrs[q] = first + q * n``."""
    a.s(UOp.SADD, ptrs[0], first, 0)
    for q in range(1, len(ptrs)):
        a.s(UOp.SADD, ptrs[q], ptrs[q - 1], n)


def _group(a: Asm, S: Scalars, G: int, A: int, seg: int, Ks: int, base_s: SReg,
           base_d: SReg, n: SReg, nb: SReg, E: SReg, p, pn, mx, nm, sk, rcp: tuple) -> None:
    """One group, in place: its maxima are in ``mx`` (one register per row) on entry, the next
    group's on exit. ``sk``: exp's constant registers; ``rcp``: SOFTMAXU's registers."""
    neg_m = a.vreg("nm")
    with a.sched():
        a.v(UOp.VXOR, neg_m, tree_rows(a, UOp.VFMAX, list(mx)), fn.SIGN)
        for q in range(G):
            # -max of row q in a scalar register, broadcast as the exp loop's B operand: the
            # vector registers are the loop's bound
            a.movv(nm[q], neg_m, q * seg)
            a.v(UOp.VBCAST, mx[q], None, NEG_INF)
        _chain(a, p, base_s, n)
        a.s(UOp.SADD, pn[0], p[G - 1], n)
        for q in range(1, G):
            a.s(UOp.SADD, pn[q], pn[q - 1], n)
        # the next group starts where this one ends (the pointers end elsewhere when the
        # blocks left after the loop run one by one)
        a.s(UOp.SADD, base_s, pn[0], 0)
        acc = [[_bcast(a, NEG_ZERO) for _ in range(A)] for _ in range(G)]

    def body(q, b, off):
        # the exp pass of _softmax_group's pipelined form, plus the next group's maximum
        x, d, s = a.vreg("x"), a.vreg("d"), acc[q][b % A]
        a.ld(x, p[q], ZERO, E, Fill.NEG_INF, off=off)
        a.v(UOp.VFADD, d, x, nm[q])  # = mad(x, 1.0, -m): the same bits
        e = fn.exp_nonpos(a, None, d, mad_only=True, sk=sk)
        a.st(e, p[q], ZERO, E, off=off)
        a.mad(s, e, fn.ONE, s)
        y = a.vreg("xn")
        a.ld(y, pn[q], ZERO, E, Fill.NEG_INF, off=off)
        a.v(UOp.VFMAX, mx[q], mx[q], y)

    blocks(a, S, nb, G, Ks, p + pn, body, max_open=4, period=A, pipelined=True)
    rq = [a.vreg("rq") for _ in range(G)]
    with a.sched():
        row_reciprocals(a, acc, rq, seg)
        _chain(a, p, base_d, n)  # for the product; in place, base_d is this group's start
    product_or_rcp(a, rcp, lambda: scale_rows(a, S, nb, p, [E] * G, rq),
                   lambda: store_rcp(a, rq, *rcp, p[0], p[1]))
    a.s(UOp.SADD, base_d, base_s, 0)  # in place: where the next group starts


__all__ = ["softmax_fused"]

"""Several identical vector units (``asic.vector_units``): how one instruction is shared out.

A row-batched ``SOFTMAX`` or ``SOFTMAXU`` (``rows`` independent rows of ``n`` words) is the one
instruction the units share: unit ``u`` takes the contiguous rows :func:`row_share` gives it, as
an instruction of its own (its ``src``/``dst`` moved by ``first * n`` words, a ``SOFTMAXU``'s
``rcp`` by ``first * rseg``), and the instruction ends when the last unit ends. Every other
instruction runs on unit 0 alone, the others idle. Rows are independent (each row's maximum and
sum are its own, ``docs/numerics.md``), so the results are those of one unit, bit for bit; only
the time changes.

Why rows and not other splits: at long context the softmax over all heads of a layer is most of
the vector unit's work (a 32-channel Llama at 4096 positions spends more time in it than in the
attention's PIM work), and its rows are the one parallelism that needs no new numerics. The
units share the scratchpad through ports of their own (``hdl/controller.py``).

This is the one definition of the split: the cost model (:mod:`.cost`, so the perf simulator and
the compiler's scheduler) and the RTL's dispatch (``hdl/controller.py``, tested against
:func:`split_instr`) follow it.
"""

from __future__ import annotations

from pimgpt.core.isa import Instr, Op

__all__ = ["row_share", "split_instr", "SPLIT_OPS"]

#: Opcodes shared out by rows.
SPLIT_OPS = (Op.SOFTMAX, Op.SOFTMAXU)


def row_share(rows: int, units: int, u: int) -> tuple[int, int]:
    """``(first, count)``: the rows unit ``u`` of ``units`` takes of ``rows``.

    ``q, r = divmod(rows, units)``: the first ``r`` units take ``q + 1`` rows, the others ``q``,
    in order (unit 0 from row 0), so unit 0 always has the most and units past ``rows`` none.
    ``units`` is a power of two (the RTL divides by a shift).
    """
    q, r = divmod(rows, units)
    return u * q + min(u, r), q + (u < r)


def split_instr(ins: Instr, units: int) -> list[Instr]:
    """The instructions the units run for ``ins``: one per unit with work, unit 0 first.

    ``[ins]`` itself when there is one unit or ``ins`` is not in :data:`SPLIT_OPS`.
    """
    if units == 1 or ins.op not in SPLIT_OPS:
        return [ins]
    a = ins.args
    rows, n = a.get("rows", 1), a["n"]
    out = []
    for u in range(units):
        first, count = row_share(rows, units, u)
        if count:
            share = dict(a, rows=count, src=a["src"] + first * n, dst=a["dst"] + first * n)
            if ins.op is Op.SOFTMAXU:  # and the share's rows of reciprocals
                share["rcp"] = a["rcp"] + first * a["rseg"]
            out.append(Instr(ins.op, share, ins.flags))
    return out

"""The in-bank MAC unit: one 32-byte DRAM column (16 bf16 pairs) per cycle into an fp32 accumulator
(one of an accumulator file).

Bit-exact with :func:`pimgpt.core.numerics.mac_step` / :func:`~pimgpt.core.numerics.dot_bf16`::

    acc = f32_add(acc, tree(bf16_mul(a[0:16], b[0:16])))

with the adder tree summing pairs ``(2i, 2i+1)`` level by level.

Datapath and timing (``L = add_latency``, ``n = log2(lanes)`` tree levels)::

    i --> [16 x BF16Mul, 1 cycle] --> [tree: n levels of FP32Add, L cycles each]
      --> [accumulator: combinational FP32Add + register, 1 cycle] --> o, acc

* **Latency** from a column with ``last`` set on ``i`` to ``o.valid``: ``1 + n*L + 1`` cycles
  (10 for the default 16 lanes and ``L = 2``), see :attr:`MAC.latency`.
* **Throughput**: one column per cycle, back-to-back dot products included. The only loop-carried
  dependency, ``acc -> acc + tree``, is closed in a single cycle by a combinational adder, so the
  contract's strictly sequential accumulation order is kept without interleaved partial sums (which
  would change the rounding). The price is that one full fp32 add sits on the accumulator's
  register-to-register path; the adder tree in front of it is fully pipelined.
* **Control**: ``first`` on a column restarts the accumulation at +0 (``acc = +0 + tree``, so a -0
  tree gives +0 as in the contract); ``last`` emits the accumulator after that column on ``o``
  (exactly one cycle of ``o.valid``). A column may carry both (a one-column dot product). Idle
  cycles (``i.valid`` low) may appear anywhere; they leave the accumulator unchanged. The ``acc``
  port always shows the accumulators (the bank's MAC result registers).
* **Accumulator file**: with ``accumulators`` > 1 each column names the accumulator it enters
  (``acc``); the index travels with the column through the pipeline and the accumulate stage reads
  and writes that accumulator in the same cycle, so columns for different accumulators may follow
  each other back to back. ``o`` shows the accumulator of the ``last`` column.
"""

from __future__ import annotations

from amaranth.hdl import Array, Module, Signal
from amaranth.lib import data, wiring
from amaranth.lib.wiring import In, Out
from amaranth.utils import ceil_log2

from .bf16mul import BF16Mul
from .fp import BF16, FP32, check_int, valid_stream
from .fp32add import FP32Add

__all__ = ["MAC", "mac_column_layout"]

#: Most lanes a MAC unit may have (a 128-byte column); keeps the generated tree sane.
MAX_LANES = 64
#: Most accumulators a MAC unit may have.
MAX_ACCUMULATORS = 64


def mac_column_layout(lanes: int, accumulators: int = 1) -> data.StructLayout:
    """Payload of one MAC input column.

    Parameters
    ----------
    lanes : int
        bf16 pairs per column.
    accumulators : int
        Accumulators of the unit (the ``acc`` index is ``ceil(log2(accumulators))`` bits).

    Returns
    -------
    amaranth.lib.data.StructLayout
        ``a`` and ``b`` (arrays of ``lanes`` :class:`BF16`), then the ``first`` and ``last`` flags
        and the accumulator index ``acc``. Bit ``16*k`` starts ``a[k]``; ``b`` follows ``a``;
        ``first`` is bit ``32*lanes``.
    """
    return data.StructLayout({
        "a": data.ArrayLayout(BF16, lanes),
        "b": data.ArrayLayout(BF16, lanes),
        "first": 1,
        "last": 1,
        "acc": ceil_log2(accumulators),
    })


class MAC(wiring.Component):
    """Pipelined bf16 dot-product (multiply-accumulate) unit of one DRAM bank.

    Parameters
    ----------
    lanes : int
        bf16 pairs per column, a power of two in 2..64 (default 16: a 32-byte column).
    add_latency : int
        Pipeline depth of each adder-tree adder, 1..3 (default 2).
    accumulators : int
        Accumulator registers, 1..MAX_ACCUMULATORS (default 1).

    Attributes
    ----------
    i : In(valid_stream(mac_column_layout(lanes, accumulators)))
        Columns; see the module docstring for ``first``/``last``/``acc``.
    o : Out(valid_stream(FP32))
        Dot-product results, one per column that carried ``last``.
    acc : Out(ArrayLayout(FP32, accumulators))
        The accumulator registers.
    """

    def __init__(self, *, lanes: int = 16, add_latency: int = 2, accumulators: int = 1):
        check_int("lanes", lanes, 2, MAX_LANES)
        if lanes & (lanes - 1):
            raise ValueError(f"lanes must be a power of two, not {lanes!r}")
        self._lanes = lanes
        self._add_latency = check_int("add_latency", add_latency, 1, 3)
        self._accumulators = check_int("accumulators", accumulators, 1, MAX_ACCUMULATORS)
        self._levels = lanes.bit_length() - 1
        super().__init__({
            "i": In(valid_stream(mac_column_layout(lanes, accumulators))),
            "o": Out(valid_stream(FP32)),
            "acc": Out(data.ArrayLayout(FP32, accumulators)),
        })

    @property
    def lanes(self) -> int:
        """bf16 pairs per column."""
        return self._lanes

    @property
    def accumulators(self) -> int:
        """Accumulator registers."""
        return self._accumulators

    @property
    def add_latency(self) -> int:
        """Cycles of each adder-tree adder."""
        return self._add_latency

    @property
    def latency(self) -> int:
        """Cycles from a ``last`` column on ``i`` to its result on ``o``."""
        return 1 + self._levels * self._add_latency + 1

    def elaborate(self, platform):
        m = Module()
        col = self.i.payload

        level = []
        for k in range(self._lanes):
            mul = m.submodules[f"mul_{k}"] = BF16Mul(latency=1)
            m.d.comb += [
                mul.i.payload.a.eq(col.a[k]),
                mul.i.payload.b.eq(col.b[k]),
                mul.i.valid.eq(self.i.valid),
            ]
            level.append(mul.o)

        depth = 0
        while len(level) > 1:  # numerics order: level by level, element 2j + element 2j+1
            nxt = []
            for j in range(len(level) // 2):
                add = m.submodules[f"add_l{depth}_{j}"] = FP32Add(latency=self._add_latency)
                m.d.comb += [
                    add.i.payload.a.eq(level[2 * j].payload),
                    add.i.payload.b.eq(level[2 * j + 1].payload),
                    add.i.valid.eq(level[2 * j].valid),
                ]
                nxt.append(add.o)
            level = nxt
            depth += 1
        tree = level[0]

        # The first/last flags and the accumulator index travel beside the products through the
        # multiplier and the tree.
        first, last, idx = col.first, col.last, col.acc
        for stage in range(self.latency - 1):
            first_q = Signal(name=f"first_d{stage}")
            last_q = Signal(name=f"last_d{stage}")
            idx_q = Signal.like(col.acc, name=f"acc_d{stage}")
            m.d.sync += [first_q.eq(first), last_q.eq(last), idx_q.eq(idx)]
            first, last, idx = first_q, last_q, idx_q

        accs = Array(Signal(32, name=f"acc_q{k}") for k in range(self._accumulators))
        acc = accs[idx]
        acc_add = m.submodules.acc_add = FP32Add(latency=0)
        m.d.comb += [
            # first: +0 + tree (not just tree), so that a -0 tree gives +0 as the contract does.
            acc_add.i.payload.a.eq(acc & ~first.replicate(32)),
            acc_add.i.payload.b.eq(tree.payload),
            acc_add.i.valid.eq(tree.valid),
        ]
        with m.If(tree.valid):
            m.d.sync += acc.eq(acc_add.o.payload)
        o_idx = Signal.like(col.acc)
        m.d.sync += [self.o.valid.eq(tree.valid & last), o_idx.eq(idx)]
        m.d.comb += [self.o.payload.eq(accs[o_idx])]
        m.d.comb += [self.acc[k].eq(accs[k]) for k in range(self._accumulators)]
        return m

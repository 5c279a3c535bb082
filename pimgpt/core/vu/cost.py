"""Cost of one vector-unit (ASIC-side) instruction: cycles, fp32 operations, scratchpad words.

The one definition consumed by the performance simulator (``sim/perf``: timing and energy) and
by the compiler's scheduler (``sw``: where SYNC intervals end).

Model: an instruction occupies the unit ``pipeline_cycles + ceil(parallel ops / vector_lanes)``
ASIC cycles plus ``seq_add_cycles`` per dependent operation (left-to-right sums, scalar
reciprocal/rsqrt), with the per-element operation counts of ``asic.elem_ops``. ``SETR`` and
``OUT`` take one cycle.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from pimgpt.core.config import ConfigError, HwConfig
from pimgpt.core.isa import Instr, Op


@dataclass(frozen=True)
class VuCost:
    """Work of one vector-unit instruction."""

    cycles: int  #: ASIC clock cycles the unit is busy
    ops: int  #: fp32 adds/multiplies (energy)
    words: int  #: scratchpad words read and written (energy)


class VectorUnitModel:
    """The cost model of one hardware configuration's vector unit.

    Raises
    ------
    ConfigError
        If the configuration lacks a value the model needs.
    """

    def __init__(self, hw: HwConfig):
        a = hw.asic
        missing = [k for k in ("pipeline_cycles", "seq_add_cycles") if getattr(a, k) is None]
        missing += [f"elem_ops.{k}" for k in ("exp", "recip", "rsqrt", "gelu")
                    if k not in a.elem_ops]
        if missing:
            raise ConfigError(
                f"{hw.name}: the vector-unit cost model needs asic.{', asic.'.join(missing)}; "
                "add them (see pimgpt/configs/pimgpt-gddr6-8ch.yaml)"
            )
        self.lanes = a.vector_lanes
        self.pipe = a.pipeline_cycles
        self.seq = a.seq_add_cycles
        self.e = dict(a.elem_ops)
        self._cache: dict = {}

    def cost(self, ins: Instr) -> VuCost:
        """The cost of ``ins`` (an ASIC-side instruction)."""
        op, a = ins.op, ins.args
        if op == Op.VMACS:
            n = a["seg"] * a["nseg"]
        elif op == Op.ROPE:
            n = 2 * a["half"] * a["nhead"]
        else:
            n = a.get("n", 0)
        key = (op, n, a.get("k", 0), a.get("rows", 1))
        hit = self._cache.get(key)
        if hit is None:
            hit = self._cache[key] = self._cost(op, *key[1:])
        return hit

    def _cost(self, op: Op, n: int, k: int, rows: int) -> VuCost:
        e = self.e
        par = seq = words = 0  # parallel element ops, dependent (sequential) ops, sp words
        if op in (Op.VADD, Op.VMUL):
            par, words = n, 3 * n
        elif op in (Op.VSCALE, Op.VMOV):
            par, words = n, 2 * n
        elif op == Op.VFILL:
            par, words = n, n
        elif op == Op.VMACS:
            par, words = 2 * n, 3 * n
        elif op == Op.VREDUCE:
            kk = max(k, 1)
            par, words = (n * (kk - 1) if kk > 1 else n), n * kk + n
        elif op in (Op.VMAX, Op.ARGMAX):
            par, words = n, n + 1
            seq = math.ceil(math.log2(max(self.lanes, 2)))
        elif op in (Op.VEXP, Op.VRECIP, Op.VRSQRT, Op.VGELU):
            name = {Op.VEXP: "exp", Op.VRECIP: "recip", Op.VRSQRT: "rsqrt", Op.VGELU: "gelu"}[op]
            par, words = n * e[name], 2 * n
        elif op == Op.SOFTMAX:
            # per row: max scan, subtract, exp, final multiply in lanes; the sum is left to
            # right; one scalar reciprocal.
            par = rows * n * (3 + e["exp"])
            seq = rows * (n + e["recip"])
            words = 4 * n * rows
        elif op == Op.LAYERNORM:
            # d = x - mean, d*d, d*rstd, *gamma, +beta in lanes; two left-to-right sums; scalar
            # 1/n, mean, var, +eps and rsqrt.
            par = 5 * n
            seq = 2 * n + e["recip"] + e["rsqrt"] + 3
            words = 6 * n
        elif op == Op.RMSNORM:
            # x*x, x*rstd, *gamma in lanes; one left-to-right sum; scalar 1/n, mean, +eps, rsqrt.
            par = 3 * n
            seq = n + e["recip"] + e["rsqrt"] + 2
            words = 4 * n
        elif op == Op.ROPE:
            # per pair of elements: four products, one add, one subtract (the table is read once
            # per head).
            par = 3 * n
            words = 3 * n
        elif op == Op.SWIGLU:
            # per element: exp, 1 + z, reciprocal, the select's product, x * g, * up.
            par = n * (e["exp"] + e["recip"] + 4)
            words = 3 * n
        if op in (Op.SETR, Op.OUT):
            cycles = 1
        else:
            cycles = self.pipe + -(-par // self.lanes) + seq * self.seq
        return VuCost(cycles=cycles, ops=par + seq, words=words)

"""ASIC model of the perf engine: the vector unit's busy time per instruction, in DRAM tCK.

The cycles of one vector instruction come from the one cost function the compiler also uses
(:func:`pimgpt.core.vu.cost.vector_cost`); this module converts them to DRAM tCK (the common time
base: ``asic.clock_ghz`` against ``dram.tck_ns``), counts the operations and scratchpad words (for
energy) and keeps the scalar registers that ``SETR``/``ARGMAX`` write (``RD_VEC`` reads them).
"""

from __future__ import annotations

import math

from pimgpt.core.config import ConfigError, HwConfig
from pimgpt.core.isa import N_REGS, Op
from pimgpt.core.vu.cost import vector_cost


class AsicModel:
    """The vector unit of one hardware configuration.

    Parameters
    ----------
    hw : HwConfig
        Hardware configuration (the ``asic`` section, ``dram.tck_ns``).
    regs : list of int
        The scalar registers, shared with the command expansion.
    """

    def __init__(self, hw: HwConfig, regs: list):
        a = hw.asic
        missing = [k for k in ("pipeline_cycles", "seq_add_cycles") if getattr(a, k) is None]
        missing += [f"elem_ops.{k}" for k in ("exp", "recip", "rsqrt", "gelu")
                    if k not in a.elem_ops]
        if missing:
            raise ConfigError(
                f"{hw.name}: the perf model needs asic keys {missing}; copy them from "
                "pimgpt/configs/pimgpt-gddr6-8ch.yaml"
            )
        self.hw = hw
        self.regs = regs
        self.asic_tck = (1.0 / a.clock_ghz) / hw.dram.tck_ns  # tCK per ASIC cycle
        self.ops = self.words = self.busy = 0

    def reset(self) -> None:
        self.ops = self.words = self.busy = 0

    def run(self, ins) -> int:
        """Busy time (tCK) of one vector-unit instruction; counts its ops and words and applies
        its register effects."""
        op, a = ins.op, ins.args
        if op == Op.SETR:
            self.regs[a["reg"] % N_REGS] = a["imm"]
        elif op == Op.ARGMAX:
            self.regs[a["reg"] % N_REGS] = 0  # the perf model has no data
        c = vector_cost(ins, self.hw)
        self.ops += c.ops
        self.words += c.words
        return max(1, math.ceil(c.cycles * self.asic_tck - 1e-9))

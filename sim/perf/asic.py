"""ASIC model of the perf engine: the vector unit's busy time per instruction, in DRAM tCK.

The cycles of one vector instruction come from the one cost model the compiler also uses
(:class:`pimgpt.core.vu.cost.VectorUnitModel`); this module converts them to DRAM tCK (the common
time base: ``asic.clock_ghz`` against ``dram.tck_ns``), counts the operations and scratchpad words
(for energy) and keeps the scalar registers that ``SETR``/``ARGMAX``/``ARGMAXC`` write
(``RD_VEC`` reads them).
"""

from __future__ import annotations

import math

from pimgpt.core.config import HwConfig
from pimgpt.core.isa import N_REGS, Op
from pimgpt.core.vu.cost import VectorUnitModel


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
        self.vu = VectorUnitModel(hw)  # raises ConfigError if the asic section lacks a key
        self.regs = regs
        self.asic_tck = (1.0 / hw.asic.clock_ghz) / hw.dram.tck_ns  # tCK per ASIC cycle
        self.ops = self.words = self.busy = 0

    def reset(self) -> None:
        self.ops = self.words = self.busy = 0

    def run(self, ins) -> int:
        """Busy time (tCK) of one vector-unit instruction; counts its ops and words and applies
        its register effects."""
        op, a = ins.op, ins.args
        if op == Op.SETR:
            self.regs[a["reg"] % N_REGS] = a["imm"]
        elif op in (Op.ARGMAX, Op.ARGMAXC):
            self.regs[a["reg"] % N_REGS] = 0  # the perf model has no data
        c = self.vu.cost(ins)
        self.ops += c.ops
        self.words += c.words
        tck = max(1, math.ceil(c.cycles * self.asic_tck - 1e-9))
        self.busy += tck
        return tck

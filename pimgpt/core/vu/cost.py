"""Cost of one vector-unit (ASIC-side) instruction: cycles, fp32 operations, scratchpad words.

The one definition consumed by the performance simulator (``sim/perf``: timing and energy) and
by the compiler's scheduler (``sw``: where SYNC intervals end).

Derived from the microcode itself: the instruction's routine (:mod:`.routines`, assembled for the
configuration's ``asic.vector_lanes``, issue width ``asic.vector_issue_width`` and pipeline
latencies ``asic.fp_add_latency``, ``fp_mul_latency``, ``sp_read_latency``) runs on the ISS in
timing mode (:mod:`.iss`), which follows the cycle rules the RTL implements. Routines branch only
on the instruction's fields, so the cost is a function of the opcode and its shape (``n``, ``k``,
``rows``, ``seg``, ``nseg``, ``half``, ``nhead``, ``rseg``; for ``VMOV`` also the copy
direction) and is cached per shape. With several units (``asic.vector_units``) an instruction
:mod:`.cluster` shares out takes as long as its longest share and does the work of all of them.
``SETR`` and ``OUT`` (front end) take one cycle. With ``asic.vector_unit_ideal`` (a what-if of
the performance model) every instruction takes one cycle and does the routine's work.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

from pimgpt.core.config import HwConfig
from pimgpt.core.isa import Instr, Op

from .cluster import split_instr
from .iss import Microcode, VectorISS
from .routines import VU_OPS, build_microcode
from .uisa import Pipeline


@dataclass(frozen=True)
class VuCost:
    """Work of one vector-unit instruction."""

    cycles: int  #: ASIC clock cycles the unit is busy (dispatch to the next dispatch)
    ops: int  #: fp32 adds/multiplies over all lanes (a multiply-add counts two; energy)
    words: int  #: scratchpad words read and written (energy)


def pipeline_of(hw: HwConfig) -> Pipeline:
    """The vector unit's pipeline parameters from a hardware configuration."""
    a = hw.asic
    return Pipeline(add=a.fp_add_latency, mul=a.fp_mul_latency, load=a.sp_read_latency,
                    issue=a.vector_issue_width)


@lru_cache(maxsize=16)
def microcode_for(lanes: int, lat: Pipeline) -> Microcode:
    """The ROM for ``lanes`` lanes and latencies ``lat`` (assembled once per process)."""
    return build_microcode(lanes, lat)


_SHAPE = ("n", "k", "rows", "seg", "nseg", "half", "nhead", "rseg")
_FRONT_END = VuCost(cycles=1, ops=0, words=0)


class VectorUnitModel:
    """The cost model of one hardware configuration's vector unit.

    Parameters
    ----------
    hw : HwConfig
        ``asic.vector_lanes`` and the pipeline latencies select the microcode;
        ``asic.vector_units`` how many units share a row-batched instruction.
    """

    def __init__(self, hw: HwConfig):
        self.lanes = hw.asic.vector_lanes
        self.units = hw.asic.vector_units
        self.lat = pipeline_of(hw)
        self.microcode = microcode_for(self.lanes, self.lat)
        self._iss = VectorISS(self.microcode, timing_only=True)
        self._cache = _shared_cache(self.lanes, self.lat, self.units)
        self.ideal = hw.asic.vector_unit_ideal

    def cost(self, ins: Instr) -> VuCost:
        """The cost of ``ins`` (an ASIC-side instruction)."""
        op, a = ins.op, ins.args
        if op not in VU_OPS:
            return _FRONT_END
        key = (op,) + tuple(a.get(f, 0) for f in _SHAPE)
        if op is Op.VMOV:
            key += (a["src"] < a["dst"],)
        hit = self._cache.get(key)
        if hit is None:
            # the shares start together; the next instruction waits for the last to end
            shares = [self._iss.run(sub.op, sub.fields()) for sub in split_instr(ins, self.units)]
            hit = self._cache[key] = VuCost(cycles=max(st.cycles for st in shares),
                                            ops=sum(st.fp_ops for st in shares),
                                            words=sum(st.words for st in shares))
        if self.ideal:  # the what-if: the work is the routine's, the time one cycle
            return VuCost(cycles=1, ops=hit.ops, words=hit.words)
        return hit


@lru_cache(maxsize=16)
def _shared_cache(lanes: int, lat: Pipeline, units: int) -> dict:
    """One shape cache per microcode and unit count, shared by every model in the process."""
    return {}

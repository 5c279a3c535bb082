"""Export-registry entries of the system-level RTL blocks (``pimgpt verilog list``).

Factories import lazily so listing the blocks stays quick. Blocks that need a hardware config
use ``--hw`` (default: the default preset). Blocks that instantiate simulation models carry their
Verilog in ``extra_verilog``, which the export writes after the block's own module.
"""

from __future__ import annotations

__all__ = ["register", "BLOCK_INFO"]


def _hw(hw):
    if hw is not None:
        return hw
    from pimgpt.core.config import load_hw

    return load_hw(None)


def _with_model(component):
    from .bank import ARRAY_VERILOG

    component.extra_verilog = ARRAY_VERILOG
    return component


def _system(hw):
    from .system import SIMULATED, System

    # Built as the RTL flow (`pimgpt run --backend rtl`) builds it: the exported file is the
    # Verilog that flow checks, under the block's name.
    return System(_hw(hw), **SIMULATED)


def _asic(hw):
    from .controller import Asic

    return Asic(_hw(hw))


def _channel(hw):
    from .bank import ARRAY_VERILOG
    from .channel import Channel, bank_verilog

    hw = _hw(hw)
    channel = Channel(hw, bank_instances=True)  # as in the system (see _system)
    channel.extra_verilog = bank_verilog(hw) + ARRAY_VERILOG
    return channel


def _bank(hw):
    from .bank import Bank

    return _with_model(Bank(_hw(hw), 0))


def _vector_unit(hw):
    from amaranth.utils import ceil_log2

    from .vector_unit import VectorUnit

    hw = _hw(hw)
    return VectorUnit.from_hw(hw, max(4, ceil_log2(hw.asic.scratchpad_words)))


def _scratchpad(hw):
    from .scratchpad import Scratchpad

    return Scratchpad(_hw(hw).asic.scratchpad_words)


def _pim_engine(hw):
    from amaranth.utils import ceil_log2

    from .pim_engine import PimEngine

    hw = _hw(hw)
    return PimEngine(hw, sp_addr_width=max(4, ceil_log2(hw.asic.scratchpad_words)))


def _pim_part(cls_name):
    """Factory of one of the PIM engine's sub-components (they take ``hw`` and the scratchpad
    address width)."""
    def factory(hw):
        import importlib

        from amaranth.utils import ceil_log2

        hw = _hw(hw)
        module, name = _PIM_PARTS[cls_name]
        cls = getattr(importlib.import_module(f".{module}", __package__), name)
        return cls(hw, sp_addr_width=max(4, ceil_log2(hw.asic.scratchpad_words)))
    return factory


#: block name -> (module, class) of the PIM engine's parts.
_PIM_PARTS = {
    "pim_decode": ("pim_engine", "PimDecode"),
    "pim_column_runs": ("pim_gen", "ColumnRunGen"),
    "pim_region": ("pim_gen", "RegionGen"),
    "pim_acc": ("pim_gen", "AccGen"),
    "pim_elem_wave": ("pim_wave", "ElemWaveGen"),
    "pim_issue": ("pim_issue", "IssueStage"),
    "pim_return": ("pim_issue", "ReturnWriter"),
    "pim_hazard": ("pim_hazard", "HazardTracker"),
}


def _scheduler(hw):
    from .pim_sched import ChannelScheduler

    return ChannelScheduler(_hw(hw))


def _frontend(hw):
    from .frontend import Frontend

    return Frontend()


#: Blocks whose factory ignores the hardware config.
HW_FREE = frozenset({"frontend"})
#: name -> (factory, description)
BLOCK_INFO = {
    "system": (_system, "whole system: host interface + ASIC + PIM channels (the Verilog "
                         "that `pimgpt run --backend rtl` simulates)"),
    "asic": (_asic, "ASIC: fetch/decode, PIM command generator, schedulers, vector unit, SRAM"),
    "channel": (_channel, "PIM channel: banks (instances of one pimgpt_bank), global buffer, "
                           "command decode"),
    "bank": (_bank, "PIM bank: array model, row buffer, MAC unit, result register, timers"),
    "vector_unit": (_vector_unit, "vector unit: microcode sequencer, dual issue, asic.vector_lanes "
                                  "lanes"),
    "scratchpad": (_scratchpad, "ASIC SRAM scratchpad, word and 16-word unaligned ports"),
    "pim_engine": (_pim_engine, "PIM instruction -> channel-op expander (of the pim_* parts)"),
    "pim_decode": (_pim_part("pim_decode"), "PIM engine: instruction fields -> generator commands"),
    "pim_column_runs": (_pim_part("pim_column_runs"), "PIM engine: column runs -> column ops"),
    "pim_region": (_pim_part("pim_region"), "PIM engine: RD_VEC/WR_VEC region chunks -> runs"),
    "pim_acc": (_pim_part("pim_acc"), "PIM engine: RD_MAC/WR_BIAS accumulator bursts"),
    "pim_elem_wave": (_pim_part("pim_elem_wave"), "PIM engine: WR_ELEM waves"),
    "pim_issue": (_pim_part("pim_issue"), "PIM engine: operand gather/convert, channel push"),
    "pim_return": (_pim_part("pim_return"), "PIM engine: read tags, returned data -> scratchpad"),
    "pim_hazard": (_pim_part("pim_hazard"), "PIM engine: scratchpad hazards from isa.SPEC"),
    "channel_scheduler": (_scheduler, "per-channel DRAM command scheduler (earliest legal issue)"),
    "frontend": (_frontend, "program memory, fetch, decode, dispatch on two sides (chains)"),
}


def register(register_block) -> None:
    """Register every block of :data:`BLOCK_INFO` with ``register_block(name, factory, desc)``."""
    for name, (factory, description) in BLOCK_INFO.items():
        register_block(name, factory, description, uses_hw=name not in HW_FREE)

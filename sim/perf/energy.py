"""Energy of a simulated program: per-command and per-ASIC-op energies plus static power.

Every figure comes from the ``energy:`` section of the hardware YAML (pJ per event, mW static;
sources and assumptions are commented there):

============================  =====================================================================
``act_pj`` / ``pre_pj``        per bank activated / precharged (``ACT16`` = 16 bank activations)
``mac_col_pj``                 per bank per MAC column (array read to the bank MAC unit + the MACs)
``rdwr_col_pj``                per bank column read or written through the chip (RD, WR, WR16 per
                               bank, RDCP, WRCP)
``gb_col_pj``                  per global-buffer column access (WRGB, each MAC16/MAC broadcast,
                               RDCP, WRCP)
``acc_rw_pj``                  per 32-byte burst of accumulator values (RDMAC16, WRMAC16)
``io_pj_per_bit``              per bit over the channel pins (both directions)
``ref_pj``                     per all-bank refresh of a channel
``asic_op_pj``                 per fp32 add/mul of the vector unit
``asic_sram_pj_per_word``      per scratchpad word read or written by a vector instruction
``dram_static_mw_per_channel``  background power of each channel, times the latency
``asic_static_mw``             ASIC leakage with one vector unit, times the latency
``vector_unit_static_mw``      leakage of each further vector unit (``asic.vector_units``)
============================  =====================================================================
"""

from __future__ import annotations

from pimgpt.core.config import ENERGY_KEYS, ConfigError, HwConfig
from pimgpt.sim.perf.engine import PerfResult


def _need(hw: HwConfig) -> dict:
    # A further vector unit's leakage matters only where there is one.
    optional = {"vector_unit_static_mw"} if hw.asic.vector_units == 1 else set()
    missing = [k for k in ENERGY_KEYS if k not in hw.energy and k not in optional]
    if missing:
        raise ConfigError(
            f"{hw.name}: the energy model needs energy keys {missing}; copy the energy section of "
            "pimgpt/configs/pimgpt-gddr6-8ch.yaml"
        )
    return hw.energy


def energy_breakdown(res: PerfResult, hw: HwConfig) -> dict:
    """Energy (nJ) of the simulated program by component, and the total.

    Parameters
    ----------
    res : PerfResult
        Result of :meth:`PerfEngine.run` on ``hw``.
    hw : HwConfig
        The hardware (its ``energy`` section).

    Returns
    -------
    dict
        ``{"total_nj": ..., "by_component_nj": {...}}``.
    """
    return energy_of(res.counters(), res.cycles, hw)


def counter_diff(a: dict, b: dict) -> dict:
    """Counters of the range between snapshots ``a`` (earlier) and ``b``."""
    out = {k: b[k] - a[k] for k in b if k != "counts"}
    out["counts"] = {k: b["counts"][k] - a["counts"][k] for k in b["counts"]}
    return out


def asic_static_mw(hw: HwConfig) -> float:
    """The ASIC's leakage (mW): the preset's figure, which holds one vector unit, plus each
    further unit's."""
    e, more = hw.energy, hw.asic.vector_units - 1
    return e["asic_static_mw"] + (e["vector_unit_static_mw"] * more if more else 0.0)


def energy_of(cnt: dict, cycles: float, hw: HwConfig) -> dict:
    """Energy (nJ) of event counters ``cnt`` (:meth:`PerfResult.counters`) over ``cycles`` tCK."""
    e = _need(hw)
    c = cnt["counts"]
    nb = hw.dram.banks
    bank_rw = c["RD"] + c["WR"] + c["WR16"] * nb + c["RDCP"] + c["WRCP"]
    gb = c["WRGB"] + c["MAC16"] + c["MAC"] + c["RDCP"] + c["WRCP"]
    seconds = cycles * hw.dram.tck_ns * 1e-9
    pj = {
        "activate": e["act_pj"] * cnt["bank_acts"],
        "precharge": e["pre_pj"] * cnt["bank_pres"],
        "mac": e["mac_col_pj"] * cnt["mac_bank_cols"],
        "array_rw": e["rdwr_col_pj"] * bank_rw,
        "global_buffer": e["gb_col_pj"] * gb,
        "accumulators": e["acc_rw_pj"] * (c["RDMAC16"] + c["WRMAC16"]),
        "io": e["io_pj_per_bit"] * 8 * (cnt["io_bytes_in"] + cnt["io_bytes_out"]),
        "refresh": e["ref_pj"] * c["REFab"],
        "asic_ops": e["asic_op_pj"] * cnt["asic_ops"],
        "asic_sram": e["asic_sram_pj_per_word"] * cnt["asic_words"],
        "dram_static": e["dram_static_mw_per_channel"] * 1e-3 * hw.dram.channels * seconds * 1e12,
        "asic_static": asic_static_mw(hw) * 1e-3 * seconds * 1e12,
    }
    nj = {k: v * 1e-3 for k, v in pj.items()}
    return {"total_nj": sum(nj.values()), "by_component_nj": nj}

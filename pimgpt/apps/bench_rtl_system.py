"""Benchmarks of the RTL system: co-simulation speed, cycles against the perf model, and area.

* :func:`cosim` -- one generation of ``tiny`` (random weights) on the system RTL under Verilator
  (Icarus where installed, on a shorter program): simulated cycles per wall-clock second of the
  simulator process (host loading excluded), build time, golden match, cycles against the perf
  simulator on the same program and hardware.
* :func:`cell_counts` -- Yosys cells of the ASIC alone, of one bank's PIM logic and of the vector
  unit (built-in Yosys, coarse cells; the DRAM array is not part of the bank's logic).
* ``python -m pimgpt.apps.bench_rtl_system [--quick] [--no-area]`` prints both tables.
"""

from __future__ import annotations

import argparse
import time

__all__ = ["cosim", "cell_counts", "main"]

HW = "tiny-rtl"


def cosim(simulator: str = "verilator", new_tokens: int = 4, prompt=(1, 2, 3),
          model: str = "tiny") -> dict:
    """Run a generation on the system RTL; returns its statistics
    (:mod:`pimgpt.sim.cocotb_lib.rtl_backend`)."""
    from pimgpt.apps.run_cli import run_model
    from pimgpt.sim.cocotb_lib.rtl_backend import RtlBackend

    t0 = time.perf_counter()
    stats = run_model(RtlBackend(simulator=simulator), model, hw=HW, prompt=list(prompt),
                      new_tokens=new_tokens).stats
    stats["wall_seconds"] = time.perf_counter() - t0
    return stats


def cell_counts(blocks=("asic", "bank", "vector_unit"), hw: str = HW) -> list[dict]:
    """Area proxy of the ASIC, of one bank's PIM logic and of the vector unit.

    :func:`pimgpt.hdl.export.yosys_cell_counts` with the built-in Yosys (coarse cells after
    ``proc; flatten; opt -full; wreduce; share``; memories count as one cell each, the DRAM array
    is not part of the bank's logic). A gate-level ``synth`` of the ASIC does not finish in a
    reasonable time on a small machine.
    """
    from pimgpt.core.config import load_hw
    from pimgpt.hdl.export import yosys_cell_counts

    hwc = load_hw(hw)
    out = []
    for name in blocks:
        try:
            r = yosys_cell_counts(name, hwc, tool="builtin")
        except Exception as exc:  # noqa: BLE001 - reported in the table
            out.append({"block": name, "error": str(exc)})
            continue
        r["hw"] = hwc.name
        out.append(r)
    return out


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m pimgpt.apps.bench_rtl_system")
    parser.add_argument("--quick", action="store_true", help="2 new tokens instead of 4")
    parser.add_argument("--no-area", action="store_true", help="skip the Yosys cell counts")
    args = parser.parse_args(argv)
    from pimgpt.sim.cocotb_lib.runner import simulator_available

    rows = []
    for sim in ("verilator", "icarus"):
        ok, why = simulator_available(sim)
        if not ok:
            print(f"{sim}: skipped ({why})")
            continue
        # Icarus is far slower: a one-token generation only.
        n = 1 if sim == "icarus" else (2 if args.quick else 4)
        s = cosim(sim, new_tokens=n)
        rows.append(s)
        print(f"{sim}: tiny on {HW}, prompt 1,2,3, {n} new tokens: {s['cycles']} cycles in "
              f"{s['sim_seconds']:.1f} s = {s['cycles_per_second']:.0f} cycles/s "
              f"(build {s['build_seconds']:.0f} s, Verilog {s['verilog_seconds']:.0f} s, "
              f"host load {s['load_seconds']:.1f} s); golden_match={s['golden_match']}; "
              f"perf simulator {s['perf_cycles']} cycles "
              f"({100 * s['cycle_difference']:+.1f} %)")
    if not args.no_area:
        for c in cell_counts():
            if "error" in c:
                print(f"{c['block']}: {c['error']}")
                continue
            print(f"{c['block']} ({c['hw']}): {c['cells']} coarse cells, "
                  f"~{c.get('gate_equivalents', 0)} gate equivalents, {c['flip_flops']} "
                  f"flip-flop bits, yosys {c['seconds']} s")
            print(f"  {c['command']}")
    bad = [r for r in rows if not r["golden_match"]]
    return 1 if bad else 0


if __name__ == "__main__":
    raise SystemExit(main())

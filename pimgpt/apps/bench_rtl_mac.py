"""Benchmarks of the MAC unit: golden-model throughput and RTL simulation speed.

* :func:`golden_mac_throughput` -- bf16 multiply-accumulates per second of
  :func:`pimgpt.core.numerics.dot_bf16` (numpy, vectorised over a batch of dot products).
* :func:`amaranth_sim_speed` -- MAC-unit cycles per second in the Amaranth Python simulator.
* :func:`hdl_sim_speed` -- MAC-unit cycles per second under Verilator or Icarus driven by cocotb
  (the cocotb driver/monitor/scoreboard included, build time excluded and reported apart).
* :func:`run` -- all of them; ``python -m pimgpt.apps.bench_rtl_mac [--quick] [--json]`` prints a
  table (:func:`main`, a section of ``pimgpt bench``).

Every RTL run also checks its results bit-exact against the golden model.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from pimgpt.apps.bench import best_seconds
from pimgpt.core import numerics as nx

__all__ = ["golden_mac_throughput", "amaranth_sim_speed", "hdl_sim_speed", "run", "main"]


def golden_mac_throughput(rows: int = 256, length: int = 1024, repeat: int = 3,
                          seed: int = 0) -> dict:
    """MAC/s of ``numerics.dot_bf16`` on ``rows`` dot products of ``length`` bf16 pairs.

    Returns
    -------
    dict
        ``macs`` (per call), ``seconds`` (best of ``repeat``), ``macs_per_s``, and the same for
        a single dot product (``single_macs_per_s``), which is dominated by per-call overhead.
    """
    rng = np.random.default_rng(seed)
    a = nx.f64_to_bf16(rng.standard_normal((rows, length)))
    b = nx.f64_to_bf16(rng.standard_normal((rows, length)))

    def best(fn):
        return best_seconds(fn, repeat)

    batch_s = best(lambda: nx.dot_bf16(a, b))
    single_s = best(lambda: nx.dot_bf16(a[0], b[0]))
    return {"rows": rows, "length": length, "macs": rows * length, "seconds": batch_s,
            "macs_per_s": rows * length / batch_s, "single_macs_per_s": length / single_s}


def _random_mac_stream(ncols: int, dot_len: int, seed: int):
    from pimgpt.sim.cocotb_lib import stimulus

    rng = np.random.default_rng(seed)
    a16, b16, _ = stimulus.mac_random(rng, ncols)
    lengths = np.full(ncols // dot_len, dot_len)
    n = int(lengths.sum())
    return a16[:n], b16[:n], lengths


def amaranth_sim_speed(ncols: int = 2048, dot_len: int = 64, seed: int = 3) -> dict:
    """Cycles/s of the MAC unit in the Amaranth simulator (full-rate columns), checked bit-exact.

    Returns
    -------
    dict
        ``simulator``, ``cycles``, ``seconds``, ``cycles_per_s``, ``results_checked``.
    """
    from pimgpt.hdl.testing import rtl_mac
    from pimgpt.sim.cocotb_lib import stimulus

    a16, b16, lengths = _random_mac_stream(ncols, dot_len, seed)
    res = rtl_mac(stimulus.pack_mac_columns(a16, b16, lengths))
    got = np.array(res["outputs"], np.uint32)
    if not np.array_equal(got, stimulus.mac_reference(a16, b16, lengths)):
        raise AssertionError("Amaranth simulation of the MAC unit differs from the golden model")
    return {"simulator": "amaranth", "cycles": res["cycles"], "seconds": res["seconds"],
            "cycles_per_s": res["cycles"] / res["seconds"], "results_checked": len(got)}


def hdl_sim_speed(simulator: str = "verilator", ncols: int = 20000, dot_len: int = 64,
                  build_root=None) -> dict:
    """Cycles/s of the MAC unit's Verilog under ``simulator`` with the cocotb testbench.

    Returns
    -------
    dict
        ``simulator``, ``cycles``, ``seconds``, ``cycles_per_s``, ``results_checked``,
        ``build_s`` (0 when an up-to-date build was reused); ``{"simulator", "skipped": reason}``
        when the simulator is not installed.
    """
    from pimgpt.hdl.export import write_verilog
    from pimgpt.sim.cocotb_lib.runner import (
        call_in_simulator,
        default_build_root,
        simulator_available,
    )

    ok, why = simulator_available(simulator)
    if not ok:
        return {"simulator": simulator, "skipped": why}
    d = Path(build_root or default_build_root()) / "bench_mac"
    d.mkdir(parents=True, exist_ok=True)
    run = call_in_simulator("pimgpt.apps.bench_rtl_mac:simulate_throughput",
                            {"ncols": ncols, "dot_len": dot_len}, sources=[write_verilog("mac", d)],
                            toplevel="mac", build_dir=d, simulator=simulator, quiet=True)
    return dict(run.result, simulator=simulator, build_s=round(run.build_s, 1))


async def simulate_throughput(dut, ncols: int, dot_len: int, seed: int = 3) -> dict:
    """In the simulator: ``ncols`` random columns in dot products of ``dot_len`` columns, driven
    back to back through the MAC unit and checked bit-exact; returns cycles, seconds,
    cycles per second and the number of results checked."""
    from pimgpt.sim.cocotb_lib import stimulus
    from pimgpt.sim.cocotb_lib.tb import MacTB

    a16, b16, _ = stimulus.mac_random(np.random.default_rng(seed), ncols, nx.MAC_LANES)
    lengths = np.full(ncols // dot_len, dot_len)
    ncols = int(lengths.sum())
    tb = MacTB(dut, lanes=nx.MAC_LANES)
    await tb.reset()
    tb.submit(a16[:ncols], b16[:ncols], lengths)
    t0 = time.perf_counter()
    tail = await tb.drain()
    seconds = time.perf_counter() - t0
    summary = tb.check()
    cycles = tb.driver.cycles + tail
    return {"cycles": cycles, "seconds": seconds, "cycles_per_s": cycles / seconds,
            "columns": ncols, "results_checked": summary["matched"]}


def run(quick: bool = False) -> dict:
    """Every MAC benchmark's figures (``quick``: smaller sizes)."""
    golden = golden_mac_throughput(rows=64 if quick else 256)
    sims = [amaranth_sim_speed(ncols=512 if quick else 2048),
            hdl_sim_speed("verilator", ncols=5000 if quick else 20000),
            hdl_sim_speed("icarus", ncols=256 if quick else 1024)]
    return {"golden": golden, "simulators": sims}


def print_table(res: dict) -> None:
    """The summary table of :func:`run`'s figures."""
    golden = res["golden"]
    print(f"golden numerics.dot_bf16: {golden['macs_per_s']:.3e} MAC/s "
          f"({golden['rows']} x {golden['length']} batch), single dot "
          f"{golden['single_macs_per_s']:.3e} MAC/s")
    for s in res["simulators"]:
        if "skipped" in s:
            print(f"{s['simulator']:>9}: skipped ({s['skipped']})")
        else:
            print(f"{s['simulator']:>9}: {s['cycles_per_s']:10.0f} cycles/s "
                  f"({s['cycles']} cycles in {s['seconds']:.2f} s, "
                  f"{s['results_checked']} results checked bit-exact)"
                  + (f", build {s['build_s']} s" if "build_s" in s else ""))


def main(argv=None) -> int:
    """``python -m pimgpt.apps.bench_rtl_mac [--quick] [--json]``, a section of ``pimgpt bench``."""
    from pimgpt.apps.bench import figures_main

    return figures_main(argv, __doc__, "smaller sizes", run, print_table)


if __name__ == "__main__":
    from pimgpt.apps.entry import module_main

    module_main(main)

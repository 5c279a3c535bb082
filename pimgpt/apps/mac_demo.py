"""Demo: one 1024-long bf16 dot product through the RTL MAC unit on Verilator, checked bit-exact.

``run_mac_demo(outdir)`` writes ``outdir/mac.v``, builds it with Verilator (cocotb runner, build
directory ``outdir/sim``), streams 64 columns of 16 bf16 pairs through it and compares the result
with :func:`pimgpt.core.numerics.dot_bf16` and with a float64 reference.
Command line: ``python -m pimgpt.apps.mac_demo [OUTDIR] [--length N] [--seed S]``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from pimgpt.core import numerics as nx
from pimgpt.core.errors import PimgptError

__all__ = ["run_mac_demo"]


def run_mac_demo(outdir, *, length: int = 1024, seed: int = 0,
                 simulator: str = "verilator", build_dir=None) -> dict:
    """Run a random bf16 dot product through the RTL MAC unit and check it.

    Parameters
    ----------
    outdir : path
        Output directory (Verilog, operands, simulator build, result JSON).
    length : int
        Vector length, a positive multiple of 16 (default 1024: one DRAM row).
    seed : int
        Seed of the random operands (standard normal values rounded to bf16).
    simulator : {"verilator", "icarus"}
        HDL simulator.
    build_dir : path, optional
        Simulator build directory (default ``outdir/sim``); an up-to-date build there is reused.

    Returns
    -------
    dict
        ``rtl``/``golden`` (fp32 values), ``rtl_bits``/``golden_bits`` (hex strings),
        ``reference`` (float64 dot product of the same bf16 values), ``abs_error``,
        ``rel_error`` (RTL vs float64), ``bit_exact``, ``cycles``, ``verilog``.

    Raises
    ------
    PimgptError
        On a bad length, a missing simulator, or an RTL result differing from the golden model.
    """
    from pimgpt.hdl.export import write_verilog
    from pimgpt.sim.cocotb_lib.runner import call_in_simulator, simulator_available

    if isinstance(length, bool) or not isinstance(length, int) or length <= 0 or length % 16:
        raise PimgptError(f"dot length must be a positive multiple of 16, got {length!r}")
    ok, why = simulator_available(simulator)
    if not ok:
        raise PimgptError(f"cannot run the MAC demo: {why}")
    outdir = Path(outdir)
    verilog = write_verilog("mac", outdir)

    rng = np.random.default_rng(seed)
    a16 = nx.f64_to_bf16(rng.standard_normal(length))
    b16 = nx.f64_to_bf16(rng.standard_normal(length))
    operands = outdir / "dot_operands.npy"
    np.save(operands, np.stack([a16, b16]), allow_pickle=False)
    build_dir = Path(build_dir or outdir / "sim")
    sim = call_in_simulator("pimgpt.apps.mac_demo:simulate_dot",
                            {"operands": str(operands.resolve())}, sources=[verilog],
                            toplevel="mac", build_dir=build_dir, simulator=simulator,
                            quiet=True).result

    golden = nx.dot_bf16(a16, b16)
    golden_bits = int(nx.bits_from_f32(np.atleast_1d(golden))[0])
    rtl_bits = sim["rtl_bits"]
    rtl = float(nx.f32_from_bits(np.array([rtl_bits], np.uint32))[0])
    reference = float(np.dot(nx.bf16_to_f32(a16).astype(np.float64),
                             nx.bf16_to_f32(b16).astype(np.float64)))
    result = {
        "length": length,
        "rtl": rtl,
        "rtl_bits": f"0x{rtl_bits:08x}",
        "golden": float(golden),
        "golden_bits": f"0x{golden_bits:08x}",
        "reference": reference,
        "abs_error": abs(rtl - reference),
        "rel_error": abs(rtl - reference) / abs(reference) if reference else 0.0,
        "bit_exact": rtl_bits == golden_bits,
        "cycles": sim["cycles"],
        "simulator": simulator,
        "verilog": str(verilog),
    }
    print(f"RTL MAC ({simulator}): dot of {length} bf16 pairs = {rtl!r} ({result['rtl_bits']}) "
          f"in {sim['cycles']} cycles")
    print(f"golden numerics.dot_bf16  = {float(golden)!r} ({result['golden_bits']})")
    print(f"float64 reference         = {reference!r}")
    print(f"error vs float64          = {result['abs_error']:.3e} "
          f"(relative {result['rel_error']:.3e}); bit-exact with golden: {result['bit_exact']}")
    if not result["bit_exact"]:
        raise PimgptError(f"RTL result {result['rtl_bits']} differs from the golden "
                          f"{result['golden_bits']}; see {build_dir}")
    return result


async def simulate_dot(dut, operands: str) -> dict:
    """In the simulator: one dot product of the two bf16 vectors saved in ``operands`` (``.npy``,
    shape ``(2, n)``, n a multiple of 16) through the MAC unit, checked bit-exact by the
    testbench's scoreboard; returns the result bits and the cycles."""
    from pimgpt.sim.cocotb_lib.tb import MacTB

    ab = np.load(operands, allow_pickle=False)
    a16, b16 = ab[0].reshape(-1, nx.MAC_LANES), ab[1].reshape(-1, nx.MAC_LANES)
    tb = MacTB(dut, lanes=nx.MAC_LANES)
    results = []
    tb.monitor.callback = lambda item: (results.append(item), tb.scoreboard.compare(item))
    await tb.reset()
    tb.submit(a16, b16, np.array([len(a16)]))
    await tb.drain()
    tb.check()
    return {"rtl_bits": int(results[0]), "columns": len(a16), "cycles": tb.driver.cycles}


def main(argv=None) -> int:
    """``python -m pimgpt.apps.mac_demo [OUTDIR] [--length N] [--seed S]``; 0 when bit-exact."""
    import argparse

    ap = argparse.ArgumentParser(
        prog="python -m pimgpt.apps.mac_demo",
        description="One bf16 dot product through the RTL MAC unit on Verilator (a build of a "
                    "minute the first time), checked bit for bit against the golden model and "
                    "against float64.")
    ap.add_argument("outdir", nargs="?", default="build/mac_demo",
                    help="output folder: mac.v, the operands, the simulator build "
                    "(default: build/mac_demo)")
    ap.add_argument("--length", type=int, default=1024,
                    help="vector length, a positive multiple of 16 (default 1024: one DRAM row)")
    ap.add_argument("--seed", type=int, default=0, help="seed of the random operands")
    args = ap.parse_args(argv)
    from pimgpt.core.fileio import check_directory

    check_directory("OUTDIR", args.outdir)  # before the Verilog is written
    run_mac_demo(args.outdir, length=args.length, seed=args.seed)
    return 0


if __name__ == "__main__":
    from pimgpt.apps.entry import module_main

    module_main(main)

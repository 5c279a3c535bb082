"""Run the cocotb test modules of this folder on the generated Verilog (Verilator; Icarus where
installed).

Each build has its own directory in the build cache (:func:`pimgpt.sim.cocotb_lib.runner.
default_build_root`), run through :func:`~pimgpt.sim.cocotb_lib.runner.run_cocotb` (the cocotb
Python runner, ``cocotb_tools.runner``). The assertions read the scoreboard summaries the cocotb
tests report: how many items were checked bit-exact against the golden model
(:mod:`pimgpt.core.numerics`, :class:`pimgpt.sim.golden.GoldenMachine`). The vector unit and the
channel share one top level (:func:`~pimgpt.sim.cocotb_lib.harness.blocks_verilog`), hence one
Verilator build.
"""

from pathlib import Path

import numpy as np
import pytest

from pimgpt.core.config import load_hw
from pimgpt.hdl.bank import bank_timing_rows
from pimgpt.hdl.bf16mul import BF16Mul
from pimgpt.hdl.export import write_verilog
from pimgpt.hdl.fp32add import FP32Add
from pimgpt.hdl.fp32mul import FP32Mul
from pimgpt.hdl.mac import MAC
from pimgpt.sim.cocotb_lib import stimulus
from pimgpt.sim.cocotb_lib.harness import (
    BLOCKS_TOP,
    blocks_build_dir,
    blocks_verilog,
    harness_verilog,
)
from pimgpt.sim.cocotb_lib.runner import (
    build_lock,
    default_build_root,
    run_cocotb,
    simulator_available,
)

HERE = Path(__file__).parent

# Vector counts per simulator: Icarus runs the MAC at a few hundred cycles/s, so it gets a smoke
# sized run; Verilator carries the bulk (100,000 random MAC columns).
COUNTS = {
    "verilator": {"nvec": 30000, "ncols": 100000},
    "icarus": {"nvec": 1500, "ncols": 600},
}


def _run(module: str, make_source, toplevel: str, build_dir: Path, tests: int, params: dict,
         simulator: str = "verilator"):
    """Run cocotb ``module`` (of this folder) on the Verilog ``make_source(build_dir)`` writes;
    skip if the simulator is missing. The build cache is shared by every checkout, so writing
    the source and simulating it happen under the build directory's lock."""
    ok, why = simulator_available(simulator)
    if not ok:
        pytest.skip(f"{simulator} tests skipped: {why}")
    with build_lock(build_dir):
        run = run_cocotb(sources=[make_source(build_dir)], toplevel=toplevel, test_module=module,
                         build_dir=build_dir, simulator=simulator, module_dirs=[HERE],
                         quiet=True, params=params)
    assert run.tests == tests and run.failed == 0
    return run


@pytest.mark.parametrize("simulator", ["verilator", "icarus"])
def test_fp_units_cocotb(simulator):
    units = {"bf16mul": BF16Mul(), "fp32add": FP32Add(), "fp32mul": FP32Mul()}
    d = default_build_root() / f"test_fp_units_{simulator}"
    n = COUNTS[simulator]["nvec"]
    run = _run("cocotb_fp", lambda out: harness_verilog(units, "fp_units", out), "fp_units", d, 3,
               {"nvec": n, "seed": 11, "latency": {op: u.latency for op, u in units.items()}},
               simulator)
    for op, corners in (("bf16mul", stimulus.BF16_DIRECTED), ("fp32add", stimulus.FP32_DIRECTED),
                        ("fp32mul", stimulus.FP32_DIRECTED)):
        s = run.report[op]
        assert s["mismatched"] == 0 and s["pending"] == 0 and s["unexpected"] == 0
        assert s["directed"] == len(corners) ** 2
        assert s["matched"] == n + len(corners) ** 2
        # idle cycles were really inserted: more cycles than inputs
        assert s["cycles"] > s["inputs"]
        print(f"[{simulator}] {op}: {s['matched']} vectors checked bit-exact "
              f"({s['directed']} directed)")
    print(f"[{simulator}] build {run.build_s:.1f} s, simulation {run.test_s:.1f} s")


@pytest.mark.parametrize("simulator", ["verilator", "icarus"])
def test_mac_cocotb(simulator):
    d = default_build_root() / f"test_mac_{simulator}"
    ncols = COUNTS[simulator]["ncols"]
    mac = MAC()
    run = _run("cocotb_mac", lambda out: write_verilog("mac", out), "mac", d, 3,
               {"ncols": ncols, "seed": 5, "lanes": mac.lanes, "latency": mac.latency},
               simulator)
    _, _, lengths, _ = stimulus.mac_directed()
    directed, rnd = run.report["mac_directed"], run.report["mac_random"]
    assert directed["matched"] == 2 * len(lengths) and directed["mismatched"] == 0
    assert rnd["columns"] == ncols and rnd["mismatched"] == 0 and rnd["pending"] == 0
    assert rnd["matched"] > ncols // 8  # dot products of 1..8 columns
    assert rnd["cycles"] > rnd["inputs"]
    rst = run.report["mac_reset"]  # reset mid-stream: queue dropped, then a clean directed batch
    assert rst["dropped"] > 0 and rst["matched"] == rst["seen_before_reset"] + len(lengths)
    assert rst["mismatched"] == rst["unexpected"] == rst["pending"] == 0
    print(f"[{simulator}] mac: {rnd['columns'] + directed['columns']} columns, "
          f"{rnd['matched'] + directed['matched']} dot products checked bit-exact; "
          f"build {run.build_s:.1f} s, simulation {run.test_s:.1f} s")


def test_mac_demo_on_verilator(capsys):
    """The 1024-long demo dot product; reuses the MAC build of test_mac_cocotb when present."""
    from pimgpt.apps.mac_demo import run_mac_demo
    from pimgpt.core import numerics as nx

    ok, why = simulator_available("verilator")
    if not ok:
        pytest.skip(f"verilator tests skipped: {why}")
    d = default_build_root() / "test_mac_verilator"
    res = run_mac_demo(d, build_dir=d, seed=4)
    ab = np.load(d / "dot_operands.npy", allow_pickle=False)
    assert ab.shape == (2, 1024)
    golden = nx.bits_from_f32(np.atleast_1d(nx.dot_bf16(ab[0], ab[1])))[0]
    assert res["bit_exact"] and res["rtl_bits"] == res["golden_bits"] == f"0x{int(golden):08x}"
    assert res["rel_error"] < 1e-4  # fp32 accumulation of 1024 exact products vs float64
    assert res["cycles"] >= 64  # one column (16 pairs) per cycle
    out = capsys.readouterr().out
    assert "float64 reference" in out and res["rtl_bits"] in out


def test_vector_unit_cocotb():
    """The vector unit of tiny-rtl (16 lanes, dual issue): every vector instruction bit for bit
    against the golden model, every instruction's cycles and every micro-operation's issue cycle
    against the ISS."""
    hw = load_hw("tiny-rtl")
    lanes = hw.asic.vector_lanes
    run = _run("cocotb_vu", lambda out: blocks_verilog(hw, out), BLOCKS_TOP, blocks_build_dir(hw),
               1, {"seed": 5, "nelem": 200, "prefix": "vu_", "lanes": lanes, "trace": True,
                   "pipeline": {"add": hw.asic.fp_add_latency, "mul": hw.asic.fp_mul_latency,
                                "load": hw.asic.sp_read_latency,
                                "issue": hw.asic.vector_issue_width}})
    s = run.report["vector_unit"]
    for name in ("scratchpad", "argmax registers", "logits", "cycles vs ISS",
                 "issue trace vs ISS"):
        assert s[name]["mismatched"] == 0 and s[name]["pending"] == 0, (name, s[name])
        assert s[name]["unexpected"] == 0, (name, s[name])
    assert s["scratchpad"]["matched"] == 16384
    assert s["argmax registers"]["matched"] == 12
    assert s["sreg_idx"] == [3, 7, 11, 15] + [9] * 6 + [10] * 2
    assert s["logits"]["matched"] == 8 + 6 + 7 * lanes + 257 + 6 * lanes + 4
    assert s["cycles vs ISS"]["matched"] == s["instructions"]
    assert s["issue trace vs ISS"]["matched"] > 10 * s["instructions"]
    print(f"vector unit ({lanes} lanes): {s['instructions']} instructions, {s['elements']} "
          f"elements, {s['cycles']} cycles, {s['issue trace vs ISS']['matched']} micro-operations "
          f"at the ISS's cycle, bit-exact; build {run.build_s:.1f} s, sim {run.test_s:.1f} s")


def test_channel_cocotb():
    hw = load_hw("tiny-rtl")
    run = _run("cocotb_channel", lambda out: blocks_verilog(hw, out), BLOCKS_TOP,
               blocks_build_dir(hw), 3, {"hw": "tiny-rtl", "seed": 2, "ops": 400, "prefix": "ch_"})
    s = run.report["random_commands"]
    assert s["error"] == 0
    assert s["rd"]["mismatched"] == 0 and s["rd"]["pending"] == 0 and s["rd"]["matched"] > 20
    assert s["acc"]["mismatched"] == 0 and s["acc"]["pending"] == 0
    assert s["acc"]["matched"] >= 4 * 20
    assert s["commands"] > 400
    illegal = run.report["illegal_commands"]
    assert all(illegal.values()) and len(illegal) == 3
    # Every bank-scope row of the standard probed: flagged one cycle early, accepted on time.
    probes = run.report["timing_probes"]
    assert {tuple(p["row"]) for p in probes.values()} == set(bank_timing_rows(hw))
    for name, p in probes.items():
        assert p["early_error"] == 1 and p["on_time_error"] == 0, (name, p)
        assert p["binding"] and not p["on_time_violations"], (name, p)
    print(f"channel: {s['commands']} commands, {s['rd']['matched']} RD columns and "
          f"{s['acc']['matched']} accumulators bit-exact; build {run.build_s:.1f} s, "
          f"sim {run.test_s:.1f} s")

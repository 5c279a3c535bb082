"""Run the cocotb tests on the generated Verilog (Verilator; Icarus where installed).

Each test builds into its own directory ``build/cocotb/<test>/<simulator>`` through the cocotb
Python runner (``cocotb_tools.runner``) and asserts, from the summary the cocotb tests write, how
many vectors were checked bit-exact against ``pimgpt.core.numerics``.
"""

import json
from pathlib import Path

import pytest

from pimgpt.hdl.bf16mul import BF16Mul
from pimgpt.hdl.export import write_verilog
from pimgpt.hdl.fp32add import FP32Add
from pimgpt.hdl.fp32mul import FP32Mul
from pimgpt.hdl.mac import MAC
from pimgpt.sim.cocotb_lib import stimulus
from pimgpt.sim.cocotb_lib.harness import Harness
from pimgpt.sim.cocotb_lib.runner import default_build_root, run_cocotb, simulator_available

HERE = Path(__file__).parent

# Vector counts per simulator: Icarus runs the MAC at a few hundred cycles/s, so it gets a smoke
# sized run; Verilator carries the bulk (100,000 random MAC columns).
COUNTS = {
    "verilator": {"nvec": 30000, "ncols": 100000},
    "icarus": {"nvec": 1500, "ncols": 600},
}


def _need(simulator: str) -> None:
    ok, why = simulator_available(simulator)
    if not ok:
        pytest.skip(f"{simulator} tests skipped: {why}")


def _build_dir(name: str) -> Path:
    d = default_build_root() / name
    d.mkdir(parents=True, exist_ok=True)
    return d


def _summary(path: Path) -> dict:
    return json.loads(path.read_text())


def _fp_units_verilog(outdir: Path) -> Path:
    from amaranth.back import verilog

    top = Harness({"bf16mul": BF16Mul(), "fp32add": FP32Add(), "fp32mul": FP32Mul()})
    path = outdir / "fp_units.v"
    text = verilog.convert(top, name="fp_units", emit_src=False)
    if not path.exists() or path.read_text() != text:  # keep the timestamp: no needless rebuild
        path.write_text(text)
    return path


@pytest.mark.parametrize("simulator", ["verilator", "icarus"])
def test_fp_units_cocotb(simulator):
    _need(simulator)
    d = _build_dir(f"test_fp_units_{simulator}")
    summary_path = d / "summary.json"
    summary_path.unlink(missing_ok=True)
    n = COUNTS[simulator]["nvec"]
    run = run_cocotb(sources=[_fp_units_verilog(d)], toplevel="fp_units", test_module="cocotb_fp",
                     build_dir=d, simulator=simulator, module_dirs=[HERE],
                     env={"PIMGPT_NVEC": str(n), "PIMGPT_SEED": "11",
                          "PIMGPT_SUMMARY": str(summary_path)})
    assert run.tests == 3 and run.failed == 0
    summary = _summary(summary_path)
    for op, corners in (("bf16mul", stimulus.BF16_DIRECTED), ("fp32add", stimulus.FP32_DIRECTED),
                        ("fp32mul", stimulus.FP32_DIRECTED)):
        s = summary[op]
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
    _need(simulator)
    d = _build_dir(f"test_mac_{simulator}")
    summary_path = d / "summary.json"
    summary_path.unlink(missing_ok=True)
    ncols = COUNTS[simulator]["ncols"]
    mac = MAC()
    run = run_cocotb(sources=[write_verilog("mac", d)], toplevel="mac", test_module="cocotb_mac",
                     build_dir=d, simulator=simulator, module_dirs=[HERE],
                     env={"PIMGPT_NCOLS": str(ncols), "PIMGPT_SEED": "5",
                          "PIMGPT_LANES": str(mac.lanes), "PIMGPT_LATENCY": str(mac.latency),
                          "PIMGPT_SUMMARY": str(summary_path)})
    assert run.tests == 2 and run.failed == 0
    summary = _summary(summary_path)
    _, _, lengths, _ = stimulus.mac_directed()
    directed, rnd = summary["mac_directed"], summary["mac_random"]
    assert directed["matched"] == 2 * len(lengths) and directed["mismatched"] == 0
    assert rnd["columns"] == ncols and rnd["mismatched"] == 0 and rnd["pending"] == 0
    assert rnd["matched"] > ncols // 8  # dot products of 1..8 columns
    assert rnd["cycles"] > rnd["inputs"]
    print(f"[{simulator}] mac: {rnd['columns'] + directed['columns']} columns, "
          f"{rnd['matched'] + directed['matched']} dot products checked bit-exact; "
          f"build {run.build_s:.1f} s, simulation {run.test_s:.1f} s")


def test_mac_demo_on_verilator(capsys):
    """The 1024-long demo dot product; reuses the MAC build of test_mac_cocotb when present."""
    import numpy as np

    from pimgpt.apps.mac_demo import run_mac_demo
    from pimgpt.core import numerics as nx

    _need("verilator")
    d = _build_dir("test_mac_verilator")
    res = run_mac_demo(d, build_dir=d, seed=4)
    ab = np.load(d / "dot_operands.npy", allow_pickle=False)
    assert ab.shape == (2, 1024)
    golden = nx.bits_from_f32(np.atleast_1d(nx.dot_bf16(ab[0], ab[1])))[0]
    assert res["bit_exact"] and res["rtl_bits"] == res["golden_bits"] == f"0x{int(golden):08x}"
    assert res["rel_error"] < 1e-4  # fp32 accumulation of 1024 exact products vs float64
    assert res["cycles"] >= 64  # one column (16 pairs) per cycle
    out = capsys.readouterr().out
    assert "float64 reference" in out and res["rtl_bits"] in out

"""cocotb tests of the floating-point units on generated Verilog.

The top level is a :class:`pimgpt.sim.cocotb_lib.harness.Harness` holding ``bf16mul``,
``fp32add`` and ``fp32mul`` side by side (ports ``<unit>_i__payload`` ...), so one build serves
the three tests. Environment (set by ``test_cocotb_rtl.py``): ``PIMGPT_NVEC`` (random operand
pairs per unit), ``PIMGPT_SEED`` and ``PIMGPT_SUMMARY`` (JSON file receiving the counts).
"""

import json
import os

import cocotb
import numpy as np

from pimgpt.sim.cocotb_lib import stimulus
from pimgpt.sim.cocotb_lib.drivers import burst_pauses, random_pauses
from pimgpt.sim.cocotb_lib.tb import FpUnitTB

LATENCY = 4  # upper bound of the units' latencies (exact values are checked in test_hdl_fp.py)


def _write_summary(name: str, summary: dict) -> None:
    path = os.environ.get("PIMGPT_SUMMARY")
    if not path:
        return
    data = json.loads(open(path).read()) if os.path.exists(path) else {}
    data[name] = summary
    with open(path, "w") as f:
        json.dump(data, f, indent=1)


async def _check_unit(dut, op: str) -> None:
    """Every ordered pair of corner values, then random operands with idle cycles, bit-exact."""
    nvec = int(os.environ.get("PIMGPT_NVEC", "20000"))
    seed = int(os.environ.get("PIMGPT_SEED", "1"))
    rng = np.random.default_rng(seed)
    tb = FpUnitTB(dut, op, in_prefix=f"{op}_i", out_prefix=f"{op}_o")
    await tb.reset()

    corners = stimulus.BF16_DIRECTED if op == "bf16mul" else stimulus.FP32_DIRECTED
    a, b = stimulus.cross_pairs(corners)
    ndirected = tb.submit(a, b)
    if op == "fp32add":
        a, b = stimulus.fp32_add_pairs(rng, nvec)
    elif op == "fp32mul":
        a, b = stimulus.fp32_mul_pairs(rng, nvec)
    else:
        a, b = stimulus.bf16_random(rng, nvec), stimulus.bf16_random(rng, nvec)
    half = nvec // 2
    tb.driver.set_pause_generator(random_pauses(0.3, seed))
    tb.submit(a[:half], b[:half])
    await tb.drain(LATENCY)
    tb.driver.set_pause_generator(burst_pauses(seed))
    tb.submit(a[half:], b[half:])
    await tb.drain(LATENCY)

    summary = tb.check()
    summary["directed"] = ndirected
    dut._log.info("%s: %d vectors checked bit-exact (%d directed), %d cycles, %.1f s",
                  op, summary["matched"], ndirected, summary["cycles"], summary["wall_s"])
    _write_summary(op, summary)


@cocotb.test()
async def bf16mul(dut):
    """bf16 x bf16 -> fp32, exact."""
    await _check_unit(dut, "bf16mul")


@cocotb.test()
async def fp32add(dut):
    """fp32 + fp32, RNE, DAZ/FTZ."""
    await _check_unit(dut, "fp32add")


@cocotb.test()
async def fp32mul(dut):
    """fp32 x fp32, RNE, DAZ/FTZ with unbounded-exponent rounding."""
    await _check_unit(dut, "fp32mul")

"""cocotb tests of the floating-point units on generated Verilog.

The top level is a :class:`pimgpt.sim.cocotb_lib.harness.Harness` holding ``bf16mul``,
``fp32add`` and ``fp32mul`` side by side (ports ``<unit>_i__payload`` ...), so one build serves
the three tests. Parameters (from ``test_cocotb_rtl.py``): ``nvec`` (random operand pairs per
unit), ``seed``, ``latency`` (per unit); each test reports its scoreboard summary under its unit.
"""

import cocotb
import numpy as np

from pimgpt.sim.cocotb_lib import stimulus
from pimgpt.sim.cocotb_lib.drivers import burst_pauses, random_pauses
from pimgpt.sim.cocotb_lib.exchange import params, report
from pimgpt.sim.cocotb_lib.tb import FpUnitTB


async def _check_unit(dut, op: str) -> None:
    """Every ordered pair of corner values, then random operands with idle cycles, bit-exact."""
    p = params()
    nvec, seed = p["nvec"], p["seed"]
    rng = np.random.default_rng(seed)
    tb = FpUnitTB(dut, op, p["latency"][op], in_prefix=f"{op}_i", out_prefix=f"{op}_o")
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
    await tb.drain()
    tb.driver.set_pause_generator(burst_pauses(seed))
    tb.submit(a[half:], b[half:])
    await tb.drain()

    summary = tb.check()
    summary["directed"] = ndirected
    dut._log.info("%s: %d vectors checked bit-exact (%d directed), %d cycles, %.1f s",
                  op, summary["matched"], ndirected, summary["cycles"], summary["wall_s"])
    report(op, summary)


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

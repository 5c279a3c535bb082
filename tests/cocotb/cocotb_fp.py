"""cocotb tests of the floating-point units (bf16mul, fp32add, fp32mul) on their generated Verilog.

Parameters come from the environment (set by ``test_cocotb_rtl.py``): ``PIMGPT_OP`` (which unit
is the top level), ``PIMGPT_NVEC`` (random operand pairs), ``PIMGPT_SEED`` and
``PIMGPT_SUMMARY`` (JSON file receiving the counts).
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


@cocotb.test()
async def directed_and_random(dut):
    """Every pair of corner values, then random operands with idle cycles, bit-exact."""
    op = os.environ["PIMGPT_OP"]
    nvec = int(os.environ.get("PIMGPT_NVEC", "20000"))
    seed = int(os.environ.get("PIMGPT_SEED", "1"))
    rng = np.random.default_rng(seed)
    tb = FpUnitTB(dut, op)
    await tb.reset()

    corners = stimulus.BF16_DIRECTED if op == "bf16mul" else stimulus.FP32_DIRECTED
    a, b = stimulus.cross_pairs(corners)
    ndirected = tb.submit(a, b)
    if op == "fp32add":
        a, b = stimulus.fp32_add_pairs(rng, nvec)
    elif op == "fp32mul":
        a, b = stimulus.fp32_mul_pairs(rng, nvec)
    else:  # every bf16 x bf16 pattern class; 2**32 pairs is too many, so sample
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

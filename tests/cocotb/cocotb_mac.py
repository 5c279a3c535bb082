"""cocotb tests of the MAC unit on its generated Verilog.

Environment (set by ``test_cocotb_rtl.py``): ``PIMGPT_NCOLS`` (random columns), ``PIMGPT_SEED``,
``PIMGPT_LANES``, ``PIMGPT_LATENCY`` (the unit's latency), ``PIMGPT_SUMMARY`` (JSON output).
"""

import json
import os

import cocotb
import numpy as np
from cocotb.triggers import ClockCycles

from pimgpt.sim.cocotb_lib import stimulus
from pimgpt.sim.cocotb_lib.drivers import burst_pauses, random_pauses
from pimgpt.sim.cocotb_lib.tb import MacTB


def _env(name: str, default: str) -> int:
    return int(os.environ.get(name, default))


def _write_summary(name: str, summary: dict) -> None:
    path = os.environ.get("PIMGPT_SUMMARY")
    if not path:
        return
    data = json.loads(open(path).read()) if os.path.exists(path) else {}
    data[name] = summary
    with open(path, "w") as f:
        json.dump(data, f, indent=1)


@cocotb.test()
async def mac_directed(dut):
    """Corner-case dot products, back to back at full throughput and again with idle cycles."""
    lanes, latency = _env("PIMGPT_LANES", "16"), _env("PIMGPT_LATENCY", "10")
    tb = MacTB(dut, lanes=lanes)
    await tb.reset()
    a16, b16, lengths, names = stimulus.mac_directed(lanes)
    tb.submit(a16, b16, lengths, names)
    await tb.drain(latency)
    tb.driver.set_pause_generator(random_pauses(0.5, 7))
    tb.submit(a16, b16, lengths, names)
    await tb.drain(latency)
    summary = tb.check()
    dut._log.info("mac directed: %d dot products (%d columns) checked bit-exact",
                  summary["matched"], tb.columns)
    _write_summary("mac_directed", dict(summary, columns=tb.columns))


@cocotb.test()
async def mac_random(dut):
    """Random dot products (PIMGPT_NCOLS columns in all) under full-rate bursts and random idles;
    also checks that ``acc`` holds the last result while idle."""
    lanes, latency = _env("PIMGPT_LANES", "16"), _env("PIMGPT_LATENCY", "10")
    ncols, seed = _env("PIMGPT_NCOLS", "100000"), _env("PIMGPT_SEED", "1")
    rng = np.random.default_rng(seed)
    tb = MacTB(dut, lanes=lanes)
    await tb.reset()
    a16, b16, lengths = stimulus.mac_random(rng, ncols, lanes)
    # Split the stream in two halves: dense bursts (full throughput, back-to-back dot products)
    # and a random 25 % idle pattern.
    split = int(np.searchsorted(np.cumsum(lengths), ncols // 2))
    cut = int(np.sum(lengths[:split]))
    tb.driver.set_pause_generator(burst_pauses(seed))
    tb.submit(a16[:cut], b16[:cut], lengths[:split])
    await tb.drain(latency)
    tb.driver.set_pause_generator(random_pauses(0.25, seed))
    expected = tb.submit(a16[cut:], b16[cut:], lengths[split:])
    await tb.drain(latency)
    await ClockCycles(dut.clk, 3)
    acc = dut.acc.value.to_unsigned()
    assert acc == int(expected[-1]), f"acc register 0x{acc:08x} != last result {expected[-1]:#x}"
    summary = tb.check()
    dut._log.info("mac random: %d columns, %d dot products checked bit-exact, %d cycles, %.1f s",
                  tb.columns, summary["matched"], summary["cycles"], summary["wall_s"])
    _write_summary("mac_random", dict(summary, columns=tb.columns))

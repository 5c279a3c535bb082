"""cocotb tests of the MAC unit on its generated Verilog.

Parameters (from ``test_cocotb_rtl.py``): ``ncols`` (random columns), ``seed``, ``lanes``,
``latency`` (the unit's); each test reports its scoreboard summary.
"""

import cocotb
import numpy as np
from cocotb.triggers import ClockCycles

from pimgpt.sim.cocotb_lib import stimulus
from pimgpt.sim.cocotb_lib.drivers import burst_pauses, random_pauses
from pimgpt.sim.cocotb_lib.exchange import params, report
from pimgpt.sim.cocotb_lib.tb import MacTB


def _tb(dut) -> MacTB:
    p = params()
    return MacTB(dut, lanes=p["lanes"], latency=p["latency"])


@cocotb.test()
async def mac_directed(dut):
    """Corner-case dot products, back to back at full throughput and again with idle cycles."""
    tb = _tb(dut)
    await tb.reset()
    a16, b16, lengths, names = stimulus.mac_directed(tb.lanes)
    tb.submit(a16, b16, lengths, names)
    await tb.drain()
    tb.driver.set_pause_generator(random_pauses(0.5, 7))
    tb.submit(a16, b16, lengths, names)
    await tb.drain()
    summary = tb.check()
    dut._log.info("mac directed: %d dot products (%d columns) checked bit-exact",
                  summary["matched"], tb.columns)
    report("mac_directed", dict(summary, columns=tb.columns))


@cocotb.test()
async def mac_random(dut):
    """Random dot products (``ncols`` columns in all) under full-rate bursts and random idles;
    also checks that ``acc`` holds the last result while idle."""
    ncols, seed = params()["ncols"], params()["seed"]
    rng = np.random.default_rng(seed)
    tb = _tb(dut)
    await tb.reset()
    a16, b16, lengths = stimulus.mac_random(rng, ncols, tb.lanes)
    # Split the stream in two halves: dense bursts (full throughput, back-to-back dot products)
    # and a random 25 % idle pattern.
    split = int(np.searchsorted(np.cumsum(lengths), ncols // 2))
    cut = int(np.sum(lengths[:split]))
    tb.driver.set_pause_generator(burst_pauses(seed))
    tb.submit(a16[:cut], b16[:cut], lengths[:split])
    await tb.drain()
    tb.driver.set_pause_generator(random_pauses(0.25, seed))
    expected = tb.submit(a16[cut:], b16[cut:], lengths[split:])
    await tb.drain()
    await ClockCycles(dut.clk, 3)
    acc = dut.acc.value.to_unsigned()
    assert acc == int(expected[-1]), f"acc register 0x{acc:08x} != last result {expected[-1]:#x}"
    summary = tb.check()
    dut._log.info("mac random: %d columns, %d dot products checked bit-exact, %d cycles, %.1f s",
                  tb.columns, summary["matched"], summary["cycles"], summary["wall_s"])
    report("mac_random", dict(summary, columns=tb.columns))


@cocotb.test()
async def mac_reset_mid_stream(dut):
    """A reset while columns are queued and in flight: the driver drops its queue and stops
    driving, the monitor sees nothing during reset, and afterwards the unit and the testbench
    check a fresh directed batch bit-exact (nothing stale comes out)."""
    tb = _tb(dut)
    await tb.reset()
    a16, b16, lengths = stimulus.mac_random(np.random.default_rng(params()["seed"]), 400,
                                            tb.lanes)
    tb.submit(a16, b16, lengths)
    await ClockCycles(dut.clk, 100)
    dut.rst.value = 1
    await ClockCycles(dut.clk, 1)
    # (an item presented at the edge where reset rose may still count as sent and seen)
    seen_before, sent_before = tb.monitor.count, tb.driver.sent
    in_reset = (len(tb.driver.queue), int(dut.i__valid.value), tb.monitor.running)
    dropped = await tb.reset()
    assert in_reset == (0, 0, False), in_reset
    assert 0 < sent_before < 400 and dropped > 0
    assert (tb.driver.sent, tb.monitor.count) == (sent_before, seen_before)  # nothing in reset
    a16, b16, lengths, names = stimulus.mac_directed(tb.lanes)
    tb.submit(a16, b16, lengths, names)
    await tb.drain()
    summary = tb.check()  # no unexpected item: nothing from before the reset came out after it
    report("mac_reset", dict(summary, seen_before_reset=seen_before, dropped=dropped,
                             directed=len(lengths)))

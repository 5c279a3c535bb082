"""cocotb tests that *use* the MAC unit (not a verification suite): the dot-product demo and the
simulation-speed bench. Selected by ``testcase``; parameters and results go through files named
in the environment:

* ``dot_product``: ``PIMGPT_DOT_IN`` (``.npy`` file, uint16 array of shape (2, n): a and b),
  ``PIMGPT_DOT_OUT`` (JSON: result bits, cycles).
* ``throughput``: ``PIMGPT_NCOLS`` columns in dot products of ``PIMGPT_DOT_LEN`` columns, driven
  back to back; ``PIMGPT_BENCH_OUT`` (JSON: cycles, seconds, cycles_per_s, results checked).
"""

import json
import os
import time

import cocotb
import numpy as np
from cocotb.triggers import ClockCycles

from pimgpt.core import numerics as nx
from pimgpt.sim.cocotb_lib import stimulus
from pimgpt.sim.cocotb_lib.tb import MacTB

LANES = nx.MAC_LANES


@cocotb.test()
async def dot_product(dut):
    """One dot product of two bf16 vectors (length a multiple of 16), checked bit-exact."""
    ab = np.load(os.environ["PIMGPT_DOT_IN"], allow_pickle=False)
    a16, b16 = ab[0].reshape(-1, LANES), ab[1].reshape(-1, LANES)
    tb = MacTB(dut, lanes=LANES)
    results = []

    def observe(item):
        results.append(item)
        tb.scoreboard.compare(item)

    tb.monitor.callback = observe
    await tb.reset()
    tb.submit(a16, b16, np.array([len(a16)]))
    await tb.drain(24)
    tb.check()
    with open(os.environ["PIMGPT_DOT_OUT"], "w") as f:
        json.dump({"rtl_bits": int(results[0]), "columns": len(a16),
                   "cycles": tb.driver.cycles}, f)


@cocotb.test()
async def throughput(dut):
    """Random columns at full rate; reports simulated cycles per wall-clock second."""
    ncols = int(os.environ.get("PIMGPT_NCOLS", "20000"))
    dot_len = int(os.environ.get("PIMGPT_DOT_LEN", "64"))
    rng = np.random.default_rng(int(os.environ.get("PIMGPT_SEED", "3")))
    a16, b16, _ = stimulus.mac_random(rng, ncols, LANES)
    lengths = np.full(ncols // dot_len, dot_len)
    ncols = int(lengths.sum())
    tb = MacTB(dut, lanes=LANES)
    await tb.reset()
    tb.submit(a16[:ncols], b16[:ncols], lengths)
    t0 = time.perf_counter()
    await tb.driver.wait()
    await ClockCycles(dut.clk, 24)
    seconds = time.perf_counter() - t0
    summary = tb.check()
    cycles = tb.driver.cycles + 24
    with open(os.environ["PIMGPT_BENCH_OUT"], "w") as f:
        json.dump({"cycles": cycles, "seconds": seconds, "cycles_per_s": cycles / seconds,
                   "columns": ncols, "results_checked": summary["matched"]}, f)

"""cocotb tests of one PIM channel (its banks, global buffer, MAC units, command decode).

:class:`~pimgpt.sim.cocotb_lib.channel_tb.ChannelTB` issues a seeded random mix of DRAM commands,
each at the earliest cycle the DRAM standard allows plus 0-2 random idle cycles, checking every
command with the protocol checker; its model predicts every ``RD`` column and every ``RDMAC16``
burst, compared on the scoreboards. The banks' device-side timing counters must stay quiet
(``error`` low); a second test issues illegal commands and expects ``error``.
Parameters: ``hw``, ``seed``, ``ops``, ``prefix`` (of the channel's ports); summaries are reported.
"""

from __future__ import annotations

import cocotb
from cocotb.triggers import ClockCycles, RisingEdge

from pimgpt.core.config import load_hw
from pimgpt.sim.cocotb_lib.channel_tb import ChannelTB
from pimgpt.sim.cocotb_lib.exchange import params, report


def _tb(dut) -> ChannelTB:
    p = params()
    return ChannelTB(dut, load_hw(p.get("hw", "tiny-rtl")), p.get("seed", 1),
                     prefix=p.get("prefix", ""))


@cocotb.test()
async def channel_random_commands(dut):
    tb = _tb(dut)
    await tb.reset()
    await tb.preload()
    tb.start()
    for _ in range(4):
        await tb.op_wrgb()
    ops = [(tb.op_wrgb, ()), (tb.op_mac, (True,)), (tb.op_mac, (True,)), (tb.op_mac, (False,)),
           (tb.op_rdmac, ()), (tb.op_wr, (False,)), (tb.op_wr, (True,)), (tb.op_rd, ()),
           (tb.op_rd, ()), (tb.op_copy, (True,)), (tb.op_copy, (False,)), (tb.op_wrmac, ())]
    counts = {}
    for _ in range(params().get("ops", 400)):
        fn, args = tb.rng.choice(ops)
        counts[fn.__name__] = counts.get(fn.__name__, 0) + 1
        await fn(*args)
    await tb.op_rdmac()
    await ClockCycles(tb.dut.clk, 80)
    summary = dict(tb.summary(), ops=counts)
    report("random_commands", summary)
    assert summary["error"] == 0, "a bank flagged a legal command stream"
    tb.rd_board.check()
    tb.acc_board.check()


@cocotb.test()
async def channel_flags_illegal_commands(dut):
    tb = _tb(dut)
    dut = tb.dut
    results = {}
    for name, sequence in (
        ("RD too soon after ACT", [("ACT", 0, {"row": 1}), ("RD", 0, {})]),
        ("column command to a closed bank", [("MAC", 2, {})]),
        ("ACT to an open bank", [("ACT", 1, {"row": 1}), ("ACT", 1, {"row": 2})]),
    ):
        await tb.reset()
        for cmd, fpi, fields in sequence:
            dut.cmd.value = tb.command(cmd, fpi, **fields)
            await RisingEdge(dut.clk)
            dut.cmd.value = 0
            await ClockCycles(dut.clk, 100 if cmd == "ACT" and name.startswith("ACT") else 1)
        await ClockCycles(dut.clk, 2)
        results[name] = int(dut.error.value)
    report("illegal_commands", results)
    assert all(results.values()), results

"""cocotb tests of one PIM channel (its banks, global buffer, MAC units, command decode).

:class:`~pimgpt.sim.cocotb_lib.channel_tb.ChannelTB` issues a seeded random mix of DRAM commands,
each at the earliest cycle the DRAM standard allows plus 0-2 random idle cycles, checking every
command with the protocol checker; its model predicts every ``RD`` column and every ``RDMAC16``
burst, compared on the scoreboards. The banks' device-side timing counters must stay quiet
(``error`` low); a second test issues illegal commands and expects ``error``; a third probes one
timing constraint at a time: the probe command one cycle before the earliest cycle the standard
allows must raise ``error``, the same command at that cycle must not.
Parameters: ``hw``, ``seed``, ``ops``, ``prefix`` (of the channel's ports); summaries are reported.
"""

from __future__ import annotations

import cocotb
from cocotb.triggers import ClockCycles, RisingEdge

from pimgpt.core.config import load_hw
from pimgpt.sim.cocotb_lib.channel_tb import ChannelTB
from pimgpt.sim.cocotb_lib.dram_monitor import ProtocolChecker
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


# Timing probes of the bank-scope rows of the DRAM standard, which every bank checks device side
# (hdl/bank.py: bank_timing_rows; the channel- and bank-group-scope rows are the scheduler's to
# obey and the DRAM monitor's to check). Each: (name, (preceding, following) class of the row,
# commands before the probe, the probe). A command before is (name, footprint index, fields,
# minimum cycles after the previous command: a late command makes its own row the binding one).
_ROW = {"row": 1}
_COL = {"col": 0, "gbcol": 0}
_WR = {"col": 0, "mask": 0xFFFF, "data": 0x3F80}
_ACT = ("ACT", 0, _ROW, 0)
TIMING_PROBES = (
    ("ACT to RD", ("ACT", "RD"), [_ACT], ("RD", 0, _COL)),
    ("ACT to MAC", ("ACT", "MAC"), [_ACT], ("MAC", 0, _COL)),
    ("ACT16 to MAC16", ("ACT", "MAC"), [("ACT16", 0, _ROW, 0)], ("MAC16", 0, _COL)),
    ("ACT to WR", ("ACT", "WR"), [_ACT], ("WR", 0, _WR)),
    ("ACT to RDCP", ("ACT", "RDCP"), [_ACT], ("RDCP", 0, _COL)),
    ("ACT to WRCP", ("ACT", "WRCP"), [_ACT], ("WRCP", 0, _COL)),
    ("ACT to PRE", ("ACT", "PRE"), [_ACT], ("PRE", 0, {})),
    ("ACT4 to PRE", ("ACT", "PRE"), [("ACT4", 0, _ROW, 0)], ("PRE", 1, {})),
    ("row cycle", ("ACT", "ACT"), [_ACT, ("PRE", 0, {}, 0)], ("ACT", 0, _ROW)),
    ("PRE to ACT", ("PRE", "ACT"), [_ACT, ("PRE", 0, {}, 80)], ("ACT", 0, _ROW)),
    ("PREA to ACT16", ("PRE", "ACT"), [("ACT16", 0, _ROW, 0), ("PREA", 0, {}, 80)],
     ("ACT16", 0, _ROW)),
    ("RD to PRE", ("RD", "PRE"), [_ACT, ("RD", 0, _COL, 60)], ("PRE", 0, {})),
    ("MAC to PRE", ("MAC", "PRE"), [_ACT, ("MAC", 0, _COL, 60)], ("PRE", 0, {})),
    ("RDCP to PRE", ("RDCP", "PRE"), [_ACT, ("RDCP", 0, _COL, 70)], ("PRE", 0, {})),
    ("WR to PRE", ("WR", "PRE"), [_ACT, ("WR", 0, _WR, 0)], ("PRE", 0, {})),
    ("WRCP to PRE", ("WRCP", "PRE"), [_ACT, ("WRCP", 0, _COL, 0)], ("PRE", 0, {})),
)


async def _probe(tb: ChannelTB, before, probe, early: bool) -> tuple[int, list]:
    """Issue ``before`` at their earliest legal cycles, then ``probe`` at its earliest cycle
    (minus one if ``early``); return the RTL's ``error`` and the checker's violations."""
    dut = tb.dut
    await tb.reset()
    checker = ProtocolChecker(tb.hw)
    now = 0  # checker cycle of the next rising edge

    async def send(t, name, fpi, fields):
        nonlocal now
        while now < t:
            await RisingEdge(dut.clk)
            now += 1
        dut.cmd.value = tb.command(name, fpi, **fields)
        await RisingEdge(dut.clk)
        now += 1
        dut.cmd.value = 0

    last = -1
    for name, fpi, fields, gap in before:
        t = max(checker.earliest(name, fpi), last + max(gap, 1))
        assert not checker.check(t, name, fpi, fields.get("row", 0)), (name, t)
        await send(t, name, fpi, fields)
        last = t
    name, fpi, fields = probe
    t = checker.earliest(name, fpi) - (1 if early else 0)
    assert t > last, f"{name}: nothing to probe (earliest {t + early}, previous at {last})"
    found = checker.check(t, name, fpi, fields.get("row", 0))
    await send(t, name, fpi, fields)
    await ClockCycles(dut.clk, 4)
    return int(dut.error.value), [v.message for v in found]


@cocotb.test()
async def channel_flags_each_timing_constraint(dut):
    tb = _tb(dut)
    results = {}
    for name, pair, before, probe in TIMING_PROBES:
        early_error, violations = await _probe(tb, before, probe, True)
        on_time_error, none = await _probe(tb, before, probe, False)
        results[name] = {"row": list(pair), "early_error": early_error,
                         "on_time_error": on_time_error, "binding": violations,
                         "on_time_violations": none}
    report("timing_probes", results)
    bad = {k: v for k, v in results.items()
           if not (v["early_error"] == 1 and v["on_time_error"] == 0 and v["binding"]
                   and not v["on_time_violations"])}
    assert not bad, bad

"""PIM bank and channel: construction checks, the protocol checker, an Amaranth-simulator test of
one bank's MAC/bias/capture path. Cocotb tests of the channel: ``tests/cocotb/cocotb_channel.py``.
"""

import numpy as np
import pytest
from amaranth.sim import Simulator

from pimgpt.core import numerics as nx
from pimgpt.core.config import hw_from_dict, load_hw
from pimgpt.hdl.bank import Bank, bank_timing_rows
from pimgpt.hdl.channel import Channel
from pimgpt.hdl.dram_timing import DramCmd, TimingTables
from pimgpt.sim.cocotb_lib.dram_monitor import ProtocolChecker


def _small_hw(rows=4):
    raw = dict(load_hw("tiny-rtl").raw)
    raw["dram"] = dict(raw["dram"], rows=rows)
    return hw_from_dict(raw, "small")


def test_bank_rejects_bad_parameters():
    hw = load_hw("tiny-rtl")
    with pytest.raises(TypeError):
        Bank("tiny-rtl")
    with pytest.raises(ValueError):
        Bank(hw, index=4)  # tiny-rtl has 4 banks per channel
    with pytest.raises(ValueError):
        Bank(hw, 0, mac_add_latency=0)
    with pytest.raises(ValueError):
        Bank(hw, 0, array_model="sram")
    with pytest.raises(TypeError):
        Channel({"dram": {}})


def test_timing_tables_follow_the_standard():
    hw = load_hw("tiny-rtl")
    t = TimingTables(hw)
    rows = bank_timing_rows(hw)
    assert rows[("ACT", "MAC")] == hw.timing["nRCDRDMAC"]
    assert rows[("PRE", "ACT")] == hw.timing["nRP"]
    assert rows[("WR", "PRE")] == hw.timing["nCWL"] + hw.timing["nBL"] + hw.timing["nWR"]
    # ACT16 is checked at the channel node only; an ACT at a bank raises its bank counter by nRC.
    assert t.checks[DramCmd.ACT16.value] == [2]
    act = DramCmd.ACT.value
    assert max(lat for e, f, lat in t.updates[act] if f == act and e == 0) == hw.timing["nRC"]
    assert t.window == (hw.timing["nFAW"], 4, t.window[2])


def test_protocol_checker_earliest_and_violations():
    hw = load_hw("tiny-rtl")
    ch = ProtocolChecker(hw)
    assert ch.earliest("ACT", 0) == 0
    assert not ch.check(0, "ACT", 0, row=3)
    assert ch.earliest("RD", 0) == hw.timing["nRCDRD"]
    assert ch.earliest("MAC", 0) == hw.timing["nRCDRDMAC"]
    assert ch.earliest("ACT", 1) == hw.timing["nRRDS"]
    bad = ch.check(5, "RD", 0)
    assert bad and "nRCDRD" in str(bad[0]) or "36" in str(bad[0])
    assert ch.check(10, "MAC", 2)  # bank 2 is closed
    assert ch.check(20, "ACT", 0, row=4)  # bank 0 is open
    # Four activations fill the window: the fifth waits for nFAW after the first.
    ch2 = ProtocolChecker(hw)
    t = 0
    for b in range(4):
        t = ch2.earliest("ACT", b)
        assert not ch2.check(t, "ACT", b, row=1)
    first = 0
    ch2.check(200, "PRE", 0)
    assert ch2.earliest("ACT16", 0) >= first + hw.timing["nFAW"]


def _bank_sim(hw, program):
    """Run (cycle, command fields) on one bank (Amaranth simulator); returns acc captures."""
    bank = Bank(hw, 0, array_model="amaranth")
    captures = []

    async def tb(ctx):
        for wait, fields in program:
            for name, v in fields.items():
                if name == "cmd":
                    ctx.set(bank.cmd.p.cmd, v)
                elif name == "gb":
                    ctx.set(bank.gb, v)
                else:
                    ctx.set(getattr(bank.cmd.p, name), v)
            ctx.set(bank.cmd.valid, 1)
            ctx.set(bank.cmd.sel, 1)
            await ctx.tick()
            ctx.set(bank.cmd.valid, 0)
            for _ in range(wait):
                if ctx.get(bank.acc_valid):
                    captures.append(ctx.get(bank.acc))
                await ctx.tick()
        captures.append(("error", ctx.get(bank.error)))

    sim = Simulator(bank)
    sim.add_clock(1e-9)
    sim.add_testbench(tb)
    sim.run()
    return captures


def test_bank_bias_mac_capture_bit_exact():
    hw = _small_hw()
    rng = np.random.default_rng(3)
    gb = nx.f32_to_bf16(rng.normal(0, 1, 16).astype(np.float32))
    gbw = int.from_bytes(gb.tobytes(), "little")
    biases = np.array([3.14159, -2.5e-20, 7.0e25, 0.0], dtype=np.float32)
    prog = [(60, {"cmd": DramCmd.ACT, "row": 1})]
    for bias in biases:
        bits = int(nx.bits_from_f32(np.array([bias]))[0])
        prog += [(2, {"cmd": DramCmd.WRMAC16, "col": 0, "data": bits}),
                 (2, {"cmd": DramCmd.MAC, "col": 0, "gb": gbw}),
                 (12, {"cmd": DramCmd.RDMAC16, "col": 0})]
    prog += [(12, {"cmd": DramCmd.RDMAC16, "col": 0})]  # nothing since: reads +0
    got = _bank_sim(hw, prog)
    assert got[-1] == ("error", 0)
    zeros = np.zeros(16, dtype=np.uint16)  # the array is zero: MAC adds a +0 tree
    for k, bias in enumerate(biases):
        want = nx.mac_columns(bias, zeros[None, :], gb[None, :])
        assert got[k] == int(nx.bits_from_f32(np.array([want]))[0]), k
    assert got[len(biases)] == 0

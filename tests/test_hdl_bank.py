"""PIM bank and channel: construction checks, the protocol checker, an Amaranth-simulator test of
one bank's MAC/bias/capture path. Cocotb tests of the channel: ``tests/cocotb/cocotb_channel.py``.
"""

import numpy as np
import pytest
from amaranth.sim import Simulator

from pimgpt.core import numerics as nx
from pimgpt.core.config import hw_from_dict, load_hw
from pimgpt.hdl.bank import Bank, acc_burst_col, bank_timing_rows
from pimgpt.hdl.channel import Channel
from pimgpt.hdl.dram_timing import DramCmd, TimingTables
from pimgpt.sim.cocotb_lib.dram_monitor import ProtocolChecker


def _small_hw(rows=4, accumulators=1, **dram):
    raw = dict(load_hw("tiny-rtl").raw)
    raw["dram"] = dict(raw["dram"], rows=rows, accumulators=accumulators, **dram)
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
    with pytest.raises(ValueError, match="dram.accumulators 100"):
        Bank(_small_hw(accumulators=100), 0)
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


def test_protocol_checker_four_activation_window():
    """An ACT4 fills the window (weight 4): the next ACT, in the other bank group so that nRRDL
    does not apply, waits nFAW; one cycle earlier is a window violation."""
    hw = load_hw("tiny-rtl")  # 4 banks in 2 groups
    t = hw.timing
    assert t["nFAW"] > t["nRRDS"]  # else the window could not be what binds
    for probe, want_bad in ((t["nFAW"] - 1, True), (t["nFAW"], False)):
        ch = ProtocolChecker(hw)
        assert not ch.check(0, "ACT4", 0, row=1)
        assert ch.earliest("ACT", 2) == t["nFAW"]
        found = ch.check(probe, "ACT", 2, row=1)
        assert bool(found) == want_bad, found
        assert all("activation window" in str(v) for v in found)
    # The other way round: four single activations, then a fifth in a fresh bank group.
    raw = dict(load_hw("tiny-rtl").raw)
    raw["dram"] = dict(raw["dram"], banks=8, bank_groups=2)
    raw["timing"] = dict(raw["timing"], nRRDS=2, nRRDL=2)
    ch = ProtocolChecker(hw_from_dict(raw, "8 banks"))
    for k, b in enumerate((0, 1, 2, 3)):
        assert not ch.check(2 * k, "ACT", b, row=1)
    assert ch.earliest("ACT", 4) == t["nFAW"]
    assert ch.check(t["nFAW"] - 1, "ACT", 4, row=1)


def _bank_sim(hw, program, preload=()):
    """Run (cycle, command fields) on one bank (Amaranth simulator) after writing ``preload``
    ``(address, column)`` pairs into its array; returns the accumulator captures."""
    bank = Bank(hw, 0, array_model="amaranth")
    captures = []

    async def tb(ctx):
        for addr, word in preload:
            ctx.set(bank.load.en, 1)
            ctx.set(bank.load.addr, addr)
            ctx.set(bank.load.data, word)
            await ctx.tick()
        ctx.set(bank.load.en, 0)
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


def _column(values16) -> int:
    return int.from_bytes(np.asarray(values16, dtype=np.uint16).tobytes(), "little")


def test_bank_bias_mac_capture_bit_exact():
    """Bias, MAC over a column of the (preloaded, random) array, capture: bit for bit the
    numerics contract, for biases of every magnitude and columns that differ."""
    hw = _small_hw()
    rng = np.random.default_rng(3)
    cols = hw.dram.cols_per_row
    row = 1
    array = nx.f32_to_bf16(rng.normal(0, 1, (2, 16)).astype(np.float32))
    array[1, :4] = nx.f32_to_bf16(np.array([1e30, -1e30, 3e-39, -0.0], dtype=np.float32))
    preload = [(row * cols + c, _column(array[c])) for c in range(2)]
    gb = nx.f32_to_bf16(rng.normal(0, 1, 16).astype(np.float32))
    gbw = _column(gb)
    biases = np.array([3.14159, -2.5e-20, 7.0e25, 0.0], dtype=np.float32)
    prog = [(60, {"cmd": DramCmd.ACT, "row": row})]
    for k, bias in enumerate(biases):
        bits = int(nx.bits_from_f32(np.array([bias]))[0])
        prog += [(2, {"cmd": DramCmd.WRMAC16, "col": 0, "mask": 1, "data": bits}),
                 (2, {"cmd": DramCmd.MAC, "col": k % 2, "gb": gbw}),
                 (12, {"cmd": DramCmd.RDMAC16, "col": 0, "mask": 1})]
    prog += [(12, {"cmd": DramCmd.RDMAC16, "col": 0, "mask": 1})]  # nothing since: reads +0
    got = _bank_sim(hw, prog, preload)
    assert got[-1] == ("error", 0)
    wants = [nx.mac_columns(bias, array[k % 2][None, :], gb[None, :])
             for k, bias in enumerate(biases)]
    # The data matter: a zero array would give back the biases.
    assert sum(int(nx.bits_from_f32(np.array([w]))[0]) != int(nx.bits_from_f32(
        np.array([b]))[0]) for w, b in zip(wants, biases, strict=True)) >= 3
    for k, want in enumerate(wants):
        assert got[k] == int(nx.bits_from_f32(np.array([want]))[0]), k
    assert got[len(biases)] == 0


def test_bank_accumulator_file_bit_exact():
    """Four accumulators, bank 0 of four: biases into two accumulators (one WRMAC16 each),
    MAC columns into different accumulators back to back, RDMAC16 of each; a read accumulator
    returns to +0 and the others keep their values; a burst whose mask leaves the bank's word out
    neither reads nor clears it."""
    hw = _small_hw(accumulators=4)
    rng = np.random.default_rng(8)
    gb = nx.f32_to_bf16(rng.normal(0, 1, 16).astype(np.float32))
    gbw = int.from_bytes(gb.tobytes(), "little")
    zeros = np.zeros((1, 16), dtype=np.uint16)  # the array is zero: a MAC adds a +0 tree

    def mac(acc):  # one MAC column into a value, as the numerics contract
        return nx.mac_columns(np.float32(acc), zeros, gb[None, :])

    def bits(v):
        return int(nx.bits_from_f32(np.array([v], np.float32))[0])

    b1, b2 = np.float32(1.5), np.float32(-2.0**-30)

    def rd(a, mask=0x1):
        return (12, {"cmd": DramCmd.RDMAC16, "col": acc_burst_col(hw, a), "mask": mask})

    prog = [(60, {"cmd": DramCmd.ACT, "row": 1}),
            (2, {"cmd": DramCmd.WRMAC16, "col": acc_burst_col(hw, 1), "mask": 0xF,
                 "data": bits(b1)}),
            (2, {"cmd": DramCmd.WRMAC16, "col": acc_burst_col(hw, 2), "mask": 0xF,
                 "data": bits(b2) | 0xDEAD << 32}),  # word 1 is bank 1's
            (1, {"cmd": DramCmd.MAC, "acc": 0, "gb": gbw}),
            (1, {"cmd": DramCmd.MAC, "acc": 2, "gb": gbw}),
            (1, {"cmd": DramCmd.MAC, "acc": 0, "gb": gbw}),
            (12, {"cmd": DramCmd.MAC16, "acc": 3, "gb": gbw}),
            rd(0), rd(1, mask=0xE), rd(1), rd(2), rd(3),
            (2, {"cmd": DramCmd.MAC, "acc": 1, "gb": gbw}),
            rd(0), rd(1), rd(3)]
    got = _bank_sim(hw, prog)
    assert got[-1] == ("error", 0)
    want = [mac(mac(0.0)), b1, mac(b2), mac(0.0),  # acc 0, 1 (the mask 0xE read skipped), 2, 3
            0.0, mac(0.0), 0.0]                    # read before; acc 1 restarted at +0
    assert got[:-1] == [bits(v) for v in want]


def _sched_run(hw, ops, cycles):
    """Feed channel ops to a ChannelScheduler (Amaranth sim); returns the issued commands as
    (cycle, name, fpi, row) and whether it ended idle."""
    from pimgpt.hdl.pim_sched import OP_COL, ChannelScheduler

    sched = ChannelScheduler(hw)
    issued = []

    async def bench(ctx):
        ctx.set(sched.run, 1)
        ctx.set(sched.start, 1)
        await ctx.tick()
        ctx.set(sched.start, 0)
        queue = list(ops)
        for cycle in range(cycles):
            if queue:
                kind, mark, open_, cmd, row, col = queue[0]
                p = sched.op.payload
                ctx.set(p.kind, kind if kind is not None else OP_COL)
                ctx.set(p.mark, mark)
                ctx.set(p.open, open_)
                ctx.set(p.bmask, (1 << hw.dram.banks) - 1)
                ctx.set(p.c.cmd, cmd)
                ctx.set(p.c.row, row)
                ctx.set(p.c.col, col)
                ctx.set(p.c.mask, 0xF)
                ctx.set(sched.op.valid, 1)
            else:
                ctx.set(sched.op.valid, 0)
            if ctx.get(sched.bus.valid):
                issued.append((cycle, DramCmd(ctx.get(sched.bus.p.cmd)).name,
                               ctx.get(sched.bus.p.fpi), ctx.get(sched.bus.p.row)))
            if queue and ctx.get(sched.op.ready):
                queue.pop(0)
            await ctx.tick()
        issued.append(("idle", ctx.get(sched.idle)))

    sim = Simulator(sched)
    sim.add_clock(1e-9)
    sim.add_testbench(bench)
    sim.run()
    return issued


def test_scheduler_mode_switches():
    """GDDR6-AiM's register-access mode: the scheduler inserts MODREG before a register command
    (RDMAC16, WRGB) and MODARR before an array command or a refresh, exactly when needed, at
    the earliest legal cycle; the protocol checker (its own mode replay) finds no violation, and
    the commands follow nMODCH after each switch as early as they may."""
    from pimgpt.hdl.pim_sched import OP_COL

    raw = dict(load_hw("tiny-rtl").raw)
    raw["dram"] = dict(raw["dram"], mode_switch=True)
    hw = hw_from_dict(raw, "tiny-rtl-modes")
    D = DramCmd
    ops = [(OP_COL, 1, 1, D.MAC16, 3, 0), (OP_COL, 0, 0, D.MAC16, 3, 1),
           (OP_COL, 1, 0, D.RDMAC16, 0, 0), (OP_COL, 1, 0, D.WRGB, 0, 0),  # one visit
           (OP_COL, 1, 1, D.MAC16, 3, 2), (OP_COL, 1, 0, D.RDMAC16, 0, 0)]
    # The last RDMAC16 leaves the channel in register mode until the refresh (nREFI) is due.
    issued = _sched_run(hw, ops, hw.timing["nREFI"] + 400)
    assert issued[-1] == ("idle", 1)
    names = [c[1] for c in issued[:-1]]
    assert names == ["ACT16", "MAC16", "MAC16", "MODREG", "RDMAC16", "WRGB", "MODARR", "MAC16",
                     "MODREG", "RDMAC16", "MODARR", "PREA", "REFab"]
    checker = ProtocolChecker(hw)
    prev = -1
    for k, (cycle, name, fpi, row) in enumerate(issued[:-1]):
        if k != len(names) - 3:  # all but the refresh's MODARR (issued when refresh is due)
            assert cycle == max(checker.earliest(name, fpi), prev + 1), (k, name)
        assert not checker.check(cycle, name, fpi, row), (cycle, name)
        prev = cycle
    t = {n: c for c, n, *_ in reversed(issued[:-1])}  # first occurrence of each
    assert t["RDMAC16"] == t["MODREG"] + hw.timing["nMODCH"]
    assert issued[-4][0] >= hw.timing["nREFI"]  # the refresh returns to array mode first

"""cocotb tests of one PIM channel (its banks, global buffer, MAC units, command decode).

The driver issues a seeded random mix of DRAM commands, each at the earliest cycle the DRAM
standard allows (``ProtocolChecker.earliest``) plus 0-2 random idle cycles, and checks every
command with the protocol checker. A Python model of the channel (bank arrays, GB, accumulators
with ``numerics.mac_columns``) predicts every ``RD`` column and every ``RDMAC16`` burst; monitors on
the ``rd``/``acc`` ports feed scoreboards. The banks' device-side timing counters must stay quiet
(``error`` low); a second test issues illegal commands and expects ``error``.
Parameters come from the environment: ``PIMGPT_HW``, ``PIMGPT_SEED``, ``PIMGPT_OPS``,
``PIMGPT_SUMMARY``.
"""

from __future__ import annotations

import json
import os
import random

import cocotb
import numpy as np
from amaranth.hdl import Shape
from cocotb.clock import Clock
from cocotb.triggers import ClockCycles, ReadOnly, RisingEdge

from pimgpt.core import numerics as nx
from pimgpt.core.config import load_hw
from pimgpt.core.dram import CMD
from pimgpt.hdl.bank import dram_cmd_layout
from pimgpt.sim.cocotb_lib.dram_monitor import ProtocolChecker
from pimgpt.sim.cocotb_lib.scoreboard import Scoreboard

ROWS_USED = 6


def _pack(layout, **fields) -> int:
    """Pack a command payload (valid in bit 0, the fields after it) as the port expects."""
    value = 1
    for name, field in layout:
        v = int(fields.get(name, 0))
        width = Shape.cast(field.shape).width
        value |= (v & ((1 << width) - 1)) << (1 + field.offset)
    return value


def _pack_bf16(vals: np.ndarray) -> int:
    return int.from_bytes(np.asarray(vals, dtype=np.uint16).tobytes(), "little")


class _Prefixed:
    """The ports of one block of a harness top (``<prefix><port>``), plus its clock and reset."""

    def __init__(self, dut, prefix: str):
        self._dut, self._prefix = dut, prefix
        self.clk, self.rst = dut.clk, dut.rst

    def __getattr__(self, name):
        return getattr(self._dut, self._prefix + name)


def _block(dut):
    return _Prefixed(dut, os.environ.get("PIMGPT_PREFIX", "ch_"))


class ChannelTB:
    def __init__(self, dut, hw, seed: int):
        dut = _block(dut)
        self.dut, self.hw = dut, hw
        self.rng = random.Random(seed)
        self.nrng = np.random.default_rng(seed)
        self.layout = dram_cmd_layout(hw)
        self.checker = ProtocolChecker(hw)
        self.cycle = 0
        d = hw.dram
        self.B, self.cols = d.banks, d.cols_per_row
        self.array = np.zeros((self.B, ROWS_USED, self.cols, 16), dtype=np.uint16)
        self.gb = np.zeros((d.gb_elems // 16, 16), dtype=np.uint16)
        self.acc = np.zeros(self.B, dtype=np.float32)
        self.open = [None] * self.B
        self.rd_board = Scoreboard("RD columns", fmt=lambda v: f"0x{v:064x}")
        self.acc_board = Scoreboard("RDMAC16 words")
        self.commands = 0
        Clock(dut.clk, 1, unit="ns").start()

    async def reset(self):
        self.dut.cmd.value = 0
        self.dut.load.value = 0
        self.dut.rst.value = 1
        await ClockCycles(self.dut.clk, 2)
        self.dut.rst.value = 0
        await RisingEdge(self.dut.clk)

    async def preload(self):
        d = self.hw.dram
        self.array[:] = nx.f32_to_bf16(
            self.nrng.normal(0, 1, self.array.shape).astype(np.float32))
        bank_w = max(1, (d.banks - 1).bit_length())
        addr_w = max(1, (d.rows * d.cols_per_row - 1).bit_length())
        for b in range(self.B):
            for r in range(ROWS_USED):
                for c in range(self.cols):
                    word = _pack_bf16(self.array[b, r, c])
                    self.dut.load.value = 1 | b << 1 | (r * self.cols + c) << (1 + bank_w) | \
                        word << (1 + bank_w + addr_w)
                    await RisingEdge(self.dut.clk)
        self.dut.load.value = 0

    async def clock(self):
        while True:
            await RisingEdge(self.dut.clk)
            self.cycle += 1

    async def watch(self):
        dut = self.dut
        while True:
            await RisingEdge(dut.clk)
            await ReadOnly()
            v = int(dut.rd.value)
            if v & 1:
                self.rd_board.compare(v >> 1)
            a = int(dut.acc.value)
            if a & 1:
                data = a >> 1
                for j in range(min(8, self.B)):
                    self.acc_board.compare((data >> (32 * j)) & 0xFFFFFFFF)

    async def issue(self, name: str, fpi: int = 0, **fields):
        t = max(self.checker.earliest(name, fpi), self.cycle + 1) + self.rng.choice((0, 0, 1, 2))
        while self.cycle < t:
            await RisingEdge(self.dut.clk)
        found = self.checker.check(self.cycle, name, fpi, fields.get("row", 0),
                                   fields.get("col", 0))
        assert not found, found
        self.dut.cmd.value = _pack(self.layout, cmd=CMD[name], fpi=fpi, **fields)
        await RisingEdge(self.dut.clk)
        self.dut.cmd.value = 0
        self.commands += 1

    # ---- operations, each updating the model ----------------------------------------------
    async def open_row(self, banks, row):
        need = [b for b in banks if self.open[b] != row]
        if not need:
            return
        if len(need) == self.B:
            if any(r is not None for r in self.open):
                await self.issue("PREA")
            await self.issue("ACT16", row=row)
        else:
            for b in need:
                if self.open[b] is not None:
                    await self.issue("PRE", b)
                await self.issue("ACT", b, row=row)
        for b in (range(self.B) if len(need) == self.B else need):
            self.open[b] = row

    async def op_wrgb(self):
        g = self.rng.randrange(len(self.gb))
        self.gb[g] = nx.f32_to_bf16(self.nrng.normal(0, 1, 16).astype(np.float32))
        await self.issue("WRGB", gbcol=g, mask=0xFFFF, data=_pack_bf16(self.gb[g]))

    async def op_mac(self, all_banks: bool):
        row = self.rng.randrange(ROWS_USED)
        n = self.rng.randint(1, 6)
        col = self.rng.randrange(self.cols - n)
        g0 = self.rng.randrange(len(self.gb) - n)
        banks = list(range(self.B)) if all_banks else [self.rng.randrange(self.B)]
        await self.open_row(banks, row)
        for k in range(n):
            if all_banks:
                await self.issue("MAC16", col=col + k, gbcol=g0 + k)
            else:
                await self.issue("MAC", banks[0], col=col + k, gbcol=g0 + k)
        for b in banks:
            self.acc[b] = nx.mac_columns(self.acc[b], self.array[b, row, col:col + n],
                                         self.gb[g0:g0 + n])

    async def op_rdmac(self):
        self.acc_board.add_expected(nx.bits_from_f32(self.acc[:8]).tolist())
        await self.issue("RDMAC16", col=0)
        self.acc[:] = 0

    async def op_wrmac(self):
        bias = (self.nrng.normal(0, 10, self.B) * np.exp2(self.nrng.integers(-20, 20, self.B))) \
            .astype(np.float32)
        words = sum(int(w) << (32 * j) for j, w in enumerate(nx.bits_from_f32(bias)))
        await self.issue("WRMAC16", col=0, mask=0xFFFF, data=words)
        self.acc[:] = nx.flush_f32(bias)

    async def op_wr(self, all_banks: bool):
        row = self.rng.randrange(ROWS_USED)
        col = self.rng.randrange(self.cols)
        mask = self.rng.randrange(1, 1 << 16)
        vals = nx.f32_to_bf16(self.nrng.normal(0, 1, 16).astype(np.float32))
        banks = list(range(self.B)) if all_banks else [self.rng.randrange(self.B)]
        await self.open_row(banks, row)
        if all_banks:
            await self.issue("WR16", col=col, mask=mask, data=_pack_bf16(vals))
        else:
            await self.issue("WR", banks[0], col=col, mask=mask, data=_pack_bf16(vals))
        sel = np.array([(mask >> k) & 1 for k in range(16)], dtype=bool)
        for b in banks:
            self.array[b, row, col, sel] = vals[sel]

    async def op_rd(self):
        b = self.rng.randrange(self.B)
        row = self.rng.randrange(ROWS_USED)
        col = self.rng.randrange(self.cols)
        await self.open_row([b], row)
        self.rd_board.add_expected([_pack_bf16(self.array[b, row, col])])
        await self.issue("RD", b, col=col)

    async def op_copy(self, to_gb: bool):
        b = self.rng.randrange(self.B)
        row = self.rng.randrange(ROWS_USED)
        col = self.rng.randrange(self.cols)
        g = self.rng.randrange(len(self.gb))
        await self.open_row([b], row)
        if to_gb:
            await self.issue("RDCP", b, col=col, gbcol=g)
            self.gb[g] = self.array[b, row, col]
        else:
            await self.issue("WRCP", b, col=col, gbcol=g)
            self.array[b, row, col] = self.gb[g]


@cocotb.test()
async def channel_random_commands(dut):
    hw = load_hw(os.environ.get("PIMGPT_HW", "tiny-rtl"))
    seed = int(os.environ.get("PIMGPT_SEED", "1"))
    n_ops = int(os.environ.get("PIMGPT_OPS", "400"))
    tb = ChannelTB(dut, hw, seed)
    dut = tb.dut
    await tb.reset()
    await tb.preload()
    cocotb.start_soon(tb.clock())
    cocotb.start_soon(tb.watch())
    for _ in range(4):
        await tb.op_wrgb()
    ops = [(tb.op_wrgb, ()), (tb.op_mac, (True,)), (tb.op_mac, (True,)), (tb.op_mac, (False,)),
           (tb.op_rdmac, ()), (tb.op_wr, (False,)), (tb.op_wr, (True,)), (tb.op_rd, ()),
           (tb.op_rd, ()), (tb.op_copy, (True,)), (tb.op_copy, (False,)), (tb.op_wrmac, ())]
    counts = {}
    for _ in range(n_ops):
        fn, args = tb.rng.choice(ops)
        counts[fn.__name__] = counts.get(fn.__name__, 0) + 1
        await fn(*args)
    await tb.op_rdmac()
    await ClockCycles(dut.clk, 80)
    summary = {
        "commands": tb.commands, "ops": counts, "error": int(dut.error.value),
        "rd": {"matched": tb.rd_board.matched, "mismatched": tb.rd_board.mismatched,
               "pending": len(tb.rd_board.expected), "reports": tb.rd_board.reports},
        "acc": {"matched": tb.acc_board.matched, "mismatched": tb.acc_board.mismatched,
                "pending": len(tb.acc_board.expected), "reports": tb.acc_board.reports},
        "cycles": tb.cycle,
    }
    if os.environ.get("PIMGPT_SUMMARY"):
        with open(os.environ["PIMGPT_SUMMARY"], "w") as fh:
            json.dump(summary, fh)
    assert summary["error"] == 0, "a bank flagged a legal command stream"
    for board in (tb.rd_board, tb.acc_board):
        assert board.mismatched == 0 and not board.expected and board.unexpected == 0, \
            board.reports


@cocotb.test()
async def channel_flags_illegal_commands(dut):
    hw = load_hw(os.environ.get("PIMGPT_HW", "tiny-rtl"))
    layout = dram_cmd_layout(hw)
    dut = _block(dut)
    Clock(dut.clk, 1, unit="ns").start()
    results = {}
    for name, sequence in (
        ("RD too soon after ACT", [("ACT", 0, {"row": 1}), ("RD", 0, {})]),
        ("column command to a closed bank", [("MAC", 2, {})]),
        ("ACT to an open bank", [("ACT", 1, {"row": 1}), ("ACT", 1, {"row": 2})]),
    ):
        dut.cmd.value = 0
        dut.rst.value = 1
        await ClockCycles(dut.clk, 2)
        dut.rst.value = 0
        await RisingEdge(dut.clk)
        for cmd, fpi, fields in sequence:
            dut.cmd.value = _pack(layout, cmd=CMD[cmd], fpi=fpi, **fields)
            await RisingEdge(dut.clk)
            dut.cmd.value = 0
            await ClockCycles(dut.clk, 100 if cmd == "ACT" and name.startswith("ACT") else 1)
        await ClockCycles(dut.clk, 2)
        results[name] = int(dut.error.value)
    if os.environ.get("PIMGPT_SUMMARY2"):
        with open(os.environ["PIMGPT_SUMMARY2"], "w") as fh:
            json.dump(results, fh)
    assert all(results.values()), results

"""Testbench of one PIM channel (:class:`pimgpt.hdl.channel.Channel`): command driver, model,
monitors and scoreboards.

:class:`ChannelTB` issues DRAM commands on the channel's ``cmd`` port, each at the earliest
cycle the standard allows (:meth:`ProtocolChecker.earliest`) plus 0-2 random idle cycles, and
checks each with the protocol checker before it goes out. Its Python model of the channel (bank
arrays, global buffer, ``dram.accumulators`` accumulators per bank with
:func:`pimgpt.core.numerics.mac_columns`) predicts every ``RD`` column and every ``RDMAC16`` burst
(one accumulator of up to 8 banks, :func:`pimgpt.hdl.bank.acc_burst_col`); monitors on ``rd``
and ``acc`` feed the scoreboards. Every port is packed and unpacked from the channel's own
signature (:class:`~pimgpt.sim.cocotb_lib.bus.Codec`). The ``op_*`` coroutines each perform one
operation and update the model; a test chooses the mix.
"""

from __future__ import annotations

import random

import numpy as np
from cocotb.clock import Clock
from cocotb.triggers import ClockCycles, RisingEdge

from pimgpt.core import numerics as nx
from pimgpt.core.config import HwConfig
from pimgpt.core.dram import CMD, COMMANDS

from .bus import Codec, Ports
from .dram_monitor import ProtocolChecker
from .monitors import ValidMonitor
from .scoreboard import Scoreboard

__all__ = ["ChannelTB", "port_codec", "pack_bf16"]


def port_codec(component, port: str) -> Codec:
    """Codec of a plain (non-stream) port of an Amaranth component, from its signature."""
    return Codec(component.signature.members[port].shape)


def pack_bf16(values: np.ndarray) -> int:
    """The integer of a column of bf16 values (lane 0 in the low bits)."""
    return int.from_bytes(np.asarray(values, dtype=np.uint16).tobytes(), "little")


class ChannelTB:
    """Command driver, model and scoreboards of one channel.

    Parameters
    ----------
    dut : cocotb handle
        Top level holding the channel's ports (``<prefix><port>``).
    hw : HwConfig
        Hardware configuration the channel was generated for.
    seed : int
        Seed of the command mix and of the data.
    prefix : str
        Port prefix of the channel in a harness top level.
    rows_used : int
        Rows per bank the operations touch (and :meth:`preload` fills).
    """

    def __init__(self, dut, hw: HwConfig, seed: int = 0, prefix: str = "", rows_used: int = 6):
        from pimgpt.hdl.bank import ACCS_PER_BURST, acc_burst_col
        from pimgpt.hdl.channel import Channel

        self.dut = Ports(dut, prefix)
        self.hw = hw
        self.rng = random.Random(seed)
        self.nrng = np.random.default_rng(seed)
        shape = Channel(hw)  # only its signature: the port layouts
        self.cmd_codec = port_codec(shape, "cmd")
        self.load_codec = port_codec(shape, "load")
        self.rd_codec = port_codec(shape, "rd")
        self.acc_codec = port_codec(shape, "acc")
        self.accs_per_burst = ACCS_PER_BURST
        self.acc_col = acc_burst_col
        self.pending_masks: list[int] = []  # word masks of the RDMAC16 bursts not yet seen
        self.checker = ProtocolChecker(hw)
        self.cycle = 0
        d = hw.dram
        self.B, self.cols, self.rows_used = d.banks, d.cols_per_row, rows_used
        self.array = np.zeros((self.B, rows_used, self.cols, d.col_elems), dtype=np.uint16)
        self.gb = np.zeros((d.gb_elems // d.col_elems, d.col_elems), dtype=np.uint16)
        self.A = d.accumulators
        self.acc = np.zeros((self.B, self.A), dtype=np.float32)
        self.open = [None] * self.B
        self.rd_board = Scoreboard("RD columns", fmt=lambda v: f"0x{v:064x}")
        self.acc_board = Scoreboard("RDMAC16 words")
        self.commands = 0
        Clock(self.dut.clk, 1, unit="ns").start()
        self.monitors = []

    # ---- low level ------------------------------------------------------------------------
    def command(self, name: str, fpi: int = 0, **fields) -> int:
        """The ``cmd`` port value of one command (``valid`` set)."""
        return self.cmd_codec.pack(valid=1, p=dict(fields, cmd=CMD[name], fpi=fpi))

    async def reset(self) -> None:
        """Hold reset for two cycles with the command and load ports idle."""
        self.dut.cmd.value = 0
        self.dut.load.value = 0
        self.dut.rst.value = 1
        await ClockCycles(self.dut.clk, 2)
        self.dut.rst.value = 0
        await RisingEdge(self.dut.clk)

    def start(self) -> None:
        """Start the cycle counter and the ``rd``/``acc`` monitors."""
        import cocotb

        cocotb.start_soon(self._count_cycles())
        self.monitors = [
            ValidMonitor.struct(self.dut.rd, self.rd_codec, self.dut.clk, self.rd_board.compare,
                                settle=True, reset=self.dut.rst),
            ValidMonitor.struct(self.dut.acc, self.acc_codec, self.dut.clk, self._acc_burst,
                                settle=True, reset=self.dut.rst),
        ]

    def _acc_burst(self, data: int) -> None:
        mask = self.pending_masks.pop(0) if self.pending_masks else (1 << self.accs_per_burst) - 1
        for w in range(self.accs_per_burst):
            if mask >> w & 1:
                self.acc_board.compare((data >> (32 * w)) & 0xFFFFFFFF)

    async def _count_cycles(self) -> None:
        while True:
            await RisingEdge(self.dut.clk)
            self.cycle += 1

    async def preload(self) -> None:
        """Fill the used rows of every bank with random bf16 values through the load port."""
        self.array[:] = nx.f32_to_bf16(
            self.nrng.normal(0, 1, self.array.shape).astype(np.float32))
        for b in range(self.B):
            for r in range(self.rows_used):
                for c in range(self.cols):
                    self.dut.load.value = self.load_codec.pack(
                        en=1, bank=b, addr=r * self.cols + c, data=pack_bf16(self.array[b, r, c]))
                    await RisingEdge(self.dut.clk)
        self.dut.load.value = 0

    async def issue(self, name: str, fpi: int = 0, **fields) -> None:
        """Issue one command at the earliest legal cycle plus 0-2 idle cycles; first the mode
        switch it needs, if the standard has modes and the channel is in the other one (as the
        RTL scheduler does)."""
        std = self.checker.std
        need = std.mode_of[CMD[name]]
        if need and need != self.checker.mode:
            await self._issue_one(COMMANDS[std.switch_to[need]], 0)
        await self._issue_one(name, fpi, **fields)

    async def _issue_one(self, name: str, fpi: int = 0, **fields) -> None:
        t = max(self.checker.earliest(name, fpi), self.cycle + 1) + self.rng.choice((0, 0, 1, 2))
        while self.cycle < t:
            await RisingEdge(self.dut.clk)
        found = self.checker.check(self.cycle, name, fpi, fields.get("row", 0),
                                   fields.get("col", 0))
        assert not found, found
        self.dut.cmd.value = self.command(name, fpi, **fields)
        await RisingEdge(self.dut.clk)
        self.dut.cmd.value = 0
        self.commands += 1

    # ---- operations, each updating the model ----------------------------------------------
    async def open_row(self, banks, row) -> None:
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

    def _bf16_column(self) -> np.ndarray:
        return nx.f32_to_bf16(self.nrng.normal(0, 1, self.gb.shape[1]).astype(np.float32))

    async def op_wrgb(self) -> None:
        g = self.rng.randrange(len(self.gb))
        self.gb[g] = self._bf16_column()
        await self.issue("WRGB", gbcol=g, mask=(1 << self.gb.shape[1]) - 1,
                         data=pack_bf16(self.gb[g]))

    async def op_mac(self, all_banks: bool) -> None:
        row = self.rng.randrange(self.rows_used)
        n = self.rng.randint(1, 6)
        col = self.rng.randrange(self.cols - n)
        g0 = self.rng.randrange(len(self.gb) - n)
        banks = list(range(self.B)) if all_banks else [self.rng.randrange(self.B)]
        a = self.rng.randrange(self.A)
        await self.open_row(banks, row)
        for k in range(n):
            if all_banks:
                await self.issue("MAC16", col=col + k, gbcol=g0 + k, acc=a)
            else:
                await self.issue("MAC", banks[0], col=col + k, gbcol=g0 + k, acc=a)
        for b in banks:
            self.acc[b, a] = nx.mac_columns(self.acc[b, a], self.array[b, row, col:col + n],
                                            self.gb[g0:g0 + n])

    def _burst(self) -> tuple[int, int, dict]:
        """A random accumulator burst: ``col``, word ``mask`` and {word: (bank, accumulator)}:
        accumulator ``a`` of banks ``8 g + w`` (most of them)."""
        a = self.rng.randrange(self.A)
        group = self.rng.randrange(-(-self.B // self.accs_per_burst))
        words = {}
        for w in range(self.accs_per_burst):
            bank = self.accs_per_burst * group + w
            if bank < self.B and (w == 0 or self.rng.random() < 0.9):
                words[w] = (bank, a)
        mask = sum(1 << w for w in words)
        return self.acc_col(self.hw, a, group), mask, words

    async def op_rdmac(self) -> None:
        col, mask, words = self._burst()
        self.acc_board.add_expected(
            nx.bits_from_f32(np.array([self.acc[ba] for ba in words.values()], np.float32))
            .tolist())
        self.pending_masks.append(mask)
        await self.issue("RDMAC16", col=col, mask=mask)
        for ba in words.values():
            self.acc[ba] = 0

    async def op_wrmac(self) -> None:
        col, mask, words = self._burst()
        n = self.accs_per_burst
        bias = (self.nrng.normal(0, 10, n) * np.exp2(self.nrng.integers(-20, 20, n))) \
            .astype(np.float32)
        data = sum(int(w) << (32 * j) for j, w in enumerate(nx.bits_from_f32(bias)))
        await self.issue("WRMAC16", col=col, mask=mask, data=data)
        for w, ba in words.items():
            self.acc[ba] = nx.flush_f32(bias[w])

    async def op_wr(self, all_banks: bool) -> None:
        row = self.rng.randrange(self.rows_used)
        col = self.rng.randrange(self.cols)
        lanes = self.gb.shape[1]
        mask = self.rng.randrange(1, 1 << lanes)
        vals = self._bf16_column()
        banks = list(range(self.B)) if all_banks else [self.rng.randrange(self.B)]
        await self.open_row(banks, row)
        if all_banks:
            await self.issue("WR16", col=col, mask=mask, data=pack_bf16(vals))
        else:
            await self.issue("WR", banks[0], col=col, mask=mask, data=pack_bf16(vals))
        sel = np.array([(mask >> k) & 1 for k in range(lanes)], dtype=bool)
        for b in banks:
            self.array[b, row, col, sel] = vals[sel]

    async def op_rd(self) -> None:
        b = self.rng.randrange(self.B)
        row = self.rng.randrange(self.rows_used)
        col = self.rng.randrange(self.cols)
        await self.open_row([b], row)
        self.rd_board.add_expected([pack_bf16(self.array[b, row, col])])
        await self.issue("RD", b, col=col)

    async def op_copy(self, to_gb: bool) -> None:
        b = self.rng.randrange(self.B)
        row = self.rng.randrange(self.rows_used)
        col = self.rng.randrange(self.cols)
        g = self.rng.randrange(len(self.gb))
        await self.open_row([b], row)
        if to_gb:
            await self.issue("RDCP", b, col=col, gbcol=g)
            self.gb[g] = self.array[b, row, col]
        else:
            await self.issue("WRCP", b, col=col, gbcol=g)
            self.array[b, row, col] = self.gb[g]

    def summary(self) -> dict:
        """Command and cycle counts, the ``error`` flag and both scoreboards' summaries."""
        return {"commands": self.commands, "cycles": self.cycle,
                "error": int(self.dut.error.value),
                "rd": self.rd_board.summary(), "acc": self.acc_board.summary()}

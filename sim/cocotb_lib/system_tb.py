"""Testbench of the whole system (:class:`pimgpt.hdl.system.System`): host driver, monitors.

:class:`HostDriver` speaks the system's host command stream: program and DRAM-image loading
(only non-zero columns: the arrays start zeroed), scratchpad access, start, reading tokens and the
logit capture. It inserts random idle cycles between commands (``p_idle``) so the host port is
exercised with gaps. :class:`SystemTB` binds clock, reset, driver and one
:class:`~pimgpt.sim.cocotb_lib.dram_monitor.DramMonitor` per system, and waits for the end of a
program without waking Python every cycle (it awaits ``done``).
"""

from __future__ import annotations

import random
import time

import numpy as np
from cocotb.clock import Clock
from cocotb.triggers import ClockCycles, ReadOnly, RisingEdge, SimTimeoutError, with_timeout

from pimgpt.core.config import HwConfig

from .dram_monitor import DramMonitor

__all__ = ["HostDriver", "SystemTB", "HOST_OPS"]

#: Host opcodes (``pimgpt.hdl.system.HostOp``; repeated so the testbench imports no Amaranth).
HOST_OPS = {"NOP": 0, "WR_PROG": 1, "WR_DRAM": 2, "WR_SP": 3, "RD_SP": 4, "START": 5,
            "RD_OUT": 6, "RD_CAP": 7}


class HostDriver:
    """Drives ``host__valid``/``host__payload`` of the system and collects ``rdata``.

    Parameters
    ----------
    dut : cocotb handle
    hw : HwConfig
    p_idle : float
        Probability of an idle cycle before each command (0 .. 0.9).
    seed : int
        Seed of the idle-cycle generator.
    """

    def __init__(self, dut, hw: HwConfig, p_idle: float = 0.0, seed: int = 0):
        if not 0 <= p_idle <= 0.9:
            raise ValueError(f"p_idle must be in [0, 0.9], got {p_idle!r}")
        self.dut = dut
        self.hw = hw
        self.p_idle = p_idle
        self.rng = random.Random(seed)
        self.commands = 0
        self.idle_cycles = 0
        d = hw.dram
        self.word_bits = max(1, (d.rows * d.cols_per_row - 1).bit_length())
        # The payload is one flat vector: op[0:4] | addr[4:36] | data[36:292].
        self._payload = dut.host__payload
        self._valid = dut.host__valid

    def _pack(self, op: int, addr: int = 0, data: int = 0) -> int:
        return op | (addr & 0xFFFFFFFF) << 4 | (data & ((1 << 256) - 1)) << 36

    async def command(self, op: str, addr: int = 0, data: int = 0) -> None:
        """One host command (takes one cycle, plus random idle cycles before it)."""
        while self.p_idle and self.rng.random() < self.p_idle:
            self._valid.value = 0
            self.idle_cycles += 1
            await RisingEdge(self.dut.clk)
        self._payload.value = self._pack(HOST_OPS[op], addr, data)
        self._valid.value = 1
        await RisingEdge(self.dut.clk)
        self._valid.value = 0
        self.commands += 1

    async def read(self, op: str, addr: int) -> int:
        """A read command; returns ``rdata`` (valid one cycle after the command)."""
        await self.command(op, addr)
        await ReadOnly()
        if not int(self.dut.rvalid.value):
            raise AssertionError(f"host {op} {addr}: rvalid not set one cycle after the read")
        value = int(self.dut.rdata.value)
        await RisingEdge(self.dut.clk)
        return value

    async def write_program(self, words: np.ndarray) -> None:
        """Program memory from the binary instructions (``uint8 [n, 32]``)."""
        for index, row in enumerate(np.asarray(words, dtype=np.uint8)):
            await self.command("WR_PROG", index, int.from_bytes(row.tobytes(), "little"))

    async def load_dram(self, image: np.ndarray) -> int:
        """Write the non-zero columns of ``uint16 [C, B, rows, row_elems]``; returns the count."""
        d = self.hw.dram
        img = np.asarray(image, dtype=np.uint16)
        cols = img.reshape(img.shape[0], img.shape[1], img.shape[2], d.cols_per_row, 16)
        nz = np.argwhere(cols.any(axis=-1))
        for ch, bank, row, col in nz:
            addr = ((int(ch) * d.banks + int(bank)) << self.word_bits) | (
                int(row) * d.cols_per_row + int(col))
            await self.command("WR_DRAM", addr,
                               int.from_bytes(cols[ch, bank, row, col].tobytes(), "little"))
        return len(nz)

    async def write_sp(self, addr: int, words) -> None:
        for k, w in enumerate(np.asarray(words, dtype=np.uint32)):
            await self.command("WR_SP", addr + k, int(w))

    async def read_sp(self, addr: int, n: int) -> np.ndarray:
        return np.array([await self.read("RD_SP", addr + k) & 0xFFFFFFFF for k in range(n)],
                        dtype=np.uint32)

    async def read_tokens(self, n: int) -> list[int]:
        return [await self.read("RD_OUT", k) & 0xFFFFFFFF for k in range(n)]

    async def read_capture(self, n: int) -> np.ndarray:
        return np.array([await self.read("RD_CAP", k) & 0xFFFFFFFF for k in range(n)],
                        dtype=np.uint32)


class SystemTB:
    """Clock, reset, host driver and DRAM monitor of a system simulation.

    Parameters
    ----------
    dut : cocotb handle
    hw : HwConfig
    p_idle : float
        Host idle-cycle probability.
    seed : int
    period_ns : float
        Clock period (one DRAM tCK in the RTL's time base).
    """

    def __init__(self, dut, hw: HwConfig, p_idle: float = 0.0, seed: int = 0,
                 period_ns: float = 1.0):
        self.dut = dut
        self.hw = hw
        Clock(dut.clk, period_ns, unit="ns").start()
        self.host = HostDriver(dut, hw, p_idle, seed)
        self.monitor = DramMonitor(dut, hw)
        self.run_seconds = 0.0

    async def reset(self) -> None:
        self.dut.host__valid.value = 0
        self.dut.rst.value = 1
        await ClockCycles(self.dut.clk, 3)
        self.dut.rst.value = 0
        await RisingEdge(self.dut.clk)

    async def run(self, max_cycles: int) -> dict:
        """START the program, watch the command buses, wait for ``done``; returns the status."""
        self.monitor.start()
        t0 = time.perf_counter()
        await self.host.command("START")
        step = 200_000
        waited = 0
        while not int(self.dut.done.value):
            if waited >= max_cycles:
                raise AssertionError(f"program not done after {max_cycles} cycles "
                                     f"(pc {int(self.dut.pc.value)})")
            try:
                await with_timeout(RisingEdge(self.dut.done), step, "ns")
            except SimTimeoutError:
                waited += step
                self.dut._log.info(f"cycle {int(self.dut.cycles.value)}: pc "
                                   f"{int(self.dut.pc.value)}")
        await RisingEdge(self.dut.clk)
        self.run_seconds = time.perf_counter() - t0
        await ClockCycles(self.dut.clk, 2)
        self.monitor.stop()
        dut = self.dut
        return {
            "cycles": int(dut.cycles.value),
            "error": int(dut.error.value),
            "dram_error": int(dut.dram_error.value),
            "n_out": int(dut.n_out.value),
            "n_cap": int(dut.n_cap.value),
            "run_seconds": self.run_seconds,
        }

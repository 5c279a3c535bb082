"""Testbench of the whole system (:class:`pimgpt.hdl.system.System`): host driver, monitors, jobs.

:class:`HostDriver` speaks the system's host command stream, packed from the RTL's own definition
of it (:func:`pimgpt.hdl.system.host_cmd_layout`, :class:`~pimgpt.hdl.system.HostOp`,
:func:`~pimgpt.hdl.system.dram_addr`): program and DRAM-image loading (only non-zero columns: the
arrays start zeroed), scratchpad access, start, reading tokens and the logit capture. It inserts
random idle cycles between commands (``p_idle``) so the host port is exercised with gaps.
:class:`SystemTB` binds clock, reset, driver and one
:class:`~pimgpt.sim.cocotb_lib.dram_monitor.DramMonitor` per system, and waits for the end of a
program without waking Python every cycle (it awaits ``done``). :func:`run_job` is what the RTL
backend runs in the simulator (through :func:`pimgpt.sim.cocotb_lib.runner.call_in_simulator`).
"""

from __future__ import annotations

import random
import time

import numpy as np
from cocotb.clock import Clock
from cocotb.triggers import ClockCycles, ReadOnly, RisingEdge, SimTimeoutError, with_timeout

from pimgpt.core.config import HwConfig

from .bus import Codec, StreamBus
from .dram_monitor import DramMonitor

__all__ = ["HostDriver", "SystemTB", "run_job"]


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
        from pimgpt.hdl.system import HostOp, dram_addr, host_cmd_layout

        if not 0 <= p_idle <= 0.9:
            raise ValueError(f"p_idle must be in [0, 0.9], got {p_idle!r}")
        self.dut = dut
        self.hw = hw
        self.p_idle = p_idle
        self.rng = random.Random(seed)
        self.commands = 0
        self.idle_cycles = 0
        self.bus = StreamBus(dut, "host")
        self.codec = Codec(host_cmd_layout())
        self._ops = HostOp
        self._dram_addr = dram_addr

    async def command(self, op: str, addr: int = 0, data: int = 0) -> None:
        """One host command (takes one cycle, plus random idle cycles before it)."""
        valid = self.bus.valid
        while self.p_idle and self.rng.random() < self.p_idle:
            valid.value = 0
            self.idle_cycles += 1
            await RisingEdge(self.dut.clk)
        self.bus.payload.value = self.codec.pack(op=self._ops[op], addr=addr, data=data)
        valid.value = 1
        await RisingEdge(self.dut.clk)
        valid.value = 0
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
        cols = img.reshape(*img.shape[:3], d.cols_per_row, d.col_elems)
        nz = np.argwhere(cols.any(axis=-1))
        for ch, bank, row, col in nz.tolist():
            await self.command("WR_DRAM", self._dram_addr(self.hw, ch, bank, row, col),
                               int.from_bytes(cols[ch, bank, row, col].tobytes(), "little"))
        return len(nz)

    async def write_sp(self, addr: int, words) -> None:
        """Scratchpad words ``addr ..`` = ``words`` (uint32 bit patterns)."""
        for k, w in enumerate(np.asarray(words, dtype=np.uint32)):
            await self.command("WR_SP", addr + k, int(w))

    async def read_sp(self, addr: int, n: int) -> np.ndarray:
        """Scratchpad words ``addr .. addr+n-1``."""
        return np.array([await self.read("RD_SP", addr + k) & 0xFFFFFFFF for k in range(n)],
                        dtype=np.uint32)

    async def read_tokens(self, n: int) -> list[int]:
        """The first ``n`` output tokens."""
        return [await self.read("RD_OUT", k) & 0xFFFFFFFF for k in range(n)]

    async def read_capture(self, n: int) -> np.ndarray:
        """The first ``n`` captured logit words."""
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
        """Hold reset for three cycles with the host port idle."""
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
            "pc": int(dut.pc.value),
            "run_seconds": self.run_seconds,
        }


async def run_job(dut, job: str, hw: dict, trace: str, p_idle: float = 0.0, seed: int = 0) -> dict:
    """Load, run and read back one job on the system; the result the RTL backend compares.

    Parameters
    ----------
    dut : cocotb handle
        The system top level.
    job : str
        ``.npz`` written by :func:`pimgpt.sim.cocotb_lib.system_run.write_job`: the binary
        program, the DRAM image, scratchpad words to preset and ranges to read back, the cycle
        limit.
    hw : dict
        The hardware configuration as data (:attr:`HwConfig.raw`; validated again here).
    trace : str
        ``.npz`` receiving every channel's command trace (``ch<c>``: cycle, command code, fpi)
        and the dispatch trace (``dispatch``: pc, cycle).
    p_idle, seed : float, int
        Host idle-cycle probability and its seed.

    Returns
    -------
    dict
        The status (cycles, error flags, counts), tokens, capture, scratchpad words, protocol
        violations (the monitor fails the run at the first one), command counts and timings.
    """
    from pimgpt.core.config import hw_from_dict
    from pimgpt.core.dram import CMD

    hwc = hw_from_dict(hw)
    with np.load(job, allow_pickle=False) as z:
        job = {k: z[k] for k in z.files}
    tb = SystemTB(dut, hwc, p_idle=p_idle, seed=seed)
    await tb.reset()
    t0 = time.perf_counter()
    await tb.host.write_program(job["program"])
    columns = await tb.host.load_dram(job["image"])
    if job["sp_init"].size:
        await tb.host.write_sp(0, job["sp_init"])
    load_s = time.perf_counter() - t0
    status = await tb.run(int(job["max_cycles"]))
    tokens = await tb.host.read_tokens(status["n_out"])
    capture = await tb.host.read_capture(status["n_cap"])
    sp_words = [(await tb.host.read_sp(int(addr), int(n))).tolist() for addr, n in job["sp_read"]]
    np.savez(trace, **{f"ch{c}": np.array([(t, CMD[name], fpi) for t, name, fpi, _, _ in cmds],
                                          dtype=np.int64).reshape(-1, 3)
                       for c, cmds in enumerate(tb.monitor.commands)},
             dispatch=np.array(sorted(tb.monitor.dispatch, key=lambda d: (d[1], d[0])),
                               dtype=np.int64).reshape(-1, 2))
    return dict(
        status, tokens=tokens, capture=capture.tolist(), sp_words=sp_words,
        dram_columns_loaded=columns, host_commands=tb.host.commands,
        host_idle_cycles=tb.host.idle_cycles, load_seconds=load_s,
        violations=[str(v) for v in tb.monitor.violations],
        dram_commands=[len(c) for c in tb.monitor.commands], trace=trace)

"""Testbench classes: clock, reset, driver, monitor, reference model and scoreboard bound together.

:class:`StreamTB` is the reusable base for any block with one valid-stream input ``i`` and one
valid-stream output ``o`` (the Amaranth export convention); :class:`FpUnitTB` and :class:`MacTB`
add the payload packing and golden model of the arithmetic blocks.
"""

from __future__ import annotations

import time

import numpy as np
from cocotb.clock import Clock
from cocotb.triggers import ClockCycles, RisingEdge

from . import stimulus
from .bus import StreamBus
from .drivers import ValidStreamDriver
from .monitors import ValidMonitor
from .scoreboard import Scoreboard

__all__ = ["StreamTB", "FpUnitTB", "MacTB"]


class StreamTB:
    """Testbench for a block with stream ports ``<in_prefix>`` and ``<out_prefix>``.

    Parameters
    ----------
    dut : cocotb handle
        Top level with ``clk`` and ``rst`` (Amaranth's default domain) and the stream ports.
    latency : int
        Cycles from an input to its output (how long :meth:`drain` waits).
    in_prefix, out_prefix : str
        Stream port prefixes.
    name : str
        Scoreboard name.
    period_ns : float
        Clock period.
    """

    def __init__(self, dut, latency: int, in_prefix: str = "i", out_prefix: str = "o",
                 name: str = "dut", period_ns: float = 2.0):
        if isinstance(latency, bool) or not isinstance(latency, int) or latency < 0:
            raise ValueError(f"latency must be a non-negative int, not {latency!r}")
        self.dut = dut
        self.latency = latency
        self.clk = dut.clk
        Clock(dut.clk, period_ns, unit="ns").start()
        self.scoreboard = Scoreboard(name, context=self.describe)
        self.driver = ValidStreamDriver(StreamBus(dut, in_prefix), dut.clk, reset=dut.rst)
        self.monitor = ValidMonitor.stream(StreamBus(dut, out_prefix), dut.clk,
                                           self.scoreboard.compare, reset=dut.rst)
        self.t_start = time.perf_counter()

    def describe(self, index: int) -> str:
        """Stimulus behind expected item ``index`` (for mismatch reports); subclasses override."""
        return ""

    async def reset(self, cycles: int = 2) -> int:
        """Hold ``rst`` high for ``cycles`` rising edges.

        The driver drops its queue and the monitor pauses while reset is active (they follow
        ``rst``); the results the block will never produce are dropped from the scoreboard.

        Returns
        -------
        int
            How many expected results were dropped.
        """
        self.dut.rst.value = 1
        await ClockCycles(self.clk, cycles)
        dropped = self.scoreboard.clear()
        self.dut.rst.value = 0
        await RisingEdge(self.clk)
        return dropped

    async def drain(self, margin: int = 4) -> int:
        """Wait until every queued input was sent and its result had time to come out
        (``latency + margin`` cycles after the last); returns the cycles waited after it."""
        await self.driver.wait()
        await ClockCycles(self.clk, self.latency + margin)
        return self.latency + margin

    def check(self) -> dict:
        """Assert the scoreboard is clean; return its summary plus cycle and wall-time figures."""
        self.scoreboard.check()
        summary = self.scoreboard.summary()
        summary.update(inputs=self.driver.sent, cycles=self.driver.cycles,
                       wall_s=round(time.perf_counter() - self.t_start, 3))
        return summary


class FpUnitTB(StreamTB):
    """Testbench of one two-operand arithmetic unit (``bf16mul``, ``fp32add`` or ``fp32mul``)."""

    WIDTH = {"bf16mul": 16, "fp32add": 32, "fp32mul": 32}

    def __init__(self, dut, op: str, latency: int, **kwargs):
        if op not in self.WIDTH:
            raise ValueError(f"unknown op {op!r}; use one of {sorted(self.WIDTH)}")
        super().__init__(dut, latency, name=op, **kwargs)
        self.op = op
        self._a: list[np.ndarray] = []
        self._b: list[np.ndarray] = []
        self._count = 0

    def submit(self, a: np.ndarray, b: np.ndarray) -> int:
        """Queue operand pairs and their golden results; returns how many were queued."""
        self.driver.send_many(stimulus.pack_pairs(a, b, self.WIDTH[self.op]))
        self.scoreboard.add_expected(stimulus.golden(self.op, a, b).tolist())
        self._a.append(np.asarray(a))
        self._b.append(np.asarray(b))
        self._count += len(a)
        return len(a)

    def describe(self, index: int) -> str:
        a = np.concatenate(self._a)[index]
        b = np.concatenate(self._b)[index]
        digits = self.WIDTH[self.op] // 4
        return f"{self.op}(0x{int(a):0{digits}x}, 0x{int(b):0{digits}x})"


class MacTB(StreamTB):
    """Testbench of the MAC unit: columns in, one fp32 result per dot product out.

    ``latency`` defaults to that of :class:`pimgpt.hdl.mac.MAC` with its default parameters.
    """

    def __init__(self, dut, lanes: int = 16, latency: int | None = None, **kwargs):
        if latency is None:
            from pimgpt.hdl.mac import MAC

            latency = MAC(lanes=lanes).latency
        super().__init__(dut, latency, name="mac", **kwargs)
        self.lanes = lanes
        self.columns = 0
        self.dots = 0
        self._names: list[str] = []

    def submit(self, a16: np.ndarray, b16: np.ndarray, lengths: np.ndarray,
               names: list[str] | None = None) -> np.ndarray:
        """Queue dot products (``lengths`` columns each) and their golden results.

        Returns
        -------
        numpy.ndarray
            The expected uint32 results, in order.
        """
        a16 = np.asarray(a16, np.uint16)
        if a16.shape[1] != self.lanes:
            raise ValueError(f"columns must have {self.lanes} lanes, got {a16.shape[1]}")
        expected = stimulus.mac_reference(a16, b16, lengths)
        self.driver.send_many(stimulus.pack_mac_columns(a16, b16, lengths))
        self.scoreboard.add_expected(expected.tolist())
        self.columns += len(a16)
        self.dots += len(lengths)
        self._names.extend(names or [f"random dot of {int(n)} columns" for n in lengths])
        return expected

    def describe(self, index: int) -> str:
        return self._names[index] if index < len(self._names) else ""

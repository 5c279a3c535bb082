"""Testbench of the vector unit with its scratchpad (:class:`pimgpt.hdl.vector_unit.VectorUnitTop`).

:class:`VectorUnitTB` loads and dumps the scratchpad through the host ports (with random idle
cycles on the way in), sends instructions on the ``cmd`` stream honouring ``ready`` (the unit
takes one instruction at a time) and measures each one's cycles, and monitors the ``ARGMAX``
register writes (``sreg``), the logit tap (``tap``: blocks of words with their element index,
rebuilt as the ASIC's capture memory does: the logits of every ``ARGMAX`` and ``ARGMAXC`` chain
one after the other) and, on request, the issue trace (``trace``: the
cycle, counted from the instruction's dispatch, of every micro-operation). What to expect -- the
golden model's scratchpad, registers and logits, the ISS's cycles and trace -- is the test's
business.
"""

from __future__ import annotations

import math
import random

import numpy as np
from cocotb.clock import Clock
from cocotb.triggers import ClockCycles, FallingEdge, ReadOnly, RisingEdge
from cocotb.utils import get_sim_time

from .bus import Codec, Ports
from .monitors import ValidMonitor

__all__ = ["VectorUnitTB"]


class VectorUnitTB:
    """Host-port driver, instruction driver and monitors of ``VectorUnitTop``.

    Parameters
    ----------
    dut : cocotb handle
        The top level; the unit's ports are ``<prefix><port>`` in it.
    lanes : int
        The unit's lanes (the width of the tap).
    seed : int
        Seeds the idle-cycle choices.
    prefix : str
        Port name prefix (empty when the unit is the top level itself).
    """

    def __init__(self, dut, lanes: int, seed: int = 0, prefix: str = ""):
        from pimgpt.hdl.vector_unit import tap_layout
        from pimgpt.hdl.vu_seq import TRACE

        self.dut = Ports(dut, prefix)
        self.lanes = lanes
        self.rng = random.Random(seed)
        Clock(self.dut.clk, 1, unit="ns").start()
        #: ``(register, value)`` of every ``sreg`` write, in order.
        self.sregs: list = []
        #: The words ``ARGMAX``/``ARGMAXC`` loaded, at the end of the earlier pieces plus their
        #: element index (``hdl/controller.py``'s capture; None where no word arrived).
        self.logits: list = []
        self._cap: dict = {}
        #: ``(absolute cycle, pc)`` of every micro-operation (with ``trace=True``).
        self.issues: list = []
        self._tap = Codec(tap_layout(lanes))
        self._trace = Codec(TRACE)
        self.monitors = []

    async def reset(self) -> None:
        """Hold reset for two cycles with every input idle."""
        d = self.dut
        d.cmd__valid.value = 0
        d.host_wr__en.value = 0
        d.host_rd__en.value = 0
        d.rst.value = 1
        await ClockCycles(d.clk, 2)
        d.rst.value = 0
        await RisingEdge(d.clk)

    def _on_tap(self, t: dict) -> None:
        base = len(self.logits)
        index = t["index"] - (1 << 32) if t["index"] >> 31 else t["index"]  # two's complement
        for k in range(self.lanes):
            at = base + index + k
            if t["mask"] >> k & 1:
                if 0 <= at < base:  # an earlier piece's word (ARGMAXC's src[R[reg]]): rewritten
                    self.logits[at] = t["data"][k]
                else:
                    self._cap[at] = t["data"][k]
        if t["end"]:
            self.logits += [self._cap.get(i) for i in range(base, base + t["count"])]

    def start(self, trace: bool = False) -> None:
        """Start the ``tap`` and ``sreg`` monitors (and the issue trace)."""
        d = self.dut
        tap = self._tap

        def sample_tap():
            raw = d.tap.value
            if not raw.is_resolvable:
                return None
            v = raw.to_unsigned()
            return tap.unpack(v) if tap.get(v, "valid") or tap.get(v, "end") else None

        def sreg():
            return (int(d.sreg__idx.value), int(d.sreg__data.value)) \
                if int(d.sreg__en.value) else None

        self.monitors = [
            ValidMonitor(sample_tap, d.clk, self._on_tap, settle=True, reset=d.rst),
            ValidMonitor(sreg, d.clk, self.sregs.append, settle=True, reset=d.rst),
        ]
        if trace:
            def sample_trace():
                v = d.trace.value.to_unsigned()
                n = self._trace.get(v, "n")
                if not n:
                    return None
                pc = self._trace.get(v, "pc")
                return [(math.floor(get_sim_time("ns")), pc + k) for k in range(n)]

            self.monitors.append(ValidMonitor(sample_trace, d.clk, self.issues.extend,
                                              settle=True, reset=d.rst))

    async def load(self, sp: np.ndarray, p_idle: float = 0.2) -> None:
        """Write the non-zero words of ``sp`` (the scratchpad starts zeroed)."""
        d = self.dut
        for addr in np.nonzero(sp)[0]:
            if self.rng.random() < p_idle:  # idle cycles on the host port
                d.host_wr__en.value = 0
                await RisingEdge(d.clk)
            d.host_wr__addr.value = int(addr)
            d.host_wr__data.value = int(sp[addr])
            d.host_wr__en.value = 1
            await RisingEdge(d.clk)
        d.host_wr__en.value = 0

    async def dump(self, n: int) -> np.ndarray:
        """Scratchpad words ``0 .. n-1``."""
        d = self.dut
        out = np.zeros(n, dtype=np.uint32)
        await FallingEdge(d.clk)
        d.host_rd__en.value = 1
        for addr in range(n):
            d.host_rd__addr.value = addr
            await RisingEdge(d.clk)  # the address is taken at this edge...
            await ReadOnly()
            out[addr] = int(d.host_rd__data.value)  # ...and its word is out after it
            await FallingEdge(d.clk)
        d.host_rd__en.value = 0
        return out

    async def send(self, word: int) -> tuple[int, int]:
        """Send one instruction word (random idle gap first, then wait for ``ready``).

        Returns
        -------
        (int, int)
            The cycles from acceptance until the unit is idle again, and the absolute cycle
            just before the accepting edge (subtract it from a trace cycle to count from the
            dispatch, as the ISS does).
        """
        d = self.dut
        await FallingEdge(d.clk)  # leave the previous ReadOnly phase before driving
        for _ in range(self.rng.choice((0, 0, 1, 3))):
            await FallingEdge(d.clk)
        d.cmd__payload.value = word
        d.cmd__valid.value = 1
        while True:
            await ReadOnly()
            if int(d.cmd__ready.value):
                break
            await FallingEdge(d.clk)
        t0 = math.floor(get_sim_time("ns"))  # half a period before the accepting edge
        await FallingEdge(d.clk)
        d.cmd__valid.value = 0
        await ReadOnly()
        while int(d.busy.value):
            await RisingEdge(d.clk)
            await ReadOnly()
        return int(get_sim_time("ns")) - t0, t0

"""Testbench of the vector unit with its scratchpad (:class:`pimgpt.hdl.vector_unit.VectorUnitTop`).

:class:`VectorUnitTB` loads and dumps the scratchpad through the host ports (with random idle
cycles on the way in), sends instructions on the ``cmd`` stream honouring ``ready`` (the unit
takes one instruction at a time) and measures each one's cycles, and monitors the ``ARGMAX``
register writes (``sreg``) and the logit tap (``tap``). What to expect -- the golden model's
scratchpad, registers and logits, the microcode ISS's cycles -- is the test's business.
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

    ``dut`` is the top level; the unit's ports are ``<prefix><port>`` in it (``prefix`` empty
    when the unit is the top level itself). ``seed`` seeds the idle-cycle choices.
    """

    def __init__(self, dut, seed: int = 0, prefix: str = ""):
        from amaranth.lib import data

        self.dut = Ports(dut, prefix)
        self.rng = random.Random(seed)
        Clock(self.dut.clk, 1, unit="ns").start()
        #: ``(register, value)`` of every ``sreg`` write, in order.
        self.sregs: list = []
        #: Every word on the logit tap, in order.
        self.taps: list = []
        self._tap_codec = Codec(data.StructLayout({"valid": 1, "data": 32}))
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

    def start(self) -> None:
        """Start the ``tap`` and ``sreg`` monitors."""
        d = self.dut

        def sreg():
            return (int(d.sreg__idx.value), int(d.sreg__data.value)) \
                if int(d.sreg__en.value) else None

        self.monitors = [
            ValidMonitor.struct(d.tap, self._tap_codec, d.clk, self.taps.append, settle=True,
                                reset=d.rst),
            ValidMonitor(sreg, d.clk, self.sregs.append, settle=True, reset=d.rst),
        ]

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

    async def send(self, word: int) -> int:
        """Send one instruction word (random idle gap first, then wait for ``ready``); returns
        the cycles from acceptance until the unit is idle again."""
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
        return int(get_sim_time("ns")) - t0  # at the edge after which the unit is idle

"""Run pimgpt RTL blocks in the Amaranth simulator as plain functions (Glasgow's ``rtl_*`` style).

Used by the Amaranth-level tests and by the simulation-speed bench; the cocotb library
(:mod:`pimgpt.sim.cocotb_lib`) does the same on generated Verilog.
"""

from __future__ import annotations

import random
import time

import numpy as np
from amaranth.hdl import ClockDomain, Module
from amaranth.sim import Simulator

__all__ = ["run_valid_stream", "rtl_binary_op", "rtl_mac"]


def run_valid_stream(dut, payloads, *, idle: float = 0.0, seed: int = 0,
                     drain: int | None = None) -> dict:
    """Drive ``dut.i`` with ``payloads`` (packed ints) and collect ``dut.o``.

    Parameters
    ----------
    dut : wiring.Component
        A block with valid-stream ports ``i`` and ``o`` and a ``latency`` attribute.
    payloads : sequence of int
        Input payloads, one per valid cycle.
    idle : float
        Probability of an idle cycle before each input.
    seed : int
        Seed of the idle pattern.
    drain : int, optional
        Cycles to run after the last input (default: latency + 4).

    Returns
    -------
    dict
        ``outputs`` (list of int payloads in order), ``latencies`` (cycles from each input to the
        output with the same index; meaningful when every input yields one output), ``in_ticks``
        and ``out_ticks`` (the cycle of each input and output), ``cycles``, ``seconds`` (wall
        time of the simulation).
    """
    latency = getattr(dut, "latency", 0)
    drain = latency + 4 if drain is None else drain
    in_ticks: list[int] = []
    out: list[tuple[int, int]] = []
    state = {"ticks": 0}

    async def driver(ctx):
        rng = random.Random(seed)
        tick = 0
        for p in payloads:
            while idle and rng.random() < idle:
                ctx.set(dut.i.valid, 0)
                await ctx.tick()
                tick += 1
            ctx.set(dut.i.payload.as_value(), p)
            ctx.set(dut.i.valid, 1)
            in_ticks.append(tick)
            await ctx.tick()
            tick += 1
        ctx.set(dut.i.valid, 0)
        await ctx.tick().repeat(drain)
        state["ticks"] = tick + drain

    async def monitor(ctx):
        tick = 0
        async for _clk, _rst, valid, payload in ctx.tick().sample(dut.o.valid,
                                                                   dut.o.payload.as_value()):
            if valid:
                out.append((tick, payload))
            tick += 1

    top = Module()
    top.submodules.dut = dut
    top.domains.sync = ClockDomain()  # explicit, so that latency-0 blocks can be clocked too
    sim = Simulator(top)
    sim.add_clock(1e-9)
    sim.add_testbench(driver)
    sim.add_process(monitor)
    t0 = time.perf_counter()
    sim.run()  # ends with the driver; the monitor is a background process
    seconds = time.perf_counter() - t0
    lat = [o[0] - i for o, i in zip(out, in_ticks, strict=False)]
    return {"outputs": [o[1] for o in out], "latencies": lat, "cycles": state["ticks"],
            "in_ticks": in_ticks, "out_ticks": [o[0] for o in out], "seconds": seconds}


def rtl_binary_op(op: str, a, b, *, latency: int | None = None, idle: float = 0.0,
                  seed: int = 0) -> np.ndarray:
    """Results of ``op`` ("bf16mul", "fp32add", "fp32mul") computed by the RTL in simulation.

    Returns
    -------
    numpy.ndarray
        uint32 result bit patterns, one per operand pair.
    """
    from .bf16mul import BF16Mul
    from .fp32add import FP32Add
    from .fp32mul import FP32Mul

    cls, width = {"bf16mul": (BF16Mul, 16), "fp32add": (FP32Add, 32),
                  "fp32mul": (FP32Mul, 32)}[op]
    dut = cls() if latency is None else cls(latency=latency)
    a = np.asarray(a, np.uint64)
    b = np.asarray(b, np.uint64)
    payloads = ((b << np.uint64(width)) | a).tolist()
    res = run_valid_stream(dut, payloads, idle=idle, seed=seed)
    return np.array(res["outputs"], dtype=np.uint32)


def rtl_mac(payloads, *, lanes: int = 16, add_latency: int = 2, idle: float = 0.0,
            seed: int = 0) -> dict:
    """Run packed MAC columns (``stimulus.pack_mac_columns``) through the MAC unit in simulation.

    Returns
    -------
    dict
        As :func:`run_valid_stream`; ``outputs`` holds one fp32 result per dot product.
    """
    from .mac import MAC

    return run_valid_stream(MAC(lanes=lanes, add_latency=add_latency), payloads, idle=idle,
                            seed=seed)

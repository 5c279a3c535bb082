"""The one cocotb test of the library: call an ``async`` function on the DUT and report its result.

Applications that *use* a simulation (the RTL backend of ``pimgpt run``, the MAC demo, the
simulation-speed bench) are not verification suites, so they have no ``@cocotb.test`` module of
their own: :func:`pimgpt.sim.cocotb_lib.runner.call_in_simulator` runs this module with the
parameters ``{"call": "package.module:function", "kwargs": {...}}``; the function is awaited as
``function(dut, **kwargs)`` and its return value (JSON-serialisable) becomes the report's
``result``. The verification suites live under ``tests/`` as ordinary cocotb test modules.
"""

from __future__ import annotations

import importlib

import cocotb

from .exchange import params, report


@cocotb.test()
async def call(dut):
    """Await the function named by the ``call`` parameter; report what it returns."""
    p = params()
    module, _, name = p["call"].partition(":")
    function = getattr(importlib.import_module(module), name)
    report("result", await function(dut, **p.get("kwargs", {})))

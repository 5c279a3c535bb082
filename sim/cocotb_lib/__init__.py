"""Reusable cocotb testbench library for the pimgpt RTL (after cocotbext-axi and cocotb's examples).

Only reusable parts live here; the ``@cocotb.test`` modules that verify a block live under
``tests/cocotb/`` and use them.

* :mod:`.runner` -- build a Verilog design with Verilator or Icarus into its own build directory
  and run cocotb test modules on it (``cocotb_tools.runner``); tool discovery; failures as
  :class:`~.runner.CocotbError`; :func:`~.runner.call_in_simulator` for applications that *use*
  a simulation (through the one generic test of :mod:`.entry`).
* :mod:`.exchange` -- parameters into the test process and reports back out (JSON).
* :mod:`.harness` -- several blocks under one top level (one build tests them all).
* :mod:`.bus` -- bus objects: :class:`~.bus.Ports` (one block's ports in a harness),
  :class:`~.bus.StreamBus` (``payload``/``valid``/``ready``), :class:`~.bus.Codec` (pack/unpack
  a port's integer from the Amaranth layout that defines it: one definition of every payload).
* :mod:`.component`, :mod:`.drivers`, :mod:`.monitors` -- drivers and monitors with
  ``start``/``stop`` that follow reset: :class:`~.drivers.ValidStreamDriver` with idle-pattern
  generators, :class:`~.monitors.ValidMonitor` for streams and valid-qualified struct ports.
* :mod:`.scoreboard` -- in-order, bit-exact comparison of observed against expected items.
* :mod:`.stimulus` -- random and directed bf16/fp32 operands and their golden results
  (:mod:`pimgpt.core.numerics`).
* :mod:`.dram_monitor` -- the DRAM-protocol checker (pure Python) and its monitor.
* One testbench class per block, binding clock, reset, drivers, monitors, model and scoreboards:
  :mod:`.tb` (the floating-point units and the MAC unit), :mod:`.vector_tb` (the vector unit),
  :mod:`.channel_tb` (a PIM channel), :mod:`.system_tb` (the whole system, and the job the RTL
  backend runs); :mod:`.system_run` runs programs on the system RTL from Python.
* :mod:`.vector_check` -- one vector-unit program on the RTL against the golden model and the ISS
  (results, cycles, issue trace), shared by the cocotb suite and the wide-unit bench.

:mod:`.runner`, :mod:`.exchange`, :mod:`.bus`, :mod:`.harness`, :mod:`.stimulus`,
:mod:`.scoreboard` and :mod:`.system_run` may be imported outside a running simulation; the other
modules import ``cocotb`` and are meant for code running in one.
"""

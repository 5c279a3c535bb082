"""Reusable cocotb testbench library for the pimgpt RTL (after cocotbext-axi and cocotb's examples).

Layers, each reusable by later blocks (bank, channel, ASIC):

* :mod:`.runner` -- build a Verilog design with Verilator or Icarus into its own build directory
  and run cocotb test modules on it through ``cocotb_tools.runner``; tool discovery and skips.
* :mod:`.drivers` / :mod:`.monitors` -- a valid-stream driver with idle (pause) generators and a
  valid-stream monitor, for the ``<port>__payload`` / ``<port>__valid`` ports of Amaranth exports.
* :mod:`.scoreboard` -- in-order, bit-exact comparison of observed against expected items.
* :mod:`.stimulus` -- random and directed bf16/fp32 operands and their golden results
  (:mod:`pimgpt.core.numerics`).
* :mod:`.tb` -- testbench classes binding clock, reset, driver, monitor, reference model and
  scoreboard for the floating-point units and the MAC unit.

Only :mod:`.runner` and :mod:`.stimulus` may be imported outside a running simulation; the other
modules import ``cocotb`` and are meant for cocotb test modules.
"""

"""Cycle-accurate (DRAM-command granularity), event-driven performance and energy simulator.

The DRAM command set and timing constraints are :mod:`pimgpt.core.dram` (shared with the RTL).

* :mod:`.engine` -- executes a pimgpt program: expands each PIM instruction into DRAM commands,
  schedules them at their earliest legal cycle, models the ASIC vector unit, and reports timing.
* :mod:`.energy` -- per-command and per-ASIC-op energy plus static power, from the YAML config.
* :mod:`.checker` -- replays a command log and re-checks every constraint, independently of the
  engine's scheduling code.
* :mod:`.report` -- latency attribution and breakdowns; :mod:`.summary` -- the statistics every
  consumer reports (``pimgpt run --backend perf``, ``pimgpt paper``, the sweep).
* :mod:`.timeline` -- Chrome/Perfetto trace JSON.
"""

from pimgpt.sim.perf.engine import PerfEngine, PerfResult, simulate

__all__ = ["PerfEngine", "PerfResult", "simulate"]

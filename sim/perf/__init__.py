"""Cycle-accurate (DRAM-command granularity), event-driven performance and energy simulator.

* :mod:`.standard` -- the DRAM command set and timing constraints, written as data (rows of
  scope / preceding commands / following commands / latency), as in Ramulator 2.
* :mod:`.engine` -- executes a pimgpt program: expands each PIM instruction into DRAM commands,
  schedules them at their earliest legal cycle, models the ASIC vector unit, and reports timing.
* :mod:`.energy` -- per-command and per-ASIC-op energy plus static power, from the YAML config.
* :mod:`.checker` -- replays a command log and re-checks every constraint, independently of the
  engine's scheduling code.
* :mod:`.timeline` -- Chrome/Perfetto trace JSON.
* :mod:`.cli` / :mod:`.paper` -- ``pimgpt run --backend perf`` and ``pimgpt paper``.
"""

from pimgpt.sim.perf.engine import PerfEngine, PerfResult, simulate

__all__ = ["PerfEngine", "PerfResult", "simulate"]

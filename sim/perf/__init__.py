"""Cycle-accurate (DRAM-command granularity), event-driven performance and energy simulator.

The DRAM standard (commands, modes, timing rows as data, as in Ramulator 2) is
:mod:`pimgpt.core.dram`; this package executes programs on it:

* :mod:`.engine` -- dispatch of a pimgpt program on its two sides (PIM, vector unit), barriers,
  scratchpad hazards, the :class:`PerfResult`;
* :mod:`.expand` -- each PIM instruction as DRAM commands;
* :mod:`.device` -- channel state: the standard compiled to ready-time tables, command issue,
  row, mode and refresh policy, channels in lockstep;
* :mod:`.asic` -- the vector unit (the shared cost model of :mod:`pimgpt.core.vu.cost`);
* :mod:`.energy` -- per-command and per-ASIC-op energy plus static power, from the YAML config;
* :mod:`.checker` -- replays a command log and re-checks every constraint, independently of the
  engine's scheduling code;
* :mod:`.report` -- time attribution, side busy times, DRAM figures per token;
* :mod:`.summary` -- the statistics every consumer reports (``pimgpt run --backend perf``,
  ``pimgpt paper``, the sweep, the benches);
* :mod:`.timeline` -- Chrome/Perfetto trace JSON.

The perf backend of ``pimgpt run`` is :class:`pimgpt.sim.backend.PerfBackend`; ``pimgpt paper``
is in :mod:`pimgpt.apps`.
"""

from pimgpt.sim.perf.engine import PerfEngine, PerfResult, simulate

__all__ = ["PerfEngine", "PerfResult", "simulate"]

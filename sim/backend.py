"""Backends: one interface to run a compiled program, whatever executes it.

A backend runs ``run(program, weights, hw) -> RunResult``: ``program`` is a
:class:`~pimgpt.sw.compiler.CompiledProgram` (instructions, memory map, tags, steps), ``weights``
the model's float32 weights by pimgpt name (``None`` for a backend that computes no data), ``hw``
the :class:`~pimgpt.core.config.HwConfig` it was compiled for. Options of one backend (the perf
timeline, the RTL simulator and waveforms) are arguments of its constructor, so every backend is
called the same way. The backends:

* :class:`GoldenBackend` (here) -- the functional, bit-exact golden simulator: tokens and logits;
* :class:`PerfBackend` (here) -- the cycle-accurate performance and energy simulator: statistics;
* ``RtlBackend`` (:mod:`pimgpt.sim.cocotb_lib.rtl_backend`, the verification layer) -- the
  Verilog system under Verilator or Icarus, checked against the golden model.

They are registered by name for ``pimgpt run`` in :mod:`pimgpt.apps.run_cli`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol, runtime_checkable

import numpy as np

from pimgpt.core.config import HwConfig

__all__ = ["RunResult", "Backend", "GoldenBackend", "PerfBackend", "logits_array"]


@dataclass
class RunResult:
    """What one run of a program produced.

    Attributes
    ----------
    tokens : list of int, or None
        Generated tokens (``None``: the backend computes no data, e.g. perf).
    logits : numpy.ndarray, or None
        float32 ``[tokens, vocab]``: the logits of each generated token.
    stats : dict
        JSON-serialisable statistics of the run (the ``--stats`` file).
    lines : list of str
        The backend's own summary, printed after the tokens.
    files : dict of str to callable
        Optional outputs the backend can write, by name (``"timeline"``, ``"waves"``):
        ``write(path)`` writes one to ``path``.
    error : str, optional
        Set when the run finished but failed its own check (the RTL differing from the golden
        model): the caller writes the outputs as evidence, then reports this as the error.
    """

    tokens: list | None
    logits: np.ndarray | None
    stats: dict
    lines: list = field(default_factory=list)
    files: dict = field(default_factory=dict)
    error: str | None = None


@runtime_checkable
class Backend(Protocol):
    """The interface of a backend (see the module docstring)."""

    #: Registry name (``pimgpt run --backend NAME``).
    name: str
    #: Whether :meth:`run` needs the weights (else it is given ``None``).
    needs_weights: bool

    def run(self, program, weights: dict | None, hw: HwConfig) -> RunResult:
        """Run ``program`` with ``weights`` on ``hw``."""
        ...


def logits_array(logits, vocab: int) -> np.ndarray:
    """float32 ``[n, vocab]`` from a list of per-token logit vectors (``[0, vocab]`` when none)."""
    if len(logits) == 0:
        return np.zeros((0, vocab), dtype=np.float32)
    return np.stack([np.asarray(x, dtype=np.float32) for x in logits])


class GoldenBackend:
    """The golden functional simulator (:class:`pimgpt.sim.golden.GoldenMachine`).

    Parameters
    ----------
    progress : bool
        Show a progress bar over the model steps on stderr (when stderr is a terminal).
    """

    name = "golden"
    needs_weights = True

    def __init__(self, progress: bool = False):
        self.progress = bool(progress)

    def run(self, program, weights: dict | None, hw: HwConfig) -> RunResult:
        from pimgpt.sim.golden import run_golden

        cfg = program.memmap.cfg
        tokens, logits, st = run_golden(cfg, hw, weights, None, 0, progress=self.progress,
                                        compiled=program)
        tokens = [int(t) for t in tokens]
        stats = {
            "tokens": tokens,
            "new_tokens": len(tokens),
            "instructions": st["instructions"],
            "seconds": st["seconds"],
            "seconds_per_token": st["seconds"] / max(1, len(tokens)),
            "steps": st["steps"],
            "seconds_per_step": st["seconds"] / max(1, st["steps"]),
            "load_seconds": st["load_seconds"],
            "mac_columns": st["mac_columns"],
            "ops": st["ops"],
            "scratchpad_words_used": st["scratchpad_words_used"],
        }
        return RunResult(tokens, logits_array(logits, cfg.vocab), stats)


class PerfBackend:
    """The cycle-accurate performance and energy simulator (:class:`pimgpt.sim.perf.PerfEngine`).

    Parameters
    ----------
    generation : bool
        Whether the program is a generation (accepted for callers): the program's own steps split
        the statistics (:func:`pimgpt.sim.perf.summary.summarize`): prefill and decode apart, and
        the preamble that loads the resident parameters outside both (a compiled decode step is
        one decode step after its preamble).
    timeline : bool
        Offer the Chrome/Perfetto trace as the ``"timeline"`` file.
    commands : bool
        Offer the DRAM commands the engine issued as the ``"commands"`` CSV file (the format
        of the RTL backend's, :func:`pimgpt.sim.perf.commands.commands_csv`).
    """

    name = "perf"
    needs_weights = False

    def __init__(self, generation: bool = True, timeline: bool = False, commands: bool = False):
        self.generation = bool(generation)
        self.timeline = bool(timeline)
        self.commands = bool(commands)

    def run(self, program, weights: dict | None, hw: HwConfig) -> RunResult:
        from pimgpt.core.fileio import json_text
        from pimgpt.sim.perf.summary import format_summary, run_compiled

        # A decode step's single step and a generation's steps alike: the preamble that loads
        # the resident parameters is reported apart, outside the per-token figures; the
        # compiler's attention plan where it recorded one.
        # The command log feeds the timeline's register-mode and refresh tracks and the CSV.
        res, stats = run_compiled(program, hw, log=self.timeline or self.commands)
        stats["model"] = program.memmap.cfg.name
        files: dict[str, Callable[[Path], None]] = {}
        if self.timeline:
            from pimgpt.sim.perf.timeline import trace_events

            def write_timeline(path: Path) -> None:
                events = trace_events(res, program.tags, program.program, hw=hw)
                path.write_text(json_text(events, "--timeline", separators=(",", ":")))

            files["timeline"] = write_timeline
        if self.commands:
            from pimgpt.sim.perf.commands import perf_commands, save_commands_csv

            files["commands"] = lambda path: save_commands_csv(
                perf_commands(res.log, hw.dram.channels), path)
        return RunResult(None, None, stats, lines=format_summary(stats).splitlines(),
                         files=files)

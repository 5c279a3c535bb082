"""The RTL backend: a compiled program on the Verilog system, checked against the golden model.

``RtlBackend().run(program, weights, hw)`` (the :class:`pimgpt.sim.backend.Backend` interface)
stores the weights in a DRAM image and runs the same program three times: on the golden simulator
(tokens and the logits of every generated token), on the Verilog system under Verilator or Icarus
through the host interface with a DRAM-protocol monitor on every channel
(:func:`~pimgpt.sim.cocotb_lib.system_run.run_system`), and on the performance simulator (cycles:
its vector-unit costs come from the same microcode the RTL runs, ``pimgpt.core.vu.cost``, so
there is one comparison). The RTL's tokens and the logits it scanned
(every word its ``ARGMAX`` read) are compared bit for bit with the golden run; a difference is the
result's ``error``.

Statistics (every key is described in docs/rtl.md, "Statistics of an RTL run"): ``tokens``,
``golden_tokens``, ``cycles``, ``golden_match`` (true only when every token and every logit
matched bit for bit), ``tokens_match``, ``logits_checked``, ``logits_matching``, ``perf_cycles``,
``cycle_difference`` (a fraction of ``perf_cycles``), ``column_commands_match_perf``,
``commands_rtl_vs_perf`` (channel -> command -> ``{"rtl": n, "perf": n}``), ``dram_commands``
(channel -> commands the monitor saw), protocol violations (always empty in a passing run),
timings and ``build_dir``.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from pimgpt.core.config import HwConfig
from pimgpt.core.errors import PimgptError
from pimgpt.sim.backend import GoldenBackend, RunResult
from pimgpt.sim.perf.commands import save_commands_csv

from .runner import SIMULATORS, fst_support_missing, simulator_available
from .waves import WaveDump

__all__ = ["RtlBackend", "RtlRunError"]

#: Waveform formats the simulators write.
WAVE_FORMATS = ("vcd", "fst")


def _timeline_writer(res, program, hw):
    def write(path: Path) -> None:
        from pimgpt.core.fileio import json_text

        from .rtl_timeline import rtl_trace_events

        events = rtl_trace_events(res.traces, res.dispatch, program, hw)
        path.write_text(json_text(events, "--timeline", separators=(",", ":")))

    return write


class RtlRunError(PimgptError):
    """The RTL run could not be done."""


class RtlBackend:
    """The Verilog system under an HDL simulator (see the module docstring).

    Parameters
    ----------
    simulator : {"verilator", "icarus"}
    waves : {"vcd", "fst"}, optional
        Record waveforms in that format; the result then offers the ``"waves"`` file.
    p_idle : float
        Probability of an idle cycle before each host command while loading.
    build_dir : path, optional
        Build directory (default: ``system-<hw>`` in the build cache,
        :func:`pimgpt.sim.cocotb_lib.runner.default_build_root`).
    timeline : bool
        Offer a Chrome/Perfetto trace of the run as the ``"timeline"`` file
        (:func:`~.rtl_timeline.rtl_trace_events`).
    waves_window : (int, int), optional
        With ``waves="vcd"``: the offered file holds program cycles ``first..last`` only
        (:func:`~.vcd_window.crop_vcd`).
    """

    name = "rtl"
    needs_weights = True

    def __init__(self, simulator: str = "verilator", waves: str | None = None,
                 p_idle: float = 0.0, build_dir=None, timeline: bool = False,
                 waves_window: tuple[int, int] | None = None):
        if simulator not in SIMULATORS:
            raise RtlRunError(f"unknown simulator {simulator!r}; use {' or '.join(SIMULATORS)}")
        if waves is not None and waves not in WAVE_FORMATS:
            raise RtlRunError(f"waveform format {waves!r}: use {' or '.join(WAVE_FORMATS)}")
        ok, why = simulator_available(simulator)
        if not ok:
            raise RtlRunError(f"{simulator} is not available: {why}")
        # Refused now, not after the minutes of a traced build that cannot link its FST writer.
        if simulator == "verilator" and waves == "fst" and fst_support_missing():
            raise RtlRunError(fst_support_missing())
        self.simulator = simulator
        self.waves = waves
        self.p_idle = p_idle
        self.build_dir = build_dir
        self.timeline = bool(timeline)
        if waves_window is not None and waves != "vcd":
            raise RtlRunError("a waves window cuts a VCD: use waves='vcd'")
        self.waves_window = waves_window

    def run(self, program, weights: dict | None, hw: HwConfig) -> RunResult:
        from pimgpt.hdl.system import check_system_hw
        from pimgpt.sw.image import build_dram_image

        from .system_run import run_system

        check_system_hw(hw)  # before the golden run and the minutes of a build
        t0 = time.perf_counter()
        golden = GoldenBackend().run(program, weights, hw)
        golden_s = time.perf_counter() - t0
        image = build_dram_image(program.memmap, weights)
        res = run_system(hw, program.program, image, build_dir=self.build_dir,
                         simulator=self.simulator, waves=self.waves, p_idle=self.p_idle)
        dump = self._waves_file(res.build_dir) if self.waves else None
        try:
            return self._result(program, hw, golden, golden_s, res, dump)
        except BaseException:
            # Interrupted or failed before the caller took the dump: it must not stay (GBs) in
            # the cache.
            if dump is not None:
                dump.discard()
            raise

    def _result(self, program, hw, golden, golden_s, res, dump) -> RunResult:
        from .system_run import compare_with_perf

        cmp = compare_with_perf(hw, program.program, res.traces, tokens=res.tokens)

        want = golden.logits.view(np.uint32).reshape(-1)
        got = res.capture
        n_match = int(np.sum(got[:len(want)] == want[:len(got)])) if len(got) else 0
        logits_match = len(got) == len(want) and n_match == len(want)
        tokens = [int(t) for t in res.tokens]
        tokens_match = tokens == golden.tokens
        vocab = program.memmap.cfg.vocab
        logits = got[:(len(got) // vocab) * vocab].reshape(-1, vocab).view(np.float32)
        st = res.status
        sim_s = st.get("run_seconds", 0.0)
        stats = {
            "simulator": self.simulator,
            "tokens": tokens,
            "golden_tokens": golden.tokens,
            "new_tokens": len(tokens),
            "cycles": int(res.cycles),
            "golden_match": bool(tokens_match and logits_match),
            "tokens_match": bool(tokens_match),
            "logits_checked": int(len(want)),
            "logits_matching": n_match,
            "perf_cycles": cmp["perf_cycles"],
            "cycle_difference": (res.cycles - cmp["perf_cycles"]) / cmp["perf_cycles"]
            if cmp["perf_cycles"] else None,
            "column_commands_match_perf": cmp["column_sequences_equal"],
            "commands_rtl_vs_perf": {
                str(c): {cmd: {"rtl": r, "perf": p} for cmd, (r, p) in v["rtl_vs_perf"].items()}
                for c, v in cmp["channels"].items()},
            "instructions": len(program.program),
            "dram_commands": {str(c): n for c, n in enumerate(st.get("dram_commands") or [])},
            "protocol_violations": st.get("violations", []),
            "dram_error": bool(st.get("dram_error")),
            "sim_seconds": sim_s,
            "cycles_per_second": res.cycles / sim_s if sim_s else None,
            "load_seconds": st.get("load_seconds"),
            "build_seconds": res.build_s,
            "verilog_seconds": res.verilog_s,
            "test_seconds": res.test_s,
            "golden_seconds": golden_s,
            "build_dir": str(res.build_dir),
        }
        lines = [
            # The rtl backend has its own default hardware (tiny-rtl): say which one ran.
            f"model {program.memmap.cfg.name} on {hw.name} ({self.simulator}): "
            f"{len(program.program)} instructions",
            f"cycles: {stats['cycles']} (perf simulator {stats['perf_cycles']}, "
            f"{100 * (stats['cycle_difference'] or 0):+.2f} %)",
            f"golden_match: {str(stats['golden_match']).lower()} ({n_match}/{len(want)} logits "
            f"bit-exact, tokens {'equal' if tokens_match else 'DIFFER'})",
        ]
        files = {"waves": dump} if dump is not None else {}
        files["commands"] = lambda path: save_commands_csv(res.traces, path)
        if self.timeline:
            files["timeline"] = _timeline_writer(res, program.program, hw)
        error = None if stats["golden_match"] else (
            f"the RTL's tokens or logits differ from the golden model (see {res.build_dir})")
        return RunResult(tokens, logits, stats, lines=lines, files=files, error=error)

    def _waves_file(self, build_dir) -> WaveDump:
        """The newest waveform of the run (checked to exist now), to be moved out of the cache."""
        found = sorted(Path(build_dir).rglob(f"*.{self.waves}"), key=lambda p: p.stat().st_mtime)
        if not found:
            raise RtlRunError(f"the simulator wrote no .{self.waves} waveform in {build_dir}; "
                              "this is a bug, run again without --waves")
        return WaveDump(found[-1], window=self.waves_window)

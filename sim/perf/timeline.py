"""Chrome/Perfetto trace of a simulated program (open it in ui.perfetto.dev or chrome://tracing).

Size stays bounded: one complete event (``"ph": "X"``) per *instruction*, not per DRAM command;
when that would exceed ``max_events``, consecutive instructions with the same tag on the same
track are merged into one slice named after the tag (``args`` counts the instructions by opcode),
so a gpt2-xl token stays a few MB. Process ``pid = c`` is DRAM channel ``c`` (thread 0: its PIM
instructions; thread ``1 + bank``: single-bank instructions; where the run kept its command log,
thread ``1 + banks``: register-mode visits and refreshes, thread ``2 + banks``: MAC trains and
row commands, left out past ``max_events``), the last process is the ASIC (thread 0: vector
unit, thread 1: SYNC barriers). Times are microseconds (the trace format's unit).
Instructions that select several channels appear on each of them. A thread's slices must not
overlap (the viewer would nest them), while an instruction's span runs from its dispatch to its
completion and queued instructions overlap: a slice starts where the previous one of its thread
ended. An instruction that completes before that (a vector read finishing under a MAC train) is
an instant event (``"ph": "i"``) at its completion, not a slice of no length.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from pimgpt.core.dram import COMMANDS as COMMANDS_BY_CODE
from pimgpt.core.fileio import atomic_write_json
from pimgpt.sim.perf.engine import ASIC_SIDE, BARRIER, PerfResult

#: Instructions that address one bank (shown on that bank's thread).
_BANK_FIELD = {"MAC_SBK", "WR_SBK", "RD_SBK", "COPY_BKGB", "COPY_GBBK"}


def trace_events(res: PerfResult, tags: list | None = None, program=None,
                 max_events: int = 200_000, hw=None) -> dict:
    """The trace as a JSON-able dict (``traceEvents`` plus metadata).

    With ``hw`` and a run that kept its command log (``log=True``), each channel also gets a
    thread of its register-mode visits (``MODREG`` to ``nMODCH`` after ``MODARR``) and its
    refreshes (``nRFC`` each), what the silicon's timing adds to the MAC streams, and one of its
    MAC trains and row commands (:func:`command_events`).
    """
    us = res.tck_ns * 1e-3
    channels = max(res.channels, 1)
    events = []
    for c in range(channels):
        events.append({"ph": "M", "name": "process_name", "pid": c, "tid": 0,
                       "args": {"name": f"DRAM channel {c}"}})
        events.append({"ph": "M", "name": "thread_name", "pid": c, "tid": 0,
                       "args": {"name": "all-bank / channel"}})
    events.append({"ph": "M", "name": "process_name", "pid": channels, "tid": 0,
                   "args": {"name": "ASIC"}})
    events.append({"ph": "M", "name": "thread_name", "pid": channels, "tid": 0,
                   "args": {"name": "vector unit"}})
    events.append({"ph": "M", "name": "thread_name", "pid": channels, "tid": 1,
                   "args": {"name": "SYNC"}})
    n_per_instr = sum(bin(int(m)).count("1") if side == 0 else 1
                      for m, side in zip(res.chmask, res.side, strict=True))
    merge = n_per_instr > max_events
    # Slices of one thread must not overlap (they would nest wrongly): an instruction whose first
    # command precedes the previous one's completion on that thread starts at that completion.
    busy_until: dict = {}
    open_slice: dict = {}  # merged mode: track -> slice being extended

    def emit(key, ev):
        if merge:
            cur = open_slice.get(key)
            if cur is not None and cur["name"] == ev["name"]:
                cur["dur"] = round(ev["ts"] + ev["dur"] - cur["ts"], 4)
                ops = cur["args"]["ops"]
                ops[ev["args"]["op"]] = ops.get(ev["args"]["op"], 0) + 1
                cur["args"]["instructions"] += 1
                return
            ev = {**ev, "args": {"first": ev["args"]["i"], "instructions": 1,
                                 "ops": {ev["args"]["op"]: 1}}}
            open_slice[key] = ev
        events.append(ev)

    for i in range(res.n_instr):
        name = res.ops[i].name
        tag = tags[i] if tags is not None and i < len(tags) else ""
        ts = float(res.start[i]) * us
        dur = max(float(res.end[i] - res.start[i]) * us, 0.0)
        if res.side[i] == ASIC_SIDE or res.side[i] == BARRIER:
            targets = [(channels, 0 if res.side[i] == ASIC_SIDE else 1)]
        else:
            mask = int(res.chmask[i])
            tid = 0
            if program is not None and name in _BANK_FIELD:
                tid = 1 + int(program[i].args.get("bank", 0))
            targets = [(c, tid) for c in range(channels) if mask >> c & 1]
        for pid, tid in targets:
            t0 = max(ts, busy_until.get((pid, tid), 0.0))
            d = max(ts + dur - t0, 0.0)
            busy_until[(pid, tid)] = t0 + d
            ev = {"ph": "X", "name": (tag or name) if merge else name,
                  "cat": tag.split(".")[-1] or name, "pid": pid, "tid": tid,
                  "ts": round(t0, 4), "dur": round(d, 4), "args": {"i": i, "tag": tag, "op": name}}
            if d <= 0 and dur > 0 and not merge:  # done under the previous slice (module doc)
                del ev["dur"]
                ev.update(ph="i", s="t", ts=round(ts + dur, 4))
                events.append(ev)
                continue
            emit((pid, tid), ev)
    if hw is not None and res.log:
        events += _command_threads(res, hw, channels, us, max_events)
    return {"traceEvents": events, "displayTimeUnit": "ns",
            "otherData": {"hw": res.hw_name, "cycles": res.cycles, "tck_ns": res.tck_ns,
                         "merged_by_tag": merge}}


def _command_threads(res: PerfResult, hw, channels: int, us: float, max_events: int) -> list:
    """Each channel's register-mode visits and refreshes, and its MAC trains and row commands
    (while they stay under ``max_events``), on threads of their own: those of the RTL's trace."""
    from pimgpt.sim.perf.commands import perf_commands

    tid = mode_thread(hw.dram.banks)
    return command_events(perf_commands(res.log, channels), hw, us, mode_tid=tid,
                          train_tid=tid + 1, max_events=max_events)


def command_events(traces: dict, hw, us: float, mode_tid: int, train_tid: int | None = None,
                   max_events: int = 200_000) -> list:
    """Trace events of DRAM command traces (channel -> ``(cycle, code, footprint)`` rows, as
    :func:`pimgpt.sim.perf.commands.perf_commands` gives them and the RTL's monitors record
    them), process ``pid = channel``.

    Thread ``mode_tid``: register-mode visits (``MODREG`` to ``nMODCH`` after ``MODARR``) and
    refreshes (``nRFC``). Thread ``train_tid`` (optional; the RTL's view, which has no
    instruction spans): MAC trains (a run of MAC column commands, each within ``2 nCCDL`` of
    the one before, one slice) and row commands (instants), while the total stays under
    ``max_events`` (else left out, and said so in the thread's name).
    """
    from pimgpt.core.dram import CMD, derived_timing
    from pimgpt.sim.perf.commands import register_mode_spans

    t = derived_timing(hw)
    visits = register_mode_spans(traces, t["nMODCH"])
    rows_cmds = [CMD[c] for c in ("ACT", "ACT4", "ACT16", "PRE", "PRE4", "PREA")]
    macs = [CMD["MAC"], CMD["MAC16"]]
    gap = 2 * max(t["nCCDL"], t["nCCDS"], 1)
    events: list = []
    trains: list = []
    for c in sorted(traces):
        rows = np.asarray(traces[c], dtype=np.int64).reshape(-1, 3)
        events.append({"ph": "M", "name": "thread_name", "pid": c, "tid": mode_tid,
                       "args": {"name": "register-mode visits, refreshes"}})
        spans = [(a, b, "register mode") for a, b in visits[c]]
        spans += [(a, a + t["nRFC"], "refresh") for a in rows[rows[:, 1] == CMD["REFab"], 0]]
        for a, b, name in sorted(spans):
            events.append({"ph": "X", "name": name, "cat": "dram", "pid": c, "tid": mode_tid,
                           "ts": round(int(a) * us, 4), "dur": round(int(b - a) * us, 4),
                           "args": {"tck": int(b - a)}})
        if train_tid is None:
            continue
        mac = rows[np.isin(rows[:, 1], macs), 0]
        if len(mac):
            cut = np.flatnonzero(np.diff(mac) > gap) + 1
            for first, last, n in zip(mac[np.r_[0, cut]], mac[np.r_[cut - 1, len(mac) - 1]],
                                      np.diff(np.r_[0, cut, len(mac)]), strict=True):
                trains.append({"ph": "X", "name": "MAC train", "cat": "dram", "pid": c,
                               "tid": train_tid, "ts": round(int(first) * us, 4),
                               "dur": round(int(last - first + t["nCCDL"]) * us, 4),
                               "args": {"columns": int(n)}})
        for cyc, code in rows[np.isin(rows[:, 1], rows_cmds)][:, :2].tolist():
            trains.append({"ph": "i", "s": "t", "name": COMMANDS_BY_CODE[code], "cat": "dram",
                           "pid": c, "tid": train_tid, "ts": round(cyc * us, 4)})
    if train_tid is not None:
        keep = len(trains) <= max_events
        name = "MAC trains, row commands" + ("" if keep else
                                             f" (left out: {len(trains)} events)")
        events += [{"ph": "M", "name": "thread_name", "pid": c, "tid": train_tid,
                    "args": {"name": name}} for c in sorted(traces)]
        events += trains if keep else []
    return events


def mode_thread(banks: int) -> int:
    """Thread of a channel's register-mode visits and refreshes (after its bank threads)."""
    return 1 + banks


def write_trace(path, res: PerfResult, tags: list | None = None, program=None,
                max_events: int = 200_000, hw=None) -> Path:
    """Write the trace JSON atomically (temporary file, then rename: no partial file)."""
    path = Path(path)
    data = trace_events(res, tags, program, max_events, hw)
    atomic_write_json(path, data, separators=(",", ":"))
    return path

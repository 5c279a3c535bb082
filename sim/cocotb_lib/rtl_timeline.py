"""Chrome/Perfetto trace of an RTL run (``pimgpt run --backend rtl --timeline``).

Built from what the run's monitors recorded (:class:`~.system_run.SystemResult`): every DRAM
command per channel and every instruction the front end dispatched. Process ``pid = c`` is DRAM
channel ``c``, with the threads the perf simulator's trace gives a channel for its commands
(:func:`pimgpt.sim.perf.timeline.command_events`): MAC trains and row commands (thread 0), and
register-mode visits and refreshes (thread 1), so the two backends' traces of one program can be
opened side by side. The last process is the front end: an instant per dispatched instruction on
the PIM queue (thread 0), the vector unit's queue (thread 1) or as a barrier (thread 2), named by
opcode, with its program counter. Times are microseconds of the RTL clock (one DRAM tCK).
"""

from __future__ import annotations

import numpy as np

from pimgpt.core.config import HwConfig
from pimgpt.core.isa import ASIC_OPS, PIM_OPS
from pimgpt.sim.perf.timeline import command_events

#: Threads of a channel and of the front end.
TRAIN_TID, MODE_TID = 0, 1
FRONT_THREADS = ("PIM instructions dispatched", "vector-unit instructions dispatched",
                 "barriers and control")


def rtl_trace_events(traces: dict, dispatch, program: list, hw: HwConfig) -> dict:
    """The trace as a JSON-able dict (``traceEvents`` plus metadata).

    Parameters
    ----------
    traces : dict
        Channel -> ``(cycle, command code, footprint index)`` rows (``SystemResult.traces``).
    dispatch : numpy.ndarray or None
        ``(pc, cycle)`` of every dispatch (``SystemResult.dispatch``).
    program : list of Instr
        The program the run executed (names the dispatched instructions).
    hw : HwConfig
    """
    us = hw.dram.tck_ns * 1e-3
    channels = hw.dram.channels
    events: list = []
    for c in range(channels):
        events.append({"ph": "M", "name": "process_name", "pid": c, "tid": 0,
                       "args": {"name": f"DRAM channel {c}"}})
    events += command_events({c: traces.get(c, np.zeros((0, 3), np.int64))
                              for c in range(channels)}, hw, us, mode_tid=MODE_TID,
                             train_tid=TRAIN_TID)
    front = channels
    events.append({"ph": "M", "name": "process_name", "pid": front, "tid": 0,
                   "args": {"name": "front end"}})
    for tid, name in enumerate(FRONT_THREADS):
        events.append({"ph": "M", "name": "thread_name", "pid": front, "tid": tid,
                       "args": {"name": name}})
    rows = np.zeros((0, 2), np.int64) if dispatch is None else np.asarray(dispatch)
    for pc, cycle in rows.reshape(-1, 2).tolist():
        if not 0 <= pc < len(program):
            continue  # the front end's pointer past the end (the run's last dispatch)
        op = program[pc].op
        tid = 0 if op in PIM_OPS else 1 if op in ASIC_OPS else 2
        events.append({"ph": "i", "s": "t", "name": op.name, "cat": "dispatch", "pid": front,
                       "tid": tid, "ts": round(cycle * us, 4), "args": {"pc": pc}})
    return {"traceEvents": events, "displayTimeUnit": "ns",
            "otherData": {"hw": hw.name, "tck_ns": hw.dram.tck_ns, "backend": "rtl"}}

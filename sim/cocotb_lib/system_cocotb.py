"""The cocotb test that runs one job on the system RTL (driven by :mod:`.system_run`).

Environment: ``PIMGPT_JOB`` (an ``.npz`` written by :func:`.system_run.write_job`), ``PIMGPT_HW``
(hardware preset or YAML path), ``PIMGPT_RESULT`` (JSON written here), ``PIMGPT_IDLE`` (host
idle-cycle probability), ``PIMGPT_SEED``. The test loads the program and the DRAM image through
the host port, runs the program with the DRAM-protocol monitor on every channel, reads the output
tokens, the logit capture and the scratchpad words asked for, and writes everything (plus the
command trace of every channel) for the Python side to compare with the golden model.
"""

from __future__ import annotations

import json
import os
import time

import cocotb
import numpy as np

from pimgpt.core.config import load_hw
from pimgpt.sim.cocotb_lib.system_tb import SystemTB


@cocotb.test()
async def run_job(dut):
    """Load, run and read back one job; fail on any DRAM-protocol violation."""
    hw = load_hw(os.environ["PIMGPT_HW"])
    job = np.load(os.environ["PIMGPT_JOB"], allow_pickle=False)
    tb = SystemTB(dut, hw, p_idle=float(os.environ.get("PIMGPT_IDLE", "0")),
                  seed=int(os.environ.get("PIMGPT_SEED", "0")))
    await tb.reset()
    t0 = time.perf_counter()
    await tb.host.write_program(job["program"])
    columns = await tb.host.load_dram(job["image"])
    if "sp_init" in job.files and job["sp_init"].size:
        await tb.host.write_sp(0, job["sp_init"])
    load_s = time.perf_counter() - t0
    max_cycles = int(job["max_cycles"]) if "max_cycles" in job.files else 50_000_000
    status = await tb.run(max_cycles)
    tokens = await tb.host.read_tokens(status["n_out"])
    capture = await tb.host.read_capture(status["n_cap"])
    sp_read = job["sp_read"] if "sp_read" in job.files else np.zeros((0, 2), dtype=np.int64)
    sp_words = []
    for addr, n in sp_read:
        sp_words.append((await tb.host.read_sp(int(addr), int(n))).tolist())
    out = os.environ["PIMGPT_RESULT"]
    trace = os.path.splitext(out)[0] + "_trace.npz"
    np.savez(trace, **{f"ch{c}": np.array([(t, code_of(name), fpi) for t, name, fpi, _, _ in cmds],
                                          dtype=np.int64).reshape(-1, 3)
                       for c, cmds in enumerate(tb.monitor.commands)},
             dispatch=np.array(tb.monitor.dispatch, dtype=np.int64).reshape(-1, 2))
    result = dict(status)
    result.update(
        tokens=tokens, capture=capture.tolist(), sp_words=sp_words, dram_columns_loaded=columns,
        host_commands=tb.host.commands, host_idle_cycles=tb.host.idle_cycles,
        load_seconds=load_s, violations=[str(v) for v in tb.monitor.violations],
        dram_commands=[len(c) for c in tb.monitor.commands], trace=trace,
    )
    with open(out, "w") as fh:
        json.dump(result, fh)
    assert not result["violations"], result["violations"][:5]
    assert status["error"] == 0, "the front end stopped on a bad instruction"
    assert status["dram_error"] == 0, "a bank flagged a protocol/timing violation"


def code_of(name: str) -> int:
    from pimgpt.core.dram import CMD

    return CMD[name]

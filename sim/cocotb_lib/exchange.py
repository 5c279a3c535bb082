"""Parameters in, results out: how a Python process talks to the cocotb tests it starts.

:func:`pimgpt.sim.cocotb_lib.runner.run_cocotb` hands the tests one JSON object of parameters
(environment variable :data:`PARAMS_ENV`) and collects what they :func:`report` from one JSON
file (:data:`REPORT_ENV`) into :attr:`~pimgpt.sim.cocotb_lib.runner.CocotbRun.report`. Pure
Python: both sides import it. The report is rewritten whole after each :func:`report`
(:func:`pimgpt.core.fileio.atomic_write_json`).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from pimgpt.core.fileio import atomic_write_json

__all__ = ["PARAMS_ENV", "REPORT_ENV", "params", "param", "report"]

#: Environment variable holding the JSON parameters of a cocotb run.
PARAMS_ENV = "PIMGPT_COCOTB_PARAMS"
#: Environment variable naming the JSON report file of a cocotb run.
REPORT_ENV = "PIMGPT_COCOTB_REPORT"


def params() -> dict:
    """The parameters the runner passed (``{}`` when none)."""
    return json.loads(os.environ.get(PARAMS_ENV) or "{}")


def param(name: str, default=None):
    """One parameter, ``default`` when it was not passed."""
    return params().get(name, default)


def report(key: str, value) -> None:
    """Add ``key: value`` (JSON-serialisable) to the run's report; no-op outside a runner.

    Several tests of one module report under different keys into the same file.
    """
    path = os.environ.get(REPORT_ENV)
    if not path:
        return
    path = Path(path)
    content = json.loads(path.read_text()) if path.exists() else {}
    content[key] = value
    # numpy scalars and arrays (the testbenches count with numpy) become JSON numbers and lists.
    try:
        atomic_write_json(path, content, indent=1)
    except TypeError as exc:
        raise TypeError(f"cannot report {exc}") from None

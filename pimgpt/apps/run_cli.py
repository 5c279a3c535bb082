"""``pimgpt run``: dispatch to the backend that owns the run (golden, perf or rtl)."""

from __future__ import annotations

import importlib

BACKENDS = {
    "golden": "pimgpt.apps.golden_cli",  # functional, bit-exact: tokens and logits
    "perf": "pimgpt.apps.perf_cli",  # cycle-accurate timing and energy
    "rtl": "pimgpt.apps.rtl_cli",  # the Verilog system under Verilator/Icarus, checked vs golden
}


def cli_run(args) -> int:
    """Run ``args.backend``'s ``cli_run(args)``."""
    return importlib.import_module(BACKENDS[args.backend]).cli_run(args)

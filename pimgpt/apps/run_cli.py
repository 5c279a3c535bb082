"""``pimgpt run``: dispatch to the backend that owns the run (golden, perf or rtl)."""

from __future__ import annotations

import importlib

from pimgpt.core.errors import PimgptError

BACKENDS = {
    "golden": "pimgpt.apps.golden_cli",  # functional, bit-exact: tokens and logits
    "perf": "pimgpt.apps.perf_cli",  # cycle-accurate timing and energy
    "rtl": "pimgpt.apps.rtl_cli",  # the Verilog system under Verilator/Icarus, checked vs golden
}

#: Options that only some backends use (an option given to another backend is an error, not
#: silently ignored). Keys are argparse destinations.
BACKEND_OPTIONS = {
    "logits": ("--logits", ("golden", "rtl")),
    "program": ("--program", ("golden",)),
    "timeline": ("--timeline", ("perf",)),
    "waves": ("--waves", ("rtl",)),
    "context": ("--context", ("perf",)),
}


def check_backend_options(args) -> None:
    """Refuse options that ``args.backend`` would ignore.

    Raises
    ------
    PimgptError
        Naming the option and the backends that use it.
    """
    for dest, (flag, backends) in BACKEND_OPTIONS.items():
        if getattr(args, dest, None) is not None and args.backend not in backends:
            raise PimgptError(f"{flag} is not used by the {args.backend} backend; drop it or use "
                              f"--backend {' or '.join(backends)}")


def cli_run(args) -> int:
    """Run ``args.backend``'s ``cli_run(args)``."""
    check_backend_options(args)
    return importlib.import_module(BACKENDS[args.backend]).cli_run(args)

"""How every entry point ends: ``pimgpt <command>`` and ``python -m pimgpt.apps.<bench>``.

One definition of the rules users see at the end of a run (README, docs/reliability.md): a
:class:`~pimgpt.core.errors.PimgptError` is one line on stderr, ``<prog>: error: <message>``, and
exit status 1; SIGTERM cleans up as Ctrl-C does (:mod:`.terminate`) and ends with
``<prog>: terminated`` (143), Ctrl-C with ``<prog>: interrupted`` (130); a reader of stdout that
went away (``pimgpt models | head -1``) ends the run quietly (1).
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable

from pimgpt.core.errors import PimgptError

from .terminate import EXIT_TERMINATED, Terminated, sigterm_raises


def run_guarded(prog: str, fn: Callable[[], int | None]) -> int:
    """Run ``fn()`` under the rules of the module docstring; returns the exit status.

    Parameters
    ----------
    prog : str
        How the messages name the command (``"pimgpt run"``, ``"python -m pimgpt.apps.x"``).
    fn : callable
        The command; returns its exit status (``None``: 0).
    """
    try:
        with sigterm_raises():  # `kill` cleans up as Ctrl-C does (pimgpt/apps/terminate.py)
            return int(fn() or 0)
    except PimgptError as exc:
        message = " ".join(str(exc).split())  # one line, whatever the message holds
        print(f"{prog}: error: {message}", file=sys.stderr)
        return 1
    except Terminated:
        print(f"{prog}: terminated", file=sys.stderr)
        return EXIT_TERMINATED
    except KeyboardInterrupt:
        print(f"{prog}: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        # The reader of stdout went away: stop quietly, and keep Python from reporting the
        # failed flush of stdout at exit.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1


def module_main(main: Callable[..., int | None]) -> None:
    """Run a module's ``main()`` as ``python -m <module>`` under :func:`run_guarded` and exit.

    ``if __name__ == "__main__": module_main(main)`` ends every benchmark module.

    Parameters
    ----------
    main : callable
        The module's entry (no arguments: it parses ``sys.argv``); returns the exit status.

    Raises
    ------
    SystemExit
        Always, with the status.
    """
    spec = getattr(sys.modules.get(main.__module__), "__spec__", None)  # "__main__" under -m
    raise SystemExit(run_guarded(f"python -m {spec.name if spec else main.__module__}", main))

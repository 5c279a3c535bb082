"""SIGTERM handled like Ctrl-C: the cleanup that an interrupt runs also runs on ``kill``.

Python's default SIGTERM ends the process at once: temporary output files, an embedded Dask
cluster's worker processes, a Yosys child and its temporary folder stay behind (``timeout``, a
CI runner's cancel and ``kill`` all send SIGTERM). Inside :func:`sigterm_raises` a SIGTERM
raises :class:`Terminated` in the main thread instead, a ``KeyboardInterrupt`` so that no
``except Exception`` swallows it and every ``finally`` and context manager on the way out runs
(``subprocess.run`` kills its child on the way).
"""

from __future__ import annotations

import signal
import threading
from contextlib import contextmanager

#: Exit status of a command ended by SIGTERM (128 + 15, what a shell reports for one).
EXIT_TERMINATED = 143


class Terminated(KeyboardInterrupt):
    """The process received SIGTERM."""


def _raise_terminated(signum, frame):  # noqa: ARG001 - the signal handler's signature
    raise Terminated


@contextmanager
def sigterm_raises():
    """Within the block, SIGTERM raises :class:`Terminated` (main thread only; elsewhere, where
    Python cannot install handlers, the block runs unchanged). The previous handler is back
    afterwards."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGTERM, _raise_terminated)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)

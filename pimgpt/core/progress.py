"""Progress bars on stderr that never get in the way of an error message.

A bar is drawn only when stderr is a terminal (``PIMGPT_PROGRESS=1`` forces it on, ``0`` off), so
logs and pipes get no bar lines. Used as a context manager, the bar is closed, and its line
cleared, before an exception leaves the block, so a command's one-line error stands alone.
"""

from __future__ import annotations

import os
import sys
from contextlib import contextmanager

#: Environment variable: ``1`` always draws bars, ``0`` never.
PROGRESS_ENV = "PIMGPT_PROGRESS"


def progress_enabled() -> bool:
    """Whether bars are drawn: ``$PIMGPT_PROGRESS`` if set, else whether stderr is a terminal."""
    env = os.environ.get(PROGRESS_ENV, "")
    if env in ("0", "1"):
        return env == "1"
    try:
        return sys.stderr.isatty()
    except (AttributeError, ValueError):  # replaced or closed stream
        return False


@contextmanager
def progress(total: int, desc: str, unit: str = "step", enabled: bool = True):
    """A tqdm bar on stderr for ``total`` units (a silent one when bars are off).

    Parameters
    ----------
    total : int
    desc : str
        Label shown before the bar.
    unit : str
    enabled : bool
        The caller's own switch (e.g. a ``progress=`` argument); bars also need
        :func:`progress_enabled`.
    """
    from tqdm import tqdm

    bar = tqdm(total=total, desc=desc, unit=unit, file=sys.stderr,
               disable=not (enabled and progress_enabled()))
    try:
        yield bar
    except BaseException:
        bar.leave = False  # clear the bar's line: the error message follows alone
        raise
    finally:
        bar.close()

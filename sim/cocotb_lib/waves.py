"""The waveform a traced RTL run leaves in its build folder: moved out, or removed.

A dump grows by kilobytes per simulated cycle (GBs for a short generation) and its build folder
is in the user's cache: nothing of it may stay there, whether the run succeeds (the file is moved
to the user's ``--waves`` destination, :class:`WaveDump`), fails or is interrupted
(:func:`remove_dumps`).
"""

from __future__ import annotations

import errno
import os
import shutil
from pathlib import Path

__all__ = ["WaveDump", "move_file", "remove_dumps"]


def move_file(src, dst) -> None:
    """Move ``src`` to ``dst``: a rename on one filesystem, else a copy and a removal.

    A waveform is up to GBs: a copy out of the build cache would leave the original there.
    """
    try:
        os.replace(src, dst)
    except OSError as exc:
        if exc.errno != errno.EXDEV:
            raise
        shutil.move(src, dst)  # another filesystem: copies, then removes src


def remove_dumps(build_dir, fmt: str) -> list[Path]:
    """Remove every ``.fmt`` waveform under ``build_dir`` (nothing else); return what was removed.

    Only a traced build folder (``system-<hw>-waves-<fmt>``) holds such files, all of them dumps
    of its runs.
    """
    removed = []
    for path in Path(build_dir).rglob(f"*.{fmt}"):
        if path.is_file() and not path.is_symlink():
            path.unlink(missing_ok=True)
            removed.append(path)
    return removed


class WaveDump:
    """The waveform a run left in its build folder: a ``files`` writer that moves it out.

    ``dump(dest)`` moves the file to ``dest``; :meth:`discard` removes it if it was not moved
    (the run failed or was interrupted before its outputs were written).

    Parameters
    ----------
    path : path
        The dump in the build folder.
    """

    def __init__(self, path):
        self.path = Path(path)

    def __call__(self, dest) -> None:
        move_file(self.path, dest)

    def discard(self) -> None:
        """Remove the dump if it is still in the build folder."""
        self.path.unlink(missing_ok=True)

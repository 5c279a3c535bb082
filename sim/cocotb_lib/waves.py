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

    ``dump(dest)`` moves the file to ``dest`` (with ``window``, writes the cut of those program
    cycles there and removes the whole dump); :meth:`discard` removes it if it was not moved
    (the run failed or was interrupted before its outputs were written).

    Parameters
    ----------
    path : path
        The dump in the build folder.
    window : (int, int), optional
        Program cycles ``first..last`` to keep (a VCD; :func:`.vcd_window.crop_vcd`).

    Attributes
    ----------
    cycles : int or None
        After a cut, the program cycles it covers.
    """

    def __init__(self, path, window: tuple[int, int] | None = None):
        self.path = Path(path)
        self.window = window
        self.cycles = None

    def __call__(self, dest) -> None:
        if self.window is None:
            move_file(self.path, dest)
            return
        from .vcd_window import crop_vcd

        try:
            self.cycles = crop_vcd(self.path, dest, *self.window)
        finally:
            self.discard()  # the whole dump (GBs) does not stay in the cache, cut or not

    def discard(self) -> None:
        """Remove the dump if it is still in the build folder."""
        self.path.unlink(missing_ok=True)

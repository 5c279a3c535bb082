"""Output files are written whole or not at all: a temporary file beside the target, then a rename.

Every command that writes results uses these helpers, so an error never leaves a partial file and
every file gets the mode an ordinary ``open()`` would give it (``mkstemp`` alone gives 0600).
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable
from pathlib import Path

from pimgpt.core.errors import PimgptError


def _umask_mode() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return 0o666 & ~mask


def atomic_write(path: str | Path, write: Callable[[Path], None]) -> Path:
    """Call ``write(tmp_path)`` then rename ``tmp_path`` to ``path``; clean up on any error.

    Raises
    ------
    PimgptError
        When the target directory cannot be created or written.
    """
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    except OSError as exc:
        raise PimgptError(f"cannot write {path} ({exc.strerror}); choose another path") from None
    os.close(fd)
    tmp = Path(tmp)
    try:
        write(tmp)
        os.chmod(tmp, _umask_mode())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path


def atomic_write_text(path: str | Path, text: str) -> Path:
    """Write ``text`` to ``path`` atomically."""
    return atomic_write(path, lambda tmp: tmp.write_text(text))


def atomic_write_json(path: str | Path, data, **dump_kwargs) -> Path:
    """Write ``data`` as JSON atomically (``default=float`` turns numpy scalars into numbers)."""
    dump_kwargs.setdefault("default", float)
    return atomic_write_text(path, json.dumps(data, **dump_kwargs) + "\n")

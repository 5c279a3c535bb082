"""The text the shipped byte-level models were trained and are evaluated on.

The corpus is the Python source of the running interpreter's standard library, which every
machine with Python has offline: every top-level ``*.py`` file of ``sysconfig``'s ``stdlib``
directory, sorted by name. Files whose index in that sorted list is ``9 mod 10`` are held out for
evaluation; the rest, concatenated in order, are the training stream. The text is (c) the Python
Software Foundation under the PSF License Version 2.

One definition of the split for the training tool (``tools/train_bytegpt.py``) and for
``pimgpt accuracy``.
"""

from __future__ import annotations

import hashlib
import sysconfig
from pathlib import Path

import numpy as np

from pimgpt.core.errors import PimgptError

__all__ = ["HELD_OUT_EVERY", "CorpusError", "stdlib_corpus", "read_stream", "held_out_stream",
           "eval_offsets"]

#: File ``i`` of the sorted list is held out when ``i % HELD_OUT_EVERY == HELD_OUT_EVERY - 1``.
HELD_OUT_EVERY = 10


class CorpusError(PimgptError):
    """The corpus cannot be read (an incomplete Python installation)."""


def stdlib_corpus() -> tuple[Path, list[str], list[str]]:
    """The stdlib directory and the sorted training and held-out file names.

    Raises
    ------
    CorpusError
        When the directory holds too few files to split (not a full Python).
    """
    root = Path(sysconfig.get_paths()["stdlib"])
    names = sorted(p.name for p in root.glob("*.py") if p.is_file())
    if len(names) < 2 * HELD_OUT_EVERY:
        raise CorpusError(f"only {len(names)} .py files in {root}; is this a full Python?")
    held = [n for i, n in enumerate(names) if i % HELD_OUT_EVERY == HELD_OUT_EVERY - 1]
    train = [n for i, n in enumerate(names) if i % HELD_OUT_EVERY != HELD_OUT_EVERY - 1]
    return root, train, held


def read_stream(root: Path, names: list[str]) -> np.ndarray:
    """The files ``names`` of ``root`` concatenated, as a ``uint8`` byte stream."""
    return np.frombuffer(b"".join((Path(root) / n).read_bytes() for n in names), dtype=np.uint8)


def held_out_stream() -> tuple[np.ndarray, list[str], str]:
    """The held-out byte stream: (bytes as ``uint8``, file names, sha256 of the bytes)."""
    root, _, held = stdlib_corpus()
    stream = read_stream(root, held)
    return stream, held, hashlib.sha256(stream.tobytes()).hexdigest()


def eval_offsets(n: int, ctx: int, count: int) -> np.ndarray:
    """``count`` evenly spaced starts of ``ctx + 1``-token windows over a stream of ``n`` tokens
    (deterministic, no sampling)."""
    return np.linspace(0, n - ctx - 1, num=count).astype(np.int64)

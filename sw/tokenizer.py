"""Byte-level tokenizer of the shipped models (``tiny-py``, ``small-py``): one token per UTF-8 byte.

A model with a vocabulary of exactly 256 is byte-level: token ``i`` is the byte ``i``. Other models
(GPT-2's 50257 BPE tokens) take prompts as token ids.
"""

from __future__ import annotations

from collections.abc import Iterable

from pimgpt.core.errors import PimgptError

#: Vocabulary size of a byte-level model.
BYTE_VOCAB = 256


class TokenizerError(PimgptError):
    """Text or token ids that the byte-level tokenizer cannot handle."""


def encode(text: str) -> list[int]:
    """Token ids of ``text``: its UTF-8 bytes.

    Parameters
    ----------
    text : str
        Any text; characters outside ASCII become several tokens.

    Returns
    -------
    list of int
        Values in ``[0, 256)``.
    """
    if not isinstance(text, str):
        raise TokenizerError(f"encode() takes a str, got {type(text).__name__}")
    try:
        return list(text.encode("utf-8"))
    except UnicodeEncodeError as exc:
        # A command line that is not UTF-8 reaches Python as lone surrogates (surrogateescape).
        raise TokenizerError(
            f"the text is not valid UTF-8 (character {exc.start}: "
            f"{text[exc.start].encode('utf-8', 'surrogateescape')!r}); give UTF-8 text, or the "
            "byte values as token ids with --prompt"
        ) from None


def decode(tokens: Iterable[int]) -> str:
    """Text of byte tokens; invalid UTF-8 sequences become U+FFFD (``errors="replace"``).

    Raises
    ------
    TokenizerError
        For a token outside ``[0, 256)``.
    """
    ids = [int(t) for t in tokens]
    bad = [t for t in ids if not 0 <= t < BYTE_VOCAB]
    if bad:
        raise TokenizerError(
            f"token {bad[0]} is not a byte (0..255); decode() is only for byte-level models"
        )
    return bytes(ids).decode("utf-8", errors="replace")


def is_byte_level(model) -> bool:
    """Whether ``model`` (a :class:`~pimgpt.sw.models.ModelConfig` or a vocabulary size) is
    byte-level, i.e. has a vocabulary of exactly 256 tokens."""
    vocab = getattr(model, "vocab", model)
    return vocab == BYTE_VOCAB

"""Prompts on the command line: token ids (``--prompt 1,2,3``) or text for byte-level models."""

from __future__ import annotations

from pimgpt.core.errors import PimgptError


class PromptError(PimgptError):
    """A prompt that is malformed or does not fit the model."""


def parse_prompt(text: str, cfg) -> list[int]:
    """Comma-separated token ids -> list of int, each checked against ``cfg.vocab``."""
    items = [t.strip() for t in str(text).split(",")]
    if not any(items):
        raise PromptError("the prompt is empty; give comma-separated token ids such as 1,2,3")
    ids = []
    for item in items:
        try:
            tok = int(item)
        except ValueError:
            # (Python refuses ints of more than 4300 digits: such an item is too large, not bad)
            what = "is too large for a token id" if item.isdigit() else "is not a token id"
            shown = item if len(item) <= 40 else f"{item[:20]}...({len(item)} characters)"
            raise PromptError(
                f"prompt item {shown!r} {what}; give comma-separated integers"
            ) from None
        if not 0 <= tok < cfg.vocab:
            raise PromptError(
                f"prompt token {tok} is outside model {cfg.name}'s vocabulary 0..{cfg.vocab - 1}"
            )
        ids.append(tok)
    return ids


def prompt_from_args(args, cfg, default: list[int] | None = (0,)) -> list[int] | None:
    """Prompt ids from ``args.prompt`` or ``args.prompt_text`` (byte-level models only).

    Without either, returns ``default`` (announced on stdout when it is a real prompt).
    """
    from pimgpt.sw import tokenizer

    ids_text = getattr(args, "prompt", None)
    text = getattr(args, "prompt_text", None)
    if ids_text is not None and text is not None:
        raise PromptError("give either --prompt (token ids) or --prompt-text, not both")
    if text is not None:
        if not tokenizer.is_byte_level(cfg):
            raise PromptError(
                f"--prompt-text needs a byte-level model (vocabulary 256); {cfg.name} has "
                f"{cfg.vocab} tokens, so give token ids with --prompt"
            )
        ids = tokenizer.encode(text)
        if not ids:
            raise PromptError("--prompt-text is empty; give at least one character")
        return ids
    if ids_text is not None:
        return parse_prompt(ids_text, cfg)
    if default is not None:
        # On stdout, with the results: stderr is kept for the one-line error of a failed run.
        print(f"no --prompt given, using {list(default)}")
        return list(default)
    return None


def check_new_tokens(n) -> int:
    """``n`` if it is a valid ``--new-tokens`` (an integer of at least 1), else :class:`PromptError`
    naming the flag (``pimgpt run`` and ``pimgpt compile`` word it the same)."""
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise PromptError(f"--new-tokens must be at least 1, got {n!r}")
    return n

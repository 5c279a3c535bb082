"""Argument checks of the reference models (:mod:`pimgpt.sim.reference`): one clear error per
bad model, token list, length, buffer size, capacity or position."""

from __future__ import annotations

import numpy as np

from pimgpt.core.errors import PimgptError
from pimgpt.core.numerics import MAC_LANES
from pimgpt.sw.models import ModelConfig


class ReferenceModelError(PimgptError):
    """Invalid arguments to a reference model (tokens, lengths, buffer size, weights)."""


def _check_model(cfg, weights) -> None:
    if not isinstance(cfg, ModelConfig):
        raise ReferenceModelError(
            f"expected a ModelConfig, got {type(cfg).__name__}; use pimgpt.sw.models.get_model()"
        )
    if not isinstance(weights, dict):
        raise ReferenceModelError(
            f"weights must be a dict of arrays, got {type(weights).__name__}"
        )
    from pimgpt.sw.checkpoint import check_weights  # local: only for the shape check

    check_weights(cfg, weights)


def _check_tokens(cfg: ModelConfig, tokens, what: str) -> list[int]:
    try:
        toks = [int(t) for t in tokens]
    except (TypeError, ValueError):
        raise ReferenceModelError(f"{what} must be a sequence of integer token ids") from None
    if not toks:
        raise ReferenceModelError(f"{what} is empty; give at least one token id")
    bad = [t for t in toks if not 0 <= t < cfg.vocab]
    if bad:
        raise ReferenceModelError(
            f"{what} token {bad[0]} is outside the vocabulary [0, {cfg.vocab}) of model {cfg.name}"
        )
    return toks


def _check_lengths(cfg: ModelConfig, n_prompt: int, new_tokens) -> int:
    if isinstance(new_tokens, bool) or not isinstance(new_tokens, (int, np.integer)) \
            or new_tokens < 0:
        raise ReferenceModelError(f"new_tokens must be a non-negative integer, got {new_tokens!r}")
    steps = n_prompt + max(int(new_tokens), 1) - 1
    if steps > cfg.ctx:
        raise ReferenceModelError(
            f"prompt of {n_prompt} tokens plus {new_tokens} new tokens needs {steps} positions, "
            f"more than the context {cfg.ctx} of model {cfg.name}; shorten the prompt or generate "
            "fewer tokens"
        )
    return int(new_tokens)


def _check_gb(gb_elems) -> int:
    if isinstance(gb_elems, bool) or not isinstance(gb_elems, (int, np.integer)) \
            or gb_elems <= 0 or gb_elems % MAC_LANES:
        raise ReferenceModelError(
            f"gb_elems must be a positive multiple of {MAC_LANES} (the GB size in bf16 elements, "
            f"HwConfig.dram.gb_elems), got {gb_elems!r}"
        )
    return int(gb_elems)


def _check_capacity(cfg: ModelConfig, capacity) -> int:
    if capacity is None:
        return cfg.ctx
    if isinstance(capacity, bool) or not isinstance(capacity, (int, np.integer)) \
            or not 1 <= capacity <= cfg.ctx:
        raise ReferenceModelError(f"capacity must be an integer in 1..{cfg.ctx} (the context of "
                                  f"model {cfg.name}), got {capacity!r}")
    return int(capacity)


def _check_pos(pos: int, capacity: int) -> None:
    if not 0 <= pos < capacity:
        raise ReferenceModelError(f"position {pos} is outside the K/V caches' capacity {capacity}")

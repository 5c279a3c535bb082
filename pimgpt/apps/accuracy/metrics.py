"""Measures of ``pimgpt accuracy``: how PIM logits differ from float64 logits of the same rows."""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from pimgpt.core.errors import PimgptError

__all__ = ["AccuracyError", "logit_error_stats", "nll_nats", "loss_stats", "common_prefix"]


class AccuracyError(PimgptError):
    """Bad arguments to ``pimgpt accuracy`` or a missing input it needs."""


def logit_error_stats(pim, ref) -> dict:
    """Errors of PIM logits against float64 logits of the same rows.

    Parameters
    ----------
    pim : array_like, shape (rows, vocab)
        PIM-numerics logits (float32).
    ref : array_like, shape (rows, vocab)
        float64 logits on the same token prefixes.

    Returns
    -------
    dict
        ``rows``; ``max_abs`` and ``mean_abs`` logit error; ``spread`` mean of the float64 row
        spreads (max - min); ``max_rel_spread`` the largest ``|err| / spread`` of its row and
        ``mean_rel_spread`` the mean of ``|err| / spread``; ``top1_agree`` how many rows have the
        same first argmax, ``top1`` that fraction; ``margin_median`` the median float64 gap between
        the best and second-best logit, ``disagree_margin_max`` the largest such gap on a row
        where the argmaxes differ (None if none); ``top_abs_mean`` / ``top_abs_max`` the error of
        the logit at the float64 argmax (the one that matters for prediction).
    """
    pim = np.asarray(pim, dtype=np.float64)
    ref = np.asarray(ref, dtype=np.float64)
    if pim.shape != ref.shape or pim.ndim != 2 or not pim.size:
        raise AccuracyError(f"logit arrays must be equal non-empty 2-D, got {pim.shape} and "
                            f"{ref.shape}")
    err = np.abs(pim - ref)
    spread = ref.max(axis=1) - ref.min(axis=1)
    rel = err / spread[:, None]
    agree = pim.argmax(axis=1) == ref.argmax(axis=1)
    top2 = np.sort(ref, axis=1)[:, -2:]
    margin = top2[:, 1] - top2[:, 0]
    top_err = err[np.arange(len(ref)), ref.argmax(axis=1)]
    return {
        "rows": int(pim.shape[0]),
        "max_abs": float(err.max()),
        "mean_abs": float(err.mean()),
        "spread": float(spread.mean()),
        "max_rel_spread": float(rel.max()),
        "mean_rel_spread": float(rel.mean()),
        "top1_agree": int(agree.sum()),
        "top1": float(agree.mean()),
        "margin_median": float(np.median(margin)),
        "disagree_margin_max": float(margin[~agree].max()) if (~agree).any() else None,
        "top_abs_mean": float(top_err.mean()),
        "top_abs_max": float(top_err.max()),
    }


def nll_nats(logits, targets) -> np.ndarray:
    """Per-row negative log-likelihood (nats) of ``targets`` under ``logits`` (float64 softmax)."""
    z = np.asarray(logits, dtype=np.float64)
    zmax = z.max(axis=1, keepdims=True)
    lse = zmax[:, 0] + np.log(np.exp(z - zmax).sum(axis=1))
    return lse - z[np.arange(len(z)), np.asarray(targets)]


def common_prefix(a: Sequence[int], b: Sequence[int]) -> int:
    """How many leading items ``a`` and ``b`` share."""
    n = 0
    for x, y in zip(a, b, strict=False):
        if x != y:
            break
        n += 1
    return n


def loss_stats(logits, targets) -> dict:
    """Mean next-token loss of ``logits`` against ``targets``: ``nats`` (NLL per token), ``bits``,
    ``ppl`` (perplexity) and ``acc`` (argmax equals the target)."""
    nll = nll_nats(logits, targets).mean()
    return {"nats": float(nll), "bits": float(nll / math.log(2)), "ppl": float(math.exp(nll)),
            "acc": float((np.asarray(logits).argmax(axis=1) == np.asarray(targets)).mean())}

"""What the float64 reference (:class:`pimgpt.sim.reference.F64Model`) needs of the norms folded
into the GEMVs they feed (``normlinear`` of ``docs/dataflow.md``): the biases holding a folded
LayerNorm shift and the weights holding a folded RMSNorm gain, exact or as the DRAM stores them."""

from __future__ import annotations

import numpy as np

from pimgpt.core import numerics as nm
from pimgpt.sw.models import (
    FOLDED_LN,
    ModelConfig,
    folded_gain_weight,
    folds_layernorm_shift,
    folds_rmsnorm_gain,
)


def _as_stored(x) -> np.ndarray:
    """``x`` rounded to bf16 (as the DRAM image stores it), in float64."""
    return nm.bf16_to_f32(nm.f32_to_bf16(np.asarray(x, np.float32))).astype(np.float64)


def f64_folds(cfg: ModelConfig, given: dict, w: dict, as_stored: bool) -> tuple[dict, dict]:
    """``(c, wg)`` keyed ``h.{i}.{matrix}`` for the GEMVs after ``ln_1``/``ln_2``.

    Parameters
    ----------
    cfg : ModelConfig
    given : dict
        The checkpoint's float32 weights.
    w : dict
        The float64 weights the reference uses (``given``, or rounded to bf16).
    as_stored : bool
        Fold as the DRAM image stores the results (rounded to bf16), else exactly.

    Returns
    -------
    tuple of dict
        ``c``: the biases with a folded LayerNorm shift (``W^T shift + bias``); ``wg``: the
        weights with a folded RMSNorm gain (``gain[:, None] * W``).
    """
    c, wg = {}, {}
    for i in range(cfg.n_layer):
        for name, ln in FOLDED_LN.items():
            p = f"h.{i}."
            if folds_layernorm_shift(cfg):
                v = w[p + name + ".weight"].T @ w[p + ln + ".bias"] + w[p + name + ".bias"]
                c[p + name] = _as_stored(v) if as_stored else v
            if folds_rmsnorm_gain(cfg):
                wg[p + name] = (
                    _as_stored(folded_gain_weight(given[p + name + ".weight"],
                                                  given[p + ln + ".weight"])) if as_stored
                    else w[p + ln + ".weight"][:, None] * w[p + name + ".weight"])
    return c, wg

"""The DRAM image: a model's weights as the bf16 contents of its regions (:mod:`.mapper`).

Every matrix is stored one vector per output neuron (Conv1D ``[in, out]`` transposed), chunk-major
per bank slot (:func:`write_region`); the packed small vectors go piece by piece
(:meth:`.mapper.MemoryMap.pieces`); the K/V caches start at zero. The query columns of every
``attn.c_attn`` weight and bias carry :attr:`.mapper.MemoryMap.q_scale` (the scores' scale when it
is a power of two: exact, and no vector instruction scales ``q`` or the scores then). The biases of
the GEMVs a LayerNorm feeds hold the folded shift (:func:`.models.folded_ln_bias`); the weights
of the GEMVs an RMSNorm feeds hold its gain (:func:`.models.folded_gain_weight`).
"""

from __future__ import annotations

import numpy as np

from pimgpt.sw.mapper import MappingError, MemoryMap, Region, fc_order, to_bf16
from pimgpt.sw.models import (
    FOLDED_LN,
    folded_gain_name,
    folded_gain_weight,
    folded_ln_bias,
    folds_layernorm_shift,
)


def _bf16_vectors(mm: MemoryMap, name: str, weights: dict) -> np.ndarray | None:
    """The bf16 vectors (rows) that region ``name`` stores, ``uint16 [n_vectors, <=vec_len]``."""
    if name.endswith("_cache"):
        return None
    if name in ("wte", "wpe", "lm_head"):
        return to_bf16(weights[name])
    if name in ("params_d", "bias_qkv", "bias_fc"):
        region = mm.regions[name]
        out = np.zeros((region.n_vectors, region.vec_len), dtype=np.uint16)
        for vname, (reg, _member) in mm.vectors.items():
            if reg == name:
                bf = to_bf16(_q_scaled(mm, vname, _param(mm, vname, weights)))
                for _r, v, lo, n in mm.pieces(vname):
                    out[v, :n] = bf[lo:lo + n]
        return out
    # Conv1D [in, out] -> one vector per output neuron
    vectors = to_bf16(_q_scaled(mm, name, _matrix(mm, name, weights))).T
    if name.endswith("mlp.c_fc.weight") and mm.cfg.mlp == "swiglu":
        vectors = vectors[fc_order(mm.cfg, mm.hw)]
    return vectors


def _param(mm: MemoryMap, name: str, weights: dict) -> np.ndarray:
    """The fp32 values the image stores for the parameter vector ``name``: the checkpoint's, or
    for the bias of a GEMV with a folded LayerNorm, :func:`~pimgpt.sw.models.folded_ln_bias`."""
    layer, _, rest = name.partition(".")[2].partition(".")
    matrix = rest.removesuffix(".bias")
    value = np.asarray(weights[name], np.float32)
    if (name.startswith("h.") and rest.endswith(".bias") and matrix in FOLDED_LN
            and folds_layernorm_shift(mm.cfg)):
        p = f"h.{layer}."
        value = folded_ln_bias(weights[p + matrix + ".weight"],
                               weights[p + FOLDED_LN[matrix] + ".bias"], value)
    if name.endswith("mlp.c_fc.bias"):  # in the order of the outputs (its vectors')
        value = value[fc_order(mm.cfg, mm.hw)]
    return value


def _matrix(mm: MemoryMap, name: str, weights: dict) -> np.ndarray:
    """The fp32 values the image stores for the matrix ``name``: the checkpoint's, or for a GEMV
    an RMSNorm feeds, with its gain folded in (:func:`~pimgpt.sw.models.folded_gain_weight`)."""
    value = np.asarray(weights[name], np.float32)
    gain = folded_gain_name(mm.cfg, name)
    return value if gain is None else folded_gain_weight(value, weights[gain])


def _q_scaled(mm: MemoryMap, name: str, w: np.ndarray) -> np.ndarray:
    """``w`` with :attr:`MemoryMap.q_scale` on its query outputs if ``name`` is a ``c_attn``
    weight or bias (exact: a power of two)."""
    if mm.q_scale == 1.0 or not name.endswith(("attn.c_attn.weight", "attn.c_attn.bias")):
        return w
    w = w.copy()
    w[..., :mm.cfg.n_head * mm.cfg.d_head] *= np.float32(mm.q_scale)
    return w


def write_region(image: np.ndarray, region: Region, bf16: np.ndarray) -> None:
    """Store bf16 vectors (``uint16 [n, <= vec_len]``, row ``v`` = vector ``v``) in ``image``.

    Vectorised over all vectors: one strided copy per chunk.
    """
    n, length = bf16.shape
    if n > region.n_vectors or length > region.vec_len:
        raise MappingError(
            f"{region.name}: {n}x{length} values do not fit {region.n_vectors}x{region.vec_len}"
        )
    s, nl, g = region.slots, region.n_local, region.gb_elems
    padded = np.zeros((nl * s, region.vec_len), dtype=np.uint16)
    padded[:n, :length] = bf16
    padded = padded.reshape(nl, s, region.vec_len)
    buf = np.zeros((s, region.n_rows * region.row_elems), dtype=np.uint16)
    for t, start, size in region.chunks():
        block = padded[:, :, start:start + size].transpose(1, 0, 2).reshape(s, nl * size)
        buf[:, t * nl * g:t * nl * g + nl * size] = block
    channels, banks = image.shape[:2]
    image[:, :, region.row:region.row + region.n_rows, :] = buf.reshape(
        channels, banks, region.n_rows, region.row_elems
    )


def build_dram_image(mm: MemoryMap, weights: dict) -> np.ndarray:
    """DRAM contents holding ``weights`` as bf16 (RNE), KV caches zero.

    Returns
    -------
    numpy.ndarray
        ``uint16 [channels, banks, rows_used, row_elems]``.
    """
    d = mm.hw.dram
    image = np.zeros((d.channels, d.banks, mm.rows_used, d.row_elems), dtype=np.uint16)
    for name, region in mm.regions.items():
        try:
            matrix = _bf16_vectors(mm, name, weights)
        except KeyError as exc:
            raise MappingError(f"weights lack {exc.args[0]!r} needed by region {name}") from None
        if matrix is None:
            continue
        expect_rows = region.n_vectors
        if matrix.shape[0] != expect_rows:
            raise MappingError(
                f"{name}: weights have {matrix.shape[0]} vectors, the map expects {expect_rows}"
            )
        write_region(image, region, matrix)
    return image


__all__ = ["build_dram_image", "write_region"]

"""Rotary position embeddings: the host-side cos/sin table (float64, rounded once to fp32).

The vector unit rotates queries and keys with :func:`pimgpt.core.nonlinear_llama.rope` but never
computes a cosine: the host computes the angles ``position * inv_freq[j]`` and their cosines and
sines in float64 and rounds them once to fp32 (:func:`rope_table`); the compiler stores that table
and the reference models read it. ``docs/numerics.md`` ("Llama functions") states the contract.
"""

from __future__ import annotations

import numpy as np

from pimgpt.core.numerics import flush_f32


def rope_inv_freq(d_head: int, theta: float, scaling=None) -> np.ndarray:
    """RoPE inverse frequencies in float64 (host side), with the optional Llama 3 scaling.

    ``inv_freq[j] = theta ** (-2j / d_head)`` for ``j < d_head / 2``. With ``scaling =
    (factor, low_freq_factor, high_freq_factor, original_max_position_embeddings)`` (Hugging Face
    ``rope_type: llama3``), with ``wavelen = 2 pi / inv_freq``, ``lo = orig / low_freq_factor`` and
    ``hi = orig / high_freq_factor``:

    * ``wavelen < hi``: unchanged;
    * ``wavelen > lo``: ``inv_freq / factor``;
    * otherwise, with ``s = (orig / wavelen - low_freq_factor) / (high_freq_factor -
      low_freq_factor)``: ``(1 - s) * inv_freq / factor + s * inv_freq``.

    Everything is float64 (transformers computes the same formula in float32).

    Parameters
    ----------
    d_head : int
        Head width (even).
    theta : float
        RoPE base.
    scaling : tuple of 4 numbers or None
        Llama 3 scaling parameters, in the order above.

    Returns
    -------
    numpy.ndarray
        float64 ``[d_head // 2]``.
    """
    if d_head <= 0 or d_head % 2:
        raise ValueError(f"rope_inv_freq needs a positive even d_head, got {d_head!r}")
    inv = 1.0 / float(theta) ** (np.arange(0, d_head, 2, dtype=np.float64) / d_head)
    if scaling is None:
        return inv
    factor, low, high, orig = (float(v) for v in scaling)
    wavelen = 2.0 * np.pi / inv
    smooth = (orig / wavelen - low) / (high - low)
    mid = (1.0 - smooth) * inv / factor + smooth * inv
    out = np.where(wavelen > orig / low, inv / factor, inv)
    return np.where((wavelen >= orig / high) & (wavelen <= orig / low), mid, out)


def rope_cos_sin_f64(positions, inv_freq) -> tuple[np.ndarray, np.ndarray]:
    """float64 ``cos`` and ``sin`` of the angles ``positions[p] * inv_freq[j]``: ``[P, D/2]``."""
    ang = np.multiply.outer(np.asarray(positions, dtype=np.float64),
                            np.asarray(inv_freq, dtype=np.float64))
    return np.cos(ang), np.sin(ang)


def rope_table(positions, inv_freq) -> tuple[np.ndarray, np.ndarray]:
    """The RoPE table the vector unit reads: :func:`rope_cos_sin_f64` rounded once to fp32 (RNE,
    subnormals flushed). Host-side: the compiler stores it; the vector unit never computes it.

    Returns
    -------
    cos, sin : numpy.ndarray
        ``float32 [len(positions), D/2]``.
    """
    cos, sin = rope_cos_sin_f64(positions, inv_freq)
    return flush_f32(cos.astype(np.float32)), flush_f32(sin.astype(np.float32))

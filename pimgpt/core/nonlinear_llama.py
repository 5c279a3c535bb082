"""The vector unit's Llama-family functions: RMSNorm, SiLU, the SwiGLU gated product, RoPE.

Each function is the executable specification of one vector-unit operation, in the style of
:mod:`pimgpt.core.nonlinear`: a fixed sequence of ``f32_add``/``f32_mul``, sign-bit operations and
selects, built only on the contract's primitives (the reduction ``numerics.f32_tree_sum``,
``exp``, ``reciprocal``, ``rsqrt``) so that it follows any change of them. The step lists in the
docstrings are normative (the RTL microcode implements them). The RoPE cos/sin table is computed
on the host (float64, rounded once to fp32), not by the vector unit: :mod:`pimgpt.core.rope`.
``docs/numerics.md`` section 9 gives the measured errors.
"""

from __future__ import annotations

import numpy as np

from pimgpt.core.nonlinear import (
    _F1,
    _SIGN,
    _abs,
    _as_f32,
    _bits,
    _canonical_nan,
    _check_vector,
    _neg,
    exp,
    reciprocal,
    rsqrt,
)
from pimgpt.core.numerics import f32_add, f32_mul, f32_tree_sum


def rmsnorm(x, gamma, eps) -> np.ndarray:
    """RMSNorm along the last axis (Llama's ``LlamaRMSNorm``); 1-D or batched.

    Algorithm for each vector ``x[0..n-1]`` (after DAZ; ``sum`` is the vector unit's reduction,
    the same one ``layernorm`` uses):

    1. ``inv_n = reciprocal(float(n))``.
    2. ``ms = mul(sum(mul(x[i], x[i])), inv_n)`` (mean square; no mean is subtracted).
    3. ``rstd = rsqrt(add(ms, eps))``.
    4. ``y[i] = mul(mul(x[i], rstd), gamma[i])`` (normalise, then scale, as Hugging Face does).

    Parameters
    ----------
    x : array_like of float32
        Inputs, shape ``(..., n)`` with ``n >= 1``.
    gamma : array_like of float32
        Scale, shape ``(n,)`` (or broadcastable to ``x``).
    eps : float
        Epsilon, rounded to fp32.

    Returns
    -------
    numpy.ndarray
        ``float32`` outputs, same shape as ``x``.
    """
    x = _check_vector("rmsnorm", x)
    gamma = _as_f32(gamma)
    try:
        np.broadcast_shapes(gamma.shape, x.shape)
    except ValueError as err:
        raise ValueError(f"rmsnorm gamma shape {gamma.shape} does not fit x shape {x.shape}") \
            from err
    rstd = _rms_rstd(x, eps)
    return np.asarray(f32_mul(f32_mul(x, rstd[..., None]), gamma), dtype=np.float32)


def _rms_rstd(x: np.ndarray, eps) -> np.ndarray:
    """Steps 1-3 of :func:`rmsnorm` on DAZ'd ``x``."""
    inv_n = reciprocal(np.float32(x.shape[-1]))
    ms = f32_mul(f32_tree_sum(f32_mul(x, x)), inv_n)
    return rsqrt(f32_add(ms, _as_f32(eps)))


def rmsnorm_rstd(x, eps) -> np.ndarray:
    """``rstd`` of :func:`rmsnorm` (steps 1-3, the same bits; ``RMSRSTD``): an RMSNorm folded
    into the GEMV it feeds takes ``bf16(mul(x, gamma))`` as the GEMV's input and scales the fp32
    results by ``rstd`` (``docs/numerics.md``).

    Parameters
    ----------
    x : array_like of float32
        Inputs, shape ``(..., n)``, ``n >= 1``.
    eps : float
        Epsilon, rounded to fp32.

    Returns
    -------
    numpy.ndarray
        ``float32``, shape ``x.shape[:-1]``.
    """
    x = _check_vector("rmsnorm_rstd", x)
    return np.asarray(_rms_rstd(x, eps), dtype=np.float32)


def silu(x) -> np.ndarray:
    """Element-wise SiLU, ``x * sigmoid(x)`` (the gate activation of SwiGLU).

    The sigmoid is evaluated on ``-|x|`` so that ``exp`` never overflows, as in ``nonlinear.gelu``.

    Algorithm (``x`` after DAZ):

    1. ``z = exp(neg(abs(x)))``  (``z`` in [0, 1])
    2. ``s = reciprocal(add(1.0, z))``  (``s = sigmoid(|x|)`` in [0.5, 1])
    3. ``g = s`` if the sign bit of ``x`` is clear, else ``g = mul(z, s)`` (``sigmoid(x) =
       1 - sigmoid(|x|) = z * s`` for negative ``x``; select)
    4. ``y = mul(x, g)``
    5. Specials (select): NaN -> canonical NaN; ``-Inf -> -0`` (step 4 would give ``-Inf * 0``).

    ``silu(-0) = -0``; for ``x`` below about -87.3, ``z`` flushes to +0 and the result is -0.

    Parameters
    ----------
    x : array_like of float32
        Arguments.

    Returns
    -------
    numpy.ndarray
        ``float32`` results, same shape.
    """
    x = _as_f32(x)
    z = exp(_neg(_abs(x)))
    s = reciprocal(f32_add(_F1, z))
    g = np.where((_bits(x) & _SIGN) != 0, f32_mul(z, s), s)
    y = f32_mul(x, g)
    y = np.where(np.isneginf(x), np.float32(-0.0), y)
    y = np.where(np.isnan(x), _canonical_nan(x.shape), y)
    return np.asarray(y, dtype=np.float32)


def swiglu(gate, up) -> np.ndarray:
    """The SwiGLU gated product ``silu(gate) * up``, element-wise.

    Algorithm: ``y[i] = mul(silu(gate[i]), up[i])`` with :func:`silu` as stated there.

    Parameters
    ----------
    gate, up : array_like of float32
        The two halves of the MLP's first projection (same shape).

    Returns
    -------
    numpy.ndarray
        ``float32`` results, same shape.
    """
    gate = _as_f32(gate)
    up = _as_f32(up)
    if gate.shape != up.shape:
        raise ValueError(f"swiglu gate shape {gate.shape} differs from up shape {up.shape}")
    return np.asarray(f32_mul(silu(gate), up), dtype=np.float32)


def rope(x, cos, sin) -> np.ndarray:
    """Rotary position embedding of one or more heads, rotate-half convention.

    Each head ``x[0..D-1]`` (``D`` even, ``h = D/2``) is rotated pairwise, element ``i`` with
    element ``i + h``, by the angles whose cosines and sines are ``cos[0..h-1]``, ``sin[0..h-1]``
    (one row of :func:`pimgpt.core.rope.rope_table`). For ``i < h`` (after DAZ):

    1. ``y[i]     = add(mul(x[i], cos[i]), neg(mul(x[i + h], sin[i])))``
    2. ``y[i + h] = add(mul(x[i + h], cos[i]), mul(x[i], sin[i]))``

    This is Hugging Face's ``x * cos + rotate_half(x) * sin`` with ``cos``/``sin`` repeated over
    both halves.

    Parameters
    ----------
    x : array_like of float32
        Heads, shape ``(..., D)``.
    cos, sin : array_like of float32
        Shape ``(D/2,)`` (or broadcastable to ``x[..., :D/2]``).

    Returns
    -------
    numpy.ndarray
        ``float32`` rotated heads, same shape as ``x``.
    """
    x = _as_f32(x)
    if x.ndim == 0 or x.shape[-1] % 2:
        raise ValueError(f"rope needs an even last axis, got shape {x.shape}")
    h = x.shape[-1] // 2
    cos, sin = _as_f32(cos), _as_f32(sin)
    lo, hi = x[..., :h], x[..., h:]
    y_lo = f32_add(f32_mul(lo, cos), _neg(f32_mul(hi, sin)))
    y_hi = f32_add(f32_mul(hi, cos), f32_mul(lo, sin))
    return np.asarray(np.concatenate([y_lo, y_hi], axis=-1), dtype=np.float32)

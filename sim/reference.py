"""Independent reference forwards (GPT-2 and Llama): the PIM arithmetic of ``docs/dataflow.md``
and float64.

This module shares no code with the compiler (``sw/compiler/``) or the executor
(``sim/golden.py``); it uses only the arithmetic contract (:mod:`pimgpt.core.numerics`), the vector
unit's functions (:mod:`pimgpt.core.nonlinear`, :mod:`pimgpt.core.nonlinear_llama`), the host's
RoPE table (:mod:`pimgpt.core.rope`) and the weight-shape check of
:mod:`pimgpt.sw.checkpoint`. Two models:

* ``pim_*``: exactly the arithmetic of one GPT step in ``docs/dataflow.md`` (bf16 weights, bf16
  K/V caches, chunked bf16 dot products with fp32 accumulation, the vector unit's nonlinear
  functions). A compiled program run on the golden simulator must match it bit for bit.
* ``f64_*``: the same model in float64 with exact math (``np.exp``, ``np.tanh``, true LayerNorm,
  RMSNorm and RoPE) on the float32 weights: the yardstick for the PIM arithmetic's accuracy.

Both follow the architecture fields of :class:`~pimgpt.sw.models.ModelConfig`: LayerNorm or
RMSNorm, learned positions or RoPE (rotate-half; the PIM model reads the fp32 cos/sin table of
:func:`pimgpt.core.rope.rope_table`, the float64 model exact cosines and sines), GELU or
SwiGLU, MHA/GQA/MQA (query head ``a`` attends with K/V head ``a // (n_head / n_kv_head)``), biases
or none, a tied or separate LM head. Weights are ``dict[str, numpy.ndarray]`` in the names and
layout of :mod:`pimgpt.sw.models` (matrices ``[in, out]``).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from pimgpt.core import nonlinear as nl
from pimgpt.core import nonlinear_llama as nll
from pimgpt.core import numerics as nm
from pimgpt.core.rope import rope_cos_sin_f64, rope_table
from pimgpt.sw.models import (
    ModelConfig,
    folded_gain_weight,
    folded_ln_bias,
    folds_layernorm_shift,
    folds_norm,
    folds_rmsnorm_gain,
)

from .reference_checks import (
    ReferenceModelError,
    _check_capacity,
    _check_gb,
    _check_lengths,
    _check_model,
    _check_pos,
    _check_tokens,
)
from .reference_folds import f64_folds

MAC_LANES = nm.MAC_LANES
#: Output neurons per dot_bf16 call: bounds the temporaries (about 100 bytes per product).
_ROW_BLOCK = 4096


# ---------------------------------------------------------------------------------------------
# The in-bank dot products of docs/dataflow.md
# ---------------------------------------------------------------------------------------------
def _pad16(x16: np.ndarray) -> np.ndarray:
    """Pad the last axis of bf16 patterns with +0 to a multiple of 16."""
    k = x16.shape[-1]
    pad = (-k) % MAC_LANES
    if not pad:
        return x16
    widths = [(0, 0)] * (x16.ndim - 1) + [(0, pad)]
    return np.pad(x16, widths, constant_values=np.uint16(0))


def _dot_rows(a16: np.ndarray, b16: np.ndarray) -> np.ndarray:
    """``numerics.dot_bf16`` of ``a16 [..., K]`` against ``b16 [..., N, K]``-style operands,
    blocked over the second-to-last axis of ``b16`` when it is large (results are unchanged)."""
    if b16.ndim >= 2 and b16.shape[-2] > _ROW_BLOCK:
        parts = [
            nm.dot_bf16(a16, b16[..., r:r + _ROW_BLOCK, :])
            for r in range(0, b16.shape[-2], _ROW_BLOCK)
        ]
        return np.concatenate(parts, axis=-1)
    return nm.dot_bf16(a16, b16)


def segdot(a16, b16, lo: int, hi: int, gb_elems: int | None = None) -> np.ndarray:
    """The in-bank dot product over the index range ``[lo, hi)`` (``docs/dataflow.md``).

    One ``dot_bf16``: an accumulator from +0 steps through the 16-element columns of the range in
    order, whatever the global-buffer chunks the compiler streams them in (the accumulator keeps
    its value from one chunk to the next). ``lo`` must be a multiple of 16 and ``hi`` a multiple
    of 16 or the end; operands are zero-padded to a multiple of 16 first.

    Parameters
    ----------
    a16 : array_like of uint16, shape (..., K)
        bf16 patterns (typically one vector, broadcast against ``b16``).
    b16 : array_like of uint16, shape (..., K)
        bf16 patterns (e.g. ``[N, K]``: one dot per row).
    lo, hi : int
        Index range.
    gb_elems : int, optional
        Accepted for older callers; the result does not depend on it.

    Returns
    -------
    numpy.ndarray
        ``float32`` dot products, the broadcast leading shape.
    """
    a16 = _pad16(np.asarray(a16, dtype=np.uint16))
    b16 = _pad16(np.asarray(b16, dtype=np.uint16))
    hi = min(hi + (-hi) % MAC_LANES, a16.shape[-1])
    if lo % MAC_LANES or not 0 <= lo < hi:
        raise ValueError(f"segdot over the range [{lo}, {hi}): not 16-aligned or empty")
    return _dot_rows(a16[..., lo:hi], b16[..., lo:hi])


def chunkdot(a16, b16, gb_elems: int | None = None) -> np.ndarray:
    """The in-bank dot product of whole vectors (:func:`segdot` over ``[0, K)``).

    Parameters
    ----------
    a16, b16 : array_like of uint16, shape (..., K)
        bf16 patterns, broadcast together (e.g. a vector ``[K]`` against a matrix ``[N, K]``).
    gb_elems : int, optional
        Accepted for older callers; the result does not depend on it.

    Returns
    -------
    numpy.ndarray
        ``float32`` results of the broadcast leading shape.
    """
    a16 = np.asarray(a16, dtype=np.uint16)
    return segdot(a16, b16, 0, a16.shape[-1])


# ---------------------------------------------------------------------------------------------
# The PIM-arithmetic model
# ---------------------------------------------------------------------------------------------
def _bf16(x) -> np.ndarray:
    return nm.f32_to_bf16(np.asarray(x, dtype=np.float32))


def _widen(x16) -> np.ndarray:
    return nm.bf16_to_f32(x16)


class PimModel:
    """A decoder with the arithmetic of ``docs/dataflow.md``, one step per token, with K/V caches.

    Parameters
    ----------
    cfg : ModelConfig
        Model shape and architecture.
    weights : dict of str to numpy.ndarray
        float32 weights (pimgpt names, matrices ``[in, out]``); rounded to bf16 here.
    gb_elems : int
        Global-buffer size G in elements (``HwConfig.dram.gb_elems``), validated; the arithmetic
        does not depend on it (the chunks of a dot product accumulate in the bank).
    capacity : int, optional
        Positions the K/V caches hold (default ``cfg.ctx``; fewer save memory).
    late_norm_at : collection of int, optional
        Positions whose steps multiply ``p . V``'s outputs by each row's ``1/sum`` instead of
        the probabilities (``SOFTMAXU``, ``docs/dataflow.md``): the compiler's choice, which its
        steps record (:func:`pimgpt.sw.compiler.late_norm_positions`). Default none.

    Attributes
    ----------
    last_xf : numpy.ndarray or None
        The fp32 output of the final norm of the last step that computed logits.
    """

    def __init__(self, cfg: ModelConfig, weights: dict, gb_elems: int, capacity=None,
                 late_norm_at=()):
        _check_model(cfg, weights)
        self.cfg = cfg
        self.late_norm_at = frozenset(int(p) for p in late_norm_at)
        self.G = _check_gb(gb_elems)
        self.capacity = _check_capacity(cfg, capacity)
        self.eps = np.float32(cfg.ln_eps)
        # The score scale is the fp32 constant nearest 1/sqrt(d_head).
        self.scale = np.float32(1.0 / math.sqrt(cfg.d_head))

        def mat(name, w=None):  # [in, out] -> one bf16 vector per output neuron, [out, in]
            return np.ascontiguousarray(_bf16(weights[name] if w is None else w).T)

        def vec(name):  # w(.) of a 1-D parameter
            return _widen(_bf16(weights[name]))

        def linear(name, norm=None):
            if norm is not None and folds_layernorm_shift(cfg):  # the shift in the bias
                c = folded_ln_bias(weights[name + ".weight"], weights[norm + ".bias"],
                                   weights[name + ".bias"])
                return mat(name + ".weight"), _widen(_bf16(c))
            if norm is not None and folds_rmsnorm_gain(cfg):  # the gain in the weights
                w = folded_gain_weight(weights[name + ".weight"], weights[norm + ".weight"])
                return mat(name + ".weight", w), vec(name + ".bias") if cfg.bias else None
            return mat(name + ".weight"), vec(name + ".bias") if cfg.bias else None

        def norm(name):
            return vec(name + ".weight"), vec(name + ".bias") if cfg.norm == "layernorm" else None

        self.fold = folds_norm(cfg)
        self.wte16 = _bf16(weights["wte"])
        self.wpe16 = _bf16(weights["wpe"]) if cfg.position == "learned" else None
        self.head16 = self.wte16 if cfg.tied_head else _bf16(weights["lm_head"])
        self.inv_freq = cfg.rope_inv_freq()
        self.layers = []
        for i in range(cfg.n_layer):
            p = f"h.{i}."
            self.layers.append({
                "ln1": norm(p + "ln_1"), "attn": linear(p + "attn.c_attn", p + "ln_1"),
                "proj": linear(p + "attn.c_proj"), "ln2": norm(p + "ln_2"),
                "fc": linear(p + "mlp.c_fc", p + "ln_2"), "fcproj": linear(p + "mlp.c_proj"),
            })
        self.lnf = norm("ln_f")
        self.last_xf = None
        self.reset()

    def reset(self) -> None:
        """Empty the K/V caches (K row ``pos`` per token; V stored transposed, column ``pos``)."""
        kv, cap = self.cfg.kv_dim, self.capacity
        self.k_cache = [np.zeros((cap, kv), np.uint16) for _ in range(self.cfg.n_layer)]
        self.v_cache = [np.zeros((kv, cap), np.uint16) for _ in range(self.cfg.n_layer)]

    def linear(self, x, layer: tuple) -> np.ndarray:
        """``y_j = chunkdot(bf16(x), W[:, j])``, then ``f32_add(y_j, w(bias_j))`` with biases."""
        w16, bias = layer
        y = chunkdot(_bf16(x), w16)
        return y if bias is None else nm.f32_add(y, bias)

    def normed_linear(self, x, norm: tuple, layer: tuple) -> np.ndarray:
        """``linear(norm(x))``, or the norm folded into the GEMV (``normlinear`` of
        ``docs/dataflow.md``): ``y_j = f32_mul(chunkdot(bf16(hc), W[:, j]), rstd)``, plus
        ``w(c_j)`` with biases (``f32_add``), where LayerNorm: ``hc = layernorm_centre(x, gain)``
        and ``c`` the folded bias (:func:`pimgpt.sw.models.folded_ln_bias`); RMSNorm:
        ``hc = x``, the gain being in the weights (:func:`pimgpt.sw.models.folded_gain_weight`),
        and ``c`` the bias."""
        if not self.fold:
            return self.linear(self.norm(x, norm), layer)
        (gain, shift), (w16, c) = norm, layer
        if shift is None:
            hc, rstd = x, nll.rmsnorm_rstd(x, self.eps)
        else:
            hc, (_, rstd) = nl.layernorm_centre(x, gain), nl.layernorm_stats(x, self.eps)
        y = nm.f32_mul(chunkdot(_bf16(hc), w16), rstd)
        return y if c is None else nm.f32_add(y, c)

    def norm(self, x, params: tuple) -> np.ndarray:
        """LayerNorm (gain, shift) or RMSNorm (gain) of the vector unit."""
        gain, shift = params
        if shift is None:
            return nll.rmsnorm(x, gain, self.eps)
        return nl.layernorm(x, gain, shift, self.eps)

    def attention(self, li: int, q, k, v, pos: int) -> np.ndarray:
        """Store ``k``/``v`` at ``pos`` and attend every query head; the heads' outputs ``[d]``."""
        cfg, dh, H = self.cfg, self.cfg.d_head, self.cfg.n_head
        kc, vc = self.k_cache[li], self.v_cache[li]
        kc[pos] = _bf16(k)
        vc[:, pos] = _bf16(v)
        q16 = _bf16(q).reshape(H, dh)
        keys = kc[:pos + 1].reshape(pos + 1, cfg.n_kv_head, dh)
        g = np.arange(H) // cfg.group  # query head a attends with K/V head a // group
        scores = np.stack([chunkdot(q16[a], keys[:, g[a]]) for a in range(H)])  # [heads, pos+1]
        x, vt = nm.f32_mul(scores, self.scale), vc[:, :pos + 1].reshape(cfg.n_kv_head, dh, -1)[g]
        if pos in self.late_norm_at:  # SOFTMAXU, then o times each row's 1/sum
            e, r = nl.softmax_parts(x)
            o = chunkdot(_bf16(e)[:, None, :], vt).reshape(H, dh)
            return nm.f32_mul(o, r[:, None]).reshape(cfg.d_model)
        return chunkdot(_bf16(nl.softmax(x))[:, None, :], vt).reshape(cfg.d_model)

    def step(self, tok: int, pos: int, need_logits: bool) -> np.ndarray | None:
        """Process token ``tok`` at position ``pos``; return fp32 logits if ``need_logits``."""
        cfg = self.cfg
        _check_pos(pos, self.capacity)
        d, kv, dh = cfg.d_model, cfg.kv_dim, cfg.d_head
        x = _widen(self.wte16[tok])
        if self.wpe16 is not None:
            x = nm.f32_add(x, _widen(self.wpe16[pos]))
        if self.inv_freq is not None:
            cos, sin = (t[0] for t in rope_table([pos], self.inv_freq))
        for li, L in enumerate(self.layers):
            qkv = self.normed_linear(x, L["ln1"], L["attn"])
            q, k, v = qkv[:d], qkv[d:d + kv], qkv[d + kv:]
            if self.inv_freq is not None:
                q = nll.rope(q.reshape(cfg.n_head, dh), cos, sin).reshape(d)
                k = nll.rope(k.reshape(cfg.n_kv_head, dh), cos, sin).reshape(kv)
            x = nm.f32_add(x, self.linear(self.attention(li, q, k, v, pos), L["proj"]))
            u = self.normed_linear(x, L["ln2"], L["fc"])
            a = nl.gelu(u) if cfg.mlp == "gelu" else nll.swiglu(u[:cfg.d_ff], u[cfg.d_ff:])
            x = nm.f32_add(x, self.linear(a, L["fcproj"]))
        if not need_logits:
            return None
        xf = self.norm(x, self.lnf)
        self.last_xf = xf
        return chunkdot(_bf16(xf), self.head16)


def _first_argmax(logits: np.ndarray) -> int:
    return int(np.argmax(logits))  # numpy returns the first index of the maximum


def _generate(model, prompt: list[int], new_tokens: int):
    tokens, logits_list = [], []
    if new_tokens == 0:
        return tokens, logits_list
    n = len(prompt)
    for pos, tok in enumerate(prompt):
        out = model.step(tok, pos, need_logits=pos == n - 1)
    logits_list.append(out)
    tokens.append(_first_argmax(out))
    for i in range(1, new_tokens):
        out = model.step(tokens[-1], n + i - 1, need_logits=True)
        logits_list.append(out)
        tokens.append(_first_argmax(out))
    return tokens, logits_list


def pim_generate(cfg: ModelConfig, weights: dict, gb_elems: int, prompt: Sequence[int],
                 new_tokens: int, late_norm_at=()) -> tuple[list[int], list[np.ndarray]]:
    """Greedy generation with the PIM arithmetic of ``docs/dataflow.md``.

    One step per token: the prompt tokens at positions ``0..len(prompt)-1`` (logits only at the
    last), then each generated token but the last is fed back at the next position.

    Parameters
    ----------
    cfg : ModelConfig
        Model shape.
    weights : dict of str to numpy.ndarray
        float32 weights, pimgpt names.
    gb_elems : int
        Global-buffer size G (``HwConfig.dram.gb_elems``), a positive multiple of 16; see
        :class:`PimModel`.
    prompt : sequence of int
        Prompt token ids (at least one).
    new_tokens : int
        Tokens to generate; ``len(prompt) + new_tokens - 1 <= cfg.ctx``.
    late_norm_at : collection of int, optional
        See :class:`PimModel`.

    Returns
    -------
    tokens : list of int
        The generated tokens (first index of the maximum logit), ``new_tokens`` of them.
    logits_list : list of numpy.ndarray
        ``logits_list[i]`` (float32, length ``vocab``) produced ``tokens[i]``.

    Raises
    ------
    ReferenceModelError
        For bad tokens, lengths or ``gb_elems``; ``ModelError`` for weights that do not fit.
    """
    prompt = _check_tokens(cfg, prompt, "prompt")
    new_tokens = _check_lengths(cfg, len(prompt), new_tokens)
    capacity = len(prompt) + max(new_tokens, 1) - 1
    return _generate(PimModel(cfg, weights, gb_elems, capacity, late_norm_at), prompt,
                     new_tokens)


def pim_logits_teacher_forced(cfg: ModelConfig, weights: dict, gb_elems: int,
                              tokens: Sequence[int], late_norm_at=()) -> np.ndarray:
    """PIM-arithmetic logits at every position of ``tokens`` (for perplexity;
    ``late_norm_at``: see :class:`PimModel`).

    Returns
    -------
    numpy.ndarray
        float32 ``[len(tokens), vocab]``; row ``i`` predicts token ``i + 1``.
    """
    tokens = _check_tokens(cfg, tokens, "tokens")
    _check_lengths(cfg, len(tokens), 1)
    model = PimModel(cfg, weights, gb_elems, len(tokens), late_norm_at)
    return np.stack([model.step(t, pos, need_logits=True) for pos, t in enumerate(tokens)])


# ---------------------------------------------------------------------------------------------
# The float64 model
# ---------------------------------------------------------------------------------------------
def round_bf16_f64(x) -> np.ndarray:
    """float64 values rounded to the nearest bf16 value (8 significant bits, ties to even).

    A single rounding (no detour through fp32); the exponent range is not limited, which does not
    matter for the activations of these models.
    """
    m, e = np.frexp(np.asarray(x, dtype=np.float64))
    return np.ldexp(np.rint(m * 256.0) / 256.0, e)


def _exact(x):
    return x


class F64Model:
    """The same decoder in float64 with exact math on the float32 weights.

    :meth:`step` runs one token at a time with K/V caches; :meth:`logits` runs whole sequences
    teacher forced at once (causal attention), up to float64 summation order the same. The
    rounding hooks round one group of values to bf16 (the ablation of ``pimgpt accuracy``); with
    all of them off (the default) the math is exact.

    Parameters
    ----------
    cfg : ModelConfig
        Model shape and architecture.
    weights : dict of str to numpy.ndarray
        float32 weights, pimgpt names.
    capacity : int, optional
        Positions the K/V caches of :meth:`step` hold (default ``cfg.ctx``).
    bf16_weights : bool
        Use the bf16 weights the PIM DRAM holds (``f32_to_bf16``), all of them.
    bf16_acts : bool
        Round what the PIM dataflow writes to the global buffer to bf16 (:func:`round_bf16_f64`):
        the inputs of every linear layer (norm outputs, attention output, GELU or SwiGLU output),
        ``q`` (after RoPE), the softmax probabilities and the final norm output.
    bf16_kv : bool
        Round the keys (after RoPE) and values stored in the K/V caches.
    """

    def __init__(self, cfg: ModelConfig, weights: dict, capacity=None, *,
                 bf16_weights: bool = False, bf16_acts: bool = False, bf16_kv: bool = False):
        _check_model(cfg, weights)
        self.cfg = cfg
        self.capacity = _check_capacity(cfg, capacity)
        given = weights
        if bf16_weights:
            weights = {k: nm.bf16_to_f32(nm.f32_to_bf16(np.asarray(v, np.float32)))
                       for k, v in weights.items()}
        self.w = {k: np.asarray(v, dtype=np.float64) for k, v in weights.items()}
        # The folded norms' biases and weights (exact, or as the DRAM stores them).
        self.c, self.wg = f64_folds(cfg, given, self.w, bf16_weights)
        self.act = round_bf16_f64 if bf16_acts else _exact
        self.kv = round_bf16_f64 if bf16_kv else _exact
        self.last_xf = None
        self.k_cache = np.zeros((cfg.n_layer, self.capacity, cfg.kv_dim))
        self.v_cache = np.zeros((cfg.n_layer, self.capacity, cfg.kv_dim))
        self.inv_freq = cfg.rope_inv_freq()

    def _norm(self, x, name):
        eps, gain = self.cfg.ln_eps, self.w[name + ".weight"]
        if self.cfg.norm == "rmsnorm":
            return x / np.sqrt((x * x).mean(axis=-1, keepdims=True) + eps) * gain
        mu = x.mean(axis=-1, keepdims=True)
        var = ((x - mu) ** 2).mean(axis=-1, keepdims=True)
        return (x - mu) / np.sqrt(var + eps) * gain + self.w[name + ".bias"]

    def _normed_linear(self, x, ln: str, name: str):
        """``linear(norm(x))``; with the PIM's norm folded into the GEMV (``normlinear`` of
        ``docs/dataflow.md``) the same in exact arithmetic, but the global buffer's rounding
        (``bf16_acts``) applies to ``(x - mean) * gain`` (RMSNorm: to ``x``, the gain being in
        the weights) and the folded bias or weights are the ones the DRAM holds
        (``bf16_weights``)."""
        if not folds_norm(self.cfg):
            return self._linear(self.act(self._norm(x, ln)), name)
        eps, gain = self.cfg.ln_eps, self.w[ln + ".weight"]
        if self.cfg.norm == "rmsnorm":
            hc, var = x, (x * x).mean(axis=-1, keepdims=True)
        else:
            hc = x - x.mean(axis=-1, keepdims=True)
            var = (hc * hc).mean(axis=-1, keepdims=True)
        w = self.w[name + ".weight"]
        if name in self.wg:
            w, gain = self.wg[name], 1.0
        y = (self._mm(self.act(hc * gain), w) if x.ndim > 1 else self.act(hc * gain) @ w)
        y = y / np.sqrt(var + eps)
        return y + self.c[name] if name in self.c else (y + self.w[name + ".bias"]
                                                        if self.cfg.bias else y)

    @staticmethod
    def _mm(x, m):
        # One 2-D product: numpy's stacked (3-D @ 2-D) matmul is ~50x slower here.
        return (x.reshape(-1, x.shape[-1]) @ m).reshape(*x.shape[:-1], m.shape[1])

    def _linear(self, x, name):
        y = self._mm(x, self.w[name + ".weight"]) if x.ndim > 1 else x @ self.w[name + ".weight"]
        return y + self.w[name + ".bias"] if self.cfg.bias else y

    def _mlp_act(self, u):
        """GELU (tanh form) of ``u``, or SwiGLU of its two halves ``[gate | up]``."""
        if self.cfg.mlp == "gelu":
            return 0.5 * u * (1.0 + np.tanh(math.sqrt(2.0 / math.pi) * (u + 0.044715 * u**3)))
        gate, up = u[..., :self.cfg.d_ff], u[..., self.cfg.d_ff:]
        z = np.exp(-np.abs(gate))  # sigmoid without overflow or cancellation
        return gate * np.where(gate >= 0, 1.0 / (1.0 + z), z / (1.0 + z)) * up

    @staticmethod
    def _rope(x, cos, sin):
        """Rotate-half RoPE of heads ``x [..., D]`` by float64 ``cos``/``sin`` ``[..., D/2]``."""
        h = x.shape[-1] // 2
        lo, hi = x[..., :h], x[..., h:]
        return np.concatenate([lo * cos - hi * sin, hi * cos + lo * sin], axis=-1)

    def step(self, tok: int, pos: int, need_logits: bool) -> np.ndarray | None:
        """Process token ``tok`` at position ``pos``; return float64 logits if ``need_logits``."""
        cfg, w, A = self.cfg, self.w, self.act
        _check_pos(pos, self.capacity)
        d, dh, H, KV, kv = cfg.d_model, cfg.d_head, cfg.n_head, cfg.n_kv_head, cfg.kv_dim
        x = w["wte"][tok] + (w["wpe"][pos] if cfg.position == "learned" else 0.0)
        if self.inv_freq is not None:
            cos, sin = (t[0] for t in rope_cos_sin_f64([pos], self.inv_freq))
        for i in range(cfg.n_layer):
            p = f"h.{i}."
            qkv = self._normed_linear(x, p + "ln_1", p + "attn.c_attn")
            q, k, v = qkv[:d].reshape(H, dh), qkv[d:d + kv].reshape(KV, dh), qkv[d + kv:]
            if self.inv_freq is not None:
                q, k = self._rope(q, cos, sin), self._rope(k, cos, sin)
            q = A(q)
            self.k_cache[i, pos] = self.kv(k.reshape(kv))
            self.v_cache[i, pos] = self.kv(v)
            keys = self.k_cache[i, :pos + 1].reshape(pos + 1, KV, dh)
            vals = self.v_cache[i, :pos + 1].reshape(pos + 1, KV, dh)
            # Query head a = g * group + j attends with K/V head g.
            s = np.einsum("gjd,tgd->gjt", q.reshape(KV, cfg.group, dh), keys) / math.sqrt(dh)
            e = np.exp(s - s.max(axis=-1, keepdims=True))
            prob = A(e / e.sum(axis=-1, keepdims=True))
            o = A(np.einsum("gjt,tgd->gjd", prob, vals).reshape(d))
            x = x + self._linear(o, p + "attn.c_proj")
            u = self._normed_linear(x, p + "ln_2", p + "mlp.c_fc")
            x = x + self._linear(A(self._mlp_act(u)), p + "mlp.c_proj")
        if not need_logits:
            return None
        xf = A(self._norm(x, "ln_f"))
        self.last_xf = xf
        return (w["wte"] if cfg.tied_head else w["lm_head"]) @ xf

    def logits(self, tokens) -> np.ndarray:
        """float64 logits of whole sequences, teacher forced; row ``i`` predicts token ``i + 1``.

        Parameters
        ----------
        tokens : array_like of int, shape (T,) or (B, T)
            One sequence, or a batch of equal-length sequences (evaluated independently).

        Returns
        -------
        numpy.ndarray
            ``[T, vocab]`` or ``[B, T, vocab]``.
        """
        cfg, w, A = self.cfg, self.w, self.act
        toks = np.asarray(tokens, dtype=np.int64)
        single = toks.ndim == 1
        toks = np.atleast_2d(toks)
        B, T = toks.shape
        d, dh, H, KV, kv = cfg.d_model, cfg.d_head, cfg.n_head, cfg.n_kv_head, cfg.kv_dim
        x = w["wte"][toks] + (w["wpe"][:T] if cfg.position == "learned" else 0.0)
        if self.inv_freq is not None:
            cos, sin = (t[:, None, :] for t in rope_cos_sin_f64(np.arange(T), self.inv_freq))
        mask = np.triu(np.ones((T, T), dtype=bool), 1)
        for i in range(cfg.n_layer):
            p = f"h.{i}."
            qkv = self._normed_linear(x, p + "ln_1", p + "attn.c_attn")
            q = qkv[..., :d].reshape(B, T, H, dh)
            k = qkv[..., d:d + kv].reshape(B, T, KV, dh)
            v = self.kv(qkv[..., d + kv:]).reshape(B, T, KV, dh)
            if self.inv_freq is not None:
                q, k = self._rope(q, cos, sin), self._rope(k, cos, sin)
            q, k = A(q).reshape(B, T, KV, cfg.group, dh), self.kv(k)
            s = np.einsum("btgjd,bugd->bgjtu", q, k) / math.sqrt(dh)
            s[..., mask] = -np.inf
            e = np.exp(s - s.max(axis=-1, keepdims=True))
            prob = A(e / e.sum(axis=-1, keepdims=True))
            o = A(np.einsum("bgjtu,bugd->btgjd", prob, v).reshape(B, T, d))
            x = x + self._linear(o, p + "attn.c_proj")
            u = self._normed_linear(x, p + "ln_2", p + "mlp.c_fc")
            x = x + self._linear(A(self._mlp_act(u)), p + "mlp.c_proj")
        head = w["wte"] if cfg.tied_head else w["lm_head"]
        out = self._mm(A(self._norm(x, "ln_f")), head.T)
        return out[0] if single else out


def f64_generate(cfg: ModelConfig, weights: dict, prompt: Sequence[int],
                 new_tokens: int) -> tuple[list[int], list[np.ndarray]]:
    """Greedy generation with the float64 model; as :func:`pim_generate` without ``gb_elems``.

    Returns
    -------
    tokens : list of int
        Generated tokens.
    logits_list : list of numpy.ndarray
        float64 logits; ``logits_list[i]`` produced ``tokens[i]``.
    """
    prompt = _check_tokens(cfg, prompt, "prompt")
    new_tokens = _check_lengths(cfg, len(prompt), new_tokens)
    capacity = len(prompt) + max(new_tokens, 1) - 1
    return _generate(F64Model(cfg, weights, capacity), prompt, new_tokens)


def f64_logits_teacher_forced(cfg: ModelConfig, weights: dict,
                              tokens: Sequence[int]) -> np.ndarray:
    """float64 logits at every position of ``tokens``: ``[len(tokens), vocab]``."""
    tokens = _check_tokens(cfg, tokens, "tokens")
    _check_lengths(cfg, len(tokens), 1)
    model = F64Model(cfg, weights, len(tokens))
    return np.stack([model.step(t, pos, need_logits=True) for pos, t in enumerate(tokens)])


__all__ = ["F64Model", "PimModel", "ReferenceModelError", "chunkdot", "f64_generate",
           "f64_logits_teacher_forced", "pim_generate", "pim_logits_teacher_forced",
           "round_bf16_f64", "segdot"]

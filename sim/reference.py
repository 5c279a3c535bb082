"""Independent reference GPT-2 forwards: the PIM arithmetic of ``docs/dataflow.md`` and float64.

This module shares no code with the compiler (``sw/compiler/``) or the executor
(``sim/golden.py``); it uses only the arithmetic contract (:mod:`pimgpt.core.numerics`), the vector
unit's functions (:mod:`pimgpt.core.nonlinear`) and the weight-shape check of
:mod:`pimgpt.sw.checkpoint`. Two models:

* ``pim_*``: exactly the arithmetic of one GPT step in ``docs/dataflow.md`` (bf16 weights, bf16
  K/V caches, chunked bf16 dot products with fp32 accumulation, the vector unit's nonlinear
  functions). A compiled program run on the golden simulator must match it bit for bit.
* ``f64_*``: the same GPT-2 in float64 with exact math (``np.exp``, ``np.tanh``, true LayerNorm) on
  the float32 weights: the yardstick for the PIM arithmetic's accuracy.

Weights are ``dict[str, numpy.ndarray]`` in the names and layout of :mod:`pimgpt.sw.models`
(Conv1D ``[in, out]``); the LM head is tied to ``wte``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from pimgpt.core import nonlinear as nl
from pimgpt.core import numerics as nm
from pimgpt.core.errors import PimgptError
from pimgpt.sw.models import ModelConfig

MAC_LANES = nm.MAC_LANES
#: Output neurons per dot_bf16 call: bounds the temporaries (about 100 bytes per product).
_ROW_BLOCK = 4096


class ReferenceModelError(PimgptError):
    """Invalid arguments to a reference model (tokens, lengths, buffer size, weights)."""


# ---------------------------------------------------------------------------------------------
# The chunked dot products of docs/dataflow.md
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


def segdot(a16, b16, lo: int, hi: int, gb_elems: int) -> np.ndarray:
    """Dot product over the index range ``[lo, hi)`` with chunk boundaries at multiples of G.

    ``docs/dataflow.md``: the range is cut at every multiple of ``gb_elems``; each piece is one
    ``dot_bf16`` (accumulator from +0, columns in order); the pieces are added left to right with
    ``f32_add`` (a single piece is returned as is). ``lo`` and ``hi`` must be multiples of 16 or
    ``hi`` the padded end; operands are zero-padded to a multiple of 16 first.

    Parameters
    ----------
    a16 : array_like of uint16, shape (..., K)
        bf16 patterns (typically one vector, broadcast against ``b16``).
    b16 : array_like of uint16, shape (..., K)
        bf16 patterns (e.g. ``[N, K]``: one dot per row).
    lo, hi : int
        Index range.
    gb_elems : int
        Chunk size G (the global-buffer size in elements).

    Returns
    -------
    numpy.ndarray
        ``float32`` dot products, the broadcast leading shape.
    """
    a16 = _pad16(np.asarray(a16, dtype=np.uint16))
    b16 = _pad16(np.asarray(b16, dtype=np.uint16))
    hi = min(hi + (-hi) % MAC_LANES, a16.shape[-1])
    total = None
    start = lo
    while start < hi:
        end = min(hi, (start // gb_elems + 1) * gb_elems)
        part = _dot_rows(a16[..., start:end], b16[..., start:end])
        total = part if total is None else nm.f32_add(total, part)
        start = end
    if total is None:
        raise ValueError(f"segdot over an empty range [{lo}, {hi})")
    return total


def chunkdot(a16, b16, gb_elems: int) -> np.ndarray:
    """``chunkdot`` of ``docs/dataflow.md``: zero-pad to a multiple of 16, dot each chunk of
    ``gb_elems`` elements from a +0 accumulator, then add the chunk results left to right.

    Parameters
    ----------
    a16, b16 : array_like of uint16, shape (..., K)
        bf16 patterns, broadcast together (e.g. a vector ``[K]`` against a matrix ``[N, K]``).
    gb_elems : int
        Chunk size G.

    Returns
    -------
    numpy.ndarray
        ``float32`` results of the broadcast leading shape.
    """
    a16 = np.asarray(a16, dtype=np.uint16)
    return segdot(a16, b16, 0, a16.shape[-1], gb_elems)


# ---------------------------------------------------------------------------------------------
# Argument checks
# ---------------------------------------------------------------------------------------------
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


# ---------------------------------------------------------------------------------------------
# The PIM-arithmetic model
# ---------------------------------------------------------------------------------------------
def _bf16(x) -> np.ndarray:
    return nm.f32_to_bf16(np.asarray(x, dtype=np.float32))


def _widen(x16) -> np.ndarray:
    return nm.bf16_to_f32(x16)


class PimModel:
    """GPT-2 with the arithmetic of ``docs/dataflow.md``, one step per token, with K/V caches.

    Parameters
    ----------
    cfg : ModelConfig
        Model shape.
    weights : dict of str to numpy.ndarray
        float32 weights (HF GPT-2 names, Conv1D ``[in, out]``); rounded to bf16 here.
    gb_elems : int
        Global-buffer size G in elements (chunk size of every dot product).

    Attributes
    ----------
    last_xf : numpy.ndarray or None
        The fp32 output of the final LayerNorm of the last step that computed logits.
    """

    def __init__(self, cfg: ModelConfig, weights: dict, gb_elems: int):
        _check_model(cfg, weights)
        self.cfg = cfg
        self.G = _check_gb(gb_elems)
        self.eps = np.float32(cfg.ln_eps)
        # The score scale is the fp32 constant nearest 1/sqrt(d_head).
        self.scale = np.float32(1.0 / math.sqrt(cfg.d_head))

        def mat(name):  # Conv1D [in, out] -> one bf16 vector per output neuron, [out, in]
            return np.ascontiguousarray(_bf16(weights[name]).T)

        def vec(name):  # w(.) of a 1-D parameter
            return _widen(_bf16(weights[name]))

        self.wte16 = _bf16(weights["wte"])
        self.wpe16 = _bf16(weights["wpe"])
        self.layers = []
        for i in range(cfg.n_layer):
            p = f"h.{i}."
            self.layers.append({
                "ln1": (vec(p + "ln_1.weight"), vec(p + "ln_1.bias")),
                "attn": (mat(p + "attn.c_attn.weight"), vec(p + "attn.c_attn.bias")),
                "proj": (mat(p + "attn.c_proj.weight"), vec(p + "attn.c_proj.bias")),
                "ln2": (vec(p + "ln_2.weight"), vec(p + "ln_2.bias")),
                "fc": (mat(p + "mlp.c_fc.weight"), vec(p + "mlp.c_fc.bias")),
                "fcproj": (mat(p + "mlp.c_proj.weight"), vec(p + "mlp.c_proj.bias")),
            })
        self.lnf = (vec("ln_f.weight"), vec("ln_f.bias"))
        self.last_xf = None
        self.reset()

    def reset(self) -> None:
        """Empty the K/V caches (K row ``pos`` per token; V stored transposed, column ``pos``)."""
        d, ctx = self.cfg.d_model, self.cfg.ctx
        self.k_cache = [np.zeros((ctx, d), np.uint16) for _ in range(self.cfg.n_layer)]
        self.v_cache = [np.zeros((d, ctx), np.uint16) for _ in range(self.cfg.n_layer)]

    def linear(self, x, layer: tuple) -> np.ndarray:
        """``y_j = f32_add(chunkdot(bf16(x), W[:, j]), w(bias_j))``."""
        w16, bias = layer
        return nm.f32_add(chunkdot(_bf16(x), w16, self.G), bias)

    def step(self, tok: int, pos: int, need_logits: bool) -> np.ndarray | None:
        """Process token ``tok`` at position ``pos``; return fp32 logits if ``need_logits``."""
        cfg, G = self.cfg, self.G
        d, dh = cfg.d_model, cfg.d_head
        x = nm.f32_add(_widen(self.wte16[tok]), _widen(self.wpe16[pos]))
        for li, L in enumerate(self.layers):
            h = nl.layernorm(x, *L["ln1"], self.eps)
            qkv = self.linear(h, L["attn"])
            q, k, v = qkv[:d], qkv[d:2 * d], qkv[2 * d:]
            kc, vc = self.k_cache[li], self.v_cache[li]
            kc[pos] = _bf16(k)
            vc[:, pos] = _bf16(v)
            q16 = _bf16(q)
            keys = kc[:pos + 1]
            scores = np.stack([
                segdot(q16, keys, a * dh, (a + 1) * dh, G) for a in range(cfg.n_head)
            ])  # [heads, pos+1]
            p = nl.softmax(nm.f32_mul(scores, self.scale))
            p16 = _bf16(p)[:, None, :]  # [heads, 1, pos+1]
            vt = vc[:, :pos + 1].reshape(cfg.n_head, dh, pos + 1)
            o = chunkdot(p16, vt, G).reshape(d)
            x = nm.f32_add(x, self.linear(o, L["proj"]))
            h = nl.layernorm(x, *L["ln2"], self.eps)
            m = self.linear(nl.gelu(self.linear(h, L["fc"])), L["fcproj"])
            x = nm.f32_add(x, m)
        if not need_logits:
            return None
        xf = nl.layernorm(x, *self.lnf, self.eps)
        self.last_xf = xf
        return chunkdot(_bf16(xf), self.wte16, G)


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
                 new_tokens: int) -> tuple[list[int], list[np.ndarray]]:
    """Greedy generation with the PIM arithmetic of ``docs/dataflow.md``.

    One step per token: the prompt tokens at positions ``0..len(prompt)-1`` (logits only at the
    last), then each generated token but the last is fed back at the next position.

    Parameters
    ----------
    cfg : ModelConfig
        Model shape.
    weights : dict of str to numpy.ndarray
        float32 weights, HF GPT-2 names.
    gb_elems : int
        Global-buffer size G (``HwConfig.dram.gb_elems``), a positive multiple of 16.
    prompt : sequence of int
        Prompt token ids (at least one).
    new_tokens : int
        Tokens to generate; ``len(prompt) + new_tokens - 1 <= cfg.ctx``.

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
    return _generate(PimModel(cfg, weights, gb_elems), prompt, new_tokens)


def pim_logits_teacher_forced(cfg: ModelConfig, weights: dict, gb_elems: int,
                              tokens: Sequence[int]) -> np.ndarray:
    """PIM-arithmetic logits at every position of ``tokens`` (for perplexity).

    Returns
    -------
    numpy.ndarray
        float32 ``[len(tokens), vocab]``; row ``i`` predicts token ``i + 1``.
    """
    tokens = _check_tokens(cfg, tokens, "tokens")
    _check_lengths(cfg, len(tokens), 1)
    model = PimModel(cfg, weights, gb_elems)
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
    """GPT-2 in float64 with exact math on the float32 weights.

    :meth:`step` runs one token at a time with K/V caches; :meth:`logits` runs whole sequences
    teacher forced at once (causal attention), up to float64 summation order the same. The
    rounding hooks round one group of values to bf16 (the ablation of ``pimgpt accuracy``); with
    all of them off (the default) the math is exact.

    Parameters
    ----------
    cfg : ModelConfig
        Model shape.
    weights : dict of str to numpy.ndarray
        float32 weights, HF GPT-2 names.
    bf16_weights : bool
        Use the bf16 weights the PIM DRAM holds (``f32_to_bf16``), all of them.
    bf16_acts : bool
        Round what the PIM dataflow writes to the global buffer to bf16 (:func:`round_bf16_f64`):
        the inputs of every linear layer (LayerNorm outputs, attention output, GELU output),
        ``q``, the softmax probabilities and the final LayerNorm output.
    bf16_kv : bool
        Round the keys and values stored in the K/V caches.
    """

    def __init__(self, cfg: ModelConfig, weights: dict, *, bf16_weights: bool = False,
                 bf16_acts: bool = False, bf16_kv: bool = False):
        _check_model(cfg, weights)
        self.cfg = cfg
        if bf16_weights:
            weights = {k: nm.bf16_to_f32(nm.f32_to_bf16(np.asarray(v, np.float32)))
                       for k, v in weights.items()}
        self.w = {k: np.asarray(v, dtype=np.float64) for k, v in weights.items()}
        self.act = round_bf16_f64 if bf16_acts else _exact
        self.kv = round_bf16_f64 if bf16_kv else _exact
        self.last_xf = None
        self.k_cache = np.zeros((cfg.n_layer, cfg.ctx, cfg.d_model))
        self.v_cache = np.zeros((cfg.n_layer, cfg.ctx, cfg.d_model))

    def _ln(self, x, name):
        mu = x.mean(axis=-1, keepdims=True)
        var = ((x - mu) ** 2).mean(axis=-1, keepdims=True)
        return (x - mu) / np.sqrt(var + self.cfg.ln_eps) * self.w[name + ".weight"] + self.w[
            name + ".bias"]

    @staticmethod
    def _gelu(x):
        return 0.5 * x * (1.0 + np.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * x**3)))

    def step(self, tok: int, pos: int, need_logits: bool) -> np.ndarray | None:
        """Process token ``tok`` at position ``pos``; return float64 logits if ``need_logits``."""
        cfg, w, A = self.cfg, self.w, self.act
        d, dh, H = cfg.d_model, cfg.d_head, cfg.n_head
        x = w["wte"][tok] + w["wpe"][pos]
        for i in range(cfg.n_layer):
            p = f"h.{i}."
            h = A(self._ln(x, p + "ln_1"))
            qkv = h @ w[p + "attn.c_attn.weight"] + w[p + "attn.c_attn.bias"]
            q, k, v = A(qkv[:d]), self.kv(qkv[d:2 * d]), self.kv(qkv[2 * d:])
            self.k_cache[i, pos] = k
            self.v_cache[i, pos] = v
            keys = self.k_cache[i, :pos + 1].reshape(pos + 1, H, dh)
            vals = self.v_cache[i, :pos + 1].reshape(pos + 1, H, dh)
            s = np.einsum("hd,thd->ht", q.reshape(H, dh), keys) / math.sqrt(dh)
            e = np.exp(s - s.max(axis=-1, keepdims=True))
            prob = A(e / e.sum(axis=-1, keepdims=True))
            o = A(np.einsum("ht,thd->hd", prob, vals).reshape(d))
            x = x + o @ w[p + "attn.c_proj.weight"] + w[p + "attn.c_proj.bias"]
            h = A(self._ln(x, p + "ln_2"))
            u = h @ w[p + "mlp.c_fc.weight"] + w[p + "mlp.c_fc.bias"]
            x = x + A(self._gelu(u)) @ w[p + "mlp.c_proj.weight"] + w[p + "mlp.c_proj.bias"]
        if not need_logits:
            return None
        xf = A(self._ln(x, "ln_f"))
        self.last_xf = xf
        return w["wte"] @ xf

    @staticmethod
    def _mm(x, m):
        # One 2-D product: numpy's stacked (3-D @ 2-D) matmul is ~50x slower here.
        return (x.reshape(-1, x.shape[-1]) @ m).reshape(*x.shape[:-1], m.shape[1])

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
        cfg, w, A, mm = self.cfg, self.w, self.act, self._mm
        toks = np.asarray(tokens, dtype=np.int64)
        single = toks.ndim == 1
        toks = np.atleast_2d(toks)
        B, T = toks.shape
        d, dh, H = cfg.d_model, cfg.d_head, cfg.n_head
        x = w["wte"][toks] + w["wpe"][:T]
        mask = np.triu(np.ones((T, T), dtype=bool), 1)
        for i in range(cfg.n_layer):
            p = f"h.{i}."
            h = A(self._ln(x, p + "ln_1"))
            qkv = mm(h, w[p + "attn.c_attn.weight"]) + w[p + "attn.c_attn.bias"]
            q = A(qkv[..., :d]).reshape(B, T, H, dh)
            k = self.kv(qkv[..., d:2 * d]).reshape(B, T, H, dh)
            v = self.kv(qkv[..., 2 * d:]).reshape(B, T, H, dh)
            s = np.einsum("bthd,buhd->bhtu", q, k) / math.sqrt(dh)
            s[..., mask] = -np.inf
            e = np.exp(s - s.max(axis=-1, keepdims=True))
            prob = A(e / e.sum(axis=-1, keepdims=True))
            o = A(np.einsum("bhtu,buhd->bthd", prob, v).reshape(B, T, d))
            x = x + mm(o, w[p + "attn.c_proj.weight"]) + w[p + "attn.c_proj.bias"]
            h = A(self._ln(x, p + "ln_2"))
            g = A(self._gelu(mm(h, w[p + "mlp.c_fc.weight"]) + w[p + "mlp.c_fc.bias"]))
            x = x + mm(g, w[p + "mlp.c_proj.weight"]) + w[p + "mlp.c_proj.bias"]
        out = mm(A(self._ln(x, "ln_f")), w["wte"].T)
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
    return _generate(F64Model(cfg, weights), prompt, new_tokens)


def f64_logits_teacher_forced(cfg: ModelConfig, weights: dict,
                              tokens: Sequence[int]) -> np.ndarray:
    """float64 logits at every position of ``tokens``: ``[len(tokens), vocab]``."""
    tokens = _check_tokens(cfg, tokens, "tokens")
    _check_lengths(cfg, len(tokens), 1)
    model = F64Model(cfg, weights)
    return np.stack([model.step(t, pos, need_logits=True) for pos, t in enumerate(tokens)])

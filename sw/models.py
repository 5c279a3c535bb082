"""Model descriptions: GPT-2/GPT-3 and Llama-family presets, ``tiny`` for RTL, model YAML files.

A model is a :class:`ModelConfig`. Its architecture is a set of independent choices: the norm
(LayerNorm or RMSNorm), the position scheme (learned table or rotary embeddings, with the Llama 3
frequency scaling), the MLP (GELU or SwiGLU), the number of K/V heads (MHA, GQA, MQA), biases on or
off and a tied or separate LM head. GPT-2 is LayerNorm + learned + GELU + MHA + biases + tied
head (the defaults); Llama is RMSNorm + RoPE + SwiGLU + GQA, no biases, usually an untied head.

Weights are a ``dict[str, numpy.ndarray]`` of float32 arrays in pimgpt names, every matrix stored
``[in, out]`` (GPT-2's Conv1D layout); :func:`weight_shapes` lists them for a config::

    wte [vocab, d]                                  token embedding (and tied LM head)
    wpe [ctx, d]                                    learned positions only
    h.{i}.ln_1.weight [d]    h.{i}.ln_1.bias [d]    the bias for LayerNorm only
    h.{i}.attn.c_attn.weight [d, q + 2 kv]          columns: q of every head, then k, then v of
    h.{i}.attn.c_attn.bias [q + 2 kv]               every K/V head (q = d, kv = n_kv_head * d_head)
    h.{i}.attn.c_proj.weight [d, d]   .bias [d]
    h.{i}.ln_2.weight [d]    h.{i}.ln_2.bias [d]
    h.{i}.mlp.c_fc.weight [d, m]      .bias [m]     m = d_ff (GELU) or 2 d_ff (SwiGLU: columns
                                                    0..d_ff-1 the gate, then the up projection)
    h.{i}.mlp.c_proj.weight [d_ff, d] .bias [d]
    ln_f.weight [d]          ln_f.bias [d]
    lm_head [vocab, d]                              untied head only

(biases only when ``bias`` is set). Loading and saving Hugging Face checkpoints (GPT-2 and Llama
layouts) lives in :mod:`pimgpt.sw.checkpoint`.
"""

from __future__ import annotations

import math
import os
from dataclasses import asdict, dataclass, fields
from pathlib import Path

import numpy as np

from pimgpt.core.errors import PimgptError
from pimgpt.core.numerics import bf16_to_f32, f32_to_bf16

NORMS = ("layernorm", "rmsnorm")
POSITIONS = ("learned", "rope")
MLPS = ("gelu", "swiglu")
#: RoPE frequency scalings understood (Hugging Face ``rope_type``).
ROPE_SCALING_TYPES = ("llama3",)


class ModelError(PimgptError):
    """An unknown model name or an invalid model description."""


#: Largest value of each shape field: far beyond any published model (Llama-3.1-405B has 126
#: layers, d_model 16384, 128 heads, a 128k context and 128256 tokens), small enough that every
#: per-layer loop and per-token table a model description drives stays bounded.
SHAPE_LIMITS = {"n_layer": 1024, "d_model": 2**16, "n_head": 1024, "ctx": 2**20,
                "vocab": 2**22, "d_ff": 2**18, "n_kv_head": 1024}


def _is_int(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_number(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


@dataclass(frozen=True)
class RopeScaling:
    """The Llama 3 frequency scaling of rotary embeddings (Hugging Face ``rope_type: llama3``).

    Wavelengths shorter than ``original_max_position_embeddings / high_freq_factor`` keep their
    frequency, those longer than ``original_max_position_embeddings / low_freq_factor`` are divided
    by ``factor``, and the band between is interpolated (:func:`pimgpt.core.nonlinear.
    rope_inv_freq` states the formula).

    Parameters
    ----------
    factor : float
        Frequency divisor of the long wavelengths (>= 1).
    low_freq_factor, high_freq_factor : float
        Band edges, ``0 < low_freq_factor < high_freq_factor``.
    original_max_position_embeddings : int
        Context length of the unscaled pre-training.
    rope_type : str
        ``"llama3"`` (the only type supported).
    """

    factor: float
    low_freq_factor: float
    high_freq_factor: float
    original_max_position_embeddings: int
    rope_type: str = "llama3"

    def __post_init__(self):
        if self.rope_type not in ROPE_SCALING_TYPES:
            raise ModelError(
                f"rope scaling type {self.rope_type!r} is not supported; use "
                f"{', '.join(ROPE_SCALING_TYPES)} or no scaling"
            )
        for key in ("factor", "low_freq_factor", "high_freq_factor"):
            value = getattr(self, key)
            if not _is_number(value) or value <= 0:
                raise ModelError(f"rope_scaling: {key} must be a positive number, got {value!r}")
            object.__setattr__(self, key, float(value))
        if self.factor < 1:
            raise ModelError(f"rope_scaling: factor must be >= 1, got {self.factor!r}")
        if not self.low_freq_factor < self.high_freq_factor:
            raise ModelError(
                f"rope_scaling: low_freq_factor {self.low_freq_factor} must be below "
                f"high_freq_factor {self.high_freq_factor}"
            )
        orig = self.original_max_position_embeddings
        if not _is_int(orig) or orig <= 0:
            raise ModelError(
                "rope_scaling: original_max_position_embeddings must be a positive integer, "
                f"got {orig!r}"
            )

    @classmethod
    def from_dict(cls, raw, where: str = "rope_scaling") -> RopeScaling:
        """A scaling from a mapping with the Hugging Face keys (``rope_type`` or ``type``)."""
        if not isinstance(raw, dict):
            raise ModelError(f"{where} must be a mapping (rope_type: llama3, factor: ...)")
        raw = dict(raw)
        if "type" in raw and "rope_type" not in raw:
            raw["rope_type"] = raw.pop("type")
        from pimgpt.core.config import check_known_keys  # local: presets need no YAML

        allowed = [f.name for f in fields(cls)]
        check_known_keys(raw, allowed, where, error=ModelError)
        if raw.get("rope_type", "llama3") not in ROPE_SCALING_TYPES:
            raise ModelError(
                f"{where}: rope scaling type {raw['rope_type']!r} is not supported; use "
                f"{', '.join(ROPE_SCALING_TYPES)} or no scaling"
            )
        missing = [k for k in allowed if k != "rope_type" and k not in raw]
        if missing:
            raise ModelError(f"{where}: missing key {missing[0]!r} of the llama3 scaling")
        return cls(**raw)


@dataclass(frozen=True)
class ModelConfig:
    """Shape and architecture of a pre-norm decoder-only transformer.

    The defaults of the architecture fields are GPT-2's, so ``ModelConfig("x", n_layer=..., ...)``
    is a GPT-2.

    Parameters
    ----------
    name : str
        Preset or checkpoint name.
    n_layer, d_model, n_head, ctx, vocab : int
        Layers, model width, query heads, maximum context, vocabulary size.
    d_ff : int
        MLP hidden width; 0 means ``4 * d_model`` for GELU. SwiGLU needs it given.
    ln_eps : float
        Epsilon of the norm (LayerNorm or RMSNorm).
    checkpoint : str or None
        Directory of a Hugging Face checkpoint holding the weights, if any.
    norm : {"layernorm", "rmsnorm"}
        LayerNorm with gain and shift, or RMSNorm with a gain only.
    position : {"learned", "rope"}
        A learned position table added to the embedding, or rotary embeddings (rotate-half
        convention) applied to queries and keys.
    mlp : {"gelu", "swiglu"}
        ``c_proj(gelu_tanh(c_fc(h)))`` or ``down(silu(gate(h)) * up(h))``.
    n_kv_head : int
        K/V heads; 0 means ``n_head`` (multi-head attention). A divisor of ``n_head``: each K/V
        head serves ``n_head / n_kv_head`` consecutive query heads (GQA; 1 is MQA).
    bias : bool
        Biases on every linear layer (GPT-2) or on none (Llama).
    tied_head : bool
        LM head tied to ``wte`` (GPT-2) or a separate ``lm_head`` matrix.
    rope_theta : float
        RoPE base (position ``rope`` only).
    rope_scaling : RopeScaling or dict or None
        Llama 3 frequency scaling (position ``rope`` only); a dict is converted.
    """

    name: str
    n_layer: int
    d_model: int
    n_head: int
    ctx: int
    vocab: int = 50257
    d_ff: int = 0
    ln_eps: float = 1e-5
    checkpoint: str | None = None
    norm: str = "layernorm"
    position: str = "learned"
    mlp: str = "gelu"
    n_kv_head: int = 0
    bias: bool = True
    tied_head: bool = True
    rope_theta: float = 10000.0
    rope_scaling: RopeScaling | None = None

    def __post_init__(self):
        for key, choices in (("norm", NORMS), ("position", POSITIONS), ("mlp", MLPS)):
            if getattr(self, key) not in choices:
                raise ModelError(
                    f"model {self.name}: {key} must be one of {', '.join(choices)}, "
                    f"got {getattr(self, key)!r}"
                )
        if self.d_ff == 0 and self.mlp == "swiglu":
            raise ModelError(f"model {self.name}: a SwiGLU MLP needs d_ff (the hidden width)")
        if self.d_ff == 0 and _is_int(self.d_model):
            object.__setattr__(self, "d_ff", 4 * self.d_model)
        if self.n_kv_head == 0 and _is_int(self.n_head):
            object.__setattr__(self, "n_kv_head", self.n_head)
        for key, most in SHAPE_LIMITS.items():
            value = getattr(self, key)
            if not _is_int(value) or not 0 < value <= most:
                raise ModelError(
                    f"model {self.name}: {key} must be an integer in 1..{most}, got {value!r}"
                )
        if self.d_model % self.n_head:
            raise ModelError(
                f"model {self.name}: d_model {self.d_model} is not divisible by "
                f"n_head {self.n_head}; choose n_head so that d_model / n_head is a whole d_head "
                "(a multiple of 16)"
            )
        if self.d_head % 16:
            raise ModelError(
                f"model {self.name}: d_head {self.d_head} must be a multiple of 16 (one MAC column)"
            )
        if self.n_head % self.n_kv_head:
            raise ModelError(
                f"model {self.name}: n_head {self.n_head} is not a multiple of n_kv_head "
                f"{self.n_kv_head}; each K/V head must serve the same number of query heads"
            )
        if not _is_number(self.ln_eps) or not 0 < self.ln_eps < 1:
            raise ModelError(f"model {self.name}: ln_eps must be in (0, 1), got {self.ln_eps!r}")
        for key in ("bias", "tied_head"):
            if not isinstance(getattr(self, key), bool):
                raise ModelError(
                    f"model {self.name}: {key} must be true or false, got {getattr(self, key)!r}"
                )
        self._check_rope()

    def _check_rope(self) -> None:
        if not _is_number(self.rope_theta) or self.rope_theta <= 1:
            raise ModelError(
                f"model {self.name}: rope_theta must be a number above 1, got {self.rope_theta!r}"
            )
        object.__setattr__(self, "rope_theta", float(self.rope_theta))
        scaling = self.rope_scaling
        if isinstance(scaling, dict):
            scaling = RopeScaling.from_dict(scaling, f"model {self.name}: rope_scaling")
            object.__setattr__(self, "rope_scaling", scaling)
        if scaling is not None and not isinstance(scaling, RopeScaling):
            raise ModelError(
                f"model {self.name}: rope_scaling must be a mapping or null, got {scaling!r}"
            )
        if scaling is not None and self.position != "rope":
            raise ModelError(
                f"model {self.name}: rope_scaling is set but position is {self.position!r}; "
                "use position: rope or remove rope_scaling"
            )

    @property
    def d_head(self) -> int:
        return self.d_model // self.n_head

    @property
    def group(self) -> int:
        """Query heads per K/V head (1 for MHA)."""
        return self.n_head // self.n_kv_head

    @property
    def kv_dim(self) -> int:
        """Width of one token's K (or V) over all K/V heads."""
        return self.n_kv_head * self.d_head

    @property
    def qkv_dim(self) -> int:
        """Outputs of the fused Q/K/V projection ``c_attn``."""
        return self.d_model + 2 * self.kv_dim

    @property
    def fc_dim(self) -> int:
        """Outputs of ``mlp.c_fc`` (gate and up together for SwiGLU)."""
        return 2 * self.d_ff if self.mlp == "swiglu" else self.d_ff

    @property
    def family(self) -> str:
        """``"gpt2"`` or ``"llama"`` for the two layouts of Hugging Face checkpoints, else
        ``"custom"`` (a mix, usable by the reference models only)."""
        if (self.norm, self.position, self.mlp) == ("layernorm", "learned", "gelu") and \
                self.n_kv_head == self.n_head and self.bias and self.tied_head:
            return "gpt2"
        if (self.norm, self.position, self.mlp) == ("rmsnorm", "rope", "swiglu"):
            return "llama"
        return "custom"

    def rope_inv_freq(self):
        """The float64 RoPE inverse frequencies ``[d_head / 2]`` of this model (theta and
        scaling applied; :func:`pimgpt.core.rope.rope_inv_freq`), or None for learned positions."""
        if self.position != "rope":
            return None
        from pimgpt.core.rope import rope_inv_freq

        s = self.rope_scaling
        return rope_inv_freq(self.d_head, self.rope_theta, None if s is None else (
            s.factor, s.low_freq_factor, s.high_freq_factor, s.original_max_position_embeddings))

    @property
    def n_params(self) -> int:
        """Parameter count with a tied LM head counted once."""
        return sum(math.prod(s) for s in weight_shapes(self).values())

    def to_dict(self) -> dict:
        return asdict(self)


def folded_q_scale(d_head: int) -> float:
    """The factor folded into the query columns of ``attn.c_attn`` (weights and bias) when the
    DRAM image is built: the scores' scale ``1/sqrt(d_head)`` when it is a power of two
    (``d_head`` a power of four: 16, 64, 256), else 1.0 (the vector unit scales the scores).

    Scaling by a power of two is exact in every later step (the bf16 rounding of the weights, the
    in-bank products and fp32 sums, the bias add, RoPE, the bf16 rounding of ``q`` into the
    global buffers), so the scores come out the same bits as scaling them after the dot products,
    barring values that the scale would take below the normal range (|w| < 2^-123): no vector
    instruction on the way to the scores at all.
    """
    scale = 1.0 / math.sqrt(d_head)
    return scale if math.frexp(scale)[0] == 0.5 else 1.0


#: The GEMVs whose input norm is folded into them (``docs/numerics.md``, "A norm folded into the
#: next GEMV"): matrix name -> the norm before it (both per layer; the final norm is not folded).
FOLDED_LN = {"attn.c_attn": "ln_1", "mlp.c_fc": "ln_2"}


def folds_norm(cfg: ModelConfig) -> bool:
    """Whether ``cfg``'s ``ln_1``/``ln_2`` are folded into the GEMVs they feed: every RMSNorm,
    and a LayerNorm when the GEMVs have biases (its shift term goes into them)."""
    return cfg.norm == "rmsnorm" or bool(cfg.bias)


def folds_layernorm_shift(cfg: ModelConfig) -> bool:
    """Whether the biases of the GEMVs after ``ln_1``/``ln_2`` hold a folded LayerNorm shift
    (:func:`folded_ln_bias`)."""
    return cfg.norm == "layernorm" and folds_norm(cfg)


def folded_ln_bias(weight, shift, bias) -> np.ndarray:
    """The bias of a GEMV whose input LayerNorm is folded into it: ``c = bf16(W)^T shift +
    bias``, summed in float64 and rounded once to fp32 (``W`` is ``[in, out]`` as the checkpoint
    stores it; ``bf16(W)`` is what the banks multiply). The DRAM image stores ``bf16(c)`` where
    the bias was.

    Parameters
    ----------
    weight : array_like of float32, shape (in, out)
    shift, bias : array_like of float32, shapes (in,) and (out,)

    Returns
    -------
    numpy.ndarray
        ``float32``, shape ``(out,)``.
    """
    w = bf16_to_f32(f32_to_bf16(np.asarray(weight, dtype=np.float32))).astype(np.float64)
    c = w.T @ np.asarray(shift, dtype=np.float64) + np.asarray(bias, dtype=np.float64)
    return c.astype(np.float32)


def folds_rmsnorm_gain(cfg: ModelConfig) -> bool:
    """Whether the gains of ``ln_1``/``ln_2`` are folded into the weights of the GEMVs they feed
    (:func:`folded_gain_weight`): an RMSNorm's folded GEMV then starts on the residual stream
    itself, with no vector instruction before it."""
    return cfg.norm == "rmsnorm" and folds_norm(cfg)


def folded_gain_name(cfg: ModelConfig, name: str) -> str | None:
    """The gain folded into the matrix ``name`` (``h.{i}.attn.c_attn.weight`` ->
    ``h.{i}.ln_1.weight``, ``h.{i}.mlp.c_fc.weight`` -> ``h.{i}.ln_2.weight``) when ``cfg`` folds
    RMSNorm gains (:func:`folds_rmsnorm_gain`); else ``None``."""
    layer, _, rest = name.partition(".")[2].partition(".")
    matrix = rest.removesuffix(".weight")
    if name.startswith("h.") and rest.endswith(".weight") and matrix in FOLDED_LN \
            and folds_rmsnorm_gain(cfg):
        return f"h.{layer}.{FOLDED_LN[matrix]}.weight"
    return None


def folded_gain_weight(weight, gain) -> np.ndarray:
    """The weight of a GEMV whose input RMSNorm's gain is folded into it: ``gain[i] * W[i, j]``
    in fp32 (one rounding; the DRAM image then stores its ``bf16``), ``W`` being ``[in, out]`` as
    the checkpoint stores it.

    Parameters
    ----------
    weight : array_like of float32, shape (in, out)
    gain : array_like of float32, shape (in,)

    Returns
    -------
    numpy.ndarray
        ``float32``, shape ``(in, out)``.
    """
    w = np.asarray(weight, dtype=np.float32)
    g = np.asarray(gain, dtype=np.float32)
    return (g[:, None] * w).astype(np.float32)


def weight_shapes(cfg: ModelConfig) -> dict[str, tuple[int, ...]]:
    """The name and shape of every weight of ``cfg`` in a fixed order (see the module notes).

    Parameters
    ----------
    cfg : ModelConfig
        Model shape.

    Returns
    -------
    dict of str to tuple of int
        Matrices ``[in, out]``; embeddings first, then the layers, then ``ln_f`` and ``lm_head``.
    """
    d, f = cfg.d_model, cfg.d_ff
    ln = ("weight", "bias") if cfg.norm == "layernorm" else ("weight",)
    shapes: dict[str, tuple[int, ...]] = {"wte": (cfg.vocab, d)}
    if cfg.position == "learned":
        shapes["wpe"] = (cfg.ctx, d)

    def linear(name, n_in, n_out):
        shapes[name + ".weight"] = (n_in, n_out)
        if cfg.bias:
            shapes[name + ".bias"] = (n_out,)

    for i in range(cfg.n_layer):
        p = f"h.{i}."
        shapes.update({p + "ln_1." + k: (d,) for k in ln})
        linear(p + "attn.c_attn", d, cfg.qkv_dim)
        linear(p + "attn.c_proj", d, d)
        shapes.update({p + "ln_2." + k: (d,) for k in ln})
        linear(p + "mlp.c_fc", d, cfg.fc_dim)
        linear(p + "mlp.c_proj", f, d)
    shapes.update({"ln_f." + k: (d,) for k in ln})
    if not cfg.tied_head:
        shapes["lm_head"] = (cfg.vocab, d)
    return shapes


def _llama(name, n_layer, d_model, n_head, n_kv_head, d_ff, vocab, ctx, theta, scaling, tied):
    return ModelConfig(
        name, n_layer=n_layer, d_model=d_model, n_head=n_head, ctx=ctx, vocab=vocab, d_ff=d_ff,
        ln_eps=1e-5, norm="rmsnorm", position="rope", mlp="swiglu", n_kv_head=n_kv_head,
        bias=False, tied_head=tied, rope_theta=theta,
        rope_scaling=None if scaling is None else RopeScaling(*scaling),
    )


PRESETS: dict[str, ModelConfig] = {
    m.name: m
    for m in (
        ModelConfig("tiny", n_layer=2, d_model=64, n_head=4, ctx=64, vocab=256),
        ModelConfig("gpt2-small", n_layer=12, d_model=768, n_head=12, ctx=1024),
        ModelConfig("gpt2-medium", n_layer=24, d_model=1024, n_head=16, ctx=1024),
        ModelConfig("gpt2-large", n_layer=36, d_model=1280, n_head=20, ctx=1024),
        ModelConfig("gpt2-xl", n_layer=48, d_model=1600, n_head=25, ctx=1024),
        ModelConfig("gpt3-small", n_layer=12, d_model=768, n_head=12, ctx=2048),
        ModelConfig("gpt3-medium", n_layer=24, d_model=1024, n_head=16, ctx=2048),
        ModelConfig("gpt3-large", n_layer=24, d_model=1536, n_head=16, ctx=2048),
        ModelConfig("gpt3-xl", n_layer=24, d_model=2048, n_head=16, ctx=2048),
        # Llama family: the shapes of each model's Hugging Face config.json (num_hidden_layers,
        # hidden_size, num_attention_heads, num_key_value_heads, intermediate_size, vocab_size,
        # max_position_embeddings, rope_theta, rope_scaling, tie_word_embeddings; rms_norm_eps
        # 1e-05 in all five), from the hub repositories meta-llama/Llama-2-7b-hf,
        # TinyLlama/TinyLlama-1.1B-Chat-v1.0, meta-llama/Llama-3.2-1B, meta-llama/Llama-3.2-3B and
        # meta-llama/Llama-3.1-8B. rope_scaling: (factor, low_freq_factor, high_freq_factor,
        # original_max_position_embeddings) of type llama3.
        _llama("llama-2-7b", 32, 4096, 32, 32, 11008, 32000, 4096, 1e4, None, False),
        _llama("tinyllama-1.1b", 22, 2048, 32, 4, 5632, 32000, 2048, 1e4, None, False),
        _llama("llama-3.2-1b", 16, 2048, 32, 8, 8192, 128256, 131072, 5e5, (32.0, 1.0, 4.0, 8192),
               True),
        _llama("llama-3.2-3b", 28, 3072, 24, 8, 8192, 128256, 131072, 5e5, (32.0, 1.0, 4.0, 8192),
               True),
        _llama("llama-3.1-8b", 32, 4096, 32, 8, 14336, 128256, 131072, 5e5, (8.0, 1.0, 4.0, 8192),
               False),
    )
}

#: The eight models of the PIM-GPT evaluation, in the paper's order.
PAPER_MODELS = [n for n, m in PRESETS.items() if n != "tiny" and m.family == "gpt2"]
#: The Llama-family presets.
LLAMA_MODELS = [n for n, m in PRESETS.items() if m.family == "llama"]


def get_model(name_or_path: str | Path) -> ModelConfig:
    """A model by preset name, checkpoint directory (``config.json``) or model YAML file.

    Raises
    ------
    ModelError
        For an unknown name or an invalid description.
    """
    key = str(name_or_path)
    if key == "":
        raise ModelError("the model is an empty string; give a preset name, a checkpoint "
                         "directory or a model .yaml file")
    if key in PRESETS:
        return PRESETS[key]
    from pimgpt.sw import checkpoint  # local import: presets must not need safetensors

    shipped = checkpoint.shipped_model_dir(key)
    if shipped is not None:
        return checkpoint.config_from_dir(shipped)
    path = Path(key)
    if path.is_dir():
        return checkpoint.config_from_dir(path)
    if path.suffix in (".yaml", ".yml") and path.is_file():
        return checkpoint.config_from_yaml(path)
    if not path.exists() and (path.suffix in (".yaml", ".yml") or "/" in key
                              or os.sep in key):
        # Meant as a file or folder, not a preset name: the preset list would not help.
        what = "file" if path.suffix in (".yaml", ".yml") else "file or folder"
        raise ModelError(f"{key}: no such {what}; check the path, or give a preset name "
                         "(`pimgpt models` lists them)")
    raise ModelError(
        f"unknown model '{key}'; use a preset ({', '.join(list_models())}), "
        "a Hugging Face checkpoint directory, or a model .yaml file"
    )


def list_models() -> list[str]:
    """Preset names plus the trained models shipped in the repository."""
    from pimgpt.sw import checkpoint

    return list(PRESETS) + checkpoint.shipped_model_names()

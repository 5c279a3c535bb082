"""The two Hugging Face checkpoint layouts pimgpt reads and writes: GPT-2 and Llama.

* **GPT-2** (``model_type: gpt2``, ``GPT2LMHeadModel``): ``config.json`` keys ``n_layer``,
  ``n_embd``, ``n_head``, ``n_positions``/``n_ctx``, ``vocab_size``, ``layer_norm_epsilon``,
  ``n_inner``, ``tie_word_embeddings``; tensors ``transformer.wte.weight``,
  ``transformer.h.0.attn.c_attn.weight`` ... in Conv1D layout ``[in, out]``, the same as pimgpt's
  names without the prefix (which the original hub files also omit).
* **Llama** (``model_type: llama``, ``LlamaForCausalLM``): ``config.json`` keys
  ``num_hidden_layers``, ``hidden_size``, ``num_attention_heads``, ``num_key_value_heads``,
  ``intermediate_size``, ``vocab_size``, ``max_position_embeddings``, ``rms_norm_eps``,
  ``rope_theta`` and ``rope_scaling`` (or both inside ``rope_parameters``, as newer transformers
  write them), ``attention_bias``/``mlp_bias``, ``tie_word_embeddings``, ``hidden_act: silu``;
  tensors ``model.embed_tokens.weight``, ``model.layers.{i}.self_attn.{q,k,v,o}_proj.weight``,
  ``model.layers.{i}.mlp.{gate,up,down}_proj.weight`` (``nn.Linear`` layout ``[out, in]``),
  ``model.layers.{i}.{input,post_attention}_layernorm.weight``, ``model.norm.weight`` and
  ``lm_head.weight``. pimgpt fuses q, k and v into ``attn.c_attn`` and gate and up into
  ``mlp.c_fc`` (see :mod:`pimgpt.sw.models`); RoPE needs no permutation because pimgpt uses the
  same rotate-half convention as the Hugging Face code.

Every problem raises :class:`~pimgpt.sw.models.ModelError` with one line naming the file and the
fix.
"""

from __future__ import annotations

import numpy as np

from pimgpt.sw.models import ModelConfig, ModelError, RopeScaling, weight_shapes

#: Prefix of the decoder tensors in ``GPT2LMHeadModel`` files.
GPT2_PREFIX = "transformer."
#: Hugging Face activation names that are the tanh form of GELU used by GPT-2 and by pimgpt.
TANH_GELUS = ("gelu_new", "gelu_pytorch_tanh", "gelu_fast")
#: Buffers that some checkpoints store next to the parameters (GPT-2 causal masks, the RoPE
#: frequencies of older Llama exports); they are recomputed, never loaded.
BUFFER_SUFFIXES = (".attn.bias", ".attn.masked_bias", ".rotary_emb.inv_freq")
MODEL_TYPES = ("gpt2", "llama")
_LLAMA_LINEARS = {  # pimgpt fused matrix -> Hugging Face parts, in column order
    "attn.c_attn": ("self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj"),
    "attn.c_proj": ("self_attn.o_proj",),
    "mlp.c_fc": ("mlp.gate_proj", "mlp.up_proj"),
    "mlp.c_proj": ("mlp.down_proj",),
}
_LLAMA_NORMS = {"ln_1": "input_layernorm", "ln_2": "post_attention_layernorm"}


def layout(cfg: ModelConfig) -> str:
    """The Hugging Face layout that stores ``cfg``: ``"gpt2"`` or ``"llama"``.

    Raises
    ------
    ModelError
        For an architecture mix that neither layout expresses.
    """
    if (cfg.norm, cfg.position, cfg.mlp) == ("layernorm", "learned", "gelu") and cfg.bias and \
            cfg.n_kv_head == cfg.n_head:
        return "gpt2"
    if (cfg.norm, cfg.position, cfg.mlp) == ("rmsnorm", "rope", "swiglu"):
        return "llama"
    raise ModelError(
        f"model {cfg.name} ({cfg.norm}, {cfg.position} positions, {cfg.mlp}, "
        f"{cfg.n_kv_head}/{cfg.n_head} K/V heads, bias {cfg.bias}) has no Hugging Face layout; "
        "GPT-2 is layernorm + learned + gelu + MHA + biases, Llama is rmsnorm + rope + swiglu"
    )


# ----------------------------------------------------------------------------------------------
# Tensor checks
# ----------------------------------------------------------------------------------------------


def check_tensors(expected: dict, got: dict, source: str, cfg: ModelConfig,
                  transposed_hint: str) -> None:
    """Check that ``got`` holds exactly the tensors named in ``expected`` with those shapes.

    Parameters
    ----------
    expected : dict of str to tuple of int
        Name -> shape.
    got : dict of str to array_like
        The tensors found.
    source : str
        What to name in the error message (a file, or "weights").
    cfg : ModelConfig
        The model (named in the message).
    transposed_hint : str
        Says how matrices are stored, for a tensor whose shape is the transpose.

    Raises
    ------
    ModelError
        Naming the first missing, unexpected or misshapen tensor.
    """
    missing = [n for n in expected if n not in got]
    if missing:
        more = f" and {len(missing) - 1} more" if len(missing) > 1 else ""
        raise ModelError(
            f"{source}: missing tensor {missing[0]} (shape {list(expected[missing[0]])}){more} "
            f"for model {cfg.name} ({cfg.n_layer} layers, d_model {cfg.d_model}); check that the "
            "weights match the model's config"
        )
    extra = sorted(n for n in got if n not in expected)
    if extra:
        raise ModelError(
            f"{source}: unexpected tensor {extra[0]} for model {cfg.name} ({cfg.family}: "
            f"{cfg.norm}, {cfg.position} positions, {cfg.mlp}, bias {cfg.bias}, tied head "
            f"{cfg.tied_head}); check that config.json describes these weights"
        )
    for name, shape in expected.items():
        shape_got = tuple(np.shape(got[name]))
        if shape_got != tuple(shape):
            hint = ""
            if len(shape_got) == 2 and shape_got == tuple(shape)[::-1]:
                hint = f" (it looks transposed: {transposed_hint})"
            raise ModelError(
                f"{source}: tensor {name} has shape {list(shape_got)}, expected {list(shape)}"
                f"{hint}; check that config.json matches the weights"
            )


def _check_tied(head, embed, source: str, embed_name: str) -> None:
    if head is not None and embed is not None and not np.array_equal(head, embed):
        raise ModelError(
            f"{source}: lm_head.weight differs from {embed_name} but the config ties them "
            "(tie_word_embeddings); set tie_word_embeddings to false in config.json"
        )


# ----------------------------------------------------------------------------------------------
# config.json
# ----------------------------------------------------------------------------------------------


def config_from_hf(raw: dict, where: str, name: str, checkpoint: str) -> ModelConfig:
    """The :class:`ModelConfig` of a Hugging Face ``config.json`` (GPT-2 or Llama).

    Parameters
    ----------
    raw : dict
        The parsed ``config.json``.
    where : str
        The file, for messages.
    name, checkpoint : str
        Model name and checkpoint directory to record.

    Raises
    ------
    ModelError
        For an unsupported model type or option, or a missing or invalid key.
    """
    model_type = raw.get("model_type", "gpt2")
    if model_type not in MODEL_TYPES:
        raise ModelError(
            f"{where}: model_type is {model_type!r}; supported model types are "
            f"{', '.join(MODEL_TYPES)}"
        )
    values = _gpt2_values(raw, where) if model_type == "gpt2" else _llama_values(raw, where)
    try:
        return ModelConfig(name=name, checkpoint=checkpoint, **values)
    except ModelError as exc:
        raise ModelError(f"{where}: {exc}") from None


def _need_keys(raw: dict, where: str, keys: list[str], kind: str) -> None:
    missing = [k for k in keys if k not in raw]
    if missing:
        raise ModelError(
            f"{where}: missing key {missing[0]}; a {kind} config.json needs {', '.join(keys)}"
        )


def _gpt2_values(raw: dict, where: str) -> dict:
    act = raw.get("activation_function", "gelu_new")
    if act not in TANH_GELUS:
        raise ModelError(
            f"{where}: activation_function {act!r} is not supported; pimgpt computes the tanh "
            f"form of GELU ({', '.join(TANH_GELUS)})"
        )
    for key, ok in (("scale_attn_weights", True), ("scale_attn_by_inverse_layer_idx", False),
                    ("reorder_and_upcast_attn", False)):
        if key in raw and bool(raw[key]) != ok:
            raise ModelError(f"{where}: {key}={raw[key]!r} is not supported; it must be {ok}")
    ctx_key = "n_positions" if "n_positions" in raw else "n_ctx"
    _need_keys(raw, where, ["n_layer", "n_embd", "n_head", ctx_key, "vocab_size"], "GPT-2")
    d_ff = raw.get("n_inner")
    return {
        "n_layer": raw["n_layer"], "d_model": raw["n_embd"], "n_head": raw["n_head"],
        "ctx": raw[ctx_key], "vocab": raw["vocab_size"], "d_ff": 0 if d_ff is None else d_ff,
        "ln_eps": _number(raw, "layer_norm_epsilon", 1e-5, where),
        "tied_head": _flag(raw, "tie_word_embeddings", True, where),
    }


def _number(raw: dict, key: str, default, where: str) -> float:
    value = raw.get(key)
    if value is None:  # absent, or written as null: the default
        value = default
    if not isinstance(value, (int, float)) or isinstance(value, bool):
        raise ModelError(f"{where}: {key} must be a number, got {value!r}")
    return float(value)


def _flag(raw: dict, key: str, default: bool, where: str) -> bool:
    value = raw.get(key, default)
    if value is None:
        return default
    if not isinstance(value, bool):
        raise ModelError(f"{where}: {key} must be true or false, got {value!r}")
    return value


def _llama_values(raw: dict, where: str) -> dict:
    _need_keys(raw, where, ["num_hidden_layers", "hidden_size", "num_attention_heads",
                            "intermediate_size", "vocab_size", "max_position_embeddings"], "Llama")
    act = raw.get("hidden_act", "silu")
    if act not in ("silu", "swish"):  # transformers maps both names to SiLU
        raise ModelError(
            f"{where}: hidden_act {act!r} is not supported; Llama's SwiGLU MLP uses silu"
        )
    n_head = raw["num_attention_heads"]
    n_kv = raw.get("num_key_value_heads")
    head_dim = raw.get("head_dim")
    if head_dim is not None and (not isinstance(head_dim, int) or isinstance(head_dim, bool) or (
            isinstance(n_head, int) and head_dim * n_head != raw["hidden_size"])):
        raise ModelError(
            f"{where}: head_dim {head_dim!r} times num_attention_heads {n_head} is not "
            f"hidden_size {raw['hidden_size']}; pimgpt needs head_dim = hidden_size / heads"
        )
    attn_bias = _flag(raw, "attention_bias", False, where)
    mlp_bias = _flag(raw, "mlp_bias", attn_bias, where)
    if attn_bias != mlp_bias:
        raise ModelError(
            f"{where}: attention_bias={attn_bias} and mlp_bias={mlp_bias} differ; pimgpt has "
            "biases on every linear layer or on none"
        )
    theta, scaling = rope_from_hf(raw, where)
    return {
        "n_layer": raw["num_hidden_layers"], "d_model": raw["hidden_size"], "n_head": n_head,
        "ctx": raw["max_position_embeddings"], "vocab": raw["vocab_size"],
        "d_ff": raw["intermediate_size"],
        # transformers' LlamaConfig defaults: rms_norm_eps 1e-6, untied head, MHA.
        "ln_eps": _number(raw, "rms_norm_eps", 1e-6, where),
        "norm": "rmsnorm", "position": "rope", "mlp": "swiglu",
        "n_kv_head": n_head if n_kv is None else n_kv, "bias": attn_bias,
        "tied_head": _flag(raw, "tie_word_embeddings", False, where),
        "rope_theta": theta, "rope_scaling": scaling,
    }


def rope_from_hf(raw: dict, where: str) -> tuple[float, RopeScaling | None]:
    """``(rope_theta, rope_scaling)`` of a Llama ``config.json``.

    Reads ``rope_parameters`` (newer transformers: theta and scaling in one mapping) if present,
    else ``rope_theta`` and ``rope_scaling``. The rope type (``rope_type`` or the older ``type``)
    must be ``default`` (no scaling) or ``llama3``.

    Raises
    ------
    ModelError
        For an unknown rope type, a partial rotary factor, or malformed parameters.
    """
    key = "rope_parameters" if raw.get("rope_parameters") is not None else "rope_scaling"
    params = raw.get(key)
    theta = _number(raw, "rope_theta", 10000.0, where)
    if params is None:
        return theta, None
    if not isinstance(params, dict):
        raise ModelError(f"{where}: {key} must be a mapping or null, got {params!r}")
    params = dict(params)
    if any(isinstance(v, dict) for v in params.values()):
        raise ModelError(
            f"{where}: {key} per attention type is not supported; give one mapping"
        )
    if "rope_theta" in params:
        theta = _number(params, "rope_theta", theta, f"{where} {key}")
        del params["rope_theta"]
    partial = params.pop("partial_rotary_factor", 1.0)
    if partial != 1.0:
        raise ModelError(
            f"{where}: {key}.partial_rotary_factor {partial!r} is not supported; pimgpt rotates "
            "the whole head (1.0)"
        )
    rope_type = params.pop("rope_type", params.pop("type", "default"))
    if rope_type == "default":
        return theta, None
    if rope_type != "llama3":
        raise ModelError(
            f"{where}: {key} type {rope_type!r} is not supported; pimgpt implements the llama3 "
            "frequency scaling or none (rope_type default)"
        )
    return theta, RopeScaling.from_dict({**params, "rope_type": rope_type}, f"{where}: {key}")


def hf_config(cfg: ModelConfig) -> dict:
    """The Hugging Face ``config.json`` dictionary of ``cfg`` (GPT-2 or Llama layout)."""
    byte_level = cfg.vocab == 256
    if layout(cfg) == "gpt2":
        return {
            "activation_function": "gelu_new",
            "architectures": ["GPT2LMHeadModel"],
            "attn_pdrop": 0.0,
            # GPT-2's <|endoftext|> is 50256; a byte-level model has no such token.
            "bos_token_id": None if byte_level else min(50256, cfg.vocab - 1),
            "embd_pdrop": 0.0,
            "eos_token_id": None if byte_level else min(50256, cfg.vocab - 1),
            "initializer_range": 0.02,
            "layer_norm_epsilon": cfg.ln_eps,
            "model_type": "gpt2",
            "n_ctx": cfg.ctx,
            "n_embd": cfg.d_model,
            "n_head": cfg.n_head,
            "n_inner": None if cfg.d_ff == 4 * cfg.d_model else cfg.d_ff,
            "n_layer": cfg.n_layer,
            "n_positions": cfg.ctx,
            "reorder_and_upcast_attn": False,
            "resid_pdrop": 0.0,
            "scale_attn_by_inverse_layer_idx": False,
            "scale_attn_weights": True,
            "tie_word_embeddings": cfg.tied_head,
            "torch_dtype": "float32",
            "use_cache": True,
            "vocab_size": cfg.vocab,
        }
    scaling = None
    if cfg.rope_scaling is not None:
        s = cfg.rope_scaling
        scaling = {"factor": s.factor, "high_freq_factor": s.high_freq_factor,
                   "low_freq_factor": s.low_freq_factor,
                   "original_max_position_embeddings": s.original_max_position_embeddings,
                   "rope_type": s.rope_type}
    return {
        "architectures": ["LlamaForCausalLM"],
        "attention_bias": cfg.bias,
        "attention_dropout": 0.0,
        "bos_token_id": None if byte_level else 1,
        "eos_token_id": None if byte_level else 2,
        "head_dim": cfg.d_head,
        "hidden_act": "silu",
        "hidden_size": cfg.d_model,
        "initializer_range": 0.02,
        "intermediate_size": cfg.d_ff,
        "max_position_embeddings": cfg.ctx,
        "mlp_bias": cfg.bias,
        "model_type": "llama",
        "num_attention_heads": cfg.n_head,
        "num_hidden_layers": cfg.n_layer,
        "num_key_value_heads": cfg.n_kv_head,
        "pretraining_tp": 1,
        "rms_norm_eps": cfg.ln_eps,
        "rope_scaling": scaling,
        "rope_theta": cfg.rope_theta,
        "tie_word_embeddings": cfg.tied_head,
        "torch_dtype": "float32",
        "use_cache": True,
        "vocab_size": cfg.vocab,
    }


# ----------------------------------------------------------------------------------------------
# Tensor names
# ----------------------------------------------------------------------------------------------


def llama_hf_shapes(cfg: ModelConfig) -> dict[str, tuple[int, ...]]:
    """Hugging Face Llama tensor name -> shape (``nn.Linear`` weights ``[out, in]``) of ``cfg``."""
    d, f, kv = cfg.d_model, cfg.d_ff, cfg.kv_dim
    out_in = {"self_attn.q_proj": (d, d), "self_attn.k_proj": (kv, d),
              "self_attn.v_proj": (kv, d), "self_attn.o_proj": (d, d),
              "mlp.gate_proj": (f, d), "mlp.up_proj": (f, d), "mlp.down_proj": (d, f)}
    shapes: dict[str, tuple[int, ...]] = {"model.embed_tokens.weight": (cfg.vocab, d)}
    for i in range(cfg.n_layer):
        p = f"model.layers.{i}."
        shapes[p + "input_layernorm.weight"] = (d,)
        shapes[p + "post_attention_layernorm.weight"] = (d,)
        for part, shape in out_in.items():
            shapes[p + part + ".weight"] = shape
            if cfg.bias:
                shapes[p + part + ".bias"] = (shape[0],)
    shapes["model.norm.weight"] = (d,)
    if not cfg.tied_head:
        shapes["lm_head.weight"] = (cfg.vocab, d)
    return shapes


def _gpt2_hf_name(name: str) -> str:
    if name == "lm_head":
        return "lm_head.weight"
    if name in ("wte", "wpe"):
        name += ".weight"
    return GPT2_PREFIX + name


def _gpt2_pimgpt_name(hf_name: str) -> str:
    if hf_name == "lm_head.weight":
        return "lm_head"
    name = hf_name[len(GPT2_PREFIX):] if hf_name.startswith(GPT2_PREFIX) else hf_name
    if name in ("wte.weight", "wpe.weight"):
        name = name[: -len(".weight")]
    return name


def to_pimgpt(tensors: dict, cfg: ModelConfig, source: str) -> dict[str, np.ndarray]:
    """Hugging Face tensors (float32, buffers already dropped) -> pimgpt weights of ``cfg``.

    Raises
    ------
    ModelError
        For a missing, unexpected, duplicated or misshapen tensor, or an LM head that differs from
        the embedding although the config ties them.
    """
    tensors = dict(tensors)
    if layout(cfg) == "gpt2":
        out: dict[str, np.ndarray] = {}
        if cfg.tied_head:
            head = tensors.pop("lm_head.weight", None)
            embed = tensors.get(GPT2_PREFIX + "wte.weight", tensors.get("wte.weight"))
            _check_tied(head, embed, source, "wte")
        for key, arr in tensors.items():
            name = _gpt2_pimgpt_name(key)
            if name in out:
                raise ModelError(
                    f"{source}: tensor {name} appears twice (with and without the "
                    f"'{GPT2_PREFIX}' prefix); keep one"
                )
            out[name] = arr
        return out
    if cfg.tied_head:
        _check_tied(tensors.pop("lm_head.weight", None),
                    tensors.get("model.embed_tokens.weight"), source,
                    "model.embed_tokens.weight")
    check_tensors(llama_hf_shapes(cfg), tensors, source, cfg,
                  "Llama checkpoints store nn.Linear weights [out, in]")
    out = {"wte": tensors["model.embed_tokens.weight"]}
    for i in range(cfg.n_layer):
        hf, p = f"model.layers.{i}.", f"h.{i}."
        for ours, theirs in _LLAMA_NORMS.items():
            out[p + ours + ".weight"] = tensors[hf + theirs + ".weight"]
        for ours, parts in _LLAMA_LINEARS.items():
            out[p + ours + ".weight"] = np.concatenate(
                [tensors[hf + part + ".weight"] for part in parts], axis=0).T
            if cfg.bias:
                out[p + ours + ".bias"] = np.concatenate(
                    [tensors[hf + part + ".bias"] for part in parts])
    out["ln_f.weight"] = tensors["model.norm.weight"]
    if not cfg.tied_head:
        out["lm_head"] = tensors["lm_head.weight"]
    return out


def to_hf(weights: dict, cfg: ModelConfig) -> dict[str, np.ndarray]:
    """pimgpt weights -> Hugging Face tensors of ``cfg``'s layout (as ``save_pretrained`` names
    them; a tied LM head is left out)."""
    if layout(cfg) == "gpt2":
        return {_gpt2_hf_name(n): weights[n] for n in weight_shapes(cfg)}
    out = {"model.embed_tokens.weight": weights["wte"]}
    hf_shapes = llama_hf_shapes(cfg)
    for i in range(cfg.n_layer):
        hf, p = f"model.layers.{i}.", f"h.{i}."
        for ours, theirs in _LLAMA_NORMS.items():
            out[hf + theirs + ".weight"] = weights[p + ours + ".weight"]
        for ours, parts in _LLAMA_LINEARS.items():
            sizes = [hf_shapes[hf + part + ".weight"][0] for part in parts]
            cuts = np.cumsum(sizes)[:-1]
            pieces = np.split(weights[p + ours + ".weight"], cuts, axis=1)
            for part, w in zip(parts, pieces, strict=True):
                out[hf + part + ".weight"] = w.T
            if cfg.bias:
                pieces = np.split(weights[p + ours + ".bias"], cuts)
                for part, b in zip(parts, pieces, strict=True):
                    out[hf + part + ".bias"] = b
    out["model.norm.weight"] = weights["ln_f.weight"]
    if not cfg.tied_head:
        out["lm_head.weight"] = weights["lm_head"]
    return out

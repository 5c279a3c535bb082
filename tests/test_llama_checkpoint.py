"""Hugging Face Llama checkpoints: config.json + safetensors (single file or sharded), tied and
untied heads, bf16/fp16/fp32 tensors, rope_scaling / rope_parameters, and one-line errors.

The fake checkpoints are written here with safetensors in the layout ``LlamaForCausalLM``
saves (``nn.Linear`` weights ``[out, in]``), independently of pimgpt's writer."""

from __future__ import annotations

import json
import struct

import numpy as np
import pytest
from safetensors.numpy import save_file

from pimgpt.sw.checkpoint import (
    config_from_dir,
    config_from_yaml,
    load_weights,
    random_weights,
    save_checkpoint,
)
from pimgpt.sw.models import ModelConfig, ModelError, RopeScaling, get_model

L, D, H, KV, F, V, CTX = 2, 64, 4, 2, 96, 80, 32
DH = D // H


def llama_config_json(**over):
    """config.json as transformers' LlamaConfig.save_pretrained writes it (Llama 3.2 style)."""
    cfg = {
        "architectures": ["LlamaForCausalLM"], "attention_bias": False, "attention_dropout": 0.0,
        "bos_token_id": 1, "eos_token_id": 2, "head_dim": DH, "hidden_act": "silu",
        "hidden_size": D, "initializer_range": 0.02, "intermediate_size": F,
        "max_position_embeddings": CTX, "mlp_bias": False, "model_type": "llama",
        "num_attention_heads": H, "num_hidden_layers": L, "num_key_value_heads": KV,
        "pretraining_tp": 1, "rms_norm_eps": 1e-05,
        "rope_scaling": {"factor": 8.0, "high_freq_factor": 4.0, "low_freq_factor": 1.0,
                         "original_max_position_embeddings": 16, "rope_type": "llama3"},
        "rope_theta": 500000.0, "tie_word_embeddings": False, "torch_dtype": "bfloat16",
        "transformers_version": "4.45.0", "use_cache": True, "vocab_size": V,
    }
    cfg.update(over)
    return cfg


def hf_tensors(seed=0, tied=False, bias=False):
    """Random tensors named and shaped as in a LlamaForCausalLM state dict."""
    rng = np.random.default_rng(seed)

    def r(*shape):
        return (0.05 * rng.standard_normal(shape)).astype(np.float32)

    t = {"model.embed_tokens.weight": r(V, D), "model.norm.weight": 1 + r(D)}
    for i in range(L):
        p = f"model.layers.{i}."
        t[p + "input_layernorm.weight"] = 1 + r(D)
        t[p + "post_attention_layernorm.weight"] = 1 + r(D)
        for name, (o, n) in {"self_attn.q_proj": (D, D), "self_attn.k_proj": (KV * DH, D),
                             "self_attn.v_proj": (KV * DH, D), "self_attn.o_proj": (D, D),
                             "mlp.gate_proj": (F, D), "mlp.up_proj": (F, D),
                             "mlp.down_proj": (D, F)}.items():
            t[p + name + ".weight"] = r(o, n)
            if bias:
                t[p + name + ".bias"] = r(o)
    if not tied:
        t["lm_head.weight"] = r(V, D)
    return t


def write_dir(path, tensors, config=None):
    path.mkdir(parents=True, exist_ok=True)
    (path / "config.json").write_text(json.dumps(config or llama_config_json()))
    save_file(tensors, str(path / "model.safetensors"), metadata={"format": "pt"})
    return path


def check_fusion(w, t, bias=False):
    """pimgpt's fused [in, out] matrices are the HF parts concatenated and transposed."""
    np.testing.assert_array_equal(w["wte"], t["model.embed_tokens.weight"])
    np.testing.assert_array_equal(w["ln_f.weight"], t["model.norm.weight"])
    for i in range(L):
        p = f"model.layers.{i}."
        qkv = w[f"h.{i}.attn.c_attn.weight"]
        assert qkv.shape == (D, D + 2 * KV * DH)
        np.testing.assert_array_equal(qkv[:, :D], t[p + "self_attn.q_proj.weight"].T)
        np.testing.assert_array_equal(qkv[:, D:D + KV * DH], t[p + "self_attn.k_proj.weight"].T)
        np.testing.assert_array_equal(qkv[:, D + KV * DH:], t[p + "self_attn.v_proj.weight"].T)
        np.testing.assert_array_equal(w[f"h.{i}.attn.c_proj.weight"],
                                      t[p + "self_attn.o_proj.weight"].T)
        fc = w[f"h.{i}.mlp.c_fc.weight"]
        np.testing.assert_array_equal(fc[:, :F], t[p + "mlp.gate_proj.weight"].T)
        np.testing.assert_array_equal(fc[:, F:], t[p + "mlp.up_proj.weight"].T)
        np.testing.assert_array_equal(w[f"h.{i}.mlp.c_proj.weight"],
                                      t[p + "mlp.down_proj.weight"].T)
        np.testing.assert_array_equal(w[f"h.{i}.ln_1.weight"], t[p + "input_layernorm.weight"])
        np.testing.assert_array_equal(w[f"h.{i}.ln_2.weight"],
                                      t[p + "post_attention_layernorm.weight"])
        if bias:
            np.testing.assert_array_equal(w[f"h.{i}.attn.c_attn.bias"][D:D + KV * DH],
                                          t[p + "self_attn.k_proj.bias"])
            np.testing.assert_array_equal(w[f"h.{i}.mlp.c_fc.bias"][F:], t[p + "mlp.up_proj.bias"])


# --------------------------------------------------------------------------------------------
# Loading


def test_load_untied_llama(tmp_path):
    t = hf_tensors()
    t["model.layers.0.self_attn.rotary_emb.inv_freq"] = np.ones(DH // 2, np.float32)  # buffer
    d = write_dir(tmp_path / "my-llama", t)
    cfg = config_from_dir(d)
    assert cfg == ModelConfig(
        "my-llama", n_layer=L, d_model=D, n_head=H, ctx=CTX, vocab=V, d_ff=F, ln_eps=1e-5,
        checkpoint=str(d.resolve()), norm="rmsnorm", position="rope", mlp="swiglu",
        n_kv_head=KV, bias=False, tied_head=False, rope_theta=5e5,
        rope_scaling=RopeScaling(8.0, 1.0, 4.0, 16))
    w = load_weights(cfg)
    assert all(v.dtype == np.float32 for v in w.values())
    check_fusion(w, t)
    np.testing.assert_array_equal(w["lm_head"], t["lm_head.weight"])
    assert get_model(str(d)) == cfg


def test_load_tied_llama_with_and_without_lm_head(tmp_path):
    conf = llama_config_json(tie_word_embeddings=True)
    t = hf_tensors(tied=True)
    cfg = config_from_dir(write_dir(tmp_path / "a", t, conf))
    assert cfg.tied_head and "lm_head" not in load_weights(cfg)
    # Some exports store the tied head too: accepted when it equals the embedding...
    t2 = dict(t, **{"lm_head.weight": t["model.embed_tokens.weight"].copy()})
    check_fusion(load_weights(config_from_dir(write_dir(tmp_path / "b", t2, conf))), t)
    # ...and refused when it does not.
    t3 = dict(t, **{"lm_head.weight": t["model.embed_tokens.weight"] + 1})
    with pytest.raises(ModelError, match="lm_head.weight differs from model.embed_tokens.weight "
                                         "but the config ties them"):
        load_weights(config_from_dir(write_dir(tmp_path / "c", t3, conf)))


def test_llama_with_biases(tmp_path):
    t = hf_tensors(bias=True)
    d = write_dir(tmp_path / "b", t, llama_config_json(attention_bias=True, mlp_bias=True))
    cfg = config_from_dir(d)
    assert cfg.bias and cfg.family == "llama"
    check_fusion(load_weights(cfg), t, bias=True)


def _write_bf16(path, tensors):
    """A BF16 safetensors file by the format's spec (numpy has no bfloat16)."""
    header, blobs, offset = {"__metadata__": {"format": "pt"}}, [], 0
    for name, arr in tensors.items():
        u = np.ascontiguousarray(arr, np.float32).view(np.uint32)
        blob = ((u + 0x7FFF + ((u >> 16) & 1)) >> 16).astype("<u2").tobytes()  # RNE
        header[name] = {"dtype": "BF16", "shape": list(arr.shape),
                        "data_offsets": [offset, offset + len(blob)]}
        blobs.append(blob)
        offset += len(blob)
    head = json.dumps(header).encode()
    head += b" " * (-len(head) % 8)
    path.write_bytes(struct.pack("<Q", len(head)) + head + b"".join(blobs))


@pytest.mark.parametrize("dtype", ["bf16", "fp16", "fp32"])
def test_dtypes_widen_exactly(tmp_path, dtype):
    t = hf_tensors(seed=4)
    d = tmp_path / dtype
    if dtype == "bf16":
        d.mkdir()
        (d / "config.json").write_text(json.dumps(llama_config_json()))
        _write_bf16(d / "model.safetensors", t)
        u = t["model.layers.1.mlp.up_proj.weight"].view(np.uint32)
        expect = (((u + 0x7FFF + ((u >> 16) & 1)) >> 16) << 16).astype(np.uint32).view(np.float32)
    else:
        np_dtype = np.float16 if dtype == "fp16" else np.float32
        write_dir(d, {k: v.astype(np_dtype) for k, v in t.items()})
        expect = t["model.layers.1.mlp.up_proj.weight"].astype(np_dtype).astype(np.float32)
    w = load_weights(config_from_dir(d))
    np.testing.assert_array_equal(w["h.1.mlp.c_fc.weight"][:, F:], expect.T)
    if dtype != "fp32":
        assert not np.array_equal(expect, t["model.layers.1.mlp.up_proj.weight"])


def test_sharded_llama(tmp_path):
    t = hf_tensors(seed=7)
    d = tmp_path / "s"
    d.mkdir()
    (d / "config.json").write_text(json.dumps(llama_config_json()))
    names = sorted(t)
    shards = {"model-00001-of-00003.safetensors": names[:7],
              "model-00002-of-00003.safetensors": names[7:15],
              "model-00003-of-00003.safetensors": names[15:]}
    for file, keys in shards.items():
        save_file({k: t[k] for k in keys}, str(d / file), metadata={"format": "pt"})
    index = {"metadata": {"total_size": 0},
             "weight_map": {k: f for f, ks in shards.items() for k in ks}}
    (d / "model.safetensors.index.json").write_text(json.dumps(index))
    check_fusion(load_weights(config_from_dir(d)), t)
    (d / "model-00002-of-00003.safetensors").unlink()
    with pytest.raises(ModelError, match="lists model-00002-of-00003.safetensors, which is "
                                         "missing"):
        config_from_dir(d)


@pytest.mark.parametrize("over, theta, scaling", [
    ({"rope_scaling": None, "rope_theta": 10000.0}, 1e4, None),
    ({"rope_scaling": {"rope_type": "default"}}, 5e5, None),
    ({"rope_scaling": {"type": "llama3", "factor": 32.0, "low_freq_factor": 1.0,
                       "high_freq_factor": 4.0, "original_max_position_embeddings": 8192}},
     5e5, RopeScaling(32.0, 1.0, 4.0, 8192)),
    # Newer transformers: theta and scaling together under rope_parameters.
    ({"rope_scaling": None, "rope_theta": None,
      "rope_parameters": {"rope_type": "llama3", "rope_theta": 500000.0, "factor": 8.0,
                          "low_freq_factor": 1.0, "high_freq_factor": 4.0,
                          "original_max_position_embeddings": 8192}},
     5e5, RopeScaling(8.0, 1.0, 4.0, 8192)),
    ({"rope_scaling": None, "rope_parameters": {"rope_type": "default", "rope_theta": 1e6}},
     1e6, None),
    # transformers 5 may write the top-level rope_theta as null next to rope_parameters.
    ({"rope_scaling": None, "rope_theta": "null",
      "rope_parameters": {"rope_type": "default", "rope_theta": 2e5}}, 2e5, None),
])
def test_rope_config_forms(tmp_path, over, theta, scaling):
    conf = llama_config_json(**over)
    conf = {k: v for k, v in conf.items() if not (k == "rope_theta" and v is None)}
    if conf.get("rope_theta") == "null":
        conf["rope_theta"] = None
    cfg = config_from_dir(write_dir(tmp_path / "r", hf_tensors(), conf))
    assert (cfg.rope_theta, cfg.rope_scaling) == (theta, scaling)


@pytest.mark.parametrize("over, message", [
    ({"rope_scaling": {"rope_type": "yarn", "factor": 4.0,
                       "original_max_position_embeddings": 16}},
     "rope_scaling type 'yarn' is not supported; pimgpt implements the llama3"),
    ({"rope_scaling": {"type": "linear", "factor": 2.0}}, "rope_scaling type 'linear' is not"),
    ({"rope_parameters": {"rope_type": "dynamic", "rope_theta": 1e4, "factor": 2.0}},
     "rope_parameters type 'dynamic' is not supported"),
    ({"rope_parameters": {"full_attention": {"rope_type": "default"}}},
     "rope_parameters per attention type is not supported"),
    ({"rope_scaling": {"rope_type": "llama3", "factor": 8.0}},
     "missing key 'low_freq_factor' of the llama3 scaling"),
    ({"partial_rotary_factor": 1, "rope_scaling": {"rope_type": "default",
                                                   "partial_rotary_factor": 0.5}},
     "partial_rotary_factor 0.5 is not supported"),
    ({"hidden_act": "gelu"}, "hidden_act 'gelu' is not supported"),
    ({"head_dim": 32}, "head_dim 32 times num_attention_heads 4 is not hidden_size 64"),
    ({"head_dim": "16"}, "head_dim '16' times num_attention_heads 4"),
    ({"attention_bias": True}, "attention_bias=True and mlp_bias=False differ"),
    ({"num_key_value_heads": 3}, "n_head 4 is not a multiple of n_kv_head 3"),
    ({"tie_word_embeddings": "yes"}, "tie_word_embeddings must be true or false"),
    ({"rms_norm_eps": "small"}, "rms_norm_eps must be a number"),
    ({"num_hidden_layers": None}, "n_layer must be an integer in 1..1024"),
    ({"model_type": "mixtral"}, "model_type is 'mixtral'; supported model types are gpt2, "
                                "llama"),
])
def test_unsupported_configs(tmp_path, over, message):
    d = write_dir(tmp_path / "u", hf_tensors(), llama_config_json(**over))
    with pytest.raises(ModelError, match=message) as exc:
        config_from_dir(d)
    assert "\n" not in str(exc.value) and "config.json" in str(exc.value)


def test_missing_key(tmp_path):
    conf = llama_config_json()
    del conf["intermediate_size"]
    with pytest.raises(ModelError, match="config.json: missing key intermediate_size; a Llama "
                                         "config.json needs"):
        config_from_dir(write_dir(tmp_path / "m", hf_tensors(), conf))


@pytest.mark.parametrize("edit, message", [
    (lambda t: t.pop("model.layers.1.self_attn.k_proj.weight"),
     r"missing tensor model.layers.1.self_attn.k_proj.weight \(shape \[32, 64\]\)"),
    (lambda t: t.pop("lm_head.weight"), r"missing tensor lm_head.weight \(shape \[80, 64\]\)"),
    (lambda t: t.update({"model.layers.0.self_attn.k_proj.weight": np.zeros((64, 64),
                                                                           np.float32)}),
     r"tensor model.layers.0.self_attn.k_proj.weight has shape \[64, 64\], expected \[32, 64\]"),
    (lambda t: t.update({"model.layers.0.mlp.down_proj.weight": np.zeros((96, 64), np.float32)}),
     r"expected \[64, 96\] \(it looks transposed: Llama checkpoints store nn.Linear weights "
     r"\[out, in\]\)"),
    (lambda t: t.update({"model.layers.0.self_attn.q_norm.weight": np.ones(16, np.float32)}),
     "unexpected tensor model.layers.0.self_attn.q_norm.weight"),
    (lambda t: t.update({"model.layers.0.mlp.up_proj.bias": np.ones(96, np.float32)}),
     "unexpected tensor model.layers.0.mlp.up_proj.bias"),
])
def test_bad_tensors(tmp_path, edit, message):
    t = hf_tensors()
    edit(t)
    cfg = config_from_dir(write_dir(tmp_path / "t", t))
    with pytest.raises(ModelError, match=message) as exc:
        load_weights(cfg)
    assert "\n" not in str(exc.value)


def test_integer_tensor_refused(tmp_path):
    t = hf_tensors()
    t["model.norm.weight"] = np.ones(D, np.int8)
    with pytest.raises(ModelError, match="has dtype I8; only F16, BF16, F32 and F64"):
        load_weights(config_from_dir(write_dir(tmp_path / "i", t)))


# --------------------------------------------------------------------------------------------
# Saving, YAML


@pytest.mark.parametrize("tied", [False, True])
def test_save_checkpoint_llama_layout(tmp_path, tied):
    cfg = ModelConfig("m", n_layer=L, d_model=D, n_head=H, ctx=CTX, vocab=V, d_ff=F,
                      norm="rmsnorm", position="rope", mlp="swiglu", n_kv_head=KV, bias=False,
                      tied_head=tied, rope_theta=5e5, rope_scaling=RopeScaling(8.0, 1.0, 4.0, 16))
    w = random_weights(cfg, 3)
    d = save_checkpoint(cfg, w, tmp_path / "out")
    conf = json.loads((d / "config.json").read_text())
    assert (conf["model_type"], conf["num_key_value_heads"], conf["intermediate_size"],
            conf["tie_word_embeddings"], conf["rope_scaling"]["rope_type"]) == (
        "llama", KV, F, tied, "llama3")
    from safetensors import safe_open

    with safe_open(str(d / "model.safetensors"), framework="numpy") as fh:
        keys = set(fh.keys())
        assert fh.get_tensor("model.layers.1.self_attn.v_proj.weight").shape == (KV * DH, D)
    assert ("lm_head.weight" in keys) is not tied
    back_cfg = config_from_dir(d)
    assert back_cfg == ModelConfig(**{**cfg.to_dict(), "name": "out",
                                      "checkpoint": str(d.resolve())})
    back = load_weights(back_cfg)
    assert list(back) == list(w) and all(np.array_equal(back[k], w[k]) for k in w)


def test_save_checkpoint_refuses_mixed_architecture(tmp_path):
    cfg = ModelConfig("mix", n_layer=1, d_model=32, n_head=2, ctx=8, vocab=40, norm="rmsnorm")
    with pytest.raises(ModelError, match="has no Hugging Face layout"):
        save_checkpoint(cfg, random_weights(cfg, 0), tmp_path / "x")
    assert not (tmp_path / "x").exists()


def test_yaml_pointing_at_llama_checkpoint(tmp_path):
    write_dir(tmp_path / "ckpt", hf_tensors())
    f = tmp_path / "m.yaml"
    f.write_text("checkpoint: ckpt\nrope_theta: 5e5\nn_kv_head: 2\nname: mine\n")
    cfg = config_from_yaml(f)
    assert cfg.name == "mine" and cfg.rope_scaling == RopeScaling(8.0, 1.0, 4.0, 16)
    f.write_text("checkpoint: ckpt\nrope_theta: 1e4\n")
    with pytest.raises(ModelError, match=r"rope_theta='1e4' disagrees with .*config.json"):
        config_from_yaml(f)

"""Checkpoint directories, weights (load, save, random), model YAML files."""

import json
import struct

import numpy as np
import pytest
from safetensors import safe_open
from safetensors.numpy import save_file

from pimgpt.sw.checkpoint import (
    check_weights,
    config_from_dir,
    config_from_yaml,
    expected_shapes,
    load_weights,
    random_weights,
    save_checkpoint,
    weights_for,
)
from pimgpt.sw.models import PRESETS, ModelConfig, ModelError, get_model

# A small model: 2 layers, d 32, 2 heads of 16, d_ff 4*32, ctx 8, vocab 40.
SMALL = ModelConfig("small", n_layer=2, d_model=32, n_head=2, ctx=8, vocab=40)


def hf_config_json(**over):
    """config.json as transformers' GPT2Config.save_pretrained writes it (for SMALL)."""
    cfg = {
        "activation_function": "gelu_new", "architectures": ["GPT2LMHeadModel"],
        "attn_pdrop": 0.1, "bos_token_id": 39, "embd_pdrop": 0.1, "eos_token_id": 39,
        "initializer_range": 0.02, "layer_norm_epsilon": 1e-05, "model_type": "gpt2",
        "n_ctx": 8, "n_embd": 32, "n_head": 2, "n_inner": None, "n_layer": 2, "n_positions": 8,
        "reorder_and_upcast_attn": False, "resid_pdrop": 0.1,
        "scale_attn_by_inverse_layer_idx": False, "scale_attn_weights": True,
        "summary_activation": None, "summary_first_dropout": 0.1, "summary_proj_to_labels": True,
        "summary_type": "cls_index", "summary_use_proj": True, "torch_dtype": "float32",
        "transformers_version": "4.40.0", "use_cache": True, "vocab_size": 40,
    }
    cfg.update(over)
    return cfg


def hf_tensors(weights, prefix, dtype=np.float32, buffers=True, lm_head=False):
    """Hugging Face tensor names and layout, written here independently of checkpoint.py."""
    out = {}
    for name, arr in weights.items():
        hf = name + ".weight" if name in ("wte", "wpe") else name
        out[prefix + hf] = arr.astype(dtype)
    if buffers:  # older checkpoints store the causal mask buffers
        for i in range(SMALL.n_layer):
            out[f"{prefix}h.{i}.attn.bias"] = np.tril(np.ones((1, 1, 8, 8), dtype))
            out[f"{prefix}h.{i}.attn.masked_bias"] = np.array(-1e4, dtype)
    if lm_head:
        out["lm_head.weight"] = weights["wte"].astype(dtype)
    return out


def write_hf_dir(path, weights, prefix="transformer.", config=None, **kw):
    path.mkdir(parents=True, exist_ok=True)
    (path / "config.json").write_text(json.dumps(config or hf_config_json()))
    save_file(hf_tensors(weights, prefix, **kw), str(path / "model.safetensors"),
              metadata={"format": "pt"})
    return path


@pytest.fixture
def weights():
    return random_weights(SMALL, seed=3)


# --------------------------------------------------------------------------------------------
# Loading


@pytest.mark.parametrize("prefix", ["transformer.", ""])
def test_load_hf_checkpoint(tmp_path, weights, prefix):
    d = write_hf_dir(tmp_path / "my-gpt", weights, prefix=prefix, lm_head=bool(prefix))
    cfg = config_from_dir(d)
    assert cfg == ModelConfig("my-gpt", n_layer=2, d_model=32, n_head=2, ctx=8, vocab=40,
                              d_ff=128, ln_eps=1e-5, checkpoint=str(d.resolve()))
    loaded = load_weights(cfg)
    assert list(loaded) == list(expected_shapes(SMALL))  # buffers and lm_head dropped
    for name, arr in weights.items():
        assert loaded[name].dtype == np.float32
        np.testing.assert_array_equal(loaded[name], arr)
    assert get_model(str(d)) == cfg


def test_config_n_ctx_only_and_n_inner(tmp_path, weights):
    conf = hf_config_json(n_inner=64, layer_norm_epsilon=1e-6)
    del conf["n_positions"]
    w = dict(weights)
    for i in range(2):
        w[f"h.{i}.mlp.c_fc.weight"] = w[f"h.{i}.mlp.c_fc.weight"][:, :64]
        w[f"h.{i}.mlp.c_fc.bias"] = w[f"h.{i}.mlp.c_fc.bias"][:64]
        w[f"h.{i}.mlp.c_proj.weight"] = w[f"h.{i}.mlp.c_proj.weight"][:64]
    cfg = config_from_dir(write_hf_dir(tmp_path / "m", w, config=conf))
    assert (cfg.ctx, cfg.d_ff, cfg.ln_eps) == (8, 64, 1e-6)
    assert load_weights(cfg)["h.1.mlp.c_proj.weight"].shape == (64, 32)


def test_fp16_weights_widen_to_float32(tmp_path, weights):
    cfg = config_from_dir(write_hf_dir(tmp_path / "m", weights, dtype=np.float16))
    loaded = load_weights(cfg)
    assert loaded["wte"].dtype == np.float32
    np.testing.assert_array_equal(loaded["wte"], weights["wte"].astype(np.float16))


def _write_bf16_safetensors(path, tensors):
    """A BF16 safetensors file by the format's spec: u64 header length, JSON header, data."""
    header, blobs, offset = {"__metadata__": {"format": "pt"}}, [], 0
    for name, arr in tensors.items():
        bits = (np.ascontiguousarray(arr, np.float32).view(np.uint32) >> 16).astype("<u2")
        blob = bits.tobytes()
        header[name] = {"dtype": "BF16", "shape": list(arr.shape),
                        "data_offsets": [offset, offset + len(blob)]}
        blobs.append(blob)
        offset += len(blob)
    head = json.dumps(header).encode()
    head += b" " * (-len(head) % 8)
    path.write_bytes(struct.pack("<Q", len(head)) + head + b"".join(blobs))


def test_bf16_weights_widen_exactly(tmp_path, weights):
    d = tmp_path / "m"
    d.mkdir()
    (d / "config.json").write_text(json.dumps(hf_config_json()))
    _write_bf16_safetensors(d / "model.safetensors", hf_tensors(weights, "", buffers=False))
    loaded = load_weights(config_from_dir(d))
    # Truncation to the upper 16 bits, as written above, then exact widening.
    expect = (weights["h.0.attn.c_attn.weight"].view(np.uint32) & 0xFFFF0000).view(np.float32)
    np.testing.assert_array_equal(loaded["h.0.attn.c_attn.weight"], expect)
    # bf16 keeps 8 significant bits: truncation error is below 2**-7 of each value.
    assert np.all(np.abs(loaded["wte"] - weights["wte"]) <= np.abs(weights["wte"]) * 2.0**-7)


def test_sharded_checkpoint(tmp_path, weights):
    d = tmp_path / "m"
    d.mkdir()
    (d / "config.json").write_text(json.dumps(hf_config_json()))
    tensors = hf_tensors(weights, "transformer.", buffers=False)
    names = sorted(tensors)
    shards = {"model-00001-of-00002.safetensors": names[:10],
              "model-00002-of-00002.safetensors": names[10:]}
    for file, keys in shards.items():
        save_file({k: tensors[k] for k in keys}, str(d / file), metadata={"format": "pt"})
    index = {"metadata": {}, "weight_map": {k: f for f, ks in shards.items() for k in ks}}
    (d / "model.safetensors.index.json").write_text(json.dumps(index))
    loaded = load_weights(config_from_dir(d))
    np.testing.assert_array_equal(loaded["ln_f.bias"], weights["ln_f.bias"])


# --------------------------------------------------------------------------------------------
# Bad input


def test_missing_dir(tmp_path):
    with pytest.raises(ModelError, match=r"checkpoint directory .*nowhere not found"):
        config_from_dir(tmp_path / "nowhere")


def test_missing_config_json(tmp_path):
    (tmp_path / "m").mkdir()
    with pytest.raises(ModelError, match=r"m/config.json not found; a checkpoint directory"):
        config_from_dir(tmp_path / "m")


def test_malformed_json(tmp_path, weights):
    d = write_hf_dir(tmp_path / "m", weights)
    (d / "config.json").write_text('{"n_layer": 2,')
    with pytest.raises(ModelError, match=r"config.json is not valid JSON \(line 1"):
        config_from_dir(d)
    (d / "config.json").write_text("[1, 2]")
    with pytest.raises(ModelError, match="must hold a JSON object"):
        config_from_dir(d)


def test_missing_config_key(tmp_path, weights):
    conf = hf_config_json()
    del conf["n_head"]
    d = write_hf_dir(tmp_path / "m", weights, config=conf)
    with pytest.raises(ModelError, match="config.json: missing key n_head"):
        config_from_dir(d)


def test_unsupported_architecture(tmp_path, weights):
    d = write_hf_dir(tmp_path / "m", weights, config=hf_config_json(activation_function="relu"))
    with pytest.raises(ModelError, match="activation_function 'relu' is not supported"):
        config_from_dir(d)
    (d / "config.json").write_text(json.dumps(hf_config_json(model_type="mistral")))
    with pytest.raises(ModelError, match="model_type is 'mistral'; supported model types are "
                                         "gpt2, llama"):
        config_from_dir(d)


def test_missing_safetensors(tmp_path, weights):
    d = write_hf_dir(tmp_path / "m", weights)
    (d / "model.safetensors").unlink()
    (d / "pytorch_model.bin").write_bytes(b"not loaded")
    with pytest.raises(ModelError, match=r"model.safetensors not found \(pytorch_model.bin is a "
                                         r"pickle and is never loaded\); save the model with"):
        config_from_dir(d)


def test_corrupt_safetensors(tmp_path, weights):
    d = write_hf_dir(tmp_path / "m", weights)
    cfg = config_from_dir(d)
    (d / "model.safetensors").write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{garbage")
    with pytest.raises(ModelError, match="is not a valid safetensors file"):
        load_weights(cfg)


def test_wrong_tensor_shape(tmp_path, weights):
    w = dict(weights, **{"h.1.attn.c_proj.bias": np.zeros(31, np.float32)})
    cfg = config_from_dir(write_hf_dir(tmp_path / "m", w))
    with pytest.raises(ModelError, match=r"tensor h.1.attn.c_proj.bias has shape \[31\], "
                                         r"expected \[32\]"):
        load_weights(cfg)


def test_transposed_tensor_hint(tmp_path, weights):
    w = dict(weights)
    w["h.0.mlp.c_fc.weight"] = np.ascontiguousarray(w["h.0.mlp.c_fc.weight"].T)  # nn.Linear
    cfg = config_from_dir(write_hf_dir(tmp_path / "m", w))
    with pytest.raises(ModelError, match=r"shape \[128, 32\], expected \[32, 128\] \(it looks "
                                         r"transposed"):
        load_weights(cfg)


def test_missing_tensor(tmp_path, weights):
    w = {k: v for k, v in weights.items() if k != "h.1.ln_2.weight"}
    cfg = config_from_dir(write_hf_dir(tmp_path / "m", w))
    with pytest.raises(ModelError, match=r"missing tensor h.1.ln_2.weight \(shape \[32\]\)"):
        load_weights(cfg)


def test_config_disagrees_with_weights(tmp_path, weights):
    d = write_hf_dir(tmp_path / "m", weights, config=hf_config_json(n_layer=3))
    with pytest.raises(ModelError, match="missing tensor h.2.ln_1.weight"):
        load_weights(config_from_dir(d))


def test_unexpected_and_untied_tensors(tmp_path, weights):
    d = write_hf_dir(tmp_path / "m", dict(weights, **{"score.weight": np.zeros((32, 2))}))
    with pytest.raises(ModelError, match="unexpected tensor score.weight"):
        load_weights(config_from_dir(d))
    d = write_hf_dir(tmp_path / "u", weights, buffers=False)
    tensors = hf_tensors(weights, "transformer.", buffers=False)
    tensors["lm_head.weight"] = tensors["transformer.wte.weight"] + 1
    save_file(tensors, str(d / "model.safetensors"))
    with pytest.raises(ModelError, match="lm_head.weight differs from wte"):
        load_weights(config_from_dir(d))


def test_load_weights_needs_checkpoint():
    with pytest.raises(ModelError, match="model tiny has no checkpoint"):
        load_weights(PRESETS["tiny"])


# --------------------------------------------------------------------------------------------
# Saving, random weights


def test_save_checkpoint_writes_hf_layout(tmp_path, weights):
    d = save_checkpoint(SMALL, weights, tmp_path / "out")
    assert sorted(p.name for p in d.iterdir()) == ["config.json", "model.safetensors"]
    conf = json.loads((d / "config.json").read_text())
    assert conf["model_type"] == "gpt2" and conf["activation_function"] == "gelu_new"
    assert (conf["n_layer"], conf["n_embd"], conf["n_head"], conf["n_positions"],
            conf["vocab_size"], conf["n_inner"]) == (2, 32, 2, 8, 40, None)
    with safe_open(str(d / "model.safetensors"), framework="numpy") as fh:
        keys = set(fh.keys())
        assert fh.metadata() == {"format": "pt"}
        assert fh.get_tensor("transformer.h.1.attn.c_attn.weight").shape == (32, 96)
    assert "transformer.wte.weight" in keys and "transformer.ln_f.bias" in keys
    assert all(k.startswith("transformer.") for k in keys) and len(keys) == len(weights)
    cfg = config_from_dir(d)
    assert (cfg.n_layer, cfg.d_model, cfg.n_head, cfg.ctx, cfg.vocab) == (2, 32, 2, 8, 40)
    back = load_weights(cfg)
    assert all(np.array_equal(back[k], weights[k]) for k in weights)


def test_save_checkpoint_rejects_bad_weights(tmp_path, weights):
    w = dict(weights)
    del w["wpe"]
    with pytest.raises(ModelError, match="missing tensor wpe"):
        save_checkpoint(SMALL, w, tmp_path / "out")
    assert not (tmp_path / "out").exists()  # nothing written
    with pytest.raises(ModelError, match="dtype 'int8' is not supported"):
        save_checkpoint(SMALL, weights, tmp_path / "out", dtype="int8")
    with pytest.raises(ModelError, match="unexpected tensor lm_head"):
        check_weights(SMALL, dict(weights, lm_head=weights["wte"]))


def test_random_weights_scales_and_determinism():
    cfg = ModelConfig("r", n_layer=4, d_model=256, n_head=4, ctx=64, vocab=512)
    a, b, c = random_weights(cfg, 7), random_weights(cfg, 7), random_weights(cfg, 8)
    assert all(np.array_equal(a[k], b[k]) for k in a)
    assert not np.array_equal(a["wte"], c["wte"])
    check_weights(cfg, a)
    assert all(v.dtype == np.float32 for v in a.values())
    assert abs(a["wte"].std() - 0.02) < 0.001 and abs(a["wte"].mean()) < 0.001
    assert abs(a["h.2.mlp.c_fc.weight"].std() - 0.02) < 0.001
    # Residual projections scaled by 1/sqrt(2 * n_layer) = 1/sqrt(8).
    assert abs(a["h.0.attn.c_proj.weight"].std() - 0.02 / 8**0.5) < 0.0005
    assert abs(a["h.3.mlp.c_proj.weight"].std() - 0.02 / 8**0.5) < 0.0005
    assert np.all(a["h.1.ln_1.weight"] == 1) and np.all(a["ln_f.bias"] == 0)
    bias = a["h.0.attn.c_attn.bias"]
    assert 0 < bias.std() < 0.005


def test_random_weights_gpt2_small():
    # Its time is a benchmark figure (pimgpt.apps.bench_compiler, golden section: weights_s).
    cfg = get_model("gpt2-small")
    w = random_weights(cfg, 0)
    assert sum(v.size for v in w.values()) == cfg.n_params == 124_439_808
    assert w["wte"].shape == (50257, 768) and w["h.11.mlp.c_proj.weight"].shape == (3072, 768)


def test_weights_for(tmp_path, weights):
    np.testing.assert_array_equal(weights_for(SMALL, seed=3)["wte"], weights["wte"])
    cfg = config_from_dir(save_checkpoint(SMALL, random_weights(SMALL, 9), tmp_path / "c"))
    np.testing.assert_array_equal(weights_for(cfg, seed=3)["wte"],
                                  random_weights(SMALL, 9)["wte"])


# --------------------------------------------------------------------------------------------
# Model YAML files


def test_yaml_model(tmp_path):
    f = tmp_path / "my-model.yaml"
    f.write_text("n_layer: 3\nd_model: 96\nn_head: 3\nctx: 128\nvocab: 1000\nln_eps: 1e-6\n")
    cfg = config_from_yaml(f)
    assert cfg == ModelConfig("my-model", n_layer=3, d_model=96, n_head=3, ctx=128, vocab=1000,
                              d_ff=384, ln_eps=1e-6)
    assert get_model(str(f)) == cfg


def test_yaml_with_checkpoint(tmp_path, weights):
    save_checkpoint(SMALL, weights, tmp_path / "ckpt")
    f = tmp_path / "m.yml"
    f.write_text("name: mine\ncheckpoint: ckpt\nn_layer: 2\n")
    cfg = config_from_yaml(f)
    assert cfg.name == "mine" and cfg.d_model == 32 and cfg.checkpoint == str(
        (tmp_path / "ckpt").resolve())
    assert np.array_equal(load_weights(cfg)["wte"], weights["wte"])
    f.write_text("checkpoint: ckpt\nn_layer: 4\n")
    with pytest.raises(ModelError, match="n_layer=4 disagrees with .*config.json"):
        config_from_yaml(f)


@pytest.mark.parametrize("text, message", [
    ("n_layer: 2\nd_model: 64\nn_head: 4\nctx: 8\nlayers: 3\n",
     r"unknown keys \['layers'\] in the top level \(did you mean 'n_layer'\?\)"),
    ("n_layer: 2\nd_model: 64\n", "missing key n_head"),
    ("n_layer: [2\n", r"is not valid YAML \(line"),
    ("- 1\n- 2\n", "must be a mapping"),
    ("", "must be a mapping"),
    ("n_layer: two\nd_model: 64\nn_head: 4\nctx: 8\n", "n_layer must be an integer in 1..1024"),
    ("n_layer: 2\nd_model: 64\nn_head: 4\nctx: 8\nln_eps: small\n", "ln_eps must be a number"),
    ("checkpoint: nowhere\n", "checkpoint directory .*nowhere not found"),
])
def test_yaml_errors(tmp_path, text, message):
    f = tmp_path / "bad.yaml"
    f.write_text(text)
    with pytest.raises(ModelError, match=message):
        config_from_yaml(f)

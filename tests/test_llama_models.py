"""Llama-family model descriptions: presets, validation, model YAML files, hardware presets, the
mapper's sizes and capacity errors."""

from __future__ import annotations

import math
import re

import pytest

from pimgpt.cli import main as cli_main
from pimgpt.core.config import ConfigError, hw_from_dict, load_hw
from pimgpt.sw.checkpoint import config_from_yaml, expected_shapes, random_weights
from pimgpt.sw.hf_layout import llama_hf_shapes
from pimgpt.sw.image import build_dram_image
from pimgpt.sw.mapper import MappingError, map_model, to_bf16
from pimgpt.sw.models import (
    LLAMA_MODELS,
    PAPER_MODELS,
    PRESETS,
    ModelConfig,
    ModelError,
    RopeScaling,
    get_model,
)

# The published shapes (config.json of each model on the Hugging Face hub): layers, hidden, query
# heads, K/V heads, FFN, vocab, max positions, rope_theta, llama3 scaling, tied head.
PUBLISHED = {
    "llama-2-7b": (32, 4096, 32, 32, 11008, 32000, 4096, 1e4, None, False),
    "tinyllama-1.1b": (22, 2048, 32, 4, 5632, 32000, 2048, 1e4, None, False),
    "llama-3.2-1b": (16, 2048, 32, 8, 8192, 128256, 131072, 5e5, (32, 1, 4, 8192), True),
    "llama-3.2-3b": (28, 3072, 24, 8, 8192, 128256, 131072, 5e5, (32, 1, 4, 8192), True),
    "llama-3.1-8b": (32, 4096, 32, 8, 14336, 128256, 131072, 5e5, (8, 1, 4, 8192), False),
}
# Parameter counts as the models' publishers report them (e.g. 6,738,415,616 for Llama-2-7B,
# "1.24B" for Llama-3.2-1B with its tied head); the exact integers follow from the shapes above.
PARAMS = {"llama-2-7b": 6_738_415_616, "tinyllama-1.1b": 1_100_048_384,
          "llama-3.2-1b": 1_235_814_400, "llama-3.2-3b": 3_212_749_824,
          "llama-3.1-8b": 8_030_261_248}

TINY_LLAMA = dict(n_layer=2, d_model=64, n_head=4, ctx=32, vocab=96, d_ff=96, norm="rmsnorm",
                  position="rope", mlp="swiglu", n_kv_head=2, bias=False, tied_head=False)


@pytest.mark.parametrize("name", list(PUBLISHED))
def test_llama_presets_have_the_published_shapes(name):
    m = get_model(name)
    layers, d, h, kv, ff, vocab, ctx, theta, scaling, tied = PUBLISHED[name]
    assert (m.n_layer, m.d_model, m.n_head, m.n_kv_head, m.d_ff, m.vocab, m.ctx) == (
        layers, d, h, kv, ff, vocab, ctx)
    assert (m.rope_theta, m.tied_head, m.ln_eps, m.bias) == (theta, tied, 1e-5, False)
    assert (m.norm, m.position, m.mlp, m.family) == ("rmsnorm", "rope", "swiglu", "llama")
    if scaling is None:
        assert m.rope_scaling is None
    else:
        s = m.rope_scaling
        assert (s.factor, s.low_freq_factor, s.high_freq_factor,
                s.original_max_position_embeddings, s.rope_type) == (*scaling, "llama3")
    assert m.n_params == PARAMS[name]
    # The same count from both tensor layouts (pimgpt's fused matrices and Hugging Face's).
    assert sum(math.prod(s) for s in expected_shapes(m).values()) == PARAMS[name]
    assert sum(math.prod(s) for s in llama_hf_shapes(m).values()) == PARAMS[name]


def test_gpt_presets_keep_the_gpt2_architecture():
    assert LLAMA_MODELS == list(PUBLISHED)
    assert len(PAPER_MODELS) == 8 and not set(PAPER_MODELS) & set(LLAMA_MODELS)
    for name in ["tiny", *PAPER_MODELS]:
        m = PRESETS[name]
        assert (m.norm, m.position, m.mlp, m.bias, m.tied_head, m.family) == (
            "layernorm", "learned", "gelu", True, True, "gpt2")
        assert m.n_kv_head == m.n_head and m.kv_dim == m.d_model and m.fc_dim == m.d_ff
        assert m.rope_scaling is None and m.rope_inv_freq() is None
        assert "wpe" in expected_shapes(m) and "lm_head" not in expected_shapes(m)


def test_derived_sizes_and_weight_names():
    m = ModelConfig("t", **TINY_LLAMA)
    assert (m.d_head, m.group, m.kv_dim, m.qkv_dim, m.fc_dim) == (16, 2, 32, 128, 192)
    shapes = expected_shapes(m)
    assert shapes["h.1.attn.c_attn.weight"] == (64, 128)
    assert shapes["h.0.mlp.c_fc.weight"] == (64, 192) and shapes["h.0.mlp.c_proj.weight"] == (96,
                                                                                             64)
    assert shapes["lm_head"] == (96, 64) and list(shapes)[-1] == "lm_head"
    assert not [n for n in shapes if n.endswith(".bias") or n == "wpe"]
    mqa = ModelConfig("q", **{**TINY_LLAMA, "n_kv_head": 1, "bias": True})
    assert mqa.group == 4 and expected_shapes(mqa)["h.0.attn.c_attn.bias"] == (96,)
    assert ModelConfig("d", **{**TINY_LLAMA, "n_kv_head": 0}).n_kv_head == 4  # 0 means MHA


@pytest.mark.parametrize("over, message", [
    ({"norm": "batchnorm"}, "norm must be one of layernorm, rmsnorm"),
    ({"position": "alibi"}, "position must be one of learned, rope"),
    ({"mlp": "relu"}, "mlp must be one of gelu, swiglu"),
    ({"d_ff": 0}, "a SwiGLU MLP needs d_ff"),
    ({"n_kv_head": 3}, "n_head 4 is not a multiple of n_kv_head 3"),
    ({"n_kv_head": -1}, "n_kv_head must be an integer in 1..1024"),
    ({"bias": "no"}, "bias must be true or false"),
    ({"tied_head": 1}, "tied_head must be true or false"),
    ({"rope_theta": 0.5}, "rope_theta must be a number above 1"),
    ({"rope_theta": float("nan")}, "rope_theta must be a number above 1"),
    ({"position": "learned", "rope_scaling": {"factor": 8, "low_freq_factor": 1,
                                              "high_freq_factor": 4,
                                              "original_max_position_embeddings": 64}},
     "rope_scaling is set but position is 'learned'"),
    ({"rope_scaling": {"rope_type": "yarn", "factor": 4}}, "rope scaling type 'yarn' is not "
                                                           "supported"),
    ({"rope_scaling": {"factor": 8, "low_freq_factor": 4, "high_freq_factor": 1,
                       "original_max_position_embeddings": 64}},
     "low_freq_factor 4.0 must be below high_freq_factor 1.0"),
    ({"rope_scaling": {"factor": 0.5, "low_freq_factor": 1, "high_freq_factor": 4,
                       "original_max_position_embeddings": 64}}, "factor must be >= 1"),
    ({"rope_scaling": {"factor": 8, "low_freq_factor": 1, "high_freq_factor": 4}},
     "missing key 'original_max_position_embeddings'"),
    ({"rope_scaling": {"factor": 8, "low_freq_factor": 1, "high_freq_factor": 4,
                       "original_max_position_embeddings": 64, "beta": 1}},
     "rope_scaling: unknown keys ['beta']; valid keys: factor, "),
    ({"rope_scaling": [8, 1, 4, 64]}, "rope_scaling must be a mapping"),
])
def test_model_config_validation(over, message):
    with pytest.raises(ModelError, match=re.escape(message)) as exc:
        ModelConfig("bad", **{**TINY_LLAMA, **over})
    assert "\n" not in str(exc.value)


def test_rope_scaling_round_trip():
    m = ModelConfig("t", **TINY_LLAMA, rope_scaling={"rope_type": "llama3", "factor": 4,
                                                     "low_freq_factor": 1, "high_freq_factor": 4,
                                                     "original_max_position_embeddings": 32})
    assert m.rope_scaling == RopeScaling(4.0, 1.0, 4.0, 32)
    assert ModelConfig(**m.to_dict()) == m and hash(ModelConfig(**m.to_dict())) == hash(m)
    assert m.to_dict()["rope_scaling"]["factor"] == 4.0


def test_yaml_llama_model(tmp_path):
    f = tmp_path / "my-llama.yaml"
    f.write_text(
        "n_layer: 2\nd_model: 64\nn_head: 4\nn_kv_head: 1\nctx: 128\nvocab: 300\nd_ff: 160\n"
        "norm: rmsnorm\nposition: rope\nmlp: swiglu\nbias: false\ntied_head: false\n"
        "ln_eps: 1e-6\nrope_theta: 5e5\n"
        "rope_scaling: {rope_type: llama3, factor: 8, low_freq_factor: 1, high_freq_factor: 4,\n"
        "               original_max_position_embeddings: 64}\n")
    cfg = config_from_yaml(f)
    assert cfg == ModelConfig("my-llama", n_layer=2, d_model=64, n_head=4, n_kv_head=1, ctx=128,
                              vocab=300, d_ff=160, norm="rmsnorm", position="rope", mlp="swiglu",
                              bias=False, tied_head=False, ln_eps=1e-6, rope_theta=5e5,
                              rope_scaling=RopeScaling(8.0, 1.0, 4.0, 64))
    assert get_model(str(f)) == cfg and cfg.family == "llama"


@pytest.mark.parametrize("extra, message", [
    ("rope_scaling: {rope_type: llama3, factor: 8, low_freq_factor: 1, high_freq_factor: 4, "
     "original_max_position_embeddings: 64, extra: 1}\n",
     r"rope_scaling: unknown keys \['extra'\]"),
    ("rope_scaling: {rope_type: dynamic, factor: 2}\n", "'dynamic' is not supported"),
    ("rope_theta: big\n", "rope_theta must be a number"),
    ("rope_scaling: {rope_type: llama3, factor: eight, low_freq_factor: 1, high_freq_factor: 4, "
     "original_max_position_embeddings: 64}\n", "factor must be a number"),
    ("n_kv_heads: 2\n",
     r"unknown keys \['n_kv_heads'\] in the top level \(did you mean 'n_kv_head'\?\)"),
    ("norm: RMSNorm\n", "norm must be one of layernorm, rmsnorm"),
])
def test_yaml_llama_errors(tmp_path, extra, message):
    f = tmp_path / "bad.yaml"
    f.write_text("n_layer: 2\nd_model: 64\nn_head: 4\nctx: 8\nd_ff: 96\nposition: rope\n"
                 "mlp: swiglu\n" + extra)
    with pytest.raises(ModelError, match=message) as exc:
        config_from_yaml(f)
    assert "\n" not in str(exc.value)


def test_cli_models_lists_llama_presets(capsys):
    assert cli_main(["models"]) == 0
    out = capsys.readouterr().out
    row = next(line for line in out.splitlines() if line.startswith("llama-3.2-1b"))
    assert row.split()[1:6] == ["16", "2048", "32", "131072", "128256"]
    assert "1235.8M" in row
    assert "pimgpt-gddr6-16ch" in out and "pimgpt-gddr6-32ch" in out


# ---------------------------------------------------------------------------------------------
# Hardware presets and capacity
# ---------------------------------------------------------------------------------------------
def test_large_hardware_presets_only_add_channels_and_vector_units():
    import dataclasses

    base = load_hw("pimgpt-gddr6-8ch")
    for n in (16, 32):
        hw = load_hw(f"pimgpt-gddr6-{n}ch")
        assert hw.name == f"pimgpt-gddr6-{n}ch" and hw.dram.channels == n
        assert hw.dram.capacity_bytes == n // 2 * 2**30
        # one vector unit per 4 channels, as in the default; nothing else of the ASIC changes
        assert hw.asic == dataclasses.replace(base.asic, vector_units=n // 4)
        assert (hw.timing, hw.energy) == (base.timing, base.energy)
        assert {k: v for k, v in vars(hw.dram).items() if k != "channels"} == {
            k: v for k, v in vars(base.dram).items() if k != "channels"}


def test_hardware_base_key(tmp_path):
    f = tmp_path / "mine.yaml"
    f.write_text("base: pimgpt-gddr6-8ch\ndram: {rows: 8192}\nasic: {scratchpad_words: 1024}\n")
    hw = load_hw(str(f))
    assert (hw.name, hw.dram.rows, hw.dram.channels, hw.asic.scratchpad_words) == (
        str(f), 8192, 8, 1024)
    assert hw.timing == load_hw().timing
    with pytest.raises(ConfigError, match="base 'nope' is not a hardware preset"):
        hw_from_dict({"base": "nope"})
    with pytest.raises(ConfigError, match="'dram.channels' must be an integer in 1..32"):
        hw_from_dict({"base": "pimgpt-gddr6-8ch", "dram": {"channels": "many"}})
    # merged with the preset, then checked like any file
    with pytest.raises(ConfigError, match=r"unknown keys \[.chanels.\] in dram"):
        hw_from_dict({"base": "pimgpt-gddr6-8ch", "dram": {"chanels": 16}})


@pytest.mark.parametrize("name", LLAMA_MODELS)
def test_llama_presets_fit_32_channels_at_4096(name):
    cfg = get_model(name)
    hw = load_hw("pimgpt-gddr6-32ch")
    mm = map_model(cfg, hw, min(4096, cfg.ctx))
    d = hw.dram
    assert mm.rows_used <= d.rows
    # At least the weights' bytes are placed (regions round up to whole rows).
    totals = mm.to_dict()["totals"]
    assert totals["weight_bytes"] >= 2 * cfg.n_params
    kv = totals["kv_cache_bytes"]
    assert kv >= 2 * 2 * cfg.n_layer * cfg.kv_dim * min(4096, cfg.ctx)


def test_too_big_llama_gets_the_capacity_error():
    cfg = get_model("llama-3.1-8b")
    hw = load_hw("pimgpt-gddr6-16ch")
    with pytest.raises(MappingError) as exc:
        map_model(cfg, hw, 1024)
    msg = str(exc.value)
    m = re.search(r"needs (\d+) rows per bank .* has 16384 rows per bank .*--hw", msg)
    assert m, msg
    need = int(m.group(1))
    assert need > 16384 and need * hw.dram.slots * hw.dram.row_bytes >= 2 * cfg.n_params


def test_mapper_regions_follow_the_architecture():
    cfg = ModelConfig("t", **TINY_LLAMA)
    hw = load_hw("tiny-rtl")
    mm = map_model(cfg, hw)
    names = list(mm.regions)
    assert "wpe" not in names and "lm_head" in names
    assert "bias_qkv" not in names and "bias_fc" not in names
    members = [n for n, (reg, _m) in mm.vectors.items() if reg == "params_d"]
    assert len(members) == 2 * cfg.n_layer + 1  # ln_1, ln_2 gains, ln_f
    assert mm.regions["h.0.attn.c_attn.weight"].n_vectors == cfg.qkv_dim
    assert mm.regions["h.1.mlp.c_fc.weight"].n_vectors == 2 * cfg.d_ff
    assert mm.regions["h.0.k_cache"].vec_len == cfg.kv_dim
    assert mm.regions["h.0.v_cache"].n_vectors == cfg.kv_dim
    # The DRAM image holds the untied head's bf16 values where the region says.
    w = random_weights(cfg, 5)
    image = build_dram_image(mm, w)
    reg = mm.regions["lm_head"]
    got = image[0, 0, reg.row, : cfg.d_model]  # vector 0 sits in slot 0 from the region's row
    assert (got == to_bf16(w["lm_head"][0])).all()
    assert not (got == to_bf16(w["wte"][0])).all()

"""Model presets, model lookup, and the trained models shipped under pimgpt/models/."""

import json

import numpy as np
import pytest

from pimgpt.cli import main as cli_main
from pimgpt.sw.checkpoint import (
    expected_shapes,
    load_weights,
    shipped_model_dir,
    shipped_model_names,
)
from pimgpt.sw.models import PAPER_MODELS, PRESETS, ModelConfig, ModelError, get_model, list_models
from pimgpt.sw.tokenizer import decode, encode

SHIPPED = ["small-py", "tiny-llama-py", "tiny-py"]
GPT2_SHIPPED = ["small-py", "tiny-py"]  # tiny-llama-py: tests/test_llama_shipped.py


# Parameter counts of the Hugging Face GPT-2 models (tied head counted once).
@pytest.mark.parametrize("name, params", [
    ("gpt2-small", 124_439_808),
    ("gpt2-medium", 354_823_168),
    ("gpt2-large", 774_030_080),
    ("gpt2-xl", 1_557_611_200),
])
def test_gpt2_param_counts(name, params):
    assert get_model(name).n_params == params


def test_presets_shapes():
    assert len(PAPER_MODELS) == 8 and "tiny" not in PAPER_MODELS
    tiny = PRESETS["tiny"]
    assert (tiny.n_layer, tiny.d_model, tiny.n_head, tiny.ctx, tiny.vocab) == (2, 64, 4, 64, 256)
    assert tiny.d_ff == 256 and tiny.d_head == 16 and tiny.checkpoint is None
    for name in PAPER_MODELS:
        m = PRESETS[name]
        assert m.vocab == 50257 and m.d_ff == 4 * m.d_model and m.d_head % 16 == 0
    assert PRESETS["gpt3-large"].d_head == 96 and PRESETS["gpt3-xl"].ctx == 2048
    # n_params agrees with the tensor shapes of a checkpoint of that model.
    for name in ("tiny", "gpt2-small", "gpt3-xl"):
        m = PRESETS[name]
        assert sum(int(np.prod(s)) for s in expected_shapes(m).values()) == m.n_params


def test_model_config_validation():
    with pytest.raises(ModelError, match="d_head 8 must be a multiple of 16"):
        ModelConfig("x", n_layer=1, d_model=64, n_head=8, ctx=8)
    with pytest.raises(ModelError, match="n_layer must be an integer in 1..1024"):
        ModelConfig("x", n_layer=0, d_model=64, n_head=4, ctx=8)


def test_unknown_model_name():
    with pytest.raises(ModelError, match="unknown model 'gpt5'.*tiny-py"):
        get_model("gpt5")
    assert shipped_model_dir("../pimgpt") is None and shipped_model_dir("nope") is None


def test_list_models_includes_shipped():
    assert shipped_model_names() == SHIPPED
    names = list_models()
    assert names[: len(PRESETS)] == list(PRESETS) and names[len(PRESETS):] == SHIPPED


def test_cli_models_lists_shipped(capsys):
    assert cli_main(["models"]) == 0
    lines = capsys.readouterr().out.splitlines()
    row = next(line for line in lines if line.startswith("tiny-py"))
    assert row.split()[1:6] == ["2", "64", "4", "64", "256"]
    assert any(line.startswith("gpt2-small") and "124.4M" in line for line in lines)


# ---------------------------------------------------------------------------------------------
# An independent float64 GPT-2 forward pass, to check the shipped weights against training.


def _ln(x, w, b, eps):
    mu = x.mean(-1, keepdims=True)
    var = ((x - mu) ** 2).mean(-1, keepdims=True)
    return (x - mu) / np.sqrt(var + eps) * w + b


def _forward(cfg, w, tokens):
    """Logits [T, vocab] of a causal GPT-2 over ``tokens`` in float64."""
    w = {k: v.astype(np.float64) for k, v in w.items()}
    t = len(tokens)
    x = w["wte"][tokens] + w["wpe"][:t]
    mask = np.triu(np.full((t, t), -np.inf), 1)
    d, nh, dh = cfg.d_model, cfg.n_head, cfg.d_head
    for i in range(cfg.n_layer):
        p = f"h.{i}."
        h = _ln(x, w[p + "ln_1.weight"], w[p + "ln_1.bias"], cfg.ln_eps)
        qkv = h @ w[p + "attn.c_attn.weight"] + w[p + "attn.c_attn.bias"]
        q, k, v = (qkv[:, j * d:(j + 1) * d].reshape(t, nh, dh).transpose(1, 0, 2)
                   for j in range(3))
        s = q @ k.transpose(0, 2, 1) / np.sqrt(dh) + mask
        s = np.exp(s - s.max(-1, keepdims=True))
        o = (s / s.sum(-1, keepdims=True)) @ v
        x = x + o.transpose(1, 0, 2).reshape(t, d) @ w[p + "attn.c_proj.weight"] \
            + w[p + "attn.c_proj.bias"]
        h = _ln(x, w[p + "ln_2.weight"], w[p + "ln_2.bias"], cfg.ln_eps)
        u = h @ w[p + "mlp.c_fc.weight"] + w[p + "mlp.c_fc.bias"]
        g = 0.5 * u * (1 + np.tanh(np.sqrt(2 / np.pi) * (u + 0.044715 * u**3)))
        x = x + g @ w[p + "mlp.c_proj.weight"] + w[p + "mlp.c_proj.bias"]
    return _ln(x, w["ln_f.weight"], w["ln_f.bias"], cfg.ln_eps) @ w["wte"].T


@pytest.mark.parametrize("name", GPT2_SHIPPED)
def test_shipped_model_loads_and_matches_training(name):
    cfg = get_model(name)
    assert cfg.name == name and cfg.vocab == 256 and cfg.checkpoint
    if name == "tiny-py":  # runs on RTL: exactly the `tiny` shape
        tiny = PRESETS["tiny"]
        assert (cfg.n_layer, cfg.d_model, cfg.n_head, cfg.ctx, cfg.d_ff, cfg.ln_eps) == (
            tiny.n_layer, tiny.d_model, tiny.n_head, tiny.ctx, tiny.d_ff, tiny.ln_eps)
    else:
        assert (cfg.n_layer, cfg.d_model, cfg.n_head) == (4, 128, 4) and cfg.d_head % 16 == 0
    w = load_weights(cfg)
    assert all(v.dtype == np.float32 and np.isfinite(v).all() for v in w.values())
    report = json.loads((shipped_model_dir(name) / "training.json").read_text())

    # The float64 NLL that torch computed at the end of training, recomputed here.
    ids = encode(report["check"]["text"])
    logits = _forward(cfg, w, ids[:-1])
    logp = logits - logits.max(-1, keepdims=True)
    logp -= np.log(np.exp(logp).sum(-1, keepdims=True))
    nll = -logp[np.arange(len(ids) - 1), ids[1:]].mean()
    assert nll == pytest.approx(report["check"]["nll_float64"], abs=1e-9)
    assert nll < 2.5  # it learned something: uniform is 5.55 nats/byte

    # The recorded greedy sample: every generated byte is the argmax given the bytes before it.
    sample = report["sample"]["tokens"]
    n_prompt = len(encode(report["sample"]["prompt"]))
    assert len(sample) == cfg.ctx
    pred = _forward(cfg, w, sample[:-1]).argmax(-1)
    assert pred[n_prompt - 1:].tolist() == sample[n_prompt:]
    assert decode(sample) == report["sample"]["text"]
    assert report["eval"]["held_out_loss"] < 2.0

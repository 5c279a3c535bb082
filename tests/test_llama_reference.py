"""The reference models (sim/reference.py) on Llama-style architectures: float64 against an
independent float64 implementation written here, PIM arithmetic against float64, GQA against MHA
with repeated K/V heads (bit for bit), and generation against teacher forcing (bit for bit)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from pimgpt.sim import reference as ref
from pimgpt.sw.checkpoint import random_weights
from pimgpt.sw.models import ModelConfig, RopeScaling

G = 1024
BASE = dict(n_layer=2, d_model=64, n_head=4, ctx=24, vocab=96, d_ff=96, ln_eps=1e-5,
            norm="rmsnorm", position="rope", mlp="swiglu", n_kv_head=2, bias=False,
            tied_head=False, rope_theta=1e4)
CONFIGS = {
    # GQA, untied, Llama 3 scaling whose three bands all hold frequencies of a 16-wide head.
    "gqa-llama3": dict(BASE, rope_scaling=RopeScaling(4.0, 1.0, 4.0, 32)),
    "mqa-bias-tied": dict(BASE, n_kv_head=1, bias=True, tied_head=True, rope_theta=5e5),
    "mha-rope": dict(BASE, n_kv_head=4),
    # Mixes no checkpoint layout stores: each choice is independent in the reference models.
    "layernorm-rope-gelu": dict(BASE, norm="layernorm", mlp="gelu", d_ff=128, bias=True),
    "rmsnorm-learned-swiglu": dict(BASE, position="learned", tied_head=True),
}


def make(name, seed=0, scale=1.0):
    cfg = ModelConfig(name, **CONFIGS[name])
    w = random_weights(cfg, seed)
    if scale != 1.0:  # larger weights: sharper distributions, a harder test of the arithmetic
        w = {k: (v * np.float32(scale) if v.ndim == 2 else v) for k, v in w.items()}
    rng = np.random.default_rng(seed)
    for k in w:  # norm gains away from 1, so that they are exercised
        if ".ln_" in k or k.startswith("ln_f"):
            w[k] = (w[k] + (0.2 * rng.standard_normal(w[k].shape) if k.endswith("weight")
                            else 0.1 * rng.standard_normal(w[k].shape))).astype(np.float32)
    return cfg, w


# ---------------------------------------------------------------------------------------------
# An independent float64 implementation: whole sequences at once, Hugging Face's formulation
# (rotate_half with full-width cos/sin, repeat_kv, a causal mask), written for this test.
# ---------------------------------------------------------------------------------------------
def inv_freq_hf(dh, theta, s):
    inv = theta ** -(np.arange(0, dh, 2) / dh)
    if s is None:
        return inv
    wl = 2 * math.pi / inv
    lo_wl, hi_wl = s.original_max_position_embeddings / s.low_freq_factor, \
        s.original_max_position_embeddings / s.high_freq_factor
    new = np.where(wl > lo_wl, inv / s.factor, inv)
    smooth = (s.original_max_position_embeddings / wl - s.low_freq_factor) / (
        s.high_freq_factor - s.low_freq_factor)
    mid = ~(wl < hi_wl) & ~(wl > lo_wl)
    return np.where(mid, (1 - smooth) * new / s.factor + smooth * new, new)


def forward_f64(cfg, w, tokens):
    w = {k: v.astype(np.float64) for k, v in w.items()}
    T, d, H, KV, dh, f = len(tokens), cfg.d_model, cfg.n_head, cfg.n_kv_head, cfg.d_head, cfg.d_ff
    kvd = KV * dh

    def norm(x, name):
        if cfg.norm == "rmsnorm":
            return x / np.sqrt((x**2).mean(-1, keepdims=True) + cfg.ln_eps) * w[name + ".weight"]
        mu = x.mean(-1, keepdims=True)
        return (x - mu) / np.sqrt(((x - mu) ** 2).mean(-1, keepdims=True) + cfg.ln_eps) \
            * w[name + ".weight"] + w[name + ".bias"]

    def lin(x, name):
        return x @ w[name + ".weight"] + (w[name + ".bias"] if cfg.bias else 0.0)

    x = w["wte"][tokens]
    if cfg.position == "learned":
        x = x + w["wpe"][:T]
    else:
        ang = np.arange(T)[:, None] * inv_freq_hf(dh, cfg.rope_theta, cfg.rope_scaling)[None, :]
        cos = np.cos(np.concatenate([ang, ang], -1))[:, None, :]
        sin = np.sin(np.concatenate([ang, ang], -1))[:, None, :]

    def rot(z):
        if cfg.position == "learned":
            return z
        return z * cos + np.concatenate([-z[..., dh // 2:], z[..., :dh // 2]], -1) * sin

    mask = np.triu(np.full((T, T), -np.inf), 1)
    for i in range(cfg.n_layer):
        p = f"h.{i}."
        qkv = lin(norm(x, p + "ln_1"), p + "attn.c_attn")
        q = rot(qkv[:, :d].reshape(T, H, dh))
        k = np.repeat(rot(qkv[:, d:d + kvd].reshape(T, KV, dh)), H // KV, axis=1)
        v = np.repeat(qkv[:, d + kvd:].reshape(T, KV, dh), H // KV, axis=1)
        s = np.einsum("thd,uhd->htu", q, k) / math.sqrt(dh) + mask
        e = np.exp(s - s.max(-1, keepdims=True))
        o = np.einsum("htu,uhd->thd", e / e.sum(-1, keepdims=True), v).reshape(T, d)
        x = x + lin(o, p + "attn.c_proj")
        u = lin(norm(x, p + "ln_2"), p + "mlp.c_fc")
        if cfg.mlp == "swiglu":
            gate, up = u[:, :f], u[:, f:]
            a = gate / (1 + np.exp(-gate)) * up
        else:
            a = 0.5 * u * (1 + np.tanh(math.sqrt(2 / math.pi) * (u + 0.044715 * u**3)))
        x = x + lin(a, p + "mlp.c_proj")
    head = w["wte"] if cfg.tied_head else w["lm_head"]
    return norm(x, "ln_f") @ head.T


def tokens_for(cfg, n, seed=1):
    return [int(t) for t in np.random.default_rng(seed).integers(0, cfg.vocab, n)]


@pytest.mark.parametrize("name", list(CONFIGS))
def test_f64_model_matches_independent_implementation(name):
    cfg, w = make(name, scale=4.0)
    toks = tokens_for(cfg, cfg.ctx)
    got = ref.f64_logits_teacher_forced(cfg, w, toks)  # one step per token, K/V caches
    expect = forward_f64(cfg, w, toks)
    assert np.abs(expect).max() > 1.0  # not trivially small logits
    np.testing.assert_allclose(got, expect, rtol=1e-11, atol=1e-11)
    # The whole-sequence path (batched, as pimgpt accuracy uses it).
    batch = ref.F64Model(cfg, w).logits([toks, toks[::-1]])
    np.testing.assert_allclose(batch[0], expect, rtol=1e-11, atol=1e-11)
    np.testing.assert_allclose(batch[1], forward_f64(cfg, w, toks[::-1]), rtol=1e-11, atol=1e-11)


def test_rope_matters_and_positions_differ():
    """Sanity of the independent check: RoPE changes the logits (a missing rotation would be
    caught), and the scaling does too."""
    cfg, w = make("gqa-llama3", scale=4.0)
    toks = tokens_for(cfg, 12)
    base = ref.f64_logits_teacher_forced(cfg, w, toks)
    plain = ModelConfig("p", **{**CONFIGS["gqa-llama3"], "rope_scaling": None})
    assert np.abs(ref.f64_logits_teacher_forced(plain, w, toks) - base).max() > 1e-3
    learned = ModelConfig("l", **{**CONFIGS["gqa-llama3"], "position": "learned",
                                  "rope_scaling": None})
    wl = dict(w, wpe=np.zeros((cfg.ctx, cfg.d_model), np.float32))
    assert np.abs(ref.f64_logits_teacher_forced(learned, wl, toks) - base).max() > 1e-3


@pytest.mark.parametrize("name", ["gqa-llama3", "mqa-bias-tied", "layernorm-rope-gelu"])
def test_pim_model_close_to_float64(name):
    cfg, w = make(name, scale=4.0)
    toks = tokens_for(cfg, cfg.ctx)
    pim = ref.pim_logits_teacher_forced(cfg, w, G, toks).astype(np.float64)
    f64 = ref.f64_logits_teacher_forced(cfg, w, toks)
    rel = np.abs(pim - f64).max() / np.abs(f64).max()
    # bf16 weights and activations at the GEMV inputs: a few 2**-8 relative steps through two
    # layers. Measured 0.5-1.1 % here; a broken RoPE, GQA or norm gives several times more.
    assert 1e-4 < rel < 0.025, rel
    assert (pim.argmax(-1) == f64.argmax(-1)).mean() >= 0.9


def test_gqa_is_mha_with_repeated_kv_heads_bit_for_bit():
    """A GQA model equals the MHA model whose K/V projections repeat each K/V head for its group
    of query heads (Hugging Face's repeat_kv), in the PIM arithmetic bit for bit."""
    cfg, w = make("gqa-llama3", scale=4.0)
    mha = ModelConfig("mha", **{**CONFIGS["gqa-llama3"], "n_kv_head": cfg.n_head})
    d, dh, kv = cfg.d_model, cfg.d_head, cfg.kv_dim
    wm = dict(w)
    for i in range(cfg.n_layer):
        m = w[f"h.{i}.attn.c_attn.weight"]
        rep = [np.repeat(part.reshape(d, cfg.n_kv_head, dh), cfg.group, axis=1).reshape(d, d)
               for part in (m[:, d:d + kv], m[:, d + kv:])]
        wm[f"h.{i}.attn.c_attn.weight"] = np.concatenate([m[:, :d], *rep], axis=1)
    toks = tokens_for(cfg, cfg.ctx)
    a = ref.pim_logits_teacher_forced(cfg, w, G, toks)
    b = ref.pim_logits_teacher_forced(mha, wm, G, toks)
    np.testing.assert_array_equal(a.view(np.uint32), b.view(np.uint32))
    # ...and the float64 models agree to rounding.
    np.testing.assert_allclose(ref.f64_logits_teacher_forced(cfg, w, toks),
                               ref.f64_logits_teacher_forced(mha, wm, toks), rtol=1e-12,
                               atol=1e-12)


@pytest.mark.parametrize("name", ["gqa-llama3", "mqa-bias-tied"])
def test_pim_generation_equals_teacher_forcing_bit_for_bit(name):
    cfg, w = make(name)
    prompt = tokens_for(cfg, 5, seed=3)
    toks, logits = ref.pim_generate(cfg, w, G, prompt, 8)
    assert len(toks) == 8
    forced = ref.pim_logits_teacher_forced(cfg, w, G, prompt + toks[:-1])
    for i, lg in enumerate(logits):
        np.testing.assert_array_equal(lg.view(np.uint32), forced[len(prompt) - 1 + i]
                                      .view(np.uint32))
    again, _ = ref.pim_generate(cfg, w, G, prompt, 8)
    assert again == toks
    # A second model object at the same positions repeats every bit (no state leaks).
    m1, m2 = ref.PimModel(cfg, w, G), ref.PimModel(cfg, w, G, capacity=6)
    for pos, t in enumerate(prompt):
        a, b = m1.step(t, pos, True), m2.step(t, pos, True)
        np.testing.assert_array_equal(a.view(np.uint32), b.view(np.uint32))


def test_global_buffer_size_does_not_change_the_arithmetic():
    """The chunks of a dot product accumulate in the bank (docs/dataflow.md): a global buffer
    smaller than the K vectors gives the same bits."""
    cfg, w = make("gqa-llama3", scale=4.0)
    toks = tokens_for(cfg, 10)
    a = ref.pim_logits_teacher_forced(cfg, w, 16, toks)
    b = ref.pim_logits_teacher_forced(cfg, w, G, toks)
    np.testing.assert_array_equal(a.view(np.uint32), b.view(np.uint32))


def test_capacity_and_position_errors():
    cfg, w = make("gqa-llama3")
    with pytest.raises(ref.ReferenceModelError, match="capacity must be an integer in 1..24"):
        ref.PimModel(cfg, w, G, capacity=25)
    with pytest.raises(ref.ReferenceModelError, match="capacity must be an integer"):
        ref.F64Model(cfg, w, capacity=0)
    m = ref.PimModel(cfg, w, G, capacity=2)
    with pytest.raises(ref.ReferenceModelError, match="position 2 is outside the K/V caches' "
                                                      "capacity 2"):
        m.step(0, 2, False)
    with pytest.raises(ref.ReferenceModelError, match="more than the context 24"):
        ref.pim_generate(cfg, w, G, [1] * 20, 6)
    bad = dict(w)
    del bad["lm_head"]
    with pytest.raises(Exception, match="missing tensor lm_head"):
        ref.PimModel(cfg, bad, G)

"""Tests of sim/reference.py: PIM-arithmetic vs float64 GPT-2, chunked dots by hand, tied head."""

from __future__ import annotations

import math

import numpy as np
import pytest

from pimgpt.core import numerics as nm
from pimgpt.core.errors import PimgptError
from pimgpt.sim import reference as ref
from pimgpt.sw.checkpoint import random_weights
from pimgpt.sw.models import ModelConfig, get_model

TINY = get_model("tiny")
# One layer, two heads of 32: with G = 48 the second head straddles a chunk boundary.
STRADDLE = ModelConfig("straddle", n_layer=1, d_model=64, n_head=2, ctx=24, vocab=64)


def make_weights(cfg: ModelConfig, seed: int) -> dict:
    """GPT-2-style random weights with non-trivial LayerNorm parameters and sharper logits."""
    w = random_weights(cfg, seed)
    rng = np.random.default_rng(1000 + seed)
    for k, v in w.items():
        if ".ln_" in k or k.startswith("ln_f"):
            w[k] = (v + 0.2 * rng.standard_normal(v.shape)).astype(np.float32)
    w["wte"] = w["wte"] * np.float32(5.0)  # logit spread ~ +-8 so that top-1 is well defined
    return w


@pytest.fixture(scope="module")
def tiny_run():
    w = make_weights(TINY, 0)
    toks = [int(t) for t in np.random.default_rng(7).integers(0, TINY.vocab, 40)]
    return w, toks, ref.pim_logits_teacher_forced(TINY, w, 32, toks), \
        ref.f64_logits_teacher_forced(TINY, w, toks)


def bits(x) -> np.ndarray:
    return np.atleast_1d(np.asarray(x, dtype=np.float32)).view(np.uint32)


# ---------------------------------------------------------------------------------------------
# PIM arithmetic vs float64
# ---------------------------------------------------------------------------------------------
def test_pim_logits_close_to_f64(tiny_run):
    """Each logit is a dot of bf16-rounded activations and bf16-rounded weights (relative rounding
    up to 2**-9 each, ~1.1e-3 RMS) after two layers of such products; measured: max error 0.3 % of
    the row's largest |logit| and 0.3 % RMS of the logit spread (seeds 0-5). The bounds leave
    2.6x and 3x margin; fp32-only arithmetic errors would be ~1e-6 and bf16-free ones much
    smaller."""
    _, _, lp, lf = tiny_run
    assert lp.dtype == np.float32 and lp.shape == lf.shape == (40, TINY.vocab)
    err = np.abs(lp.astype(np.float64) - lf)
    assert (err.max(axis=1) <= 2.0**-7 * np.abs(lf).max(axis=1)).all()
    assert np.sqrt((err**2).mean()) <= 0.01 * lf.std()
    # ... and not trivially equal: bf16 really is in the loop.
    assert err.max() > 1e-4


def test_top1_agreement(tiny_run):
    _, _, lp, lf = tiny_run
    # measured 40/40; one flip allowed (a near-tie), not the 2 of 40 that 95 % allowed
    assert (lp.argmax(axis=1) == lf.argmax(axis=1)).sum() >= len(lp) - 1


def test_generate_matches_teacher_forcing_bit_for_bit(tiny_run):
    w, toks, _, _ = tiny_run
    prompt = toks[:5]
    out, logits = ref.pim_generate(TINY, w, 32, prompt, 6)
    assert len(out) == len(logits) == 6
    tf = ref.pim_logits_teacher_forced(TINY, w, 32, prompt + out[:-1])
    for i in range(6):
        assert logits[i].dtype == np.float32 and logits[i].shape == (TINY.vocab,)
        np.testing.assert_array_equal(bits(logits[i]), bits(tf[len(prompt) - 1 + i]))
        assert out[i] == int(np.flatnonzero(logits[i] == logits[i].max())[0])
    f_out, f_logits = ref.f64_generate(TINY, w, prompt, 6)
    f_tf = ref.f64_logits_teacher_forced(TINY, w, prompt + f_out[:-1])
    for i in range(6):
        np.testing.assert_array_equal(f_logits[i], f_tf[len(prompt) - 1 + i])
        assert f_out[i] == int(np.argmax(f_logits[i]))


def test_greedy_ties_pick_first_index():
    # All-zero weights: every logit is exactly 0, so greedy argmax must be token 0.
    w = {k: np.zeros_like(v) for k, v in random_weights(TINY, 0).items()}
    out, logits = ref.pim_generate(TINY, w, 1024, [3, 4], 2)
    assert out == [0, 0] and (logits[0] == 0).all()


def test_zero_new_tokens():
    assert ref.pim_generate(TINY, make_weights(TINY, 1), 32, [1], 0) == ([], [])


def test_f64_model_matches_batched_causal_forward():
    """The KV-cached float64 steps equal a whole-sequence causal forward written independently."""
    cfg, w = TINY, make_weights(TINY, 2)
    toks = [5, 9, 200, 17, 17, 3, 250]
    got = ref.f64_logits_teacher_forced(cfg, w, toks)
    W = {k: v.astype(np.float64) for k, v in w.items()}
    T, d, H, dh = len(toks), cfg.d_model, cfg.n_head, cfg.d_head

    def ln(x, p):
        mu = x.mean(-1, keepdims=True)
        sd = np.sqrt(((x - mu) ** 2).mean(-1, keepdims=True) + cfg.ln_eps)
        return (x - mu) / sd * W[p + ".weight"] + W[p + ".bias"]

    x = W["wte"][toks] + W["wpe"][:T]
    mask = np.triu(np.full((T, T), -np.inf), 1)
    for i in range(cfg.n_layer):
        p = f"h.{i}."
        qkv = ln(x, p + "ln_1") @ W[p + "attn.c_attn.weight"] + W[p + "attn.c_attn.bias"]
        q, k, v = (qkv[:, j * d:(j + 1) * d].reshape(T, H, dh).transpose(1, 0, 2)
                   for j in range(3))
        s = q @ k.transpose(0, 2, 1) / math.sqrt(dh) + mask
        a = np.exp(s - s.max(-1, keepdims=True))
        a /= a.sum(-1, keepdims=True)
        o = (a @ v).transpose(1, 0, 2).reshape(T, d)
        x = x + o @ W[p + "attn.c_proj.weight"] + W[p + "attn.c_proj.bias"]
        u = ln(x, p + "ln_2") @ W[p + "mlp.c_fc.weight"] + W[p + "mlp.c_fc.bias"]
        g = 0.5 * u * (1 + np.tanh(math.sqrt(2 / math.pi) * (u + 0.044715 * u**3)))
        x = x + g @ W[p + "mlp.c_proj.weight"] + W[p + "mlp.c_proj.bias"]
    want = ln(x, "ln_f") @ W["wte"].T
    np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12)


# ---------------------------------------------------------------------------------------------
# Tied LM head
# ---------------------------------------------------------------------------------------------
def test_lm_head_is_tied_to_wte():
    cfg, w, G = TINY, make_weights(TINY, 3), 32
    toks = [10, 20, 30]
    model = ref.PimModel(cfg, w, G)
    for pos, t in enumerate(toks):
        logits = model.step(t, pos, need_logits=pos == len(toks) - 1)
    # By hand: bf16(xf) against bf16(wte), one in-bank dot over both chunks of 32.
    xf16 = nm.f32_to_bf16(model.last_xf)
    wte16 = nm.f32_to_bf16(w["wte"])
    want = nm.dot_bf16(xf16, wte16)
    np.testing.assert_array_equal(bits(logits), bits(want))
    # Changing an unused row of wte changes exactly that logit.
    j = 77
    w2 = dict(w)
    w2["wte"] = w["wte"].copy()
    w2["wte"][j] += np.float32(0.5)
    tf1 = ref.pim_logits_teacher_forced(cfg, w, G, toks)
    tf2 = ref.pim_logits_teacher_forced(cfg, w2, G, toks)
    changed = np.flatnonzero((bits(tf1) != bits(tf2)).any(axis=0))
    assert changed.tolist() == [j]
    # The float64 model's head is wte as well.
    fm = ref.F64Model(cfg, w)
    for pos, t in enumerate(toks):
        fl = fm.step(t, pos, need_logits=True)
    np.testing.assert_allclose(fl, w["wte"].astype(np.float64) @ fm.last_xf, rtol=1e-13)


def test_separate_lm_head_rejected():
    w = make_weights(TINY, 0)
    w["lm_head.weight"] = w["wte"].copy()
    with pytest.raises(PimgptError, match="lm_head"):
        ref.pim_generate(TINY, w, 32, [1], 1)


# ---------------------------------------------------------------------------------------------
# chunkdot / segdot by hand
# ---------------------------------------------------------------------------------------------
def test_chunkdot_accumulates_across_chunks_in_the_bank():
    """K = 64 with a 32-element global buffer: two chunks of two columns each.

    a = all ones. Column trees: t0 = 1 (b[0] = 1), t1 = 0, t2 = 2**-24 (b[32]), t3 = 2**-24 (b[48]).
    The accumulator runs on through the chunks: ((((0 + t0) + t1) + t2) + t3) = 1 (each 1 + 2**-24
    ties to even). Summing per-chunk partials instead would give (t0 + t1) + (t2 + t3) = 1 + 2**-23:
    the contract is the in-bank order, whatever the chunking.
    """
    a = nm.f32_to_bf16(np.ones(64, np.float32))
    bvals = np.zeros(64, np.float32)
    bvals[0], bvals[32], bvals[48] = 1.0, 2.0**-24, 2.0**-24
    b = nm.f32_to_bf16(bvals)
    for gb in (32, 64, None):
        assert ref.chunkdot(a, b, gb) == np.float32(1.0)
    assert nm.dot_bf16(a, b) == np.float32(1.0)
    assert nm.f32_add(nm.dot_bf16(a[:32], b[:32]), nm.dot_bf16(a[32:], b[32:])) == \
        np.float32(1 + 2.0**-23)


def test_chunkdot_pads_to_16():
    """K = 40 pads to 48 with +0: one dot_bf16 over the 48 elements."""
    rng = np.random.default_rng(3)
    a = nm.f64_to_bf16(rng.standard_normal(40))
    b = nm.f64_to_bf16(rng.standard_normal((5, 40)))
    a48 = np.concatenate([a, np.zeros(8, np.uint16)])
    b48 = np.concatenate([b, np.zeros((5, 8), np.uint16)], axis=1)
    np.testing.assert_array_equal(bits(ref.chunkdot(a, b)), bits(nm.dot_bf16(a48, b48)))
    # Exact in float64 (small integers): the value is the plain dot product.
    ai = nm.f32_to_bf16(np.arange(40, dtype=np.float32) - 20)
    bi = nm.f32_to_bf16(np.arange(40, dtype=np.float32) % 7)
    exact = float(np.dot(np.arange(40) - 20, np.arange(40) % 7))
    assert float(ref.chunkdot(ai, bi, 16)) == exact


def test_segdot_is_one_dot_over_the_range():
    """Head [32, 64) with G = 48 straddles a chunk boundary: still one in-bank dot."""
    rng = np.random.default_rng(4)
    q = nm.f64_to_bf16(rng.standard_normal(64))
    k = nm.f64_to_bf16(rng.standard_normal((3, 64)))
    np.testing.assert_array_equal(bits(ref.segdot(q, k, 32, 64, 48)),
                                  bits(nm.dot_bf16(q[32:64], k[:, 32:64])))
    np.testing.assert_array_equal(bits(ref.segdot(q, k, 0, 32)),
                                  bits(nm.dot_bf16(q[:32], k[:, :32])))
    with pytest.raises(ValueError, match="16-aligned"):
        ref.segdot(q, k, 8, 32)


def test_straddling_model_does_not_depend_on_the_buffer_size():
    w = make_weights(STRADDLE, 5)
    toks = [1, 2, 3, 60, 61, 0, 9, 9]
    lp48 = ref.pim_logits_teacher_forced(STRADDLE, w, 48, toks)
    lp1024 = ref.pim_logits_teacher_forced(STRADDLE, w, 1024, toks)
    lf = ref.f64_logits_teacher_forced(STRADDLE, w, toks)
    err = np.abs(lp48 - lf).max(axis=1)
    assert (err <= 2.0**-6 * np.abs(lf).max(axis=1)).all()
    np.testing.assert_array_equal(bits(lp48), bits(lp1024))


# ---------------------------------------------------------------------------------------------
# Argument errors
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("gb", [0, -16, 24, True, 16.0, "1024"])
def test_bad_gb_elems(gb):
    with pytest.raises(ref.ReferenceModelError, match="gb_elems"):
        ref.pim_generate(TINY, make_weights(TINY, 0), gb, [1], 1)


@pytest.mark.parametrize("prompt,match", [([], "empty"), ([256], "vocabulary"), ([-1], "vocab"),
                                          (["x"], "integer"), (None, "integer")])
def test_bad_prompt(prompt, match):
    w = make_weights(TINY, 0)
    with pytest.raises(ref.ReferenceModelError, match=match):
        ref.pim_generate(TINY, w, 32, prompt, 1)
    with pytest.raises(ref.ReferenceModelError, match=match):
        ref.f64_logits_teacher_forced(TINY, w, prompt)


def test_too_long():
    w = make_weights(TINY, 0)
    with pytest.raises(ref.ReferenceModelError, match="context"):
        ref.pim_generate(TINY, w, 32, list(range(60)), 6)
    with pytest.raises(ref.ReferenceModelError, match="context"):
        ref.pim_logits_teacher_forced(TINY, w, 32, [1] * (TINY.ctx + 1))
    with pytest.raises(ref.ReferenceModelError, match="new_tokens"):
        ref.f64_generate(TINY, w, [1], -1)


def test_missing_weight():
    w = make_weights(TINY, 0)
    del w["h.1.mlp.c_fc.bias"]
    with pytest.raises(PimgptError, match="h.1.mlp.c_fc.bias"):
        ref.f64_generate(TINY, w, [1], 1)

"""``pimgpt accuracy``: how far the PIM numerics are from a float64 GPT-2 on the same weights.

Every figure compares the PIM arithmetic of ``docs/dataflow.md`` with a float64 forward of the same
float32 weights (:mod:`pimgpt.sim.reference`: ``PimModel`` and ``F64Model``). The PIM side runs on
the reference model, which ``tests/test_end_to_end.py`` shows bit-identical to the compiled program
on the golden simulator; this module also re-checks that on a few tokens with
:func:`pimgpt.sim.golden.run_golden`.

Sections of the report (``run_accuracy`` returns them as a dict, ``format_markdown`` as Markdown):

* ``random``: greedy decoding with the PIM numerics after a short prompt, and the float64 logits on
  the same token sequence (teacher forced), for random-weight models (``tiny``, ``gpt2-small``) and
  a random checkpoint written in Hugging Face layout and loaded back (``test-ckpt``).
* ``trained``: the shipped byte-level models on the held-out part of the training script's corpus
  (``tools/train_bytegpt.py``, imported, not copied): perplexity in float64 and PIM numerics over
  context-length windows, next-byte agreement under teacher forcing, and greedy continuations of
  held-out prompts compared step by step with float64 on the same prefix.
* ``golden``: a few generated tokens on the golden simulator, compared bit for bit.
* ``ablation``: float64 forwards that round only one group of values to bf16 (weights, activations
  written to the global buffer, K/V caches), to see which rounding contributes most.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import math
import os
import platform
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from pimgpt.core.errors import PimgptError
from pimgpt.core.fileio import Outputs, check_directory

#: Every model this command knows, in report order.
ALL_MODELS = ("tiny", "test-ckpt", "gpt2-small", "tiny-py", "small-py")
RANDOM_MODELS = ("tiny", "test-ckpt", "gpt2-small")
TRAINED_MODELS = ("tiny-py", "small-py")
#: ``--quick`` leaves gpt2-small out unless ``--models`` names it (about 4 s per PIM step).
QUICK_DEFAULT = ("tiny", "test-ckpt", "tiny-py", "small-py")
#: Seed of the random weights and of the random prompts.
SEED = 0
#: Shape of the random checkpoint written with save_checkpoint and loaded back.
TEST_CKPT_SHAPE = {"n_layer": 2, "d_model": 128, "n_head": 4, "ctx": 128, "vocab": 1024}


class AccuracyError(PimgptError):
    """Bad arguments to ``pimgpt accuracy`` or a missing input it needs."""


@dataclass(frozen=True)
class Sizes:
    """How much each section runs (full or ``--quick``)."""

    prompt_random: int  # prompt tokens before greedy decoding, random models
    steps_max: int  # decode steps (capped by the context), random models
    gpt2_prompt: int
    gpt2_steps: int
    tf_max: int  # teacher-forced random tokens (capped by the context), random models
    gpt2_tf: int
    ppl_windows: dict  # trained model -> number of context-length windows
    greedy_prompts: dict  # trained model -> number of held-out prompts
    greedy_prompt_len: dict  # trained model -> prompt length in bytes
    golden_prompts: int
    golden_tokens: int


FULL = Sizes(
    prompt_random=4, steps_max=128, gpt2_prompt=4, gpt2_steps=64, tf_max=128, gpt2_tf=32,
    ppl_windows={"tiny-py": 64, "small-py": 32},
    greedy_prompts={"tiny-py": 24, "small-py": 12},
    greedy_prompt_len={"tiny-py": 16, "small-py": 32},
    golden_prompts=2, golden_tokens=16,
)
QUICK = Sizes(
    prompt_random=4, steps_max=16, gpt2_prompt=2, gpt2_steps=2, tf_max=16, gpt2_tf=2,
    ppl_windows={"tiny-py": 4, "small-py": 1},
    greedy_prompts={"tiny-py": 4, "small-py": 1},
    greedy_prompt_len={"tiny-py": 16, "small-py": 32},
    golden_prompts=1, golden_tokens=4,
)

Tick = Callable[[], None]


def _noop() -> None:
    return None


# ---------------------------------------------------------------------------------------------
# Measures
# ---------------------------------------------------------------------------------------------
def logit_error_stats(pim, ref) -> dict:
    """Errors of PIM logits against float64 logits of the same rows.

    Parameters
    ----------
    pim : array_like, shape (rows, vocab)
        PIM-numerics logits (float32).
    ref : array_like, shape (rows, vocab)
        float64 logits on the same token prefixes.

    Returns
    -------
    dict
        ``rows``; ``max_abs`` and ``mean_abs`` logit error; ``spread`` mean of the float64 row
        spreads (max - min); ``max_rel_spread`` the largest ``|err| / spread`` of its row and
        ``mean_rel_spread`` the mean of ``|err| / spread``; ``top1_agree`` how many rows have the
        same first argmax, ``top1`` that fraction; ``margin_median`` the median float64 gap between
        the best and second-best logit, ``disagree_margin_max`` the largest such gap on a row
        where the argmaxes differ (None if none); ``top_abs_mean`` / ``top_abs_max`` the error of
        the logit at the float64 argmax (the one that matters for prediction).
    """
    pim = np.asarray(pim, dtype=np.float64)
    ref = np.asarray(ref, dtype=np.float64)
    if pim.shape != ref.shape or pim.ndim != 2 or not pim.size:
        raise AccuracyError(f"logit arrays must be equal non-empty 2-D, got {pim.shape} and "
                            f"{ref.shape}")
    err = np.abs(pim - ref)
    spread = ref.max(axis=1) - ref.min(axis=1)
    rel = err / spread[:, None]
    agree = pim.argmax(axis=1) == ref.argmax(axis=1)
    top2 = np.sort(ref, axis=1)[:, -2:]
    margin = top2[:, 1] - top2[:, 0]
    top_err = err[np.arange(len(ref)), ref.argmax(axis=1)]
    return {
        "rows": int(pim.shape[0]),
        "max_abs": float(err.max()),
        "mean_abs": float(err.mean()),
        "spread": float(spread.mean()),
        "max_rel_spread": float(rel.max()),
        "mean_rel_spread": float(rel.mean()),
        "top1_agree": int(agree.sum()),
        "top1": float(agree.mean()),
        "margin_median": float(np.median(margin)),
        "disagree_margin_max": float(margin[~agree].max()) if (~agree).any() else None,
        "top_abs_mean": float(top_err.mean()),
        "top_abs_max": float(top_err.max()),
    }


def nll_nats(logits, targets) -> np.ndarray:
    """Per-row negative log-likelihood (nats) of ``targets`` under ``logits`` (float64 softmax)."""
    z = np.asarray(logits, dtype=np.float64)
    zmax = z.max(axis=1, keepdims=True)
    lse = zmax[:, 0] + np.log(np.exp(z - zmax).sum(axis=1))
    return lse - z[np.arange(len(z)), np.asarray(targets)]


def _common_prefix(a: Sequence[int], b: Sequence[int]) -> int:
    n = 0
    for x, y in zip(a, b, strict=False):
        if x != y:
            break
        n += 1
    return n


# ---------------------------------------------------------------------------------------------
# Running the PIM reference model
# ---------------------------------------------------------------------------------------------
def pim_greedy(model, prompt: Sequence[int], new_tokens: int,
               tick: Tick = _noop) -> tuple[list[int], np.ndarray]:
    """Greedy decoding on a :class:`~pimgpt.sim.reference.PimModel`, as ``pim_generate``.

    The prompt runs one step per token (logits only at its last), then each generated token but
    the last is fed back; the model's caches are reset first, so one prepared model serves many
    prompts.

    Returns
    -------
    tokens : list of int
        The ``new_tokens`` generated tokens.
    logits : numpy.ndarray
        float32 ``[new_tokens, vocab]``; row ``i`` produced ``tokens[i]``.
    """
    model.reset()
    n = len(prompt)
    for pos, tok in enumerate(prompt):
        out = model.step(int(tok), pos, need_logits=pos == n - 1)
        tick()
    rows, toks = [out], [int(np.argmax(out))]
    for i in range(1, new_tokens):
        out = model.step(toks[-1], n + i - 1, need_logits=True)
        tick()
        rows.append(out)
        toks.append(int(np.argmax(out)))
    return toks, np.stack(rows)


def pim_teacher_forced(model, tokens: Sequence[int], tick: Tick = _noop) -> np.ndarray:
    """PIM logits at every position of ``tokens`` (float32 ``[len, vocab]``), caches reset."""
    model.reset()
    rows = []
    for pos, tok in enumerate(tokens):
        rows.append(model.step(int(tok), pos, need_logits=True))
        tick()
    return np.stack(rows)


# ---------------------------------------------------------------------------------------------
# float64 with selected bf16 roundings (ablation)
# ---------------------------------------------------------------------------------------------
def round_bf16_f64(x) -> np.ndarray:
    """float64 values rounded to the nearest bf16 value (8 significant bits, ties to even).

    A single rounding (no detour through fp32); the exponent range is not limited, which does not
    matter for the activations of these models.
    """
    m, e = np.frexp(np.asarray(x, dtype=np.float64))
    return np.ldexp(np.rint(m * 256.0) / 256.0, e)


class AblatedF64:
    """The float64 GPT-2 of ``F64Model`` with optional bf16 rounding of one group of values.

    Teacher forced over a whole sequence at once (causal attention). With every flag off it is
    ``pimgpt.sim.reference.F64Model`` up to float64 summation order.

    Parameters
    ----------
    cfg : ModelConfig
        Model shape.
    weights : dict of str to numpy.ndarray
        float32 weights.
    weights_bf16 : bool
        Use the bf16 weights the PIM DRAM holds (``f32_to_bf16``), all of them.
    acts_bf16 : bool
        Round what the PIM dataflow writes to the global buffer as bf16: the inputs of every
        linear layer (LayerNorm outputs, attention output, GELU output), ``q``, the softmax
        probabilities and the final LayerNorm output.
    kv_bf16 : bool
        Round the keys and values stored in the K/V caches.
    """

    def __init__(self, cfg, weights: dict, weights_bf16: bool = False, acts_bf16: bool = False,
                 kv_bf16: bool = False):
        from pimgpt.core import numerics as nm

        self.cfg = cfg
        if weights_bf16:
            self.w = {k: nm.bf16_to_f32(nm.f32_to_bf16(np.asarray(v, np.float32)))
                      .astype(np.float64) for k, v in weights.items()}
        else:
            self.w = {k: np.asarray(v, dtype=np.float64) for k, v in weights.items()}
        ident = lambda x: x  # noqa: E731
        self.act = round_bf16_f64 if acts_bf16 else ident
        self.kv = round_bf16_f64 if kv_bf16 else ident

    def _ln(self, x, name):
        mu = x.mean(axis=-1, keepdims=True)
        var = ((x - mu) ** 2).mean(axis=-1, keepdims=True)
        return (x - mu) / np.sqrt(var + self.cfg.ln_eps) * self.w[name + ".weight"] \
            + self.w[name + ".bias"]

    @staticmethod
    def _gelu(x):
        return 0.5 * x * (1.0 + np.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * x**3)))

    @staticmethod
    def _mm(x, m):
        # One 2-D product: numpy's stacked (3-D @ 2-D) matmul is ~50x slower here.
        return (x.reshape(-1, x.shape[-1]) @ m).reshape(*x.shape[:-1], m.shape[1])

    def logits(self, tokens) -> np.ndarray:
        """float64 logits; row ``i`` predicts token ``i + 1``.

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


#: Ablation variants: label -> AblatedF64 flags.
ABLATIONS = {
    "weights": {"weights_bf16": True},
    "activations": {"acts_bf16": True},
    "kv": {"kv_bf16": True},
    "all three": {"weights_bf16": True, "acts_bf16": True, "kv_bf16": True},
}


def ablation(cfg, weights: dict, sequences: list[list[int]], rows: list[slice],
             f64: np.ndarray, pim: np.ndarray, targets: np.ndarray | None = None) -> dict:
    """Logit error of each bf16 rounding group alone, next to the full PIM numerics.

    Parameters
    ----------
    sequences : list of list of int
        Token sequences, each evaluated teacher forced.
    rows : list of slice
        Which logit rows of each sequence were compared (concatenated in order).
    f64, pim : numpy.ndarray
        The float64 and PIM logits of those rows, concatenated.
    targets : numpy.ndarray, optional
        Next tokens of those rows: adds the mean NLL (nats) of each variant.

    Returns
    -------
    dict
        label -> ``{"mean_abs", "max_abs", "mean_rel_spread", "top1"[, "nll", "nll_delta"]}``
        (``nll_delta``: NLL minus the float64 NLL); ``"pim"`` is the full PIM numerics, with
        ``vs_all_three_mean_abs``: its mean distance to the float64 model with all three bf16
        roundings (not an error measure: a tiny fp32 difference that flips one bf16 rounding
        decision sends the two runs to different bf16 neighbours).
    """
    out = {}
    f64_nll = None if targets is None else float(nll_nats(f64, targets).mean())

    def entry(got):
        s = logit_error_stats(got, f64)
        e = {k: s[k] for k in ("mean_abs", "max_abs", "mean_rel_spread", "top1")}
        if targets is not None:
            e["nll"] = float(nll_nats(got, targets).mean())
            e["nll_delta"] = e["nll"] - f64_nll
        return e

    kept = None
    for label, flags in ABLATIONS.items():
        model = AblatedF64(cfg, weights, **flags)
        got = np.concatenate([model.logits(seq)[r] for seq, r in zip(sequences, rows,
                                                                      strict=True)])
        out[label] = entry(got)
        if label == "all three":
            kept = got
        del model
    out["pim"] = entry(pim)
    out["pim"]["vs_all_three_mean_abs"] = float(np.abs(np.asarray(pim, np.float64) - kept).mean())
    return out


# ---------------------------------------------------------------------------------------------
# Sections
# ---------------------------------------------------------------------------------------------
def decode_compare(cfg, weights: dict, gb_elems: int, prompt: Sequence[int], steps: int,
                   tick: Tick = _noop, pim_model=None) -> dict:
    """Greedy PIM decoding, then float64 logits on the same tokens, compared at every step.

    Parameters
    ----------
    cfg : ModelConfig
    weights : dict
    gb_elems : int
        Global-buffer size of the hardware (chunk size of the PIM dot products).
    prompt : sequence of int
    steps : int
        Generated tokens (logit rows compared); ``len(prompt) + steps - 1 <= cfg.ctx``.
    tick : callable
        Called after every PIM step (progress bar).
    pim_model : PimModel, optional
        An already prepared model (its caches are reset).

    Returns
    -------
    dict
        ``prompt``, ``tokens`` (PIM greedy), the :func:`logit_error_stats` entries,
        ``f64_free_prefix`` (how many leading tokens a float64 greedy run from the same prompt
        shares with the PIM run), wall times, and the private ``_arrays`` (logits, sequence) for
        the ablation.
    """
    from pimgpt.sim import reference as ref

    t0 = time.perf_counter()
    model = pim_model or ref.PimModel(cfg, weights, gb_elems)
    toks, pim = pim_greedy(model, prompt, steps, tick)
    t1 = time.perf_counter()
    seq = list(prompt) + toks
    f64 = ref.f64_logits_teacher_forced(cfg, weights, seq[:-1])[len(prompt) - 1:]
    free, _ = ref.f64_generate(cfg, weights, prompt, steps)
    t2 = time.perf_counter()
    res = {"prompt": [int(t) for t in prompt], "steps": steps, "tokens": toks}
    res.update(logit_error_stats(pim, f64))
    res.update(f64_free_prefix=_common_prefix(free, toks), pim_seconds=t1 - t0,
               f64_seconds=t2 - t1)
    res["_arrays"] = {"pim": pim, "f64": f64, "seq": seq[:-1],
                      "rows": slice(len(prompt) - 1, None)}
    return res


def teacher_forced_compare(cfg, weights: dict, tokens: Sequence[int], pim_model,
                           tick: Tick = _noop) -> dict:
    """PIM and float64 logits at every position of ``tokens`` (teacher forced), compared.

    Returns
    -------
    dict
        ``positions``, the :func:`logit_error_stats` entries, wall times and the private
        ``_arrays`` (``pim``, ``f64``).
    """
    from pimgpt.sim import reference as ref

    t0 = time.perf_counter()
    pim = pim_teacher_forced(pim_model, tokens, tick)
    t1 = time.perf_counter()
    f64 = ref.f64_logits_teacher_forced(cfg, weights, tokens)
    res = {"positions": len(tokens)}
    res.update(logit_error_stats(pim, f64))
    res.update(pim_seconds=t1 - t0, f64_seconds=time.perf_counter() - t1)
    res["_arrays"] = {"pim": pim, "f64": f64}
    return res


def perplexity_compare(cfg, weights: dict, gb_elems: int, stream: np.ndarray,
                       starts: Sequence[int], tick: Tick = _noop, pim_model=None) -> dict:
    """Teacher-forced next-token loss over windows of ``cfg.ctx`` tokens, float64 vs PIM.

    Window ``s`` feeds ``stream[s : s + ctx]`` and scores every position against
    ``stream[s + 1 : s + ctx + 1]`` (the training script's evaluation). The NLL is computed on the
    host in float64 from each model's logits.

    Returns
    -------
    dict
        ``windows``, ``tokens`` scored; ``f64``/``pim`` each ``{"nats", "bits", "ppl", "acc"}``
        (mean NLL per token, bits per token, perplexity, accuracy against the true next token);
        ``ppl_ratio`` PIM/float64; the :func:`logit_error_stats` entries (``top1`` is the next-token
        agreement of the two argmaxes).
    """
    from pimgpt.sim import reference as ref

    ctx = cfg.ctx
    model = pim_model or ref.PimModel(cfg, weights, gb_elems)
    pims, f64s, tgts, seqs = [], [], [], []
    t0 = time.perf_counter()
    f64_time = 0.0
    for s in starts:
        window = [int(t) for t in stream[s:s + ctx + 1]]
        seqs.append(window[:-1])
        tgts.append(window[1:])
        pims.append(pim_teacher_forced(model, window[:-1], tick))
        t = time.perf_counter()
        f64s.append(ref.f64_logits_teacher_forced(cfg, weights, window[:-1]))
        f64_time += time.perf_counter() - t
    pim, f64, tgt = np.concatenate(pims), np.concatenate(f64s), np.concatenate(tgts)

    def loss(z):
        nll = nll_nats(z, tgt).mean()
        return {"nats": float(nll), "bits": float(nll / math.log(2)), "ppl": float(math.exp(nll)),
                "acc": float((np.asarray(z).argmax(axis=1) == tgt).mean())}

    res = {"windows": len(starts), "tokens": int(len(tgt)), "f64": loss(f64), "pim": loss(pim)}
    res["ppl_ratio"] = res["pim"]["ppl"] / res["f64"]["ppl"]
    res.update(logit_error_stats(pim, f64))
    res.update(pim_seconds=time.perf_counter() - t0 - f64_time, f64_seconds=f64_time)
    res["_arrays"] = {"pim": pim, "f64": f64, "targets": tgt, "seqs": seqs}
    return res


def greedy_compare(cfg, weights: dict, gb_elems: int, stream: np.ndarray,
                   starts: Sequence[int], prompt_len: int, tick: Tick = _noop,
                   pim_model=None) -> dict:
    """Greedy PIM continuations of prompts taken from ``stream``, each filling the context.

    Every generated step is compared with the float64 logits on the same prefix (the PIM
    continuation fed to the float64 model teacher forced). Separately, a float64 greedy run from
    the same prompt shows how long the two free-running continuations stay identical.

    Returns
    -------
    dict
        ``prompts``, ``prompt_len``, ``new_tokens`` per prompt, ``compared`` steps, the
        :func:`logit_error_stats` entries, ``identical_free`` (continuations whose float64 greedy
        run is identical to the PIM one), ``mean_free_prefix``, ``example`` (the first prompt
        and both continuations), ``runs`` (per prompt: start, agreements, free prefix) and the
        private ``_arrays`` / ``_runs`` for the golden cross-check.
    """
    from pimgpt.sim import reference as ref

    new = cfg.ctx - prompt_len + 1  # fill the context
    model = pim_model or ref.PimModel(cfg, weights, gb_elems)
    pims, f64s, runs, private = [], [], [], []
    pim_time = f64_time = 0.0
    for s in starts:
        prompt = [int(t) for t in stream[s:s + prompt_len]]
        t0 = time.perf_counter()
        toks, pim = pim_greedy(model, prompt, new, tick)
        t1 = time.perf_counter()
        seq = prompt + toks
        f64 = ref.f64_logits_teacher_forced(cfg, weights, seq[:-1])[prompt_len - 1:]
        free, _ = ref.f64_generate(cfg, weights, prompt, new)
        pim_time += t1 - t0
        f64_time += time.perf_counter() - t1
        agree = pim.argmax(axis=1) == f64.argmax(axis=1)
        runs.append({"start": int(s), "agree": int(agree.sum()),
                     "free_prefix": _common_prefix(free, toks)})
        private.append({"prompt": prompt, "tokens": toks, "logits": pim, "f64_free": free})
        pims.append(pim)
        f64s.append(f64)
    res = {"prompts": len(starts), "prompt_len": prompt_len, "new_tokens": new,
           "compared": int(sum(len(p) for p in pims))}
    res.update(logit_error_stats(np.concatenate(pims), np.concatenate(f64s)))
    res["identical_free"] = sum(r["free_prefix"] == new for r in runs)
    res["mean_free_prefix"] = float(np.mean([r["free_prefix"] for r in runs]))
    # The example is the first continuation where the free-running runs part (if any does).
    pick = next((i for i, r in enumerate(runs) if r["free_prefix"] < new), 0)
    ex = private[pick]
    res["example"] = {"index": pick, "prompt": ex["prompt"], "pim": ex["tokens"],
                      "f64": ex["f64_free"], "free_prefix": runs[pick]["free_prefix"]}
    res.update(runs=runs, pim_seconds=pim_time, f64_seconds=f64_time)
    res["_runs"] = private
    return res


def f64_window_loss(cfg, weights: dict, stream: np.ndarray, starts: Sequence[int],
                    batch: int = 64) -> float:
    """Mean float64 next-token NLL (nats) over windows, as the training script evaluates.

    Uses the batched :class:`AblatedF64` without rounding (``F64Model`` up to summation order),
    which is fast enough for the training script's full set of evaluation windows.
    """
    model = AblatedF64(cfg, weights)
    starts = np.asarray(starts, dtype=np.int64)
    total, count = 0.0, 0
    for b in range(0, len(starts), batch):
        idx = starts[b:b + batch, None] + np.arange(cfg.ctx + 1)[None, :]
        win = np.asarray(stream, dtype=np.int64)[idx]
        logits = model.logits(win[:, :-1]).reshape(-1, cfg.vocab)
        total += float(nll_nats(logits, win[:, 1:].reshape(-1)).sum())
        count += win[:, 1:].size
    return total / count


def golden_crosscheck(cfg, hw, weights: dict, runs: list[dict], new_tokens: int) -> dict:
    """Run the first tokens of some PIM greedy runs on the golden simulator; compare bit for bit.

    Parameters
    ----------
    runs : list of dict
        ``{"prompt", "tokens", "logits"}`` from the reference model.
    new_tokens : int
        Tokens generated per prompt on the golden machine.

    Returns
    -------
    dict
        ``prompts``, ``new_tokens``, ``tokens_equal``, ``logits_bit_identical`` (every logit's
        fp32 bit pattern), ``seconds``.
    """
    from pimgpt.sim.golden import run_golden

    t0 = time.perf_counter()
    tok_ok = bits_ok = True
    for r in runs:
        toks, logits, _ = run_golden(cfg, hw, weights, r["prompt"], new_tokens)
        tok_ok &= toks == r["tokens"][:new_tokens]
        want = np.asarray(r["logits"][:new_tokens], dtype=np.float32).view(np.uint32)
        got = np.stack(logits).astype(np.float32).view(np.uint32)
        bits_ok &= got.shape == want.shape and bool(np.array_equal(got, want))
    return {"prompts": len(runs), "new_tokens": new_tokens, "tokens_equal": bool(tok_ok),
            "logits_bit_identical": bool(bits_ok), "seconds": time.perf_counter() - t0}


# ---------------------------------------------------------------------------------------------
# Inputs: models, weights, the held-out text
# ---------------------------------------------------------------------------------------------
def _repo_root() -> Path:
    import pimgpt

    return Path(pimgpt.__file__).resolve().parent.parent


_TRAIN_MODULE = None


def training_module():
    """``tools/train_bytegpt.py`` imported as a module (its corpus split is reused, not copied).

    Raises
    ------
    AccuracyError
        If the script is not there (an installed package without the source tree).
    """
    global _TRAIN_MODULE
    if _TRAIN_MODULE is None:
        path = _repo_root() / "tools" / "train_bytegpt.py"
        if not path.is_file():
            raise AccuracyError(
                f"{path} not found; the trained models' held-out split comes from it, run from a "
                "pimgpt source checkout or leave tiny-py/small-py out of --models"
            )
        spec = importlib.util.spec_from_file_location("pimgpt_train_bytegpt", path)
        module = importlib.util.module_from_spec(spec)
        # dataclasses look the defining module up in sys.modules while the script is executed
        sys.modules[spec.name] = module
        try:
            spec.loader.exec_module(module)
        except Exception:
            del sys.modules[spec.name]
            raise
        _TRAIN_MODULE = module
    return _TRAIN_MODULE


def held_out_stream() -> tuple[np.ndarray, list[str], str]:
    """The held-out byte stream of the training script: (bytes as uint8, file names, sha256)."""
    mod = training_module()
    try:
        root, _, held = mod.stdlib_corpus()
    except SystemExit as exc:  # the script exits when the stdlib looks incomplete
        raise AccuracyError(f"cannot read the held-out text: {exc}") from None
    stream = mod.read_stream(root, held)
    return stream, held, hashlib.sha256(stream.tobytes()).hexdigest()


def _test_checkpoint(tmp: Path):
    """A random GPT-2 written with save_checkpoint (HF layout) and read back by the loader."""
    from pimgpt.sw.checkpoint import load_weights, random_weights, save_checkpoint
    from pimgpt.sw.models import ModelConfig, get_model

    shape = ModelConfig("test-ckpt", **TEST_CKPT_SHAPE)
    save_checkpoint(shape, random_weights(shape, SEED), tmp / "test-ckpt")
    cfg = get_model(str(tmp / "test-ckpt"))
    return cfg, load_weights(cfg)


def parse_models(spec: str | None, quick: bool) -> list[str]:
    """The ``--models`` list (comma-separated) in report order; default all (quick: no gpt2-small).

    Raises
    ------
    AccuracyError
        For an unknown or empty name.
    """
    if spec is None:
        return list(QUICK_DEFAULT if quick else ALL_MODELS)
    names = [n.strip() for n in str(spec).split(",")]
    bad = [n for n in names if n not in ALL_MODELS]
    if bad or not names:
        raise AccuracyError(
            f"unknown model {bad[0] if bad else spec!r} in --models; choose from "
            f"{', '.join(ALL_MODELS)} (comma-separated)"
        )
    return [n for n in ALL_MODELS if n in names]


def _shipped(name: str) -> bool:
    from pimgpt.sw.checkpoint import shipped_model_dir

    return shipped_model_dir(name) is not None


def _machine() -> dict:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {"cpu": cpu, "cores": os.cpu_count(), "system": f"{platform.system()} "
            f"{platform.machine()}", "python": platform.python_version(),
            "numpy": np.__version__,
            "loadavg_start": round(os.getloadavg()[0], 2) if hasattr(os, "getloadavg") else None}


def _strip_private(obj):
    if isinstance(obj, dict):
        return {k: _strip_private(v) for k, v in obj.items() if not k.startswith("_")}
    if isinstance(obj, list):
        return [_strip_private(v) for v in obj]
    return obj


# ---------------------------------------------------------------------------------------------
# The whole report
# ---------------------------------------------------------------------------------------------
def run_accuracy(models: Sequence[str], quick: bool = False, hw_name: str | None = None,
                 progress: bool = True) -> dict:
    """Measure every requested model; see the module docstring for the sections.

    Parameters
    ----------
    models : sequence of str
        Names from :data:`ALL_MODELS`.
    quick : bool
        Use the smaller :data:`QUICK` sizes.
    hw_name : str, optional
        Hardware preset or YAML (its ``gb_elems`` sets the dot-product chunking); default preset
        if None.
    progress : bool
        tqdm progress bars on stderr.

    Returns
    -------
    dict
        ``meta``, ``random``, ``trained``, ``golden``, ``ablation`` (JSON-ready).
    """
    from tqdm import tqdm

    from pimgpt.core.config import load_hw
    from pimgpt.core.progress import progress_enabled
    from pimgpt.sim import reference as ref
    from pimgpt.sw.checkpoint import weights_for
    from pimgpt.sw.models import get_model

    sizes = QUICK if quick else FULL
    hw = load_hw(hw_name)
    G = hw.dram.gb_elems
    t_start = time.perf_counter()
    rep = {"meta": {"quick": quick, "models": list(models), "hw": hw_name or "default",
                    "gb_elems": G, "seed": SEED, "machine": _machine(),
                    "started_utc": time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime())},
           "random": {}, "trained": {}, "golden": {}, "ablation": {}, "skipped": {}}

    def bar(total, desc):
        # leave=False: a closed bar clears its line, so an error message stands alone.
        return tqdm(total=total, desc=desc, unit="step", file=sys.stderr,
                    disable=not (progress and progress_enabled()), leave=False,
                    dynamic_ncols=True)

    held = None
    if any(m in TRAINED_MODELS for m in models):
        held, held_files, held_sha = held_out_stream()
        rep["meta"]["held_out"] = {"files": held_files, "bytes": int(len(held)),
                                   "sha256": held_sha}

    with tempfile.TemporaryDirectory(prefix="pimgpt-accuracy-") as tmpdir:
        for name in models:
            t0 = time.perf_counter()
            if name in RANDOM_MODELS:
                if name == "test-ckpt":
                    cfg, weights = _test_checkpoint(Path(tmpdir))
                else:
                    cfg = get_model(name)
                    weights = weights_for(cfg, SEED)
                if name == "gpt2-small":
                    plen, steps = sizes.gpt2_prompt, sizes.gpt2_steps
                else:
                    plen = 1 if cfg.ctx <= 64 else sizes.prompt_random
                    steps = min(sizes.steps_max, cfg.ctx - plen + 1)
                prompt = [int(t) for t in np.random.default_rng(SEED).integers(0, cfg.vocab, plen)]
                with bar(plen + steps - 1, f"{name} decode") as b:
                    model = ref.PimModel(cfg, weights, G)
                    res = decode_compare(cfg, weights, G, prompt, steps, b.update,
                                         pim_model=model)
                res["shape"] = _shape(cfg)
                # Random weights make greedy decoding repeat one token; teacher forcing on random
                # tokens adds varied contexts (every position's logits compared).
                n_tf = sizes.gpt2_tf if name == "gpt2-small" else min(sizes.tf_max, cfg.ctx)
                tf_toks = [int(t) for t in
                           np.random.default_rng(SEED + 1).integers(0, cfg.vocab, n_tf)]
                with bar(n_tf, f"{name} teacher forced") as b:
                    tf = teacher_forced_compare(cfg, weights, tf_toks, model, b.update)
                res["teacher_forced"] = tf
                arr, tarr = res.pop("_arrays"), tf.pop("_arrays")
                rep["ablation"][name] = ablation(
                    cfg, weights, [arr["seq"], tf_toks], [arr["rows"], slice(None)],
                    np.concatenate([arr["f64"], tarr["f64"]]),
                    np.concatenate([arr["pim"], tarr["pim"]]))
                if name == "tiny":
                    b_runs = [{"prompt": prompt, "tokens": res["tokens"], "logits": arr["pim"]}]
                    rep["golden"][name] = golden_crosscheck(cfg, hw, weights, b_runs,
                                                            min(sizes.golden_tokens, steps))
                res["seconds"] = time.perf_counter() - t0
                rep["random"][name] = res
            else:
                if not _shipped(name):
                    rep["skipped"][name] = (f"{name} is not shipped in pimgpt/models/ yet "
                                            "(train it with tools/train_bytegpt.py)")
                    continue
                cfg = get_model(name)
                weights = weights_for(cfg)
                mod = training_module()
                wfile = Path(cfg.checkpoint) / "model.safetensors"
                entry = {"shape": _shape(cfg), "checkpoint": cfg.checkpoint,
                         "weights_sha256": hashlib.sha256(wfile.read_bytes()).hexdigest()
                         if wfile.is_file() else None}
                tj = Path(cfg.checkpoint) / "training.json"
                if tj.is_file():
                    data = json.loads(tj.read_text(encoding="utf-8")).get("data", {})
                    entry["held_out_matches_training"] = (
                        data.get("held_out_sha256") == rep["meta"]["held_out"]["sha256"])
                    train_eval = json.loads(tj.read_text(encoding="utf-8")).get("eval", {})
                    recipe = getattr(mod, "RECIPES", {}).get(name)
                    if recipe is not None and not quick:
                        ev = mod.eval_offsets(len(held), cfg.ctx, recipe.eval_windows)
                        entry["f64_training_windows"] = {
                            "windows": len(ev),
                            "nats": f64_window_loss(cfg, weights, held, ev),
                            "training_json_nats": train_eval.get("held_out_loss")}
                model = ref.PimModel(cfg, weights, G)
                starts = mod.eval_offsets(len(held), cfg.ctx, sizes.ppl_windows[name])
                with bar(len(starts) * cfg.ctx, f"{name} perplexity") as b:
                    ppl = perplexity_compare(cfg, weights, G, held, starts, b.update, model)
                plen = sizes.greedy_prompt_len[name]
                gstarts = mod.eval_offsets(len(held), plen, sizes.greedy_prompts[name])
                with bar(len(gstarts) * cfg.ctx, f"{name} greedy") as b:
                    gr = greedy_compare(cfg, weights, G, held, gstarts, plen, b.update, model)
                arr = ppl.pop("_arrays")
                rep["ablation"][name] = ablation(
                    cfg, weights, arr["seqs"], [slice(None)] * len(arr["seqs"]), arr["f64"],
                    arr["pim"], arr["targets"])
                runs = gr.pop("_runs")[:sizes.golden_prompts]
                rep["golden"][name] = golden_crosscheck(cfg, hw, weights, runs,
                                                        sizes.golden_tokens)
                entry.update(perplexity=ppl, greedy=gr, seconds=time.perf_counter() - t0)
                rep["trained"][name] = entry
    rep["meta"]["wall_seconds"] = time.perf_counter() - t_start
    rep["meta"]["loadavg_end"] = round(os.getloadavg()[0], 2) if hasattr(os, "getloadavg") \
        else None
    return _strip_private(rep)


def _shape(cfg) -> str:
    return (f"{cfg.n_layer} layers, d {cfg.d_model}, {cfg.n_head} heads, ctx {cfg.ctx}, "
            f"vocab {cfg.vocab}")


# ---------------------------------------------------------------------------------------------
# Markdown
# ---------------------------------------------------------------------------------------------
def _pct(x) -> str:
    return f"{100 * x:.2f} %"


def _g(x, digits=3) -> str:
    return "-" if x is None else f"{x:.{digits}g}"


def _text(tokens) -> str:
    from pimgpt.sw.tokenizer import decode

    return decode(tokens)


def format_markdown(rep: dict, command: str | None = None) -> str:
    """The report as Markdown tables (what ``pimgpt accuracy`` prints and writes)."""
    meta = rep["meta"]
    mach = meta["machine"]
    lines = ["# PIM numerics vs float64", ""]
    if command:
        lines += [f"Command: `{command}`", ""]
    lines += [
        f"- Wall time {meta['wall_seconds']:.0f} s on {mach['cpu']} ({mach['cores']} cores, "
        f"{mach['system']}), Python {mach['python']}, numpy {mach['numpy']}; 1-minute load "
        f"average {mach['loadavg_start']} at the start, {meta['loadavg_end']} at the end.",
        f"- Hardware `{meta['hw']}`: global buffer G = {meta['gb_elems']} elements (dot products "
        f"are chunked at G). Random weights and prompts: seed {meta['seed']}."
        + (" **Quick run** (smaller sizes)." if meta["quick"] else ""),
        "- PIM numerics: the reference model `sim/reference.py` (`PimModel`), bit-identical to "
        "the compiled program on the golden simulator (`tests/test_end_to_end.py`; re-checked "
        "below). float64: `F64Model` on the same float32 weights (exact exp, tanh, LayerNorm).",
        "- Logit error = |PIM logit - float64 logit| over all vocabulary entries of every "
        "compared row; spread = max - min of the float64 row; top-1 = the two argmaxes are "
        "equal; margin = float64 best minus second-best logit.",
        "",
    ]
    if rep["random"]:
        lines += [
            "## Random weights: greedy PIM decoding vs float64 on the same tokens", "",
            "PIM: one step per prompt token (logits at the last), then greedy decoding with the "
            "K/V cache; the logits of every decode step are compared. float64: teacher forced on "
            "the same tokens. Free-running float64 greedy: an independent float64 greedy run "
            "from the same prompt, tokens identical to the PIM run before the first difference.",
            "",
            "| model | shape | prompt + steps | max abs err | mean abs err | err of top logit "
            "mean / max | mean spread | max err/spread | mean err/spread | top-1 | "
            "free-running float64 same | PIM time |",
            "|---|---|---|---|---|---|---|---|---|---|---|---|",
        ]
        for name, r in rep["random"].items():
            lines.append(
                f"| {name} | {r['shape']} | {len(r['prompt'])} + {r['steps']} | "
                f"{_g(r['max_abs'])} | {_g(r['mean_abs'])} | {_g(r['top_abs_mean'])} / "
                f"{_g(r['top_abs_max'])} | {_g(r['spread'])} | "
                f"{_pct(r['max_rel_spread'])} | {_pct(r['mean_rel_spread'])} | "
                f"{r['top1_agree']}/{r['rows']} | {r['f64_free_prefix']}/{r['steps']} | "
                f"{r['pim_seconds']:.1f} s |")
        lines += [
            "", "Random weights make greedy decoding settle on one repeated token, so the same "
            "models are also run teacher forced on uniformly random tokens (seed "
            f"{meta['seed'] + 1}): every position's logits compared.", "",
            "| model | positions | max abs err | mean abs err | err of top logit mean / max | "
            "mean spread | max err/spread | mean err/spread | top-1 | median margin | PIM time |",
            "|---|---|---|---|---|---|---|---|---|---|---|",
        ]
        for name, r in rep["random"].items():
            t = r["teacher_forced"]
            lines.append(
                f"| {name} | {t['positions']} | {_g(t['max_abs'])} | {_g(t['mean_abs'])} | "
                f"{_g(t['top_abs_mean'])} / {_g(t['top_abs_max'])} | {_g(t['spread'])} | "
                f"{_pct(t['max_rel_spread'])} | {_pct(t['mean_rel_spread'])} | "
                f"{t['top1_agree']}/{t['rows']} | {_g(t['margin_median'])} | "
                f"{t['pim_seconds']:.1f} s |")
        lines += [""]
        dis = [(n, r) for n, r in rep["random"].items() if r["disagree_margin_max"] is not None]
        lines += [
            "Greedy decode runs: float64 margin (best - second-best logit), median over steps: "
            + "; ".join(f"{n} {_g(r['margin_median'])}" for n, r in rep["random"].items())
            + "." + ("" if not dis else " Largest margin where top-1 differs: " + "; ".join(
                f"{n} {_g(r['disagree_margin_max'])}" for n, r in dis) + "."), ""]
    if rep["trained"] or any(n in TRAINED_MODELS for n in rep["skipped"]):
        held = meta.get("held_out", {})
        lines += [
            "## Trained byte-level models on held-out text", "",
            f"Held-out text: the training script's split (`tools/train_bytegpt.py`, imported): "
            f"{len(held.get('files', []))} stdlib files of this Python, {held.get('bytes', 0):,} "
            f"bytes, sha256 `{held.get('sha256', '-')[:16]}...`.",
            "",
            "### Perplexity (teacher forced, context-length windows)", "",
            "Windows of `ctx` bytes at evenly spaced offsets (`eval_offsets` of the training "
            "script), every position scored; NLL from each model's logits with a float64 "
            "log-softmax. acc = argmax equals the true next byte; next-byte top-1 = the PIM and "
            "float64 argmaxes agree.", "",
            "| model | bytes scored | float64 nats/byte | float64 bits/byte | float64 ppl | "
            "PIM nats/byte | PIM bits/byte | PIM ppl | PIM/float64 ppl | acc float64 / PIM | "
            "next-byte top-1 | largest margin where top-1 differs | max abs logit err | "
            "err of top logit mean / max | mean spread | mean err/spread |",
            "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
        ]
        for name, e in rep["trained"].items():
            p = e["perplexity"]
            lines.append(
                f"| {name} | {p['tokens']:,} ({p['windows']} x {p['tokens'] // p['windows']}) | "
                f"{p['f64']['nats']:.4f} | {p['f64']['bits']:.4f} | {p['f64']['ppl']:.4f} | "
                f"{p['pim']['nats']:.4f} | {p['pim']['bits']:.4f} | {p['pim']['ppl']:.4f} | "
                f"{p['ppl_ratio']:.5f} | {_pct(p['f64']['acc'])} / {_pct(p['pim']['acc'])} | "
                f"{p['top1_agree']}/{p['rows']} ({_pct(p['top1'])}) | "
                f"{_g(p['disagree_margin_max'])} | {_g(p['max_abs'])} | {_g(p['top_abs_mean'])} / "
                f"{_g(p['top_abs_max'])} | {_g(p['spread'])} | {_pct(p['mean_rel_spread'])} |")
        for name, e in rep["trained"].items():
            fw = e.get("f64_training_windows")
            if fw:
                lines += ["", f"{name}: float64 over the training script's own {fw['windows']} "
                          f"evaluation windows: {fw['nats']:.4f} nats/byte (training.json, torch "
                          f"float32: {_g(fw['training_json_nats'], 5)}); the windows above are a "
                          "subset, so their absolute loss differs, not the PIM-float64 pairing."]
        lines += [
            "", "### Greedy continuations of held-out prompts", "",
            "Each prompt (bytes at evenly spaced held-out offsets) is continued greedily with the "
            "PIM numerics until the context is full; every step is compared with the float64 "
            "argmax on the same prefix. Free-running: an independent float64 greedy run from the "
            "same prompt.", "",
            "| model | prompts x (prompt + new bytes) | steps compared | top-1 | median margin | "
            "largest margin where top-1 differs | identical free-running continuations | "
            "mean identical prefix | PIM time |",
            "|---|---|---|---|---|---|---|---|---|",
        ]
        for name, e in rep["trained"].items():
            g = e["greedy"]
            lines.append(
                f"| {name} | {g['prompts']} x ({g['prompt_len']} + {g['new_tokens']}) | "
                f"{g['compared']:,} | {g['top1_agree']}/{g['rows']} ({_pct(g['top1'])}) | "
                f"{_g(g['margin_median'])} | {_g(g['disagree_margin_max'])} | "
                f"{g['identical_free']}/{g['prompts']} | {g['mean_free_prefix']:.1f} of "
                f"{g['new_tokens']} | {g['pim_seconds']:.0f} s |")
        for name, e in rep["trained"].items():
            ex = e["greedy"]["example"]
            fence = "````"
            how = (f"they part after {ex['free_prefix']} identical byte(s)" if ex["free_prefix"]
                   < len(ex["pim"]) else "identical")
            lines += ["", f"Example ({name}, prompt {ex['index'] + 1}, the first whose PIM and "
                      f"free-running float64 continuations differ, if any; {how}):", "", fence,
                      f"prompt : {_text(ex['prompt'])!r}", f"PIM    : {_text(ex['pim'])!r}",
                      f"float64: {_text(ex['f64'])!r}", fence]
            if e.get("held_out_matches_training") is False:
                lines += ["", f"Note: this Python's held-out text differs from the one "
                          f"{name} was evaluated on in training.json (other Python version)."]
        lines += [""]
    if rep["golden"]:
        lines += [
            "## Cross-check on the golden simulator", "",
            "The first tokens of some of the runs above, compiled (`compile_generation`) and "
            "executed by `run_golden`; tokens and every logit's fp32 bit pattern compared with "
            "the reference model's.", "",
            "| model | prompts x tokens | tokens equal | logits bit-identical | time |",
            "|---|---|---|---|---|",
        ]
        for name, g in rep["golden"].items():
            lines.append(f"| {name} | {g['prompts']} x {g['new_tokens']} | {g['tokens_equal']} | "
                         f"{g['logits_bit_identical']} | {g['seconds']:.1f} s |")
        lines += [""]
    if rep["ablation"]:
        lines += [
            "## Where the error comes from (ablation in float64)", "",
            "float64 forwards that round only one group of values to bf16 (round to nearest "
            "even, 8 significant bits), on the same tokens as above (random models: the decode "
            "rows and the teacher-forced random tokens; trained: the perplexity windows). "
            "weights: every parameter as stored in DRAM; activations: every vector written to "
            "the global buffer (inputs of the linear layers, q, softmax probabilities, final "
            "LayerNorm output); kv: the K/V caches. "
            "pim: the full PIM numerics (adds fp32 arithmetic and the vector unit's functions).",
            "",
            "| model | variant | mean abs logit err | max abs logit err | mean err/spread | "
            "top-1 vs float64 | NLL - float64 NLL (nats) |",
            "|---|---|---|---|---|---|---|",
        ]
        for name, ab in rep["ablation"].items():
            for label, a in ab.items():
                nll = f"{a['nll_delta']:+.5f}" if "nll_delta" in a else "-"
                lines.append(f"| {name} | {label} | {_g(a['mean_abs'])} | {_g(a['max_abs'])} | "
                             f"{_pct(a['mean_rel_spread'])} | {_pct(a['top1'])} | {nll} |")
        lines += ["", "Mean |PIM - (float64 with all three roundings)|: "
                  "not an error of either (once a tiny fp32-vs-float64 difference flips one bf16 "
                  "rounding, the two runs land on different bf16 neighbours); compare instead "
                  "the error sizes of `all three` and `pim` above: " + "; ".join(
                      f"{n} {_g(ab['pim']['vs_all_three_mean_abs'])} "
                      f"({_pct(ab['pim']['vs_all_three_mean_abs'] / ab['pim']['mean_abs'])} of "
                      "the PIM error's mean)" for n, ab in rep["ablation"].items()) + ".", ""]
    if rep["skipped"]:
        lines += ["## Skipped", ""] + [f"- {n}: {why}" for n, why in rep["skipped"].items()]
        lines += [""]
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------------
# CLI
# ---------------------------------------------------------------------------------------------
def cli_accuracy(args) -> int:
    """``pimgpt accuracy``: run :func:`run_accuracy`, write ``accuracy.md`` and ``accuracy.json``
    to ``args.output`` and print the Markdown.

    Parameters
    ----------
    args : argparse.Namespace
        ``output`` (directory), ``quick`` (bool), ``models`` (comma-separated or None).
    """
    models = parse_models(args.models, args.quick)
    if any(m in TRAINED_MODELS and _shipped(m) for m in models):
        training_module()  # fail before the long run if the split cannot be read
    out = check_directory("-o", args.output)
    outs = Outputs({"accuracy.json": out / "accuracy.json", "accuracy.md": out / "accuracy.md"},
                   label=f"-o {args.output}")
    command = "pimgpt accuracy" + (f" -o {args.output}" if args.output else "") \
        + (" --quick" if args.quick else "") + (f" --models {args.models}" if args.models else "")
    rep = run_accuracy(models, quick=args.quick)
    rep["meta"]["command"] = command
    text = format_markdown(rep, command)
    with outs:
        outs.write_json("accuracy.json", rep, indent=1)
        outs.write_text("accuracy.md", text)
        outs.commit()
    print(text)
    print(f"wrote {out / 'accuracy.md'} and {out / 'accuracy.json'}", file=sys.stderr)
    return 0

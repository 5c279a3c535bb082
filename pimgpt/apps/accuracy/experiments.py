"""The experiments of ``pimgpt accuracy``: PIM numerics and float64 on the same tokens.

The PIM side is the reference model :class:`pimgpt.sim.reference.PimModel` (bit-identical to the
compiled program on the golden simulator, which :func:`golden_crosscheck` re-checks); the float64
side is :class:`pimgpt.sim.reference.F64Model`, whose bf16 rounding hooks give the ablation.
Each ``*_compare`` returns a JSON-ready dict (:mod:`.metrics` entries, wall times) plus private
``_arrays`` (keys starting with ``_`` are dropped from the report).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from .metrics import common_prefix, logit_error_stats, loss_stats, nll_nats

__all__ = ["ALL_MODELS", "RANDOM_MODELS", "TRAINED_MODELS", "QUICK_DEFAULT", "SEED", "Sizes",
           "FULL", "QUICK", "pim_greedy", "pim_teacher_forced", "ABLATIONS", "ablation",
           "decode_compare", "teacher_forced_compare", "perplexity_compare", "greedy_compare",
           "f64_window_loss", "golden_crosscheck"]

#: Every model this command knows, in report order.
ALL_MODELS = ("tiny", "test-ckpt", "gpt2-small", "tiny-py", "small-py", "tiny-llama-py")
RANDOM_MODELS = ("tiny", "test-ckpt", "gpt2-small")
TRAINED_MODELS = ("tiny-py", "small-py", "tiny-llama-py")
#: ``--quick`` leaves gpt2-small out unless ``--models`` names it (about 4 s per PIM step).
QUICK_DEFAULT = ("tiny", "test-ckpt", "tiny-py", "small-py", "tiny-llama-py")
#: Seed of the random weights and of the random prompts.
SEED = 0
#: Shape of the random checkpoint written with save_checkpoint and loaded back.
TEST_CKPT_SHAPE = {"n_layer": 2, "d_model": 128, "n_head": 4, "ctx": 128, "vocab": 1024}


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
    ppl_windows={"tiny-py": 64, "small-py": 32, "tiny-llama-py": 64},
    greedy_prompts={"tiny-py": 24, "small-py": 12, "tiny-llama-py": 24},
    greedy_prompt_len={"tiny-py": 16, "small-py": 32, "tiny-llama-py": 16},
    golden_prompts=2, golden_tokens=16,
)
QUICK = Sizes(
    prompt_random=4, steps_max=16, gpt2_prompt=2, gpt2_steps=2, tf_max=16, gpt2_tf=2,
    ppl_windows={"tiny-py": 4, "small-py": 1, "tiny-llama-py": 4},
    greedy_prompts={"tiny-py": 4, "small-py": 1, "tiny-llama-py": 4},
    greedy_prompt_len={"tiny-py": 16, "small-py": 32, "tiny-llama-py": 16},
    golden_prompts=1, golden_tokens=4,
)


Tick = Callable[[], None]


def _noop() -> None:
    return None


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


#: Ablation variants: label -> the bf16 rounding hooks of :class:`~pimgpt.sim.reference.F64Model`.
ABLATIONS = {
    "weights": {"bf16_weights": True},
    "activations": {"bf16_acts": True},
    "kv": {"bf16_kv": True},
    "all three": {"bf16_weights": True, "bf16_acts": True, "bf16_kv": True},
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
    from pimgpt.sim.reference import F64Model

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
        model = F64Model(cfg, weights, **flags)
        got = np.concatenate([model.logits(seq)[r] for seq, r in zip(sequences, rows,
                                                                      strict=True)])
        out[label] = entry(got)
        if label == "all three":
            kept = got
        del model
    out["pim"] = entry(pim)
    out["pim"]["vs_all_three_mean_abs"] = float(np.abs(np.asarray(pim, np.float64) - kept).mean())
    return out


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
    res.update(f64_free_prefix=common_prefix(free, toks), pim_seconds=t1 - t0,
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

    res = {"windows": len(starts), "tokens": int(len(tgt)), "f64": loss_stats(f64, tgt),
           "pim": loss_stats(pim, tgt)}
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
                     "free_prefix": common_prefix(free, toks)})
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

    Uses the batched :meth:`F64Model.logits <pimgpt.sim.reference.F64Model.logits>`, fast enough
    for the training script's full set of evaluation windows.
    """
    from pimgpt.sim.reference import F64Model

    model = F64Model(cfg, weights)
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

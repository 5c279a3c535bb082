"""The report of ``pimgpt accuracy`` as Markdown (``accuracy.md``; the JSON is the dict itself)."""

from __future__ import annotations

from pimgpt.apps.markdown import table

from .experiments import TRAINED_MODELS

__all__ = ["format_markdown"]


def _pct(x) -> str:
    return f"{100 * x:.2f} %"


def _g(x, digits=3) -> str:
    return "-" if x is None else f"{x:.{digits}g}"


def _text(tokens) -> str:
    from pimgpt.sw.tokenizer import decode

    return decode(tokens)


#: Columns of a logit-error entry (:func:`~pimgpt.apps.accuracy.metrics.logit_error_stats`).
ERROR_COLUMNS = ["max abs err", "mean abs err", "err of top logit mean / max", "mean spread",
                 "max err/spread", "mean err/spread"]


def _errors(s: dict) -> list[str]:
    """The :data:`ERROR_COLUMNS` cells of one logit-error entry."""
    return [_g(s["max_abs"]), _g(s["mean_abs"]),
            f"{_g(s['top_abs_mean'])} / {_g(s['top_abs_max'])}", _g(s["spread"]),
            _pct(s["max_rel_spread"]), _pct(s["mean_rel_spread"])]


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
        lines += _random_section(rep)
    if rep["trained"] or any(n in TRAINED_MODELS for n in rep["skipped"]):
        lines += _trained_section(rep)
    if rep["golden"]:
        lines += _golden_section(rep)
    if rep["ablation"]:
        lines += _ablation_section(rep)
    if rep["skipped"]:
        lines += ["## Skipped", ""] + [f"- {n}: {why}" for n, why in rep["skipped"].items()]
        lines += [""]
    return "\n".join(lines)


def _random_section(rep: dict) -> list[str]:
    """Random weights: greedy decoding and teacher forcing."""
    meta = rep["meta"]
    lines = [
        "## Random weights: greedy PIM decoding vs float64 on the same tokens", "",
        "PIM: one step per prompt token (logits at the last), then greedy decoding with the "
        "K/V cache; the logits of every decode step are compared. float64: teacher forced on "
        "the same tokens. Free-running float64 greedy: an independent float64 greedy run "
        "from the same prompt, tokens identical to the PIM run before the first difference.",
        "",
    ]
    lines += table(
        ["model", "shape", "prompt + steps", *ERROR_COLUMNS, "top-1", "free-running float64 same",
         "PIM time"],
        [[name, r["shape"], f"{len(r['prompt'])} + {r['steps']}", *_errors(r),
          f"{r['top1_agree']}/{r['rows']}", f"{r['f64_free_prefix']}/{r['steps']}",
          f"{r['pim_seconds']:.1f} s"] for name, r in rep["random"].items()])
    lines += [
        "", "Random weights make greedy decoding settle on one repeated token, so the same "
        "models are also run teacher forced on uniformly random tokens (seed "
        f"{meta['seed'] + 1}): every position's logits compared.", "",
    ]
    tf = [(name, r["teacher_forced"]) for name, r in rep["random"].items()]
    lines += table(
        ["model", "positions", *ERROR_COLUMNS, "top-1", "median margin", "PIM time"],
        [[name, t["positions"], *_errors(t), f"{t['top1_agree']}/{t['rows']}",
          _g(t["margin_median"]), f"{t['pim_seconds']:.1f} s"] for name, t in tf])
    lines += [""]
    dis = [(n, r) for n, r in rep["random"].items() if r["disagree_margin_max"] is not None]
    lines += [
        "Greedy decode runs: float64 margin (best - second-best logit), median over steps: "
        + "; ".join(f"{n} {_g(r['margin_median'])}" for n, r in rep["random"].items())
        + "." + ("" if not dis else " Largest margin where top-1 differs: " + "; ".join(
            f"{n} {_g(r['disagree_margin_max'])}" for n, r in dis) + "."), ""]
    return lines


def _trained_section(rep: dict) -> list[str]:
    """Trained byte-level models: perplexity and greedy continuations."""
    meta = rep["meta"]
    lines = []
    held = meta.get("held_out", {})
    lines += [
        "## Trained byte-level models on held-out text", "",
        "Held-out text: the files the training script leaves out of the corpus it trains on "
        f"(`pimgpt/sw/corpus.py`), never seen in training: "
        f"{len(held.get('files', []))} stdlib files of this Python, {held.get('bytes', 0):,} "
        f"bytes, sha256 `{held.get('sha256', '-')[:16]}...`.",
        "",
        "### Perplexity (teacher forced, context-length windows)", "",
        "Windows of `ctx` bytes at evenly spaced offsets (`eval_offsets` of the training "
        "script), every position scored; NLL from each model's logits with a float64 "
        "log-softmax. acc = argmax equals the true next byte; next-byte top-1 = the PIM and "
        "float64 argmaxes agree.", "",
    ]
    ppl = [(name, e["perplexity"]) for name, e in rep["trained"].items()]
    lines += table(
        ["model", "bytes scored", "float64 nats/byte", "float64 bits/byte", "float64 ppl",
         "PIM nats/byte", "PIM bits/byte", "PIM ppl", "PIM/float64 ppl", "acc float64 / PIM",
         "next-byte top-1", "largest margin where top-1 differs", "max abs logit err",
         "err of top logit mean / max", "mean spread", "mean err/spread"],
        [[name, f"{p['tokens']:,} ({p['windows']} x {p['tokens'] // p['windows']})",
          *(f"{p[m][k]:.4f}" for m in ("f64", "pim") for k in ("nats", "bits", "ppl")),
          f"{p['ppl_ratio']:.5f}", f"{_pct(p['f64']['acc'])} / {_pct(p['pim']['acc'])}",
          f"{p['top1_agree']}/{p['rows']} ({_pct(p['top1'])})", _g(p["disagree_margin_max"]),
          _g(p["max_abs"]), f"{_g(p['top_abs_mean'])} / {_g(p['top_abs_max'])}",
          _g(p["spread"]), _pct(p["mean_rel_spread"])] for name, p in ppl])
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
    ]
    greedy = [(name, e["greedy"]) for name, e in rep["trained"].items()]
    lines += table(
        ["model", "prompts x (prompt + new bytes)", "steps compared", "top-1", "median margin",
         "largest margin where top-1 differs", "identical free-running continuations",
         "mean identical prefix", "PIM time"],
        [[name, f"{g['prompts']} x ({g['prompt_len']} + {g['new_tokens']})",
          f"{g['compared']:,}", f"{g['top1_agree']}/{g['rows']} ({_pct(g['top1'])})",
          _g(g["margin_median"]), _g(g["disagree_margin_max"]),
          f"{g['identical_free']}/{g['prompts']}",
          f"{g['mean_free_prefix']:.1f} of {g['new_tokens']}", f"{g['pim_seconds']:.0f} s"]
         for name, g in greedy])
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
    return lines


def _golden_section(rep: dict) -> list[str]:
    """The cross-check on the golden simulator."""
    lines = [
        "## Cross-check on the golden simulator", "",
        "The first tokens of some of the runs above, compiled (`compile_generation`) and "
        "executed by `run_golden`; tokens and every logit's fp32 bit pattern compared with "
        "the reference model's.", "",
    ]
    lines += table(
        ["model", "prompts x tokens", "tokens equal", "logits bit-identical", "time"],
        [[name, f"{g['prompts']} x {g['new_tokens']}", g["tokens_equal"],
          g["logits_bit_identical"], f"{g['seconds']:.1f} s"] for name, g in rep["golden"].items()])
    lines += [""]
    return lines


def _ablation_section(rep: dict) -> list[str]:
    """Where the error comes from (float64 ablation)."""
    lines = [
        "## Where the error comes from (ablation in float64)", "",
        "float64 forwards that round only one group of values to bf16 (round to nearest "
        "even, 8 significant bits), on the same tokens as above (random models: the decode "
        "rows and the teacher-forced random tokens; trained: the perplexity windows). "
        "weights: every parameter as stored in DRAM; activations: every vector written to "
        "the global buffer (inputs of the linear layers, q, softmax probabilities, final "
        "LayerNorm output); kv: the K/V caches. "
        "pim: the full PIM numerics (adds fp32 arithmetic and the vector unit's functions).",
        "",
    ]
    lines += table(
        ["model", "variant", "mean abs logit err", "max abs logit err", "mean err/spread",
         "top-1 vs float64", "NLL - float64 NLL (nats)"],
        [[name, label, _g(a["mean_abs"]), _g(a["max_abs"]), _pct(a["mean_rel_spread"]),
          _pct(a["top1"]), f"{a['nll_delta']:+.5f}" if "nll_delta" in a else "-"]
         for name, ab in rep["ablation"].items() for label, a in ab.items()])
    lines += ["", "Mean |PIM - (float64 with all three roundings)|: "
              "not an error of either (once a tiny fp32-vs-float64 difference flips one bf16 "
              "rounding, the two runs land on different bf16 neighbours); compare instead "
              "the error sizes of `all three` and `pim` above: " + "; ".join(
                  f"{n} {_g(ab['pim']['vs_all_three_mean_abs'])} "
                  f"({_pct(ab['pim']['vs_all_three_mean_abs'] / ab['pim']['mean_abs'])} of "
                  "the PIM error's mean)" for n, ab in rep["ablation"].items()) + ".", ""]
    return lines

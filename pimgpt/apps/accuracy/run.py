"""``pimgpt accuracy``: the inputs (models, weights, held-out text), the run, the command.

:func:`run_accuracy` measures every requested model (:mod:`.experiments`) and returns the report
dict; :func:`cli_accuracy` writes it as ``accuracy.json`` and ``accuracy.md`` (:mod:`.report`).
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from pimgpt.core.fileio import Outputs, check_directory

from .experiments import (
    ALL_MODELS,
    FULL,
    QUICK,
    QUICK_DEFAULT,
    RANDOM_MODELS,
    SEED,
    TEST_CKPT_SHAPE,
    TRAINED_MODELS,
    ablation,
    decode_compare,
    f64_window_loss,
    golden_crosscheck,
    greedy_compare,
    perplexity_compare,
    teacher_forced_compare,
)
from .metrics import AccuracyError
from .report import format_markdown

__all__ = ["run_accuracy", "parse_models", "cli_accuracy"]


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


def run_accuracy(models: Sequence[str], quick: bool = False, hw_name: str | None = None,
                 progress: bool = True) -> dict:
    """Measure every requested model; see :mod:`pimgpt.apps.accuracy` for the sections.

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
        ``meta``, ``random``, ``trained``, ``golden``, ``ablation``, ``skipped`` (JSON-ready).
    """
    from tqdm import tqdm

    from pimgpt.core.config import load_hw
    from pimgpt.core.progress import progress_enabled
    from pimgpt.sw.corpus import held_out_stream

    sizes = QUICK if quick else FULL
    hw = load_hw(hw_name)
    t_start = time.perf_counter()
    rep = {"meta": {"quick": quick, "models": list(models), "hw": hw.name,
                    "gb_elems": hw.dram.gb_elems, "seed": SEED, "machine": _machine(),
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
            if name in RANDOM_MODELS:
                _random_model(rep, name, hw, sizes, bar, Path(tmpdir))
            elif not _shipped(name):
                rep["skipped"][name] = (f"{name} is not shipped in pimgpt/models/ yet "
                                        "(train it with tools/train_bytegpt.py)")
            else:
                _trained_model(rep, name, hw, sizes, bar, held, quick)
    rep["meta"]["wall_seconds"] = time.perf_counter() - t_start
    rep["meta"]["loadavg_end"] = round(os.getloadavg()[0], 2) if hasattr(os, "getloadavg") \
        else None
    return _strip_private(rep)


def _random_model(rep: dict, name: str, hw, sizes, bar, tmpdir: Path) -> None:
    """The ``random`` section (and its ablation and golden cross-check) of one model."""
    from pimgpt.sim import reference as ref
    from pimgpt.sw.checkpoint import weights_for
    from pimgpt.sw.models import get_model

    t0 = time.perf_counter()
    G = hw.dram.gb_elems
    if name == "test-ckpt":
        cfg, weights = _test_checkpoint(tmpdir)
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
        model = ref.PimModel(cfg, weights, G, late_norm_at=_late_norm_at(cfg, hw))
        res = decode_compare(cfg, weights, G, prompt, steps, b.update, pim_model=model)
    res["shape"] = _shape(cfg)
    # Random weights make greedy decoding repeat one token; teacher forcing on random tokens adds
    # varied contexts (every position's logits compared).
    n_tf = sizes.gpt2_tf if name == "gpt2-small" else min(sizes.tf_max, cfg.ctx)
    tf_toks = [int(t) for t in np.random.default_rng(SEED + 1).integers(0, cfg.vocab, n_tf)]
    with bar(n_tf, f"{name} teacher forced") as b:
        tf = teacher_forced_compare(cfg, weights, tf_toks, model, b.update)
    res["teacher_forced"] = tf
    arr, tarr = res.pop("_arrays"), tf.pop("_arrays")
    rep["ablation"][name] = ablation(
        cfg, weights, [arr["seq"], tf_toks], [arr["rows"], slice(None)],
        np.concatenate([arr["f64"], tarr["f64"]]), np.concatenate([arr["pim"], tarr["pim"]]))
    if name == "tiny":
        runs = [{"prompt": prompt, "tokens": res["tokens"], "logits": arr["pim"]}]
        rep["golden"][name] = golden_crosscheck(cfg, hw, weights, runs,
                                                min(sizes.golden_tokens, steps))
    res["seconds"] = time.perf_counter() - t0
    rep["random"][name] = res


def _trained_model(rep: dict, name: str, hw, sizes, bar, held: np.ndarray, quick: bool) -> None:
    """The ``trained`` section (and its ablation and golden cross-check) of one shipped model."""
    from pimgpt.sim import reference as ref
    from pimgpt.sw.checkpoint import weights_for
    from pimgpt.sw.corpus import eval_offsets
    from pimgpt.sw.models import get_model

    t0 = time.perf_counter()
    G = hw.dram.gb_elems
    cfg = get_model(name)
    weights = weights_for(cfg)
    wfile = Path(cfg.checkpoint) / "model.safetensors"
    entry = {"shape": _shape(cfg), "checkpoint": cfg.checkpoint,
             "weights_sha256": hashlib.sha256(wfile.read_bytes()).hexdigest()
             if wfile.is_file() else None}
    tj = Path(cfg.checkpoint) / "training.json"
    if tj.is_file():
        training = json.loads(tj.read_text(encoding="utf-8"))
        entry["held_out_matches_training"] = (
            training.get("data", {}).get("held_out_sha256") == rep["meta"]["held_out"]["sha256"])
        train_eval = training.get("eval", {})
        if "windows" in train_eval and not quick:  # the training script's own evaluation
            ev = eval_offsets(len(held), cfg.ctx, train_eval["windows"])
            entry["f64_training_windows"] = {
                "windows": len(ev), "nats": f64_window_loss(cfg, weights, held, ev),
                "training_json_nats": train_eval.get("held_out_loss")}
    model = ref.PimModel(cfg, weights, G, late_norm_at=_late_norm_at(cfg, hw))
    starts = eval_offsets(len(held), cfg.ctx, sizes.ppl_windows[name])
    with bar(len(starts) * cfg.ctx, f"{name} perplexity") as b:
        ppl = perplexity_compare(cfg, weights, G, held, starts, b.update, model)
    plen = sizes.greedy_prompt_len[name]
    gstarts = eval_offsets(len(held), plen, sizes.greedy_prompts[name])
    with bar(len(gstarts) * cfg.ctx, f"{name} greedy") as b:
        gr = greedy_compare(cfg, weights, G, held, gstarts, plen, b.update, model)
    arr = ppl.pop("_arrays")
    rep["ablation"][name] = ablation(cfg, weights, arr["seqs"], [slice(None)] * len(arr["seqs"]),
                                     arr["f64"], arr["pim"], arr["targets"])
    runs = gr.pop("_runs")[:sizes.golden_prompts]
    rep["golden"][name] = golden_crosscheck(cfg, hw, weights, runs, sizes.golden_tokens)
    entry.update(perplexity=ppl, greedy=gr, seconds=time.perf_counter() - t0)
    rep["trained"][name] = entry


def _late_norm_at(cfg, hw) -> set[int]:
    """The positions whose decode steps ``hw``'s compiler gives ``SOFTMAXU`` (the arithmetic
    the reference model follows there; none within two vector registers of context)."""
    from pimgpt.sw.compiler.driver import late_norm_positions_upto

    return late_norm_positions_upto(cfg, hw, cfg.ctx)


def _shape(cfg) -> str:
    return (f"{cfg.n_layer} layers, d {cfg.d_model}, {cfg.n_head} heads, ctx {cfg.ctx}, "
            f"vocab {cfg.vocab}")


def cli_accuracy(args) -> int:
    """``pimgpt accuracy``: run :func:`run_accuracy`, write ``accuracy.md`` and ``accuracy.json``
    to ``args.output`` and print the Markdown.

    Parameters
    ----------
    args : argparse.Namespace
        ``output`` (directory), ``quick`` (bool), ``models`` (comma-separated or None).
    """
    from pimgpt.sw.corpus import stdlib_corpus

    models = parse_models(args.models, args.quick)
    if any(m in TRAINED_MODELS and _shipped(m) for m in models):
        stdlib_corpus()  # fail before the long run if the split cannot be read
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

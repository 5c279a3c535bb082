#!/usr/bin/env python3
"""Train the byte-level models shipped with pimgpt (``tiny-py``, ``small-py``, ``tiny-llama-py``)
on CPU.

The training text is the Python source of the running interpreter's standard library, split into
training and held-out files by :mod:`pimgpt.sw.corpus` (which ``pimgpt accuracy`` uses too). The
text is (c) the Python Software Foundation under the PSF License Version 2.

Each model is exactly an architecture pimgpt computes (see ``docs/dataflow.md``). ``tiny-py`` and
``small-py`` are GPT-2: pre-LayerNorm blocks, GELU in its tanh form, learned positions, biases
everywhere, LayerNorm eps 1e-5 and an LM head tied to the token embedding. ``tiny-llama-py`` is
Llama: pre-RMSNorm blocks, rotary embeddings (rotate-half, theta 10000, the Llama 3 frequency
scaling; cos/sin computed in float64 by :mod:`pimgpt.core.rope`), a SwiGLU MLP, grouped-query
attention (4 query heads on 2 K/V heads), no biases and a separate LM head. A model is saved with
:func:`pimgpt.sw.checkpoint.save_checkpoint` (Hugging Face GPT-2 or Llama layout, float32)
together with ``training.json`` (data files, hashes, settings, losses, a check vector for the
tests) and ``TRAINING.md``.

Needs PyTorch (the ``train`` extra: ``.venv/bin/pip install torch==2.13.0``, CPU build)::

    .venv/bin/python tools/train_bytegpt.py tiny-py
    .venv/bin/python tools/train_bytegpt.py small-py
    .venv/bin/python tools/train_bytegpt.py tiny-llama-py

Runs are seeded; with the same Python (hence the same stdlib text), torch version, thread count and
CPU they give the same weights.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import os
import platform
import sys
import textwrap
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from pimgpt.sw.checkpoint import load_weights, save_checkpoint
from pimgpt.sw.corpus import (
    HELD_OUT_EVERY,
    CorpusError,
    eval_offsets,
    read_stream,
    stdlib_corpus,
)
from pimgpt.sw.hf_layout import to_pimgpt
from pimgpt.sw.models import PRESETS, ModelConfig, ModelError, RopeScaling
from pimgpt.sw.tokenizer import decode, encode

REPO = Path(__file__).resolve().parent.parent
# A fixed Python snippet (written for this script) on which training.json records the float64
# loss, so that tests can check an independent implementation of the architecture against torch.
CHECK_TEXT = (
    "import os\n\n\ndef read_lines(path, encoding='utf-8'):\n"
    "    \"\"\"Return the lines of a file.\"\"\"\n"
    "    with open(path, encoding=encoding) as f:\n        return f.read().splitlines()\n"
)
SAMPLE_PROMPT = "def "


@dataclass(frozen=True)
class Recipe:
    """Model shape and training settings of one shipped model."""

    model: ModelConfig
    steps: int
    batch: int
    lr: float
    warmup: int
    eval_windows: int


RECIPES = {
    # The RTL-sized model: exactly the shape of the `tiny` preset.
    "tiny-py": Recipe(
        ModelConfig("tiny-py", **{k: v for k, v in PRESETS["tiny"].to_dict().items()
                                  if k not in ("name", "checkpoint")}),
        steps=8000, batch=32, lr=3e-3, warmup=100, eval_windows=1024,
    ),
    "small-py": Recipe(
        ModelConfig("small-py", n_layer=4, d_model=128, n_head=4, ctx=128, vocab=256),
        steps=3000, batch=16, lr=4e-3, warmup=100, eval_windows=512,
    ),
    # Llama-style and RTL-sized (it fits the tiny-rtl system with its KV cache at context 64):
    # the width, depth and context of `tiny`, GQA with 2 query heads per K/V head, the SwiGLU
    # width 8/3 d rounded up to a multiple of 64 as Llama rounds it, and a Llama 3 frequency
    # scaling from an "original" context of 32 to 64 (factor 2) whose three bands (wavelengths
    # below 8, 8..32 and above 32 positions) all hold some of the 8 frequencies of a 16-wide
    # head, so that the shipped model exercises all three.
    "tiny-llama-py": Recipe(
        ModelConfig("tiny-llama-py", n_layer=2, d_model=64, n_head=4, ctx=64, vocab=256,
                    d_ff=192, ln_eps=1e-5, norm="rmsnorm", position="rope", mlp="swiglu",
                    n_kv_head=2, bias=False, tied_head=False, rope_theta=10000.0,
                    rope_scaling=RopeScaling(2.0, 1.0, 4.0, 32)),
        steps=8000, batch=32, lr=3e-3, warmup=100, eval_windows=1024,
    ),
}


def build_model(cfg: ModelConfig):
    """A torch model of ``cfg``'s architecture (GPT-2 or Llama) with GPT-2's initialisation."""
    return build_llama(cfg) if cfg.family == "llama" else build_gpt2(cfg)


def build_gpt2(cfg: ModelConfig):
    """A torch GPT-2 of shape ``cfg`` with GPT-2's initialisation."""
    import torch
    from torch import nn
    from torch.nn import functional as F

    d, f = cfg.d_model, cfg.d_ff

    class Block(nn.Module):
        def __init__(self):
            super().__init__()
            self.ln_1 = nn.LayerNorm(d, eps=cfg.ln_eps)
            self.c_attn = nn.Linear(d, 3 * d)
            self.attn_proj = nn.Linear(d, d)
            self.ln_2 = nn.LayerNorm(d, eps=cfg.ln_eps)
            self.c_fc = nn.Linear(d, f)
            self.mlp_proj = nn.Linear(f, d)

        def forward(self, x):
            b, t, _ = x.shape
            q, k, v = self.c_attn(self.ln_1(x)).split(d, dim=2)
            q, k, v = (z.view(b, t, cfg.n_head, cfg.d_head).transpose(1, 2) for z in (q, k, v))
            # Default scale 1/sqrt(d_head), causal mask: GPT-2 attention.
            o = F.scaled_dot_product_attention(q, k, v, is_causal=True)
            x = x + self.attn_proj(o.transpose(1, 2).reshape(b, t, d))
            return x + self.mlp_proj(F.gelu(self.c_fc(self.ln_2(x)), approximate="tanh"))

    class GPT(nn.Module):
        def __init__(self):
            super().__init__()
            self.wte = nn.Embedding(cfg.vocab, d)
            self.wpe = nn.Embedding(cfg.ctx, d)
            self.h = nn.ModuleList(Block() for _ in range(cfg.n_layer))
            self.ln_f = nn.LayerNorm(d, eps=cfg.ln_eps)
            for name, p in self.named_parameters():
                if name.endswith("bias"):
                    nn.init.zeros_(p)
                elif ".ln_" in name or name.startswith("ln_f"):
                    nn.init.ones_(p)
                elif name.endswith("proj.weight"):
                    nn.init.normal_(p, 0.0, 0.02 / math.sqrt(2 * cfg.n_layer))
                else:
                    nn.init.normal_(p, 0.0, 0.02)

        def forward(self, idx):
            pos = torch.arange(idx.shape[1], device=idx.device)
            x = self.wte(idx) + self.wpe(pos)
            for block in self.h:
                x = block(x)
            return self.ln_f(x) @ self.wte.weight.T  # tied LM head, no bias

    return GPT()


def build_llama(cfg: ModelConfig):
    """A torch Llama of shape ``cfg``, modules named as in Hugging Face's ``LlamaForCausalLM`` (so
    its state dict is a Llama checkpoint), with GPT-2's initialisation scales."""
    import torch
    from torch import nn
    from torch.nn import functional as F

    from pimgpt.core.rope import rope_cos_sin_f64

    d, f, dh = cfg.d_model, cfg.d_ff, cfg.d_head
    cos, sin = rope_cos_sin_f64(np.arange(cfg.ctx), cfg.rope_inv_freq())
    # float64 tables, repeated over both halves of a head (rotate-half); cast per forward.
    cos64 = torch.from_numpy(np.concatenate([cos, cos], axis=-1))
    sin64 = torch.from_numpy(np.concatenate([sin, sin], axis=-1))

    class RMSNorm(nn.Module):
        def __init__(self):
            super().__init__()
            self.weight = nn.Parameter(torch.ones(d))

        def forward(self, x):
            return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + cfg.ln_eps) * self.weight

    def rotate(x, c, s):
        x1, x2 = x.chunk(2, dim=-1)
        return x * c + torch.cat([-x2, x1], dim=-1) * s

    class Attention(nn.Module):
        def __init__(self):
            super().__init__()
            self.q_proj = nn.Linear(d, d, bias=cfg.bias)
            self.k_proj = nn.Linear(d, cfg.kv_dim, bias=cfg.bias)
            self.v_proj = nn.Linear(d, cfg.kv_dim, bias=cfg.bias)
            self.o_proj = nn.Linear(d, d, bias=cfg.bias)

        def forward(self, x, c, s):
            b, t, _ = x.shape
            q = self.q_proj(x).view(b, t, cfg.n_head, dh).transpose(1, 2)
            k = self.k_proj(x).view(b, t, cfg.n_kv_head, dh).transpose(1, 2)
            v = self.v_proj(x).view(b, t, cfg.n_kv_head, dh).transpose(1, 2)
            q, k = rotate(q, c, s), rotate(k, c, s)
            # Query head a uses K/V head a // group (Hugging Face's repeat_kv).
            k = k.repeat_interleave(cfg.group, dim=1)
            v = v.repeat_interleave(cfg.group, dim=1)
            o = F.scaled_dot_product_attention(q, k, v, is_causal=True)
            return self.o_proj(o.transpose(1, 2).reshape(b, t, d))

    class MLP(nn.Module):
        def __init__(self):
            super().__init__()
            self.gate_proj = nn.Linear(d, f, bias=cfg.bias)
            self.up_proj = nn.Linear(d, f, bias=cfg.bias)
            self.down_proj = nn.Linear(f, d, bias=cfg.bias)

        def forward(self, x):
            return self.down_proj(F.silu(self.gate_proj(x)) * self.up_proj(x))

    class Layer(nn.Module):
        def __init__(self):
            super().__init__()
            self.input_layernorm = RMSNorm()
            self.self_attn = Attention()
            self.post_attention_layernorm = RMSNorm()
            self.mlp = MLP()

        def forward(self, x, c, s):
            x = x + self.self_attn(self.input_layernorm(x), c, s)
            return x + self.mlp(self.post_attention_layernorm(x))

    class Decoder(nn.Module):
        def __init__(self):
            super().__init__()
            self.embed_tokens = nn.Embedding(cfg.vocab, d)
            self.layers = nn.ModuleList(Layer() for _ in range(cfg.n_layer))
            self.norm = RMSNorm()

    class Llama(nn.Module):
        def __init__(self):
            super().__init__()
            self.model = Decoder()
            self.lm_head = None if cfg.tied_head else nn.Linear(d, cfg.vocab, bias=False)
            for name, p in self.named_parameters():
                if name.endswith("bias"):
                    nn.init.zeros_(p)
                elif "norm" in name:
                    nn.init.ones_(p)
                elif name.endswith(("o_proj.weight", "down_proj.weight")):
                    nn.init.normal_(p, 0.0, 0.02 / math.sqrt(2 * cfg.n_layer))
                else:
                    nn.init.normal_(p, 0.0, 0.02)

        def forward(self, idx):
            t = idx.shape[1]
            x = self.model.embed_tokens(idx)
            c, s = cos64[:t].to(x.dtype), sin64[:t].to(x.dtype)
            for layer in self.model.layers:
                x = layer(x, c, s)
            x = self.model.norm(x)
            head = self.model.embed_tokens.weight if self.lm_head is None else self.lm_head.weight
            return x @ head.T

    return Llama()


def export_weights(model, cfg: ModelConfig) -> dict[str, np.ndarray]:
    """Torch parameters -> pimgpt weights (matrices ``[in, out]``: nn.Linear weights transposed).

    The Llama model's state dict is a Hugging Face Llama checkpoint, converted by the same code
    that loads such checkpoints (:func:`pimgpt.sw.hf_layout.to_pimgpt`).
    """
    sd = {k: v.detach().to("cpu").double().numpy() for k, v in model.state_dict().items()}
    if cfg.family == "llama":
        out = to_pimgpt(sd, cfg, "the trained torch model")
        return {k: np.ascontiguousarray(v, dtype=np.float32) for k, v in out.items()}
    out = {"wte": sd["wte.weight"], "wpe": sd["wpe.weight"]}
    for i in range(cfg.n_layer):
        p = f"h.{i}."
        for ours, theirs in (("ln_1", "ln_1"), ("ln_2", "ln_2")):
            out[p + ours + ".weight"] = sd[p + theirs + ".weight"]
            out[p + ours + ".bias"] = sd[p + theirs + ".bias"]
        for ours, theirs in (("attn.c_attn", "c_attn"), ("attn.c_proj", "attn_proj"),
                             ("mlp.c_fc", "c_fc"), ("mlp.c_proj", "mlp_proj")):
            out[p + ours + ".weight"] = sd[p + theirs + ".weight"].T
            out[p + ours + ".bias"] = sd[p + theirs + ".bias"]
    out["ln_f.weight"], out["ln_f.bias"] = sd["ln_f.weight"], sd["ln_f.bias"]
    return {k: np.ascontiguousarray(v, dtype=np.float32) for k, v in out.items()}


def windows(stream: np.ndarray, starts: np.ndarray, ctx: int):
    import torch

    idx = starts[:, None] + np.arange(ctx + 1)[None, :]
    chunk = torch.from_numpy(stream[idx].astype(np.int64))
    return chunk[:, :-1], chunk[:, 1:]


def mean_loss(model, stream: np.ndarray, starts: np.ndarray, ctx: int, batch: int = 64) -> float:
    """Mean next-byte cross-entropy (nats) over all positions of the given windows."""
    import torch
    from torch.nn import functional as F

    total, count = 0.0, 0
    with torch.no_grad():
        for i in range(0, len(starts), batch):
            x, y = windows(stream, starts[i:i + batch], ctx)
            logits = model(x)
            total += F.cross_entropy(logits.flatten(0, 1), y.flatten(), reduction="sum").item()
            count += y.numel()
    return total / count


def greedy(model, prompt: list[int], new_tokens: int) -> list[int]:
    """Greedy continuation (the first maximum, as pimgpt's argmax)."""
    import torch

    toks = list(prompt)
    with torch.no_grad():
        for _ in range(new_tokens):
            logits = model(torch.tensor([toks], dtype=torch.long))[0, -1]
            toks.append(int(torch.argmax(logits)))
    return toks


def check_nll(model, text: str) -> float:
    """Float64 mean NLL (nats/byte) of ``text``'s bytes after the first (for the tests)."""
    import torch
    from torch.nn import functional as F

    ids = torch.tensor([encode(text)], dtype=torch.long)
    with torch.no_grad():
        logits = model(ids[:, :-1])
        return F.cross_entropy(logits[0], ids[0, 1:]).item()


def write_report(out: Path, rep: dict) -> None:
    """Write ``TRAINING.md`` from the ``training.json`` record ``rep``."""
    cfg = rep["model"]
    data, train, ev, env = rep["data"], rep["train"], rep["eval"], rep["env"]
    held = ", ".join(f"`{n}`" for n in data["held_out_files"])
    fence = "````"  # the sample may contain ``` itself
    load = env.get("loadavg_end")
    load_text = f" (1-minute load average {load:.1f} at the end)" if load is not None else ""
    notes = "".join(f"- {n}\n" for n in rep.get("notes", []))
    if cfg.get("norm") == "rmsnorm":
        sc = cfg["rope_scaling"]
        kind = "Llama-style model"
        head = "an LM head tied to the embedding" if cfg["tied_head"] else "a separate LM head"
        arch = textwrap.fill(
            f"Architecture: Llama exactly as pimgpt computes it: pre-RMSNorm blocks (eps "
            f"{cfg['ln_eps']}), rotary position embeddings (rotate-half, theta "
            f"{cfg['rope_theta']:g}, Llama 3 frequency scaling: factor {sc['factor']:g}, "
            f"low_freq_factor {sc['low_freq_factor']:g}, high_freq_factor "
            f"{sc['high_freq_factor']:g}, original_max_position_embeddings "
            f"{sc['original_max_position_embeddings']}; cos/sin computed in float64), a SwiGLU "
            f"MLP of width {cfg['d_ff']}, grouped-query attention ({cfg['n_head']} query heads on "
            f"{cfg['n_kv_head']} K/V heads), {'biases' if cfg['bias'] else 'no biases'} and "
            f"{head}. Stored as float32 in Hugging Face Llama layout (`config.json`, "
            "`model.safetensors`, names `model.layers.0.self_attn.q_proj.weight` ...); "
            "`training.json` holds every number below.", width=100)
    else:
        kind = "GPT-2"
        arch = f"""\
Architecture: GPT-2 exactly as pimgpt computes it: pre-LayerNorm blocks, GELU (tanh form), learned
positions, biases, LayerNorm eps {cfg['ln_eps']}, LM head tied to the token embedding. Stored as
float32 in Hugging Face GPT-2 layout (`config.json`, `model.safetensors`, names
`transformer.h.0.attn.c_attn.weight` ...); `training.json` holds every number below."""
    tied = "tied LM head counted once" if cfg.get("tied_head", True) else "separate LM head"
    text = f"""# {cfg['name']}: a byte-level {kind} trained on Python source

Shape: {cfg['n_layer']} layers, d_model {cfg['d_model']}, {cfg['n_head']} heads (d_head \
{cfg['d_model'] // cfg['n_head']}), context {cfg['ctx']}, vocabulary 256 (one token per UTF-8 \
byte), {rep['n_params']:,} parameters ({tied}).

{arch}

## How it was made

```
{rep['command']}
```

- Python {env['python']}, torch {env['torch']}, {env['threads']} CPU thread(s), \
{env['machine']}; seed {train['seed']}.
- {train['steps']} steps of {train['batch']} random windows of {cfg['ctx']} bytes; AdamW \
(betas 0.9/0.95, weight decay 0.01 on matrices only), peak learning rate {train['lr']}, \
{train['warmup']} warm-up steps then cosine decay to 10 %, gradient clipping at 1.0.
- Wall time {train['wall_s']:.0f} s for training and evaluation{load_text}.
{notes}
## Data

The Python {env['python']} standard library: every top-level `*.py` file of the directory
`sysconfig.get_paths()["stdlib"]`, sorted by name. Every tenth file (index 9 mod 10) is held out
for evaluation, {len(data['held_out_files'])} files, {data['held_out_bytes']:,} bytes (sha256
`{data['held_out_sha256']}`): {held}. The other {data['n_train_files']} files, concatenated in
order, are the training stream: {data['train_bytes']:,} bytes (sha256 `{data['train_sha256']}`).

Licence of the training text: Python Software Foundation License Version 2 (CPython's standard
library, (c) Python Software Foundation). Another Python version has other text and gives other
weights.

## Results

Mean next-byte cross-entropy over {ev['windows']} evenly spaced windows of {cfg['ctx']} bytes of
each stream (all positions of each window):

| stream | nats/byte | bits/byte |
|---|---|---|
| train | {ev['train_loss']:.4f} | {ev['train_loss'] / math.log(2):.3f} |
| held-out | {ev['held_out_loss']:.4f} | {ev['held_out_loss'] / math.log(2):.3f} |

(A uniform guess is 5.545 nats, 8 bits per byte.)

Greedy sample, computed in float64 from the stored float32 weights: the prompt \
`{rep['sample']['prompt']}` and {rep['sample']['new_tokens']} generated bytes, which fill the \
{cfg['ctx']}-byte context. pimgpt's bf16 datapath rounds differently and may pick another byte \
where two are nearly tied.

{fence}python
{rep['sample']['text']}
{fence}
"""
    (out / "TRAINING.md").write_text(text, encoding="utf-8")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("model", choices=sorted(RECIPES), help="which shipped model to train")
    ap.add_argument("--steps", type=int, default=None, help="override the recipe's step count")
    ap.add_argument("--threads", type=int, default=2, help="torch CPU threads (default 2)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("-o", "--output", default=None,
                    help="output directory (default pimgpt/models/<model>)")
    ap.add_argument("--report-only", action="store_true",
                    help="only rewrite TRAINING.md from the output directory's training.json")
    args = ap.parse_args(argv)
    if args.report_only:
        out = Path(args.output) if args.output else REPO / "pimgpt" / "models" / args.model
        rep = json.loads((out / "training.json").read_text(encoding="utf-8"))
        write_report(out, rep)
        print(f"wrote {out / 'TRAINING.md'}")
        return 0
    try:
        import torch
    except ImportError:
        print("error: PyTorch is missing; run `.venv/bin/pip install torch==2.13.0`",
              file=sys.stderr)
        return 1
    recipe = RECIPES[args.model]
    cfg = recipe.model
    steps = args.steps or recipe.steps
    out = Path(args.output) if args.output else REPO / "pimgpt" / "models" / cfg.name
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    rng = np.random.default_rng(args.seed)

    try:
        root, train_files, held_files = stdlib_corpus()
    except CorpusError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    train = read_stream(root, train_files)
    held = read_stream(root, held_files)
    print(f"{cfg.name}: {cfg.n_params:,} params; train {len(train):,} bytes in "
          f"{len(train_files)} files, held-out {len(held):,} bytes in {len(held_files)} files")

    model = build_model(cfg)
    decay = [p for n, p in model.named_parameters() if p.dim() == 2]
    no_decay = [p for n, p in model.named_parameters() if p.dim() < 2]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": 0.01},
                             {"params": no_decay, "weight_decay": 0.0}],
                            lr=recipe.lr, betas=(0.9, 0.95))

    def lr_at(step: int) -> float:
        if step < recipe.warmup:
            return recipe.lr * (step + 1) / recipe.warmup
        frac = (step - recipe.warmup) / max(1, steps - recipe.warmup)
        return recipe.lr * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * frac)))

    ev_train = eval_offsets(len(train), cfg.ctx, recipe.eval_windows)
    ev_held = eval_offsets(len(held), cfg.ctx, recipe.eval_windows)
    t0 = time.time()
    for step in range(steps):
        for group in opt.param_groups:
            group["lr"] = lr_at(step)
        starts = rng.integers(0, len(train) - cfg.ctx - 1, size=recipe.batch)
        x, y = windows(train, starts, cfg.ctx)
        logits = model(x)
        loss = torch.nn.functional.cross_entropy(logits.flatten(0, 1), y.flatten())
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        if step % 250 == 0 or step == steps - 1:
            print(f"step {step:5d}  loss {loss.item():.4f}  lr {lr_at(step):.2e}  "
                  f"{time.time() - t0:6.1f} s", flush=True)
    model.eval()
    train_loss = mean_loss(model, train, ev_train, cfg.ctx)
    held_loss = mean_loss(model, held, ev_held, cfg.ctx)
    wall = time.time() - t0
    print(f"final: train {train_loss:.4f}  held-out {held_loss:.4f} nats/byte  ({wall:.0f} s)")

    weights = export_weights(model, cfg)
    # Sample and check vector in float64 from the float32 weights that are saved.
    model = model.double()
    prompt = encode(SAMPLE_PROMPT)
    new = cfg.ctx - len(prompt)
    sample = greedy(model, prompt, new)
    nll = check_nll(model, CHECK_TEXT[: cfg.ctx])
    print("sample:\n" + decode(sample))

    rep = {
        "model": {k: v for k, v in cfg.to_dict().items() if k != "checkpoint"},
        "n_params": cfg.n_params,
        "command": " ".join([".venv/bin/python tools/train_bytegpt.py", cfg.name]
                            + ([f"--steps {steps}"] if args.steps else [])
                            + ([f"--threads {args.threads}"] if args.threads != 2 else [])
                            + ([f"--seed {args.seed}"] if args.seed else [])),
        "env": {"python": platform.python_version(), "torch": torch.__version__,
                "threads": args.threads, "machine": f"{platform.machine()} {platform.system()}",
                # Training time depends on what else runs: the load says how busy the CPUs were.
                "loadavg_end": round(os.getloadavg()[0], 2)},
        "data": {
            "source": "CPython standard library, top-level *.py files of "
                      "sysconfig.get_paths()['stdlib'], sorted by name",
            "licence": "Python Software Foundation License Version 2",
            "held_out_rule": f"file index % {HELD_OUT_EVERY} == {HELD_OUT_EVERY - 1}",
            "n_train_files": len(train_files),
            "train_files": train_files,
            "held_out_files": held_files,
            "train_bytes": int(len(train)),
            "held_out_bytes": int(len(held)),
            "train_sha256": hashlib.sha256(train.tobytes()).hexdigest(),
            "held_out_sha256": hashlib.sha256(held.tobytes()).hexdigest(),
        },
        "train": {"seed": args.seed, "steps": steps, "batch": recipe.batch, "lr": recipe.lr,
                  "warmup": recipe.warmup, "wall_s": round(wall, 1)},
        "eval": {"windows": recipe.eval_windows, "train_loss": round(train_loss, 5),
                 "held_out_loss": round(held_loss, 5)},
        "sample": {"prompt": SAMPLE_PROMPT, "new_tokens": new, "tokens": sample,
                   "text": decode(sample)},
        "check": {"text": CHECK_TEXT[: cfg.ctx], "nll_float64": nll},
    }
    try:
        save_checkpoint(cfg, weights, out)
    except ModelError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    (out / "training.json").write_text(json.dumps(rep, indent=1) + "\n", encoding="utf-8")
    write_report(out, rep)
    # The saved files must load back through pimgpt to exactly the trained float32 weights.
    back = load_weights(ModelConfig(**{**cfg.to_dict(), "checkpoint": str(out)}))
    assert all(np.array_equal(back[k], weights[k]) for k in weights)
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

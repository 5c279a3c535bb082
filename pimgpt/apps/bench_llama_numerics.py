"""Measured accuracy of the Llama-family functions (RMSNorm, SiLU, SwiGLU, RoPE) and models.

``python -m pimgpt.apps.bench_llama_numerics`` prints the tables of ``docs/numerics.md`` section
"Llama functions"; :func:`llama_report` returns the figures as dicts. Error units and the float64
references follow :mod:`pimgpt.apps.bench_numerics` (ulps of fp32/bf16 at the reference value). All
inputs come from seeded generators, so the figures are reproducible.
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from pimgpt.apps.bench_numerics import _err_stats
from pimgpt.core import nonlinear_llama as nll
from pimgpt.core.rope import rope_cos_sin_f64, rope_inv_freq, rope_table


# ---------------------------------------------------------------------------------------------
# float64 references (exact math on the same fp32 inputs)
# ---------------------------------------------------------------------------------------------
def silu_f64(x) -> np.ndarray:
    """SiLU in float64 with the sigmoid from ``z = exp(-|x|)``: ``1/(1+z)`` for ``x >= 0``, else
    ``z/(1+z)`` (no overflow, and no cancellation in the negative tail, where ``1 + tanh(x/2)``
    would be 0)."""
    x = np.asarray(x, dtype=np.float64)
    z = np.exp(-np.abs(x))
    return x * np.where(x >= 0, 1.0 / (1.0 + z), z / (1.0 + z))


def rmsnorm_f64(x, gamma, eps) -> np.ndarray:
    """RMSNorm along the last axis in float64."""
    x = np.asarray(x, dtype=np.float64)
    return x / np.sqrt((x * x).mean(axis=-1, keepdims=True) + float(eps)) * np.asarray(
        gamma, np.float64)


def rope_f64(x, cos, sin) -> np.ndarray:
    """Rotate-half RoPE in float64 of heads ``x [..., D]`` by ``cos``/``sin`` ``[..., D/2]``."""
    x = np.asarray(x, dtype=np.float64)
    h = x.shape[-1] // 2
    lo, hi = x[..., :h], x[..., h:]
    return np.concatenate([lo * cos - hi * sin, hi * cos + lo * sin], axis=-1)


# ---------------------------------------------------------------------------------------------
# Tables
# ---------------------------------------------------------------------------------------------
def silu_error(n: int = 1_000_000, seed: int = 11) -> dict:
    """``nonlinear_llama.silu`` on uniform x in [-8, 8], in [-87, 20] and in [-1e4, 1e4].

    Below about -87.3, ``exp(-|x|)`` flushes and the function returns -0 (true result under
    2**-119 in magnitude): the widest range is meaningful as an absolute error only.
    """
    rng = np.random.default_rng(seed)
    res = {}
    for name, (lo, hi) in (("[-8, 8]", (-8.0, 8.0)), ("[-87, 20]", (-87.0, 20.0)),
                           ("[-1e4, 1e4] (abs err)", (-1e4, 1e4))):
        x = rng.uniform(lo, hi, n).astype(np.float32)
        res[name] = _err_stats(nll.silu(x), silu_f64(x))
    return res


def swiglu_error(n: int = 1_000_000, seed: int = 12) -> dict:
    """``nonlinear_llama.swiglu`` with gate uniform in [-8, 8] and up ~ N(0, 1)."""
    rng = np.random.default_rng(seed)
    gate = rng.uniform(-8.0, 8.0, n).astype(np.float32)
    up = rng.standard_normal(n).astype(np.float32)
    return {"gate in [-8, 8], up N(0,1)": _err_stats(
        nll.swiglu(gate, up), silu_f64(gate) * up.astype(np.float64))}


def rmsnorm_error(rows: int = 512, lengths=(64, 2048, 4096), eps: float = 1e-5,
                  seed: int = 13) -> dict:
    """``nonlinear_llama.rmsnorm`` on x = N(mu_row, sigma_row), mu in [-4, 4], sigma in [0.1, 10],
    gamma ~ N(1, 0.2) (fresh per row). RMSNorm has no subtraction, so errors are relative (ulps at
    the reference value)."""
    rng = np.random.default_rng(seed)
    res = {}
    for length in lengths:
        mu = rng.uniform(-4, 4, (rows, 1))
        sigma = np.exp(rng.uniform(np.log(0.1), np.log(10.0), (rows, 1)))
        x = (mu + sigma * rng.standard_normal((rows, length))).astype(np.float32)
        gamma = (1 + 0.2 * rng.standard_normal((rows, length))).astype(np.float32)
        got = nll.rmsnorm(x, gamma, eps)
        res[f"n={length}, eps={eps:g}"] = _err_stats(got, rmsnorm_f64(x, gamma, np.float32(eps)))
    return res


#: (name, d_head, theta, llama3 scaling, max position) of the RoPE measurements.
ROPE_CASES = (
    ("Llama-2 (d_head 128, theta 1e4)", 128, 1e4, None, 4096),
    ("Llama-3.2-1B (d_head 64, theta 5e5, llama3 x32)", 64, 5e5, (32.0, 1.0, 4.0, 8192), 131072),
)


def rope_error(heads: int = 4096, seed: int = 14) -> dict:
    """``nonlinear_llama.rope`` on N(0, 1) heads at uniform random positions, two ways:

    * *arithmetic*: against float64 math on the same fp32 cos/sin table (the vector unit's error);
    * *with table*: against exact float64 cos/sin (adds the table's rounding to fp32).

    The rotation cancels (``a cos - b sin``), so ulps are measured at ``max(|ref|, 1)``, the unit
    scale of N(0, 1) inputs.
    """
    rng = np.random.default_rng(seed)
    res = {}
    for name, dh, theta, scaling, max_pos in ROPE_CASES:
        inv = rope_inv_freq(dh, theta, scaling)
        pos = rng.integers(0, max_pos, heads)
        x = rng.standard_normal((heads, dh)).astype(np.float32)
        c32, s32 = rope_table(pos, inv)
        c64, s64 = rope_cos_sin_f64(pos, inv)
        got = nll.rope(x, c32, s32)
        res[name + ", arithmetic"] = _err_stats(
            got, rope_f64(x, c32.astype(np.float64), s32.astype(np.float64)), floor=1.0)
        res[name + ", with table"] = _err_stats(got, rope_f64(x, c64, s64), floor=1.0)
    return res


def model_error(model: str = "tiny-llama-py", gb_elems: int = 1024, text: str | None = None
                ) -> dict:
    """Teacher-forced logits of the PIM-arithmetic reference against the float64 one.

    Parameters
    ----------
    model : str
        A model with a checkpoint (default: the shipped Llama-style model).
    gb_elems : int
        Chunk size G of the dot products.
    text : str, optional
        Bytes to score (default: the check text recorded in the model's ``training.json``).

    Returns
    -------
    dict
        Largest logit difference (absolute and over the largest |logit|), the mean NLL of both
        models (nats/byte) and the share of positions whose argmax agree.
    """
    import json

    from pimgpt.sim import reference as ref
    from pimgpt.sw.checkpoint import load_weights, shipped_model_dir
    from pimgpt.sw.models import get_model
    from pimgpt.sw.tokenizer import encode

    cfg = get_model(model)
    weights = load_weights(cfg)
    if text is None:
        rep = json.loads((shipped_model_dir(model) / "training.json").read_text())
        text = rep["check"]["text"]
    ids = encode(text)[: cfg.ctx]
    pim = ref.pim_logits_teacher_forced(cfg, weights, gb_elems, ids).astype(np.float64)
    f64 = ref.f64_logits_teacher_forced(cfg, weights, ids)

    def nll(logits):
        z = logits[:-1] - logits[:-1].max(-1, keepdims=True)
        logp = z - np.log(np.exp(z).sum(-1, keepdims=True))
        return float(-logp[np.arange(len(ids) - 1), ids[1:]].mean())

    err = np.abs(pim - f64)
    return {
        "model": model, "positions": len(ids),
        "max_abs_logit_err": float(err.max()),
        "max_rel_logit_err": float(err.max() / np.abs(f64).max()),
        "nll_pim": nll(pim), "nll_f64": nll(f64),
        "argmax_agree": float((pim.argmax(-1) == f64.argmax(-1)).mean()),
    }


def llama_report(quick: bool = False) -> dict:
    """All function tables (``quick``: 10x fewer samples)."""
    k = 10 if quick else 1
    return {
        "rmsnorm": rmsnorm_error(rows=512 // k),
        "silu": silu_error(1_000_000 // k),
        "swiglu": swiglu_error(1_000_000 // k),
        "rope": rope_error(4096 // k),
    }


def format_report(rep: dict) -> str:
    """A Markdown table of :func:`llama_report`'s result."""
    lines = [
        "Llama functions vs float64 on the same fp32 inputs",
        "",
        "| function | inputs | samples | max err (bf16 ulp) | max err (fp32 ulp) |"
        " mean err (fp32 ulp) | max abs err |",
        "|---|---|---|---|---|---|---|",
    ]
    for fn, table in rep.items():
        for name, s in table.items():
            lines.append(
                f"| {fn} | {name} | {s['count']} | {s['max_ulp_bf16']:.4f} | "
                f"{s['max_ulp_fp32']:.2f} | {s['mean_ulp_fp32']:.3f} | {s['max_abs']:.3g} |"
            )
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="10x fewer samples")
    parser.add_argument("--model", default="tiny-llama-py",
                        help="model for the PIM-vs-float64 logit comparison ('' to skip)")
    args = parser.parse_args(argv)
    if args.model:  # a bad name is refused before the minutes of the report
        from pimgpt.sw.models import get_model

        get_model(args.model)
    t0 = time.perf_counter()
    print(format_report(llama_report(quick=args.quick)))
    if args.model:
        m = model_error(args.model)
        print(f"\n{m['model']}, {m['positions']} positions teacher forced: max |logit err| "
              f"{m['max_abs_logit_err']:.3g} ({m['max_rel_logit_err']:.2e} of max |logit|), "
              f"NLL PIM {m['nll_pim']:.5f} vs float64 {m['nll_f64']:.5f} nats/byte, "
              f"argmax agreement {100 * m['argmax_agree']:.1f} %")
    print(f"\n(report took {time.perf_counter() - t0:.1f} s)")
    return 0


if __name__ == "__main__":
    from pimgpt.apps.entry import module_main

    module_main(main)

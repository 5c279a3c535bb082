"""Measured accuracy and speed of the numerics contract and the vector unit's nonlinear functions.

``python -m pimgpt.apps.bench_numerics`` prints the tables of ``docs/numerics.md``;
``numerics_report()``
returns the same figures as dicts (the lead's ``pimgpt bench`` may call it). All inputs come from
seeded generators, so the figures are reproducible.

Error units: for a float64 reference value ``r``,
``ulp_fp32(r) = 2**(max(floor(log2|r|), -126) - 23)`` and
``ulp_bf16(r) = 2**(max(floor(log2|r|), -126) - 7)``, i.e. the spacing of the format at ``r`` (for
``r = 0`` the spacing at the smallest normal). An error in ulps is ``|got - r| / ulp(r)``.
"""

from __future__ import annotations

import argparse
import math
import time

import numpy as np

from pimgpt.apps.bench import best_seconds
from pimgpt.core import nonlinear as nl
from pimgpt.core import numerics as nm

_PRECISION = {"fp32": 24, "bf16": 8}


# ---------------------------------------------------------------------------------------------
# Error measures
# ---------------------------------------------------------------------------------------------
def ulp(ref, fmt: str = "fp32", floor=None) -> np.ndarray:
    """Spacing of ``fmt`` (``"fp32"`` or ``"bf16"``) at float64 values ``ref``.

    Parameters
    ----------
    ref : array_like of float64
        Reference values.
    fmt : str
        ``"fp32"`` (24 significant bits) or ``"bf16"`` (8).
    floor : float, optional
        Measure at ``max(|ref|, floor)`` instead of ``|ref|`` (an absolute-error scale for outputs
        that cancel, e.g. LayerNorm).

    Returns
    -------
    numpy.ndarray
        float64 ulps.
    """
    mag = np.abs(np.asarray(ref, dtype=np.float64))
    if floor is not None:
        mag = np.maximum(mag, floor)
    with np.errstate(divide="ignore"):
        e = np.floor(np.log2(np.where(mag > 0, mag, 2.0**-126)))
    e = np.maximum(e, -126)
    return np.ldexp(1.0, (e - (_PRECISION[fmt] - 1)).astype(np.int64))


def ulp_error(got, ref, fmt: str = "fp32", floor=None) -> np.ndarray:
    """``|got - ref| / ulp(ref)`` elementwise (float64); see :func:`ulp`."""
    got = np.asarray(got, dtype=np.float64)
    ref = np.asarray(ref, dtype=np.float64)
    return np.abs(got - ref) / ulp(ref, fmt, floor)


def _err_stats(got, ref, floor=None) -> dict:
    e32 = ulp_error(got, ref, "fp32", floor)
    e16 = ulp_error(got, ref, "bf16", floor)
    return {
        "max_ulp_fp32": float(e32.max()),
        "mean_ulp_fp32": float(e32.mean()),
        "max_ulp_bf16": float(e16.max()),
        "max_abs": float(np.abs(np.asarray(got, np.float64) - ref).max()),
        "count": int(np.size(ref)),
    }


# ---------------------------------------------------------------------------------------------
# float64 references of the nonlinear functions (exact math on the same fp32 inputs)
# ---------------------------------------------------------------------------------------------
def gelu_f64(x) -> np.ndarray:
    """GELU, tanh form, in float64 with the exact constants.

    Evaluated as the identical ``x / (1 + exp(-2u))``: float64 ``1 + tanh(u)`` cancels to 0 for
    ``u < -19`` and would make the reference, not the function under test, wrong in the tail.
    """
    x = np.asarray(x, dtype=np.float64)
    u = math.sqrt(2.0 / math.pi) * (x + 0.044715 * x**3)
    with np.errstate(over="ignore"):
        return x / (1.0 + np.exp(-2.0 * u))


def softmax_f64(x) -> np.ndarray:
    """Softmax along the last axis in float64."""
    x = np.asarray(x, dtype=np.float64)
    e = np.exp(x - x.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def layernorm_f64(x, gamma, beta, eps) -> np.ndarray:
    """LayerNorm along the last axis in float64 (biased variance)."""
    x = np.asarray(x, dtype=np.float64)
    mu = x.mean(axis=-1, keepdims=True)
    var = ((x - mu) ** 2).mean(axis=-1, keepdims=True)
    return (x - mu) / np.sqrt(var + float(eps)) * np.asarray(gamma, np.float64) + np.asarray(
        beta, np.float64
    )


# ---------------------------------------------------------------------------------------------
# Input generators
# ---------------------------------------------------------------------------------------------
def _uniform_f32(rng, lo: float, hi: float, n: int) -> np.ndarray:
    return rng.uniform(lo, hi, n).astype(np.float32)


def _log_uniform_positive(rng, lo_exp: int, hi_exp: int, n: int) -> np.ndarray:
    """Positive normal fp32 values with exponents uniform in [lo_exp, hi_exp], random fractions."""
    e = rng.integers(lo_exp, hi_exp + 1, n)
    frac = rng.integers(0, 1 << 23, n, dtype=np.uint32)
    bits = ((e + 127).astype(np.uint32) << np.uint32(23)) | frac
    return bits.view(np.float32)


# ---------------------------------------------------------------------------------------------
# Tables
# ---------------------------------------------------------------------------------------------
def dot_error_table(n_dots: int = 10_000, length: int = 1024, seed: int = 0) -> dict:
    """Error of ``numerics.dot_bf16`` on N(0,1) data.

    Inputs are float64 N(0,1) samples rounded to bf16 (``f64_to_bf16``). Two references: the float64
    dot of the same bf16 values (the arithmetic's own error) and the float64 dot of the unrounded
    samples (arithmetic plus bf16 quantisation). ``rel`` divides by ``|ref|``; ``scaled`` divides by
    ``sum |a_i b_i|`` (the usual condition-free measure; robust where ``ref`` is near 0).
    """
    rng = np.random.default_rng(seed)
    out = {"n_dots": n_dots, "length": length}
    a_parts, b_parts, got_parts = [], [], []
    block = max(1, 2_000_000 // length)  # bounded memory
    for start in range(0, n_dots, block):
        rows = min(block, n_dots - start)
        a = rng.standard_normal((rows, length))
        b = rng.standard_normal((rows, length))
        got_parts.append(nm.dot_bf16(nm.f64_to_bf16(a), nm.f64_to_bf16(b)).astype(np.float64))
        a_parts.append(a)
        b_parts.append(b)
    got = np.concatenate(got_parts)
    a = np.concatenate(a_parts)
    b = np.concatenate(b_parts)
    a16 = nm.bf16_to_f32(nm.f64_to_bf16(a)).astype(np.float64)
    b16 = nm.bf16_to_f32(nm.f64_to_bf16(b)).astype(np.float64)
    for name, (x, y) in (("vs_f64_same_bf16_inputs", (a16, b16)), ("vs_f64_unrounded", (a, b))):
        ref = np.einsum("ij,ij->i", x, y)
        scale = np.einsum("ij,ij->i", np.abs(x), np.abs(y))
        err = np.abs(got - ref)
        rel = err / np.abs(ref)
        out[name] = {
            "max_abs": float(err.max()),
            "mean_abs": float(err.mean()),
            "max_rel": float(rel.max()),
            "median_rel": float(np.median(rel)),
            "max_scaled": float((err / scale).max()),
            "mean_scaled": float((err / scale).mean()),
        }
    return out


def _patterns(lo: float, hi: float, stride: int) -> np.ndarray:
    """Every ``stride``-th fp32 bit pattern of ``[lo, hi]`` (both signs when ``lo < 0 < hi``)."""
    parts = []
    if hi > 0:
        a = 0x00800000 if lo <= 0 else int(np.float32(lo).view(np.uint32))
        parts.append(np.arange(a, int(np.float32(hi).view(np.uint32)) + 1, stride,
                               dtype=np.uint32))
    if lo < 0:
        a = 0x00800000 if hi >= 0 else int(np.float32(-hi).view(np.uint32))
        neg = np.arange(a, int(np.float32(-lo).view(np.uint32)) + 1, stride, dtype=np.uint32)
        parts.append(neg | np.uint32(0x80000000))
    return np.concatenate(parts).view(np.float32)


def _exhaustive(fn, ref, lo: float, hi: float, stride: int, chunk: int = 1 << 22,
                min_abs: float = 0.0) -> dict:
    """Error stats of ``fn`` over every ``stride``-th fp32 pattern of ``[lo, hi]`` with
    ``|x| >= min_abs`` (chunked)."""
    x = _patterns(lo, hi, stride)
    x = x[np.abs(x) >= min_abs]
    stats = None
    for i in range(0, len(x), chunk):
        xs = x[i:i + chunk]
        s = _err_stats(fn(xs), ref(xs))
        if stats is None:
            stats = dict(s, mean_ulp_fp32=s["mean_ulp_fp32"] * s["count"])
        else:
            for k in ("max_ulp_fp32", "max_ulp_bf16", "max_abs"):
                stats[k] = max(stats[k], s[k])
            stats["mean_ulp_fp32"] += s["mean_ulp_fp32"] * s["count"]
            stats["count"] += s["count"]
    stats["mean_ulp_fp32"] /= stats["count"]
    return stats


def exp_error(n: int = 1_000_000, seed: int = 1, stride: int = 0) -> dict:
    """``nonlinear.exp`` on uniform x in [-87.3, 88.7] (normal results) and on [-1, 1]; with
    ``stride``, also every ``stride``-th fp32 pattern of [-87.33, 88.72]."""
    rng = np.random.default_rng(seed)
    res = {}
    for name, (lo, hi) in (("[-87.3, 88.7]", (-87.3, 88.7)), ("[-1, 1]", (-1.0, 1.0))):
        x = _uniform_f32(rng, lo, hi, n)
        res[name] = _err_stats(nl.exp(x), np.exp(x.astype(np.float64)))
    if stride:
        res[f"every {stride}th pattern of [-87.33, 88.72]"] = _exhaustive(
            nl.exp, lambda v: np.exp(v.astype(np.float64)), -87.33, 88.72, stride)
    return res


def recip_newton_error(n: int = 1_000_000, seed: int = 8) -> dict:
    """``nonlinear.recip_newton`` (SOFTMAX's 1/sum) on every significand of [1, 2) and on
    uniform sums in [1, 2**24]."""
    rng = np.random.default_rng(seed)
    m = np.arange(0x3F800000, 0x40000000, dtype=np.uint32).view(np.float32)
    s = rng.uniform(1.0, 2.0**24, n).astype(np.float32)
    return {"all of [1, 2)": _err_stats(nl.recip_newton(m), 1.0 / m.astype(np.float64)),
            "[1, 2^24]": _err_stats(nl.recip_newton(s), 1.0 / s.astype(np.float64))}


def reciprocal_error(n: int = 1_000_000, seed: int = 2) -> dict:
    """``nonlinear.reciprocal`` on random-significand normals of both signs, 2**-126..2**125."""
    rng = np.random.default_rng(seed)
    x = _log_uniform_positive(rng, -126, 125, n) * rng.choice(np.float32([-1, 1]), n)
    return {"|x| in [2^-126, 2^126)": _err_stats(nl.reciprocal(x), 1.0 / x.astype(np.float64))}


def rsqrt_error(n: int = 1_000_000, seed: int = 3) -> dict:
    """``nonlinear.rsqrt`` on random-significand positive normals 2**-126..2**127."""
    rng = np.random.default_rng(seed)
    x = _log_uniform_positive(rng, -126, 127, n)
    return {"x in [2^-126, 2^128)": _err_stats(nl.rsqrt(x), 1.0 / np.sqrt(x.astype(np.float64)))}


def gelu_error(n: int = 1_000_000, seed: int = 4, stride: int = 0) -> dict:
    """``nonlinear.gelu`` on uniform x in [-4, 4], in [-9.95, 20] and in [-1e4, 1e4]; with
    ``stride``, also every ``stride``-th fp32 pattern of [-9.95, 20].

    Below about -9.95 the true result is under 3e-37 and the function is only roughly right
    (-0 below -10.01): the widest range is meaningful as an absolute error only. For
    ``|x| < 2**-124`` the result is within a few millionths of the flush threshold 2**-126 and may
    flush to zero (the FTZ rule), so the pattern sweep starts there.
    """
    rng = np.random.default_rng(seed)
    res = {}
    for name, (lo, hi) in (("[-4, 4]", (-4.0, 4.0)), ("[-9.95, 20]", (-9.95, 20.0)),
                           ("[-1e4, 1e4] (abs err)", (-1e4, 1e4))):
        x = _uniform_f32(rng, lo, hi, n)
        res[name] = _err_stats(nl.gelu(x), gelu_f64(x))
    if stride:
        res[f"every {stride}th pattern of [-9.95, 20], |x| >= 2^-124"] = _exhaustive(
            nl.gelu, gelu_f64, -9.95, 20.0, stride, min_abs=2.0**-124)
    return res


def softmax_error(batches=((4096, 16, 1.0), (1024, 128, 3.0), (256, 1024, 1.0), (64, 1024, 5.0)),
                  seed: int = 5) -> dict:
    """``nonlinear.softmax`` on vectors of N(0, sigma) scores, per (vectors, length, sigma)."""
    rng = np.random.default_rng(seed)
    res = {}
    for rows, length, sigma in batches:
        x = (sigma * rng.standard_normal((rows, length))).astype(np.float32)
        res[f"n={length}, sigma={sigma:g}"] = _err_stats(nl.softmax(x), softmax_f64(x))
    return res


def layernorm_error(rows: int = 512, length: int = 768, eps: float = 1e-5, seed: int = 6) -> dict:
    """``nonlinear.layernorm`` on x = N(mu_row, sigma_row) with mu in [-4, 4], sigma in [0.1, 10],
    gamma ~ N(1, 0.2), beta ~ N(0, 0.2) (fresh per row).

    Because ``y = d*rstd*gamma + beta`` cancels, ulps are measured at ``max(|ref|, 1)`` (the
    output's unit scale): an absolute error relative to ulp(1) for small outputs.
    """
    rng = np.random.default_rng(seed)
    mu = rng.uniform(-4, 4, (rows, 1))
    sigma = np.exp(rng.uniform(np.log(0.1), np.log(10.0), (rows, 1)))
    x = (mu + sigma * rng.standard_normal((rows, length))).astype(np.float32)
    gamma = (1 + 0.2 * rng.standard_normal((rows, length))).astype(np.float32)
    beta = (0.2 * rng.standard_normal((rows, length))).astype(np.float32)
    got = nl.layernorm(x, gamma, beta, eps)
    ref = layernorm_f64(x, gamma, beta, np.float32(eps))
    return {f"n={length}, eps={eps:g}": _err_stats(got, ref, floor=1.0)}


def throughput(repeat: int = 3) -> dict:
    """Speed of the golden arithmetic on this machine (best of ``repeat``)."""
    rng = np.random.default_rng(7)

    def best(fn):
        return best_seconds(fn, repeat)

    w = nm.f64_to_bf16(rng.standard_normal((4096, 1024)))
    v = nm.f64_to_bf16(rng.standard_normal(1024))
    x = rng.standard_normal(1 << 20).astype(np.float32)
    y = rng.standard_normal(1 << 20).astype(np.float32)
    s = rng.standard_normal((1024, 1024)).astype(np.float32)
    return {
        "dot_bf16 MAC/s": w.size / best(lambda: nm.dot_bf16(v, w)),
        "f32_add Mop/s": x.size / best(lambda: nm.f32_add(x, y)) / 1e6,
        "f32_mul Mop/s": x.size / best(lambda: nm.f32_mul(x, y)) / 1e6,
        "exp Melem/s": x.size / best(lambda: nl.exp(x)) / 1e6,
        "gelu Melem/s": x.size / best(lambda: nl.gelu(x)) / 1e6,
        "softmax 1024x1024 Melem/s": s.size / best(lambda: nl.softmax(s)) / 1e6,
    }


def reference_speed(model: str = "gpt2-small", prompt_len: int = 4, new_tokens: int = 2,
                    gb_elems: int = 1024, seed: int = 0) -> dict:
    """Wall time per step of the reference models on random weights, and their logit agreement.

    Parameters
    ----------
    model : str
        Model preset.
    prompt_len, new_tokens : int
        Steps run: ``prompt_len + new_tokens - 1``, of which ``new_tokens`` compute the LM head.
    gb_elems : int
        Chunk size G.
    seed : int
        Seed of the random weights and the prompt.

    Returns
    -------
    dict
        Seconds per step with and without the LM head, float64 seconds per step, and the largest
        logit difference relative to the largest |logit|.
    """
    from pimgpt.sim import reference as ref
    from pimgpt.sw.checkpoint import random_weights
    from pimgpt.sw.models import get_model

    cfg = get_model(model)
    weights = random_weights(cfg, seed)
    prompt = [int(t) for t in np.random.default_rng(seed).integers(0, cfg.vocab, prompt_len)]
    t0 = time.perf_counter()
    pim = ref.PimModel(cfg, weights, gb_elems)
    t_prep = time.perf_counter() - t0
    f64 = ref.F64Model(cfg, weights)
    no_head, head, t_f64, worst = [], [], [], 0.0
    toks = list(prompt)
    for pos in range(prompt_len + new_tokens - 1):
        need = pos >= prompt_len - 1
        t0 = time.perf_counter()
        lp = pim.step(toks[pos], pos, need)
        (head if need else no_head).append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        lf = f64.step(toks[pos], pos, need)
        t_f64.append(time.perf_counter() - t0)
        if need:
            worst = max(worst, float(np.abs(lp - lf).max() / np.abs(lf).max()))
            if pos + 1 >= len(toks):
                toks.append(int(np.argmax(lp)))
    return {
        "model": model,
        "prepare_s": t_prep,
        "pim_step_s": float(np.mean(no_head)) if no_head else float("nan"),
        "pim_step_with_head_s": float(np.mean(head)),
        "f64_step_s": float(np.mean(t_f64)),
        "max_logit_err_rel": worst,
    }


def numerics_report(quick: bool = False, stride: int = 0) -> dict:
    """All tables of ``docs/numerics.md``.

    Parameters
    ----------
    quick : bool
        Use 10x fewer samples (for smoke tests).
    stride : int
        If positive, also test exp and GELU on every ``stride``-th fp32 pattern of their domains
        (``stride=1`` is exhaustive: about 2**31 values, an hour or more).

    Returns
    -------
    dict
        ``{"dot": ..., "nonlinear": {fn: {range: stats}}, "throughput": ...}``.
    """
    k = 10 if quick else 1
    return {
        "dot": dot_error_table(n_dots=10_000 // k),
        "nonlinear": {
            "exp": exp_error(1_000_000 // k, stride=stride),
            "reciprocal": reciprocal_error(1_000_000 // k),
            "recip_newton": recip_newton_error(1_000_000 // k),
            "rsqrt": rsqrt_error(1_000_000 // k),
            "gelu": gelu_error(1_000_000 // k, stride=stride),
            "softmax": softmax_error(),
            "layernorm": layernorm_error(rows=512 // k),
        },
        "throughput": throughput(),
    }


def format_report(rep: dict) -> str:
    """Markdown tables of :func:`numerics_report`'s result."""
    from pimgpt.apps.markdown import table

    d = rep["dot"]
    lines = [f"Dot products: {d['n_dots']} dots of length {d['length']}, N(0,1) inputs rounded "
             "to bf16", ""]
    keys = ("max_abs", "mean_abs", "max_rel", "median_rel", "max_scaled", "mean_scaled")
    lines += table(
        ["reference", "max abs", "mean abs", "max rel", "median rel", "max err/sum|ab|",
         "mean err/sum|ab|"],
        [[name, *(f"{d[name][k]:.3g}" for k in keys)]
         for name in ("vs_f64_same_bf16_inputs", "vs_f64_unrounded")])
    lines += ["", "Nonlinear functions vs float64 on the same fp32 inputs", ""]
    lines += table(
        ["function", "input range", "samples", "max err (bf16 ulp)", "max err (fp32 ulp)",
         "mean err (fp32 ulp)", "max abs err"],
        [[fn, rng_name, s["count"], f"{s['max_ulp_bf16']:.4f}", f"{s['max_ulp_fp32']:.2f}",
          f"{s['mean_ulp_fp32']:.3f}", f"{s['max_abs']:.3g}"]
         for fn, ranges in rep["nonlinear"].items() for rng_name, s in ranges.items()])
    lines += ["", "Throughput of the golden arithmetic (numpy, this machine)", ""]
    lines += table(["operation", "rate"],
                   [[name, f"{val:.4g}"] for name, val in rep["throughput"].items()])
    return "\n".join(lines)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="10x fewer samples")
    parser.add_argument("--stride", type=int, default=0, metavar="K",
                        help="also test exp and GELU on every K-th fp32 pattern (1: all)")
    parser.add_argument("--reference", default=None, metavar="MODEL",
                        help="also time the reference models on this preset (e.g. gpt2-small)")
    args = parser.parse_args(argv)
    t0 = time.perf_counter()
    if args.stride < 0:
        parser.error("--stride must be 0 (off) or a positive stride")
    if args.reference:  # a bad name is refused before the minutes of the report
        from pimgpt.sw.models import get_model

        get_model(args.reference)
    print(format_report(numerics_report(quick=args.quick, stride=args.stride)))
    if args.reference:
        r = reference_speed(args.reference)
        print(f"\nReference models on {r['model']} (random weights): "
              f"prepare {r['prepare_s']:.1f} s, PIM step {r['pim_step_s']:.2f} s, "
              f"with LM head {r['pim_step_with_head_s']:.2f} s, "
              f"float64 step {r['f64_step_s']:.2f} s, max |logit err| / max |logit| "
              f"{r['max_logit_err_rel']:.2e}")
    print(f"\n(report took {time.perf_counter() - t0:.1f} s)")


if __name__ == "__main__":
    from pimgpt.apps.entry import module_main

    module_main(main)

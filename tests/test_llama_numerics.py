"""The Llama functions of pimgpt/core/nonlinear_llama.py (rmsnorm, silu, swiglu, rope) and the
host-side RoPE table of pimgpt/core/rope.py: accuracy against float64, special values, exact
identities, and the same structure rule as pimgpt/core/nonlinear.py."""

from __future__ import annotations

import ast
import inspect
import math

import numpy as np
import pytest

from pimgpt.apps import bench_llama_numerics as bl
from pimgpt.apps import bench_numerics as bn
from pimgpt.core import nonlinear as nl
from pimgpt.core import nonlinear_llama as nll
from pimgpt.core import numerics as nm
from pimgpt.core.rope import rope_cos_sin_f64, rope_inv_freq, rope_table

RNG = np.random.default_rng(1212)
#: numpy functions a vector-unit function may not use (as for pimgpt/core/nonlinear.py).
FORBIDDEN_NP = {
    "exp", "exp2", "expm1", "log", "log2", "log1p", "sqrt", "cbrt", "tanh", "sinh", "cosh",
    "cos", "sin", "divide", "true_divide", "reciprocal", "power", "float_power", "ldexp", "frexp",
    "sum", "mean", "var", "std", "dot", "matmul", "einsum", "cumsum", "add", "multiply",
    "subtract",
}


def test_functions_use_only_contract_arithmetic():
    """No numpy transcendental/arithmetic ufunc and no float division in any function body."""
    tree = ast.parse(inspect.getsource(nll))
    names = []
    for fn in (n for n in ast.walk(tree) if isinstance(n, ast.FunctionDef)):
        names.append(fn.name)
        for node in ast.walk(fn):
            if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name):
                assert not (node.value.id == "np" and node.attr in FORBIDDEN_NP), (
                    f"{fn.name} uses np.{node.attr}")
            if isinstance(node, ast.BinOp):
                assert not isinstance(node.op, (ast.Div, ast.Pow)), f"{fn.name} divides or powers"
    assert names == ["rmsnorm", "_rms_rstd", "rmsnorm_rstd", "silu", "swiglu", "rope"]
    # ...and they use the primitives of nonlinear.py, not copies.
    for prim in ("exp", "reciprocal", "rsqrt"):
        assert getattr(nll, prim) is getattr(nl, prim)
    assert nll.f32_tree_sum is nm.f32_tree_sum  # the contract's one reduction


def bits(x) -> np.ndarray:
    return np.atleast_1d(np.asarray(x, dtype=np.float32)).view(np.uint32)


# ---------------------------------------------------------------------------------------------
# RMSNorm
# ---------------------------------------------------------------------------------------------
def test_rmsnorm_accuracy():
    # Bounds as measured for the sequential sum (docs/numerics.md); the sum of squares is now the
    # contract's tree sum, whose error grows more slowly with the length.
    for n, bound in ((64, 8), (2048, 40)):
        x = (RNG.uniform(-4, 4, (64, 1)) + np.exp(RNG.uniform(-2.3, 2.3, (64, 1)))
             * RNG.standard_normal((64, n))).astype(np.float32)
        g = (1 + 0.2 * RNG.standard_normal((64, n))).astype(np.float32)
        err = bn.ulp_error(nll.rmsnorm(x, g, 1e-5), bl.rmsnorm_f64(x, g, np.float32(1e-5)))
        assert err.max() < bound, (n, err.max())
        assert err.max() > 0.5  # the measure sees rounding (it is not comparing a copy)


def test_rmsnorm_algorithm_steps():
    """The stated algorithm, step by step, gives the same bits (and batching changes nothing)."""
    x = RNG.standard_normal((3, 48)).astype(np.float32)
    g = RNG.standard_normal(48).astype(np.float32)
    eps = np.float32(1e-6)
    out = nll.rmsnorm(x, g, eps)
    for r in range(3):
        inv_n = nl.reciprocal(np.float32(48))
        ms = nm.f32_mul(nm.f32_tree_sum(nm.f32_mul(x[r], x[r])), inv_n)
        rstd = nl.rsqrt(nm.f32_add(ms, eps))
        expect = nm.f32_mul(nm.f32_mul(x[r], rstd), g)
        np.testing.assert_array_equal(bits(out[r]), bits(expect))
        np.testing.assert_array_equal(bits(nll.rmsnorm(x[r], g, eps)), bits(out[r]))


def test_rmsnorm_errors():
    with pytest.raises(ValueError, match="non-empty last axis"):
        nll.rmsnorm(np.zeros(0, np.float32), np.zeros(0, np.float32), 1e-5)
    with pytest.raises(ValueError, match="gamma shape"):
        nll.rmsnorm(np.zeros(8, np.float32), np.zeros(5, np.float32), 1e-5)


# ---------------------------------------------------------------------------------------------
# SiLU and the gated product
# ---------------------------------------------------------------------------------------------
def test_silu_accuracy():
    x = RNG.uniform(-87, 20, 200_000).astype(np.float32)
    err = bn.ulp_error(nll.silu(x), bl.silu_f64(x), "bf16")
    assert err.max() < 0.004, err.max()  # measured 0.0017 bf16 ulp (numerics v2 exp)
    # The float64 reference is right in the tail, where 1 + tanh(x/2) would cancel.
    assert bl.silu_f64(np.float64(-60.0)) == pytest.approx(-60.0 * math.exp(-60.0), rel=1e-14)


def test_silu_special_values():
    x = np.float32([0.0, -0.0, np.inf, -np.inf, np.nan, -100.0, 100.0, 1e30, -1e30])
    y = nll.silu(x)
    assert bits(y[0])[0] == 0 and bits(y[1])[0] == 0x80000000  # +0, -0 kept
    assert y[2] == np.inf
    assert bits(y[3])[0] == 0x80000000  # -Inf -> -0, not NaN
    assert bits(y[4])[0] == 0x7FC00000  # canonical NaN
    assert bits(y[5])[0] == 0x80000000  # exp(-100) flushes: -0
    assert y[6] == np.float32(100.0) and y[7] == np.float32(1e30)
    assert bits(y[8])[0] == 0x80000000
    # Subnormal input: DAZ gives a signed zero.
    assert bits(nll.silu(np.float32(-1e-40)))[0] == 0x80000000


def test_swiglu_is_silu_times_up():
    g = RNG.uniform(-10, 10, 1000).astype(np.float32)
    u = RNG.standard_normal(1000).astype(np.float32)
    np.testing.assert_array_equal(bits(nll.swiglu(g, u)), bits(nm.f32_mul(nll.silu(g), u)))
    err = bn.ulp_error(nll.swiglu(g, u), bl.silu_f64(g) * u.astype(np.float64), "bf16")
    assert err.max() < 0.002  # measured 0.0008 bf16 ulp
    with pytest.raises(ValueError, match="differs from up shape"):
        nll.swiglu(g, u[:10])


# ---------------------------------------------------------------------------------------------
# RoPE
# ---------------------------------------------------------------------------------------------
def hf_llama3_inv_freq(dim, base, factor, low, high, orig):
    """Hugging Face's ``_compute_llama3_parameters``, written here per element in plain Python."""
    out = []
    for j in range(0, dim, 2):
        f = 1.0 / base ** (j / dim)
        wavelen = 2 * math.pi / f
        if wavelen < orig / high:
            out.append(f)
        elif wavelen > orig / low:
            out.append(f / factor)
        else:
            s = (orig / wavelen - low) / (high - low)
            out.append((1 - s) * f / factor + s * f)
    return np.array(out)


def test_rope_inv_freq_matches_hugging_face_formula():
    plain = rope_inv_freq(64, 5e5)
    np.testing.assert_allclose(plain, [5e5 ** (-j / 64) for j in range(0, 64, 2)], rtol=1e-15)
    got = rope_inv_freq(64, 5e5, (32.0, 1.0, 4.0, 8192))
    np.testing.assert_allclose(got, hf_llama3_inv_freq(64, 5e5, 32.0, 1.0, 4.0, 8192),
                               rtol=1e-14)
    # The three bands: fast frequencies kept, slow ones divided by the factor, some in between.
    wavelen = 2 * np.pi / plain
    fast, slow = wavelen < 8192 / 4, wavelen > 8192
    assert fast.sum() and slow.sum() and (~fast & ~slow).sum()
    np.testing.assert_array_equal(got[fast], plain[fast])
    np.testing.assert_allclose(got[slow], plain[slow] / 32, rtol=1e-15)
    mid = ~fast & ~slow
    assert np.all(got[mid] < plain[mid]) and np.all(got[mid] > plain[mid] / 32)
    with pytest.raises(ValueError, match="even d_head"):
        rope_inv_freq(15, 1e4)


def test_rope_table_is_float64_rounded_once():
    inv = rope_inv_freq(128, 1e4)
    pos = np.array([0, 1, 7, 4095, 131071])
    c32, s32 = rope_table(pos, inv)
    c64, s64 = rope_cos_sin_f64(pos, inv)
    assert c32.dtype == np.float32 and c32.shape == (5, 64)
    np.testing.assert_array_equal(c32, c64.astype(np.float32))
    np.testing.assert_array_equal(s32, s64.astype(np.float32))
    assert np.all(c32[0] == 1) and np.all(s32[0] == 0)
    # The angles are float64 products: position 131071 of the fastest frequency is exact.
    assert c64[4, 0] == math.cos(131071.0) and s64[4, 1] == math.sin(131071.0 * inv[1])


def test_rope_algorithm_and_accuracy():
    x = RNG.standard_normal((8, 64)).astype(np.float32)
    c, s = rope_table(np.arange(8), rope_inv_freq(64, 1e4))
    y = nll.rope(x, c, s)
    # Step by step, per the docstring.
    lo, hi = x[:, :32], x[:, 32:]
    y_lo = nm.f32_add(nm.f32_mul(lo, c), nm.f32_mul(nm.f32_mul(hi, s), np.float32(-1)))
    y_hi = nm.f32_add(nm.f32_mul(hi, c), nm.f32_mul(lo, s))
    np.testing.assert_array_equal(bits(y), bits(np.concatenate([y_lo, y_hi], -1)))
    # Position 0 (cos 1, sin 0) is the identity, exactly.
    np.testing.assert_array_equal(bits(y[0]), bits(x[0]))
    # Against float64 rotation by the same table: the rounding of 2 products and 1 add.
    err = bn.ulp_error(y, bl.rope_f64(x, c.astype(np.float64), s.astype(np.float64)), floor=1.0)
    assert 0 < err.max() < 4
    with pytest.raises(ValueError, match="even last axis"):
        nll.rope(np.zeros(5, np.float32), c[0], s[0])


def test_rope_preserves_norm_to_rounding():
    x = RNG.standard_normal((1000, 128)).astype(np.float32)
    c, s = rope_table(RNG.integers(0, 100_000, 1000)[:, None], rope_inv_freq(128, 5e5))
    y = nll.rope(x, c[:, 0], s[:, 0]).astype(np.float64)
    x64 = x.astype(np.float64)
    pair_x = x64[:, :64] ** 2 + x64[:, 64:] ** 2
    pair_y = y[:, :64] ** 2 + y[:, 64:] ** 2
    np.testing.assert_allclose(pair_y, pair_x, rtol=1e-6, atol=1e-6)

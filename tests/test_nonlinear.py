"""Tests of pimgpt/core/nonlinear.py: accuracy bounds against float64, special values, structure."""

from __future__ import annotations

import ast
import inspect
import math

import numpy as np
import pytest

from pimgpt.apps import bench_numerics as bn
from pimgpt.core import nonlinear as nl
from pimgpt.core import numerics as nm

NAN_BITS = 0x7FC00000


def bits(x) -> np.ndarray:
    return np.atleast_1d(np.asarray(x, dtype=np.float32)).view(np.uint32)


def f32(b) -> np.ndarray:
    return np.asarray(b, dtype=np.uint32).view(np.float32)


RNG = np.random.default_rng(2024)


# ---------------------------------------------------------------------------------------------
# Structure: only adds, multiplies, bit and integer operations
# ---------------------------------------------------------------------------------------------
FORBIDDEN_NP = {
    "exp", "exp2", "expm1", "log", "log2", "log1p", "sqrt", "cbrt", "tanh", "sinh", "cosh",
    "divide", "true_divide", "reciprocal", "power", "float_power", "ldexp", "frexp", "sum",
    "mean", "var", "std", "dot", "matmul", "einsum", "cumsum", "add", "multiply", "subtract",
}


def test_functions_use_only_contract_arithmetic():
    """No numpy transcendental/arithmetic ufunc and no float division inside any function body."""
    tree = ast.parse(inspect.getsource(nl))
    for fn in (n for n in ast.walk(tree) if isinstance(n, ast.FunctionDef)):
        for node in ast.walk(fn):
            if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name):
                assert not (node.value.id == "np" and node.attr in FORBIDDEN_NP), (
                    f"{fn.name} uses np.{node.attr}"
                )
            if isinstance(node, ast.BinOp):
                assert not isinstance(node.op, (ast.Div, ast.Pow)), f"{fn.name} divides or powers"


def test_elementwise_results_do_not_depend_on_shape():
    x = RNG.uniform(-30, 30, 257).astype(np.float32)
    for fn in (nl.exp, nl.gelu, nl.reciprocal):
        whole = bits(fn(x))
        single = np.array([bits(fn(np.float32(v)))[0] for v in x[:40]])
        np.testing.assert_array_equal(whole[:40], single)
        np.testing.assert_array_equal(bits(fn(x.reshape(1, 257)))[0], whole)


# ---------------------------------------------------------------------------------------------
# exp
# ---------------------------------------------------------------------------------------------
class TestExp:
    def test_accuracy_full_range(self):
        x = RNG.uniform(-87.3, 88.7, 100_000).astype(np.float32)
        err = bn.ulp_error(nl.exp(x), np.exp(x.astype(np.float64)), "bf16")
        assert err.max() <= 0.002  # measured 0.0018 bf16 ulp (docs/numerics.md)

    def test_accuracy_reduced_range_dense(self):
        # Every 4096th fp32 value of (-0.35, 0.35).
        lo = int(bits(np.float32(0.35))[0])
        pos = f32(np.arange(0x00800000, lo, 4096, dtype=np.uint32))
        x = np.concatenate([pos, -pos])
        err = bn.ulp_error(nl.exp(x), np.exp(x.astype(np.float64)), "bf16")
        assert err.max() <= 0.002

    def test_exact_points(self):
        assert bits(nl.exp(np.float32([0.0, -0.0]))).tolist() == [0x3F800000] * 2
        # Subnormal inputs read as zero (DAZ).
        assert nl.exp(f32([0x00000001]))[0] == 1.0

    def test_specials(self):
        x = np.float32([np.inf, -np.inf, np.nan, 89.0, 1e30, -104.0, -1e30])
        y = nl.exp(x)
        assert bits(y).tolist() == [0x7F800000, 0, NAN_BITS, 0x7F800000, 0x7F800000, 0, 0]

    def test_overflow_and_underflow_thresholds(self):
        # Overflow to +Inf exactly where the true result rounds (RNE) to >= 2**128, except within
        # the function's error (7e-6 relative) of that threshold.
        x = np.linspace(88.70, 88.75, 2001).astype(np.float32)
        ref = np.exp(x.astype(np.float64))
        limit = 2.0**128 - 2.0**103
        clear = np.abs(ref / limit - 1) > 2e-5
        np.testing.assert_array_equal((nl.exp(x) == np.inf)[clear], (ref >= limit)[clear])
        assert clear.sum() > 1900
        # exp(-87.33654) ~ 2**-126: results below the smallest normal are flushed to +0.
        x = np.float32([-87.3, -87.35, -88.0, -100.0])
        y = nl.exp(x)
        ref = np.exp(x.astype(np.float64))
        np.testing.assert_array_equal(y == 0, ref < 2.0**-126)
        assert not np.signbit(y).any()

    def test_monotonic_on_dense_grid(self):
        x = np.sort(RNG.uniform(-10, 10, 200_000).astype(np.float32))
        assert (np.diff(nl.exp(x).astype(np.float64)) >= 0).all()

    def test_table_inserts_exponents_exactly(self):
        # EXP_TABLE_ADJ[j] + (m << 20) is 2**(k + j/8) for m = 8k + j: integer exponent insertion.
        for m in (-1008, -9, -8, -1, 0, 1, 7, 8, 1023):
            t = (0x4B400000 + m) & 0xFFFFFFFF
            s = (nl.EXP_TABLE_ADJ[t & 7] + (t << 20)) & 0xFFFFFFFF
            assert f32(s) == np.float32(2.0 ** (m // 8) * 2.0 ** ((m % 8) / 8))


# ---------------------------------------------------------------------------------------------
# reciprocal and rsqrt
# ---------------------------------------------------------------------------------------------
class TestReciprocal:
    def test_accuracy_all_significands_strided(self):
        # The result scales exactly with the exponent, so the significands of [1, 2) cover every
        # normal input whose reciprocal is normal (exhaustive run: max 1.133 ulp).
        m = f32(np.arange(0x3F800000, 0x40000000, 37, dtype=np.uint32))
        err = bn.ulp_error(nl.reciprocal(m), 1.0 / m.astype(np.float64))
        assert err.max() <= 1.2

    def test_accuracy_random_exponents_and_signs(self):
        x = bn._log_uniform_positive(RNG, -126, 125, 50_000) * RNG.choice(np.float32([-1, 1]),
                                                                            50_000)
        err = bn.ulp_error(nl.reciprocal(x), 1.0 / x.astype(np.float64))
        assert err.max() <= 1.2

    def test_powers_of_two_exact(self):
        k = np.arange(-126, 127)
        x = np.ldexp(np.float32(1), k).astype(np.float32)
        np.testing.assert_array_equal(nl.reciprocal(x), np.ldexp(np.float32(1), -k))
        np.testing.assert_array_equal(nl.reciprocal(-x), -np.ldexp(np.float32(1), -k))

    def test_specials(self):
        x = np.float32([0.0, -0.0, np.inf, -np.inf, np.nan, 2.0**127, -(2.0**127), 2.0**126])
        x = np.append(x, f32([0x80000001]))  # negative subnormal -> -0 -> -Inf
        got = bits(nl.reciprocal(x)).tolist()
        assert got == [0x7F800000, 0xFF800000, 0, 0x80000000, NAN_BITS, 0, 0x80000000,
                       0x00800000, 0xFF800000]

    def test_results_below_min_normal_flush(self):
        x = np.float32([3e38, -3e38, 2.0**126 * 1.5])
        assert (nl.reciprocal(x) == 0).all()
        assert np.signbit(nl.reciprocal(x)).tolist() == [False, True, False]


class TestRsqrt:
    def test_accuracy_exhaustive_strided(self):
        # [1, 4) covers both exponent parities; every other input scales exactly.
        m = f32(np.arange(0x3F800000, 0x40800000, 41, dtype=np.uint32))
        err = bn.ulp_error(nl.rsqrt(m), 1.0 / np.sqrt(m.astype(np.float64)))
        assert err.max() <= 1.1  # exhaustive run: max 1.022 ulp

    def test_accuracy_random_exponents(self):
        x = bn._log_uniform_positive(RNG, -126, 127, 50_000)
        err = bn.ulp_error(nl.rsqrt(x), 1.0 / np.sqrt(x.astype(np.float64)))
        assert err.max() <= 1.1

    def test_even_powers_exact(self):
        k = np.arange(-63, 64)
        x = np.ldexp(np.float32(1), 2 * k).astype(np.float32)
        np.testing.assert_array_equal(nl.rsqrt(x), np.ldexp(np.float32(1), -k))

    def test_specials(self):
        x = np.float32([0.0, -0.0, np.inf, -np.inf, np.nan, -1.0, -1e-30])
        got = bits(nl.rsqrt(x)).tolist()
        assert got == [0x7F800000, 0xFF800000, 0, NAN_BITS, NAN_BITS, NAN_BITS, NAN_BITS]


# ---------------------------------------------------------------------------------------------
# GELU
# ---------------------------------------------------------------------------------------------
class TestGelu:
    def test_accuracy(self):
        x = RNG.uniform(-9.95, 20, 100_000).astype(np.float32)
        got, ref = nl.gelu(x), bn.gelu_f64(x)
        assert bn.ulp_error(got, ref, "bf16").max() <= 0.005  # measured 0.0041
        x = RNG.uniform(-4, 4, 100_000).astype(np.float32)
        assert bn.ulp_error(nl.gelu(x), bn.gelu_f64(x), "bf16").max() <= 0.005

    def test_matches_tanh_form_in_float64(self):
        x = np.linspace(-5, 5, 1001).astype(np.float32)
        x64 = x.astype(np.float64)
        tanh_form = 0.5 * x64 * (1 + np.tanh(math.sqrt(2 / math.pi) * (x64 + 0.044715 * x64**3)))
        assert (np.abs(nl.gelu(x) - tanh_form) <= 1e-5 * np.abs(tanh_form) + 1e-12).all()

    def test_specials_and_large_inputs(self):
        x = np.float32([0.0, -0.0, np.inf, -np.inf, np.nan, -1e20, -3e38, -50.0, -10.02])
        assert bits(nl.gelu(x)).tolist() == [0, 0x80000000, 0x7F800000, 0x80000000, NAN_BITS,
                                              0x80000000, 0x80000000, 0x80000000, 0x80000000]
        # Large x: x times the reciprocal of 1 after two Newton steps (1 - 6.5e-6).
        big = np.float32([12.0, 1e20, 3e38])
        ratio = nl.gelu(big).astype(np.float64) / big
        assert ((ratio > 1 - 1e-5) & (ratio <= 1)).all()

    def test_no_nan_for_finite_inputs(self):
        x = f32(RNG.integers(0, 0x7F800000, 100_000, dtype=np.uint32)) * RNG.choice(
            np.float32([-1, 1]), 100_000)
        assert not np.isnan(nl.gelu(x)).any()


# ---------------------------------------------------------------------------------------------
# vmax, softmax, layernorm
# ---------------------------------------------------------------------------------------------
class TestVmax:
    def test_total_order(self):
        assert bits(nl.vmax(np.float32([-1.0, -0.0, 0.0])))[0] == 0
        assert bits(nl.vmax(np.float32([0.0, -0.0])))[0] == 0
        assert bits(nl.vmax(np.float32([-0.0, -1.0])))[0] == 0x80000000
        assert nl.vmax(np.float32([1, 5, 3, 5])) == 5

    def test_nan_and_inf(self):
        assert bits(nl.vmax(np.float32([1, np.nan, np.inf])))[0] == NAN_BITS
        assert nl.vmax(np.float32([-np.inf, -np.inf])) == -np.inf

    def test_batched(self):
        x = RNG.standard_normal((7, 33)).astype(np.float32)
        np.testing.assert_array_equal(nl.vmax(x), x.max(axis=-1))
        np.testing.assert_array_equal(nl.vmax(x, axis=0), x.max(axis=0))

    def test_empty(self):
        with pytest.raises(ValueError, match="empty"):
            nl.vmax(np.zeros(0, np.float32))


class TestRecipNewton:
    def test_accuracy_on_its_domain(self):
        m = f32(np.arange(0x3F800000, 0x40000000, 37, dtype=np.uint32))
        assert bn.ulp_error(nl.recip_newton(m), 1.0 / m.astype(np.float64)).max() <= 1.2
        x = bn._log_uniform_positive(RNG, -100, 100, 50_000)
        assert bn.ulp_error(nl.recip_newton(x), 1.0 / x.astype(np.float64)).max() <= 1.2

    def test_equals_reciprocal_on_softmax_sums(self):
        s = RNG.uniform(1, 2**24, 10_000).astype(np.float32)
        np.testing.assert_array_equal(bits(nl.recip_newton(s)), bits(nl.reciprocal(s)))
        assert np.isnan(nl.recip_newton(np.float32([np.nan]))).all()


class TestRsqrtNewton:
    def test_equals_rsqrt_on_its_domain(self):
        m = f32(np.arange(0x3F800000, 0x40800000, 29, dtype=np.uint32))
        np.testing.assert_array_equal(bits(nl.rsqrt_newton(m)), bits(nl.rsqrt(m)))
        x = bn._log_uniform_positive(RNG, -100, 100, 50_000)
        np.testing.assert_array_equal(bits(nl.rsqrt_newton(x)), bits(nl.rsqrt(x)))
        assert np.isnan(nl.rsqrt_newton(np.float32([np.nan]))).all()

    def test_layernorm_reciprocal_of_n(self):
        n = np.arange(1, 1 << 16, dtype=np.float32)
        np.testing.assert_array_equal(bits(nl.recip_newton(n)), bits(nl.reciprocal(n)))


class TestSoftmax:
    @pytest.mark.parametrize("n,sigma", [(1, 1.0), (16, 1.0), (128, 3.0), (1024, 5.0)])
    def test_accuracy(self, n, sigma):
        x = (sigma * RNG.standard_normal((64, n))).astype(np.float32)
        err = bn.ulp_error(nl.softmax(x), bn.softmax_f64(x), "bf16")
        assert err.max() <= 0.002  # measured <= 0.0017 bf16 ulp (docs/numerics.md)

    def test_batched_equals_rows(self):
        x = (3 * RNG.standard_normal((5, 40))).astype(np.float32)
        rows = np.stack([nl.softmax(r) for r in x])
        np.testing.assert_array_equal(bits(nl.softmax(x)), bits(rows))

    def test_equal_inputs_power_of_two_exact(self):
        for n in (1, 2, 16, 256):
            np.testing.assert_array_equal(nl.softmax(np.full(n, 3.25, np.float32)),
                                          np.full(n, 1.0 / n, np.float32))

    def test_follows_documented_steps(self):
        x = (2 * RNG.standard_normal(300)).astype(np.float32)
        m = nm.f32_max_total(x)
        e = nl.exp(nm.f32_add(x, -m))
        want = nm.f32_mul(e, nl.recip_newton(nm.f32_tree_sum(e)))
        np.testing.assert_array_equal(bits(nl.softmax(x)), bits(want))

    def test_minus_inf_pads_change_nothing(self):
        """The compiler pads score rows to whole columns with -inf and runs one SOFTMAX over
        several rows: exp(-inf) = +0 and adding +0 to the tree sum of non-negative terms is
        exact, so the first n probabilities keep their bits and the pads come out +0, for every
        length (pads within a fold block, pads that start a new block of 128)."""
        for n in range(1, 301):
            x = (4 * RNG.standard_normal((3, n))).astype(np.float32)
            x[1, ::3] = -100.0  # exponentials that flush to +0
            x[2, ::2] = -0.0  # -0 and denormal scores (DAZ)
            x[2, 1::4] = np.float32(1e-40)
            want = bits(nl.softmax(x))
            for npad in sorted({-(-n // 16) * 16, n + 1, n + 130}):
                padded = np.full((3, npad), -np.inf, np.float32)
                padded[:, :n] = x
                got = bits(nl.softmax(padded))
                np.testing.assert_array_equal(got[:, :n], want, err_msg=f"n={n} npad={npad}")
                assert not got[:, n:].any(), (n, npad)  # +0 exactly

    def test_large_and_special_scores(self):
        p = nl.softmax(np.float32([1e30, 0.0, -1e30, -np.inf]))
        assert p.tolist() == [1.0, 0.0, 0.0, 0.0]
        assert np.isnan(nl.softmax(np.float32([1.0, np.nan]))).all()
        assert np.isnan(nl.softmax(np.float32([np.inf, 1.0]))).all()
        assert np.isnan(nl.softmax(np.float32([-np.inf, -np.inf]))).all()


class TestLayernorm:
    def test_accuracy(self):
        rep = bn.layernorm_error(rows=64)
        stats = next(iter(rep.values()))
        assert stats["max_ulp_bf16"] <= 0.001  # measured 0.0005 bf16 ulp at max(|y|, 1)

    def test_batched_equals_rows_and_follows_steps(self):
        x = (2 + 3 * RNG.standard_normal((4, 300))).astype(np.float32)
        g = (1 + 0.1 * RNG.standard_normal(300)).astype(np.float32)
        bta = (0.1 * RNG.standard_normal(300)).astype(np.float32)
        y = nl.layernorm(x, g, bta, 1e-5)
        for r in range(4):
            xr = x[r]
            inv_n = nl.recip_newton(np.float32(300))
            mean = nm.f32_mul(nm.f32_tree_sum(xr), inv_n)
            d = nm.f32_add(xr, -mean)
            var = nm.f32_mul(nm.f32_tree_sum(nm.f32_mul(d, d)), inv_n)
            rstd = nl.rsqrt_newton(nm.f32_add(var, np.float32(1e-5)))
            want = nm.f32_mad(nm.f32_mul(d, rstd), g, bta)
            np.testing.assert_array_equal(bits(y[r]), bits(want))

    def test_constant_input_gives_beta(self):
        bta = RNG.standard_normal(64).astype(np.float32)
        y = nl.layernorm(np.full(64, 7.5, np.float32), np.ones(64, np.float32), bta, 1e-5)
        np.testing.assert_array_equal(y, bta)

    def test_unit_variance_power_of_two(self):
        x = np.float32([1, -1] * 32)
        y = nl.layernorm(x, np.ones(64, np.float32), np.zeros(64, np.float32), 0.0)
        np.testing.assert_array_equal(y, x)

    def test_bad_shapes(self):
        with pytest.raises(ValueError, match="gamma"):
            nl.layernorm(np.zeros(8, np.float32), np.ones(7, np.float32), np.zeros(8), 1e-5)
        with pytest.raises(ValueError, match="non-empty"):
            nl.layernorm(np.zeros(0, np.float32), np.ones(0), np.zeros(0), 1e-5)

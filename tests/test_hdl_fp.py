"""Amaranth-level tests of the floating-point blocks: layouts, construction, then simulation
against pimgpt.core.numerics (bit-exact) at every supported latency."""

import numpy as np
import pytest
from amaranth.hdl import Signal
from amaranth.lib import data, wiring

from pimgpt.core import numerics as nx
from pimgpt.hdl.bf16mul import BF16Mul
from pimgpt.hdl.fp import BF16, FP32, FP32_CANONICAL_NAN, BF16Pair, FP32Pair, check_int
from pimgpt.hdl.fp32add import FP32Add
from pimgpt.hdl.fp32mul import FP32Mul
from pimgpt.hdl.testing import rtl_binary_op, run_valid_stream
from pimgpt.sim.cocotb_lib import stimulus

pytestmark = pytest.mark.filterwarnings("ignore:.*created but never used")

UNITS = {"bf16mul": (BF16Mul, 1, (0, 1)), "fp32add": (FP32Add, 2, (0, 1, 2, 3)),
         "fp32mul": (FP32Mul, 2, (0, 1, 2))}


# --- layouts ----------------------------------------------------------------------------------
def test_layouts_match_ieee_bit_positions():
    assert BF16.as_shape().size == 16 and FP32.as_shape().size == 32
    assert FP32.as_shape()["mant"].offset == 0 and FP32.as_shape()["exp"].offset == 23
    assert FP32.as_shape()["sign"].offset == 31 and BF16.as_shape()["exp"].offset == 7
    assert BF16Pair.as_shape().size == 32 and FP32Pair.as_shape()["b"].offset == 32
    assert FP32_CANONICAL_NAN == 0x7FC00000
    # a Signal initialised from fields packs like the IEEE encoding
    s = Signal(FP32, init={"sign": 1, "exp": 127, "mant": 0})
    assert s.as_value().init == 0xBF800000


def test_check_int_rejects_bad_values():
    assert check_int("x", 3, 0, 3) == 3
    with pytest.raises(TypeError, match="x must be an integer, not '3'"):
        check_int("x", "3", 0, 3)
    with pytest.raises(TypeError, match="not True"):
        check_int("x", True, 0, 3)
    with pytest.raises(ValueError, match=r"x must be in 0..3, not 4"):
        check_int("x", 4, 0, 3)


# --- construction -----------------------------------------------------------------------------
@pytest.mark.parametrize("op", sorted(UNITS))
def test_construction_and_signature(op):
    cls, default, allowed = UNITS[op]
    unit = cls()
    assert isinstance(unit, wiring.Component)
    assert unit.latency == default
    members = unit.signature.members
    assert set(members) == {"i", "o"}
    assert members["i"].flow == wiring.In and members["o"].flow == wiring.Out
    payload = members["i"].signature.members["payload"].shape
    assert isinstance(payload, data.StructLayout) or issubclass(payload, data.Struct)
    assert members["o"].signature.members["payload"].shape is FP32
    for lat in allowed:
        assert cls(latency=lat).latency == lat


@pytest.mark.parametrize("op", sorted(UNITS))
def test_construction_rejects_bad_latency(op):
    cls, _, allowed = UNITS[op]
    top = max(allowed)
    with pytest.raises(ValueError, match=f"latency must be in 0..{top}, not {top + 1}"):
        cls(latency=max(allowed) + 1)
    with pytest.raises(ValueError, match="latency must be in"):
        cls(latency=-1)
    with pytest.raises(TypeError, match="latency must be an integer, not '1'"):
        cls(latency="1")
    with pytest.raises(TypeError, match="latency must be an integer, not 1.0"):
        cls(latency=1.0)


# --- simulation -------------------------------------------------------------------------------
def _corners(op):
    return stimulus.cross_pairs(stimulus.BF16_DIRECTED if op == "bf16mul"
                                else stimulus.FP32_DIRECTED)


def _random(op, n, seed):
    rng = np.random.default_rng(seed)
    if op == "fp32add":
        return stimulus.fp32_add_pairs(rng, n)
    if op == "fp32mul":
        return stimulus.fp32_mul_pairs(rng, n)
    return stimulus.bf16_random(rng, n), stimulus.bf16_random(rng, n)


@pytest.mark.parametrize("op", sorted(UNITS))
def test_corner_cases_bit_exact(op):
    a, b = _corners(op)
    got = rtl_binary_op(op, a, b, latency=0)
    want = stimulus.golden(op, a, b)
    bad = np.nonzero(got != want)[0]
    assert bad.size == 0, [(hex(a[i]), hex(b[i]), hex(got[i]), hex(want[i])) for i in bad[:5]]


@pytest.mark.parametrize("op", sorted(UNITS))
def test_random_bit_exact_at_every_latency(op):
    _, _, allowed = UNITS[op]
    for lat in allowed:
        a, b = _random(op, 1500 if lat == 0 else 300, seed=lat)
        got = rtl_binary_op(op, a, b, latency=lat, idle=0.3, seed=lat)
        np.testing.assert_array_equal(got, stimulus.golden(op, a, b))


@pytest.mark.parametrize("op", sorted(UNITS))
def test_latency_is_exact_and_throughput_one_per_cycle(op):
    cls, _, allowed = UNITS[op]
    a, b = _random(op, 40, seed=9)
    width = 16 if op == "bf16mul" else 32
    for lat in allowed:
        res = run_valid_stream(cls(latency=lat), stimulus.pack_pairs(a, b, width), idle=0.0)
        assert res["latencies"] == [lat] * 40
        assert res["cycles"] == 40 + lat + 4


def test_specific_contract_rules():
    f = nx.f32_from_bits
    # fp32 add: +0 + -0 = +0, -0 + -0 = -0, x - x = +0, Inf - Inf = NaN, overflow to Inf
    a = np.array([0x00000000, 0x80000000, 0x3FC00000, 0x7F800000, 0x7F7FFFFF, 0x3F800000,
                  0x3F800001, 0x00800001], np.uint32)
    b = np.array([0x80000000, 0x80000000, 0xBFC00000, 0xFF800000, 0x7F7FFFFF, 0x33800000,
                  0x33800000, 0x80800000], np.uint32)
    want = [0x00000000, 0x80000000, 0x00000000, 0x7FC00000, 0x7F800000, 0x3F800000,
            0x3F800002, 0x00000000]  # ties to even down and up; the 2**-149 difference flushes
    assert rtl_binary_op("fp32add", a, b).tolist() == want
    assert stimulus.golden("fp32add", a, b).tolist() == want
    # fp32 mul: (1 - 2**-24) * 2**-126 is below the smallest normal -> -0 with the sign kept;
    # a product that rounds (at 24 bits, unbounded exponent) up to 2**-126 survives.
    a = np.array([0xBF7FFFFF, 0x3FFFFFFF, 0x7F800000, 0x7FC00001], np.uint32)
    b = np.array([0x00800000, 0x00000001, 0x00000000, 0x3F800000], np.uint32)
    want = [0x80000000, 0x00000000, 0x7FC00000, 0x7FC00000]
    assert rtl_binary_op("fp32mul", a, b).tolist() == want
    ea, eb = 63, 64  # significands from stimulus.fp32_mul_pairs' construction
    ma = (1 << 23) + 12345
    mb = ((1 << 47) - (1 << 22) + ma - 1) // ma
    assert ma * mb < 1 << 47
    pa = np.array([(ea << 23) | (ma & 0x7FFFFF)], np.uint32)
    pb = np.array([(eb << 23) | (mb & 0x7FFFFF)], np.uint32)
    assert rtl_binary_op("fp32mul", pa, pb).tolist() == [0x00800000]
    assert nx.bits_from_f32(nx.f32_mul(f(pa), f(pb))).tolist() == [0x00800000]
    # bf16 mul: exact, product below 2**-126 flushes with the XOR sign, overflow to Inf
    a = np.array([0x3F81, 0x8080, 0x7F7F, 0x0080], np.uint16)
    b = np.array([0x3F81, 0x3F00, 0x7F7F, 0xBF80], np.uint16)
    want = [0x3F820200, 0x80000000, 0x7F800000, 0x80800000]  # (1 + 2**-7)**2 = 1 + 2**-6 + 2**-14
    assert rtl_binary_op("bf16mul", a, b).tolist() == want

"""Amaranth-level tests of the MAC unit: construction, wrong arguments, then simulation against
pimgpt.core.numerics (bit-exact), latency, full throughput and the accumulator register."""

import numpy as np
import pytest
from amaranth.lib import data, wiring
from amaranth.sim import Simulator

from pimgpt.core import numerics as nx
from pimgpt.hdl.fp import FP32
from pimgpt.hdl.mac import MAC, mac_column_layout
from pimgpt.hdl.testing import rtl_mac, run_valid_stream
from pimgpt.sim.cocotb_lib import stimulus

pytestmark = pytest.mark.filterwarnings("ignore:.*created but never used")


def _generic_reference(a16, b16, lengths):
    """dot products for any power-of-two lane count (numerics' tree is fixed at 16 lanes)."""
    with np.errstate(all="ignore"):
        level = nx.bf16_mul(a16, b16)
        while level.shape[-1] > 1:
            level = nx.f32_add(level[..., 0::2], level[..., 1::2])
        trees = level[..., 0]
        out, start = [], 0
        for n in lengths:
            acc = np.float32(0.0)
            for c in range(start, start + n):
                acc = nx.f32_add(acc, trees[c])
            out.append(int(nx.bits_from_f32(np.atleast_1d(acc))[0]))
            start += n
    return np.array(out, np.uint32)


# --- construction -----------------------------------------------------------------------------
def test_construction_defaults_and_signature():
    mac = MAC()
    assert isinstance(mac, wiring.Component)
    assert (mac.lanes, mac.add_latency, mac.latency) == (nx.MAC_LANES, 2, 1 + 4 * 2 + 1)
    members = mac.signature.members
    assert set(members) == {"i", "o", "acc"}
    assert members["acc"].flow == wiring.Out
    assert members["acc"].shape == data.ArrayLayout(FP32, 1)
    layout = members["i"].signature.members["payload"].shape
    assert layout == mac_column_layout(16)
    assert members["o"].signature.members["payload"].shape is FP32


def test_column_layout_bit_positions():
    layout = mac_column_layout(16)
    assert layout.size == 16 * 16 * 2 + 2
    assert layout["a"].offset == 0 and layout["b"].offset == 256
    assert layout["first"].offset == 512 and layout["last"].offset == 513
    assert isinstance(layout["a"].shape, data.ArrayLayout) and layout["a"].shape.length == 16


@pytest.mark.parametrize("lanes, add_latency, latency", [(2, 1, 3), (4, 3, 8), (16, 1, 6),
                                                         (16, 3, 14), (64, 2, 14)])
def test_latency_formula(lanes, add_latency, latency):
    assert MAC(lanes=lanes, add_latency=add_latency).latency == latency


@pytest.mark.parametrize("kwargs, exc, msg", [
    ({"lanes": 12}, ValueError, "lanes must be a power of two, not 12"),
    ({"lanes": 1}, ValueError, r"lanes must be in 2..64, not 1"),
    ({"lanes": 128}, ValueError, r"lanes must be in 2..64, not 128"),
    ({"lanes": "16"}, TypeError, "lanes must be an integer, not '16'"),
    ({"lanes": 16.0}, TypeError, "lanes must be an integer, not 16.0"),
    ({"add_latency": 0}, ValueError, r"add_latency must be in 1..3, not 0"),
    ({"add_latency": 4}, ValueError, r"add_latency must be in 1..3, not 4"),
    ({"add_latency": None}, TypeError, "add_latency must be an integer, not None"),
])
def test_construction_rejects_bad_arguments(kwargs, exc, msg):
    with pytest.raises(exc, match=msg):
        MAC(**kwargs)


def test_lanes_come_from_the_hardware_config():
    from pimgpt.core.config import load_hw
    from pimgpt.hdl.export import build_block

    hw = load_hw("pimgpt-gddr6-8ch")
    assert build_block("mac", hw).lanes == hw.dram.col_elems == 16


# --- simulation -------------------------------------------------------------------------------
@pytest.mark.parametrize("idle", [0.0, 0.4])
def test_directed_dot_products_bit_exact(idle):
    a16, b16, lengths, names = stimulus.mac_directed()
    res = rtl_mac(stimulus.pack_mac_columns(a16, b16, lengths), idle=idle, seed=3)
    got = np.array(res["outputs"], np.uint32)
    want = stimulus.mac_reference(a16, b16, lengths)
    bad = [(names[i], hex(got[i]), hex(want[i])) for i in np.nonzero(got != want)[0]]
    assert len(got) == len(want) and not bad, bad


def test_random_dot_products_bit_exact():
    rng = np.random.default_rng(21)
    a16, b16, lengths = stimulus.mac_random(rng, 400)
    res = rtl_mac(stimulus.pack_mac_columns(a16, b16, lengths), idle=0.25, seed=21)
    np.testing.assert_array_equal(np.array(res["outputs"], np.uint32),
                                  stimulus.mac_reference(a16, b16, lengths))
    assert res["cycles"] > 400  # idle cycles were inserted


def test_reference_matches_dot_bf16():
    rng = np.random.default_rng(2)
    a16, b16, lengths = stimulus.mac_random(rng, 200)
    want = stimulus.mac_reference(a16, b16, lengths)
    start = 0
    for n, w in zip(lengths, want, strict=True):
        with np.errstate(all="ignore"):
            d = nx.dot_bf16(a16[start:start + n].ravel(), b16[start:start + n].ravel())
        assert int(nx.bits_from_f32(np.atleast_1d(d))[0]) == w
        start += n


def test_full_throughput_back_to_back_and_exact_latency():
    """One-column dot products every cycle: one result every cycle, each exactly `latency` later;
    then multi-column dots back to back: each result `latency` cycles after its last column."""
    rng = np.random.default_rng(5)
    mac = MAC()
    a16, b16 = stimulus.bf16_random(rng, 40 * 16).reshape(40, 16), \
        stimulus.bf16_random(rng, 40 * 16).reshape(40, 16)
    ones = np.ones(40, np.int64)
    res = run_valid_stream(mac, stimulus.pack_mac_columns(a16, b16, ones))
    assert res["latencies"] == [mac.latency] * 40
    np.testing.assert_array_equal(np.array(res["outputs"], np.uint32),
                                  stimulus.mac_reference(a16, b16, ones))
    lengths = np.array([3, 5, 1, 7, 4, 2, 8, 10], np.int64)
    res = run_valid_stream(MAC(), stimulus.pack_mac_columns(a16, b16, lengths))
    last_cols = np.cumsum(lengths) - 1
    in_ticks = np.array(res["in_ticks"])
    assert (np.array(res["out_ticks"]) - in_ticks[last_cols]).tolist() == [mac.latency] * 8
    np.testing.assert_array_equal(np.array(res["outputs"], np.uint32),
                                  stimulus.mac_reference(a16, b16, lengths))
    assert res["cycles"] == int(last_cols[-1]) + 1 + mac.latency + 4


@pytest.mark.parametrize("lanes, add_latency", [(4, 1), (32, 3), (2, 2)])
def test_other_shapes_bit_exact(lanes, add_latency):
    rng = np.random.default_rng(lanes)
    a16, b16, lengths = stimulus.mac_random(rng, 120, lanes=lanes)
    res = rtl_mac(stimulus.pack_mac_columns(a16, b16, lengths), lanes=lanes,
                  add_latency=add_latency, idle=0.3, seed=lanes)
    np.testing.assert_array_equal(np.array(res["outputs"], np.uint32),
                                  _generic_reference(a16, b16, lengths))


def test_accumulator_register_and_result_pulse():
    """acc starts at +0 after reset, holds through idle cycles, restarts on `first`; o.valid
    pulses for exactly one cycle per `last` column."""
    mac = MAC()
    a = np.full((2, 16), 0x3F80, np.uint16)  # 1.0
    b = np.full((2, 16), 0x4000, np.uint16)  # 2.0 -> tree = 32
    cols = stimulus.pack_mac_columns(a, b, np.array([2]))
    seen = {}

    async def bench(ctx):
        assert ctx.get(mac.acc.as_value()) == 0
        for p in cols:
            ctx.set(mac.i.payload.as_value(), p)
            ctx.set(mac.i.valid, 1)
            await ctx.tick()
        ctx.set(mac.i.valid, 0)
        valid_cycles = 0
        for _ in range(mac.latency + 5):
            await ctx.tick()
            valid_cycles += ctx.get(mac.o.valid)
        seen["acc"] = ctx.get(mac.acc.as_value())
        seen["valid_cycles"] = valid_cycles
        # a new dot product restarts at +0 and replaces the accumulator
        one = stimulus.pack_mac_columns(a[:1], a[:1], np.array([1]))[0]
        ctx.set(mac.i.payload.as_value(), one)
        ctx.set(mac.i.valid, 1)
        await ctx.tick()
        ctx.set(mac.i.valid, 0)
        await ctx.tick().repeat(mac.latency + 1)
        seen["acc2"] = ctx.get(mac.acc.as_value())

    sim = Simulator(mac)
    sim.add_clock(1e-9)
    sim.add_testbench(bench)
    sim.run()
    assert seen["acc"] == 0x42800000  # 64.0 = 2 columns x 16 x (1.0 * 2.0)
    assert seen["valid_cycles"] == 1
    assert seen["acc2"] == 0x41800000  # 16.0


def test_accumulator_file_interleaved_columns_bit_exact():
    """Four accumulators, columns for them interleaved back to back (every order the bank may see):
    each accumulator equals the numerics contract's sequential sum of its own columns; ``first``
    restarts only the named accumulator; ``o`` shows the accumulator of the ``last`` column."""
    A = 4
    mac = MAC(accumulators=A, add_latency=1)
    assert mac.signature.members["acc"].shape == data.ArrayLayout(FP32, A)
    rng = np.random.default_rng(7)
    n = 40
    a16 = nx.f32_to_bf16(rng.normal(0, 1, (n, 16)).astype(np.float32))
    b16 = nx.f32_to_bf16(rng.normal(0, 1, (n, 16)).astype(np.float32))
    idx = rng.integers(0, A, n)
    first = np.zeros(n, bool)
    first[rng.integers(0, n, 5)] = True
    want = np.zeros(A, np.float32)
    for k in range(n):
        tree = nx.mac_columns(np.float32(0.0), a16[k:k + 1], b16[k:k + 1])
        base = np.float32(0.0) if first[k] else want[idx[k]]
        want[idx[k]] = nx.f32_add(base, tree)
    last_want = want[idx[-1]]
    seen = {}

    async def bench(ctx):
        p = mac.i.payload
        for k in range(n):
            for j in range(16):
                ctx.set(p.a[j].as_value(), int(a16[k, j]))
                ctx.set(p.b[j].as_value(), int(b16[k, j]))
            ctx.set(p.first, int(first[k]))
            ctx.set(p.last, int(k == n - 1))
            ctx.set(p.acc, int(idx[k]))
            ctx.set(mac.i.valid, 1)
            await ctx.tick()
        ctx.set(mac.i.valid, 0)
        for _ in range(mac.latency + 2):
            if ctx.get(mac.o.valid):
                seen["o"] = ctx.get(mac.o.payload.as_value())
            await ctx.tick()
        seen["acc"] = [ctx.get(mac.acc[k].as_value()) for k in range(A)]

    sim = Simulator(mac)
    sim.add_clock(1e-9)
    sim.add_testbench(bench)
    sim.run()
    assert seen["acc"] == [int(v) for v in nx.bits_from_f32(want)]
    assert seen["o"] == int(nx.bits_from_f32(np.atleast_1d(last_want))[0])

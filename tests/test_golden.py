"""The golden simulator: every opcode's semantics, the MAC fast path, address checks, errors."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pimgpt.core import nonlinear, nonlinear_llama
from pimgpt.core.config import hw_from_dict, load_hw
from pimgpt.core.isa import FLAG_VEC_FROM_REG, I, Op, ProgramError, encode, f32_bits
from pimgpt.core.numerics import (
    bf16_to_f32,
    bits_from_f32,
    f32_add,
    f32_mul,
    f32_to_bf16,
    mac_columns,
)
from pimgpt.sim.golden import GoldenError, GoldenMachine, run_program
from pimgpt.sw.mapper import element_address


def make_hw(channels=2, banks=4, rows=64, row_bytes=256, gb_bytes=128, scratch=4096):
    base = load_hw("tiny-rtl").raw
    data = {**base,
            "dram": {**base["dram"], "channels": channels, "banks": banks, "rows": rows,
                     "row_bytes": row_bytes, "gb_bytes": gb_bytes,
                     "bank_groups": 1},
            "asic": {**base["asic"], "scratchpad_words": scratch}}
    return hw_from_dict(data, where="test")


HW = make_hw()  # 2 channels x 4 banks, rows of 128 elements (8 columns), GB of 64 (4 columns)


def machine(rows=8, seed=0, fill=True):
    d = HW.dram
    rng = np.random.default_rng(seed)
    img = np.zeros((d.channels, d.banks, rows, d.row_elems), dtype=np.uint16)
    if fill:
        img[:] = f32_to_bf16(rng.standard_normal(img.shape).astype(np.float32))
    return GoldenMachine(HW, img)


def run(m, *instrs):
    m.run(list(instrs) + [I(Op.EOC)])
    return m


def bits(x):
    return bits_from_f32(np.asarray(x, dtype=np.float32))


def test_wr_gb_mac_rd_mac_matches_mac_columns():
    m = machine()
    rng = np.random.default_rng(5)
    x = rng.standard_normal(64).astype(np.float32)
    m.sp[100:164] = x
    run(m,
        I(Op.WR_GB, ch_mask=0b11, gb_col=0, ncols=4, src=100),
        I(Op.MAC_ABK, ch_mask=0b11, row=3, col=2, ncols=3, gb_col=1),
        I(Op.MAC_ABK, ch_mask=0b01, row=5, col=0, ncols=1, gb_col=0),
        I(Op.RD_MAC, ch_mask=0b11, dst=0))
    gb = f32_to_bf16(x)
    dram = m.dram
    want = mac_columns(np.zeros((2, 4), np.float32), dram[:, :, 3, 32:80].reshape(2, 4, 3, 16),
                       np.broadcast_to(gb[16:64].reshape(3, 16), (2, 4, 3, 16)))
    want[0] = mac_columns(want[0], dram[0, :, 5, 0:16].reshape(4, 1, 16),
                          np.broadcast_to(gb[0:16], (4, 1, 16)))
    np.testing.assert_array_equal(bits(m.sp[0:8]), bits(want.reshape(-1)))
    assert not m.acc.any()  # RD_MAC resets the accumulators
    assert m.fast_macs == 2


def test_vadd3_is_two_vadds():
    """The golden machine's VADD3 (a + (b + c)) leaves the bits two VADDs leave: b + c rounded
    first (NaN, infinities, signed zeros, subnormals, and sums that round)."""
    rng = np.random.default_rng(3)
    n = 300
    vals = np.concatenate([np.array([np.nan, np.inf, -np.inf, 0.0, -0.0, 1e-40, -1e-39,
                                     3.4e38, 1.0, 2.0 ** -24], np.float32),
                           (rng.standard_normal(n - 10) * 1e3).astype(np.float32)])
    perm = rng.permutation(vals)
    runs = []
    for prog in ([I(Op.VADD3, dst=0, a=0, b=n, c=2 * n, n=n)],
                 [I(Op.VADD, dst=n, a=n, b=2 * n, n=n), I(Op.VADD, dst=0, a=0, b=n, n=n)]):
        m = GoldenMachine(make_hw(channels=1, banks=1), np.zeros((1, 1, 1, 128), np.uint16))
        m.sp[:n], m.sp[n:2 * n], m.sp[2 * n:3 * n] = vals, perm, vals[::-1]
        m.run(prog + [I(Op.EOC)])
        runs.append(bits(m.sp[:n]).copy())
    np.testing.assert_array_equal(runs[0], runs[1])
    assert np.isnan(m.sp[:n]).any() and (bits(m.sp[:n]) != bits(vals)).any()


def test_rd_mac_packs_selected_channels_in_slot_order():
    hw = make_hw(channels=3, banks=2)
    m = GoldenMachine(hw, np.zeros((3, 2, 1, 128), np.uint16))
    m.acc[:, :, 0] = np.arange(6, dtype=np.float32).reshape(3, 2) + 1
    m.run([I(Op.RD_MAC, ch_mask=0b101, dst=10), I(Op.EOC)])
    np.testing.assert_array_equal(m.sp[10:14], [1, 2, 5, 6])
    np.testing.assert_array_equal(m.acc[:, :, 0], [[0, 0], [3, 4], [0, 0]])
    m.sp[20:24] = [7, 8, 9, 10]
    m.run([I(Op.WR_BIAS, ch_mask=0b110, src=20), I(Op.EOC)])
    np.testing.assert_array_equal(m.acc[:, :, 0], [[0, 0], [7, 8], [9, 10]])


def make_multi_acc_hw(accumulators=4):
    hw = make_hw(channels=2, banks=2)
    data = {**hw.raw, "dram": {**hw.raw["dram"], "accumulators": accumulators}}
    return hw_from_dict(data, where="test")


def test_macs_accumulate_into_their_accumulator_and_rd_mac_reads_several():
    hw = make_multi_acc_hw(4)
    rng = np.random.default_rng(7)
    img = f32_to_bf16(rng.standard_normal((2, 2, 4, 128)).astype(np.float32))
    m = GoldenMachine(hw, img.copy())
    x = rng.standard_normal(16).astype(np.float32)
    m.sp[500:516] = x
    prog = [I(Op.WR_GB, ch_mask=0b11, gb_col=0, ncols=1, src=500)]
    prog += [I(Op.MAC_ABK, ch_mask=0b11, row=r, col=0, ncols=1, gb_col=0, acc=r) for r in range(3)]
    prog += [I(Op.RD_MAC, ch_mask=0b11, dst=0, acc=1, nacc=2), I(Op.EOC)]
    m.run(prog)
    gb = np.broadcast_to(f32_to_bf16(x), (2, 2, 1, 16))
    for a in (1, 2):  # word a*S + slot, S = 4 selected banks
        want = mac_columns(np.zeros((2, 2), np.float32), img[:, :, a, 0:16].reshape(2, 2, 1, 16),
                           gb)
        np.testing.assert_array_equal(bits(m.sp[(a - 1) * 4:a * 4]), bits(want.reshape(-1)))
    assert not m.acc[:, :, 1:3].any() and m.acc[:, :, 0].any()  # only the read ones reset
    m.sp[100:108] = np.arange(8, dtype=np.float32)
    m.run([I(Op.WR_BIAS, ch_mask=0b10, src=100, acc=2, nacc=2), I(Op.EOC)])
    np.testing.assert_array_equal(m.acc[1, :, 2:4], [[0, 2], [1, 3]])


@pytest.mark.parametrize("ins,msg", [
    (I(Op.MAC_ABK, ch_mask=1, row=0, col=0, ncols=1, gb_col=0, acc=4), "accumulators"),
    (I(Op.RD_MAC, ch_mask=1, dst=0, acc=3, nacc=2), "accumulators"),
    (I(Op.RD_MAC, ch_mask=1, dst=0, acc=0, nacc=0), "nacc"),
    (I(Op.SOFTMAX, dst=0, src=0, n=4, rows=0), "rows"),
])
def test_accumulator_and_rows_operands_are_checked(ins, msg):
    m = GoldenMachine(make_multi_acc_hw(4))
    with pytest.raises(GoldenError, match=msg):
        m.run([ins, I(Op.EOC)])


def test_softmax_rows_are_independent():
    m = machine()
    rng = np.random.default_rng(3)
    x = rng.standard_normal(3 * 20).astype(np.float32)
    m.sp[0:60] = x
    run(m, I(Op.SOFTMAX, dst=100, src=0, n=20, rows=3))
    want = np.concatenate([nonlinear.softmax(x[r * 20:(r + 1) * 20]) for r in range(3)])
    np.testing.assert_array_equal(bits(m.sp[100:160]), bits(want))


SPECIAL16 = [0x0000, 0x8000, 0x0001, 0x807F, 0x7F80, 0xFF80, 0x7FC0, 0x7F7F, 0xFF7F, 0x0080,
             0x0180, 0x3F80, 0xBF80, 0x1F80, 0x2000]


@settings(max_examples=60, deadline=None)
@given(st.lists(st.sampled_from(SPECIAL16) | st.integers(0, 0xFFFF), min_size=16, max_size=16),
       st.integers(0, 2**32 - 1), st.integers(1, 4), st.integers(0, 2**32 - 1),
       st.sampled_from([0.0, 1e-30, -3.0, 2.0**-100, 1e38]))
def test_mac_equals_contract_for_any_bits(lanes, seed, ncols, gseed, bias):
    """Fast or fallback, a MAC equals numerics.mac_columns on arbitrary bit patterns."""
    rng = np.random.default_rng(seed)
    m = machine(fill=False)
    words = rng.integers(0, 0x10000, m.dram.shape, dtype=np.uint32).astype(np.uint16)
    scale = rng.integers(0, 3)
    if scale == 0:  # ordinary values: exercises the fast path
        words = f32_to_bf16(rng.standard_normal(m.dram.shape).astype(np.float32))
    words[0, 0, 1, :16] = lanes
    m.dram[:] = words
    g = np.random.default_rng(gseed)
    gbv = (g.standard_normal(64) * 10.0 ** g.integers(-40, 30)).astype(np.float32)
    gbv[:16] = bf16_to_f32(np.array(lanes, np.uint16))[::-1]
    m.sp[0:64] = gbv
    m.sp[200:208] = bias
    run(m, I(Op.WR_GB, ch_mask=3, gb_col=0, ncols=4, src=0),
        I(Op.WR_BIAS, ch_mask=3, src=200),
        I(Op.MAC_ABK, ch_mask=3, row=1, col=0, ncols=ncols, gb_col=0),
        I(Op.MAC_ABK, ch_mask=2, row=2, col=8 - ncols, ncols=ncols, gb_col=4 - ncols),
        I(Op.RD_MAC, ch_mask=3, dst=300))
    gb16 = f32_to_bf16(gbv)
    acc = np.full((2, 4), bias, dtype=np.float32)
    acc = mac_columns(acc, words[:, :, 1, :16 * ncols].reshape(2, 4, ncols, 16),
                      np.broadcast_to(gb16[:16 * ncols].reshape(ncols, 16), (2, 4, ncols, 16)))
    lo = 16 * (4 - ncols)
    acc[1] = mac_columns(acc[1], words[1, :, 2, 128 - 16 * ncols:].reshape(4, ncols, 16),
                         np.broadcast_to(gb16[lo:64].reshape(ncols, 16), (4, ncols, 16)))
    np.testing.assert_array_equal(bits(m.sp[300:308]), bits(acc.reshape(-1)))


def test_mac_sbk_touches_one_bank():
    m = machine()
    m.sp[0:64] = 1.0
    run(m, I(Op.WR_GB, ch_mask=3, gb_col=0, ncols=4, src=0),
        I(Op.MAC_SBK, ch_mask=2, bank=3, row=0, col=0, ncols=2, gb_col=0))
    assert np.count_nonzero(m.acc) == 1 and m.acc[1, 3, 0] != 0  # accumulator 0 of bank 3


def test_region_vector_ops_follow_the_layout():
    d = HW.dram
    geo = {"channels": d.channels, "banks": d.banks, "row_elems": d.row_elems,
           "gb_elems": d.gb_elems}
    m = machine(rows=40, fill=False)
    region = {"region_row": 2, "n_local": 3, "vec_len": 96}  # 24 vectors, 2 chunks (64 + 32)
    vals = np.arange(1, 97, dtype=np.float32)
    m.sp[0:96] = vals
    m.sp[500:520] = -np.arange(20, dtype=np.float32)
    run(m, I(Op.WR_VEC, src=0, n=96, vec=13, **region),
        I(Op.WR_ELEM, src=500, n=20, vec=2, elem=70, **region),
        I(Op.SETR, reg=4, imm=13),
        I(Op.RD_VEC, FLAG_VEC_FROM_REG, dst=1000, n=96, vec=4, **region),
        I(Op.RD_VEC, dst=2000, n=80, vec=9, **region))
    # vector 13 element 70 was overwritten by WR_ELEM (j = 11): -11
    want = vals.copy()
    want[70] = -11
    ch, bank, row, el = element_address(2, 3, 96, 13, np.arange(96), **geo)
    np.testing.assert_array_equal(bf16_to_f32(m.dram[ch, bank, row, el]), want)
    np.testing.assert_array_equal(m.sp[1000:1096], want)
    ch, bank, row, el = element_address(2, 3, 96, np.arange(2, 22), 70, **geo)
    np.testing.assert_array_equal(bf16_to_f32(m.dram[ch, bank, row, el]), -np.arange(20))
    expect9 = np.zeros(80, np.float32)
    expect9[70] = -7
    np.testing.assert_array_equal(m.sp[2000:2080], expect9)
    assert np.count_nonzero(m.dram) == 96 + 19  # vec 13 elem 70 counted once


def test_single_bank_and_copy_ops():
    m = machine(rows=4, fill=False)
    m.sp[0:20] = np.linspace(-1, 1, 20)
    run(m, I(Op.WR_SBK, ch=1, bank=2, row=3, elem=100, n=20, src=0),
        I(Op.RD_SBK, ch=1, bank=2, row=3, elem=96, n=30, dst=50),
        I(Op.WR_ABK, ch_mask=1, row=0, elem=0, n=16, src=0),
        I(Op.COPY_BKGB, ch_mask=2, bank=2, row=3, col=6, ncols=2, gb_col=1),
        I(Op.COPY_GBBK, ch_mask=2, bank=0, row=1, col=0, ncols=4, gb_col=0))
    want = bf16_to_f32(f32_to_bf16(m.sp[0:20]))
    np.testing.assert_array_equal(m.sp[54:74], want)
    assert not m.sp[50:54].any() and not m.sp[74:80].any()
    assert (m.dram[0, :, 0, :16] == f32_to_bf16(m.sp[0:16])).all()
    assert not m.dram[1, :, 0].any()
    np.testing.assert_array_equal(m.gb[1, 16:48], m.dram[1, 2, 3, 96:128])
    np.testing.assert_array_equal(m.dram[1, 0, 1, :64], m.gb[1, :64])


def test_asic_ops_match_contract():
    m = machine(fill=False)
    rng = np.random.default_rng(2)
    a = rng.standard_normal(32).astype(np.float32) * 3
    b = rng.standard_normal(32).astype(np.float32)
    m.sp[0:32], m.sp[32:64] = a, b
    run(m, I(Op.VADD, dst=100, a=0, b=32, n=32),
        I(Op.VMUL, dst=140, a=0, b=32, n=32),
        I(Op.VSCALE, dst=180, a=0, n=32, scale_f32=f32_bits(0.3)),
        I(Op.VEXP, dst=220, src=0, n=32),
        I(Op.VRECIP, dst=260, src=0, n=32),
        I(Op.VRSQRT, dst=300, src=32, n=32),
        I(Op.VGELU, dst=340, src=0, n=32),
        I(Op.SOFTMAX, dst=380, src=0, n=32),
        I(Op.LAYERNORM, dst=420, src=0, gamma=32, beta=0, n=32, eps_f32=f32_bits(1e-5)),
        I(Op.VREDUCE, dst=460, src=0, n=16, k=4),
        I(Op.VMAX, dst=480, src=0, n=32),
        I(Op.VFILL, dst=490, n=4, value_f32=f32_bits(-2.5)),
        I(Op.VMOV, dst=2, src=0, n=8),  # overlapping: memmove semantics
        I(Op.ARGMAX, reg=3, src=32, n=32),
        I(Op.OUT, reg=3), I(Op.SETR, reg=15, imm=77), I(Op.OUT, reg=15))
    checks = {
        100: f32_add(a, b), 140: f32_mul(a, b), 180: f32_mul(a, np.float32(0.3)),
        220: nonlinear.exp(a), 260: nonlinear.reciprocal(a), 300: nonlinear.rsqrt(b),
        340: nonlinear.gelu(a), 380: nonlinear.softmax(a),
        420: nonlinear.layernorm(a, b, a, np.float32(1e-5)),
        460: f32_add(f32_add(f32_add(a[:16], a[16:]), b[:16]), b[16:]),
    }
    for addr, want in checks.items():
        np.testing.assert_array_equal(bits(m.sp[addr:addr + want.size]), bits(want), str(addr))
    assert m.sp[480] == a.max()
    np.testing.assert_array_equal(m.sp[490:494], -2.5)
    np.testing.assert_array_equal(m.sp[2:10], a[:8])
    assert m.out == [int(np.argmax(b)), 77]
    np.testing.assert_array_equal(m.logits[0], b)


def test_llama_ops_match_contract():
    """RMSNORM, ROPE (in place and not, several heads) and SWIGLU compute the functions of
    pimgpt.core.nonlinear_llama on the addressed words."""
    m = machine(fill=False)
    rng = np.random.default_rng(5)
    x = (rng.standard_normal(64) * 4).astype(np.float32)
    g = rng.standard_normal(64).astype(np.float32)
    tab = rng.uniform(-1, 1, 16).astype(np.float32)  # cos[0..7] then sin[0..7]
    m.sp[0:64], m.sp[64:128], m.sp[128:144] = x, g, tab
    m.sp[600:664] = x
    run(m, I(Op.RMSNORM, dst=200, src=0, gamma=64, n=64, eps_f32=f32_bits(1e-5)),
        I(Op.ROPE, dst=300, src=0, tab=128, half=8, nhead=4),
        I(Op.ROPE, dst=600, src=600, tab=128, half=8, nhead=4),
        I(Op.SWIGLU, dst=400, gate=0, up=64, n=64))
    heads = x.reshape(4, 16)
    rot = nonlinear_llama.rope(heads, tab[:8], tab[8:]).reshape(-1)
    checks = {200: nonlinear_llama.rmsnorm(x, g, np.float32(1e-5)), 300: rot, 600: rot,
              400: nonlinear_llama.swiglu(x, g)}
    for addr, want in checks.items():
        np.testing.assert_array_equal(bits(m.sp[addr:addr + want.size]), bits(want), str(addr))
    # the rotation is not the identity: the test can fail
    assert not np.array_equal(rot, x)
    # a pair (i, i + half) is rotated together: y[0] = x[0] c0 - x[8] s0
    want0 = f32_add(f32_mul(x[0], tab[0]), -f32_mul(x[8], tab[8]))
    assert bits(m.sp[300]) == bits(want0)


@pytest.mark.parametrize(
    "ins, words",
    [
        (I(Op.MAC_ABK, ch_mask=4, row=0, col=0, ncols=1), "ch_mask"),
        (I(Op.MAC_ABK, ch_mask=0, row=0, col=0, ncols=1), "ch_mask"),
        (I(Op.MAC_ABK, ch_mask=1, row=64, col=0, ncols=1), "row 64 out of range"),
        (I(Op.MAC_ABK, ch_mask=1, row=0, col=6, ncols=3), "columns"),
        (I(Op.MAC_ABK, ch_mask=1, row=0, col=0, ncols=5), "columns"),
        (I(Op.MAC_SBK, ch_mask=1, bank=4, row=0, col=0, ncols=1), "bank 4"),
        (I(Op.RD_MAC, ch_mask=3, dst=4090), "scratchpad"),
        (I(Op.WR_GB, ch_mask=1, gb_col=0, ncols=1, src=4095), "scratchpad"),
        (I(Op.WR_SBK, ch=2, bank=0, row=0, elem=0, n=1), "channel 2"),
        (I(Op.WR_SBK, ch=0, bank=0, row=0, elem=120, n=9), "exceed a row"),
        (I(Op.RD_VEC, dst=0, n=16, vec=8, region_row=0, n_local=1, vec_len=16), "beyond"),
        (I(Op.RD_VEC, dst=0, n=17, vec=0, region_row=0, n_local=1, vec_len=16), "beyond"),
        (I(Op.RD_VEC, dst=0, n=8, vec=0, region_row=0, n_local=1, vec_len=12), "bad region"),
        (I(Op.RD_VEC, dst=0, n=8, vec=0, region_row=63, n_local=9, vec_len=16), "row"),
        (I(Op.RD_VEC, FLAG_VEC_FROM_REG, dst=0, n=8, vec=16, region_row=0, n_local=1,
           vec_len=16), "register"),
        (I(Op.WR_ELEM, src=0, n=9, vec=0, elem=0, region_row=0, n_local=1, vec_len=16),
         "beyond"),
        (I(Op.SOFTMAX, dst=0, src=0, n=0), "at least 1"),
        (I(Op.VREDUCE, dst=0, src=0, n=4, k=0), "at least 1"),
        (I(Op.OUT, reg=16), "register"),
        (I(Op.ROPE, dst=0, src=0, tab=0, half=0, nhead=1), "half must be at least 1"),
        (I(Op.RMSNORM, dst=0, src=0, gamma=0, n=0), "at least 1"),
        (I(Op.ROPE, dst=0, src=4000, tab=0, half=8, nhead=8), "scratchpad"),
        (I(Op.VADD, dst=4000, a=0, b=0, n=200), "scratchpad"),
        # the vector unit works in blocks: dst in place (same start) or disjoint, never shifted
        (I(Op.VADD, dst=8, a=0, b=100, n=16), "overlaps"),
        (I(Op.VGELU, dst=0, src=1, n=16), "overlaps"),
        (I(Op.SOFTMAX, dst=4, src=0, n=8, rows=2), "overlaps"),
        (I(Op.VREDUCE, dst=8, src=0, n=8, k=2), "overlaps"),
        (I(Op.LAYERNORM, dst=100, src=0, gamma=100, beta=200, n=16), "overlaps"),
        # SOFTMAXU's reciprocals are written while later rows are still to be read
        (I(Op.SOFTMAXU, dst=0, src=0, n=8, rows=2, rcp=8, rseg=2), "rcp .* must be disjoint"),
        (I(Op.SOFTMAXU, dst=100, src=0, n=8, rows=2, rcp=104, rseg=2), "must be disjoint"),
        (I(Op.SOFTMAXU, dst=0, src=0, n=8, rows=2, rcp=100, rseg=0), "rseg must be at least 1"),
    ],
)
def test_bad_instructions_raise(ins, words):
    m = machine()
    with pytest.raises(GoldenError, match=rf"instruction 1 \({ins.op.name}\).*{words}"):
        m.run([I(Op.SYNC), ins, I(Op.EOC)])


def test_in_place_and_memmove_are_allowed():
    m = machine()
    m.sp[0:64] = np.arange(64, dtype=np.float32)
    m.run([I(Op.VADD, dst=0, a=0, b=32, n=16), I(Op.VMOV, dst=3, src=0, n=20),
           I(Op.VREDUCE, dst=32, src=32, n=8, k=2), I(Op.EOC)])
    assert m.sp[3] == 32.0 and m.sp[32] == 32.0 + 40.0


def test_dram_grows_up_to_hw_rows():
    m = GoldenMachine(HW)  # no image: rows appear on demand, zero-filled
    m.sp[0:16] = 3.0
    run(m, I(Op.WR_SBK, ch=0, bank=1, row=40, elem=16, n=16, src=0),
        I(Op.RD_SBK, ch=0, bank=1, row=40, elem=16, n=16, dst=100))
    assert m.dram.shape[2] >= 41
    np.testing.assert_array_equal(m.sp[100:116], 3.0)


def test_program_must_end_with_eoc_and_binary_is_checked():
    with pytest.raises(GoldenError, match="without EOC"):
        run_program(HW, [I(Op.SYNC)])
    blob = bytearray(encode([I(Op.SETR, reg=0, imm=5), I(Op.OUT, reg=0), I(Op.EOC)]))
    machine_, stats = run_program(HW, bytes(blob))
    assert machine_.out == [5] and stats["instructions"] == 3
    blob[16] = 0x7E  # unknown opcode
    with pytest.raises(ProgramError, match="unknown opcode"):
        run_program(HW, bytes(blob), source="x.bin")
    with pytest.raises(ProgramError, match="truncated"):
        run_program(HW, bytes(blob[:-4]))


def test_image_shape_validated():
    with pytest.raises(GoldenError, match="DRAM image"):
        GoldenMachine(HW, np.zeros((2, 4, 8, 100), np.uint16))
    with pytest.raises(GoldenError, match="DRAM image"):
        GoldenMachine(HW, np.zeros((2, 4, 8, 128), np.float32))


def test_tiny_products_take_the_exact_path():
    """Products near the subnormal range must flush exactly as the contract says."""
    m = machine(fill=False)
    m.dram[:, :, 0, :16] = f32_to_bf16(np.float32(2.0**-70) * np.arange(1, 17, dtype=np.float32))
    m.sp[0:16] = np.float32(2.0**-60) * np.arange(16, 0, -1, dtype=np.float32)
    m.sp[16:64] = 1.0
    run(m, I(Op.WR_GB, ch_mask=3, gb_col=0, ncols=4, src=0),
        I(Op.MAC_ABK, ch_mask=3, row=0, col=0, ncols=1, gb_col=0),
        I(Op.RD_MAC, ch_mask=3, dst=100))
    assert m.slow_macs == 1 and m.fast_macs == 0
    want = mac_columns(np.float32(0), m.dram[0, 0, 0, :16].reshape(1, 16),
                       f32_to_bf16(m.sp[0:16]).reshape(1, 16))
    assert np.all(bits(m.sp[100:108]) == bits(want))  # some products flush, some do not


def test_mac_on_non_contiguous_channels():
    hw = make_hw(channels=3, banks=2)
    rng = np.random.default_rng(9)
    img = f32_to_bf16(rng.standard_normal((3, 2, 2, 128)).astype(np.float32))
    m = GoldenMachine(hw, img.copy())
    m.sp[0:64] = rng.standard_normal(64).astype(np.float32)
    m.run([I(Op.WR_GB, ch_mask=0b111, gb_col=0, ncols=4, src=0),
           I(Op.MAC_ABK, ch_mask=0b101, row=1, col=4, ncols=4, gb_col=0),
           I(Op.MAC_SBK, ch_mask=0b101, bank=1, row=0, col=0, ncols=2, gb_col=2),
           I(Op.RD_MAC, ch_mask=0b111, dst=100), I(Op.EOC)])
    gb = f32_to_bf16(m.sp[0:64])
    want = np.zeros((3, 2), np.float32)
    for c in (0, 2):
        want[c] = mac_columns(want[c], img[c, :, 1, 64:128].reshape(2, 4, 16),
                              np.broadcast_to(gb.reshape(4, 16), (2, 4, 16)))
        want[c, 1] = mac_columns(want[c, 1], img[c, 1, 0, 0:32].reshape(2, 16),
                                 gb[32:64].reshape(2, 16))
    np.testing.assert_array_equal(bits(m.sp[100:106]), bits(want.reshape(-1)))
    assert m.sp[102] == 0 and m.sp[103] == 0


def test_softmaxu_leaves_the_product_to_a_vmul():
    """SOFTMAXU stores the exponentials and each row's 1/sum over ``rseg`` words; a VMUL by
    them gives SOFTMAX's probabilities bit for bit."""
    m = machine()
    rng = np.random.default_rng(12)
    x = (rng.standard_normal(3 * 20) * 4).astype(np.float32)
    m.sp[0:60] = x
    m.sp[200:260] = x
    m.run([I(Op.SOFTMAXU, dst=0, src=0, n=20, rows=3, rcp=100, rseg=20),
           I(Op.VMUL, dst=0, a=0, b=100, n=60), I(Op.SOFTMAX, dst=200, src=200, n=20, rows=3),
           I(Op.EOC)])
    e, r = nonlinear.softmax_parts(x.reshape(3, 20))
    np.testing.assert_array_equal(bits(m.sp[100:160]), bits(np.repeat(r, 20)))
    np.testing.assert_array_equal(bits(m.sp[0:60]), bits(m.sp[200:260]))
    assert not np.array_equal(bits(e.reshape(-1)), bits(m.sp[0:60]))


def test_vmacs_scales_by_one_scalar_per_segment():
    m = machine()
    rng = np.random.default_rng(11)
    a = rng.standard_normal(12).astype(np.float32)
    acc = rng.standard_normal(12).astype(np.float32)
    s = rng.standard_normal(3).astype(np.float32)
    m.sp[200:212], m.sp[300:312], m.sp[400:403] = a, acc, s
    m.run([I(Op.VMACS, dst=300, a=200, s=400, seg=4, nseg=3), I(Op.EOC)])
    want = f32_add(acc, f32_mul(a, np.repeat(s, 4)))
    np.testing.assert_array_equal(bits(m.sp[300:312]), bits(want))

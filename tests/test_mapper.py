"""DRAM placement: region layout, memory map, too-big models, bf16 image writing."""

import numpy as np
import pytest
import yaml

from pimgpt.core.config import hw_from_dict, load_hw
from pimgpt.core.numerics import bf16_to_f32, f32_to_bf16
from pimgpt.sw.checkpoint import random_weights
from pimgpt.sw.image import build_dram_image, write_region
from pimgpt.sw.mapper import (
    MappingError,
    Region,
    element_address,
    map_model,
    to_bf16,
    v_block_tokens,
    v_dims,
)
from pimgpt.sw.models import PAPER_MODELS, PRESETS, ModelConfig, get_model


@pytest.fixture(scope="module")
def hw():
    return load_hw("pimgpt-gddr6-8ch")


def small_hw(**dram):
    base = load_hw("tiny-rtl").raw
    data = {**base, "dram": {**base["dram"], **dram}}
    return hw_from_dict(data, where="test")


def spec_address(region_row, n_local, vec_len, v, e, slots, banks, row_elems, g):
    """docs/isa.md "Regions", written out literally for one element."""
    t = e // g
    length = min(g, vec_len - t * g)
    i = v // slots
    flat = region_row * row_elems + t * n_local * g + i * length + (e - t * g)
    slot = v % slots
    return slot // banks, slot % banks, flat // row_elems, flat % row_elems


@pytest.mark.parametrize("vec_len, n_vectors", [(64, 5), (1600, 300), (2048, 129), (96, 1000)])
def test_element_address_matches_spec(vec_len, n_vectors):
    geo = {"channels": 2, "banks": 4, "row_elems": 256, "gb_elems": 128}
    region = Region("r", 3, n_vectors, vec_len, 8, 256, 128)
    rng = np.random.default_rng(0)
    v = rng.integers(0, n_vectors, 200)
    e = rng.integers(0, vec_len, 200)
    got = element_address(3, region.n_local, vec_len, v, e, **geo)
    for k in range(200):
        want = spec_address(3, region.n_local, vec_len, int(v[k]), int(e[k]), 8, 4, 256, 128)
        assert tuple(int(x[k]) for x in got) == want
        assert region.flat(int(v[k]) // 8, int(e[k])) == want[2] * 256 + want[3]


def test_segments_split_at_row_ends_and_cover_range():
    region = Region("r", 2, 40, 96, 8, 128, 32)  # chunks of 32; a local vector crosses rows
    for local in range(region.n_local):
        for _t, start, size in region.chunks():
            segs = region.segments(local, start, start + size)
            elems = []
            for row, col, ncols, gb_col in segs:
                assert col + ncols <= 128 // 16  # never crosses a row end
                assert gb_col == (len(elems)) // 16
                elems += [row * 128 + col * 16 + j for j in range(ncols * 16)]
            want = [region.flat(local, e) for e in range(start, start + size)]
            assert elems == want
    with pytest.raises(MappingError):
        region.segments(0, 8, 32)  # not 16-aligned
    with pytest.raises(MappingError):
        region.segments(0, 16, 48)  # crosses a chunk


def test_write_region_places_every_element():
    channels, banks, re_, g = 2, 4, 256, 128
    region = Region("r", 1, 37, 160, channels * banks, re_, g)
    image = np.zeros((channels, banks, region.row + region.n_rows, re_), dtype=np.uint16)
    values = np.arange(37 * 160, dtype=np.uint16).reshape(37, 160) + 1
    write_region(image, region, values)
    v, e = np.meshgrid(np.arange(37), np.arange(160), indexing="ij")
    ch, bank, row, el = element_address(1, region.n_local, 160, v, e, channels=channels,
                                        banks=banks, row_elems=re_, gb_elems=g)
    np.testing.assert_array_equal(image[ch, bank, row, el], values)
    # Nothing else was written: the image holds exactly these values once each.
    assert np.count_nonzero(image) == values.size
    assert not image[:, :, 0].any()


def test_map_model_regions(hw):
    cfg = get_model("gpt2-small")
    mm = map_model(cfg, hw)
    regions = list(mm.regions.values())
    assert regions[0].row == 0
    for a, b in zip(regions, regions[1:], strict=False):
        assert b.row == a.row + a.n_rows  # row-aligned, no overlap, no gap
    d = cfg.d_model
    for i in range(cfg.n_layer):
        assert (mm.region(f"h.{i}.attn.c_attn.weight").n_vectors,
                mm.region(f"h.{i}.attn.c_attn.weight").vec_len) == (3 * d, d)
        assert mm.region(f"h.{i}.mlp.c_proj.weight").vec_len == 4 * d
        k = mm.region(f"h.{i}.k_cache")
        v = mm.region(f"h.{i}.v_cache")
        assert (k.n_vectors, k.vec_len) == (cfg.ctx, d)
        # V in blocks of 160 tokens (10 columns): one block of the 6 local dimensions of a
        # channel's banks fills 60 of the 64 columns of its global buffer; 7 blocks hold 1024
        assert (v.n_vectors, v.vec_len) == (7 * d, 160)
    assert mm.region("wte").n_vectors == cfg.vocab
    C, B = hw.dram.channels, hw.dram.banks
    pieces = mm.pieces("h.3.ln_2.bias")
    assert [p[0].name for p in pieces] == ["params_d"] * C and pieces[0][0].vec_len == d // C
    assert [(lo, n) for _r, _v, lo, n in pieces] == [(k * d // C, d // C) for k in range(C)]
    # one piece per channel: vector index -> slot -> channel k for piece k
    assert [v % hw.dram.slots // B for _r, v, _lo, _n in pieces] == list(range(C))
    assert sum(n for *_x, n in mm.pieces("h.5.mlp.c_fc.bias")) == 4 * d
    every = [(p[0].name, p[1]) for n in mm.vectors for p in mm.pieces(n)]
    assert len(set(every)) == len(every)  # no two pieces share a vector
    # every bank is busy: the big matrices have at least one vector per slot
    assert mm.region("h.0.attn.c_proj.weight").n_vectors >= hw.dram.slots


def test_v_cache_blocks_place_each_dimension_in_one_bank_slot():
    """Element (token t, dimension m) of the V cache: vector (t // T) * D + m, element t % T; the
    bank slot is m % slots in every block, and at a short context the blocks of a bank's local
    dimensions share rows (gpt2-xl: d 1600 padded to 1664 = 13 local dimensions, T = 64)."""
    hw = load_hw("pimgpt-gddr6-8ch")
    cfg = get_model("gpt2-xl")
    assert v_dims(cfg, hw) == 1664 and v_block_tokens(cfg, hw, 1024) == 64
    assert v_block_tokens(cfg, hw, 40) == 48
    v = map_model(cfg, hw).region("h.0.v_cache")
    assert (v.n_vectors, v.vec_len) == (16 * 1664, 64)
    t = np.arange(1024)
    for m in (0, 5, 127, 128, 1599):
        ch, bank, row, _ = element_address(v.row, v.n_local, v.vec_len, t // 64 * 1664 + m,
                                           t % 64, channels=8, banks=16, row_elems=1024,
                                           gb_elems=1024)
        assert set((ch * 16 + bank).tolist()) == {m % 128}
    # the first block of every local dimension of a bank: 13 x 64 elements in one row
    _, _, row, _ = element_address(v.row, v.n_local, v.vec_len, np.arange(0, 1664, 128), 0,
                                   channels=8, banks=16, row_elems=1024, gb_elems=1024)
    assert set(row.tolist()) == {v.row}


def test_memmap_yaml(hw):
    cfg = get_model("tiny")
    mm = map_model(cfg, hw, context=40)
    data = yaml.safe_load(mm.to_yaml())
    assert data["model"] == "tiny" and data["context"] == 40
    wte = data["regions"]["wte"]
    assert set(wte) == {"region_row", "n_rows", "n_local", "vec_len", "n_vectors", "bytes"}
    assert wte["n_local"] == -(-256 // hw.dram.slots)
    assert wte["bytes"] == wte["n_rows"] * hw.dram.row_bytes * hw.dram.slots
    assert data["regions"]["h.1.v_cache"]["vec_len"] == 48  # one block: 40 rounded up to 16
    assert data["regions"]["h.1.v_cache"]["n_vectors"] == hw.dram.slots  # 64 dims, padded
    assert data["totals"]["rows_used"] == mm.rows_used
    assert data["totals"]["rows_available"] == hw.dram.rows
    assert data["totals"]["bytes_used"] == sum(r["bytes"] for r in data["regions"].values())
    assert data["vectors"]["ln_f.bias"]["region"] == "params_d"


def test_all_gpt_presets_fit_default_hw(hw):
    # (the Llama presets' capacity on the larger presets: tests/test_llama_models.py)
    for name in ["tiny", *PAPER_MODELS]:
        mm = map_model(PRESETS[name], hw)
        assert mm.rows_used <= hw.dram.rows, name


def test_too_big_model_error():
    with pytest.raises(MappingError, match=r"needs \d+ rows per bank .* has 256 rows.*--hw"):
        map_model(get_model("gpt2-small"), load_hw("tiny-rtl"))


def test_context_range(hw):
    cfg = get_model("tiny")
    for bad in (0, 65, -1, 2.5, True):
        with pytest.raises(MappingError, match="context"):
            map_model(cfg, hw, bad)


def test_dram_image_holds_bf16_weights():
    hw = small_hw(channels=2, banks=4, row_bytes=256, gb_bytes=64, rows=512)
    cfg = ModelConfig("t", n_layer=1, d_model=48, n_head=3, ctx=20, vocab=50)
    w = random_weights(cfg, 3)
    mm = map_model(cfg, hw)
    image = build_dram_image(mm, w)
    assert image.shape == (2, 4, mm.rows_used, 128)
    d = hw.dram
    geo = {"channels": d.channels, "banks": d.banks, "row_elems": d.row_elems,
           "gb_elems": d.gb_elems}

    def read(region, vec, n):
        ch, bank, row, el = element_address(region.row, region.n_local, region.vec_len, vec,
                                            np.arange(n), **geo)
        return image[ch, bank, row, el]

    fc = mm.region("h.0.mlp.c_fc.weight")
    W = w["h.0.mlp.c_fc.weight"]
    for j in (0, 7, 191):
        np.testing.assert_array_equal(read(fc, j, 48), f32_to_bf16(W[:, j]))
    np.testing.assert_array_equal(read(mm.region("wte"), 49, 48), f32_to_bf16(w["wte"][49]))
    pieces = mm.pieces("h.0.attn.c_attn.bias")
    got = np.concatenate([read(reg, idx, n) for reg, idx, _lo, n in pieces])
    # the query part carries the scores' scale 1/sqrt(16) (exact: a power of two)
    bias = w["h.0.attn.c_attn.bias"].astype(np.float32)
    assert mm.q_scale == 0.25
    np.testing.assert_array_equal(
        got, f32_to_bf16(np.concatenate([bias[:48] * np.float32(0.25), bias[48:]])))
    qkv = mm.region("h.0.attn.c_attn.weight")
    W = w["h.0.attn.c_attn.weight"].astype(np.float32)
    for j, f in ((0, 0.25), (47, 0.25), (48, 1.0), (143, 1.0)):
        np.testing.assert_array_equal(read(qkv, j, 48), f32_to_bf16(W[:, j] * np.float32(f)))
    assert not image[:, :, mm.region("h.0.k_cache").row].any()
    with pytest.raises(MappingError, match="lack"):
        build_dram_image(mm, {k: v for k, v in w.items() if k != "wpe"})


def test_fast_bf16_conversion_is_exact():
    rng = np.random.default_rng(1)
    bits = rng.integers(0, 2**32, 200_000, dtype=np.uint64).astype(np.uint32)
    specials = np.array([0, 0x80000000, 0x7F800000, 0xFF800000, 0x7F7FFFFF, 0x00800000,
                         0x3F808000, 0x3F818000, 0x3F80FFFF, 0x3F807FFF, 0x00000001,
                         0x7FC00000, 0xFFFFFFFF], dtype=np.uint32)
    normal = bits[((bits >> 23) & 0xFF) % 255 != 0]
    for arr in (normal, np.concatenate([normal, specials]), specials[:10]):
        x = arr.view(np.float32)
        np.testing.assert_array_equal(to_bf16(x), f32_to_bf16(x))
    x = (rng.standard_normal((300, 7)) * 0.02).astype(np.float32)
    np.testing.assert_array_equal(to_bf16(x), f32_to_bf16(x))
    assert np.all(bf16_to_f32(to_bf16(x)) == bf16_to_f32(f32_to_bf16(x)))


def test_v_cache_parts_follow_the_k_chunks_and_share_no_row():
    """gpt2-xl: K vectors of 1600 elements span two global-buffer chunks (16 and 9 heads); the V
    cache goes in two parts of local indices (8 and 5 of 13), each block-major, and no DRAM row
    holds dimensions of both parts."""
    from pimgpt.sw.mapper import k_chunk_heads, v_local, v_parts

    base = load_hw("pimgpt-gddr6-8ch").raw  # the interleaved V cache (parts are its layout)
    hw = hw_from_dict({**base, "dram": {**base["dram"], "v_channel_major": False}}, where="test")
    cfg = get_model("gpt2-xl")
    assert k_chunk_heads(cfg, hw) == 16
    assert k_chunk_heads(get_model("gpt2-small"), hw) is None
    assert k_chunk_heads(get_model("llama-3.2-1b"), hw) is None  # grouped-query: one part
    parts = v_parts(cfg, hw)
    assert parts == [(0, 8), (8, 13)]
    assert v_parts(get_model("gpt2-small"), hw) == [(0, 6)]  # one chunk: one part
    v = map_model(cfg, hw).region("h.0.v_cache")
    blocks = v.n_vectors // 1664
    rows = []
    for lo, hi in parts:
        locs = [v_local(parts, blocks, blk, i) for blk in range(blocks) for i in range(lo, hi)]
        _, _, row, _ = element_address(v.row, v.n_local, v.vec_len, np.array(locs) * 128,
                                       np.zeros(len(locs), dtype=np.int64), channels=8, banks=16,
                                       row_elems=1024, gb_elems=1024)
        rows.append(set(row.tolist()))
    assert rows[0] and rows[1] and not rows[0] & rows[1]
    locals_all = sorted(v_local(parts, blocks, b, i) for b in range(blocks) for i in range(13))
    assert locals_all == list(range(blocks * 13))  # a permutation of the region's locals


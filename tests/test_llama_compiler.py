"""The compiler on Llama-family models: the RoPE table, the SwiGLU layout, grouped-query attention
(K/V rows streamed once per token for a whole group), the default memory map of long-context
presets, the AiM trace and the DRAM timing checker on Llama programs."""

from __future__ import annotations

import numpy as np
import pytest

from pimgpt.core import isa
from pimgpt.core.config import load_hw
from pimgpt.core.isa import Op
from pimgpt.core.rope import rope_table
from pimgpt.sim.perf.checker import check_log
from pimgpt.sim.perf.engine import PerfEngine
from pimgpt.sw.aim import parse_aim
from pimgpt.sw.checkpoint import random_weights
from pimgpt.sw.compiler import compile_decode_step, compile_generation, hazards, kv_traffic
from pimgpt.sw.image import build_dram_image
from pimgpt.sw.mapper import fc_order, k_layout, map_model, to_bf16
from pimgpt.sw.models import ModelConfig, get_model

TINY_RTL = load_hw("tiny-rtl")


def small_llama(**kw):
    base = dict(n_layer=2, d_model=64, n_head=4, n_kv_head=2, ctx=48, vocab=64, d_ff=96,
                norm="rmsnorm", position="rope", mlp="swiglu", bias=False, tied_head=False)
    return ModelConfig("small-llama", **{**base, **kw})


def test_rope_table_is_sent_as_exact_immediates():
    cfg = get_model("tiny-llama-py")
    cp = compile_generation(cfg, TINY_RTL, [1, 2, 3], 2)
    inv = cfg.rope_inv_freq()
    for st in cp.steps:
        end = next(k for k in range(st.start, len(cp.program)) if cp.tags[k] == "rope")
        fills = []
        while cp.tags[end] == "rope" or cp.program[end].op is Op.SYNC:
            if cp.program[end].op is Op.VFILL:
                fills.append(cp.program[end])
            end += 1
        table = np.zeros(cfg.d_head, np.uint32)
        for ins in fills:
            table[ins["dst"] - fills[0]["dst"]:][:ins["n"]] = ins["value_f32"]
        cos, sin = rope_table([st.pos], inv)
        np.testing.assert_array_equal(table, np.concatenate([cos[0], sin[0]]).view(np.uint32))
        assert len(fills) <= cfg.d_head
    # position 0: cos = 1, sin = 0 (runs of equal values share one VFILL)
    first = [i for i, t in zip(cp.program, cp.tags, strict=True)
             if t == "rope" and i.op is Op.VFILL][:2]
    assert [(i["n"], isa.bits_f32(i["value_f32"])) for i in first] == [(8, 1.0), (8, 0.0)]


def test_rope_table_goes_behind_the_first_qkv_load():
    """The step's RoPE table (``VFILL`` immediates) is first read by layer 0's ``ROPE``: it is
    recorded after layer 0's first QKV load, so the vector unit writes it while the banks
    stream, not before the first GEMV (where nothing hid it)."""
    cp = compile_decode_step(small_llama(), TINY_RTL, 20)
    tags, prog = cp.tags, cp.program
    fills = [k for k, t in enumerate(tags) if t == "rope" and prog[k].op is Op.VFILL]
    load = next(k for k, t in enumerate(tags) if t == "L0.attn.qkv" and prog[k].op is Op.WR_GB)
    first_rope = next(k for k, t in enumerate(tags) if t == "L0.attn.rope")
    assert fills and load < fills[0] and fills[-1] < first_rope
    assert fills == list(range(fills[0], fills[-1] + 1))  # one run


def test_rope_rotates_every_query_and_key_head_once_per_layer():
    cfg = small_llama()
    cp = compile_decode_step(cfg, TINY_RTL, 20)
    for layer in range(cfg.n_layer):
        ropes = [i for i, t in zip(cp.program, cp.tags, strict=True)
                 if t == f"L{layer}.attn.rope" and i.op is Op.ROPE]
        assert all(i["dst"] == i["src"] and i["half"] == cfg.d_head // 2 for i in ropes)
        assert sum(i["nhead"] for i in ropes) == cfg.n_head + cfg.n_kv_head
        # in order over the contiguous q and k heads of the qkv buffer (every query head fits
        # the first global-buffer window here: nothing waits for the keys)
        starts = [i["dst"] for i in ropes]
        assert starts == sorted(starts) and ropes[0]["dst"] == ropes[0]["src"]


def test_rope_rotates_the_first_windows_queries_then_the_keys_then_the_rest():
    """tinyllama on 32 channels: 32 query heads of 64, 4 K/V heads, a 1024-element global
    buffer. The scores' first window needs queries 0-15 and the appended keys; queries 16-31
    are rotated after the keys, while the banks compute the first window's scores."""
    cfg = get_model("tinyllama-1.1b")
    hw = load_hw("pimgpt-gddr6-32ch")
    cp = compile_decode_step(cfg, hw, 16)
    dh = cfg.d_head
    for layer in (0, cfg.n_layer - 1):
        ropes = [i for i, t in zip(cp.program, cp.tags, strict=True)
                 if t == f"L{layer}.attn.rope" and i.op is Op.ROPE]
        q0 = ropes[0]["dst"]
        assert [((i["dst"] - q0) // dh, i["nhead"]) for i in ropes] == [(0, 16), (32, 4), (16, 16)]
        at = [next(k for k, i in enumerate(cp.program) if i is r) for r in ropes]
        k_append = next(k for k, t in enumerate(cp.tags) if t == f"L{layer}.attn.kv")
        assert at[0] < at[1] < at[2] and at[1] < k_append  # the keys before their append


def test_swiglu_layout_interleaves_gate_and_up_by_chunk():
    hw = load_hw("pimgpt-gddr6-8ch")
    cfg = small_llama(d_model=128, n_head=8, d_ff=2500)  # 3 chunks of 1024, 1024, 452
    order = fc_order(cfg, hw)
    f, g = cfg.d_ff, hw.dram.gb_elems
    assert sorted(order.tolist()) == list(range(2 * f))
    assert order[:g].tolist() == list(range(g)) and order[g:2 * g].tolist() == list(range(f, f + g))
    assert order[-452:].tolist() == list(range(f + 2048, 2 * f))
    mm = map_model(cfg, hw)
    w = random_weights(cfg, 1)
    image = build_dram_image(mm, w)
    reg = mm.region("h.0.mlp.c_fc.weight")
    v = 1024 + 5  # region vector 1029: the up projection's column d_ff + 5
    slot, local = v % reg.slots, v // reg.slots
    ch, bank = divmod(slot, hw.dram.banks)
    flat = reg.flat(local, 0)
    row, el = divmod(flat, hw.dram.row_elems)
    got = image[ch, bank, row, el:el + 16]
    assert (got == to_bf16(w["h.0.mlp.c_fc.weight"][:16, f + 5])).all()
    # each SWIGLU reads the gate and up halves of one chunk
    cp = compile_decode_step(cfg, hw, 8)
    sw = [i for i in cp.program[cp.steps[0].start:] if i.op is Op.SWIGLU]
    assert [i["n"] for i in sw] == [1024, 1024, 452] * cfg.n_layer
    assert all(i["up"] - i["gate"] == i["n"] for i in sw)


def test_rmsnorm_gain_is_folded_into_the_weights():
    """A folded RMSNorm's gain is in the weights of the GEMV it feeds: the DRAM image stores
    ``bf16(fp32(gain[i] * W[i, j]))`` (the query columns also carry the scores' scale, a power of
    two), and the step runs no vector instruction between the residual add and the GEMV."""
    cfg = small_llama()
    w = random_weights(cfg, 3)
    rng = np.random.default_rng(0)
    for i in range(cfg.n_layer):
        for ln in ("ln_1", "ln_2"):
            w[f"h.{i}.{ln}.weight"] = rng.uniform(0.5, 1.5, cfg.d_model).astype(np.float32)
    mm = map_model(cfg, TINY_RTL, 20)
    image = build_dram_image(mm, w)
    d = TINY_RTL.dram
    order = fc_order(cfg, TINY_RTL)  # stored vector k of c_fc: the checkpoint's column order[k]
    for name, ln, col, v, scale in (("attn.c_attn", "ln_1", 3, 3, mm.q_scale),
                                    ("mlp.c_fc", "ln_2", 5, int(np.flatnonzero(order == 5)[0]),
                                     1.0)):
        reg = mm.region(f"h.1.{name}.weight")
        slot, local = v % reg.slots, v // reg.slots
        ch, bank = divmod(slot, d.banks)
        row, el = divmod(reg.flat(local, 0), d.row_elems)
        got = image[ch, bank, row, el:el + 16]
        prod = w[f"h.1.{ln}.weight"][:16] * w[f"h.1.{name}.weight"][:16, col]
        assert (got == to_bf16((prod * np.float32(scale)).astype(np.float32))).all(), name
        assert not (got == to_bf16(w[f"h.1.{name}.weight"][:16, col] * np.float32(scale))).all()
    cp = compile_decode_step(cfg, TINY_RTL, 20)
    assert not any(t.endswith((".ln1", ".ln2")) for t in cp.tags)
    assert not any(i.op is Op.VMUL for i in cp.program)
    assert sum(i.op is Op.RMSRSTD for i in cp.program) == 2 * cfg.n_layer


@pytest.mark.parametrize("name,hw_name,heads,passes", [
    ("llama-3.2-1b", "pimgpt-gddr6-16ch", 4, 2),   # 4 query heads per K/V head, d_head 64
    ("llama-3.2-3b", "pimgpt-gddr6-16ch", 2, 4),   # 3 per K/V head, d_head 128
    ("tinyllama-1.1b", "pimgpt-gddr6-16ch", 2, 2),  # 8 per K/V head
])
def test_gqa_streams_each_kv_row_once_per_head_group(name, hw_name, heads, passes):
    """K passes of whole groups; every K/V row opened once per token and head group (serial:
    one group, the ideal); the MACs read each K/V column once per query head of its group (the
    ISA's MAC has one global-buffer operand)."""
    cfg, hw = get_model(name), load_hw(hw_name)
    kl = k_layout(cfg, hw, 1024)
    assert (kl.heads, kl.passes) == (heads, passes)
    for schedule in ("serial", "pipelined"):
        cp = compile_decode_step(cfg, hw, 1024, schedule=schedule)
        t = kv_traffic(cp, cfg)
        assert t["kv_bytes_ideal"] == 2 * cfg.n_layer * 1024 * cfg.kv_dim * 2
        # one SOFTMAX per head group (its heads are consecutive) and layer
        groups = sum(i.op is Op.SOFTMAX for i in cp.program) // cfg.n_layer
        assert (groups == 1) == (schedule == "serial")
        assert t["kv_rows"] <= t["kv_row_opens"] <= groups * t["kv_rows"]
        assert t["kv_bytes"] == t["kv_bytes_mha"] == cfg.group * t["kv_bytes_ideal"]
        assert hazards(cp.program[cp.steps[0].start:], hw.dram.banks) == []


def test_default_memory_map_of_long_context_presets():
    """A 131072-token context fits no preset: the decode step maps the context it attends; GPT
    models keep their whole context."""
    cfg = get_model("llama-3.2-1b")
    hw = load_hw("pimgpt-gddr6-16ch")
    assert compile_decode_step(cfg, hw, 512).memmap.context == 512
    gpt = get_model("gpt2-small")
    assert compile_decode_step(gpt, load_hw("pimgpt-gddr6-8ch"), 128).memmap.context == 1024


def test_aim_trace_of_a_llama_program():
    cfg = get_model("tiny-llama-py")
    cp = compile_generation(cfg, TINY_RTL, [10, 11], 3)
    lines = parse_aim(cp.to_aim(), TINY_RTL)
    pim = [i for i in cp.program if i.op in isa.PIM_OPS]
    macs = [ln for ln in lines if ln.op in ("MAC_ABK", "MAC_SBK")]
    assert len(macs) == sum(i.op in (Op.MAC_ABK, Op.MAC_SBK) for i in pim)
    assert sum(ln.op == "RD_MAC" for ln in lines) == sum(i.op is Op.RD_MAC for i in pim)
    assert sum(ln.op == "SYNC" for ln in lines) == sum(i.op is Op.SYNC for i in cp.program)
    assert lines[-1].op == "EOC"
    # the untied head's rows are in the trace, the (absent) learned positions are not
    head = cp.memmap.region("lm_head")
    assert any(ln.op == "MAC_ABK" and head.row <= ln.fields["row"] < head.row + head.n_rows
               for ln in macs)


@pytest.mark.parametrize("model,hw_name,ctx", [("tiny-llama-py", "tiny-rtl", 40),
                                               ("llama-3.2-1b", "pimgpt-gddr6-16ch", 128)])
def test_llama_decode_steps_are_legal_dram_command_logs(model, hw_name, ctx):
    hw = load_hw(hw_name)
    comp = compile_decode_step(get_model(model), hw, ctx)
    res = PerfEngine(hw).run(comp.program, log=True)
    macs = [i for i in comp.program if i.op in (Op.MAC_ABK, Op.MAC_SBK)]
    assert res.counts["MAC16"] == sum(i["ncols"] * bin(i["ch_mask"]).count("1") for i in macs)
    assert check_log(res.log, hw) == []

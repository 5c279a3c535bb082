"""End to end: compiled programs on the golden simulator vs the independent reference model, bit
for bit; compile of every preset; the `pimgpt compile` and `pimgpt run --backend golden` CLIs."""

import json

import numpy as np
import pytest
import yaml

from pimgpt.cli import main
from pimgpt.core import isa
from pimgpt.core.config import hw_from_dict, load_hw
from pimgpt.sim.golden import run_golden
from pimgpt.sim.reference import pim_generate
from pimgpt.sw.checkpoint import load_weights, random_weights
from pimgpt.sw.compiler import (
    compile_decode_step,
    compile_generation,
    hazards,
    late_norm_positions,
)
from pimgpt.sw.models import LLAMA_MODELS, PAPER_MODELS, PRESETS, ModelConfig, get_model
from pimgpt.sw.tokenizer import encode

HW = load_hw("pimgpt-gddr6-8ch")


def custom_hw(**dram):
    base = load_hw("tiny-rtl").raw
    return hw_from_dict({**base, "dram": {**base["dram"], **dram}}, where="test")


def assert_same_generation(cfg, hw, weights, prompt, new_tokens):
    compiled = compile_generation(cfg, hw, prompt, new_tokens)
    tokens, logits, stats = run_golden(cfg, hw, weights, prompt, new_tokens, compiled=compiled)
    ref_tokens, ref_logits = pim_generate(cfg, weights, hw.dram.gb_elems, prompt, new_tokens,
                                          late_norm_positions(compiled))
    assert tokens == ref_tokens
    assert len(logits) == len(ref_logits) == new_tokens
    for got, want in zip(logits, ref_logits, strict=True):
        assert got.shape == (cfg.vocab,)
        np.testing.assert_array_equal(got.view(np.uint32), np.asarray(want, np.float32)
                                      .view(np.uint32))
    return stats


def test_tiny_bit_identical():
    cfg = get_model("tiny")
    stats = assert_same_generation(cfg, HW, random_weights(cfg, 7), [1, 2, 3], 5)
    assert stats["steps"] == 7 and stats["slow_macs"] == 0


def test_tiny_on_tiny_rtl_hw_bit_identical():
    cfg = get_model("tiny")
    assert_same_generation(cfg, load_hw("tiny-rtl"), random_weights(cfg, 8), [200], 4)


def test_gpt2_small_bit_identical():
    """Two prompt tokens, then three generated tokens (two decode steps): about 40 s."""
    cfg = get_model("gpt2-small")
    assert_same_generation(cfg, HW, random_weights(cfg, 0), [464, 3290], 3)


def test_chunked_dots_straddling_heads_and_long_context_bit_identical():
    """GB of 32 elements: 3 chunks per d_model=96 vector, both heads (d_head 48) straddle a chunk
    boundary, rows of 128 elements split token vectors, and 35 tokens exceed one chunk of p . V."""
    hw = custom_hw(row_bytes=256, gb_bytes=64, rows=2048)
    cfg = ModelConfig("stress", n_layer=1, d_model=96, n_head=2, ctx=48, vocab=40)
    assert_same_generation(cfg, hw, random_weights(cfg, 3), list(range(1, 35)), 2)


def test_v_cache_in_parts_bit_identical():
    """K vectors of 64 elements over global buffers of 32: the V cache goes in two parts (one per
    K chunk, mapper.v_parts), the compiler's chunk-aligned head groups among the candidates; the
    appends and p . V over several blocks match the reference bit for bit."""
    from pimgpt.sw.mapper import v_parts

    hw = custom_hw(row_bytes=256, gb_bytes=64, rows=2048)
    cfg = ModelConfig("parts", n_layer=1, d_model=64, n_head=4, ctx=64, vocab=40)
    assert v_parts(cfg, hw) == [(0, 4), (4, 8)]
    assert_same_generation(cfg, hw, random_weights(cfg, 5), list(range(1, 40)), 3)


def test_heads_narrower_than_channel_bit_identical():
    hw = custom_hw(channels=1, banks=32, bank_groups=4)
    cfg = get_model("tiny")
    assert_same_generation(cfg, hw, random_weights(cfg, 4), [9, 10], 3)


@pytest.mark.parametrize("name", ["tiny", *PAPER_MODELS, *LLAMA_MODELS])
def test_every_preset_compiles_at_max_context(name):
    """GPT presets at their maximum context on the default hardware; Llama presets at 4096 (the
    longest context of the evaluation) on the 32-channel preset, the one that holds them all."""
    cfg = PRESETS[name]
    hw = HW if name not in LLAMA_MODELS else load_hw("pimgpt-gddr6-32ch")
    ctx = min(cfg.ctx, 4096)
    cp = compile_decode_step(cfg, hw, ctx)
    assert cp.steps[0].pos == ctx - 1 and cp.memmap.context == ctx
    assert cp.program[-1].op is isa.Op.EOC
    assert cp.scratchpad_words_used <= hw.asic.scratchpad_words
    assert hazards(cp.program, hw.dram.banks) == []
    score = [i for i, t in zip(cp.program, cp.tags, strict=True) if t == "L0.attn.score"]
    # every (head, local token) score is read once (straddling heads accumulate in the bank;
    # a spill is read and written back once more)
    reads = sum(i["nacc"] for i in score if i.op is isa.Op.RD_MAC)
    spills = sum(i["nacc"] for i in score if i.op is isa.Op.WR_BIAS)
    assert reads - spills == cfg.n_head * -(-ctx // hw.dram.slots)
    ops = {i.op for i in cp.program}
    llama = name in LLAMA_MODELS
    assert (isa.Op.RMSNORM in ops, isa.Op.ROPE in ops, isa.Op.SWIGLU in ops) == (llama,) * 3
    assert (isa.Op.LAYERNORM in ops, isa.Op.VGELU in ops) == (not llama,) * 2


def test_cli_compile_and_memmap(tmp_path):
    out = tmp_path / "c"
    assert main(["compile", "-m", "tiny", "--context", "33", "-o", str(out)]) == 0
    assert sorted(p.name for p in out.iterdir()) == ["memmap.yaml", "program.aim",
                                                     "program.asm", "program.bin"]
    mm = yaml.safe_load((out / "memmap.yaml").read_text())
    assert mm["model"] == "tiny" and mm["context"] == 64
    assert mm["regions"]["h.0.k_cache"]["n_vectors"] == 64
    assert mm["totals"]["rows_used"] == max(r["region_row"] + r["n_rows"]
                                            for r in mm["regions"].values())
    prog = isa.decode((out / "program.bin").read_bytes())
    assert isa.parse_asm((out / "program.asm").read_text()) == prog
    assert (out / "program.aim").read_text().rstrip().endswith("AiM EOC")
    wr = [i for i in prog if i.op is isa.Op.WR_VEC]
    assert [i["vec"] for i in wr] == [32, 32]  # one decode step at position 32


def test_cli_errors(tmp_path, capsys):
    out = tmp_path / "big"
    assert main(["compile", "-m", "gpt2-small", "--hw", "tiny-rtl", "-o", str(out)]) == 1
    err = capsys.readouterr().err
    assert "rows per bank" in err and "--hw" in err and "\n" == err[-1] and err.count("\n") == 1
    assert not out.exists()
    assert main(["run", "-m", "no-such-model"]) == 1
    assert "unknown model 'no-such-model'" in capsys.readouterr().err
    assert main(["compile", "-m", "tiny", "--prompt", "1,x", "-o", str(out)]) == 1
    assert "not a token id" in capsys.readouterr().err
    # a 5001-digit item: named short, and as too large (Python's int() refuses it)
    assert main(["compile", "-m", "tiny", "--prompt", "1," + "9" * 5001, "-o", str(out)]) == 1
    err = capsys.readouterr().err
    assert "too large for a token id" in err and "(5001 characters)" in err and len(err) < 200
    assert main(["run", "-m", "gpt2-small", "--prompt-text", "hi"]) == 1
    assert "byte-level" in capsys.readouterr().err
    assert main(["run", "-m", "tiny", "--prompt", "1", "--new-tokens", "65"]) == 1
    assert "the KV cache of model tiny holds 64; generate at most 64 new tokens" in \
        capsys.readouterr().err
    assert not out.exists()


def test_cli_run_golden_matches_reference(tmp_path, capsys):
    cfg = get_model("tiny")
    stats_file, logits_file = tmp_path / "s.json", tmp_path / "l.npy"
    rc = main(["run", "-m", "tiny", "--backend", "golden", "--prompt", "4,5", "--new-tokens", "3",
               "--seed", "2", "--stats", str(stats_file), "--logits", str(logits_file)])
    assert rc == 0
    tokens, logits = pim_generate(cfg, random_weights(cfg, 2), HW.dram.gb_elems, [4, 5], 3)
    assert f"tokens: {','.join(map(str, tokens))}" in capsys.readouterr().out
    stats = json.loads(stats_file.read_text())
    for key in ("tokens", "prompt", "model", "hw", "backend", "instructions", "seconds",
                "seconds_per_token", "logits_file"):
        assert key in stats, key
    assert stats["tokens"] == tokens and stats["prompt"] == [4, 5] and stats["backend"] == "golden"
    assert stats["model"] == "tiny" and stats["hw"] == HW.name
    assert stats["instructions"] == len(compile_generation(cfg, HW, [4, 5], 3).program)
    saved = np.load(stats["logits_file"])
    np.testing.assert_array_equal(saved.view(np.uint32), np.stack(logits).view(np.uint32))


def test_cli_run_compiled_program_and_corrupt_files(tmp_path, capsys):
    out = tmp_path / "p"
    assert main(["compile", "-m", "tiny", "--prompt", "7,8,9", "--new-tokens", "2",
                 "-o", str(out)]) == 0
    capsys.readouterr()
    stats_file = tmp_path / "s.json"
    assert main(["run", "-m", "tiny", "--program", str(out / "program.bin"),
                 "--stats", str(stats_file)]) == 0
    stats = json.loads(stats_file.read_text())
    cfg = get_model("tiny")
    want, _ = pim_generate(cfg, random_weights(cfg, 0), HW.dram.gb_elems, [7, 8, 9], 2)
    assert stats["tokens"] == want and stats["prompt"] == [7, 8, 9]
    capsys.readouterr()
    blob = (out / "program.bin").read_bytes()
    cases = {"short.bin": blob[:100], "magic.bin": b"NOTPIMGP" + blob[8:],
             "opcode.bin": blob[:16] + b"\x77\x00" + blob[18:], "noeoc.bin": None}
    prog = isa.decode(blob)
    cases["noeoc.bin"] = isa.encode(prog[:-1])
    words = {"short.bin": "truncated", "magic.bin": "bad magic", "opcode.bin": "unknown opcode",
             "noeoc.bin": "does not end with EOC"}
    for name, data in cases.items():
        (tmp_path / name).write_bytes(data)
        assert main(["run", "-m", "tiny", "--program", str(tmp_path / name)]) == 1
        err = capsys.readouterr().err
        assert words[name] in err and name in err, err
    assert main(["run", "-m", "tiny", "--program", str(tmp_path / "missing.bin")]) == 1
    assert "missing.bin: no such file; make a program.bin" in capsys.readouterr().err


def test_cli_prompt_text_byte_model(capsys):
    assert main(["run", "-m", "tiny", "--prompt-text", "ab", "--new-tokens", "2"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("tokens: ") and "text: 'ab" in out


def test_partly_resident_parameters_bit_identical():
    """A scratchpad that holds the parameters of only the first layers: those are loaded once by
    the preamble, the others per layer; the arithmetic is unchanged."""
    from pimgpt.sw.compiler.plan import ScratchPlan
    from pimgpt.sw.mapper import map_model

    cfg = ModelConfig("mid", n_layer=4, d_model=64, n_head=4, ctx=32, vocab=64)
    base = load_hw("pimgpt-gddr6-8ch").raw
    for words in range(2048, 8192, 64):
        hw = hw_from_dict({**base, "asic": {**base["asic"], "scratchpad_words": words}},
                          where="test")
        try:
            plan = ScratchPlan(cfg, hw, map_model(cfg, hw))
        except isa.PimgptError:
            continue
        if 0 < plan.resident_layers < cfg.n_layer:
            break
    else:
        raise AssertionError("no scratchpad size gives a partly resident plan")
    cp = compile_decode_step(cfg, hw, 8)
    pre = cp.steps[0].start
    rows = {cp.memmap.region(r).row for r in ("params_d", "bias_qkv", "bias_fc")}

    def params(prog):
        return [i for i in prog if i.op is isa.Op.RD_VEC and i["region_row"] in rows]
    # the first layers' and the final LayerNorm's in the preamble, the others' per layer:
    # words per layer: 4 LayerNorm vectors of d, biases of d, d, 3d, 4d; per token only 2 of the
    # LayerNorm vectors, the gains (the shifts are folded into the biases of qkv and fc)
    d = cfg.d_model
    assert sum(i["n"] for i in params(cp.program[:pre])) == 13 * d * plan.resident_layers + 2 * d
    assert sum(i["n"] for i in params(cp.program[pre:])) == 11 * d * (cfg.n_layer
                                                                      - plan.resident_layers)
    # each vector in pieces over the channels: a layer's loads touch every channel
    chans = {i["vec"] % hw.dram.slots // hw.dram.banks for i in params(cp.program[pre:])}
    assert chans == set(range(hw.dram.channels))
    assert_same_generation(cfg, hw, random_weights(cfg, 5), [3, 4], 3)


# ---- Llama family: RMSNorm, RoPE, SwiGLU, grouped-query attention, no biases, untied head ------
def llama(name, **kw):
    base = dict(n_layer=1, d_model=128, n_head=8, n_kv_head=2, ctx=48, vocab=64, d_ff=160,
                norm="rmsnorm", position="rope", mlp="swiglu", bias=False, tied_head=False)
    return ModelConfig(name, **{**base, **kw})


@pytest.mark.parametrize("hw_name", ["pimgpt-gddr6-8ch", "tiny-rtl"])
def test_tiny_llama_py_bit_identical(hw_name):
    """The shipped Llama-style model (GQA with 2 query heads per K/V head, Llama 3 RoPE scaling,
    untied head) generates from "def " exactly as the PIM reference."""
    cfg = get_model("tiny-llama-py")
    stats = assert_same_generation(cfg, load_hw(hw_name), load_weights(cfg), encode("def "), 6)
    assert stats["slow_macs"] == 0 and stats["ops"]["ROPE"] >= cfg.n_layer * 9  # 9 steps


def test_gqa_windows_spills_and_blocks_bit_identical():
    """A global buffer of 96 elements holds one K/V head's two query heads (d_head 48): two K
    passes; 24 p . V items per bank against 16 accumulators (spills, restored before their read
    in parts); two SwiGLU chunks (96 + 64); 35 tokens over three V blocks."""
    hw = custom_hw(row_bytes=256, gb_bytes=192, rows=2048)
    cfg = llama("gqa48", d_model=192, n_head=4)
    cp = compile_generation(cfg, hw, list(range(1, 36)), 2)
    ops = [i.op for i in cp.program]
    assert isa.Op.WR_BIAS in ops and ops.count(isa.Op.SWIGLU) == 2 * 36
    assert cp.memmap.region("h.0.k_cache").vec_len == 48
    assert_same_generation(cfg, hw, random_weights(cfg, 5), list(range(1, 36)), 2)


def test_gqa_group_wider_than_the_buffer_bit_identical():
    """A 32-element global buffer is narrower than a group's queries (4 x 16): each K/V head's
    rows are streamed in two windows."""
    hw = custom_hw(row_bytes=256, gb_bytes=64, rows=2048)
    assert_same_generation(llama("gqa-small-gb"), hw, random_weights(llama("gqa-small-gb"), 4),
                           list(range(1, 20)), 2)


def test_mqa_with_heads_narrower_than_a_channel_bit_identical():
    """One K/V head, 32 banks per channel wider than a head: MAC_SBK and the VMOV fallback."""
    hw = custom_hw(channels=1, banks=32, bank_groups=4)
    cfg = llama("mqa", d_model=64, n_head=4, n_kv_head=1, d_ff=64, n_layer=2)
    cp = compile_generation(cfg, hw, [9, 10], 3)
    assert {isa.Op.MAC_SBK, isa.Op.VMOV} <= {i.op for i in cp.program}
    assert_same_generation(cfg, hw, random_weights(cfg, 6), [9, 10], 3)


def test_mixed_architecture_bit_identical():
    """The architecture fields are independent: LayerNorm with RoPE, SwiGLU, GQA, biases and a
    tied head; RMSNorm with learned positions, GELU and an untied head."""
    mix = llama("mix", norm="layernorm", bias=True, tied_head=True, d_model=64, n_head=4,
                n_layer=2)
    assert_same_generation(mix, load_hw("tiny-rtl"), random_weights(mix, 7), [1, 2, 3], 3)
    mix2 = llama("mix2", position="learned", mlp="gelu", d_ff=0, d_model=64, n_head=4)
    assert_same_generation(mix2, load_hw("tiny-rtl"), random_weights(mix2, 8), [1, 2, 3], 3)


def test_llama_without_biases_adds_nothing():
    """No bias adds (adding +0 would turn a -0 into +0): the only VADDs are the residuals."""
    cfg = llama("nb", d_model=64, n_head=4)
    cp = compile_decode_step(cfg, load_hw("tiny-rtl"), 8)
    step = cp.program[cp.steps[0].start:]
    adds = [i for i in step if i.op is isa.Op.VADD]
    assert sum(i["n"] for i in adds) == 2 * cfg.n_layer * cfg.d_model
    assert not any(r in cp.memmap.regions for r in ("wpe", "bias_qkv", "bias_fc"))


def test_cli_run_golden_tiny_llama_py_prints_text(capsys):
    assert main(["run", "-m", "tiny-llama-py", "--backend", "golden", "--prompt-text", "def ",
                 "--new-tokens", "8"]) == 0
    out = capsys.readouterr().out
    cfg = get_model("tiny-llama-py")
    want, _ = pim_generate(cfg, load_weights(cfg), HW.dram.gb_elems, encode("def "), 8)
    assert f"tokens: {','.join(map(str, want))}" in out and "text: 'def " in out


def test_short_head_group_first_bit_identical(monkeypatch):
    """Head groups out of head order (a K chunk's remainder first, a candidate of the pipelined
    schedule): the scores, softmaxes and p . V of each group still match the reference."""
    from pimgpt.core.isa import Op
    from pimgpt.sw.compiler.schedule import PipelinedSchedule, make_schedule
    from pimgpt.sw.mapper import k_chunk_heads

    hw = custom_hw(row_bytes=256, gb_bytes=64, rows=2048)
    cfg = ModelConfig("order", n_layer=2, d_model=80, n_head=5, ctx=48, vocab=40)
    first = [[4], [2, 3], [0, 1]]  # two heads per K chunk of 32 elements
    assert first in make_schedule("pipelined", hw).head_groups(5, 1, k_chunk_heads(cfg, hw))
    monkeypatch.setattr(PipelinedSchedule, "head_groups", lambda self, *a: [first])
    cp = compile_decode_step(cfg, hw, 40)
    assert [i["rows"] for i in cp.program if i.op is Op.SOFTMAX] == [1, 2, 2] * 2
    assert_same_generation(cfg, hw, random_weights(cfg, 6), list(range(1, 30)), 3)


@pytest.mark.parametrize("cfg, groups", [
    (ModelConfig("defer", n_layer=2, d_model=80, n_head=5, ctx=48, vocab=40), [[0, 1], [2, 3, 4]]),
    (llama("defer-gqa", n_layer=2, d_model=128, n_head=8, n_kv_head=2),
     [[0, 1, 2, 3], [4, 5, 6, 7]]),
])
def test_last_head_group_after_the_projection_first_chunk_bit_identical(monkeypatch, cfg,
                                                                        groups):
    """The attention projection's first input chunk (o[0:32]: the first group's heads) is
    streamed before the last group's p . V, which writes only later chunks: still bit for bit
    the reference (multi-head and grouped-query)."""
    from pimgpt.sw.compiler.schedule import PipelinedSchedule

    hw = custom_hw(row_bytes=256, gb_bytes=64, rows=2048)
    monkeypatch.setattr(PipelinedSchedule, "head_groups", lambda self, *a: [groups])
    monkeypatch.setattr(PipelinedSchedule, "v_late", False)  # no trial of the value projection
    monkeypatch.setattr(PipelinedSchedule, "max_merged_groups", 1)  # no one-p.V candidate
    monkeypatch.setattr(PipelinedSchedule, "late_norm", False)  # no trial of SOFTMAXU
    trials = []
    # the candidates are the partition, then it deferring: pick the second
    monkeypatch.setattr(PipelinedSchedule, "estimate", lambda self, p: -len(trials.append(p) or
                                                                           trials))
    cp = compile_decode_step(cfg, hw, 40)
    assert len(trials) == 2
    tags = [t for t in cp.tags if t.startswith("L1.attn.")]
    last_av = max(k for k, t in enumerate(tags) if t == "L1.attn.av")
    assert tags.index("L1.attn.proj") < last_av < len(tags) - tags[::-1].index("L1.attn.proj")
    assert_same_generation(cfg, hw, random_weights(cfg, 7), list(range(1, 30)), 3)
    # the reverse order's last group writes the first chunk: no deferring candidate, no trial
    trials.clear()
    monkeypatch.setattr(PipelinedSchedule, "head_groups", lambda self, *a: [groups[::-1]])
    compile_decode_step(cfg, hw, 40)
    assert trials == []


@pytest.mark.parametrize("v_late", [False, True])
@pytest.mark.parametrize("cfg, groups", [
    (ModelConfig("merged", n_layer=2, d_model=80, n_head=5, ctx=48, vocab=40),
     [[0, 1], [2, 3, 4]]),
    (llama("merged-gqa", n_layer=2, d_model=128, n_head=8, n_kv_head=2),
     [[0, 1, 2, 3], [4, 5, 6, 7]]),
    (llama("merged-gqa3", n_layer=2, d_model=128, n_head=8, n_kv_head=4),
     [[0, 1], [2, 3, 4, 5], [6, 7]]),
])
def test_one_pv_after_the_grouped_softmaxes_bit_identical(monkeypatch, cfg, groups, v_late):
    """Scores and softmaxes by head groups, then one p . V of every head after the last softmax
    (``AttentionLowering._merged``), with the value projection in the QKV GEMV or after the first
    scores: the p . V is that of one group (the same PIM instructions in the same order), the
    softmaxes are the groups', and the generation is bit for bit the reference."""
    from pimgpt.core.isa import Op
    from pimgpt.sw.compiler.schedule import PipelinedSchedule

    hw = custom_hw(row_bytes=256, gb_bytes=64, rows=2048)
    monkeypatch.setattr(PipelinedSchedule, "v_late", v_late)
    monkeypatch.setattr(PipelinedSchedule, "late_norm", False)  # no trial of SOFTMAXU
    trials = []

    def av_and_softmax(parts, sign):
        # sign -1: the last candidate wins (the partition with one p . V); +1: the first
        monkeypatch.setattr(PipelinedSchedule, "estimate",
                            lambda self, p: sign * len(trials.append(p) or trials))
        monkeypatch.setattr(PipelinedSchedule, "head_groups", lambda self, *a: [parts])
        cp = compile_decode_step(cfg, hw, 40)
        pairs = list(zip(cp.tags, cp.program, strict=True))
        return ([i for t, i in pairs if t == "L1.attn.av" and i.op in isa.PIM_OPS
                 and i.op is not Op.SYNC],
                [i["rows"] for t, i in pairs if t.startswith("L1.") and i.op is Op.SOFTMAX])

    merged_av, merged_rows = av_and_softmax(groups, -1)
    one_av, one_rows = av_and_softmax([[a for g in groups for a in g]], 1)
    assert merged_av == one_av and len(one_av) > 10
    assert merged_rows == [len(g) for g in groups] and one_rows == [cfg.n_head]
    monkeypatch.setattr(PipelinedSchedule, "estimate",
                        lambda self, p: -len(trials.append(p) or trials))
    monkeypatch.setattr(PipelinedSchedule, "head_groups", lambda self, *a: [groups])
    assert_same_generation(cfg, hw, random_weights(cfg, 8), list(range(1, 30)), 3)


def test_bad_seed_and_logits_name_fail_before_anything_is_printed(tmp_path, capsys):
    """Values are checked before the run announces its default prompt; ``--logits`` is always
    NumPy's .npy, so another suffix is refused instead of silently written as .npy."""
    assert main(["run", "-m", "tiny", "--seed", "99999999999"]) == 1
    cap = capsys.readouterr()
    assert cap.out == "" and "seed 99999999999 is out of range" in cap.err
    bad = tmp_path / "l.txt"
    assert main(["run", "-m", "tiny", "--logits", str(bad)]) == 1
    cap = capsys.readouterr()
    assert cap.out == "" and "give a file name ending in .npy" in cap.err
    assert not bad.exists()

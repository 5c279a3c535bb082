"""Compiler: program structure, SYNC placement, locality, scratchpad limits, errors, outputs."""

from collections import Counter

import numpy as np
import pytest
import yaml

from pimgpt.core import isa
from pimgpt.core.config import hw_from_dict, load_hw
from pimgpt.core.fileio import OutputError
from pimgpt.core.isa import FLAG_VEC_FROM_REG, Op
from pimgpt.sw.aim import AimError, parse_aim
from pimgpt.sw.compiler import (
    CompileError,
    attention_plan,
    compile_decode_step,
    compile_generation,
    hazards,
)
from pimgpt.sw.compiler.schedule import make_schedule
from pimgpt.sw.mapper import map_model
from pimgpt.sw.models import ModelConfig, get_model

#: The default hardware with the interleaved V cache, whose program structure these tests spell
#: out (``tests/test_v_channel_major.py`` covers the default channel-major layout).
_DEFAULT = load_hw("pimgpt-gddr6-8ch").raw
HW = hw_from_dict({**_DEFAULT, "dram": {**_DEFAULT["dram"], "v_channel_major": False}},
                  where="test")


def custom_hw(dram=None, asic=None):
    base = load_hw("tiny-rtl").raw
    return hw_from_dict({**base, "dram": {**base["dram"], **(dram or {})},
                         "asic": {**base["asic"], **(asic or {})}}, where="test")


@pytest.fixture(scope="module", params=["pipelined", "serial"])
def small_step(request):
    return compile_decode_step(get_model("gpt2-small"), HW, 300, schedule=request.param)


def mac_cells(cp, tag):
    """(row, column) of every MAC_ABK column streamed under ``tag``, in program order."""
    cells = []
    for ins, t in zip(cp.program, cp.tags, strict=True):
        if t == tag and ins.op is Op.MAC_ABK:
            cells += [(ins["row"], ins["col"] + k) for k in range(ins["ncols"])]
    return cells


@pytest.mark.parametrize("name", ["attn.c_attn", "attn.c_proj", "mlp.c_fc", "mlp.c_proj"])
def test_gemv_streams_every_weight_column_once_in_row_order(small_step, name):
    cp = small_step
    tag = {"attn.c_attn": "L4.attn.qkv", "attn.c_proj": "L4.attn.proj",
           "mlp.c_fc": "L4.mlp.fc", "mlp.c_proj": "L4.mlp.proj"}[name]
    region = cp.memmap.region(f"h.4.{name}.weight")
    cells = mac_cells(cp, tag)
    cols_per_row = HW.dram.cols_per_row
    flat = [r * cols_per_row + c for r, c in cells]
    first = region.row * cols_per_row
    assert sorted(flat) == list(range(first, first + region.n_elems // 16))  # each column once
    rows = [r for r, _ in cells]
    # every row is opened once (several input chunks may walk their blocks backwards)
    assert sum(1 for a, b in zip(rows, rows[1:], strict=False) if a != b) == region.n_rows - 1


def test_all_banks_busy_in_gemvs(small_step):
    masks = Counter(ins["ch_mask"] for ins, t in zip(small_step.program, small_step.tags,
                                                       strict=True)
                    if ins.op is Op.MAC_ABK and t.endswith((".qkv", ".fc", ".proj")))
    full = (1 << HW.dram.channels) - 1
    assert masks[full] / sum(masks.values()) > 0.9


def test_program_shape(small_step):
    cp = small_step
    prog = cp.program
    assert prog[-1].op is Op.EOC and sum(i.op is Op.EOC for i in prog) == 1
    assert len(cp.tags) == len(prog)
    assert hazards(prog, HW.dram.banks) == []
    assert 0 < cp.scratchpad_words_used <= HW.asic.scratchpad_words
    kinds = cp.tag_counts("kind")
    for kind in ("attn.qkv", "attn.kv", "attn.score", "attn.softmax", "attn.av", "attn.proj",
                 "mlp.fc", "mlp.gelu", "mlp.proj", "ln1", "ln2", "embed", "lm_head", "argmax"):
        assert kinds[kind] > 0, kind
    layers = cp.tag_counts("layer")
    assert layers["L0"] == layers["L11"] and "L12" not in layers
    ops = Counter(i.op for i in prog)
    # ln_1 and ln_2 folded into qkv and fc: LNCENTRE before, LNRSTD behind the first load, one
    # VMADS per output group instead of the bias add; ln_f stays one LAYERNORM
    assert ops[Op.LAYERNORM] == 1 and ops[Op.LNCENTRE] == ops[Op.LNRSTD] == 2 * 12
    assert sum(i["n"] for i in prog if i.op is Op.VMADS) == 12 * (3 * 768 + 3072)
    # every epilogue scales by the rstd word the LNRSTDs write
    assert {i["s"] for i in prog if i.op is Op.VMADS} == {i["dst"] for i in prog
                                                         if i.op is Op.LNRSTD}
    # GELU over every fc output once (the pipelined schedule applies it group by group)
    assert sum(i["n"] for i in prog if i.op is Op.VGELU) == 12 * 3072
    # fc groups aligned with the MLP projection's input chunks (1024 outputs = 8 local vectors)
    groups = make_schedule(cp.schedule, HW).gemv_groups(3072 // 128, 1024 // 128)
    assert ops[Op.VGELU] == 12 * len(groups)
    assert ops[Op.WR_VEC] == 12 and ops[Op.WR_ELEM] == 12
    # one SOFTMAX per head group (serial: all 12; pipelined: the cost model's partition at this
    # context, the same in every layer), over rows of 300 scores padded to 304 with -inf (one
    # VFILL per row)
    soft = [(i["n"], i["rows"]) for i in prog if i.op is Op.SOFTMAX]
    per_layer = len(soft) // 12
    assert len(soft) == 12 * per_layer and soft == soft[:per_layer] * 12
    assert {n for n, _ in soft} == {304} and sum(r for _, r in soft[:per_layer]) == 12
    assert per_layer == 1 if cp.schedule == "serial" else per_layer >= 1
    late = [t for i, t in zip(prog, cp.tags, strict=True) if i.op is Op.WR_GB
            and t in ("L0.attn.score", "L0.attn.qkv")]
    # the value projection's input load comes after the scores' when the plan runs it late
    v_late = attention_plan(cp)["value_projection_late"]
    assert late[-1] == ("L0.attn.qkv" if v_late else "L0.attn.score")
    assert not v_late or cp.schedule == "pipelined"
    fills = [i for i, t in zip(prog, cp.tags, strict=True)
             if i.op is Op.VFILL and t.endswith("attn.softmax")]
    assert len(fills) == 12 * 12 and {(i["n"], i["value_f32"]) for i in fills} == {(4, 0xFF800000)}
    assert ops[Op.ARGMAX] == 1 and ops[Op.OUT] == 1
    # the logits are scanned read group by read group (serial: one): ARGMAX over the first,
    # ARGMAXC over each later one, contiguous and in order, over the whole vocabulary, OUT last
    n_local = -(-50257 // HW.dram.slots)
    read = make_schedule(cp.schedule, HW).read_groups(n_local, HW.dram.accumulators)
    chain = [i for i in prog if i.op in (Op.ARGMAX, Op.ARGMAXC)]
    assert len(chain) == len(read) == (1 if cp.schedule == "serial" else 3)
    assert chain[0].op is Op.ARGMAX and chain[0]["n"] == min(50257, read[0][1] * HW.dram.slots)
    for piece, (i0, i1) in zip(chain[1:], read[1:], strict=True):
        assert (piece.op, piece["lo"], piece["lo"] + piece["n"]) == (
            Op.ARGMAXC, i0 * HW.dram.slots, min(50257, i1 * HW.dram.slots))
    assert prog.index(chain[-1]) < [i.op for i in prog].index(Op.OUT)
    # score MACs: one RD_MAC per head per local token group (300 tokens -> 3 locals of 128)
    score_rd = sum(1 for i, t in zip(prog, cp.tags, strict=True)
                   if t == "L0.attn.score" and i.op is Op.RD_MAC)
    assert score_rd == 12 * 3
    # the preamble loads the resident parameters and ends with a SYNC
    pre = cp.steps[0].start
    assert pre > 0 and prog[pre - 1].op is Op.SYNC
    assert {t for t in cp.tags[:pre]} == {"preamble"}
    assert {i.op for i in prog[:pre - 1]} == {Op.RD_VEC}
    per_token = [i["region_row"] for i in prog[pre:] if i.op is Op.RD_VEC]
    assert per_token == [cp.memmap.region("wte").row, cp.memmap.region("wpe").row]
    # every SYNC of the step sits between a producer on one side and a consumer on the other
    for k, ins in enumerate(prog):
        if ins.op is Op.SYNC and pre <= k and k + 1 < len(prog) - 2:
            assert hazards(prog[:k] + prog[k + 1:], HW.dram.banks), "a SYNC is redundant"
            break


def test_hazard_checker_catches_missing_sync():
    cp = compile_generation(get_model("tiny"), HW, [1, 2], 2)
    pre = cp.steps[0].start  # the SYNC ending the preamble is a deliberate barrier
    syncs = [k for k, i in enumerate(cp.program) if i.op is Op.SYNC and k >= pre]
    removed = 0
    for k in syncs[:-1]:
        prog = cp.program[:k] + cp.program[k + 1:]
        removed += bool(hazards(prog, HW.dram.banks))
    assert removed == len(syncs) - 1  # no SYNC is superfluous


def test_generation_structure():
    cfg = get_model("tiny")
    cp = compile_generation(cfg, HW, [5, 6, 7], 4)
    ops = Counter(i.op for i in cp.program)
    assert ops[Op.OUT] == 4 and ops[Op.ARGMAX] == 4
    assert [i["imm"] for i in cp.program if i.op is Op.SETR] == [5, 6, 7]
    by_reg = [i for i in cp.program if i.op is Op.RD_VEC and i.flags & FLAG_VEC_FROM_REG]
    assert len(by_reg) == len(cp.steps) == 3 + 3
    assert [s.pos for s in cp.steps] == list(range(6))
    assert [s.logits for s in cp.steps] == [False, False, True, True, True, True]
    assert [cp.program[s.start].op for s in cp.steps[:3]] == [Op.SETR] * 3
    # K/V appends at every position
    assert [i["vec"] for i in cp.program if i.op is Op.WR_VEC][::2] == list(range(6))
    assert [i["elem"] for i in cp.program if i.op is Op.WR_ELEM][1::2] == list(range(6))
    assert hazards(cp.program, HW.dram.banks) == []


def test_text_forms_round_trip(tmp_path):
    cp = compile_generation(get_model("tiny"), HW, [1], 2)
    assert isa.parse_asm(cp.to_asm()) == cp.program
    assert isa.decode(cp.encode()) == cp.program
    lines = parse_aim(cp.to_aim(), HW)
    pim = [i for i in cp.program if i.op in isa.PIM_OPS]
    macs = [ln for ln in lines if ln.op in ("MAC_ABK", "MAC_SBK")]
    assert len(macs) == sum(i.op in (Op.MAC_ABK, Op.MAC_SBK) for i in pim)
    assert sum(ln.op == "SYNC" for ln in lines) == sum(i.op is Op.SYNC for i in cp.program)
    assert lines[-1].op == "EOC"
    paths = cp.write(tmp_path / "out")
    assert sorted(p.name for p in paths.values()) == ["memmap.yaml", "program.aim",
                                                      "program.asm", "program.bin"]
    assert isa.decode((tmp_path / "out" / "program.bin").read_bytes()) == cp.program
    assert yaml.safe_load((tmp_path / "out" / "memmap.yaml").read_text())["model"] == "tiny"
    assert [p.name for p in tmp_path.iterdir()] == ["out"]  # no temporary directory left


def test_write_leaves_nothing_on_error(tmp_path, monkeypatch):
    cp = compile_decode_step(get_model("tiny"), HW, 10)

    def boom(self):
        raise CompileError("simulated failure")

    monkeypatch.setattr(type(cp.memmap), "to_yaml", boom)
    with pytest.raises(CompileError):
        cp.write(tmp_path / "out")
    assert list(tmp_path.iterdir()) == []


def test_aim_parser_rejects_bad_traces():
    good = "# c\nAiM WR_GB 4 0 0xff\nAiM MAC_ABK 64 0xff 7\nW GPR 3\nR MEM 0 1 2\nAiM EOC\n"
    assert len(parse_aim(good, HW)) == 5
    bad = {
        "AiM FROB 1\nAiM EOC\n": r"t.aim:1: unknown AiM op",
        "AiM MAC_ABK 64 0xff\nAiM EOC\n": r"t.aim:1: AiM MAC_ABK takes 3",
        "AiM MAC_ABK 65 0xff 7\nAiM EOC\n": r"t.aim:1: opsize",
        "AiM RD_MAC 0 0x100\nAiM EOC\n": r"t.aim:1: channel mask",
        "AiM MAC_SBK 1 0x1 16 0\nAiM EOC\n": r"t.aim:1: bank 16",
        "AiM MAC_ABK 1 0x1 99999\nAiM EOC\n": r"t.aim:1: row 99999",
        "AiM WR_GB x 0 1\nAiM EOC\n": r"t.aim:1: opsize 'x'",
        "\nX GPR 1\nAiM EOC\n": r"t.aim:2: a line starts",
        "W FOO 1\nAiM EOC\n": r"t.aim:1: expected",
        "AiM EOC\nAiM SYNC\n": r"t.aim:2: .*after EOC",
        "AiM SYNC\n": r"does not end",
        "AiM\nAiM EOC": r"t.aim:1: 'AiM' without",
    }
    for text, words in bad.items():
        with pytest.raises(AimError, match=words):
            parse_aim(text, HW, source="t.aim")


def test_heads_narrower_than_a_channel_use_single_bank_macs():
    hw = custom_hw({"channels": 1, "banks": 32, "bank_groups": 4})
    cp = compile_decode_step(get_model("tiny"), hw, 20)  # d_head 16 < 32 banks
    ops = Counter(i.op for i in cp.program)
    assert ops[Op.MAC_SBK] > 0 and hazards(cp.program, 32) == []


def test_scratchpad_limit_error():
    hw = custom_hw({"rows": 4096}, {"scratchpad_words": 1000})
    with pytest.raises(CompileError, match=r"needs \d+ scratchpad words .* has 1000.*"
                                           r"scratchpad_words"):
        compile_decode_step(get_model("tiny"), hw)


def test_input_errors():
    cfg = get_model("tiny")
    with pytest.raises(CompileError, match="empty"):
        compile_generation(cfg, HW, [], 1)
    with pytest.raises(CompileError, match="not an id"):
        compile_generation(cfg, HW, [256], 1)
    with pytest.raises(CompileError, match="not an id"):
        compile_generation(cfg, HW, [1.5], 1)
    with pytest.raises(CompileError, match="new_tokens"):
        compile_generation(cfg, HW, [1], 0)
    with pytest.raises(CompileError, match="^60 prompt tokens [+] 6 new tokens need 65 "
                       "KV-cache positions .* holds 64; generate at most 5 new tokens or shorten "
                       "the prompt to at most 59 tokens$"):
        compile_generation(cfg, HW, list(range(60)), 6)
    with pytest.raises(CompileError, match="KV cache of model tiny holds 10"):
        compile_generation(cfg, HW, [1] * 8, 4, memmap=map_model(cfg, HW, 10))
    with pytest.raises(CompileError, match="^11 prompt tokens [+] 11 new tokens need 21 .* "
                       "holds 10; give at most 11 prompt and new tokens in all$"):
        compile_generation(cfg, HW, [1] * 11, 11, memmap=map_model(cfg, HW, 10))
    with pytest.raises(CompileError, match="^1 prompt token [+] 10 new tokens need 10 .* "
                       "holds 9; generate at most 9 new tokens$"):
        compile_generation(cfg, HW, [1], 10, memmap=map_model(cfg, HW, 9))
    with pytest.raises(CompileError, match="context"):
        compile_decode_step(cfg, HW, 65)
    with pytest.raises(CompileError, match="another model"):
        compile_decode_step(cfg, HW, 8, memmap=map_model(get_model("gpt2-small"), HW))
    compile_generation(cfg, HW, list(range(60)), 5)  # exactly fills the context


@pytest.mark.parametrize("n_acc", [1, 32])
def test_straddling_heads_and_long_context(n_acc):
    """d_head 48 with GB chunks of 32 (heads straddle chunks); context longer than a chunk: every
    score and every output accumulates in one accumulator across the chunks (no partial sums);
    with one accumulator per bank, the scores in progress are spilled and restored."""
    hw = custom_hw({"row_bytes": 256, "gb_bytes": 64, "rows": 2048, "accumulators": n_acc})
    cfg = ModelConfig("s", n_layer=1, d_model=96, n_head=2, ctx=80, vocab=40)
    cp = compile_decode_step(cfg, hw, 70)
    assert hazards(cp.program, hw.dram.banks) == []
    assert not any(i.op is Op.VREDUCE for i in cp.program)
    soft = [i for i, t in zip(cp.program, cp.tags, strict=True) if t == "L0.attn.softmax"]
    assert not any(i.op is Op.VADD for i in soft)
    # each head's row once (in one or two head groups: the cost model's choice)
    assert sum(i["rows"] for i in soft if i.op is Op.SOFTMAX) == 2
    score = [i for i, t in zip(cp.program, cp.tags, strict=True) if t == "L0.attn.score"]
    reads = sum(i["nacc"] for i in score if i.op is Op.RD_MAC)
    spills = sum(i["nacc"] for i in score if i.op is Op.WR_BIAS)
    # 70 tokens over 8 bank slots: 9 local tokens, one final read per (head, local token)
    assert reads - spills == 2 * 9
    # both heads straddle a chunk boundary ([0, 48): 32 | 16, [48, 96): 16 | 32): with one
    # accumulator the (head, local token) scores in progress are spilled, each at most once
    assert (0 < spills <= 2 * 9) if n_acc == 1 else spills == 0
    # q chunks: head 0 needs chunks 0 and 1, head 1 chunks 1 and 2; each is loaded once (the
    # buffers still hold chunk 1 when head 1's scores start)
    srcs = [i["src"] for i in score if i.op is Op.WR_GB]
    assert [a - srcs[0] for a in srcs] == [0, 32, 64]


def test_gpt2_xl_decode_compiles():
    # Its compile time is a benchmark figure (pimgpt.apps.bench_compiler), not asserted here.
    cp = compile_decode_step(get_model("gpt2-xl"), HW, 1024)
    assert len(cp.program) > 50_000
    assert cp.scratchpad_words_used <= HW.asic.scratchpad_words
    assert np.all(np.array([i.op for i in cp.program[-2:]]) == [Op.SYNC, Op.EOC])
    # Its K vectors (1600 elements) span two global-buffer chunks of 16 and 9 heads: the cost
    # model picks one head group per chunk, so no group opens the other's K rows (in either
    # order: the reversed one, the short group first, is a candidate too).
    rows = [i.args["rows"] for i in cp.program if i.op is Op.SOFTMAX]
    assert sorted(rows[:2]) == [9, 16]


def test_head_group_candidates_include_one_group_per_k_chunk():
    sched = make_schedule("pipelined", HW)
    cands = sched.head_groups(25, 1, align=16)
    assert [list(range(16)), list(range(16, 25))] in cands
    assert [list(range(16, 25)), list(range(16))] in cands  # the short group first
    # every candidate whose first group is longer than its last also comes reversed, once
    longer = [c for c in cands if len(c[0]) > len(c[-1])]
    assert longer and all(c[::-1] in cands for c in longer)
    assert len(cands) == len(set(map(str, cands)))
    assert all(sorted(sum(c, [])) == list(range(25)) for c in cands)
    assert sched.head_groups(12, 1, align=16) == sched.head_groups(12, 1)  # one chunk: nothing new
    # grouped-query attention: the chunk holds K/V heads, a group their query heads
    assert [list(range(0, 8)), list(range(8, 12))] in sched.head_groups(12, 4, align=2)


def test_write_to_a_file_path_is_a_clear_error(tmp_path):
    target = tmp_path / "taken"
    target.write_text("x")
    cp = compile_decode_step(get_model("tiny"), HW, 4)
    with pytest.raises(OutputError, match="exists and is not a folder"):
        cp.write(target)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["taken"]


# ---- software pipelining ---------------------------------------------------------------------
def test_unknown_schedule_is_a_clear_error():
    with pytest.raises(CompileError, match="unknown schedule 'fast'.*pipelined, serial"):
        compile_decode_step(get_model("tiny"), HW, 4, schedule="fast")


def _golden_bits(cfg, hw, prompt, new_tokens, schedule, seed):
    from pimgpt.sim.golden import run_golden
    from pimgpt.sw.checkpoint import random_weights

    cp = compile_generation(cfg, hw, prompt, new_tokens, schedule=schedule)
    assert cp.schedule == schedule and hazards(cp.program, hw.dram.banks) == []
    tokens, logits, _ = run_golden(cfg, hw, random_weights(cfg, seed), prompt, new_tokens,
                                   compiled=cp)
    return tokens, np.stack(logits).view(np.uint32)


@pytest.mark.parametrize("hw_name", ["pimgpt-gddr6-8ch", "tiny-rtl"])
def test_pipelined_schedule_is_bit_identical_to_serial(hw_name):
    """Same tokens and logits bit for bit (tests/test_end_to_end.py also checks the pipelined
    default against the reference model on chunked GEMVs, straddling heads, several p . V
    chunks and heads narrower than a channel)."""
    cfg, hw, prompt = get_model("tiny"), load_hw(hw_name), [1, 2, 3]
    serial = _golden_bits(cfg, hw, prompt, 3, "serial", 5)
    piped = _golden_bits(cfg, hw, prompt, 3, "pipelined", 5)
    assert serial[0] == piped[0]
    np.testing.assert_array_equal(serial[1], piped[1])


def test_pipelined_schedule_is_faster_on_gpt2_small():
    """Perf simulator, gpt2-small decode at context 128 with a slow vector unit (16 lanes, single
    issue, so that there is vector work to hide): serial 312 us, pipelined 265 us.

    Margin: GELU now runs while the PIM streams the rest of the fc rows and the first chunks of
    the MLP projection, and each softmax hides later heads' scores and earlier heads' p . V:
    about 15 % of the serial token, so we require at least 10 % and five times the hidden time.
    (On the default 128-lane dual-issue unit the gain is 4 %: there is little left to hide.)
    """
    from pimgpt.sim.perf.engine import PerfEngine
    from pimgpt.sim.perf.report import breakdown

    raw = dict(HW.raw)
    raw["asic"] = dict(raw["asic"], vector_lanes=16, vector_issue_width=1)
    hw = hw_from_dict(raw, where="slow vector unit")
    cfg = get_model("gpt2-small")
    res, hidden = {}, {}
    for schedule in ("serial", "pipelined"):
        cp = compile_decode_step(cfg, hw, 128, schedule=schedule)
        assert hazards(cp.program, hw.dram.banks) == []
        r = PerfEngine(hw).run(cp.program)
        res[schedule] = r.cycles
        hidden[schedule] = breakdown(r, cp.tags)["hidden_ns"]
        # Every bank of every selected channel does one MAC step per column of a MAC_ABK.
        assert r.mac_bank_cols == sum(i["ncols"] * bin(i["ch_mask"]).count("1") * HW.dram.banks
                                      for i in cp.program if i.op is Op.MAC_ABK)
    assert res["pipelined"] < 0.9 * res["serial"], res
    assert hidden["pipelined"] > 5 * hidden["serial"], hidden


@pytest.mark.parametrize("schedule", ["pipelined", "serial"])
def test_pipelined_intervals_overlap_vector_work_with_pim_work(schedule):
    """Between two SYNCs the vector unit runs softmaxes next to PIM MACs, and GELUs next to the
    MACs of the fc or MLP projection GEMV (the serial schedule never does). The softmaxes run
    next to the value projection (one head group with the value projection under it), the next
    group's scores (``p . V`` of all heads after the softmaxes) or the group before's ``p . V``
    (several groups), whichever plan the cost model chooses at context 512."""
    cp = compile_decode_step(get_model("gpt2-small"), HW, 512, schedule=schedule)
    overlaps = Counter()
    interval: list = []
    for ins, tag in zip(cp.program, cp.tags, strict=True):
        if ins.op is Op.SYNC or ins.op is Op.EOC:
            asic = {i.op for i, _ in interval}
            mac_kinds = {t.partition(".")[2] for i, t in interval if i.op is Op.MAC_ABK}
            if Op.SOFTMAX in asic and mac_kinds & {"attn.av", "attn.qkv", "attn.score"}:
                overlaps["softmax"] += 1
            if Op.VGELU in asic and mac_kinds & {"mlp.fc", "mlp.proj"}:
                overlaps["gelu"] += 1
            interval = []
        else:
            interval.append((ins, tag))
    if cp.schedule == "serial":
        assert overlaps == Counter()
    else:
        # in every layer the softmaxes run next to PIM work of the attention (above); GELU of
        # fc groups next to later fc groups or the projection's first chunks
        assert overlaps["softmax"] >= 12 and overlaps["gelu"] >= 12 * 2, overlaps


def test_preamble_is_outside_the_per_token_figures():
    """A decode step starts with the preamble that loads the resident parameters; the perf
    statistics report the step without it, also for a run that has only the tags (sweeps)."""
    from pimgpt.sim.perf.engine import PerfEngine
    from pimgpt.sim.perf.summary import run_compiled, summarize
    from pimgpt.sw.compiler import preamble_length

    cp = compile_decode_step(get_model("tiny"), HW, 16)
    pre = preamble_length(cp.tags)
    assert pre == cp.steps[0].start > 0 and cp.steps[0].token is None
    res, st = run_compiled(cp, HW)
    assert st["preamble"]["latency_ns"] > 0
    assert st["decode"]["latency_ns"] + st["preamble"]["latency_ns"] == pytest.approx(
        st["whole"]["latency_ns"])
    tags_only = summarize(PerfEngine(HW).run(cp.program, marks=[pre]), HW, cp.tags)
    assert tags_only["latency_ns_per_token"] == st["latency_ns_per_token"]
    assert tags_only["energy_nj_per_token"] == pytest.approx(st["energy_nj_per_token"])


def test_scale_folded_into_q_is_bit_identical(monkeypatch):
    """With ``1/sqrt(d_head)`` a power of two (tiny: d_head 16) the DRAM image's query weights
    and biases carry it (``MemoryMap.q_scale``) and no ``VSCALE`` is left; without the fold the
    vector unit scales the scores: the same tokens and logits bit for bit, and the image's
    query columns hold exactly a quarter of the unfolded ones."""
    from pimgpt.sw import models
    from pimgpt.sw.checkpoint import random_weights
    from pimgpt.sw.image import build_dram_image
    from pimgpt.sw.mapper import map_model

    cfg, hw = get_model("tiny"), load_hw("pimgpt-gddr6-8ch")
    prompt = [int(x) for x in np.random.default_rng(3).integers(0, cfg.vocab, 40)]
    assert models.folded_q_scale(16) == 0.25 and models.folded_q_scale(64) == 0.125
    assert models.folded_q_scale(128) == 1.0 and models.folded_q_scale(96) == 1.0
    w = random_weights(cfg, 7)

    def run():
        cp = compile_generation(cfg, hw, prompt, 3)
        n = sum(i.args["n"] for i in cp.program if i.op is Op.VSCALE)
        image = build_dram_image(map_model(cfg, hw), w).astype(np.uint32) << 16
        return n, _golden_bits(cfg, hw, prompt, 3, "pipelined", 7), image.view(np.float32)
    folded_n, folded, folded_image = run()
    monkeypatch.setattr(models, "folded_q_scale", lambda d_head: 1.0)
    plain_n, plain, plain_image = run()
    assert folded_n == 0 < plain_n
    assert folded[0] == plain[0]
    np.testing.assert_array_equal(folded[1], plain[1])
    differ = folded_image != plain_image
    assert differ.any()
    np.testing.assert_array_equal(folded_image[differ], plain_image[differ] * np.float32(0.25))


def test_v_append_runs_beside_the_first_softmax():
    """V's append (element-wise, a few hundred tCK) is recorded after the first scores, so the
    PIM writes it while the vector unit computes the first softmax: in every layer one SYNC
    interval holds both."""
    cp = compile_decode_step(get_model("gpt2-small"), HW, 128)
    both, ops = 0, set()
    for ins in cp.program:
        if ins.op in (Op.SYNC, Op.EOC):
            both += {Op.WR_ELEM, Op.SOFTMAX} <= ops
            ops = set()
        else:
            ops.add(ins.op)
    assert both == 12


@pytest.mark.parametrize("model,hw_name", [("tiny", "pimgpt-gddr6-8ch"), ("tiny", "tiny-rtl"),
                                           ("tiny-llama-py", "tiny-rtl")])
def test_late_value_projection_is_bit_identical(model, hw_name, monkeypatch):
    """The value projection split off the QKV GEMV and run under the first softmaxes computes
    the same tokens and logits bit for bit as the fused GEMV (and as the serial schedule): the
    split changes only the order of output groups, never an accumulation."""
    from pimgpt.sw.compiler.schedule import PipelinedSchedule

    cfg, hw = get_model(model), load_hw(hw_name)
    prompt = [int(x) for x in np.random.default_rng(5).integers(0, cfg.vocab, 20)]
    out = {}
    for late in (False, True):
        monkeypatch.setattr(PipelinedSchedule, "v_late", late)
        cp = compile_generation(cfg, hw, prompt, 3)
        # late: the value projection's loads come after the first scores of every step
        first = next(i for i, t in enumerate(cp.tags) if t == "L0.attn.score")
        moved = [i for i in range(first, cp.steps[1].start)
                 if cp.tags[i] == "L0.attn.qkv" and cp.program[i].op is Op.WR_GB]
        assert bool(moved) == late
        out[late] = _golden_bits(cfg, hw, prompt, 3, "pipelined", 9)
    serial = _golden_bits(cfg, hw, prompt, 3, "serial", 9)
    for late in (False, True):
        assert out[late][0] == serial[0]
        np.testing.assert_array_equal(out[late][1], serial[1])


def test_late_value_projection_hides_the_softmax_at_long_context():
    """gpt2-medium at context 1024: one head group's softmaxes (16 rows of 1024) take about
    2 us a layer. With the value projection in the QKV GEMV the PIM waits for them; late, it
    computes the value projection meanwhile. The cost model picks late; measured 446.8 us a
    token against 464.3 us with the value projection in the QKV GEMV (interleaved V cache).
    One vector unit, whose softmaxes are the longest (the default's two halve them)."""
    from pimgpt.core.config import hw_variant
    from pimgpt.sim.perf.engine import PerfEngine

    cfg, hw = get_model("gpt2-medium"), hw_variant(HW, "asic", vector_units=1)
    cp = compile_decode_step(cfg, hw, 1024)
    heads = [i for i, t in enumerate(cp.tags) if t == "L3.attn.softmax"
             and cp.program[i].op in (Op.SOFTMAX, Op.SOFTMAXU)]
    # the value projection's MACs share the SYNC interval of the layer's first SOFTMAX
    lo = max(i for i in range(heads[0]) if cp.program[i].op is Op.SYNC)
    hi = min(i for i in range(heads[0], len(cp.program)) if cp.program[i].op is Op.SYNC)
    assert any(cp.tags[i] == "L3.attn.qkv" and cp.program[i].op is Op.MAC_ABK
               for i in range(lo, hi))
    late = PerfEngine(hw).run(cp.program).cycles
    fused = fused_value_projection_cycles(cfg, hw, 1024)
    assert late < 0.98 * fused, (late, fused)


def test_attention_plan_is_the_compilers_record(monkeypatch):
    """gpt2-small at context 1024: the recorded plan (``Step.plan``) says how the heads were
    grouped and whether one ``p . V`` followed all the softmaxes (``merged_av``), as the
    program shows: one SOFTMAX per group in layer 1 and, merged, every ``p . V`` MAC after the
    last of them. With the merged plans out of the trials (``max_merged_groups`` 1) the record
    says so. A program without the record has no plan."""
    from pimgpt.sw.compiler.schedule import PipelinedSchedule

    def plan_and_program():  # on the default hardware (the channel-major V cache)
        cp = compile_decode_step(get_model("gpt2-small"), load_hw("pimgpt-gddr6-8ch"), 1024)
        soft = [i for i, t in enumerate(cp.tags)
                if t == "L1.attn.softmax" and cp.program[i].op in (Op.SOFTMAX, Op.SOFTMAXU)]
        av = [i for i, t in enumerate(cp.tags)
              if t == "L1.attn.av" and cp.program[i].op is Op.MAC_ABK]
        plan = attention_plan(cp)
        assert len(soft) == plan["head_groups"] and not plan["deferred_av"]
        return cp, plan, av[0] > soft[-1]

    cp, plan, av_last = plan_and_program()
    assert plan["merged_av"] and plan["head_groups"] == 2 and av_last
    cp.steps[-1].plan = None
    assert attention_plan(cp) is None
    monkeypatch.setattr(PipelinedSchedule, "max_merged_groups", 1)
    _, plan, _ = plan_and_program()
    assert not plan["merged_av"]


def fused_value_projection_cycles(cfg, hw, context: int) -> int:
    """Perf cycles of the decode step at ``context`` compiled with the value projection kept in
    the QKV GEMV (the pipelined schedule's ``v_late`` forced off, then restored)."""
    from pimgpt.sim.perf.engine import PerfEngine
    from pimgpt.sw.compiler.schedule import PipelinedSchedule

    PipelinedSchedule.v_late = False
    try:
        return PerfEngine(hw).run(compile_decode_step(cfg, hw, context).program).cycles
    finally:
        PipelinedSchedule.v_late = None


def test_cost_model_charges_mode_switches_and_refresh():
    """The list scheduler's cost model: a register instruction after array work (and array
    work after it) pays nMODCH, consecutive register instructions share one visit (and its
    reads one read latency); a piece's
    estimate adds the refreshes of its time that the idle windows of its PIM side cannot
    hold."""
    from pimgpt.core.dram import derived_timing
    from pimgpt.sw.compiler.schedule import CostModel, schedule_time

    t = derived_timing(HW)
    cost = CostModel(HW)
    mac = isa.I(Op.MAC_ABK, ch_mask=255, row=3, col=0, ncols=8, gb_col=0, acc=0)
    wr = isa.I(Op.WR_GB, ch_mask=255, gb_col=0, ncols=8, src=0)
    rows, modes = [3] * 8, [False] * 8
    plain = [cost.pim(i, [3] * 8)[1] for i in (mac, wr)]
    got = [cost.pim(i, rows, modes)[1] for i in (mac, wr, wr, mac)]
    assert got == [plain[0], plain[1] + t["nMODCH"], plain[1], plain[0] + t["nMODCH"]]
    # the read latency once per visit: later reads stream behind the first
    rd = isa.I(Op.RD_MAC, ch_mask=255, acc=0, nacc=1)
    one = cost.pim(rd, [3] * 8)[1]
    got = [cost.pim(i, rows, modes)[1] for i in (rd, rd, mac)]
    assert got == [one + t["nMODCH"], one - t["nCL"], plain[0] + t["nMODCH"]]
    # refresh: 20 MACs streaming one row back to back have no idle window to hide it in
    macs = [mac] * 20
    busy = 20 * plain[0] + cost.miss
    assert schedule_time(macs, HW.dram.banks, cost) == pytest.approx(
        busy * (1 + t["nRFC"] / t["nREFI"]))

"""ISA binary and text forms: round trips; corrupt input -> ProgramError, never a crash."""

import struct

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pimgpt.core import isa
from pimgpt.core.errors import PimgptError
from pimgpt.core.isa import (
    FIELDS,
    FLAG_VEC_FROM_REG,
    HEADER,
    INSTR,
    I,
    Instr,
    Op,
    ProgramError,
    encode,
)

U32 = st.integers(min_value=0, max_value=2**32 - 1)


@st.composite
def instructions(draw):
    op = draw(st.sampled_from(list(Op)))
    # SPEC's nonzero fields are at least 1: parse_asm refuses a zero count.
    args = {name: draw(st.integers(min_value=1, max_value=2**32 - 1)
                       if name in isa.SPEC[op].nonzero else U32) for name in FIELDS[op]}
    flags = draw(st.sampled_from([0, isa.VALID_FLAGS[op]]))
    return Instr(op, args, flags)


programs = st.lists(instructions(), min_size=0, max_size=40)


@settings(max_examples=200, deadline=None)
@given(programs)
def test_binary_round_trip(program):
    blob = isa.encode(program)
    assert len(blob) == HEADER.size + INSTR.size * len(program)
    back = isa.decode(blob)
    assert back == program
    assert isa.encode(back) == blob


@settings(max_examples=200, deadline=None)
@given(programs)
def test_asm_round_trip(program):
    program = program + [I(Op.EOC)]  # a program ends with EOC (parse_asm refuses one without)
    text = isa.to_asm(program)
    back = isa.parse_asm(text)
    assert back == program
    # Field values survive bit for bit, NaN payloads of *_f32 immediates included.
    assert isa.encode(back) == isa.encode(program)
    assert isa.to_asm(back) == text


def test_f32_immediates_text():
    ins = isa.I(Op.VSCALE, dst=1, a=2, n=3, scale_f32=isa.f32_bits(0.125))
    assert ins.to_text() == "VSCALE dst=1 a=2 n=3 scale_f32=0.125"
    nan = isa.I(Op.VFILL, dst=0, n=1, value_f32=0xFFC00001)
    assert "value_f32=0xffc00001" in nan.to_text()
    assert isa.parse_asm(nan.to_text(), complete=False)[0]["value_f32"] == 0xFFC00001
    neg_zero = isa.I(Op.VFILL, dst=0, n=1, value_f32=0x80000000)
    assert isa.parse_asm(neg_zero.to_text(), complete=False)[0]["value_f32"] == 0x80000000


def _valid_blob(n=3):
    prog = [isa.I(Op.VADD, dst=1, a=2, b=3, n=4), isa.I(Op.SYNC), isa.I(Op.EOC)][:n]
    return bytearray(isa.encode(prog))


@pytest.mark.parametrize(
    "mutate, words",
    [
        (lambda b: b[:5], "shorter"),
        (lambda b: b"XIMGPT\x00\x00" + b[8:], "magic"),
        (lambda b: b[:8] + struct.pack("<H", 7) + b[10:], "version"),
        (lambda b: b[:10] + struct.pack("<H", 1) + b[12:], "reserved"),
        (lambda b: b[:-1], "truncated"),
        (lambda b: b + b"\x00" * 32, "header says"),
        (lambda b: b[:12] + struct.pack("<I", 10**6) + b[16:], "header says"),
        (lambda b: b[:16] + struct.pack("<H", 0x1F) + b[18:], "unknown opcode"),
        (lambda b: b[:16] + struct.pack("<H", 0xFFFF) + b[18:], "unknown opcode"),
        # VADD uses f0..f3; f6 is the last slot of the first instruction.
        (lambda b: b[:16 + 4 + 24] + struct.pack("<I", 1) + b[16 + 4 + 28:], "unused fields"),
        # SYNC has no fields at all.
        (lambda b: b[:48 + 4] + struct.pack("<I", 5) + b[48 + 8:], "unused fields"),
        # flags on an opcode that defines none
        (lambda b: b[:18] + struct.pack("<H", 1) + b[20:], "instruction 0"),
    ],
)
def test_corrupt_binaries(mutate, words):
    blob = bytes(mutate(_valid_blob()))
    with pytest.raises(ProgramError, match=words):
        isa.decode(blob, source="p.bin")


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=200), st.integers(min_value=0, max_value=300))
def test_random_garbage_never_crashes(tail, cut):
    good = bytes(_valid_blob())
    for blob in (tail, good[:cut] + tail, good[:16] + tail):
        try:
            isa.decode(blob)
        except ProgramError:
            pass


@settings(max_examples=200, deadline=None)
@given(programs, st.integers(min_value=0, max_value=10**6), st.integers(0, 255))
def test_bit_flips_decode_or_error(program, pos, value):
    blob = bytearray(isa.encode(program))
    if not blob:
        return
    blob[pos % len(blob)] = value
    try:
        out = isa.decode(bytes(blob))
    except ProgramError:
        return
    # Whatever decoded is a valid program that re-encodes to the same bytes.
    assert isa.encode(out) == bytes(blob)


@pytest.mark.parametrize(
    "line, words",
    [
        ("FROB x=1", "unknown instruction"),
        ("VADD dst=1 a", "expected key=value"),
        ("VADD dst=one", "bad value"),
        ("VADD dst=-1", "unsigned 32-bit"),
        ("VADD dst=4294967296", "unsigned 32-bit"),
        ("VADD foo=1", "no field"),
        ("VADD dst=1 dst=2", "given twice"),
        ("VSCALE scale_f32=abc", "bad value"),
        ("MAC_ABK flags=0x1", "undefined bits"),
        ("RD_VEC flags=0x2", "undefined bits"),
        ("RD_VEC flags=zz", "bad value"),
    ],
)
def test_bad_asm_names_the_line(line, words):
    text = "# header comment\nSYNC\n\n" + line + "\nEOC\n"
    with pytest.raises(ProgramError, match=rf"prog\.asm:4: .*{words}"):
        isa.parse_asm(text, source="prog.asm")


def test_program_error_is_user_facing():
    assert issubclass(ProgramError, PimgptError)
    ins = isa.I(Op.RD_VEC, isa.FLAG_VEC_FROM_REG, dst=0, n=16, vec=3, n_local=1, vec_len=16)
    assert ins.flags == isa.FLAG_VEC_FROM_REG
    assert isa.parse_asm(ins.to_text(), complete=False) == [ins]
    with pytest.raises(ProgramError):
        Instr(Op.VADD, {"dst": np.float32(1.0)})


# ---- per-opcode metadata (SPEC / effects) ----------------------------------------------------
def test_effects_of_representative_instructions():
    banks = 4
    cases = [
        (I(Op.WR_GB, ch_mask=3, gb_col=0, ncols=2, src=64), isa.Side.PIM, [("sp", 64, 96)], []),
        (I(Op.RD_MAC, ch_mask=0b101, dst=10, acc=1, nacc=3), isa.Side.PIM, [],
         [("sp", 10, 10 + 3 * 4 * 2)]),
        (I(Op.WR_BIAS, ch_mask=1, src=7), isa.Side.PIM, [("sp", 7, 11)], []),
        (I(Op.RD_VEC, FLAG_VEC_FROM_REG, dst=0, n=8, vec=5, region_row=0, n_local=1,
           vec_len=16), isa.Side.PIM, [("reg", 5, 6)], [("sp", 0, 8)]),
        (I(Op.RD_VEC, dst=0, n=8, vec=5, region_row=0, n_local=1, vec_len=16), isa.Side.PIM,
         [], [("sp", 0, 8)]),
        (I(Op.VREDUCE, dst=0, src=100, n=10, k=3), isa.Side.ASIC, [("sp", 100, 130)],
         [("sp", 0, 10)]),
        (I(Op.SOFTMAX, dst=0, src=100, n=10, rows=4), isa.Side.ASIC, [("sp", 100, 140)],
         [("sp", 0, 40)]),
        (I(Op.LAYERNORM, dst=0, src=10, gamma=20, beta=30, n=5), isa.Side.ASIC,
         [("sp", 10, 15), ("sp", 20, 25), ("sp", 30, 35)], [("sp", 0, 5)]),
        (I(Op.ARGMAX, reg=2, src=8, n=4), isa.Side.ASIC, [("sp", 8, 12)], [("reg", 2, 3)]),
        (I(Op.ARGMAXC, reg=2, src=8, lo=5, n=4), isa.Side.ASIC,
         [("sp", 8, 13), ("sp", 13, 17), ("reg", 2, 3)], [("reg", 2, 3)]),
        (I(Op.ROPE, dst=0, src=0, tab=100, half=8, nhead=3), isa.Side.ASIC,
         [("sp", 0, 48), ("sp", 100, 116)], [("sp", 0, 48)]),
        (I(Op.SWIGLU, dst=50, gate=0, up=20, n=10), isa.Side.ASIC,
         [("sp", 0, 10), ("sp", 20, 30)], [("sp", 50, 60)]),
        (I(Op.OUT, reg=1), isa.Side.ASIC, [("reg", 1, 2)], []),
        (I(Op.MAC_ABK, ch_mask=1, row=0, col=0, ncols=1, gb_col=0), isa.Side.PIM, [], []),
        (I(Op.SYNC), isa.Side.CONTROL, [], []),
    ]
    for ins, side, reads, writes in cases:
        assert isa.effects(ins, banks) == (side, reads, writes), ins.to_text()


def test_spec_is_complete_and_consistent():
    assert set(isa.SPEC) == set(Op)
    for op, spec in isa.SPEC.items():
        assert spec.op is op and len(spec.fields) == len(set(spec.fields)) <= isa.N_FIELDS
        for acc in spec.accesses:
            assert acc.base in spec.fields and acc.offset in spec.fields + ("",)
            assert all(isinstance(t, int) or t in spec.fields or t in isa.SYMBOLS
                       for t in acc.length), (op.name, acc)
        assert set(spec.nonzero) <= set(spec.fields) and set(spec.defaults) <= set(spec.fields)
        assert (spec.side is isa.Side.PIM) == (op in isa.PIM_OPS)
    assert isa.PIM_SP_WRITERS == {Op.RD_MAC, Op.RD_SBK, Op.RD_VEC}
    assert Op.WR_GB in isa.PIM_SP_READERS and Op.MAC_ABK not in isa.PIM_SP_READERS


def test_docs_list_every_opcode_with_its_fields():
    """docs/isa.md's tables name every opcode with exactly the fields of SPEC, in slot order."""
    import re
    from pathlib import Path

    text = (Path(__file__).resolve().parents[1] / "docs" / "isa.md").read_text()
    rows = {}
    for line in text.splitlines():
        cells = [c.strip() for c in line.split("|")[1:-1]]
        if len(cells) >= 2 and cells[0].startswith("`") and re.fullmatch(r"[a-z_0-9 ]*", cells[1]):
            for name in re.findall(r"`([A-Z_0-9]+)`", cells[0]):
                rows[name] = tuple(cells[1].split())
    for op, spec in isa.SPEC.items():
        if op.name in rows:
            assert rows[op.name] == spec.fields, op.name
    missing = {op.name for op in Op} - set(rows)
    assert not missing, f"docs/isa.md lacks {sorted(missing)}"


def test_defaults_fill_missing_fields_and_version_is_checked():
    assert I(Op.RD_MAC, ch_mask=1, dst=0)["nacc"] == 1
    assert I(Op.SOFTMAX, dst=0, src=0, n=4)["rows"] == 1
    assert isa.parse_asm("RD_MAC ch_mask=0x1 dst=3 acc=2\nEOC")[0]["nacc"] == 1
    assert isa.parse_asm("softmax dst=0 src=8 n=4\neoc")[0]["rows"] == 1
    blob = bytearray(encode([I(Op.EOC)]))
    blob[8] = 1  # version 1
    with pytest.raises(ProgramError, match="version 1"):
        isa.decode(bytes(blob))


# ---- strict text form (parse_asm) ------------------------------------------------------------
@pytest.mark.parametrize(
    "text, words",
    [
        # A field without a SPEC default must be given: row 0 was taken for a missing row.
        ("MAC_ABK ch_mask=0x1 col=0 ncols=1 gb_col=0 acc=0\nEOC",
         r"prog\.asm:1: MAC_ABK lacks row; add row=\.\.\. \(its fields: ch_mask row col ncols"),
        ("VSCALE dst=0 a=0 n=4\nEOC", r"prog\.asm:1: VSCALE lacks scale_f32; add scale_f32="),
        ("SYNC\nVADD dst=0 a=0 n=4\nEOC", r"prog\.asm:2: VADD lacks b; add b=\.\.\."),
        # SPEC's nonzero counts
        ("VREDUCE dst=0 src=0 n=4 k=0\nEOC", r"prog\.asm:1: VREDUCE k=0; k must be at least 1"),
        ("RD_MAC ch_mask=0x1 dst=0 acc=0 nacc=0\nEOC", r"prog\.asm:1: RD_MAC nacc=0"),
        # A program ends with EOC.
        ("", r"prog\.asm: the program has no instructions; it must end with EOC"),
        ("# only a comment\n\n", r"prog\.asm: the program has no instructions"),
        ("SYNC\nVADD dst=0 a=0 b=0 n=4\n", r"prog\.asm: the program does not end with EOC; "
                                           r"it is truncated, add an EOC line"),
    ],
)
def test_strict_asm(text, words):
    with pytest.raises(ProgramError, match=words) as info:
        isa.parse_asm(text, source="prog.asm")
    assert "\n" not in str(info.value)


def test_asm_defaults_flags_and_lowercase():
    prog = isa.parse_asm("rd_mac ch_mask=0x3 dst=16 acc=1  # nacc defaults to 1\n"
                         "VFILL dst=0 n=2 value_f32=-inf\n"
                         "RD_VEC dst=0 n=16 vec=2 region_row=1 n_local=1 vec_len=16 flags=0x1\n"
                         "eoc\n")
    assert [ins.op for ins in prog] == [Op.RD_MAC, Op.VFILL, Op.RD_VEC, Op.EOC]
    assert prog[0].args == {"ch_mask": 3, "dst": 16, "acc": 1, "nacc": 1}
    assert prog[1]["value_f32"] == 0xFF800000 and prog[2].flags == FLAG_VEC_FROM_REG
    # A fragment (no EOC) parses when asked for one.
    assert isa.parse_asm("SYNC", complete=False) == [I(Op.SYNC)]


@pytest.mark.parametrize("model", ["tiny", "tiny-py"])
def test_compiled_asm_round_trips_byte_identically(model, tmp_path):
    """Every field the compiler writes is parsed back: program.asm gives program.bin's bytes,
    and the instructions write the same lines again."""
    from pimgpt.core.config import load_hw
    from pimgpt.sw.compiler import compile_generation
    from pimgpt.sw.models import get_model

    compile_generation(get_model(model), load_hw(None), [1, 2], 2).write(tmp_path)
    text = (tmp_path / "program.asm").read_text()
    prog = isa.parse_asm(text)
    assert isa.encode(prog) == (tmp_path / "program.bin").read_bytes()
    assert isa.to_asm(prog) == "".join(line + "\n" for line in text.splitlines()
                                       if not line.startswith("#"))
    assert len(prog) > 100 and prog[-1].op is Op.EOC


def test_docs_program_files_examples_work(tmp_path, monkeypatch):
    """docs/isa.md "Program files": its assembly example parses and its two-liner makes the
    binary of an assembly file."""
    import re
    from pathlib import Path

    text = (Path(__file__).resolve().parents[1] / "docs" / "isa.md").read_text()
    section = text.split("## Program files", 1)[1]
    asm_block, _, python_block = re.findall(r"```(?:python)?\n(.*?)```", section, re.S)
    prog = isa.parse_asm(asm_block)
    assert [ins.op for ins in prog][-2:] == [Op.VSCALE, Op.EOC]
    assert prog[3]["value_f32"] == 0xFF800000 and prog[1].flags == FLAG_VEC_FROM_REG
    (tmp_path / "DIR").mkdir()
    (tmp_path / "DIR" / "program.asm").write_text(asm_block)
    monkeypatch.chdir(tmp_path)
    exec(python_block, {})
    assert (tmp_path / "DIR" / "program.bin").read_bytes() == encode(prog)
    assert f"a {HEADER.size}-byte header" in section
    assert f"one {INSTR.size}-byte ({INSTR.size * 8}-bit)" in section

"""ISA binary and text forms: round trips; corrupt input -> ProgramError, never a crash."""

import struct

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pimgpt.core import isa
from pimgpt.core.errors import PimgptError
from pimgpt.core.isa import FIELDS, HEADER, INSTR, Instr, Op, ProgramError

U32 = st.integers(min_value=0, max_value=2**32 - 1)


@st.composite
def instructions(draw):
    op = draw(st.sampled_from(list(Op)))
    args = {name: draw(U32) for name in FIELDS[op]}
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
    assert isa.parse_asm(nan.to_text())[0]["value_f32"] == 0xFFC00001
    neg_zero = isa.I(Op.VFILL, dst=0, n=1, value_f32=0x80000000)
    assert isa.parse_asm(neg_zero.to_text())[0]["value_f32"] == 0x80000000


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
    ins = isa.I(Op.RD_VEC, isa.FLAG_VEC_FROM_REG, dst=0, n=16, vec=3)
    assert ins.flags == isa.FLAG_VEC_FROM_REG
    assert isa.parse_asm(ins.to_text()) == [ins]
    with pytest.raises(ProgramError):
        Instr(Op.VADD, {"dst": np.float32(1.0)})

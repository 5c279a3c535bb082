"""The pimgpt instruction set: one program format for the golden model, the perf simulator and RTL.

An instruction is an opcode plus up to seven unsigned 32-bit fields (and a 16-bit flags word). The
binary form is fixed-width: a 16-byte header then 32 bytes per instruction, little endian::

    header : magic b"PIMGPT\\0\\0" | version u16 | reserved u16 | count u32
    instr  : opcode u16 | flags u16 | f0..f6 u32

The text form is one instruction per line, ``OPNAME key=value ...`` with ``#`` comments. Float
immediates are written as decimal (exact for float32) and stored as their fp32 bit pattern; a NaN
is written as its hexadecimal bit pattern (``scale_f32=0x7fc00000``) so that its bits survive.

Semantics are specified in ``docs/isa.md``; the executors are ``pimgpt.sim.golden`` (values) and
``pimgpt.sim.perf`` (timing).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field
from enum import IntEnum

import numpy as np

from pimgpt.core.errors import PimgptError

MAGIC = b"PIMGPT\x00\x00"
VERSION = 1
HEADER = struct.Struct("<8sHHI")
INSTR = struct.Struct("<HH7I")
N_FIELDS = 7
N_REGS = 16
FLAG_VEC_FROM_REG = 0x1  # RD_VEC: the vector index field names a scalar register


class ProgramError(PimgptError):
    """A program (binary or text) is malformed; the message names the problem and the fix."""


class Op(IntEnum):
    """Opcodes. 0x01-0x1F are PIM-side (issued to DRAM), 0x20-0x3F are ASIC-side."""

    # PIM side, AiM style
    WR_GB = 0x01
    MAC_ABK = 0x02
    MAC_SBK = 0x03
    RD_MAC = 0x04
    WR_BIAS = 0x05
    WR_SBK = 0x06
    WR_ABK = 0x07
    RD_SBK = 0x08
    COPY_BKGB = 0x09
    COPY_GBBK = 0x0A
    RD_VEC = 0x0B
    WR_VEC = 0x0C
    WR_ELEM = 0x0D
    SYNC = 0x0E
    EOC = 0x0F
    # ASIC side (scratchpad addresses count fp32 words)
    VADD = 0x20
    VMUL = 0x21
    VSCALE = 0x22
    VMOV = 0x23
    VREDUCE = 0x24
    VMAX = 0x25
    VEXP = 0x26
    VRECIP = 0x27
    VRSQRT = 0x28
    VGELU = 0x29
    SOFTMAX = 0x2A
    LAYERNORM = 0x2B
    ARGMAX = 0x2C
    SETR = 0x2D
    OUT = 0x2E
    VFILL = 0x2F


#: Field names of each opcode, in slot order. Names ending in ``_f32`` hold fp32 bit patterns.
FIELDS: dict[Op, tuple[str, ...]] = {
    Op.WR_GB: ("ch_mask", "gb_col", "ncols", "src"),
    Op.MAC_ABK: ("ch_mask", "row", "col", "ncols", "gb_col"),
    Op.MAC_SBK: ("ch_mask", "bank", "row", "col", "ncols", "gb_col"),
    Op.RD_MAC: ("ch_mask", "dst"),
    Op.WR_BIAS: ("ch_mask", "src"),
    Op.WR_SBK: ("ch", "bank", "row", "elem", "n", "src"),
    Op.WR_ABK: ("ch_mask", "row", "elem", "n", "src"),
    Op.RD_SBK: ("ch", "bank", "row", "elem", "n", "dst"),
    Op.COPY_BKGB: ("ch_mask", "bank", "row", "col", "ncols", "gb_col"),
    Op.COPY_GBBK: ("ch_mask", "bank", "row", "col", "ncols", "gb_col"),
    Op.RD_VEC: ("dst", "n", "vec", "region_row", "n_local", "vec_len"),
    Op.WR_VEC: ("src", "n", "vec", "region_row", "n_local", "vec_len"),
    Op.WR_ELEM: ("src", "n", "vec", "region_row", "n_local", "vec_len", "elem"),
    Op.SYNC: (),
    Op.EOC: (),
    Op.VADD: ("dst", "a", "b", "n"),
    Op.VMUL: ("dst", "a", "b", "n"),
    Op.VSCALE: ("dst", "a", "n", "scale_f32"),
    Op.VMOV: ("dst", "src", "n"),
    Op.VREDUCE: ("dst", "src", "n", "k"),
    Op.VMAX: ("dst", "src", "n"),
    Op.VEXP: ("dst", "src", "n"),
    Op.VRECIP: ("dst", "src", "n"),
    Op.VRSQRT: ("dst", "src", "n"),
    Op.VGELU: ("dst", "src", "n"),
    Op.SOFTMAX: ("dst", "src", "n"),
    Op.LAYERNORM: ("dst", "src", "gamma", "beta", "n", "eps_f32"),
    Op.ARGMAX: ("reg", "src", "n"),
    Op.SETR: ("reg", "imm"),
    Op.OUT: ("reg",),
    Op.VFILL: ("dst", "n", "value_f32"),
}

#: Flag bits each opcode accepts (all others must be zero).
VALID_FLAGS: dict[Op, int] = {op: 0 for op in Op}
VALID_FLAGS[Op.RD_VEC] = FLAG_VEC_FROM_REG

PIM_OPS = frozenset(op for op in Op if op < 0x20)
ASIC_OPS = frozenset(op for op in Op if op >= 0x20)


def f32_bits(value: float) -> int:
    """fp32 bit pattern of ``value`` (rounded to float32 first)."""
    return int(np.array(value, dtype=np.float32).view(np.uint32))


def bits_f32(bits: int) -> float:
    """The float32 value of a 32-bit pattern, as a Python float."""
    return float(np.array(bits, dtype=np.uint32).view(np.float32))


@dataclass(frozen=True)
class Instr:
    """One instruction: an opcode, its fields (by name) and flags.

    Parameters
    ----------
    op : Op
        The opcode.
    args : dict of str to int
        Field values (unsigned 32-bit). ``*_f32`` fields hold fp32 bit patterns; build them with
        :func:`f32_bits`. Missing fields are zero.
    flags : int
        Opcode-specific flag bits (``FLAG_VEC_FROM_REG`` for ``RD_VEC``).
    """

    op: Op
    args: dict = field(default_factory=dict)
    flags: int = 0

    def __post_init__(self):
        op = Op(self.op)
        object.__setattr__(self, "op", op)
        names = FIELDS[op]
        for key, value in self.args.items():
            if key not in names:
                raise ProgramError(f"{op.name} has no field {key!r}; its fields are {names}")
            if not isinstance(value, (int, np.integer)) or not 0 <= int(value) < 2**32:
                raise ProgramError(f"{op.name}.{key}={value!r} is not an unsigned 32-bit integer")
        if not isinstance(self.flags, (int, np.integer)) or not 0 <= int(self.flags) < 2**16:
            raise ProgramError(f"{op.name} flags={self.flags!r} do not fit 16 bits")
        if int(self.flags) & ~VALID_FLAGS[op]:
            raise ProgramError(
                f"{op.name} flags={int(self.flags):#x} sets undefined bits (valid: "
                f"{VALID_FLAGS[op]:#x})"
            )
        object.__setattr__(self, "flags", int(self.flags))
        # Normalise to every field present, so equal instructions compare equal.
        object.__setattr__(self, "args", {n: int(self.args.get(n, 0)) for n in names})

    def __getitem__(self, name: str) -> int:
        return self.args[name]

    def fields(self) -> tuple[int, ...]:
        """The seven field slots, zero-filled."""
        vals = [int(self.args.get(n, 0)) for n in FIELDS[self.op]]
        return tuple(vals + [0] * (N_FIELDS - len(vals)))

    def to_text(self) -> str:
        """One line of assembly."""
        parts = [self.op.name]
        for name in FIELDS[self.op]:
            v = self[name]
            if name.endswith("_f32"):
                f = bits_f32(v)
                # NaN payloads/signs do not survive a decimal round trip: write NaNs as bits.
                parts.append(f"{name}={v:#010x}" if f != f else f"{name}={f!r}")
            elif name == "ch_mask":
                parts.append(f"{name}={v:#x}")
            else:
                parts.append(f"{name}={v}")
        if self.flags:
            parts.append(f"flags={self.flags:#x}")
        return " ".join(parts)


def I(op: Op, flags: int = 0, **args) -> Instr:  # noqa: E743 - short constructor for compilers
    """Shorthand constructor: ``I(Op.VADD, dst=0, a=16, b=32, n=16)``."""
    return Instr(op, args, flags)


# ---------------------------------------------------------------------------------------------
# Binary form
# ---------------------------------------------------------------------------------------------
def encode(program: list[Instr]) -> bytes:
    """Encode instructions to the binary form (header + 32 bytes per instruction)."""
    out = bytearray(HEADER.pack(MAGIC, VERSION, 0, len(program)))
    for ins in program:
        out += INSTR.pack(int(ins.op), ins.flags, *ins.fields())
    return bytes(out)


def decode(blob: bytes, source: str = "program") -> list[Instr]:
    """Decode the binary form, validating the header, the length and every opcode.

    Raises
    ------
    ProgramError
        On a bad magic number, version, length, opcode or non-zero unused field.
    """
    if len(blob) < HEADER.size:
        raise ProgramError(
            f"{source}: {len(blob)} bytes is shorter than the {HEADER.size}-byte header; "
            "the file is truncated or not a pimgpt program (recompile with `pimgpt compile`)"
        )
    magic, version, reserved, count = HEADER.unpack_from(blob, 0)
    if magic != MAGIC:
        raise ProgramError(f"{source}: bad magic {magic!r}; not a pimgpt program binary")
    if version != VERSION:
        raise ProgramError(
            f"{source}: program version {version}, this pimgpt reads version {VERSION}; recompile"
        )
    if reserved:
        raise ProgramError(
            f"{source}: reserved header field is {reserved:#x}, not 0; corrupt program"
        )
    expected = HEADER.size + count * INSTR.size
    if len(blob) != expected:
        raise ProgramError(
            f"{source}: header says {count} instructions ({expected} bytes) but the file has "
            f"{len(blob)} bytes; it is truncated or corrupt, recompile it"
        )
    words = np.frombuffer(blob, dtype=np.uint8, offset=HEADER.size).reshape(count, INSTR.size)
    program = []
    for index in range(count):
        opcode, flags, *slots = INSTR.unpack(words[index].tobytes())
        try:
            op = Op(opcode)
        except ValueError:
            raise ProgramError(
                f"{source}: instruction {index} has unknown opcode {opcode:#x}; corrupt program"
            ) from None
        names = FIELDS[op]
        if any(slots[len(names):]):
            raise ProgramError(
                f"{source}: instruction {index} ({op.name}) sets unused fields; corrupt program"
            )
        try:
            program.append(Instr(op, dict(zip(names, slots[: len(names)], strict=True)), flags))
        except ProgramError as exc:
            raise ProgramError(f"{source}: instruction {index}: {exc}; corrupt program") from None
    return program


# ---------------------------------------------------------------------------------------------
# Text form
# ---------------------------------------------------------------------------------------------
def to_asm(program: list[Instr]) -> str:
    """Assembly text for a program, one instruction per line."""
    return "".join(ins.to_text() + "\n" for ins in program)


def parse_asm(text: str, source: str = "program.asm") -> list[Instr]:
    """Parse assembly text; errors name the line."""
    program = []
    for lineno, raw in enumerate(text.splitlines(), 1):
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        name, *pairs = line.split()
        try:
            op = Op[name.upper()]
        except KeyError:
            raise ProgramError(f"{source}:{lineno}: unknown instruction {name!r}") from None
        args, flags, seen = {}, 0, set()
        for pair in pairs:
            key, sep, value = pair.partition("=")
            if not sep:
                raise ProgramError(f"{source}:{lineno}: expected key=value, got {pair!r}")
            if key in seen:
                raise ProgramError(f"{source}:{lineno}: field {key!r} given twice")
            seen.add(key)
            try:
                if key == "flags":
                    flags = int(value, 0)
                elif key.endswith("_f32"):
                    is_bits = value.lower().startswith("0x")
                    args[key] = int(value, 16) if is_bits else f32_bits(float(value))
                else:
                    args[key] = int(value, 0)
            except ValueError:
                raise ProgramError(f"{source}:{lineno}: bad value {pair!r}") from None
        try:
            program.append(Instr(op, args, flags))
        except ProgramError as exc:
            raise ProgramError(f"{source}:{lineno}: {exc}") from None
    return program

"""The pimgpt instruction set: one program format for the golden model, the perf simulator and RTL.

An instruction is an opcode plus up to seven unsigned 32-bit fields (and a 16-bit flags word). The
binary form is fixed-width: a 16-byte header then 32 bytes per instruction, little endian::

    header : magic b"PIMGPT\\0\\0" | version u16 | reserved u16 | count u32
    instr  : opcode u16 | flags u16 | f0..f6 u32

The text form (:mod:`pimgpt.core.asm`; ``parse_asm``/``to_asm`` are importable from here too) is
one instruction per line, ``OPNAME key=value ...`` with ``#`` comments. Float
immediates are written as decimal (exact for float32) and stored as their fp32 bit pattern; a NaN
is written as its hexadecimal bit pattern (``scale_f32=0x7fc00000``) so that its bits survive.

Per-opcode metadata (:data:`SPEC`) is the one definition of what an instruction is: its side (PIM,
ASIC or control), its fields in slot order, the flag bits it accepts, and which scratchpad words
and scalar registers it reads and writes (:func:`effects`). The compiler's hazard analysis and
``SYNC`` placement, the golden model's operand checks, the perf engine's scratchpad ordering and
the RTL's instruction layouts and hazard logic all derive from it.

Semantics are specified in ``docs/isa.md``; the executors are ``pimgpt.sim.golden`` (values) and
``pimgpt.sim.perf`` (timing).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field
from enum import Enum, IntEnum

import numpy as np

from pimgpt.core.errors import PimgptError

MAGIC = b"PIMGPT\x00\x00"
#: Binary format version. 2: MAC accumulator index (``acc``), multi-accumulator ``RD_MAC`` /
#: ``WR_BIAS`` (``acc``, ``nacc``), row-batched ``SOFTMAX`` (``rows``).
VERSION = 2
HEADER = struct.Struct("<8sHHI")
INSTR = struct.Struct("<HH7I")
N_FIELDS = 7
N_REGS = 16
FLAG_VEC_FROM_REG = 0x1  # RD_VEC: the vector index field names a scalar register
#: bf16 elements per DRAM column (one MAC step); scratchpad words moved per column.
COL = 16


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
    VMACS = 0x30
    RMSNORM = 0x31
    ROPE = 0x32
    SWIGLU = 0x33
    ARGMAXC = 0x34
    LNCENTRE = 0x36
    LNRSTD = 0x37
    VMADS = 0x38
    RMSRSTD = 0x39
    VMULS = 0x3A
    SOFTMAXU = 0x3B
    VADD3 = 0x3C


class Side(Enum):
    """Which part of the machine executes an instruction."""

    PIM = "pim"          #: issued to the DRAM channels (in order among themselves)
    ASIC = "asic"        #: the vector unit / scalar registers (in order among themselves)
    CONTROL = "control"  #: SYNC / EOC: wait for both sides


#: Symbolic factors of an access length (besides field names and integers).
#: ``COL``: scratchpad words per DRAM column; ``BANKS``: banks per channel (``hw.dram.banks``);
#: ``CHANS``: channels selected by the instruction's ``ch_mask`` (its popcount).
SYMBOLS = ("COL", "BANKS", "CHANS")


@dataclass(frozen=True)
class Access:
    """One range of scratchpad words or scalar registers an instruction reads or writes.

    The range starts at the value of field ``base`` and is ``length`` long, where ``length`` is a
    product of terms: field names, integers and :data:`SYMBOLS`. ``flag`` restricts the access to
    instructions that set that flag bit (``RD_VEC`` reads register ``vec`` only with
    ``FLAG_VEC_FROM_REG``); ``flag_clear`` to those that do not. ``offset`` names a field added
    to the base (``ARGMAXC``'s piece starts ``lo`` words after ``src``).
    """

    space: str  # "sp" (fp32 scratchpad words) or "reg" (scalar registers R0..R15)
    base: str
    length: tuple = (1,)
    write: bool = False
    flag: int = 0
    flag_clear: int = 0
    offset: str = ""


@dataclass(frozen=True)
class OpSpec:
    """Everything the toolchain knows about one opcode, in one place."""

    op: Op
    side: Side
    fields: tuple[str, ...]
    accesses: tuple[Access, ...] = ()
    flags: int = 0  #: flag bits the opcode accepts (all others must be zero)
    #: fields that must be at least 1 (a count of zero is malformed, not a no-op)
    nonzero: tuple[str, ...] = ()
    #: values of fields a constructor or an assembly line leaves out (others default to 0)
    defaults: dict = field(default_factory=dict)
    doc: str = ""


def _sp(base: str, *length, write: bool = False, **kw) -> Access:
    return Access("sp", base, tuple(length) or (1,), write, **kw)


def _reg(base: str, write: bool = False, **kw) -> Access:
    return Access("reg", base, (1,), write, **kw)


_P, _A, _C = Side.PIM, Side.ASIC, Side.CONTROL
_MAC = ("ch_mask", "row", "col", "ncols", "gb_col", "acc")
_COPY = ("ch_mask", "bank", "row", "col", "ncols", "gb_col")
_REGION = ("n", "vec", "region_row", "n_local", "vec_len")
_UNARY = ("dst", "src", "n")

#: The instruction set. Field order is slot order in the binary form.
SPEC: dict[Op, OpSpec] = {s.op: s for s in (
    OpSpec(Op.WR_GB, _P, ("ch_mask", "gb_col", "ncols", "src"),
           (_sp("src", "ncols", "COL"),), nonzero=("ch_mask", "ncols"),
           doc="global buffer columns <- bf16(scratchpad)"),
    OpSpec(Op.MAC_ABK, _P, _MAC, nonzero=("ch_mask", "ncols"),
           doc="every bank: accumulator acc += row columns . global buffer columns"),
    OpSpec(Op.MAC_SBK, _P, _MAC[:1] + ("bank",) + _MAC[1:], nonzero=("ch_mask", "ncols"),
           doc="one bank of each selected channel: accumulator acc += columns . GB"),
    OpSpec(Op.RD_MAC, _P, ("ch_mask", "dst", "acc", "nacc"),
           (_sp("dst", "nacc", "BANKS", "CHANS", write=True),), nonzero=("ch_mask", "nacc"),
           defaults={"nacc": 1},
           doc="scratchpad <- accumulators acc..acc+nacc-1 of the selected banks; they reset"),
    OpSpec(Op.WR_BIAS, _P, ("ch_mask", "src", "acc", "nacc"),
           (_sp("src", "nacc", "BANKS", "CHANS"),), nonzero=("ch_mask", "nacc"),
           defaults={"nacc": 1},
           doc="accumulators acc..acc+nacc-1 of the selected banks <- scratchpad"),
    OpSpec(Op.WR_SBK, _P, ("ch", "bank", "row", "elem", "n", "src"), (_sp("src", "n"),),
           nonzero=("n",), doc="one bank's row elements <- bf16(scratchpad)"),
    OpSpec(Op.WR_ABK, _P, ("ch_mask", "row", "elem", "n", "src"), (_sp("src", "n"),),
           nonzero=("ch_mask", "n"), doc="every bank's row elements <- bf16(scratchpad)"),
    OpSpec(Op.RD_SBK, _P, ("ch", "bank", "row", "elem", "n", "dst"),
           (_sp("dst", "n", write=True),), nonzero=("n",),
           doc="scratchpad <- one bank's row elements"),
    OpSpec(Op.COPY_BKGB, _P, _COPY, nonzero=("ch_mask", "ncols"),
           doc="global buffer columns <- bank columns"),
    OpSpec(Op.COPY_GBBK, _P, _COPY, nonzero=("ch_mask", "ncols"),
           doc="bank columns <- global buffer columns"),
    OpSpec(Op.RD_VEC, _P, ("dst",) + _REGION,
           (_sp("dst", "n", write=True), _reg("vec", flag=FLAG_VEC_FROM_REG)),
           flags=FLAG_VEC_FROM_REG, nonzero=("n", "n_local", "vec_len"),
           doc="scratchpad <- elements of a region vector (index from R[vec] with flag 0x1)"),
    OpSpec(Op.WR_VEC, _P, ("src",) + _REGION, (_sp("src", "n"),),
           nonzero=("n", "n_local", "vec_len"), doc="region vector elements <- bf16(scratchpad)"),
    OpSpec(Op.WR_ELEM, _P, ("src",) + _REGION + ("elem",), (_sp("src", "n"),),
           nonzero=("n", "n_local", "vec_len"),
           doc="element elem of region vectors vec..vec+n-1 <- bf16(scratchpad)"),
    OpSpec(Op.SYNC, _C, (), doc="wait until every earlier instruction has completed"),
    OpSpec(Op.EOC, _C, (), doc="end of program"),
    OpSpec(Op.VADD, _A, ("dst", "a", "b", "n"),
           (_sp("a", "n"), _sp("b", "n"), _sp("dst", "n", write=True)), doc="dst = a + b"),
    OpSpec(Op.VMUL, _A, ("dst", "a", "b", "n"),
           (_sp("a", "n"), _sp("b", "n"), _sp("dst", "n", write=True)), doc="dst = a * b"),
    OpSpec(Op.VSCALE, _A, ("dst", "a", "n", "scale_f32"),
           (_sp("a", "n"), _sp("dst", "n", write=True)), doc="dst = a * scale"),
    OpSpec(Op.VMOV, _A, _UNARY, (_sp("src", "n"), _sp("dst", "n", write=True)),
           doc="dst = src (memmove)"),
    OpSpec(Op.VREDUCE, _A, ("dst", "src", "n", "k"),
           (_sp("src", "n", "k"), _sp("dst", "n", write=True)), nonzero=("n", "k"),
           doc="dst = sum of k partial vectors of n (numerics contract order)"),
    OpSpec(Op.VMAX, _A, _UNARY, (_sp("src", "n"), _sp("dst", 1, write=True)),
           nonzero=("n",), doc="dst[0] = maximum of src"),
    OpSpec(Op.VEXP, _A, _UNARY, (_sp("src", "n"), _sp("dst", "n", write=True)), doc="exp"),
    OpSpec(Op.VRECIP, _A, _UNARY, (_sp("src", "n"), _sp("dst", "n", write=True)), doc="1/x"),
    OpSpec(Op.VRSQRT, _A, _UNARY, (_sp("src", "n"), _sp("dst", "n", write=True)),
           doc="1/sqrt(x)"),
    OpSpec(Op.VGELU, _A, _UNARY, (_sp("src", "n"), _sp("dst", "n", write=True)),
           doc="GELU (tanh form)"),
    OpSpec(Op.SOFTMAX, _A, ("dst", "src", "n", "rows"),
           (_sp("src", "n", "rows"), _sp("dst", "n", "rows", write=True)),
           nonzero=("n", "rows"), defaults={"rows": 1},
           doc="softmax of each of rows contiguous rows of n"),
    OpSpec(Op.LAYERNORM, _A, ("dst", "src", "gamma", "beta", "n", "eps_f32"),
           (_sp("src", "n"), _sp("gamma", "n"), _sp("beta", "n"),
            _sp("dst", "n", write=True)), nonzero=("n",), doc="LayerNorm"),
    OpSpec(Op.ARGMAX, _A, ("reg", "src", "n"), (_sp("src", "n"), _reg("reg", write=True)),
           nonzero=("n",), doc="R[reg] = first index of the maximum of src"),
    # R[reg] is read and written; the word src[R[reg]] (below src + lo) is read, whose address
    # the program cannot know: the first lo words are declared read.
    OpSpec(Op.ARGMAXC, _A, ("reg", "src", "lo", "n"),
           (_sp("src", "lo"), _sp("src", "n", offset="lo"), _reg("reg"), _reg("reg", write=True)),
           nonzero=("lo", "n"),
           doc="continue an ARGMAX: R[reg] = first index of the maximum of src[0 .. lo+n), "
               "given R[reg] < lo holds it for src[0 .. lo)"),
    OpSpec(Op.SETR, _A, ("reg", "imm"), (_reg("reg", write=True),), doc="R[reg] = imm"),
    OpSpec(Op.OUT, _A, ("reg",), (_reg("reg"),), doc="append R[reg] to the token stream"),
    OpSpec(Op.VFILL, _A, ("dst", "n", "value_f32"), (_sp("dst", "n", write=True),),
           doc="dst = value"),
    OpSpec(Op.VMACS, _A, ("dst", "a", "s", "seg", "nseg"),
           (_sp("a", "seg", "nseg"), _sp("s", "nseg"), _sp("dst", "seg", "nseg"),
            _sp("dst", "seg", "nseg", write=True)), nonzero=("seg", "nseg"),
           doc="dst[i] = dst[i] + a[i] * s[i // seg] for i < seg*nseg (scalar per segment)"),
    OpSpec(Op.RMSNORM, _A, ("dst", "src", "gamma", "n", "eps_f32"),
           (_sp("src", "n"), _sp("gamma", "n"), _sp("dst", "n", write=True)), nonzero=("n",),
           doc="RMSNorm (Llama)"),
    OpSpec(Op.ROPE, _A, ("dst", "src", "tab", "half", "nhead"),
           (_sp("src", "half", 2, "nhead"), _sp("tab", "half", 2),
            _sp("dst", "half", 2, "nhead", write=True)), nonzero=("half", "nhead"),
           doc="rotary embedding of nhead heads of 2*half words by the cos/sin table at tab"),
    OpSpec(Op.SWIGLU, _A, ("dst", "gate", "up", "n"),
           (_sp("gate", "n"), _sp("up", "n"), _sp("dst", "n", write=True)),
           doc="dst = silu(gate) * up (the SwiGLU gated product)"),
    OpSpec(Op.LNCENTRE, _A, ("dst", "src", "gamma", "n"),
           (_sp("src", "n"), _sp("gamma", "n"), _sp("dst", "n", write=True)), nonzero=("n",),
           doc="dst = (src - mean(src)) * gamma (a LayerNorm folded into its GEMV)"),
    OpSpec(Op.LNRSTD, _A, ("dst", "src", "tmp", "n", "eps_f32"),
           (_sp("src", "n"), _sp("tmp", "n", write=True), _sp("dst", 1, write=True)),
           nonzero=("n",), doc="dst[0] = LayerNorm rstd of src (tmp: n words of scratch)"),
    OpSpec(Op.VMADS, _A, ("dst", "a", "s", "b", "n"),
           (_sp("a", "n"), _sp("s", 1), _sp("b", "n"), _sp("dst", "n", write=True)),
           doc="dst = a * s[0] + b (a folded LayerNorm's GEMV epilogue)"),
    OpSpec(Op.RMSRSTD, _A, ("dst", "src", "n", "eps_f32"),
           (_sp("src", "n"), _sp("dst", 1, write=True)), nonzero=("n",),
           doc="dst[0] = RMSNorm rstd of src"),
    OpSpec(Op.VMULS, _A, ("dst", "a", "s", "n"),
           (_sp("a", "n"), _sp("s", 1), _sp("dst", "n", write=True)),
           doc="dst = a * s[0] (a folded RMSNorm's GEMV epilogue)"),
    OpSpec(Op.SOFTMAXU, _A, ("dst", "src", "n", "rows", "rcp", "rseg"),
           (_sp("src", "n", "rows"), _sp("dst", "n", "rows", write=True),
            _sp("rcp", "rseg", "rows", write=True)), nonzero=("n", "rows", "rseg"),
           doc="unnormalised softmax of rows contiguous rows of n: dst = exp(src - max) and row "
               "r's 1/sum in rcp[r*rseg .. (r+1)*rseg) (a VMUL normalises after p . V)"),
    OpSpec(Op.VADD3, _A, ("dst", "a", "b", "c", "n"),
           (_sp("a", "n"), _sp("b", "n"), _sp("c", "n"), _sp("dst", "n", write=True)),
           doc="dst = a + (b + c) (a GEMV's bias and the residual add in one pass)"),
)}
assert set(SPEC) == set(Op), "every opcode needs an OpSpec"

#: Field names of each opcode, in slot order. Names ending in ``_f32`` hold fp32 bit patterns.
FIELDS: dict[Op, tuple[str, ...]] = {op: s.fields for op, s in SPEC.items()}
#: Flag bits each opcode accepts (all others must be zero).
VALID_FLAGS: dict[Op, int] = {op: s.flags for op, s in SPEC.items()}
PIM_OPS = frozenset(op for op, s in SPEC.items() if s.side is Side.PIM)
ASIC_OPS = frozenset(op for op, s in SPEC.items() if s.side is Side.ASIC)
#: PIM instructions that write / read scratchpad words.
#: PIM instructions whose DRAM commands (``WRGB``, ``RDMAC16``, ``WRMAC16``) need a standard's
#: register-access mode (:attr:`pimgpt.core.dram.DramStandard.register_mode`).
REGISTER_OPS = (Op.WR_GB, Op.RD_MAC, Op.WR_BIAS)
PIM_SP_WRITERS = frozenset(op for op in PIM_OPS
                           if any(a.space == "sp" and a.write for a in SPEC[op].accesses))
PIM_SP_READERS = frozenset(op for op in PIM_OPS
                           if any(a.space == "sp" and not a.write for a in SPEC[op].accesses))
assert all(len(f) <= N_FIELDS for f in FIELDS.values())
#: Per opcode: field names, their set, defaults, valid flags (the constructor's quick lookups).
_SHAPE = {op: (s.fields, frozenset(s.fields), s.defaults, s.flags) for op, s in SPEC.items()}
_PAD = tuple((0,) * (N_FIELDS - k) for k in range(N_FIELDS + 1))


def access_length(acc: Access, args: dict, banks: int) -> int:
    """Length of one access of an instruction with field values ``args``."""
    n = 1
    for term in acc.length:
        if isinstance(term, int):
            n *= term
        elif term == "COL":
            n *= COL
        elif term == "BANKS":
            n *= banks
        elif term == "CHANS":
            n *= bin(args["ch_mask"]).count("1")
        else:
            n *= args[term]
    return n


def effects(ins: Instr, banks: int) -> tuple[Side, list, list]:
    """The side of ``ins`` and the ranges it reads and writes.

    Parameters
    ----------
    ins : Instr
        The instruction.
    banks : int
        Banks per channel (``RD_MAC``/``WR_BIAS`` move words per selected bank).

    Returns
    -------
    (Side, list of (str, int, int), list of (str, int, int))
        The side, then the read and the written ranges as ``(space, lo, hi)`` half-open, with
        ``space`` ``"sp"`` (scratchpad words) or ``"reg"`` (scalar registers).
    """
    spec = SPEC[ins.op]
    reads, writes = [], []
    for acc in spec.accesses:
        if acc.flag and not ins.flags & acc.flag:
            continue
        if acc.flag_clear and ins.flags & acc.flag_clear:
            continue
        lo = ins.args[acc.base] + (ins.args[acc.offset] if acc.offset else 0)
        rng = (acc.space, lo, lo + access_length(acc, ins.args, banks))
        (writes if acc.write else reads).append(rng)
    return spec.side, reads, writes


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
        :func:`f32_bits`. Missing fields take ``SPEC[op].defaults``, else 0.
    flags : int
        Opcode-specific flag bits (``FLAG_VEC_FROM_REG`` for ``RD_VEC``).
    """

    op: Op
    args: dict = field(default_factory=dict)
    flags: int = 0

    def __post_init__(self):
        op = self.op if type(self.op) is Op else Op(self.op)
        object.__setattr__(self, "op", op)
        names, known, dflt, valid = _SHAPE[op]
        args = self.args
        for key, value in args.items():
            if key not in known:
                raise ProgramError(f"{op.name} has no field {key!r}; its fields are {names}")
            # ``type(...) is int`` first: the compiler's ints take the quick path.
            if not (type(value) is int or isinstance(value, (int, np.integer))) or not (
                    0 <= value < 2**32):
                raise ProgramError(f"{op.name}.{key}={value!r} is not an unsigned 32-bit integer")
        flags = self.flags
        if not isinstance(flags, (int, np.integer)) or not 0 <= flags < 2**16:
            raise ProgramError(f"{op.name} flags={flags!r} do not fit 16 bits")
        flags = int(flags)
        if flags & ~valid:
            raise ProgramError(
                f"{op.name} flags={flags:#x} sets undefined bits (valid: {valid:#x})")
        object.__setattr__(self, "flags", flags)
        # Normalise to every field present, so equal instructions compare equal.
        object.__setattr__(self, "args", {n: int(args[n]) if n in args else dflt.get(n, 0)
                                          for n in names})

    @classmethod
    def _trusted(cls, op: Op, args: dict, flags: int) -> Instr:
        """An instruction from already validated parts (:func:`decode`), without re-checking."""
        ins = object.__new__(cls)
        object.__setattr__(ins, "op", op)
        object.__setattr__(ins, "args", args)
        object.__setattr__(ins, "flags", flags)
        return ins

    def __getitem__(self, name: str) -> int:
        return self.args[name]

    def fields(self) -> tuple[int, ...]:
        """The seven field slots, zero-filled."""
        return tuple(self.args.values()) + _PAD[len(self.args)]

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


#: One binary instruction as a numpy record (the layout of :data:`INSTR`).
_RECORD = np.dtype([("op", "<u2"), ("flags", "<u2"), ("f", "<u4", (N_FIELDS,))])
assert _RECORD.itemsize == INSTR.size
_OP_OF = {int(op): op for op in Op}
_OPCODES = np.array(sorted(_OP_OF), dtype=np.uint16)
_NFIELDS = np.zeros(1 << 16, dtype=np.int64)
_VALIDFLAGS = np.zeros(1 << 16, dtype=np.uint16)
for _op in Op:
    _NFIELDS[_op], _VALIDFLAGS[_op] = len(FIELDS[_op]), VALID_FLAGS[_op]


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
    rec = np.frombuffer(blob, dtype=_RECORD, offset=HEADER.size, count=count)
    codes, flag_words, slots = rec["op"], rec["flags"], rec["f"]
    # Validate every word at once; the loop below builds instructions from checked parts.
    known = np.isin(codes, _OPCODES)
    if not known.all():
        index = int(np.argmin(known))
        raise ProgramError(f"{source}: instruction {index} has unknown opcode "
                           f"{int(codes[index]):#x}; corrupt program")
    nfields = _NFIELDS[codes]
    unused = (slots != 0) & (np.arange(N_FIELDS) >= nfields[:, None])
    bad_flags = (flag_words & ~_VALIDFLAGS[codes]) != 0
    bad = unused.any(axis=1) | bad_flags
    if bad.any():
        index = int(np.argmax(bad))
        op = Op(int(codes[index]))
        what = ("sets unused fields" if unused[index].any() else
                f"flags={int(flag_words[index]):#x} sets undefined bits "
                f"(valid: {VALID_FLAGS[op]:#x})")
        raise ProgramError(f"{source}: instruction {index} ({op.name}) {what}; corrupt program")
    trusted = Instr._trusted
    program = []
    for code, flags, vals in zip(codes.tolist(), flag_words.tolist(), slots.tolist(), strict=True):
        op = _OP_OF[code]
        program.append(trusted(op, dict(zip(FIELDS[op], vals, strict=False)), flags))
    return program


def check_complete(program: list[Instr], source: str = "program") -> None:
    """Refuse a program that does not end with ``EOC`` (an executor would run off its end).

    Raises
    ------
    ProgramError
        Naming the source and the fix.
    """
    if not program:
        raise ProgramError(f"{source}: the program has no instructions; it must end with EOC "
                           "(recompile with `pimgpt compile`)")
    if program[-1].op is not Op.EOC:
        raise ProgramError(f"{source}: the program does not end with EOC; it is truncated, add "
                           "an EOC line or recompile")


def __getattr__(name: str):
    """``parse_asm`` and ``to_asm``: the text form lives in :mod:`pimgpt.core.asm` (this module's
    size) and stays importable from here, where callers look for the ISA. Looked up lazily, as
    :mod:`pimgpt.core.asm` imports this module."""
    if name in ("parse_asm", "to_asm"):
        from pimgpt.core import asm

        return getattr(asm, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

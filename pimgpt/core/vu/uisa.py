"""The vector unit's micro-instruction set (micro-ISA) and its cycle rules.

Machine (``W`` lanes, ``W`` a power of two in 16..128, ``asic.vector_lanes``):

* 32 scalar registers ``s0..s31`` of 32 bits (``s0`` reads as 0). On dispatch an ASIC
  instruction's seven fields go to ``s1..s7`` (``docs/isa.md`` field order).
* 32 vector registers ``v0..v31`` of ``W`` lanes x 32 bits.
* Per lane: a multiply-add pipeline (fp32 multiplier then fp32 adder), an integer ALU with fp32
  compare/select, a constant table, and the lane network (shift, lane broadcast, unzip).
* A scratchpad port of ``W`` consecutive words at any alignment, masked by an address window.
* A hardware loop stack (4 levels) and the front end's scalar registers ``R0..R15`` (``WSR``,
  ``RSR``).

Micro-word (64 bits; :data:`FIELDS`, bit 0 first)::

    op[6] | rd[5] | ra[5] | rb[5] | rc[5] | bsel[2] | mode[4] | imm[32]

Operand ``B`` of an operation is ``v[rb]`` (``bsel = REG``; ``s[rb]`` for scalar operations),
``imm`` (``IMM``) or ``s[rb]`` broadcast to all lanes (``SREG``). ``MAD`` adds ``C`` = ``v[rc]``, or
``imm`` when ``mode`` bit 0 is set (``B`` must then be a register). Vector operations are lane by
lane; fp operations take their inputs after DAZ and follow ``pimgpt/core/numerics.py``.

=========== ============================================================== ==========
operation   semantics (lane ``l``; ``B``/``C`` as above)                     latency
=========== ============================================================== ==========
VFADD       ``vd = f32_add(va, B)``                                          ``La``
VFMUL       ``vd = f32_mul(va, B)``                                          ``Lm``
VMAD        ``vd = f32_add(f32_mul(va, B), C)`` (two roundings)              ``Lm + La``
VADD..VSRA  32-bit ``+ - (B - va) & | ^ << >>u >>s`` (shift by ``B & 31``)    1
VFMAX/VFMIN total-order max/min (``numerics.f32_order_key``), NaN if either  1
VFGT/VFEQ   ``va > B`` / ``va == B`` as floats (DAZ, ``-0 == +0``, NaN above   1 (FP)
            every number and equal to NaN) -> 1 or 0
VSLTU       ``va < B`` unsigned -> 1 or 0                                     1
VCMOV       ``vd = B`` where ``cond(va)`` else ``vd`` (mode 1: sign bit of     1
            ``va``; mode 0: ``va != 0``)
VTBL        ``vd = TABLES[mode][va & (len - 1)]``                            1
VSHD        ``vd[l] = va[l + B]`` if ``l + B < W`` else ``-0`` (lane shift)   1
VBCL        ``vd[l] = va[B]`` (broadcast one lane)                            1
VUZP        unzip: lanes ``< W/2`` from ``va``, the rest from ``v[rc]``; with   1
            ``s = B`` (a power of two, at most ``W/2``), ``j`` the lane within
            its half: ``src[(j // s) * 2s + j % s + (s if mode bit 0 else 0)]``
VIOTA       ``vd[l] = l + B``                                                 1
VBCAST      ``vd[l] = B``                                                     1
VLD         ``vd[l] = sp[a + l]`` for ``a = s[ra] + imm`` where ``s[rc] <=     ``Lld``
            a + l < s[rb]`` (the window, 32-bit addresses); other lanes get
            ``mode``: 0 -> -0, 1 -> -Inf, 2 -> +0
VST         ``sp[a + l] = vd[l]`` inside the window (``a`` and window as VLD)  --
SADD..SSHR  scalar ``s[rd] = s[ra] (+ - & | << >>u) B``                      1
SMIN/SMAX   unsigned                                                         1
SMOVV       ``s[rd] = v[ra][B]``                                             1
WSR         ``R[B & 15] = s[ra]`` (front-end register, ARGMAX)               --
RSR         ``s[rd] = R[B & 15]`` (front-end register, ARGMAXC)              1
LOOP        run ``pc+1 .. imm`` ``s[ra]`` times (skip to ``imm+1`` if 0)     --
BEQ..BGEU   ``if s[ra] cmp s[rb]: pc = imm`` (``==``, ``!=``, ``<u``, ``>=u``)  --
DONE        end of the routine                                               --
=========== ============================================================== ==========

Cycle rules (the ISS and the RTL follow them exactly; ``Unit`` gives the issue classes):

1. Dispatch takes one cycle (fields to ``s1..s7``); micro-operations issue in order from cycle 1.
2. An operation issues at the first cycle ``t`` at which every vector register it reads or
   writes is ready (its last write has completed: a scoreboard, no bypass beyond the latency)
   and its register-file write port is free at ``t + latency`` (port F takes the results of the
   FP class, port I those of the INT class and ``VLD`` data; one write per port and cycle). Its
   result is ready at ``t + latency``; scalar results at ``t + 1``.
3. Dual issue (``issue = 2``): the next operation in program order issues in the same cycle as
   the previous one when it is the very next micro-word (no taken branch or loop jump between
   them), neither is a ``CONTROL`` operation, their classes differ, it reads and writes no
   register (vector or scalar) that the previous one writes, and rule 2 holds for it at ``t``.
   At most two per cycle.
4. ``VST`` writes the scratchpad at ``t``; ``VLD`` reads it at ``t``; so memory is in order.
5. ``LOOP`` and branches take their issue cycle; the jump back of a loop costs nothing.
6. ``DONE`` issues when every vector register is ready; the instruction takes ``t_DONE + 1``
   cycles and the next one dispatches in the following cycle.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum
from functools import lru_cache

from pimgpt.core import nonlinear as nl

#: The micro-word, bit 0 first: (name, width). ``encode``/``decode``/``amaranth_layout`` use it.
FIELDS: tuple[tuple[str, int], ...] = (
    ("op", 6), ("rd", 5), ("ra", 5), ("rb", 5), ("rc", 5), ("bsel", 2), ("mode", 4), ("imm", 32),
)
WORD_BITS = sum(w for _, w in FIELDS)
N_SREGS = 32
N_VREGS = 32
LOOP_DEPTH = 4
#: Supported lane counts (powers of two dividing ``numerics.REDUCE_LANES``).
LANE_CHOICES = (16, 32, 64, 128)


class UOp(IntEnum):
    """Micro-operations (the ``op`` field)."""

    VFADD = 0
    VFMUL = 1
    VMAD = 2
    VADD = 3
    VSUB = 4
    VRSUB = 5
    VAND = 6
    VOR = 7
    VXOR = 8
    VSHL = 9
    VSHR = 10
    VSRA = 11
    VFMAX = 12
    VFMIN = 13
    VFGT = 14
    VFEQ = 15
    VSLTU = 16
    VCMOV = 17
    VTBL = 18
    VSHD = 19
    VBCL = 20
    VUZP = 21
    VIOTA = 22
    VBCAST = 23
    VLD = 24
    VST = 25
    SADD = 32
    SSUB = 33
    SAND = 34
    SOR = 35
    SSHL = 36
    SSHR = 37
    SMIN = 38
    SMAX = 39
    SMOVV = 40
    WSR = 41
    RSR = 42
    LOOP = 48
    BEQ = 49
    BNE = 50
    BLTU = 51
    BGEU = 52
    DONE = 53


class BSel(IntEnum):
    """Source of operand ``B``."""

    REG = 0
    IMM = 1
    SREG = 2


class Fill(IntEnum):
    """``VLD`` value of lanes outside the window (``mode``)."""

    NEG_ZERO = 0
    NEG_INF = 1
    POS_ZERO = 2


#: ``mode`` bits.
MODE_CIMM = 0x1  # VMAD: C is the immediate
MODE_UPPER = 0x1  # VUZP: upper halves
MODE_SIGN = 0x1  # VCMOV: condition is the sign bit

#: Constant tables of ``VTBL`` (``mode`` selects one): 0 is ``nonlinear.EXP_TABLE_ADJ``.
TABLES: tuple[tuple[int, ...], ...] = (tuple(nl.EXP_TABLE_ADJ),)

#: Operations by unit.
VFP_OPS = frozenset({UOp.VFADD, UOp.VFMUL, UOp.VMAD})
VALU_OPS = frozenset(op for op in UOp if UOp.VADD <= op <= UOp.VBCAST)
SCALAR_OPS = frozenset(op for op in UOp if UOp.SADD <= op <= UOp.SMOVV) | {UOp.RSR}
BRANCH_OPS = frozenset({UOp.BEQ, UOp.BNE, UOp.BLTU, UOp.BGEU})


class Unit(IntEnum):
    """Issue classes: two micro-operations of different classes may issue in one cycle."""

    FP = 0  #: VFADD, VFMUL, VMAD, and the float compares VFGT, VFEQ (write port F)
    INT = 1  #: the other vector operations except memory (write port I)
    MEM = 2  #: VLD (write port I), VST
    SCALAR = 3  #: scalar operations, SMOVV, WSR, RSR
    CONTROL = 4  #: LOOP, branches, DONE (always issue alone)


def unit_of(op: UOp) -> Unit:
    """The issue class of a micro-operation."""
    if op in VFP_OPS or op in (UOp.VFGT, UOp.VFEQ):
        return Unit.FP
    if op in VALU_OPS:
        return Unit.INT
    if op in (UOp.VLD, UOp.VST):
        return Unit.MEM
    if op in SCALAR_OPS or op is UOp.WSR:
        return Unit.SCALAR
    return Unit.CONTROL


@dataclass(frozen=True)
class Pipeline:
    """Pipeline parameters of the vector unit (``asic.*`` keys of the hardware config).

    Parameters
    ----------
    add, mul : int
        fp32 adder and multiplier pipeline depths, ASIC cycles (``fp_add_latency``,
        ``fp_mul_latency``).
    load : int
        Scratchpad read latency of ``VLD`` (``sp_read_latency``).
    issue : int
        Micro-operations issued per cycle, 1 or 2 (``vector_issue_width``).
    """

    add: int = 2
    mul: int = 2
    load: int = 2
    issue: int = 2

    def __post_init__(self):
        for name, hi in (("add", 8), ("mul", 8), ("load", 8), ("issue", 2)):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or not 1 <= v <= hi:
                raise ValueError(f"pipeline {name}={v!r} must be an integer in 1..{hi}")

    def of(self, op: UOp) -> int:
        """Cycles from issue to a ready result of a vector operation (0: writes no register)."""
        if op is UOp.VFADD:
            return self.add
        if op is UOp.VFMUL:
            return self.mul
        if op is UOp.VMAD:
            return self.mul + self.add
        if op is UOp.VLD:
            return self.load
        if op in VALU_OPS:
            return 1
        return 0


def check_lanes(lanes) -> int:
    """Validate a lane count (one of :data:`LANE_CHOICES`)."""
    if isinstance(lanes, bool) or not isinstance(lanes, int) or lanes not in LANE_CHOICES:
        raise ValueError(f"vector lanes must be one of {LANE_CHOICES}, not {lanes!r}")
    return lanes


# ---------------------------------------------------------------------------------------------
# The micro-word: one field table, encode / decode / Amaranth layout
# ---------------------------------------------------------------------------------------------
_OFFSETS = {}
_pos = 0
for _name, _width in FIELDS:
    _OFFSETS[_name] = (_pos, _width)
    _pos += _width
del _pos, _name, _width


@dataclass(frozen=True)
class UWord:
    """One decoded micro-instruction (every field of :data:`FIELDS`)."""

    op: UOp
    rd: int = 0
    ra: int = 0
    rb: int = 0
    rc: int = 0
    bsel: BSel = BSel.REG
    mode: int = 0
    imm: int = 0

    def __post_init__(self):
        object.__setattr__(self, "op", UOp(self.op))
        object.__setattr__(self, "bsel", BSel(self.bsel))
        for name, width in FIELDS[1:]:
            v = int(getattr(self, name))
            if name == "imm":
                v &= 0xFFFFFFFF
            if not 0 <= v < (1 << width):
                raise ValueError(f"micro-word field {name}={v} does not fit {width} bits")
            object.__setattr__(self, name, v if name != "bsel" else BSel(v))


def encode(w: UWord) -> int:
    """The 64-bit micro-word of ``w`` (fields at the offsets of :data:`FIELDS`)."""
    word = 0
    for name, (off, width) in _OFFSETS.items():
        word |= (int(getattr(w, name)) & ((1 << width) - 1)) << off
    return word


def decode(word: int) -> UWord:
    """Inverse of :func:`encode`."""
    word = int(word)
    return UWord(**{n: (word >> off) & ((1 << w) - 1) for n, (off, w) in _OFFSETS.items()})


@lru_cache(maxsize=1)
def amaranth_layout():
    """The micro-word as an Amaranth ``data.StructLayout`` generated from :data:`FIELDS`.

    ``op`` is an Amaranth enum (shape 6) with the members of :class:`UOp`, ``bsel`` one with the
    members of :class:`BSel`, so the RTL decodes them with ``m.Switch``. Built once (the same
    enum classes for every caller, so views of it assign to each other).
    """
    from amaranth.hdl import Shape
    from amaranth.lib import data
    from amaranth.lib import enum as aenum

    enums = {}
    for name, members in (("op", UOp), ("bsel", BSel)):
        shape = aenum.Enum(f"{members.__name__}Shape", [(m.name, m.value) for m in members])
        if Shape.cast(shape).width != _OFFSETS[name][1]:  # the enum must fill its field
            raise ValueError(f"micro-word field {name} is {_OFFSETS[name][1]} bits, its enum "
                             f"needs {Shape.cast(shape).width}")
        enums[name] = shape
    return data.StructLayout({name: enums.get(name, width) for name, width in FIELDS})


def vector_reads(w: UWord) -> tuple[int, ...]:
    """Vector registers ``w`` reads (the scoreboard checks them; also ``rd`` when it is read)."""
    op = w.op
    if op in VFP_OPS or op in VALU_OPS:
        regs = [] if op in (UOp.VIOTA, UOp.VBCAST) else [w.ra]
        if w.bsel is BSel.REG:
            regs.append(w.rb)
        if (op is UOp.VMAD and not w.mode & MODE_CIMM) or op is UOp.VUZP:
            regs.append(w.rc)
        if op is UOp.VCMOV:
            regs.append(w.rd)
        return tuple(regs)
    if op is UOp.VST:
        return (w.rd,)
    if op is UOp.SMOVV:
        return (w.ra,)
    return ()


def vector_writes(w: UWord) -> tuple[int, ...]:
    """Vector registers ``w`` writes."""
    return (w.rd,) if (w.op in VFP_OPS or w.op in VALU_OPS or w.op is UOp.VLD) else ()


def scalar_reads(w: UWord) -> tuple[int, ...]:
    """Scalar registers ``w`` reads."""
    op = w.op
    if op in (UOp.VLD, UOp.VST):
        return (w.ra, w.rb, w.rc)
    if op in BRANCH_OPS:
        return (w.ra, w.rb)
    if op is UOp.LOOP:
        return (w.ra,)
    if op in SCALAR_OPS or op is UOp.WSR:
        regs = () if op is UOp.SMOVV else (w.ra,)
        return regs + ((w.rb,) if w.bsel is not BSel.IMM else ())
    if w.bsel is BSel.SREG:
        return (w.rb,)
    return ()


def scalar_writes(w: UWord) -> tuple[int, ...]:
    """Scalar registers ``w`` writes (``s0`` is never written)."""
    op = w.op
    if op in SCALAR_OPS and w.rd:
        return (w.rd,)
    return ()

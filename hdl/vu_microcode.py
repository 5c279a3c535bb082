"""Microcode of the vector unit: micro-ISA, assembler, the routine of every ASIC instruction, and an
instruction-set simulator (ISS) that is the cycle and bit reference of :mod:`.vector_unit`.

The vector unit is an in-order microcoded sequencer with a scalar part (32 registers ``r0..r31``,
one fp32 adder and multiplier, integer logic, a scratchpad word port) and ``L`` SIMD lanes (32
vector registers ``v0..v31`` of ``L`` words, ``L`` fp32 adders and multipliers, a scratchpad port of
``L`` consecutive words). Each ASIC instruction (``VADD`` ... ``LAYERNORM``) starts the routine at
its entry point with the instruction's fields in ``r1..r7`` (``f0..f6``). Element-wise work runs
``L`` elements at a time and is branch-free (special values are handled by per-lane conditional
moves); the left-to-right sums and scans that the numerics contract prescribes run on the scalar
part. The routines follow the step lists in :mod:`pimgpt.core.nonlinear` literally, so the unit
reproduces those functions bit for bit with only fp32 adds and multiplies.

Micro-instruction word (64 bits, fields from bit 0)::

    op[6] | rd[5] | ra[5] | rb[5] | use_imm[1] | vec[1] | unused[9] | imm[32]

``B`` below is ``imm`` when ``use_imm`` is set, else register ``rb``; ``r0`` reads as zero. With
``vec`` set, an ALU/fp op works on vector registers lane by lane (an immediate is broadcast),
``LD``/``ST`` move ``L`` words between ``v[rd]`` and the scratchpad at the scalar address
``r[ra] + B`` (a vector store writes only lanes ``< VL``).

========== ==================================================== ========================
op          semantics                                            cycles
========== ==================================================== ========================
ADD..SRA    ``rd = ra (+ - & | ^ << >>u >>s) B`` (32-bit)        1
SLT/SLTU    ``rd = ra < B`` (signed / unsigned)                  1
FADD/FMUL   ``rd = f32_add/f32_mul(ra, B)``                      1 + unit latency
FLT         ``rd = ra < B`` as fp32 (DAZ; false if either NaN)   1
LD          ``rd = sp[ra + B]``                                  2
ST          ``sp[ra + B] = rd``                                  1
Bcc         ``if ra cc rb: pc = imm`` (EQ NE LT GE LTU GEU)      1
JAL         ``rd = pc + 1; pc = imm``                            1
JR          ``pc = ra``                                          1
WSR         scalar register ``R[ra] = rb`` (ARGMAX)              1
DONE        end of the routine                                   1
CMOV        ``v[rd][l] = B[l] if v[ra][l] != 0`` (vector)        1
BCAST       ``v[rd][l] = imm`` or ``r[ra]`` (vector)             1
SETVL       ``VL = min(L, r[ra])``                               1
========== ==================================================== ========================
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field
from enum import IntEnum

import numpy as np

from pimgpt.core import nonlinear as nl
from pimgpt.core import numerics as nx
from pimgpt.core.isa import Op

N_REGS = 32
WORD_BITS = 64
SIGN = 0x80000000
ABS = 0x7FFFFFFF
MANT = 0x007FFFFF
ONE = 0x3F800000
INF = 0x7F800000
NAN = int(nx.FP32_CANONICAL_NAN)
#: 1.5 * 2**23: adding it rounds an fp32 of magnitude < 2**22 to an integer (round half even).
ROUND_MAGIC = 0x4B400000
#: 2**23 as fp32: ``bits(2**23) | n`` is ``2**23 + n`` for ``0 <= n < 2**23``.
INT_MAGIC = 0x4B000000


class UOp(IntEnum):
    """Micro-operations."""

    ADD = 0
    SUB = 1
    AND = 2
    OR = 3
    XOR = 4
    SHL = 5
    SHR = 6
    SRA = 7
    SLT = 8
    SLTU = 9
    FADD = 10
    FMUL = 11
    FLT = 12
    LD = 13
    ST = 14
    BEQ = 15
    BNE = 16
    BLT = 17
    BGE = 18
    BLTU = 19
    BGEU = 20
    JAL = 21
    JR = 22
    WSR = 23
    DONE = 24
    CMOV = 25
    BCAST = 26
    SETVL = 27


ALU_OPS = (UOp.ADD, UOp.SUB, UOp.AND, UOp.OR, UOp.XOR, UOp.SHL, UOp.SHR, UOp.SRA, UOp.SLT,
           UOp.SLTU)
BRANCH_OPS = (UOp.BEQ, UOp.BNE, UOp.BLT, UOp.BGE, UOp.BLTU, UOp.BGEU)


def f32(value: float) -> int:
    """fp32 bit pattern of ``value`` (for immediates)."""
    return int(np.array(value, dtype=np.float32).view(np.uint32))


def encode(op: UOp, rd: int = 0, ra: int = 0, rb: int = 0, imm: int | None = None,
           vec: bool = False) -> int:
    """Pack one micro-instruction into a 64-bit word (``imm`` given: ``B`` is the immediate)."""
    for name, r in (("rd", rd), ("ra", ra), ("rb", rb)):
        if not 0 <= r < N_REGS:
            raise ValueError(f"register {name}={r} out of range 0..{N_REGS - 1}")
    use_imm = imm is not None
    imm = 0 if imm is None else imm & 0xFFFFFFFF
    return (int(op) | rd << 6 | ra << 11 | rb << 16 | int(use_imm) << 21 | int(bool(vec)) << 22
            | imm << 32)


def decode(word: int) -> tuple[UOp, int, int, int, bool, int, bool]:
    """Unpack a micro-instruction word into ``(op, rd, ra, rb, use_imm, imm, vec)``."""
    return (UOp(word & 0x3F), (word >> 6) & 31, (word >> 11) & 31, (word >> 16) & 31,
            bool((word >> 21) & 1), (word >> 32) & 0xFFFFFFFF, bool((word >> 22) & 1))


class Asm:
    """A two-pass assembler: methods emit micro-instructions, labels resolve at :meth:`words`."""

    def __init__(self):
        self.code: list[tuple] = []  # (op, rd, ra, rb, imm or label or None, vec)
        self.labels: dict[str, int] = {}
        self._n = 0

    def label(self, name: str) -> None:
        if name in self.labels:
            raise ValueError(f"duplicate microcode label {name!r}")
        self.labels[name] = len(self.code)

    def fresh(self, stem: str) -> str:
        """A unique label name."""
        self._n += 1
        return f"{stem}.{self._n}"

    def emit(self, op: UOp, rd=0, ra=0, rb=0, imm=None, vec=False) -> None:
        self.code.append((op, rd, ra, rb, imm, vec))

    # Register-register and register-immediate forms: ``b`` is a register number unless ``imm``.
    def op3(self, op, rd, ra, rb=0, imm=None):
        self.emit(op, rd, ra, rb, imm)

    def vop(self, op, vd, va, vb=0, imm=None):
        """Vector form of an ALU/fp op, or ``LD``/``ST`` of ``v[vd]`` at scalar ``r[va] + B``."""
        self.emit(op, vd, va, vb, imm, vec=True)

    def cmov(self, vd, vcond, vsrc=0, imm=None):
        """``v[vd][l] = (imm or v[vsrc][l]) where v[vcond][l] != 0``."""
        self.emit(UOp.CMOV, vd, vcond, vsrc, imm, vec=True)

    def bcast(self, vd, ra=0, imm=None):
        """``v[vd] = imm`` (or scalar ``r[ra]``) in every lane."""
        self.emit(UOp.BCAST, vd, ra, 0, imm, vec=True)

    def vmov(self, vd, va):
        self.vop(UOp.XOR, vd, va, imm=0)

    def li(self, rd, value):
        self.emit(UOp.ADD, rd, 0, 0, value)

    def mov(self, rd, ra):
        self.emit(UOp.ADD, rd, ra, 0, 0)

    def br(self, op, ra, rb, target: str):
        self.emit(op, 0, ra, rb, target)

    def j(self, target: str):
        self.emit(UOp.BEQ, 0, 0, 0, target)

    def call(self, target: str):
        self.emit(UOp.JAL, LINK, 0, 0, target)

    def ret(self):
        self.emit(UOp.JR, 0, LINK)

    def words(self) -> list[int]:
        out = []
        for op, rd, ra, rb, imm, vec in self.code:
            if isinstance(imm, str):
                if imm not in self.labels:
                    raise ValueError(f"undefined microcode label {imm!r}")
                imm = self.labels[imm]
            out.append(encode(op, rd, ra, rb, imm, vec))
        return out


# Register conventions. r1..r7: instruction fields. r8..r15: routine loop state. r16: subroutine
# argument/result, r17..r27: subroutine temporaries, r28..r30: routine temporaries, r31: link.
ARG = 16
LINK = 31


# ---------------------------------------------------------------------------------------------
# Subroutines (argument and result in r16; exp/recip/rsqrt clobber r17..r23, gelu r17..r27)
# ---------------------------------------------------------------------------------------------
def _is_nan(a: Asm, rd, rx, tmp):
    """rd = 1 if rx is a NaN (|x| > Inf as integers)."""
    a.op3(UOp.AND, tmp, rx, imm=ABS)
    a.op3(UOp.SLTU, rd, tmp, imm=INF + 1)
    a.op3(UOp.XOR, rd, rd, imm=1)


def _sub_recip(a: Asm):
    """``nonlinear.reciprocal`` on r16."""
    a.label("recip")
    done, zero, special = a.fresh("rcp.done"), a.fresh("rcp.zero"), a.fresh("rcp.special")
    a.op3(UOp.AND, 17, ARG, imm=SIGN)  # sign
    a.op3(UOp.SHR, 18, ARG, imm=23)
    a.op3(UOp.AND, 18, 18, imm=0xFF)  # E
    a.br(UOp.BEQ, 18, 0, zero)  # DAZ: a zero or subnormal gives +-Inf
    a.li(19, 0xFF)
    a.br(UOp.BEQ, 18, 19, special)
    # 1./2. m in [1, 2); seed y = MAGIC - bits(m)
    a.op3(UOp.AND, 19, ARG, imm=MANT)
    a.op3(UOp.OR, 19, 19, imm=ONE)  # m
    a.op3(UOp.OR, 20, 19, imm=SIGN)  # -m: mul(-m, y) == neg(mul(m, y)) before the add
    a.li(21, nl.RECIP_MAGIC)
    a.op3(UOp.SUB, 21, 21, 19)  # y
    # 3. Newton: e = 1 - m*y; y = y + y*e
    for _ in range(nl.RECIP_NEWTON_STEPS):
        a.op3(UOp.FMUL, 22, 20, 21)
        a.op3(UOp.FADD, 22, 22, imm=ONE)
        a.op3(UOp.FMUL, 22, 21, 22)
        a.op3(UOp.FADD, 21, 21, 22)
    # 4. sign; 5. scale by 2**k, k = 127 - E split in two halves
    a.op3(UOp.OR, 21, 21, 17)
    a.li(22, 127)
    a.op3(UOp.SUB, 22, 22, 18)  # k
    a.op3(UOp.SRA, 23, 22, imm=1)  # k1
    a.op3(UOp.SUB, 20, 22, 23)  # k2
    a.op3(UOp.ADD, 23, 23, imm=127)
    a.op3(UOp.SHL, 23, 23, imm=23)
    a.op3(UOp.ADD, 20, 20, imm=127)
    a.op3(UOp.SHL, 20, 20, imm=23)
    a.op3(UOp.FMUL, 21, 21, 23)
    a.op3(UOp.FMUL, ARG, 21, 20)
    a.j(done)
    a.label(zero)
    a.op3(UOp.OR, ARG, 17, imm=INF)
    a.j(done)
    a.label(special)  # Inf -> signed zero, NaN -> canonical NaN
    a.op3(UOp.AND, 19, ARG, imm=MANT)
    a.mov(ARG, 17)
    a.br(UOp.BEQ, 19, 0, done)
    a.li(ARG, NAN)
    a.label(done)
    a.ret()


def _sub_rsqrt(a: Asm):
    """``nonlinear.rsqrt`` on r16."""
    a.label("rsqrt")
    done, zero, nan = a.fresh("rsq.done"), a.fresh("rsq.zero"), a.fresh("rsq.nan")
    even = a.fresh("rsq.even")
    a.op3(UOp.SHR, 18, ARG, imm=23)
    a.op3(UOp.AND, 18, 18, imm=0xFF)  # E
    a.br(UOp.BEQ, 18, 0, zero)
    _is_nan(a, 19, ARG, 20)
    a.br(UOp.BNE, 19, 0, nan)
    a.op3(UOp.SHR, 19, ARG, imm=31)
    a.br(UOp.BNE, 19, 0, nan)  # x < 0 (including -Inf)
    a.li(19, 0xFF)
    a.li(17, 0)
    a.br(UOp.BEQ, 18, 19, "rsq.ret_r17")  # +Inf -> +0
    # 1. m in [1, 2), e = E - 127; odd e: m = 2m, e = e - 1
    a.op3(UOp.AND, 19, ARG, imm=MANT)
    a.op3(UOp.OR, 19, 19, imm=ONE)  # m
    a.op3(UOp.SUB, 20, 18, imm=127)  # e
    a.op3(UOp.AND, 21, 20, imm=1)
    a.br(UOp.BEQ, 21, 0, even)
    a.op3(UOp.FMUL, 19, 19, imm=f32(2.0))
    a.op3(UOp.SUB, 20, 20, imm=1)
    a.label(even)
    # 2. seed; 3. h = m/2 and three Newton steps
    a.op3(UOp.SHR, 21, 19, imm=1)
    a.li(22, nl.RSQRT_MAGIC)
    a.op3(UOp.SUB, 22, 22, 21)  # y
    a.op3(UOp.FMUL, 21, 19, imm=f32(0.5) | SIGN)  # -h: mul(mul(y,y), -h) == neg(t) before the add
    for _ in range(nl.RSQRT_NEWTON_STEPS):
        a.op3(UOp.FMUL, 23, 22, 22)
        a.op3(UOp.FMUL, 23, 23, 21)
        a.op3(UOp.FADD, 23, 23, imm=f32(0.5))
        a.op3(UOp.FMUL, 23, 22, 23)
        a.op3(UOp.FADD, 22, 22, 23)
    # 4. result = y * 2**(-e/2)
    a.op3(UOp.SRA, 20, 20, imm=1)
    a.op3(UOp.SUB, 20, 0, 20)
    a.op3(UOp.ADD, 20, 20, imm=127)
    a.op3(UOp.SHL, 20, 20, imm=23)
    a.op3(UOp.FMUL, ARG, 22, 20)
    a.j(done)
    a.label(zero)
    a.op3(UOp.AND, 17, ARG, imm=SIGN)
    a.op3(UOp.OR, ARG, 17, imm=INF)
    a.j(done)
    a.label(nan)
    a.li(ARG, NAN)
    a.j(done)
    a.label("rsq.ret_r17")
    a.mov(ARG, 17)
    a.label(done)
    a.ret()


# ---------------------------------------------------------------------------------------------
# Vector subroutines: argument and result in v16, all lanes, branch-free
# ---------------------------------------------------------------------------------------------
VARG = 16


def _v_is_nan(a: Asm, vd, vx):
    """v[vd] = 1 in the lanes where v[vx] is a NaN."""
    a.vop(UOp.AND, vd, vx, imm=ABS)
    a.vop(UOp.SLTU, vd, vd, imm=INF + 1)
    a.vop(UOp.XOR, vd, vd, imm=1)


def _vsub_exp(a: Asm):
    """``nonlinear.exp`` on every lane of v16 (clobbers v17..v24)."""
    a.label("vexp")
    _v_is_nan(a, 24, VARG)
    # 0. clamp to [-104, 89] (compare and select)
    a.vop(UOp.FLT, 17, VARG, imm=f32(nl.EXP_X_MIN))
    a.cmov(VARG, 17, imm=f32(nl.EXP_X_MIN))
    a.bcast(18, imm=f32(nl.EXP_X_MAX))
    a.vop(UOp.FLT, 17, 18, VARG)
    a.cmov(VARG, 17, imm=f32(nl.EXP_X_MAX))
    # 1. t = x * log2e; n = rint(t) through 1.5*2**23; nf = float(n)
    a.vop(UOp.FMUL, 17, VARG, imm=nl.LOG2E_BITS)
    a.vop(UOp.FADD, 17, 17, imm=ROUND_MAGIC)
    a.vop(UOp.SUB, 19, 17, imm=ROUND_MAGIC)
    a.vop(UOp.FADD, 18, 17, imm=ROUND_MAGIC | SIGN)
    # 2. Cody-Waite (neg(mul(nf, c)) == mul(nf, -c) before an add)
    a.vop(UOp.FMUL, 20, 18, imm=nl.LN2_HI_BITS | SIGN)
    a.vop(UOp.FADD, 20, VARG, 20)
    a.vop(UOp.FMUL, 21, 18, imm=nl.LN2_LO_BITS | SIGN)
    a.vop(UOp.FADD, 20, 20, 21)
    # 3. Horner, degree 7
    a.bcast(21, imm=f32(nl.EXP_TAYLOR[nl.EXP_TAYLOR_DEGREE]))
    for k in range(nl.EXP_TAYLOR_DEGREE - 1, -1, -1):
        a.vop(UOp.FMUL, 21, 21, 20)
        a.vop(UOp.FADD, 21, 21, imm=f32(nl.EXP_TAYLOR[k]))
    # 4.-5. scale by 2**n1 * 2**n2
    a.vop(UOp.SRA, 22, 19, imm=1)
    a.vop(UOp.SUB, 23, 19, 22)
    a.vop(UOp.ADD, 22, 22, imm=127)
    a.vop(UOp.SHL, 22, 22, imm=23)
    a.vop(UOp.ADD, 23, 23, imm=127)
    a.vop(UOp.SHL, 23, 23, imm=23)
    a.vop(UOp.FMUL, 21, 21, 22)
    a.vop(UOp.FMUL, VARG, 21, 23)
    a.cmov(VARG, 24, imm=NAN)
    a.ret()


def _vsub_recip(a: Asm):
    """``nonlinear.reciprocal`` on every lane of v16 (clobbers v17..v23, v25..v27)."""
    a.label("vrecip")
    a.vmov(27, VARG)
    a.vop(UOp.AND, 17, VARG, imm=SIGN)
    a.vop(UOp.SHR, 18, VARG, imm=23)
    a.vop(UOp.AND, 18, 18, imm=0xFF)
    a.vop(UOp.AND, 19, VARG, imm=MANT)
    a.vop(UOp.OR, 19, 19, imm=ONE)
    a.vop(UOp.OR, 20, 19, imm=SIGN)
    a.bcast(21, imm=nl.RECIP_MAGIC)
    a.vop(UOp.SUB, 21, 21, 19)
    for _ in range(nl.RECIP_NEWTON_STEPS):
        a.vop(UOp.FMUL, 22, 20, 21)
        a.vop(UOp.FADD, 22, 22, imm=ONE)
        a.vop(UOp.FMUL, 22, 21, 22)
        a.vop(UOp.FADD, 21, 21, 22)
    a.vop(UOp.OR, 21, 21, 17)
    a.bcast(22, imm=127)
    a.vop(UOp.SUB, 22, 22, 18)
    a.vop(UOp.SRA, 23, 22, imm=1)
    a.vop(UOp.SUB, 20, 22, 23)
    a.vop(UOp.ADD, 23, 23, imm=127)
    a.vop(UOp.SHL, 23, 23, imm=23)
    a.vop(UOp.ADD, 20, 20, imm=127)
    a.vop(UOp.SHL, 20, 20, imm=23)
    a.vop(UOp.FMUL, 21, 21, 23)
    a.vop(UOp.FMUL, VARG, 21, 20)
    # specials: zero/subnormal -> +-Inf; +-Inf -> +-0; NaN -> NaN
    a.vop(UOp.SLTU, 25, 18, imm=1)
    a.vop(UOp.OR, 26, 17, imm=INF)
    a.cmov(VARG, 25, 26)
    a.vop(UOp.SLTU, 25, 18, imm=0xFF)
    a.vop(UOp.XOR, 25, 25, imm=1)
    a.cmov(VARG, 25, 17)
    _v_is_nan(a, 26, 27)
    a.cmov(VARG, 26, imm=NAN)
    a.ret()


def _vsub_rsqrt(a: Asm):
    """``nonlinear.rsqrt`` on every lane of v16 (clobbers v17..v27)."""
    a.label("vrsqrt")
    a.vmov(27, VARG)
    a.vop(UOp.SHR, 18, VARG, imm=23)
    a.vop(UOp.AND, 18, 18, imm=0xFF)
    a.vop(UOp.AND, 19, VARG, imm=MANT)
    a.vop(UOp.OR, 19, 19, imm=ONE)
    a.vop(UOp.SUB, 20, 18, imm=127)
    a.vop(UOp.AND, 21, 20, imm=1)
    a.vop(UOp.FMUL, 22, 19, imm=f32(2.0))
    a.cmov(19, 21, 22)
    a.vop(UOp.SUB, 22, 20, imm=1)
    a.cmov(20, 21, 22)
    a.vop(UOp.SHR, 21, 19, imm=1)
    a.bcast(22, imm=nl.RSQRT_MAGIC)
    a.vop(UOp.SUB, 22, 22, 21)
    a.vop(UOp.FMUL, 21, 19, imm=f32(0.5) | SIGN)
    for _ in range(nl.RSQRT_NEWTON_STEPS):
        a.vop(UOp.FMUL, 23, 22, 22)
        a.vop(UOp.FMUL, 23, 23, 21)
        a.vop(UOp.FADD, 23, 23, imm=f32(0.5))
        a.vop(UOp.FMUL, 23, 22, 23)
        a.vop(UOp.FADD, 22, 22, 23)
    a.vop(UOp.SRA, 20, 20, imm=1)
    a.bcast(23, imm=0)
    a.vop(UOp.SUB, 20, 23, 20)
    a.vop(UOp.ADD, 20, 20, imm=127)
    a.vop(UOp.SHL, 20, 20, imm=23)
    a.vop(UOp.FMUL, VARG, 22, 20)
    # specials in the golden order: zero -> +-Inf; +Inf -> +0; NaN or negative -> NaN
    a.vop(UOp.SLTU, 25, 18, imm=1)
    a.vop(UOp.AND, 26, 27, imm=SIGN)
    a.vop(UOp.OR, 26, 26, imm=INF)
    a.cmov(VARG, 25, 26)
    a.vop(UOp.XOR, 26, 27, imm=INF)
    a.vop(UOp.SLTU, 26, 26, imm=1)
    a.cmov(VARG, 26, imm=0)
    _v_is_nan(a, 26, 27)
    a.vop(UOp.SHR, 24, 27, imm=31)
    a.vop(UOp.XOR, 25, 25, imm=1)  # exponent field non-zero
    a.vop(UOp.AND, 24, 24, 25)
    a.vop(UOp.OR, 26, 26, 24)
    a.cmov(VARG, 26, imm=NAN)
    a.ret()


def _vsub_gelu(a: Asm):
    """``nonlinear.gelu`` on every lane of v16 (calls vexp and vrecip; keeps x, u, z in
    v28..v30 and the link in r27)."""
    a.label("vgelu")
    a.mov(27, LINK)
    a.vmov(28, VARG)
    a.vop(UOp.FMUL, 17, VARG, VARG)
    a.vop(UOp.FMUL, 17, 17, VARG)
    a.vop(UOp.FMUL, 17, 17, imm=nl.GELU_A_BITS)
    a.vop(UOp.FADD, 17, VARG, 17)
    a.vop(UOp.FMUL, 29, 17, imm=nl.GELU_SQRT_2_OVER_PI_BITS)  # u
    a.vop(UOp.AND, VARG, 29, imm=ABS)
    a.vop(UOp.FMUL, VARG, VARG, imm=f32(-2.0))
    a.call("vexp")
    a.vmov(30, VARG)  # z
    a.vop(UOp.FADD, VARG, 30, imm=ONE)
    a.call("vrecip")  # s
    a.vop(UOp.FMUL, 17, 30, VARG)
    a.vop(UOp.SHR, 18, 29, imm=31)
    a.cmov(VARG, 18, 17)  # g = z*s where u < 0
    a.vop(UOp.FMUL, VARG, 28, VARG)
    a.vop(UOp.XOR, 18, 28, imm=0xFF800000)
    a.vop(UOp.SLTU, 18, 18, imm=1)
    a.cmov(VARG, 18, imm=SIGN)  # -Inf -> -0
    _v_is_nan(a, 18, 28)
    a.cmov(VARG, 18, imm=NAN)
    a.mov(LINK, 27)
    a.ret()


# ---------------------------------------------------------------------------------------------
# Routines of the ASIC instructions (fields in r1..r7)
# ---------------------------------------------------------------------------------------------
def _loop(a: Asm, n_reg: int, body, idx: int = 8):
    """``for idx in range(R[n_reg]): body()`` (scalar); ``body`` may use r9..r15, r28..r30."""
    top, end = a.fresh("loop"), a.fresh("loop.end")
    a.li(idx, 0)
    a.br(UOp.BGEU, idx, n_reg, end)
    a.label(top)
    body()
    a.op3(UOp.ADD, idx, idx, imm=1)
    a.br(UOp.BLTU, idx, n_reg, top)
    a.label(end)


def _vloop(a: Asm, n_reg: int, body, lanes: int):
    """``for r8 in range(0, R[n_reg], lanes)`` with ``VL = min(lanes, R[n_reg] - r8)``."""
    top, end = a.fresh("vloop"), a.fresh("vloop.end")
    a.li(8, 0)
    a.br(UOp.BGEU, 8, n_reg, end)
    a.label(top)
    a.op3(UOp.SUB, 9, n_reg, 8)
    a.emit(UOp.SETVL, 0, 9)
    body()
    a.op3(UOp.ADD, 8, 8, imm=lanes)
    a.br(UOp.BLTU, 8, n_reg, top)
    a.label(end)


def _elementwise(a: Asm, name: str, lanes: int, sub: str | None = None, fop: UOp | None = None,
                 two: bool = False, scale: bool = False):
    """dst[i] = f(src[i]) (or f(a[i], b[i]), or a[i]*scale), ``lanes`` elements at a time:
    r1 dst, r2 a/src, r3 b/n, r4 n/scale."""
    a.label(name)
    n_reg = 4 if two else 3
    if scale:
        a.bcast(2, ra=4)

    def body():
        a.vop(UOp.LD, VARG, 2, 8)
        if two:
            a.vop(UOp.LD, 1, 3, 8)
            a.vop(fop, VARG, VARG, 1)
        elif scale:
            a.vop(UOp.FMUL, VARG, VARG, 2)
        else:
            a.call(sub)
        a.vop(UOp.ST, VARG, 1, 8)

    _vloop(a, n_reg, body, lanes)
    a.emit(UOp.DONE)


def _vmov(a: Asm, lanes: int):
    """VMOV dst=r1 src=r2 n=r3 with memmove semantics: chunks of ``lanes`` words, first to last
    when dst <= src, last to first otherwise (each chunk is read whole before it is written)."""
    a.label("vmov")
    back, end, top = a.fresh("vmov.back"), a.fresh("vmov.end"), a.fresh("vmov.top")
    a.br(UOp.BLTU, 2, 1, back)

    def fwd():
        a.vop(UOp.LD, 1, 2, 8)
        a.vop(UOp.ST, 1, 1, 8)

    _vloop(a, 3, fwd, lanes)
    a.j(end)
    a.label(back)
    a.br(UOp.BEQ, 3, 0, end)
    shift = lanes.bit_length() - 1
    a.op3(UOp.SUB, 8, 3, imm=1)
    a.op3(UOp.SHR, 8, 8, imm=shift)
    a.op3(UOp.SHL, 8, 8, imm=shift)  # start of the last chunk
    a.label(top)
    a.op3(UOp.SUB, 9, 3, 8)
    a.emit(UOp.SETVL, 0, 9)
    a.vop(UOp.LD, 1, 2, 8)
    a.vop(UOp.ST, 1, 1, 8)
    a.br(UOp.BEQ, 8, 0, end)
    a.op3(UOp.SUB, 8, 8, imm=lanes)
    a.j(top)
    a.label(end)
    a.emit(UOp.DONE)


def _vfill(a: Asm, lanes: int):
    """VFILL dst=r1 n=r2 value=r3."""
    a.label("vfill")
    a.bcast(1, ra=3)
    _vloop(a, 2, lambda: a.vop(UOp.ST, 1, 1, 8), lanes)
    a.emit(UOp.DONE)


def _vreduce(a: Asm, lanes: int):
    """VREDUCE dst=r1 src=r2 n=r3 k=r4: dst[i] = ((src[i] + src[n+i]) + ...) over k parts.

    Part 0 is taken after DAZ (golden: ``flush_f32(src[:n])``); with k >= 2 the first add does
    that, with k == 1 a multiply by 1.0 does (it flushes and canonicalises NaNs, nothing else).
    """
    a.label("vreduce")
    general = a.fresh("vred.general")
    a.li(10, 1)
    a.br(UOp.BNE, 4, 10, general)

    def flush_only():
        a.vop(UOp.LD, VARG, 2, 8)
        a.vop(UOp.FMUL, VARG, VARG, imm=ONE)
        a.vop(UOp.ST, VARG, 1, 8)

    _vloop(a, 3, flush_only, lanes)
    a.emit(UOp.DONE)
    a.label(general)

    def body():
        a.vop(UOp.LD, VARG, 2, 8)  # part 0 (k >= 1)
        a.op3(UOp.ADD, 10, 2, 8)  # address of part p
        a.li(11, 1)
        top, end = a.fresh("vred.p"), a.fresh("vred.pend")
        a.br(UOp.BGEU, 11, 4, end)
        a.label(top)
        a.op3(UOp.ADD, 10, 10, 3)
        a.vop(UOp.LD, 1, 10, imm=0)
        a.vop(UOp.FADD, VARG, VARG, 1)
        a.op3(UOp.ADD, 11, 11, imm=1)
        a.br(UOp.BLTU, 11, 4, top)
        a.label(end)
        a.vop(UOp.ST, VARG, 1, 8)

    _vloop(a, 3, body, lanes)
    a.emit(UOp.DONE)


def _scan_max(a: Asm, src: int, n_reg: int, m: int, idx: int, nan_label: str):
    """m = first maximum of sp[src .. src+n) (raw bits), idx = its index; NaN -> ``nan_label``
    with idx = the first NaN's index (numpy ``argmax`` semantics). Uses r8..r10."""
    a.op3(UOp.LD, m, src, imm=0)
    a.li(idx, 0)
    _is_nan(a, 9, m, 10)
    a.br(UOp.BNE, 9, 0, nan_label)
    top, end, skip = a.fresh("max"), a.fresh("max.end"), a.fresh("max.skip")
    a.li(8, 1)
    a.br(UOp.BGEU, 8, n_reg, end)
    a.label(top)
    a.op3(UOp.LD, 11, src, 8)
    _is_nan(a, 9, 11, 10)
    nan_here = a.fresh("max.nan")
    a.br(UOp.BNE, 9, 0, nan_here)
    a.op3(UOp.FLT, 9, m, 11)
    a.br(UOp.BEQ, 9, 0, skip)
    a.mov(m, 11)
    a.mov(idx, 8)
    a.label(skip)
    a.op3(UOp.ADD, 8, 8, imm=1)
    a.br(UOp.BLTU, 8, n_reg, top)
    a.j(end)
    a.label(nan_here)
    a.mov(idx, 8)
    a.j(nan_label)
    a.label(end)


def _flush(a: Asm, r: int, tmp: int):
    """DAZ on r: a zero exponent field keeps only the sign."""
    keep = a.fresh("flush")
    a.op3(UOp.SHR, tmp, r, imm=23)
    a.op3(UOp.AND, tmp, tmp, imm=0xFF)
    a.br(UOp.BNE, tmp, 0, keep)
    a.op3(UOp.AND, r, r, imm=SIGN)
    a.label(keep)


def _vmax(a: Asm):
    """VMAX dst=r1 src=r2 n=r3: dst[0] = nonlinear.vmax(src)."""
    a.label("vmax")
    nan, store = a.fresh("vmax.nan"), a.fresh("vmax.store")
    _scan_max(a, 2, 3, 12, 13, nan)
    _flush(a, 12, 9)
    a.j(store)
    a.label(nan)
    a.li(12, NAN)
    a.label(store)
    a.op3(UOp.ST, 12, 1, imm=0)
    a.emit(UOp.DONE)


def _argmax(a: Asm):
    """ARGMAX reg=r1 src=r2 n=r3: R[reg] = first index of the maximum (first NaN if any).

    Unlike VMAX it reads every element even after a NaN (r14 = NaN seen), so the unit's logit
    tap (the words ARGMAX loads) always carries the whole vector.
    """
    a.label("argmax")
    top, end, skip, nan_here = (a.fresh("amax"), a.fresh("amax.end"), a.fresh("amax.skip"),
                                a.fresh("amax.nan"))
    a.li(8, 0)
    a.li(13, 0)
    a.li(14, 0)
    a.li(12, f32(float("-inf")))
    a.br(UOp.BGEU, 8, 3, end)
    a.label(top)
    a.op3(UOp.LD, 11, 2, 8)
    a.br(UOp.BNE, 14, 0, skip)
    _is_nan(a, 9, 11, 10)
    a.br(UOp.BNE, 9, 0, nan_here)
    a.br(UOp.BEQ, 8, 0, "amax.take")  # element 0 is the first candidate
    a.op3(UOp.FLT, 9, 12, 11)
    a.br(UOp.BEQ, 9, 0, skip)
    a.label("amax.take")
    a.mov(12, 11)
    a.mov(13, 8)
    a.j(skip)
    a.label(nan_here)
    a.li(14, 1)
    a.mov(13, 8)
    a.label(skip)
    a.op3(UOp.ADD, 8, 8, imm=1)
    a.br(UOp.BLTU, 8, 3, top)
    a.label(end)
    a.emit(UOp.WSR, 0, 1, 13)
    a.emit(UOp.DONE)


def _softmax(a: Asm, lanes: int):
    """SOFTMAX dst=r1 src=r2 n=r3: nonlinear.softmax (max and sum left to right on the scalar
    part, subtract/exp/scale on the lanes)."""
    a.label("softmax")
    nan, have_m = a.fresh("smax.nan"), a.fresh("smax.m")
    _scan_max(a, 2, 3, 12, 13, nan)
    _flush(a, 12, 9)
    a.j(have_m)
    a.label(nan)
    a.li(12, NAN)
    a.label(have_m)
    a.op3(UOp.XOR, 12, 12, imm=SIGN)  # -m
    a.bcast(2, ra=12)

    def exps():
        a.vop(UOp.LD, VARG, 2, 8)
        a.vop(UOp.FADD, VARG, VARG, 2)
        a.call("vexp")
        a.vop(UOp.ST, VARG, 1, 8)

    _vloop(a, 3, exps, lanes)
    a.li(14, 0)  # sum from +0, left to right

    def add():
        a.op3(UOp.LD, 9, 1, 8)
        a.op3(UOp.FADD, 14, 14, 9)

    _loop(a, 3, add)
    a.mov(ARG, 14)
    a.call("recip")
    a.bcast(2, ra=ARG)

    def scale():
        a.vop(UOp.LD, VARG, 1, 8)
        a.vop(UOp.FMUL, VARG, VARG, 2)
        a.vop(UOp.ST, VARG, 1, 8)

    _vloop(a, 3, scale, lanes)
    a.emit(UOp.DONE)


def _layernorm(a: Asm, lanes: int):
    """LAYERNORM dst=r1 src=r2 gamma=r3 beta=r4 n=r5 eps=r6: nonlinear.layernorm (the two sums
    left to right on the scalar part, the element-wise passes on the lanes)."""
    a.label("layernorm")
    # 1. inv_n = recip(float(n)); float(n) = (2**23 + n) - 2**23, exact for n < 2**23
    a.op3(UOp.OR, ARG, 5, imm=INT_MAGIC)
    a.op3(UOp.FADD, ARG, ARG, imm=INT_MAGIC | SIGN)
    a.call("recip")
    a.mov(15, ARG)  # inv_n
    # 2. mean = sum(x) * inv_n
    a.li(14, 0)

    def sum_x():
        a.op3(UOp.LD, 9, 2, 8)
        a.op3(UOp.FADD, 14, 14, 9)

    _loop(a, 5, sum_x)
    a.op3(UOp.FMUL, 14, 14, 15)
    a.op3(UOp.XOR, 14, 14, imm=SIGN)  # -mean
    a.bcast(2, ra=14)

    # 3. d = x - mean (kept in dst)
    def centre():
        a.vop(UOp.LD, 1, 2, 8)
        a.vop(UOp.FADD, 1, 1, 2)
        a.vop(UOp.ST, 1, 1, 8)

    _vloop(a, 5, centre, lanes)
    # 4. var = sum(d*d) * inv_n
    a.li(12, 0)

    def squares():
        a.op3(UOp.LD, 9, 1, 8)
        a.op3(UOp.FMUL, 9, 9, 9)
        a.op3(UOp.FADD, 12, 12, 9)

    _loop(a, 5, squares)
    a.op3(UOp.FMUL, 12, 12, 15)
    # 5. rstd = rsqrt(var + eps)
    a.op3(UOp.FADD, ARG, 12, 6)
    a.call("rsqrt")
    a.bcast(2, ra=ARG)

    # 6. y = (d * rstd) * gamma + beta
    def scale():
        a.vop(UOp.LD, 1, 1, 8)
        a.vop(UOp.FMUL, 1, 1, 2)
        a.vop(UOp.LD, 3, 3, 8)
        a.vop(UOp.FMUL, 1, 1, 3)
        a.vop(UOp.LD, 3, 4, 8)
        a.vop(UOp.FADD, 1, 1, 3)
        a.vop(UOp.ST, 1, 1, 8)

    _vloop(a, 5, scale, lanes)
    a.emit(UOp.DONE)


@dataclass
class Microcode:
    """The assembled microcode ROM and the entry point of every vector-unit opcode."""

    words: list[int]
    entries: dict[Op, int]
    lanes: int = 1
    labels: dict[str, int] = field(repr=False, default_factory=dict)


#: ASIC opcodes the vector unit executes (SETR and OUT are done by the front end).
VU_OPS = (Op.VADD, Op.VMUL, Op.VSCALE, Op.VMOV, Op.VREDUCE, Op.VMAX, Op.VEXP, Op.VRECIP,
          Op.VRSQRT, Op.VGELU, Op.SOFTMAX, Op.LAYERNORM, Op.ARGMAX, Op.VFILL)
#: Largest SIMD width (the scratchpad's wide ports move 16 words).
MAX_LANES = 16


def build_microcode(lanes: int = MAX_LANES) -> Microcode:
    """Assemble the vector unit's microcode ROM for ``lanes`` SIMD lanes (a power of two, 1..16).
    """
    if isinstance(lanes, bool) or not isinstance(lanes, int) or not 1 <= lanes <= MAX_LANES \
            or lanes & (lanes - 1):
        raise ValueError(f"lanes must be a power of two in 1..{MAX_LANES}, not {lanes!r}")
    a = Asm()
    _elementwise(a, "vadd", lanes, fop=UOp.FADD, two=True)
    _elementwise(a, "vmul", lanes, fop=UOp.FMUL, two=True)
    _elementwise(a, "vscale", lanes, scale=True)
    _elementwise(a, "vexp_i", lanes, sub="vexp")
    _elementwise(a, "vrecip_i", lanes, sub="vrecip")
    _elementwise(a, "vrsqrt_i", lanes, sub="vrsqrt")
    _elementwise(a, "vgelu_i", lanes, sub="vgelu")
    _vmov(a, lanes)
    _vfill(a, lanes)
    _vreduce(a, lanes)
    _vmax(a)
    _argmax(a)
    _softmax(a, lanes)
    _layernorm(a, lanes)
    _sub_recip(a)
    _sub_rsqrt(a)
    _vsub_exp(a)
    _vsub_recip(a)
    _vsub_rsqrt(a)
    _vsub_gelu(a)
    names = {Op.VADD: "vadd", Op.VMUL: "vmul", Op.VSCALE: "vscale", Op.VMOV: "vmov",
             Op.VREDUCE: "vreduce", Op.VMAX: "vmax", Op.VEXP: "vexp_i", Op.VRECIP: "vrecip_i",
             Op.VRSQRT: "vrsqrt_i", Op.VGELU: "vgelu_i", Op.SOFTMAX: "softmax",
             Op.LAYERNORM: "layernorm", Op.ARGMAX: "argmax", Op.VFILL: "vfill"}
    words = a.words()
    return Microcode(words, {op: a.labels[name] for op, name in names.items()}, lanes,
                     dict(a.labels))


# ---------------------------------------------------------------------------------------------
# Instruction-set simulator: the bit and cycle reference of the RTL vector unit
# ---------------------------------------------------------------------------------------------
def flt(a: int, b: int) -> bool:
    """fp32 ``a < b`` of bit patterns with DAZ; false if either is NaN."""
    fa, fb = nx.flush_f32(nx.f32_from_bits(np.array([a, b], dtype=np.uint32)))
    return bool(fa < fb)


def _f32op(fn, a: int, b: int) -> int:
    x = nx.f32_from_bits(np.array([a], dtype=np.uint32))
    y = nx.f32_from_bits(np.array([b], dtype=np.uint32))
    return int(nx.bits_from_f32(fn(x, y))[0])


_CANON = int(nx.FP32_CANONICAL_NAN)


def _daz(bits: int) -> int:
    """DAZ of a bit pattern (subnormal -> signed zero)."""
    return bits & 0x80000000 if not bits & 0x7F800000 else bits


def _to_f(bits: int) -> float:
    return struct.unpack("<f", struct.pack("<I", bits))[0]


def _finish(value: float) -> int | None:
    """Bits of a Python float that is exactly a float32 value; FTZ, canonical NaN."""
    if value != value:
        return _CANON
    bits = struct.unpack("<I", struct.pack("<f", value))[0]
    return _daz(bits)


def fast_add(a: int, b: int) -> int:
    """``numerics.f32_add`` of bit patterns (scalar fast path)."""
    fa, fb = np.float32(_to_f(_daz(a))), np.float32(_to_f(_daz(b)))
    with np.errstate(over="ignore", invalid="ignore"):
        return _finish(float(fa + fb))


def fast_mul(a: int, b: int) -> int:
    """``numerics.f32_mul`` of bit patterns: the float64 product is exact; round it to fp32
    directly unless it is in the subnormal range, where the contract's rule is applied."""
    p = _to_f(_daz(a)) * _to_f(_daz(b))
    if p != p or p == 0.0 or abs(p) >= 2.0 ** -100 or p in (float("inf"), float("-inf")):
        with np.errstate(over="ignore"):
            return _finish(float(np.float32(p)))
    return _f32op(nx.f32_mul, a, b)


class VectorISS:
    """Executes microcode on a scratchpad (``numpy.uint32`` array) and counts cycles.

    Parameters
    ----------
    scratchpad : numpy.ndarray of uint32
        The scratchpad, modified in place.
    add_latency, mul_latency : int
        Pipeline latencies of the fp32 adders and multipliers (cycles of an fp op = 1 + latency).
    microcode : Microcode, optional
        The ROM (default: :func:`build_microcode` with ``lanes``).
    lanes : int
        SIMD lanes (used when ``microcode`` is not given).
    """

    def __init__(self, scratchpad: np.ndarray, add_latency: int = 1, mul_latency: int = 1,
                 microcode: Microcode | None = None, lanes: int = MAX_LANES):
        self.sp = scratchpad
        self.add_latency = add_latency
        self.mul_latency = mul_latency
        self.mc = microcode or build_microcode(lanes)
        self.lanes = self.mc.lanes
        self.decoded = [decode(w) for w in self.mc.words]
        self.sregs = [0] * 16
        self.cycles = 0
        self._lane = np.arange(self.lanes, dtype=np.int64)

    def _vector(self, uop, va, vb, lat_add, lat_mul):
        """One vector ALU/fp op on uint32 lane arrays; returns (result, extra cycles)."""
        if uop == UOp.ADD:
            return va + vb, 0
        if uop == UOp.SUB:
            return va - vb, 0
        if uop == UOp.AND:
            return va & vb, 0
        if uop == UOp.OR:
            return va | vb, 0
        if uop == UOp.XOR:
            return va ^ vb, 0
        if uop == UOp.SHL:
            return va << (vb & np.uint32(31)), 0
        if uop == UOp.SHR:
            return va >> (vb & np.uint32(31)), 0
        if uop == UOp.SRA:
            return (va.view(np.int32) >> (vb & np.uint32(31)).astype(np.int32)).view(np.uint32), 0
        if uop == UOp.SLT:
            return (va.view(np.int32) < vb.view(np.int32)).astype(np.uint32), 0
        if uop == UOp.SLTU:
            return (va < vb).astype(np.uint32), 0
        if uop == UOp.FADD:
            return nx.bits_from_f32(nx.f32_add(nx.f32_from_bits(va), nx.f32_from_bits(vb))), \
                lat_add
        if uop == UOp.FMUL:
            return nx.bits_from_f32(nx.f32_mul(nx.f32_from_bits(va), nx.f32_from_bits(vb))), \
                lat_mul
        if uop == UOp.FLT:
            fa, fb = nx.flush_f32(nx.f32_from_bits(va)), nx.flush_f32(nx.f32_from_bits(vb))
            return (fa < fb).astype(np.uint32), 0
        raise ValueError(f"{uop.name} has no vector form")

    def run(self, op: Op, fields: tuple[int, ...] | list[int]) -> int:
        """Run one instruction (its seven field values); return its cycle count."""
        regs = [0] * N_REGS
        for k, v in enumerate(fields[:7]):
            regs[1 + k] = int(v) & 0xFFFFFFFF
        lanes = self.lanes
        vregs = np.zeros((N_REGS, lanes), dtype=np.uint32)
        vl = 0
        sp = self.sp
        size = len(sp)
        pc = self.mc.entries[Op(op)]
        cycles = 1  # dispatch: fields into r1..r7
        m32 = 0xFFFFFFFF
        with np.errstate(over="ignore"):
            while True:
                uop, rd, ra, rb, use_imm, imm, vec = self.decoded[pc]
                pc += 1
                cycles += 1
                if vec:
                    if uop == UOp.LD:
                        addr = (regs[ra] + (imm if use_imm else regs[rb])) & m32
                        vregs[rd] = sp[(addr + self._lane) % size]
                        cycles += 1
                    elif uop == UOp.ST:
                        addr = (regs[ra] + (imm if use_imm else regs[rb])) & m32
                        n = min(vl, lanes)
                        sp[(addr + self._lane[:n]) % size] = vregs[rd][:n]
                    elif uop == UOp.CMOV:
                        src = np.uint32(imm) if use_imm else vregs[rb]
                        vregs[rd] = np.where(vregs[ra] != 0, src, vregs[rd])
                    elif uop == UOp.BCAST:
                        vregs[rd] = imm if use_imm else regs[ra]
                    else:
                        vb = np.full(lanes, imm, dtype=np.uint32) if use_imm else vregs[rb]
                        res, extra = self._vector(uop, vregs[ra], vb, self.add_latency,
                                                  self.mul_latency)
                        vregs[rd] = res
                        cycles += extra
                    continue
                a = regs[ra]
                b = imm if use_imm else regs[rb]
                res = None
                if uop == UOp.ADD:
                    res = a + b
                elif uop == UOp.SUB:
                    res = a - b
                elif uop == UOp.AND:
                    res = a & b
                elif uop == UOp.OR:
                    res = a | b
                elif uop == UOp.XOR:
                    res = a ^ b
                elif uop == UOp.SHL:
                    res = a << (b & 31)
                elif uop == UOp.SHR:
                    res = a >> (b & 31)
                elif uop == UOp.SRA:
                    res = _signed(a) >> (b & 31)
                elif uop == UOp.SLT:
                    res = int(_signed(a) < _signed(b))
                elif uop == UOp.SLTU:
                    res = int(a < b)
                elif uop == UOp.FADD:
                    res = fast_add(a, b)
                    cycles += self.add_latency
                elif uop == UOp.FMUL:
                    res = fast_mul(a, b)
                    cycles += self.mul_latency
                elif uop == UOp.FLT:
                    res = int(flt(a, b))
                elif uop == UOp.LD:
                    res = int(sp[((a + b) & m32) % size])
                    cycles += 1
                elif uop == UOp.ST:
                    sp[((a + b) & m32) % size] = regs[rd]
                elif uop in BRANCH_OPS:
                    c = regs[rb]
                    taken = {UOp.BEQ: a == c, UOp.BNE: a != c, UOp.BLT: _signed(a) < _signed(c),
                             UOp.BGE: _signed(a) >= _signed(c), UOp.BLTU: a < c,
                             UOp.BGEU: a >= c}[uop]
                    if taken:
                        pc = imm
                elif uop == UOp.JAL:
                    res = pc
                    pc = imm
                elif uop == UOp.JR:
                    pc = a
                elif uop == UOp.WSR:
                    self.sregs[a & 15] = regs[rb]
                elif uop == UOp.SETVL:
                    vl = min(lanes, a)
                elif uop == UOp.DONE:
                    break
                if res is not None and rd:
                    regs[rd] = res & m32
        self.cycles += cycles
        return cycles


def _signed(v: int) -> int:
    return v - (1 << 32) if v & 0x80000000 else v

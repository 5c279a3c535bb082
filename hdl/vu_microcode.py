"""Microcode of the vector unit: micro-ISA, assembler, the routine of every ASIC instruction, and an
instruction-set simulator (ISS) that is the cycle and bit reference of :mod:`.vector_unit`.

The vector unit is a one-lane, in-order microcoded sequencer: 32 integer/fp32 registers, one fp32
adder and one fp32 multiplier (:mod:`.fp32add`, :mod:`.fp32mul`), integer logic and one scratchpad
read/write port. Each ASIC instruction (``VADD`` ... ``LAYERNORM``) starts the routine at its entry
point with the instruction's fields in ``r1..r7`` (``f0..f6``). The routines follow the step lists
in :mod:`pimgpt.sim.nonlinear` literally, so the unit reproduces those functions bit for bit with
only fp32 adds and multiplies.

Micro-instruction word (64 bits, fields from bit 0)::

    op[6] | rd[5] | ra[5] | rb[5] | use_imm[1] | unused[10] | imm[32]

``B`` below is ``imm`` when ``use_imm`` is set, else ``R[rb]``; ``r0`` reads as zero.

======== ==================================================== ===========================
op        semantics                                            cycles
======== ==================================================== ===========================
ADD..SRA  ``rd = ra (+ - & | ^ << >>u >>s) B`` (32-bit)        1
SLT/SLTU  ``rd = ra < B`` (signed / unsigned)                  1
FADD/FMUL ``rd = f32_add/f32_mul(ra, B)``                      1 + unit latency
FLT       ``rd = ra < B`` as fp32 (DAZ; false if either NaN)   1
LD        ``rd = sp[ra + B]``                                  2
ST        ``sp[ra + B] = rd``                                  1
Bcc       ``if ra cc rb: pc = imm`` (EQ NE LT GE LTU GEU)      1
JAL       ``rd = pc + 1; pc = imm``                            1
JR        ``pc = ra``                                          1
WSR       scalar register ``R[ra] = rb`` (ARGMAX)              1
DONE      end of the routine                                   1
======== ==================================================== ===========================
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field
from enum import IntEnum

import numpy as np

from pimgpt.sim import nonlinear as nl
from pimgpt.sim import numerics as nx
from pimgpt.sw.isa import Op

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


ALU_OPS = (UOp.ADD, UOp.SUB, UOp.AND, UOp.OR, UOp.XOR, UOp.SHL, UOp.SHR, UOp.SRA, UOp.SLT,
           UOp.SLTU)
BRANCH_OPS = (UOp.BEQ, UOp.BNE, UOp.BLT, UOp.BGE, UOp.BLTU, UOp.BGEU)


def f32(value: float) -> int:
    """fp32 bit pattern of ``value`` (for immediates)."""
    return int(np.array(value, dtype=np.float32).view(np.uint32))


def encode(op: UOp, rd: int = 0, ra: int = 0, rb: int = 0, imm: int | None = None) -> int:
    """Pack one micro-instruction into a 64-bit word (``imm`` given: ``B`` is the immediate)."""
    for name, r in (("rd", rd), ("ra", ra), ("rb", rb)):
        if not 0 <= r < N_REGS:
            raise ValueError(f"register {name}={r} out of range 0..{N_REGS - 1}")
    use_imm = imm is not None
    imm = 0 if imm is None else imm & 0xFFFFFFFF
    return int(op) | rd << 6 | ra << 11 | rb << 16 | int(use_imm) << 21 | imm << 32


def decode(word: int) -> tuple[UOp, int, int, int, bool, int]:
    """Unpack a micro-instruction word into ``(op, rd, ra, rb, use_imm, imm)``."""
    return (UOp(word & 0x3F), (word >> 6) & 31, (word >> 11) & 31, (word >> 16) & 31,
            bool((word >> 21) & 1), (word >> 32) & 0xFFFFFFFF)


class Asm:
    """A two-pass assembler: methods emit micro-instructions, labels resolve at :meth:`words`."""

    def __init__(self):
        self.code: list[tuple] = []  # (op, rd, ra, rb, imm or label or None)
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

    def emit(self, op: UOp, rd=0, ra=0, rb=0, imm=None) -> None:
        self.code.append((op, rd, ra, rb, imm))

    # Register-register and register-immediate forms: ``b`` is a register number unless ``imm``.
    def op3(self, op, rd, ra, rb=0, imm=None):
        self.emit(op, rd, ra, rb, imm)

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
        for op, rd, ra, rb, imm in self.code:
            if isinstance(imm, str):
                if imm not in self.labels:
                    raise ValueError(f"undefined microcode label {imm!r}")
                imm = self.labels[imm]
            out.append(encode(op, rd, ra, rb, imm))
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


def _sub_exp(a: Asm):
    """``nonlinear.exp`` steps 0-5 on r16."""
    a.label("exp")
    done, nan = a.fresh("exp.done"), a.fresh("exp.nan")
    _is_nan(a, 17, ARG, 18)
    a.br(UOp.BNE, 17, 0, nan)
    # 0. clamp: xc = min(max(x, -104), 89) (compare and select)
    lo, hi = a.fresh("exp.lo"), a.fresh("exp.hi")
    a.op3(UOp.FLT, 17, ARG, imm=f32(nl.EXP_X_MIN))
    a.br(UOp.BEQ, 17, 0, lo)
    a.li(ARG, f32(nl.EXP_X_MIN))
    a.label(lo)
    a.li(18, f32(nl.EXP_X_MAX))
    a.op3(UOp.FLT, 17, 18, ARG)
    a.br(UOp.BEQ, 17, 0, hi)
    a.mov(ARG, 18)
    a.label(hi)
    # 1. t = xc * log2e; n = rint(t) by adding 1.5*2**23 (exact RNE for |t| < 2**22); nf = float(n)
    a.op3(UOp.FMUL, 17, ARG, imm=nl.LOG2E_BITS)
    a.op3(UOp.FADD, 17, 17, imm=ROUND_MAGIC)
    a.op3(UOp.SUB, 19, 17, imm=ROUND_MAGIC)  # n (integer)
    a.op3(UOp.FADD, 18, 17, imm=ROUND_MAGIC | SIGN)  # nf (exact)
    # 2. Cody-Waite: r = (xc - nf*LN2_HI) - nf*LN2_LO; neg(mul(nf, c)) == mul(nf, -c) bit for bit
    # before an add (RNE is sign-symmetric; a NaN product becomes the canonical NaN in the add).
    a.op3(UOp.FMUL, 20, 18, imm=nl.LN2_HI_BITS | SIGN)
    a.op3(UOp.FADD, 20, ARG, 20)
    a.op3(UOp.FMUL, 21, 18, imm=nl.LN2_LO_BITS | SIGN)
    a.op3(UOp.FADD, 20, 20, 21)  # r
    # 3. Horner, degree 7
    a.li(21, f32(nl.EXP_TAYLOR[nl.EXP_TAYLOR_DEGREE]))
    for k in range(nl.EXP_TAYLOR_DEGREE - 1, -1, -1):
        a.op3(UOp.FMUL, 21, 21, 20)
        a.op3(UOp.FADD, 21, 21, imm=f32(nl.EXP_TAYLOR[k]))
    # 4. n1 = n >> 1 (floor), n2 = n - n1; s = 2**n by exponent-field insertion
    a.op3(UOp.SRA, 22, 19, imm=1)
    a.op3(UOp.SUB, 23, 19, 22)
    a.op3(UOp.ADD, 22, 22, imm=127)
    a.op3(UOp.SHL, 22, 22, imm=23)
    a.op3(UOp.ADD, 23, 23, imm=127)
    a.op3(UOp.SHL, 23, 23, imm=23)
    # 5. y = (p * s1) * s2
    a.op3(UOp.FMUL, 21, 21, 22)
    a.op3(UOp.FMUL, ARG, 21, 23)
    a.j(done)
    a.label(nan)
    a.li(ARG, NAN)
    a.label(done)
    a.ret()


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


def _sub_gelu(a: Asm):
    """``nonlinear.gelu`` on r16 (calls exp and recip; saves x in r26, the link in r27)."""
    a.label("gelu")
    done, pos = a.fresh("gelu.done"), a.fresh("gelu.pos")
    a.mov(27, LINK)
    a.mov(26, ARG)
    # 1.-2. x3 = (x*x)*x; u = C * (x + A*x3)
    a.op3(UOp.FMUL, 17, ARG, ARG)
    a.op3(UOp.FMUL, 17, 17, ARG)
    a.op3(UOp.FMUL, 17, 17, imm=nl.GELU_A_BITS)
    a.op3(UOp.FADD, 17, ARG, 17)
    a.op3(UOp.FMUL, 25, 17, imm=nl.GELU_SQRT_2_OVER_PI_BITS)  # u (kept in r25)
    # 3. z = exp(-2 * |u|)
    a.op3(UOp.AND, ARG, 25, imm=ABS)
    a.op3(UOp.FMUL, ARG, ARG, imm=f32(-2.0))
    a.call("exp")
    a.mov(24, ARG)  # z (exp clobbers r17..r23 only)
    # 4. s = recip(1 + z)
    a.op3(UOp.FADD, ARG, 24, imm=ONE)
    a.call("recip")
    # 5. g = s if u >= 0 else z * s
    a.op3(UOp.SHR, 17, 25, imm=31)
    a.br(UOp.BEQ, 17, 0, pos)
    a.op3(UOp.FMUL, ARG, 24, ARG)
    a.label(pos)
    # 6. y = x * g; 7. specials
    a.op3(UOp.FMUL, ARG, 26, ARG)
    a.li(17, 0xFF800000)
    a.br(UOp.BNE, 26, 17, "gelu.nan_check")
    a.li(ARG, SIGN)  # -Inf -> -0
    a.label("gelu.nan_check")
    _is_nan(a, 17, 26, 18)
    a.br(UOp.BEQ, 17, 0, done)
    a.li(ARG, NAN)
    a.label(done)
    a.mov(LINK, 27)
    a.ret()


# ---------------------------------------------------------------------------------------------
# Routines of the ASIC instructions (fields in r1..r7)
# ---------------------------------------------------------------------------------------------
def _loop(a: Asm, n_reg: int, body, idx: int = 8):
    """``for idx in range(R[n_reg]): body()``; ``body`` may use r9..r15 and r28..r30."""
    top, end = a.fresh("loop"), a.fresh("loop.end")
    a.li(idx, 0)
    a.br(UOp.BGEU, idx, n_reg, end)
    a.label(top)
    body()
    a.op3(UOp.ADD, idx, idx, imm=1)
    a.br(UOp.BLTU, idx, n_reg, top)
    a.label(end)


def _elementwise(a: Asm, name: str, sub: str | None = None, fop: UOp | None = None,
                 two: bool = False, scale: bool = False):
    """dst[i] = f(src[i]) (or f(a[i], b[i]), or a[i]*scale): r1 dst, r2 a/src, r3 b/n."""
    a.label(name)
    n_reg = 4 if two else 3

    def body():
        a.op3(UOp.LD, ARG, 2, 8)
        if two:
            a.op3(UOp.LD, 9, 3, 8)
            a.op3(fop, ARG, ARG, 9)
        elif scale:
            a.op3(UOp.FMUL, ARG, ARG, 4)
        else:
            a.call(sub)
        a.op3(UOp.ST, ARG, 1, 8)

    _loop(a, n_reg, body)
    a.emit(UOp.DONE)


def _vmov(a: Asm):
    """VMOV dst=r1 src=r2 n=r3 with memmove semantics (backwards when dst > src)."""
    a.label("vmov")
    back, end = a.fresh("vmov.back"), a.fresh("vmov.end")
    a.br(UOp.BLTU, 2, 1, back)

    def fwd():
        a.op3(UOp.LD, 9, 2, 8)
        a.op3(UOp.ST, 9, 1, 8)

    _loop(a, 3, fwd)
    a.j(end)
    a.label(back)
    top = a.fresh("vmov.top")
    a.mov(8, 3)
    a.br(UOp.BEQ, 8, 0, end)
    a.label(top)
    a.op3(UOp.SUB, 8, 8, imm=1)
    a.op3(UOp.LD, 9, 2, 8)
    a.op3(UOp.ST, 9, 1, 8)
    a.br(UOp.BNE, 8, 0, top)
    a.label(end)
    a.emit(UOp.DONE)


def _vfill(a: Asm):
    """VFILL dst=r1 n=r2 value=r3."""
    a.label("vfill")
    _loop(a, 2, lambda: a.op3(UOp.ST, 3, 1, 8))
    a.emit(UOp.DONE)


def _vreduce(a: Asm):
    """VREDUCE dst=r1 src=r2 n=r3 k=r4: dst[i] = ((src[i] + src[n+i]) + ...) over k parts.

    Part 0 is taken after DAZ (golden: ``flush_f32(src[:n])``); with k >= 2 the first add does
    that, with k == 1 a multiply by 1.0 does (it flushes and canonicalises NaNs, nothing else).
    """
    a.label("vreduce")
    general = a.fresh("vred.general")
    a.li(9, 1)
    a.br(UOp.BNE, 4, 9, general)

    def flush_only():
        a.op3(UOp.LD, ARG, 2, 8)
        a.op3(UOp.FMUL, ARG, ARG, imm=ONE)
        a.op3(UOp.ST, ARG, 1, 8)

    _loop(a, 3, flush_only)
    a.emit(UOp.DONE)
    a.label(general)

    def body():
        a.op3(UOp.LD, ARG, 2, 8)  # part 0 (k >= 1)
        a.op3(UOp.ADD, 10, 2, 8)  # address of part p
        a.li(9, 1)
        top, end = a.fresh("vred.p"), a.fresh("vred.pend")
        a.br(UOp.BGEU, 9, 4, end)
        a.label(top)
        a.op3(UOp.ADD, 10, 10, 3)
        a.op3(UOp.LD, 11, 10, imm=0)
        a.op3(UOp.FADD, ARG, ARG, 11)
        a.op3(UOp.ADD, 9, 9, imm=1)
        a.br(UOp.BLTU, 9, 4, top)
        a.label(end)
        a.op3(UOp.ST, ARG, 1, 8)

    _loop(a, 3, body)
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


def _softmax(a: Asm):
    """SOFTMAX dst=r1 src=r2 n=r3: nonlinear.softmax."""
    a.label("softmax")
    nan, have_m = a.fresh("smax.nan"), a.fresh("smax.m")
    _scan_max(a, 2, 3, 12, 13, nan)
    _flush(a, 12, 9)
    a.j(have_m)
    a.label(nan)
    a.li(12, NAN)
    a.label(have_m)
    a.op3(UOp.XOR, 12, 12, imm=SIGN)  # -m
    a.li(14, 0)  # sum from +0

    def pass1():
        a.op3(UOp.LD, ARG, 2, 8)
        a.op3(UOp.FADD, ARG, ARG, 12)
        a.call("exp")
        a.op3(UOp.ST, ARG, 1, 8)
        a.op3(UOp.FADD, 14, 14, ARG)

    _loop(a, 3, pass1)
    a.mov(ARG, 14)
    a.call("recip")
    a.mov(14, ARG)

    def pass2():
        a.op3(UOp.LD, ARG, 1, 8)
        a.op3(UOp.FMUL, ARG, ARG, 14)
        a.op3(UOp.ST, ARG, 1, 8)

    _loop(a, 3, pass2)
    a.emit(UOp.DONE)


def _layernorm(a: Asm):
    """LAYERNORM dst=r1 src=r2 gamma=r3 beta=r4 n=r5 eps=r6: nonlinear.layernorm."""
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
    # 3.-4. d = x - mean (kept in dst); var = sum(d*d) * inv_n
    a.li(12, 0)

    def centre():
        a.op3(UOp.LD, 9, 2, 8)
        a.op3(UOp.FADD, 9, 9, 14)
        a.op3(UOp.ST, 9, 1, 8)
        a.op3(UOp.FMUL, 9, 9, 9)
        a.op3(UOp.FADD, 12, 12, 9)

    _loop(a, 5, centre)
    a.op3(UOp.FMUL, 12, 12, 15)
    # 5. rstd = rsqrt(var + eps)
    a.op3(UOp.FADD, ARG, 12, 6)
    a.call("rsqrt")
    a.mov(12, ARG)

    # 6. y = (d * rstd) * gamma + beta
    def scale():
        a.op3(UOp.LD, 9, 1, 8)
        a.op3(UOp.FMUL, 9, 9, 12)
        a.op3(UOp.LD, 10, 3, 8)
        a.op3(UOp.FMUL, 9, 9, 10)
        a.op3(UOp.LD, 10, 4, 8)
        a.op3(UOp.FADD, 9, 9, 10)
        a.op3(UOp.ST, 9, 1, 8)

    _loop(a, 5, scale)
    a.emit(UOp.DONE)


@dataclass
class Microcode:
    """The assembled microcode ROM and the entry point of every vector-unit opcode."""

    words: list[int]
    entries: dict[Op, int]
    labels: dict[str, int] = field(repr=False, default_factory=dict)


#: ASIC opcodes the vector unit executes (SETR and OUT are done by the front end).
VU_OPS = (Op.VADD, Op.VMUL, Op.VSCALE, Op.VMOV, Op.VREDUCE, Op.VMAX, Op.VEXP, Op.VRECIP,
          Op.VRSQRT, Op.VGELU, Op.SOFTMAX, Op.LAYERNORM, Op.ARGMAX, Op.VFILL)


def build_microcode() -> Microcode:
    """Assemble the vector unit's microcode ROM."""
    a = Asm()
    _elementwise(a, "vadd", fop=UOp.FADD, two=True)
    _elementwise(a, "vmul", fop=UOp.FMUL, two=True)
    _elementwise(a, "vscale", scale=True)
    _elementwise(a, "vexp", sub="exp")
    _elementwise(a, "vrecip", sub="recip")
    _elementwise(a, "vrsqrt", sub="rsqrt")
    _elementwise(a, "vgelu", sub="gelu")
    _vmov(a)
    _vfill(a)
    _vreduce(a)
    _vmax(a)
    _argmax(a)
    _softmax(a)
    _layernorm(a)
    _sub_exp(a)
    _sub_recip(a)
    _sub_rsqrt(a)
    _sub_gelu(a)
    names = {Op.VADD: "vadd", Op.VMUL: "vmul", Op.VSCALE: "vscale", Op.VMOV: "vmov",
             Op.VREDUCE: "vreduce", Op.VMAX: "vmax", Op.VEXP: "vexp", Op.VRECIP: "vrecip",
             Op.VRSQRT: "vrsqrt", Op.VGELU: "vgelu", Op.SOFTMAX: "softmax",
             Op.LAYERNORM: "layernorm", Op.ARGMAX: "argmax", Op.VFILL: "vfill"}
    words = a.words()
    return Microcode(words, {op: a.labels[name] for op, name in names.items()}, dict(a.labels))


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
        Pipeline latencies of the fp32 adder and multiplier (cycles of an fp op = 1 + latency).
    microcode : Microcode, optional
        The ROM (default: :func:`build_microcode`).
    """

    def __init__(self, scratchpad: np.ndarray, add_latency: int = 1, mul_latency: int = 1,
                 microcode: Microcode | None = None):
        self.sp = scratchpad
        self.add_latency = add_latency
        self.mul_latency = mul_latency
        self.mc = microcode or build_microcode()
        self.decoded = [decode(w) for w in self.mc.words]
        self.sregs = [0] * 16
        self.cycles = 0

    def run(self, op: Op, fields: tuple[int, ...] | list[int]) -> int:
        """Run one instruction (its seven field values); return its cycle count."""
        regs = [0] * N_REGS
        for k, v in enumerate(fields[:7]):
            regs[1 + k] = int(v) & 0xFFFFFFFF
        pc = self.mc.entries[Op(op)]
        cycles = 1  # dispatch: fields into r1..r7
        m32 = 0xFFFFFFFF
        while True:
            uop, rd, ra, rb, use_imm, imm = self.decoded[pc]
            a = regs[ra]
            b = imm if use_imm else regs[rb]
            pc += 1
            cycles += 1
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
                res = int(self.sp[(a + b) & m32])
                cycles += 1
            elif uop == UOp.ST:
                self.sp[(a + b) & m32] = regs[rd]
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
            elif uop == UOp.DONE:
                break
            if res is not None and rd:
                regs[rd] = res & m32
        self.cycles += cycles
        return cycles


def _signed(v: int) -> int:
    return v - (1 << 32) if v & 0x80000000 else v

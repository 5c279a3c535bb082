"""cocotb test of the vector unit (``VectorUnitTop``) against the golden model and the ISS.

Stimulus (seeded by ``seed``): a scratchpad of random fp32 words drawn from several distributions
plus every corner value (zeros, subnormals, Inf, NaN, extremes, the clamp edges of exp and GELU),
and a program of every vector-unit instruction over it: element-wise functions, binary ops (VADD3 in
place too), moves in both overlap directions, fills, reductions of ``k`` parts, maxima, SOFTMAX of
short rows (in registers), two-register rows and long rows, several rows per instruction and in
place, SOFTMAXU (the same kinds of rows, its reciprocals spread over short and long runs), LAYERNORM
of several lengths and in place, LNCENTRE, LNRSTD and VMADS (a LayerNorm folded into its GEMV; also
in place), RMSRSTD and VMULS (a folded RMSNorm), VMACS of short, long and one-word segments and in
place, SWIGLU over every corner, RMSNORM and ROPE (also in place), ARGMAX with ties, NaNs and ties
across blocks.
Every length is chosen so that the routines' remainder paths (``nb mod K``, row groups) are taken.
The driver sends instructions with random idle gaps and honours ``ready``
(:class:`~pimgpt.sim.cocotb_lib.vector_tb.VectorUnitTB`);
:func:`~pimgpt.sim.cocotb_lib.vector_check.check_vector_unit` compares, bit for bit, the whole
scratchpad with the golden model after the same program, every ``ARGMAX`` register write and every
logit the tap delivered, each instruction's cycles with the ISS and, with ``trace``, the issue
cycle of every micro-operation with the ISS's trace. Parameters: ``seed``, ``nelem``, ``lanes``,
``prefix``, ``trace``, ``pipeline`` (``uisa.Pipeline`` keywords); the summary is reported.
"""

from __future__ import annotations

import cocotb
import numpy as np

from pimgpt.core import numerics as nx
from pimgpt.core.isa import I, Op
from pimgpt.sim.cocotb_lib.exchange import params, report
from pimgpt.sim.cocotb_lib.vector_check import check_vector_unit

WORDS = 16384


def f32(x: float) -> int:
    return int(np.float32(x).view(np.uint32))


CORNERS = [0, 0x80000000, 1, 0x80000001, 0x007FFFFF, 0x807FFFFF, 0x00800000, 0x80800000,
           0x7F800000, 0xFF800000, 0x7FC00000, 0xFFC00001, 0x7F800001, 0x3F800000, 0xBF800000,
           0x7F7FFFFF, 0xFF7FFFFF, f32(89.0), f32(-104.0), f32(88.72), f32(89.01), f32(-103.99),
           f32(-104.01), f32(0.5), f32(-0.5), f32(1e-30), f32(-1e-30), f32(1e30), f32(-1e30),
           f32(100.0), f32(-100.0), f32(3.0), f32(-3.0), f32(1e-38), f32(2.0 ** -126),
           f32(-9.95), f32(-9.96), f32(-10.0), f32(10.0), f32(-87.0), f32(87.0)]


def stimulus(seed: int, n_elem: int, lanes: int):
    """Scratchpad contents and a program exercising every vector-unit instruction."""
    rng = np.random.default_rng(seed)
    W = lanes
    sp = np.zeros(WORDS, dtype=np.uint32)
    pieces = [
        np.array(CORNERS, dtype=np.uint32),
        nx.bits_from_f32(rng.normal(0, 3, n_elem).astype(np.float32)),
        nx.bits_from_f32((rng.normal(0, 1, n_elem) * np.exp2(rng.integers(-60, 60, n_elem)))
                         .astype(np.float32)),
        rng.integers(0, 2**32, n_elem, dtype=np.uint64).astype(np.uint32),
    ]
    src = np.concatenate(pieces)[:2048]
    n = len(src)
    sp[:n] = src
    sp[4096:6144] = nx.bits_from_f32(rng.normal(0, 2, 2048).astype(np.float32))
    out = 8192
    prog = []
    for op in (Op.VEXP, Op.VRECIP, Op.VRSQRT, Op.VGELU):
        prog.append(I(op, dst=out, src=0, n=n))
        out += n
    prog += [
        I(Op.VADD, dst=out, a=0, b=4096, n=n - 3),
        I(Op.VMUL, dst=out + n, a=0, b=4096, n=n),
        I(Op.VADD3, dst=out + n, a=out + n, b=0, c=4096, n=n - 5),  # in place on a, as x += y+b
        I(Op.VSCALE, dst=out + 2 * n, a=4096, n=n - 1, scale_f32=f32(0.125)),
        I(Op.VFILL, dst=out + 3 * n, n=37, value_f32=0x7FC00001),
        I(Op.VMOV, dst=out + 3 * n + 3, src=out + 3 * n, n=40),  # overlap, dst > src
        I(Op.VMOV, dst=out + 2 * n, src=out + 2 * n + 5, n=3 * W + 7),  # overlap, dst < src
        I(Op.VREDUCE, dst=out + 3 * n + 100, src=4096, n=50, k=3),
        I(Op.VREDUCE, dst=out + 3 * n + 200, src=0, n=40, k=1),  # flushes subnormals
        I(Op.VREDUCE, dst=out + 3 * n + 300, src=4096, n=5 * W + 3, k=2),
        I(Op.VMAX, dst=out + 3 * n + 299, src=4096, n=9 * W + 5),
        I(Op.VMAX, dst=out + 3 * n + 298, src=0, n=30),  # NaNs among corners
    ]
    base = out + 4 * n
    dst = base
    # SOFTMAX: rows in one register, in two, long rows; several rows at once, in place.
    for length, rows in ((7, 1), (W, 13), (W + 3, 3), (2 * W, 2), (2 * W + 1, 1), (300, 3),
                         (9 * W + 1, 2), (20, 7)):
        prog.append(I(Op.SOFTMAX, dst=dst, src=4096 + 3 * length % 512, n=length, rows=rows))
        dst += length * rows
    prog.append(I(Op.SOFTMAX, dst=5000, src=5000, n=50, rows=2))  # in place
    prog.append(I(Op.SOFTMAX, dst=dst, src=0, n=20, rows=1))  # Inf/NaN inputs
    dst += 20
    # SOFTMAXU: the exponentials and each row's 1/sum spread over rseg words; short, two-register
    # and long rows, not in place and in place (long rows in place: the fused path on 64 and
    # 128 lanes), a spread longer than a block, Inf/NaN inputs.
    for length, rows, rseg, at in ((7, 3, 5, dst), (2 * W, 2, 1, dst), (9 * W + 1, 2, W + 3, dst),
                                   (8 * W, 5, 2, 4096 + 1000), (20, 1, 3, dst)):
        src = 0 if length == 20 else (4096 + 5 * length % 512 if at == dst else at)
        prog.append(I(Op.SOFTMAXU, dst=at, src=src, n=length, rows=rows, rcp=3700, rseg=rseg))
        prog.append(I(Op.VMOV, dst=dst + (length * rows if at == dst else 0), src=3700,
                      n=rows * rseg))
        dst += (length * rows if at == dst else 0) + rows * rseg
    prog += [
        I(Op.LAYERNORM, dst=dst, src=4096, gamma=4096 + 64, beta=4096 + 128, n=64,
          eps_f32=f32(1e-5)),
        I(Op.LAYERNORM, dst=4096 + 900, src=4096 + 900, gamma=4096 + 64, beta=4096 + 128,
          n=11 * W + 3, eps_f32=f32(1e-5)),  # in place
        I(Op.LAYERNORM, dst=dst + 100, src=4096 + 2, gamma=4096, beta=4096, n=5, eps_f32=0),
    ]
    dst += 100 + 5
    # A LayerNorm folded into its GEMV: LNCENTRE (and in place), LNRSTD (rstd and its d in tmp,
    # a partial last block and none), VMADS (its scale one of LNRSTD's outputs; in place).
    prog += [
        I(Op.LNCENTRE, dst=dst, src=4096 + 40, gamma=4096 + 64, n=7 * W + 3),
        I(Op.LNCENTRE, dst=4096 + 2100, src=4096 + 2100, gamma=4096, n=40),
        I(Op.LNRSTD, dst=dst + 7 * W + 3, src=4096 + 40, tmp=dst + 7 * W + 4, n=7 * W + 3,
          eps_f32=f32(1e-5)),
        I(Op.LNRSTD, dst=dst + 14 * W + 7, src=4096 + 300, tmp=dst + 14 * W + 8, n=4 * W,
          eps_f32=f32(1e-5)),
        I(Op.VMADS, dst=dst + 18 * W + 8, a=4096 + 10, s=dst + 7 * W + 3, b=4096 + 600,
          n=3 * W + 5),
        I(Op.VMADS, dst=4096 + 2200, a=4096 + 2200, s=3905, b=0, n=21),
    ]
    dst += 21 * W + 13
    # VMACS: short and long segments, one-word segments, in place (a is dst).
    sp[3900:3940] = nx.bits_from_f32(rng.normal(0, 1, 40).astype(np.float32))
    sp[3920] = 0x7FC00000
    for seg, nseg in ((3, 5), (W + 3, 2), (1, 7), (2 * W, 1)):
        prog.append(I(Op.VMACS, dst=dst, a=4096 + 7 * seg, s=3900 + nseg, seg=seg, nseg=nseg))
        dst += seg * nseg
    prog.append(I(Op.VMACS, dst=4096 + 1500, a=4096 + 1500, s=3930, seg=17, nseg=3))
    # Llama functions: SiLU-gated product over every corner, RMSNORM (and in place), ROPE.
    prog.append(I(Op.SWIGLU, dst=dst, gate=0, up=4096, n=3 * W + 5))
    dst += 3 * W + 5
    prog += [I(Op.RMSNORM, dst=dst, src=4096 + 300, gamma=4096 + 64, n=5 * W + 3,
               eps_f32=f32(1e-6)),
             I(Op.RMSNORM, dst=4096 + 1700, src=4096 + 1700, gamma=4096, n=33, eps_f32=0)]
    dst += 5 * W + 3
    # A folded RMSNorm: RMSRSTD, then VMULS by it (and in place)
    prog += [I(Op.RMSRSTD, dst=dst, src=4096 + 300, n=5 * W + 3, eps_f32=f32(1e-6)),
             I(Op.VMULS, dst=dst + 1, a=4096 + 77, s=dst, n=2 * W + 9),
             I(Op.VMULS, dst=4096 + 2300, a=4096 + 2300, s=3907, n=19)]
    dst += 2 * W + 10
    prog += [I(Op.ROPE, dst=dst, src=4096 + 20, tab=4096 + 1000, half=W + 3, nhead=2),
             I(Op.ROPE, dst=4096 + 1800, src=4096 + 1800, tab=3000, half=12, nhead=5)]
    dst += 4 * W + 12
    # ARGMAX: ties (first wins), NaN (first NaN wins), ties across blocks, a plain vector.
    sp[3000:3008] = [f32(1.0), f32(5.0), f32(-2.0), f32(5.0), f32(0.0), f32(5.0), 0, 0]
    sp[3010:3016] = [f32(1.0), 0x7FC00000, f32(9.0), 0xFFC00001, f32(2.0), f32(3.0)]
    sp[3100:3100 + 7 * W] = f32(-1.0)
    sp[[3100 + 5 * W + 2, 3100 + W + 9, 3100 + 6 * W]] = f32(7.0)
    prog += [I(Op.ARGMAX, reg=3, src=3000, n=8), I(Op.ARGMAX, reg=7, src=3010, n=6),
             I(Op.ARGMAX, reg=11, src=3100, n=7 * W), I(Op.ARGMAX, reg=15, src=4096, n=257)]
    # An ARGMAX chain (ARGMAX then ARGMAXC pieces): a tie across a cut stays with the earlier
    # piece, a later NaN wins over every number, -0 ties +0; pieces of 1 word to several blocks.
    sp[3400:3400 + 6 * W] = f32(-3.0)
    sp[[3402, 3400 + W + 1, 3400 + 2 * W + 6]] = f32(4.0)
    sp[3400 + 4 * W] = 0xFFC00001
    sp[3400 + 4 * W + 3] = 0x7FC00000
    cuts = (3, W + 1, W + 2, 2 * W + 7, 4 * W - 1, 6 * W)
    prog.append(I(Op.ARGMAX, reg=9, src=3400, n=cuts[0]))
    prog += [I(Op.ARGMAXC, reg=9, src=3400, lo=lo, n=hi - lo)
             for lo, hi in zip(cuts, cuts[1:], strict=False)]
    sp[3600:3604] = [0x80000000, 0, 0x80000000, f32(-1.0)]  # -0 then +0: the first stays
    prog += [I(Op.ARGMAX, reg=10, src=3600, n=1), I(Op.ARGMAXC, reg=10, src=3600, lo=1, n=3)]
    if dst > WORDS:
        raise ValueError(f"nelem={n_elem} is too large for a {WORDS}-word scratchpad")
    return sp, prog


@cocotb.test()
async def vector_unit_vs_golden(dut):
    p = params()
    sp, prog = stimulus(p["seed"], p["nelem"], p["lanes"])
    summary = await check_vector_unit(dut, sp, prog, lanes=p["lanes"], seed=p["seed"],
                                      prefix=p.get("prefix", ""), trace=p.get("trace", False),
                                      pipeline=p.get("pipeline"))
    report("vector_unit", summary)
    for name, s in summary.items():
        if isinstance(s, dict):
            assert s["mismatched"] == 0 and s["unexpected"] == 0 and not s["pending"], \
                (name, s["reports"])

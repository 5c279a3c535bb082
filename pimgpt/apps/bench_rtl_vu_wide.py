"""The RTL vector unit at the default hardware's width (128 lanes, and 64) against golden and ISS.

The cocotb suite (``tests/cocotb/test_cocotb_rtl.py::test_vector_unit_cocotb``) checks the unit
of ``tiny-rtl`` (16 lanes), where the software-pipelined SOFTMAX exp loop
(:mod:`pimgpt.core.vu.modulo`, taken at 64 and 128 lanes for groups of at least two long rows)
never runs. This section builds ``VectorUnitTop`` with ``W`` lanes and a
:data:`WORDS`-word scratchpad under Verilator and runs :func:`stimulus` on it through
:func:`pimgpt.sim.cocotb_lib.vector_check.check_vector_unit`: every result bit for bit against
the golden model, every instruction's cycles and every micro-operation's issue cycle against the
ISS. The Verilog generation and the Verilator build of the 128-lane unit take several minutes on
a small machine (too long for the test suite); the build is cached.

* :func:`stimulus` -- the program: long-row SOFTMAX that takes the pipelined loop (and its plain
  form and single rows beside it), LNCENTRE/LNRSTD/VMADS at d = 768 and 1600, RMSRSTD/VMULS at
  2048, ARGMAX/ARGMAXC chains over a vocabulary-sized vector, a few element-wise ops (VADD3 in
  place among them), reductions and LAYERNORM/RMSNORM.
* :func:`pipelined_groups` -- how many SOFTMAX row groups of a program the ISS ran through the
  pipelined loop (the check that the stimulus reaches it).
* ``python -m pimgpt.apps.bench_rtl_vu_wide [--quick] [--lanes W ...]`` prints one line per lane
  count and exits 1 on any mismatch (``--quick``: 128 lanes only).
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from pimgpt.core import numerics as nx
from pimgpt.core.isa import I, Op
from pimgpt.core.vu.uisa import LANE_CHOICES

__all__ = ["WORDS", "stimulus", "pipelined_groups", "run_wide", "wide_check", "main"]

#: Scratchpad words of the unit under test (a 16-bit address).
WORDS = 65536
SEED = 7


def f32(x: float) -> int:
    return int(np.float32(x).view(np.uint32))


def _bits(rng, n: int, scale: float = 1.0) -> np.ndarray:
    return nx.bits_from_f32((rng.normal(0, scale, n)).astype(np.float32))


def stimulus(seed: int, lanes: int) -> tuple[np.ndarray, list]:
    """Scratchpad contents and the program of the wide check (see the module's docstring).

    Inputs live below 24576 (random normal words, a block of every special value, gains near 1),
    outputs above, except the in-place cases; SOFTMAX takes ``n = 1000`` x 5 rows, ``2100`` x 2,
    ``4W + 3`` and ``8W + 3`` x 4, groups of rows looped (8 rows, in place), a row with NaN
    and one of ``-Inf`` (``n = 1000``), and ``8W`` x 9 in place over the first inputs (the
    fused path: the next group's maxima in the exp loop); then SOFTMAXU, ``1000`` x 5 to another
    place and ``8W`` x 9 in place over earlier results (its fused path).
    """
    from pimgpt.sim.cocotb_lib.stimulus import FP32_DIRECTED

    rng = np.random.default_rng(seed)
    W = lanes
    sp = np.zeros(WORDS, dtype=np.uint32)
    sp[0:8192] = _bits(rng, 8192, 3.0)
    sp[8192:16384] = _bits(rng, 8192, 2.0)
    sp[16384:20480] = nx.bits_from_f32((1.0 + rng.normal(0, 0.1, 4096)).astype(np.float32))
    corners = np.array(FP32_DIRECTED, dtype=np.uint32)
    sp[20480:20480 + len(corners)] = corners
    sp[21000:24000] = _bits(rng, 3000, 5.0)  # softmax rows: one with a NaN, one all -Inf
    sp[21500] = 0x7FC00000
    sp[22000:23000] = 0xFF800000
    out = 24576
    prog = []

    def alloc(n: int) -> int:
        nonlocal out
        at, out = out, out + n
        return at

    # element-wise, binary, moves, reductions (remainder paths: lengths not multiples of K * W)
    prog += [I(Op.VEXP, dst=alloc(3000), src=0, n=3000),
             I(Op.VGELU, dst=alloc(1000), src=20480 - 500, n=1000),
             I(Op.VADD, dst=alloc(4 * W + 5), a=0, b=8192, n=4 * W + 5),
             I(Op.VMUL, dst=(m := alloc(777)), a=100, b=20480, n=777),
             I(Op.VADD3, dst=m, a=m, b=0, c=8192, n=777),  # in place, as x += y + bias
             I(Op.VMOV, dst=alloc(9 * W + 1), src=3, n=9 * W + 1),
             I(Op.VREDUCE, dst=alloc(2), src=8192, n=9 * W + 3, k=2),
             I(Op.VMAX, dst=alloc(1), src=0, n=17 * W + 5)]
    # LayerNorm folded into its GEMV (d 768 and 1600; VMADS in place), and the plain one
    for d, src in ((768, 0), (1600, 8192)):
        centred, stats = alloc(d), alloc(2)
        prog += [I(Op.LNCENTRE, dst=centred, src=src, gamma=16384, n=d),
                 I(Op.LNRSTD, dst=stats, src=src, tmp=stats + 1, n=d, eps_f32=f32(1e-5)),
                 I(Op.VMADS, dst=alloc(d), a=centred, s=stats, b=17000, n=d),
                 I(Op.VMADS, dst=centred, a=centred, s=stats + 1, b=18000, n=d),
                 I(Op.LAYERNORM, dst=alloc(d), src=src, gamma=16384, beta=17000, n=d,
                   eps_f32=f32(1e-5))]
    # RMSNorm folded (n 2048; VMULS in place) and the plain one
    rstd = alloc(1)
    prog += [I(Op.RMSRSTD, dst=rstd, src=4000, n=2048, eps_f32=f32(1e-6)),
             I(Op.VMULS, dst=alloc(2048), a=16384, s=rstd, n=2048),
             I(Op.VMULS, dst=6000, a=6000, s=rstd, n=2048),
             I(Op.RMSNORM, dst=alloc(2048), src=4000, gamma=16384, n=2048, eps_f32=f32(1e-6))]
    # ARGMAX chains: over [0, 8000) with equal maxima in the first piece and across cuts (the
    # earliest stays); over the gains with a NaN in the last piece (it wins). Pieces of one
    # word to many blocks, cuts at any alignment.
    sp[[7, 2 * W + 1, 4999]] = f32(1e6)
    cuts = (0, 3 * W + 2, 3 * W + 3, 4999, 5000, 7777, 8000)
    prog.append(I(Op.ARGMAX, reg=4, src=0, n=cuts[1]))
    prog += [I(Op.ARGMAXC, reg=4, src=0, lo=lo, n=hi - lo)
             for lo, hi in zip(cuts[1:], cuts[2:], strict=False)]
    sp[16384 + 1000] = f32(5.0)
    sp[16384 + 3500] = 0x7FC00000
    prog.append(I(Op.ARGMAX, reg=5, src=16384, n=W + 1))
    prog += [I(Op.ARGMAXC, reg=5, src=16384, lo=lo, n=hi - lo)
             for lo, hi in ((W + 1, 3000), (3000, 4000))]
    prog.append(I(Op.ARGMAX, reg=6, src=0, n=8000))  # the whole vector at once
    # SOFTMAX: the pipelined loop (groups of >= 2 long rows), its plain form (a single row,
    # too few iterations), looped groups, NaN and -Inf rows, in place (last: they overwrite
    # inputs of the others)
    for n, rows, src in ((1000, 5, 0), (2100, 2, 8192), (4 * W + 3, 4, 5000),
                         (8 * W + 3, 4, 2000), (3 * W, 3, 300),
                         (1000, 3, 21000)):
        prog.append(I(Op.SOFTMAX, dst=alloc(n * rows), src=src, n=n, rows=rows))
    prog += [I(Op.SOFTMAX, dst=8192, src=8192, n=1000, rows=8),
             I(Op.SOFTMAX, dst=12000, src=12000, n=1000, rows=4),
             I(Op.SOFTMAX, dst=0, src=0, n=8 * W, rows=9)]
    # SOFTMAXU: long rows to another place (the reciprocals spread over 70 words), and in place
    # over a copy (the fused path: n a multiple of W, two groups of rows and more)
    prog += [I(Op.SOFTMAXU, dst=alloc(3000), src=2000, n=1000, rows=3, rcp=alloc(210),
               rseg=70),
             I(Op.SOFTMAXU, dst=4096, src=4096, n=8 * W, rows=9, rcp=alloc(9 * 16), rseg=16)]
    if out > WORDS:
        raise ValueError(f"the wide stimulus does not fit a {WORDS}-word scratchpad")
    return sp, prog


def pipelined_groups(lanes: int, prog: list, sp: np.ndarray) -> list[int]:
    """For each instruction of ``prog``: the row groups the ISS ran through the software-pipelined
    exp loop (0 but for some SOFTMAX).

    The pipelined loop ends with a jump over the plain loop (the micro-word just before each
    ``pipe.plain`` label), executed only when the pipelined form ran.
    """
    from pimgpt.core.vu.cost import microcode_for
    from pimgpt.core.vu.iss import VectorISS
    from pimgpt.core.vu.uisa import Pipeline

    mc = microcode_for(lanes, Pipeline())
    jumps = {pc - 1 for name, pc in mc.labels.items() if name.startswith("pipe.plain")}
    iss = VectorISS(mc, sp.copy())
    counts = []
    for ins in prog:
        iss.trace = []
        iss.run(ins.op, ins.fields())
        counts.append(sum(pc in jumps for pc, _ in iss.trace))
    return counts


async def wide_check(dut, lanes: int, seed: int = SEED) -> dict:
    """The cocotb side: :func:`stimulus` through ``check_vector_unit`` (ports ``vu_*``)."""
    from pimgpt.sim.cocotb_lib.vector_check import check_vector_unit

    sp, prog = stimulus(seed, lanes)
    return await check_vector_unit(dut, sp, prog, lanes=lanes, seed=seed, prefix="vu_",
                                   trace=True)


def run_wide(lanes: int, seed: int = SEED) -> dict:
    """Build (cached) and run the check at ``lanes``; the summary plus build/run seconds."""
    from pimgpt.core.vu.uisa import Pipeline
    from pimgpt.hdl.vector_unit import VectorUnitTop
    from pimgpt.sim.cocotb_lib.harness import harness_verilog
    from pimgpt.sim.cocotb_lib.runner import build_lock, call_in_simulator, default_build_root

    top = "vu_wide"
    d = default_build_root() / f"vu-wide-{lanes}"
    d.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    with build_lock(d):
        src = harness_verilog({"vu": VectorUnitTop(WORDS, lanes=lanes, lat=Pipeline())}, top, d)
        t1 = time.perf_counter()
        run = call_in_simulator("pimgpt.apps.bench_rtl_vu_wide:wide_check",
                                {"lanes": lanes, "seed": seed}, sources=[src], toplevel=top,
                                build_dir=d, quiet=True)
    sp, prog = stimulus(seed, lanes)
    res = dict(run.result)
    res.update(lanes=lanes, verilog_s=t1 - t0, build_s=run.build_s, sim_s=run.test_s,
               pipelined_groups=sum(pipelined_groups(lanes, prog, sp)))
    return res


def mismatches(res: dict) -> int:
    """Mismatched, unexpected and pending items over every scoreboard of a summary."""
    return sum(s["mismatched"] + s["unexpected"] + s["pending"]
               for s in res.values() if isinstance(s, dict))


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="128 lanes only")
    parser.add_argument("--lanes", type=int, nargs="+", default=None, choices=LANE_CHOICES,
                        help="the widths to run (default: 128 and 64)")
    args = parser.parse_args(argv)
    lanes = args.lanes or ([128] if args.quick else [128, 64])
    bad = 0
    for w in lanes:
        r = run_wide(w)
        n_bad = mismatches(r)
        bad += n_bad or not r["pipelined_groups"]
        print(f"{w:4d} lanes: {r['instructions']} instructions, {r['elements']} elements, "
              f"{r['cycles']} cycles; scratchpad {r['scratchpad']['matched']} words, "
              f"{r['logits']['matched']} logits, {r['argmax registers']['matched']} argmax "
              f"registers, {r['cycles vs ISS']['matched']} instruction cycles, "
              f"{r['issue trace vs ISS']['matched']} issue cycles vs ISS; "
              f"{r['pipelined_groups']} SOFTMAX groups pipelined; "
              f"{'bit- and cycle-exact' if not n_bad else f'{n_bad} MISMATCHES'} "
              f"(Verilog {r['verilog_s']:.0f} s, build {r['build_s']:.0f} s, "
              f"simulation {r['sim_s']:.0f} s)", flush=True)
    return 1 if bad else 0


if __name__ == "__main__":
    from pimgpt.apps.entry import module_main

    module_main(main)

"""``python -m pimgpt.apps.bench_rtl_vu_wide``: its stimulus reaches the pipelined SOFTMAX loop and
the new instructions at 64 and 128 lanes, and a mismatch fails the section. (The RTL run itself is
the bench section: its Verilator build takes minutes.)"""

import numpy as np
import pytest

from pimgpt.apps import bench_rtl_vu_wide as wide
from pimgpt.core.isa import I, Op
from pimgpt.core.vu.cost import microcode_for
from pimgpt.core.vu.iss import VectorISS
from pimgpt.core.vu.uisa import Pipeline
from pimgpt.sim.cocotb_lib.vector_check import vu_hw
from pimgpt.sim.golden import GoldenMachine


@pytest.mark.parametrize("lanes", [64, 128])
def test_wide_stimulus_reaches_the_pipelined_loop_and_iss_is_golden(lanes):
    sp, prog = wide.stimulus(wide.SEED, lanes)
    assert sp.size == wide.WORDS
    ops = {ins.op for ins in prog}
    assert {Op.LNCENTRE, Op.LNRSTD, Op.VMADS, Op.RMSRSTD, Op.VMULS, Op.ARGMAXC} <= ops
    counts = wide.pipelined_groups(lanes, prog, sp)
    piped = {(ins["n"], ins["rows"]) for ins, k in zip(prog, counts, strict=True) if k}
    assert {(1000, 5), (2100, 2), (1000, 8), (1000, 4)} <= piped
    if lanes == 128:
        assert (8 * lanes + 3, 4) in piped
    assert (3 * lanes, 3) not in piped  # the plain loop runs beside it
    # the ISS's results are the golden model's, whole scratchpad (the RTL is compared with both)
    golden = GoldenMachine(vu_hw(lanes, wide.WORDS))
    golden.sp[:] = sp.view(np.float32)
    iss = VectorISS(microcode_for(lanes, Pipeline()), sp.copy())
    golden.run(prog + [I(Op.EOC)])
    for ins in prog:
        iss.run(ins.op, ins.fields())
    np.testing.assert_array_equal(iss.sp, golden.sp.view(np.uint32))
    assert not np.array_equal(iss.sp, sp)


def _summary(mismatched: int) -> dict:
    ok = {"matched": 5, "mismatched": 0, "unexpected": 0, "pending": 0}
    return {"scratchpad": ok, "argmax registers": ok, "logits": ok, "issue trace vs ISS": ok,
            "cycles vs ISS": dict(ok, mismatched=mismatched), "instructions": 1,
            "elements": 1, "cycles": 1, "lanes": 128, "verilog_s": 0.0, "build_s": 0.0,
            "sim_s": 0.0, "pipelined_groups": 3}


def test_a_mismatch_fails_the_section(monkeypatch, capsys):
    monkeypatch.setattr(wide, "run_wide", lambda lanes: _summary(1))
    assert wide.main(["--quick"]) == 1
    assert "1 MISMATCHES" in capsys.readouterr().out
    monkeypatch.setattr(wide, "run_wide", lambda lanes: _summary(0))
    assert wide.main(["--quick"]) == 0
    assert "bit- and cycle-exact" in capsys.readouterr().out

"""Late softmax normalisation (``SOFTMAXU``, then one ``VMUL`` of ``p . V``'s outputs by each row's
``1/sum``; ``docs/dataflow.md``, "Late normalisation"): where the compiler takes it, and that the
steps taking it are bit for bit the reference model told which they are."""

import numpy as np
import pytest
from test_end_to_end import HW, assert_same_generation

from pimgpt.core import isa
from pimgpt.core.config import load_hw
from pimgpt.core.isa import Op
from pimgpt.sim.backend import PerfBackend
from pimgpt.sim.reference import pim_generate
from pimgpt.sw.checkpoint import random_weights
from pimgpt.sw.compiler import (
    attention_plan,
    compile_decode_step,
    compile_generation,
    late_norm_positions,
)
from pimgpt.sw.models import get_model


def test_late_normalisation_where_the_cost_model_finds_it_faster():
    """gpt3-medium ctx 2048 (one group of 16 heads, its softmax exposed): the cost model takes
    SOFTMAXU (its product by 1/sum after p . V), recorded in the plan, which the perf backend
    reports; gpt2-small ctx 128 (rows within two registers) is not allowed it; the serial
    schedule never tries it."""
    hw = load_hw("pimgpt-gddr6-8ch")
    cp = compile_decode_step(get_model("gpt3-medium"), hw, 2048)
    ops = [i.op for i, t in zip(cp.program, cp.tags, strict=True) if t.startswith("L3.attn.")]
    assert attention_plan(cp)["unnormalised_softmax"]
    assert Op.SOFTMAXU in ops and Op.SOFTMAX not in ops and Op.VMUL in ops
    # `pimgpt run --backend perf`: the statistics carry the plan, the text summary says it
    run = PerfBackend().run(cp, None, hw)
    assert run.stats["attention_plan"] == attention_plan(cp)
    assert run.lines[-1] == (
        "    attention plan (last step): 1 head group, value projection under the first "
        "softmaxes, softmax normalised after p . V (SOFTMAXU)")
    small = compile_decode_step(get_model("gpt2-small"), hw, 128)
    assert not attention_plan(small)["unnormalised_softmax"]
    serial = compile_decode_step(get_model("gpt3-medium"), hw, 2048, schedule="serial")
    assert not any(i.op is Op.SOFTMAXU for i in serial.program)


@pytest.mark.parametrize("name", ["tiny", "tiny-llama-py"])
def test_late_softmax_normalisation_bit_identical(monkeypatch, name):
    """tiny-rtl (16 lanes) allows SOFTMAXU from 33 positions (here forced, not left to the cost
    model): those steps normalise p . V's outputs, the reference is told which (read from the
    program), and the generation is bit for bit the reference's (multi-head and grouped-query
    attention)."""
    from pimgpt.sw.compiler.schedule import PipelinedSchedule

    monkeypatch.setattr(PipelinedSchedule, "late_norm", True)
    cfg, hw = get_model(name), load_hw("tiny-rtl")
    prompt = [(7 * i + 3) % cfg.vocab for i in range(36)]
    compiled = compile_generation(cfg, hw, prompt, 3)
    late = late_norm_positions(compiled)
    assert late == {s.pos for s in compiled.steps if s.pos >= 2 * hw.asic.vector_lanes}
    # the record is the program: SOFTMAXU in exactly those steps
    bounds = [s.start for s in compiled.steps] + [len(compiled.program)]
    assert late == {s.pos for s, lo, hi in zip(compiled.steps, bounds, bounds[1:], strict=False)
                    if any(i.op is Op.SOFTMAXU for i in compiled.program[lo:hi])}
    weights = random_weights(cfg, 4)
    assert_same_generation(cfg, hw, weights, prompt, 3)
    # told nothing, the reference differs: the two normalisations are not the same arithmetic
    _, plain = pim_generate(cfg, weights, hw.dram.gb_elems, prompt, 3)
    _, told = pim_generate(cfg, weights, hw.dram.gb_elems, prompt, 3, late)
    assert any(not np.array_equal(a.view(np.uint32), b.view(np.uint32))
               for a, b in zip(plain, told, strict=True))


@pytest.mark.parametrize("merge", [False, True])
def test_late_normalisation_of_merged_and_balanced_groups_bit_identical(monkeypatch, merge):
    """SOFTMAXU forced (``Schedule.late_norm``) on a channel-major V cache (the default
    hardware, cut to 16 lanes so that 33 positions allow it) with head groups whose rows are not
    in head order (one VMUL per run of heads: four), alone or with one p . V after the grouped
    softmaxes: bit for bit the reference, told the steps."""
    from pimgpt.core.config import hw_variant
    from pimgpt.sw.compiler.schedule import PipelinedSchedule
    from pimgpt.sw.mapper import v_channel_major

    cfg, hw = get_model("tiny"), hw_variant(HW, "asic", vector_lanes=16)
    assert v_channel_major(cfg, hw)
    monkeypatch.setattr(PipelinedSchedule, "late_norm", True)
    monkeypatch.setattr(PipelinedSchedule, "v_late", False)
    monkeypatch.setattr(PipelinedSchedule, "head_groups", lambda self, *a: [[[1, 3], [0, 2]]])
    if merge:  # the last candidate (one p . V) wins
        trials = []
        monkeypatch.setattr(PipelinedSchedule, "estimate",
                            lambda self, p: -len(trials.append(p) or trials))
    else:
        monkeypatch.setattr(PipelinedSchedule, "max_merged_groups", 1)
    prompt = [(5 * i + 1) % cfg.vocab for i in range(34)]
    compiled = compile_generation(cfg, hw, prompt, 2)
    late = late_norm_positions(compiled)
    assert late == {s.pos for s in compiled.steps if s.pos >= 2 * hw.asic.vector_lanes}
    assert all(s.plan["merged_av"] == merge for s in compiled.steps if s.pos in late)
    last = compiled.steps[-1].start
    vmuls = [i for i, t in zip(compiled.program[last:], compiled.tags[last:], strict=True)
             if t == "L1.attn.softmax" and i.op is isa.Op.VMUL]
    assert len(vmuls) == 4
    assert_same_generation(cfg, hw, random_weights(cfg, 5), prompt, 2)

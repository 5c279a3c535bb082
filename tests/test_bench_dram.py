"""The PIM-side budget of ``python -m pimgpt.apps.bench_dram`` (issue 11: what bounds the PIM
busy time, per cause)."""

from __future__ import annotations

import pytest

from pimgpt.apps import bench_dram
from pimgpt.core.config import load_hw


@pytest.fixture(scope="module")
def small_budget():
    return bench_dram.budget("gpt2-small", 128, load_hw("pimgpt-gddr6-8ch"))


def test_budget_adds_up_to_the_busy_time(small_budget):
    b = small_budget
    assert b["floor_us"] + sum(us for _, us in b["steps"]) == pytest.approx(b["pim_busy_us"],
                                                                            rel=1e-12)
    assert [c for c, _ in b["steps"]] == [c for c, *_ in bench_dram.LADDER] + [
        "pins (loads, reads, K/V appends)", "the rest over the floor"]


def test_every_cost_of_the_ladder_costs_time(small_budget):
    # gpt2-small ctx 128 spans about 80 refresh intervals (nREFI 1.67 us), has register-mode
    # visits on every channel and switches rows every 64 columns: removing any of them saves PIM
    # time; the pins cannot carry their bytes faster than the channel rate, so the rest is not
    # negative.
    costs = dict(small_budget["steps"])
    assert costs["refresh"] > 0.5
    assert costs["register-mode switches"] > 1.0
    assert costs["row switches (second row buffer)"] > 10.0
    assert costs["pins (loads, reads, K/V appends)"] > 5.0
    assert costs["the rest over the floor"] >= 0.0


def test_excess_by_instruction_adds_up_to_the_last_rung(small_budget):
    """The per-instruction excess over the floor, on the budget's last rung (refresh off, no
    mode switches, second row buffer), adds up to that rung's PIM busy time less the floor: the
    pins plus the rest of the ladder."""
    hw = load_hw("pimgpt-gddr6-8ch")
    rows = bench_dram.excess_by_instruction("gpt2-small", 128, hw, top=None)
    b = small_budget
    costs = dict(b["steps"])
    over = costs["pins (loads, reads, K/V appends)"] + costs["the rest over the floor"]
    total_us = sum(ex for *_, ex in rows) * hw.dram.tck_ns / 1e3
    assert total_us == pytest.approx(over, rel=1e-9)
    top = bench_dram.excess_by_instruction("gpt2-small", 128, hw)
    assert len(top) == 8 and top == rows[:8] and top[0][3] > top[-1][3] > 0
    # the K/V appends are among the kinds (per layer one WR_VEC, and one WR_ELEM per unit of
    # 16 V dimensions: the channel-major V cache, docs/dataflow.md)
    counts = {(op, kind): n for op, kind, n, _ in rows}
    assert counts[("WR_VEC", "attn.kv")] == 12 and counts[("WR_ELEM", "attn.kv")] == 12 * 48


def test_points_are_parsed_and_checked():
    from pimgpt.core.errors import PimgptError

    assert bench_dram.parse_points("gpt2-small:128, llama-3.2-1b:512") == (
        ("gpt2-small", 128), ("llama-3.2-1b", 512))
    for bad, words in (("gpt2-small", "give MODEL:CONTEXT pairs"),
                       ("gpt2-small:x", "give MODEL:CONTEXT pairs"),
                       ("gpt2-small:2000", "context 2000 is out of range for gpt2-small; use "
                                           "1..1024"),
                       ("nope:128", "unknown model 'nope'"),
                       ("", "--points is empty"), (" ", "--points is empty"),
                       ("gpt2-small:128,", "--points 'gpt2-small:128,' \\(an empty item\\)")):
        with pytest.raises(PimgptError, match=words):
            bench_dram.parse_points(bad)


def test_what_if_of_an_ideal_vector_unit():
    """The bench's what-if rows: a vector unit of one cycle an instruction leaves the token bound
    by the PIM side alone (no exposed vector-unit time), never slower than as configured."""
    hw = load_hw("pimgpt-gddr6-8ch")
    h = bench_dram.variant(hw, bench_dram.VARIANTS["act_overlap, vector unit ideal"])
    assert h.dram.act_overlap and h.asic.vector_unit_ideal and not hw.asic.vector_unit_ideal
    real = bench_dram.token_figures("gpt2-small", 128, hw)
    ideal = bench_dram.token_figures("gpt2-small", 128, bench_dram.variant(
        hw, bench_dram.VARIANTS["vector unit ideal"]))
    assert real["asic_exposed_us"] > 1.0 and ideal["asic_exposed_us"] < 0.2
    assert ideal["latency_us"] < real["latency_us"]
    assert ideal["latency_us"] >= ideal["latency_bound_us"] == real["latency_bound_us"]


@pytest.mark.parametrize("module", [m for _t, m, _q in __import__(
    "pimgpt.apps.bench", fromlist=["SECTIONS"]).SECTIONS])
def test_every_bench_section_has_a_command_line(module, capsys):
    """``pimgpt bench`` (``make bench``) calls each section's ``main(argv)``: every one exists and
    answers ``--help`` (a section without it stopped ``make bench`` once)."""
    import importlib

    mod = importlib.import_module(module)
    with pytest.raises(SystemExit) as exc:
        mod.main(["--help"])
    assert exc.value.code == 0
    assert "--quick" in capsys.readouterr().out

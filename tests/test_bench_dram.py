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

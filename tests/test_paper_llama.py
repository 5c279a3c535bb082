"""``pimgpt paper``'s Llama section: the plan (what fits which preset), the H200 bandwidth bound,
and a whole run on the shipped Llama-style model (rows, K/V traffic, files)."""

from __future__ import annotations

import csv

import pytest

from pimgpt.apps.paper import run_paper, split_models
from pimgpt.apps.paper_llama import H200_BYTES_PER_S, h200_bound_us, llama_plan
from pimgpt.core.config import load_hw
from pimgpt.sw.compiler import attention_plan, compile_decode_step
from pimgpt.sw.models import LLAMA_MODELS, PAPER_MODELS, get_model


def test_plan_skips_what_does_not_fit():
    points, skipped = llama_plan(["llama-2-7b", "llama-3.2-1b"], [128, 4096])
    assert ("llama-2-7b", "pimgpt-gddr6-32ch", 4096) in points
    assert ("llama-3.2-1b", "pimgpt-gddr6-16ch", 128) in points
    assert not any(p[:2] == ("llama-2-7b", "pimgpt-gddr6-16ch") for p in points)
    assert [s[:3] for s in skipped] == [("llama-2-7b", "pimgpt-gddr6-16ch", 128),
                                        ("llama-2-7b", "pimgpt-gddr6-16ch", 4096)]
    assert "rows per bank" in skipped[0][3]
    assert split_models(None) == (PAPER_MODELS, LLAMA_MODELS)
    assert split_models(["tiny", "tiny-llama-py"]) == (["tiny"], ["tiny-llama-py"])


def test_h200_bound_counts_weights_and_attended_kv():
    cfg = get_model("llama-3.2-1b")
    kv = 2 * 16 * 1024 * (8 * 64) * 2  # K and V, 16 layers, 1024 tokens, 8 K/V heads of 64, bf16
    assert h200_bound_us(cfg, 1024) == pytest.approx((2 * cfg.n_params + kv) / 4.8e12 * 1e6)
    assert H200_BYTES_PER_S == 4.8e12


def test_run_paper_llama_rows(tmp_path):
    out = tmp_path / "p"
    res = run_paper(out, models=["tiny-llama-py"], contexts=[16, 64], sweeps=False,
                    progress=False)
    rows = res["llama"]
    assert [(r["channels"], r["ctx"]) for r in rows] == [(16, 16), (16, 64), (32, 16), (32, 64)]
    cfg = get_model("tiny-llama-py")
    for r in rows:
        assert r["kv_over_ideal"] == cfg.group  # one K/V column read per query head
        assert r["kv_row_opens_over_ideal"] == 1.0
        assert r["kv_ideal_mb"] * 1e6 == 2 * cfg.n_layer * r["ctx"] * cfg.kv_dim * 2
        assert r["x_h200_bound"] == pytest.approx(r["h200_bound_us"] / r["latency_us"])
        assert 0 < r["non_gemv_share"] < 1 and r["latency_us"] > 0 and r["energy_uj"] > 0
    # a longer context costs more
    # Attention's share grows with the context (the token of this vector-unit-bound model need
    # not). Only the direction is asserted: the share is of *charged* time, which the schedule
    # moves (1.3x from ctx 16 to 64 with the V append before the scores, 1.06x with it beside
    # the first softmax, where it hides under the vector unit at both contexts).
    assert rows[1]["frac_attention"] > rows[0]["frac_attention"]
    assert rows[3]["frac_attention"] > rows[2]["frac_attention"]
    names = sorted(p.name for p in out.iterdir())
    assert names == ["llama.csv", "llama_latency.png", "results.md"]
    text = (out / "results.md").read_text()
    assert "## Llama family" in text and text.count("| tiny-llama-py |") == 4
    with open(out / "llama.csv") as f:
        table = list(csv.DictReader(f))
    assert len(table) == 4
    for r, t in zip(rows, table, strict=True):  # the plan the compiler recorded
        comp = compile_decode_step(cfg, load_hw(r["hw"]), r["ctx"])
        plan = attention_plan(comp)
        assert set(plan) == {"head_groups", "value_projection_late", "merged_av", "deferred_av",
                             "unnormalised_softmax"}
        assert {k: r[k] for k in plan} == plan
        assert t["head_groups"] == str(r["head_groups"]) and r["head_groups"] >= 1


def test_hw_runs_the_llama_models_too(tmp_path):
    """``--hw`` is every model's hardware: the Llama rows run on it alone, not on the 16- and
    32-channel presets (it had been ignored for them)."""
    res = run_paper(tmp_path / "p", hw_name="pimgpt-gddr6-16ch", models=["tiny-llama-py"],
                    contexts=[16], sweeps=False, progress=False)
    assert [(r["hw"], r["channels"], r["ctx"]) for r in res["llama"]] == \
        [("pimgpt-gddr6-16ch", 16, 16)]


def test_paper_lists_drop_repeats_and_a_mixed_run_keeps_what_fits(tmp_path):
    """``--models a,a`` is one model's rows; a GPT model that holds none of the contexts does not
    stop a Llama model that does (it had refused the whole run)."""
    from pimgpt.apps.paper import _parse_list

    assert _parse_list("tiny, tiny,gpt2-xl", "models", str) == ["tiny", "gpt2-xl"]
    assert _parse_list("16,16", "contexts", int) == [16]
    res = run_paper(tmp_path / "p", hw_name="pimgpt-gddr6-16ch", models=["tiny", "llama-3.2-1b"],
                    contexts=[128], sweeps=False, progress=False)
    assert res["rows"] == [] and [(r["model"], r["ctx"]) for r in res["llama"]] == \
        [("llama-3.2-1b", 128)]

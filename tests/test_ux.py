"""What a new user reads: --help defaults, the demo's figures and build folder, the RTL build
notice, the model YAML format and its example, and the documented messages being the real ones."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pytest

from pimgpt.cli import build_parser

REPO = Path(__file__).resolve().parent.parent


def _option_help(command: str, dest: str) -> str:
    """The help text of option ``dest`` of ``pimgpt command`` (not wrapped by argparse)."""
    sub = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    action = next(a for a in sub.choices[command]._actions if a.dest == dest)
    return action.help % {"default": action.default}


# ---------------------------------------------------------------------------------------------
# --help
# ---------------------------------------------------------------------------------------------
def test_run_hw_help_names_the_rtl_default():
    text = _option_help("run", "hw")
    assert text == "hardware preset or YAML file (default: pimgpt-gddr6-8ch; tiny-rtl with " \
        "--backend rtl; with --program, the hardware named in its memmap.yaml)"


def test_compile_hw_help_names_its_default_only():
    assert _option_help("compile", "hw").endswith("(default: pimgpt-gddr6-8ch)")


@pytest.mark.parametrize("command, folder", [("verilog", "build/verilog"),
                                             ("paper", "build/paper"),
                                             ("accuracy", "build/accuracy"),
                                             ("demo", "build/demo")])
def test_output_help_shows_the_default_folder(command, folder):
    assert _option_help(command, "output") == f"output directory (default: {folder})"


def test_stats_help_says_which_figures_cover_the_whole_program():
    text = _option_help("run", "stats")
    assert "mac_utilization cover the whole program, preamble included" in text
    assert "prefill/decode sections leave the preamble out" in text
    # the top-level breakdowns are the decode part's, not the whole program's
    assert "top-level breakdown_*, mac_busy_efficiency and dram cover the decode section" in text


def test_compile_new_tokens_has_no_silent_default():
    assert _option_help("compile", "new_tokens") == \
        "tokens to generate, with --prompt only (default: 1)"
    sub = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    assert sub.choices["compile"].parse_args(["-o", "x"]).new_tokens is None


def test_plural():
    from pimgpt.core.errors import plural

    assert (plural(1, "new token"), plural(0, "token"), plural(2, "token")) == \
        ("1 new token", "0 tokens", "2 tokens")


# ---------------------------------------------------------------------------------------------
# The demo
# ---------------------------------------------------------------------------------------------
def test_demo_reports_the_per_token_floor(capsys):
    """The floor printed next to a per-token latency is the decode step's (as `pimgpt run` and
    `pimgpt paper` print it), not the whole program's, which includes the preamble."""
    from pimgpt.apps.demo import demo_gpt2_small_perf

    stats = demo_gpt2_small_perf()
    out = capsys.readouterr().out
    step = stats["decode"]["mac_utilization"] * 100
    whole = stats["mac_utilization"] * 100
    assert f"{step:.1f}" != f"{whole:.1f}"  # else this test could not tell them apart
    assert f"bank-bandwidth floor reached {step:.1f} %" in out, out
    assert f"row-buffer hits {stats['decode']['row_hit_rate'] * 100:.1f} %" in out, out
    # the two sides of the token: the PIM against its floor and bound, the vector unit's share
    d = stats["dram"]
    assert (f"PIM side busy {stats['pim_busy_ns_per_token'] / 1e3:.1f} us = "
            f"{d['pim_busy_over_floor']:.2f}x the bank-bandwidth floor") in out, out
    assert 1 < d["pim_busy_bound_over_floor"] < d["pim_busy_over_floor"]
    share = 100 * stats["asic_exposed_ns_per_token"] / stats["latency_ns_per_token"]
    assert f"({share:.1f} % of the token)" in out and 0 < share < 5, out


def test_demo_builds_the_rtl_in_the_shared_cache(monkeypatch, capsys):
    """The RTL part uses RtlBackend's default build folder (the user cache), which `pimgpt run
    --backend rtl` reuses, not a private copy under -o."""
    import pimgpt.apps.run_cli as run_cli
    import pimgpt.sim.cocotb_lib.rtl_backend as rtl_backend
    from pimgpt.apps import demo

    made = []

    class FakeBackend:
        def __init__(self, **kwargs):
            made.append(kwargs)

    class Result:
        stats = {"cycles": 10, "perf_cycles": 10, "cycle_difference": 0.0,
                 "logits_matching": 1, "logits_checked": 1, "golden_match": True,
                 "protocol_violations": [], "text": "x", "build_dir": "/cache/system-tiny-rtl"}

    monkeypatch.setattr(rtl_backend, "RtlBackend", FakeBackend)
    monkeypatch.setattr(run_cli, "run_model", lambda *a, **k: Result())
    demo.demo_tiny_py_rtl(new_tokens=1)
    assert made == [{}]
    assert "RTL build: /cache/system-tiny-rtl (reused by `pimgpt run --backend rtl`)" in \
        capsys.readouterr().out


def test_demo_builds_the_mac_in_the_user_cache(monkeypatch, tmp_path):
    import pimgpt.apps.mac_demo as mac_demo
    from pimgpt.apps import demo
    from pimgpt.sim.cocotb_lib.runner import default_build_root

    calls = []
    monkeypatch.setattr(mac_demo, "run_mac_demo", lambda outdir, **kw: calls.append((outdir, kw)))
    demo.demo_mac(tmp_path)
    assert calls == [(tmp_path / "mac", {"build_dir": default_build_root() / "demo-mac"})]


# ---------------------------------------------------------------------------------------------
# The RTL build notice
# ---------------------------------------------------------------------------------------------
def _cached_build(folder: Path, key: str = "k") -> None:
    """A build folder as a finished Verilator build leaves it (key, Verilog, stamp, binary)."""
    import os

    from pimgpt.sim.cocotb_lib.runner import _toolchain
    from pimgpt.sim.cocotb_lib.system_run import TOPLEVEL

    sim = folder / "verilator"
    sim.mkdir(parents=True)
    (folder / f"{TOPLEVEL}.v").write_text("module pimgpt_system(); endmodule\n")
    (folder / "rtl.key").write_text(key)
    (sim / "toolchain.json").write_text(json.dumps(_toolchain("verilator")))
    (sim / TOPLEVEL).write_text("binary")
    os.utime(folder / f"{TOPLEVEL}.v", (1, 1))  # the binary is newer than its source


@pytest.fixture
def system(monkeypatch):
    pytest.importorskip("cocotb")
    from pimgpt.core.config import load_hw
    from pimgpt.sim.cocotb_lib import system_run

    monkeypatch.setattr(system_run, "_rtl_key", lambda hw, params: "k")
    return system_run, load_hw("tiny-rtl")


def test_first_rtl_run_announces_the_build(system, tmp_path, capsys):
    system_run, hw = system
    assert system_run.announce_build(hw, tmp_path / "b", 8192, "verilator") is True
    cap = capsys.readouterr()
    assert cap.out == ""
    assert cap.err == (f"building the Verilator model of tiny-rtl in {tmp_path / 'b'} (first run "
                       "on this hardware and RTL version: a few minutes; later runs reuse it)\n")


def test_a_large_rtl_build_says_so_first(system, tmp_path, capsys):
    """The default preset simulates 8 x 16 banks and a 128-lane unit: not "a few minutes"."""
    from pimgpt.core.config import load_hw

    system_run, _ = system
    assert system_run.announce_build(load_hw(None), tmp_path / "b", 8192, "verilator") is True
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 2 and lines[0].startswith(
        "note: pimgpt-gddr6-8ch (8 channels x 16 banks, 128-lane vector unit) is a large design")
    assert "--hw tiny-rtl" in lines[0] and lines[1].startswith("building the Verilator model")


def test_cached_rtl_build_is_reused_silently(system, tmp_path, capsys):
    system_run, hw = system
    _cached_build(tmp_path)
    assert system_run.announce_build(hw, tmp_path, 8192, "verilator") is False
    assert capsys.readouterr().err == ""


def test_changed_sources_announce_an_update(system, tmp_path, capsys):
    system_run, hw = system
    _cached_build(tmp_path, key="older")
    assert system_run.announce_build(hw, tmp_path, 8192, "verilator") is True
    assert capsys.readouterr().err.startswith("updating the Verilator model of tiny-rtl in ")


def test_build_of_another_toolchain_announces_a_build(system, tmp_path, capsys):
    system_run, hw = system
    _cached_build(tmp_path)
    (tmp_path / "verilator" / "toolchain.json").write_text('{"python": "/gone"}')
    assert system_run.announce_build(hw, tmp_path, 8192, "verilator") is True
    assert capsys.readouterr().err.startswith("building the Verilator model")


def test_needs_build_compares_the_binary_with_its_sources(tmp_path):
    pytest.importorskip("cocotb")
    import os

    from pimgpt.sim.cocotb_lib.runner import needs_build

    _cached_build(tmp_path)
    src = tmp_path / "pimgpt_system.v"
    assert not needs_build("verilator", tmp_path, [src], "pimgpt_system")
    os.utime(src)  # the Verilog is now newer than the binary
    assert needs_build("verilator", tmp_path, [src], "pimgpt_system")
    assert needs_build("icarus", tmp_path, [src], "pimgpt_system")  # no sim.vvp


# ---------------------------------------------------------------------------------------------
# Model YAML files
# ---------------------------------------------------------------------------------------------
def test_example_model_yaml_loads():
    from pimgpt.sw.models import ModelConfig, get_model

    cfg = get_model(str(REPO / "examples" / "my-gpt.yaml"))
    assert cfg == ModelConfig("my-gpt", n_layer=4, d_model=256, n_head=4, ctx=256, vocab=1024,
                              d_ff=1024)
    assert cfg.family == "gpt2"


def test_models_doc_lists_every_model_key():
    from dataclasses import fields

    from pimgpt.sw.models import ModelConfig

    doc = (REPO / "docs" / "models.md").read_text()
    rows = {line.split("|")[1].strip().strip("`") for line in doc.splitlines()
            if line.startswith("| `")}
    assert rows == {f.name for f in fields(ModelConfig)}
    assert "docs/models.md" in (REPO / "README.md").read_text()


def test_models_doc_shows_the_real_unknown_key_message(tmp_path, monkeypatch, capsys):
    from pimgpt.cli import main

    monkeypatch.chdir(tmp_path)
    Path("m.yaml").write_text("n_layer: 2\nd_model: 64\nheads: 4\nctx: 8\nlayers: 3\n")
    assert main(["run", "--model", "m.yaml"]) == 1
    line = capsys.readouterr().err.strip()
    assert line in (REPO / "docs" / "models.md").read_text(), line


def test_rope_scaling_unknown_key_suggests_the_closest():
    from pimgpt.sw.models import ModelError, RopeScaling

    with pytest.raises(ModelError, match=r"rope_scaling: unknown keys \['factr'\] \(did you "
                                         r"mean 'factor'\?\); valid keys: factor, "):
        RopeScaling.from_dict({"factr": 8, "low_freq_factor": 1, "high_freq_factor": 4,
                               "original_max_position_embeddings": 64})


# ---------------------------------------------------------------------------------------------
# docs/sweep.md quotes the real message of a misspelt axis
# ---------------------------------------------------------------------------------------------
def test_sweep_doc_shows_the_real_misspelt_axis_message(tmp_path, monkeypatch, capsys):
    from pimgpt.cli import main

    monkeypatch.chdir(tmp_path)
    Path("spec.yaml").write_text("models: [gpt2-small]\naxes:\n  dram.chanels: [4, 8]\n")
    assert main(["sweep", "spec.yaml", "-o", "out"]) == 1
    line = capsys.readouterr().err.strip()
    assert line.startswith("pimgpt sweep: error: spec.yaml: axes.dram.chanels: ")
    assert line in (REPO / "docs" / "sweep.md").read_text(), line
    assert not Path("out").exists()


def test_mac_demo_module_has_help_and_refuses_a_bad_length_first(capsys, tmp_path):
    """``python -m pimgpt.apps.mac_demo --help`` is help, not an output folder named --help."""
    from pimgpt.apps import mac_demo
    from pimgpt.core.errors import PimgptError

    with pytest.raises(SystemExit) as exc:
        mac_demo.main(["--help"])
    assert exc.value.code == 0 and "RTL MAC unit" in capsys.readouterr().out
    with pytest.raises(PimgptError, match="positive multiple of 16, got 17"):
        mac_demo.main([str(tmp_path / "out"), "--length", "17"])
    assert not (tmp_path / "out").exists()

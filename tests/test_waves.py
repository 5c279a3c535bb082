"""``pimgpt run --backend rtl --waves``: FST refused before any build, the dump moved out of the
build cache, and removed there when the run fails or is interrupted.

Nothing here builds a simulator: the probe gets a fake compiler, the simulation a stand-in.
"""

import errno
import os
from pathlib import Path

import numpy as np
import pytest

from pimgpt.apps import run_cli
from pimgpt.apps.run_cli import BACKENDS, BackendEntry
from pimgpt.cli import main
from pimgpt.core.config import load_hw
from pimgpt.sim.backend import RunResult
from pimgpt.sim.cocotb_lib import runner, system_run
from pimgpt.sim.cocotb_lib.runner import _fst_probe, fst_support_missing, simulator_available
from pimgpt.sim.cocotb_lib.waves import WaveDump, move_file, remove_dumps

LZ4_MESSAGE = ("this Verilator cannot write FST (its FST writer needs the lz4 headers: "
               "apt-get install liblz4-dev); use --waves FILE.vcd")


def fake_compiler(tmp_path, output: str, rc: int) -> str:
    """An executable that prints ``output`` to stderr and exits with ``rc``, like ``c++``."""
    exe = tmp_path / "fake-c++"
    exe.write_text(f"#!/bin/sh\nprintf '%s\\n' '{output}' >&2\nexit {rc}\n")
    exe.chmod(0o755)
    return str(exe)


@pytest.fixture
def no_fst(monkeypatch):
    """This machine's Verilator cannot write FST (whatever the real answer is)."""
    fst_support_missing.cache_clear()
    monkeypatch.setattr(runner, "_fst_probe", lambda cxx: LZ4_MESSAGE)
    yield
    fst_support_missing.cache_clear()


def test_fst_probe_names_what_is_missing(tmp_path):
    lz4 = "probe.cpp:1:10: fatal error: lz4.h: No such file or directory"
    assert _fst_probe(fake_compiler(tmp_path, lz4, 1)) == LZ4_MESSAGE
    zlib = "/usr/bin/ld: cannot find -lz: No such file or directory"
    assert _fst_probe(fake_compiler(tmp_path, zlib, 1)) == (
        "this Verilator cannot write FST (its FST writer needs the zlib headers: "
        "apt-get install zlib1g-dev); use --waves FILE.vcd")
    link = "/usr/bin/ld: cannot find -llz4: No such file or directory"
    assert _fst_probe(fake_compiler(tmp_path, link, 1)) == LZ4_MESSAGE
    # An unknown failure names both needs rather than none.
    assert "lz4 headers and the zlib headers: apt-get install liblz4-dev zlib1g-dev" in \
        _fst_probe(fake_compiler(tmp_path, "internal compiler error", 1))
    assert _fst_probe(fake_compiler(tmp_path, "", 0)) == ""
    # No compiler at all: not an FST matter (the build says so itself).
    assert _fst_probe(str(tmp_path / "no-such-compiler")) == ""


def test_fst_probe_on_this_machine():
    headers = ("/usr/include", "/usr/local/include")
    if any(Path(d, "lz4.h").exists() for d in headers):
        pytest.skip("this machine has the lz4 headers; the refusal is tested with a fake compiler")
    fst_support_missing.cache_clear()
    assert fst_support_missing() == LZ4_MESSAGE


def test_fst_refused_before_any_build(tmp_path, monkeypatch, capsys, no_fst):
    ok, why = simulator_available("verilator")
    if not ok:
        pytest.skip(why)
    cache = tmp_path / "cache"
    out = tmp_path / "out"
    out.mkdir()
    monkeypatch.setenv("PIMGPT_CACHE_DIR", str(cache))
    assert main(["run", "--backend", "rtl", "--model", "tiny", "--prompt", "1",
                 "--new-tokens", "1", "--waves", str(out / "w.fst"),
                 "--stats", str(out / "s.json")]) == 1
    captured = capsys.readouterr()
    assert captured.err == f"pimgpt run: error: {LZ4_MESSAGE}\n"
    assert captured.out == ""
    assert not list(out.iterdir())
    assert not cache.exists()  # no build folder, not even an empty one
    # The backend refuses when made (before the golden run and the compile of the program).
    from pimgpt.sim.cocotb_lib.rtl_backend import RtlBackend, RtlRunError

    with pytest.raises(RtlRunError) as err:
        RtlBackend(waves="fst")
    assert str(err.value) == LZ4_MESSAGE
    assert RtlBackend(waves="vcd").waves == "vcd"  # VCD needs nothing more
    # run_system (the library entry) refuses as early, before making the traced build folder.
    hw = load_hw("tiny-rtl")
    d = hw.dram
    image = np.zeros((d.channels, d.banks, 1, d.row_elems), dtype=np.uint16)
    with pytest.raises(system_run.SystemRunError, match="use --waves FILE.vcd"):
        system_run.run_system(hw, [], image, build_dir=tmp_path / "b", waves="fst")
    assert not (tmp_path / "b-waves-fst").exists()


def test_move_file_renames_or_copies_across_filesystems(tmp_path, monkeypatch):
    src, dst = tmp_path / "dump.vcd", tmp_path / "w.vcd"
    src.write_bytes(b"$var wire 1 ! clk $end\n")
    move_file(src, dst)
    assert dst.read_bytes() == b"$var wire 1 ! clk $end\n" and not src.exists()

    def cross_device(a, b):
        raise OSError(errno.EXDEV, "Invalid cross-device link")

    src.write_bytes(b"#1\n")
    monkeypatch.setattr(os, "replace", cross_device)
    move_file(src, tmp_path / "w2.vcd")
    assert (tmp_path / "w2.vcd").read_bytes() == b"#1\n" and not src.exists()

    def denied(a, b):
        raise OSError(errno.EACCES, "Permission denied")

    src.write_bytes(b"#2\n")
    monkeypatch.setattr(os, "replace", denied)
    with pytest.raises(PermissionError):
        move_file(src, tmp_path / "w3.vcd")
    assert src.exists() and not (tmp_path / "w3.vcd").exists()


def test_wave_dump_moves_once_and_discards_what_was_left(tmp_path):
    src = tmp_path / "build" / "dump.vcd"
    src.parent.mkdir()
    src.write_bytes(b"x" * 100)
    dump = WaveDump(src)
    dump(tmp_path / "w.vcd")
    assert (tmp_path / "w.vcd").stat().st_size == 100 and not src.exists()
    dump.discard()  # already moved: nothing to do, the user's copy stays
    assert (tmp_path / "w.vcd").exists()
    src.write_bytes(b"y")
    WaveDump(src).discard()
    assert not src.exists()


def test_remove_dumps_removes_only_that_format(tmp_path):
    sim = tmp_path / "verilator"
    sim.mkdir()
    for name in ("dump.vcd", "build.log", "job.npz", "old.fst"):
        (sim / name).write_text(name)
    (tmp_path / "top.vcd").write_text("v")
    removed = remove_dumps(tmp_path, "vcd")
    assert sorted(p.name for p in removed) == ["dump.vcd", "top.vcd"]
    assert sorted(p.name for p in sim.iterdir()) == ["build.log", "job.npz", "old.fst"]
    assert remove_dumps(tmp_path / "missing", "vcd") == []


@pytest.mark.parametrize("error", [KeyboardInterrupt, system_run.SystemRunError])
def test_failed_or_interrupted_simulation_removes_its_dump(tmp_path, monkeypatch, error):
    def simulate(hw, build_dir, *args):
        (build_dir / "verilator").mkdir(parents=True, exist_ok=True)
        (build_dir / "verilator" / "dump.vcd").write_bytes(b"partial")
        (build_dir / "verilator" / "build.log").write_text("the build, kept")
        raise error("stopped")

    monkeypatch.setattr(system_run, "announce_build", lambda *a: False)
    monkeypatch.setattr(system_run, "system_verilog", lambda *a, **k: (tmp_path / "s.v", 0.0))
    monkeypatch.setattr(system_run, "_simulate", simulate)
    hw = load_hw("tiny-rtl")
    d = hw.dram
    image = np.zeros((d.channels, d.banks, 1, d.row_elems), dtype=np.uint16)
    with pytest.raises(error, match="stopped"):
        system_run.run_system(hw, [], image, build_dir=tmp_path / "b", waves="vcd")
    folder = tmp_path / "b-waves-vcd" / "verilator"
    assert sorted(p.name for p in folder.iterdir()) == ["build.log"]


class FakeRtl:
    """Stands in for the RTL backend: offers a waveform in a fake build cache."""

    name = "rtl"
    needs_weights = False

    def __init__(self, dump: Path):
        self.dump = dump

    def run(self, program, weights, hw):
        self.dump.write_bytes(b"w" * 5000)
        return RunResult([1], None, {"cycles": 1000}, files={"waves": WaveDump(self.dump)})


def fake_rtl(monkeypatch, tmp_path) -> Path:
    cache = tmp_path / "cache"
    cache.mkdir()
    dump = cache / "dump.vcd"
    monkeypatch.setitem(BACKENDS, "rtl", BackendEntry(
        lambda options: FakeRtl(dump), "fake", "tiny-rtl", BACKENDS["rtl"].options))
    return dump


def test_run_moves_the_waves_and_says_their_size(tmp_path, monkeypatch, capsys):
    dump = fake_rtl(monkeypatch, tmp_path)
    target = tmp_path / "w.vcd"
    assert main(["run", "--backend", "rtl", "--model", "tiny", "--prompt", "1",
                 "--new-tokens", "1", "--waves", str(target)]) == 0
    assert target.read_bytes() == b"w" * 5000
    assert not dump.exists()  # moved, not copied: nothing stays in the cache
    captured = capsys.readouterr()
    assert f"waves: {target}\n" in captured.out
    assert captured.err == (f"{target}: 5.0 kB of waveforms (1,000 simulated cycles, "
                            "5 bytes per cycle)\n")


def test_run_cuts_a_window_of_program_cycles(tmp_path, monkeypatch, capsys):
    from test_vcd_window import HEADER
    from test_vcd_window import dump as write_vcd

    cache = tmp_path / "cache"
    cache.mkdir()
    windows = []

    class FakeTracedRtl(FakeRtl):
        def run(self, program, weights, hw):
            write_vcd(cache, cycles=10)  # cache/whole.vcd: program cycles 0..9
            return RunResult([1], None, {"cycles": 10}, files={"waves": WaveDump(
                cache / "whole.vcd", window=windows[-1])})

    def factory(options):
        windows.append(options["waves_window"])
        backend = FakeTracedRtl(cache / "whole.vcd")
        backend.waves_window = options["waves_window"]  # as RtlBackend keeps it
        return backend

    monkeypatch.setitem(BACKENDS, "rtl", BackendEntry(factory, "fake", "tiny-rtl",
                                                      BACKENDS["rtl"].options))
    target = tmp_path / "w.vcd"
    assert main(["run", "--backend", "rtl", "--model", "tiny", "--prompt", "1",
                 "--new-tokens", "1", "--waves", str(target), "--waves-window", "5:7"]) == 0
    assert windows == [(5, 7)]
    text = target.read_text()
    assert text.startswith(HEADER) and "#9000\n$dumpvars" in text and "#12000" not in text
    assert not (cache / "whole.vcd").exists()  # the whole dump does not stay in the cache
    err = capsys.readouterr().err
    assert err.startswith(f"{target}: ") and "(3 simulated cycles, " in err
    # a window past the program's end: one line, nothing written, the dump removed all the same
    assert main(["run", "--backend", "rtl", "--model", "tiny", "--prompt", "1",
                 "--new-tokens", "1", "--waves", str(tmp_path / "x.vcd"),
                 "--waves-window", "50:60"]) == 1
    assert capsys.readouterr().err == ("pimgpt run: error: --waves-window 50:60: the program "
                                       "ran 10 cycles (0 to 9); choose a window inside them\n")
    assert not (tmp_path / "x.vcd").exists() and not (cache / "whole.vcd").exists()


@pytest.mark.parametrize("argv, words", [
    (["--backend", "rtl", "--waves-window", "1:2"], "--waves-window 1:2 cuts a VCD: give "
                                                    "--waves FILE.vcd too"),
    (["--backend", "rtl", "--waves", "w.fst", "--waves-window", "1:2"],
     "--waves-window 1:2 cuts a VCD: give --waves FILE.vcd too (not w.fst)"),
    (["--backend", "rtl", "--waves", "w.vcd", "--waves-window", "2-3"],
     "--waves-window '2-3': give FIRST:LAST program cycles"),
    (["--waves-window", "1:2"], "--waves-window is not used by the golden backend"),
])
def test_waves_window_refused_before_anything_runs(argv, words, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("PIMGPT_CACHE_DIR", str(tmp_path / "cache"))
    assert main(["run", "--model", "tiny", "--prompt", "1", *argv]) == 1
    captured = capsys.readouterr()
    assert captured.err.startswith("pimgpt run: error: " + words), captured.err
    assert captured.out == "" and list(tmp_path.iterdir()) == []


def test_run_interrupted_before_its_outputs_removes_the_dump(tmp_path, monkeypatch, capsys):
    dump = fake_rtl(monkeypatch, tmp_path)

    def interrupted(result, outs):
        assert dump.exists()  # the run made it; Ctrl-C comes before it is moved
        raise KeyboardInterrupt

    monkeypatch.setattr(run_cli, "_report", interrupted)
    assert main(["run", "--backend", "rtl", "--model", "tiny", "--prompt", "1",
                 "--new-tokens", "1", "--waves", str(tmp_path / "w.vcd")]) == 130
    assert not dump.exists() and not (tmp_path / "w.vcd").exists()
    assert capsys.readouterr().err == "pimgpt run: interrupted\n"


def test_rtl_backend_removes_the_dump_when_its_checks_fail(tmp_path, monkeypatch):
    from pimgpt.sim.cocotb_lib import rtl_backend

    build = tmp_path / "system-tiny-rtl-waves-vcd"
    (build / "verilator").mkdir(parents=True)
    dump = build / "verilator" / "dump.vcd"
    dump.write_bytes(b"complete")

    class Res:
        build_dir = build

    monkeypatch.setattr(rtl_backend, "simulator_available", lambda sim: (True, ""))
    monkeypatch.setattr(rtl_backend, "GoldenBackend", lambda: type(
        "G", (), {"run": lambda self, *a: None})())
    monkeypatch.setattr("pimgpt.sw.image.build_dram_image", lambda *a: None)
    monkeypatch.setattr(system_run, "run_system", lambda *a, **k: Res())

    def interrupted(*args):
        raise KeyboardInterrupt

    backend = rtl_backend.RtlBackend(waves="vcd")
    monkeypatch.setattr(backend, "_result", interrupted)
    program = type("P", (), {"memmap": None, "program": []})()
    with pytest.raises(KeyboardInterrupt):
        backend.run(program, None, load_hw("tiny-rtl"))
    assert not dump.exists() and (build / "verilator").exists()

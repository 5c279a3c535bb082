"""Every bad input of issue 14 is one line on stderr, exit status 1, nothing written, no hang.

Each case runs the real ``pimgpt`` entry point (:func:`pimgpt.cli.main`) in a forked child with
its own working directory, user cache, a time limit and a memory limit (tests/hostile_run.py), and
checks: exit status 1; exactly one stderr line, ``pimgpt <command>: error: ...``, naming the
problem; no file created, changed or removed anywhere under the case's folder; and the time.
"""

from __future__ import annotations

import copy
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
import yaml
from hostile_run import run_cli, snapshot

# Imported here, before the children fork, so that each case costs milliseconds.
import pimgpt.apps.run_cli  # noqa: F401
import pimgpt.sim.backend  # noqa: F401
import pimgpt.sim.cocotb_lib.rtl_backend  # noqa: F401
import pimgpt.sim.golden  # noqa: F401
import pimgpt.sim.perf.summary  # noqa: F401
from pimgpt.core.config import load_hw
from pimgpt.core.isa import I, Op, encode, f32_bits
from pimgpt.sw.checkpoint import random_weights, save_checkpoint
from pimgpt.sw.compiler import compile_generation
from pimgpt.sw.fingerprint import fingerprint
from pimgpt.sw.models import ModelConfig, get_model

#: Seconds a case may take (they take well under one on an idle machine; CI machines are shared).
TIME_LIMIT = 20.0
TINY = get_model("tiny")


# ---------------------------------------------------------------------------------------------
# Shared inputs (built once per session)
# ---------------------------------------------------------------------------------------------
@pytest.fixture(scope="session")
def inputs(tmp_path_factory):
    root = tmp_path_factory.mktemp("hostile-inputs")
    hw = load_hw("tiny-rtl")
    (root / "hw.yaml").write_text(yaml.safe_dump(hw.raw))
    for name, hw_name in (("prog", None), ("prog-rtl", "tiny-rtl")):
        compile_generation(TINY, load_hw(hw_name), [1, 2], 2).write(root / name)
    small = ModelConfig("small", n_layer=1, d_model=32, n_head=2, ctx=8, vocab=40)
    weights = random_weights(small, 0)
    save_checkpoint(small, weights, root / "ckpt")
    return root


def hw_yaml(root: Path, **changes) -> Path:
    """A copy of tiny-rtl.yaml with ``section.key`` (dotted) values changed or added."""
    raw = copy.deepcopy(load_hw("tiny-rtl").raw)
    for dotted, value in changes.items():
        *path, last = dotted.split("__")
        node = raw
        for p in path:
            node = node[p]
        node[last] = value
    path = root / "bad-hw.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


def program_dir(root: Path, program, cfg=TINY, hw_name=None) -> Path:
    """A hand-made program.bin with a memmap.yaml whose fingerprint matches it (a careful
    attacker), so the program reaches the executor's operand checks."""
    d = root / "handmade"
    d.mkdir()
    blob = encode(program)
    (d / "program.bin").write_bytes(blob)
    info = {"model": cfg.name, "hw": load_hw(hw_name).name, "context": cfg.ctx,
            "fingerprint": fingerprint(cfg, load_hw(hw_name), blob)}
    (d / "memmap.yaml").write_text(yaml.safe_dump(info))
    return d / "program.bin"


def bad_checkpoint(root: Path, inputs: Path, value: float) -> Path:
    from safetensors.numpy import load_file, save_file

    d = root / "ckpt"
    shutil.copytree(inputs / "ckpt", d)
    tensors = load_file(str(d / "model.safetensors"))
    w = tensors["transformer.h.0.mlp.c_fc.weight"]
    w[3, 5] = value
    save_file(tensors, str(d / "model.safetensors"), metadata={"format": "pt"})
    return d


# ---------------------------------------------------------------------------------------------
# The cases: name -> function(root, inputs) -> (argv, words the error line must contain)
# ---------------------------------------------------------------------------------------------
def _bytes_file(root, name, data: bytes) -> Path:
    p = root / name
    p.write_bytes(data)
    return p


CASES = {}


def case(group):
    def register(fn):
        CASES[f"{group}-{fn.__name__}"] = fn
        return fn
    return register


# Tracebacks (issue: 14)
@case("traceback")
def model_yaml_not_utf8(root, inputs):
    p = _bytes_file(root, "m.yaml", b"n_layer: 2\nd_model: 64\n# caf\xe9\n")
    return ["run", "--model", p], "m.yaml: the model file is not UTF-8 text"


@case("traceback")
def hw_yaml_not_utf8(root, inputs):
    p = _bytes_file(root, "h.yaml", b"name: x\n# \xff\xfe\n")
    return ["run", "--hw", p], "h.yaml: the hardware YAML is not UTF-8 text"


@case("traceback")
def hw_yaml_not_utf8_compile(root, inputs):
    p = _bytes_file(root, "h.yaml", b"\x80")
    return ["compile", "--hw", p, "-o", root / "out"], "not UTF-8 text (byte 0x80 at offset 0)"


@case("traceback")
def config_json_not_utf8(root, inputs):
    d = root / "ck"
    shutil.copytree(inputs / "ckpt", d)
    (d / "config.json").write_bytes(b'{"n_layer": 1, "x": "\xff"}')
    return ["run", "--model", d], "config.json: the JSON file is not UTF-8 text"


@case("traceback")
def memmap_yaml_not_utf8(root, inputs):
    shutil.copytree(inputs / "prog", root / "p")
    (root / "p" / "memmap.yaml").write_bytes(b"model: tiny\n\xc3\x28\n")
    return ["run", "--program", root / "p" / "program.bin"], \
        "memmap.yaml: the memory map is not UTF-8 text"


@case("traceback")
def prompt_text_not_utf8(root, inputs):
    return ["run", "--prompt-text", os.fsdecode(b"\xff\xfe")], "the text is not valid UTF-8"


@case("traceback")
def hw_path_not_utf8(root, inputs):
    return ["run", "--hw", os.fsdecode(b"\xff.yaml")], "\\udcff.yaml: no such file"


@case("traceback")
def stats_is_a_directory_golden(root, inputs):
    (root / "d").mkdir()
    return ["run", "--stats", root / "d"], "--stats: "


@case("traceback")
def logits_is_a_directory_golden(root, inputs):
    (root / "d").mkdir()
    return ["run", "--logits", root / "d"], "is a directory where a file must go"


@case("traceback")
def timeline_is_a_directory_perf(root, inputs):
    (root / "d").mkdir()
    return ["run", "--backend", "perf", "--timeline", root / "d"], "--timeline: "


@case("traceback")
def stats_is_a_directory_perf(root, inputs):
    (root / "d").mkdir()
    return ["run", "--backend", "perf", "--stats", root / "d"], "is a directory where a file"


@case("traceback")
def stats_is_a_directory_rtl(root, inputs):
    (root / "d").mkdir()
    return ["run", "--backend", "rtl", "--stats", root / "d"], "--stats: "


@case("traceback")
def logits_is_a_directory_rtl(root, inputs):
    (root / "d").mkdir()
    return ["run", "--backend", "rtl", "--logits", root / "d"], "--logits: "


@case("traceback")
def tck_ns_nan(root, inputs):
    return ["run", "--backend", "perf", "--hw", hw_yaml(root, dram__tck_ns=float("nan"))], \
        "'dram.tck_ns' must be a finite number"


@case("traceback")
def clock_ghz_nan(root, inputs):
    return ["run", "--backend", "perf", "--hw", hw_yaml(root, asic__clock_ghz=float("nan"))], \
        "'asic.clock_ghz' must be a finite number"


@case("traceback")
def seed_negative(root, inputs):
    return ["run", "--seed", "-1"], "seed -1 is out of range; give an integer in 0..4294967295"


@case("traceback")
def rtl_second_row_buffer(root, inputs):
    # a perf-model option the RTL has no hardware for: refused before any build is announced
    return ["verilog", "channel", "--hw", hw_yaml(root, dram__act_overlap=True), "-o",
            root / "v"], "the RTL has one row buffer per bank; set dram.act_overlap: false"


@case("traceback")
def rtl_scratchpad_read_of_one_cycle(root, inputs):
    # the perf model takes it; the RTL vector unit's synchronous read needs two
    return ["run", "--backend", "rtl", "--hw", hw_yaml(root, asic__sp_read_latency=1)], \
        "asic.sp_read_latency 1 must be at least 2 in the RTL"


@case("traceback")
def rtl_ideal_vector_unit(root, inputs):
    return ["run", "--backend", "rtl", "--hw", hw_yaml(root, asic__vector_unit_ideal=True)], \
        "asic.vector_unit_ideal is a what-if of the performance model"


# Hangs (issue: 3)
@case("hang")
def refresh_interval_zero(root, inputs):
    return ["run", "--backend", "perf", "--hw", hw_yaml(root, timing__nREFI=0)], \
        "'timing.nREFI' must be an integer in 1..1000000, got 0"


@case("hang")
def vreduce_n0_k_max(root, inputs):
    prog = program_dir(root, [I(Op.VREDUCE, dst=0, src=0, n=0, k=2**32 - 1), I(Op.EOC)])
    return ["run", "--program", prog], "instruction 0 (VREDUCE): n must be at least 1"


@case("hang")
def vreduce_k_max(root, inputs):
    prog = program_dir(root, [I(Op.VREDUCE, dst=0, src=0, n=1, k=2**32 - 1), I(Op.EOC)])
    return ["run", "--program", prog], "scratchpad words [0, 4294967295) exceed"


@case("hang")
def vfill_n_max(root, inputs):
    prog = program_dir(root, [I(Op.VFILL, dst=0, n=2**32 - 1, value_f32=f32_bits(1.0)),
                              I(Op.EOC)])
    return ["run", "--program", prog], "instruction 0 (VFILL): scratchpad words [0, 4294967295)"


# Silent wrong answers (issue: 7)
@case("wrong")
def nan_weight(root, inputs):
    return ["run", "--model", bad_checkpoint(root, inputs, np.nan)], \
        "tensor h.0.mlp.c_fc.weight has 1 value(s) that are NaN, infinite or beyond bf16's range"


@case("wrong")
def inf_weight(root, inputs):
    return ["run", "--model", bad_checkpoint(root, inputs, -np.inf), "--backend", "golden"], \
        "(first -inf at index [3, 5])"


@case("wrong")
def bf16_overflowing_weight(root, inputs):
    return ["run", "--model", bad_checkpoint(root, inputs, 3.4e38)], "beyond bf16's range"


@case("wrong")
def program_for_other_hardware(root, inputs):
    # Without --hw the program runs on its own hardware; a contradicting --hw is refused.
    return ["run", "--program", inputs / "prog-rtl" / "program.bin", "--hw", "pimgpt-gddr6-8ch"], \
        "the program was compiled for hardware 'tiny-rtl', not 'pimgpt-gddr6-8ch' as given " \
        "(" + str(inputs / "prog-rtl" / "memmap.yaml") + "); drop --hw"


@case("wrong")
def program_for_other_model_shape(root, inputs):
    m = root / "tiny.yaml"
    m.write_text("name: tiny\nn_layer: 1\nd_model: 64\nn_head: 4\nctx: 64\nvocab: 256\n")
    return ["run", "--model", m, "--program", inputs / "prog" / "program.bin"], \
        "compiled for model 'tiny', whose shape differs from 'tiny'"


# (A memmap.yaml beside another program of the same model and hardware is no longer refused: an
# edited program runs on its memory map; tests/test_run_cli_program.py.)


@case("wrong")
def tck_ns_inf(root, inputs):
    return ["run", "--backend", "perf", "--hw", hw_yaml(root, dram__tck_ns=float("inf"))], \
        "'dram.tck_ns' must be a finite number in 0.001..1000, got inf"


@case("wrong")
def energy_nan(root, inputs):
    return ["run", "--backend", "perf", "--hw", hw_yaml(root, energy__act_pj=float("nan"))], \
        "'energy.act_pj' must be a finite number"


@case("wrong")
def new_tokens_zero_perf(root, inputs):
    return ["run", "--backend", "perf", "--new-tokens", "0"], "--new-tokens must be at least 1"


# Silently accepted (issue: 7)
@case("accepted")
def unknown_dram_key(root, inputs):
    return ["run", "--hw", hw_yaml(root, dram__chanels=4)], \
        "unknown keys ['chanels'] in dram: (did you mean 'channels'?)"


@case("accepted")
def unknown_asic_key(root, inputs):
    return ["run", "--hw", hw_yaml(root, asic__clock=1.0)], "unknown keys ['clock'] in asic:"


@case("accepted")
def unknown_top_level_key(root, inputs):
    return ["run", "--hw", hw_yaml(root, enrgy={})], "unknown keys ['enrgy'] in the top level"


@case("accepted")
def context_beyond_model_with_prompt_perf(root, inputs):
    return ["run", "--backend", "perf", "--prompt", "1,2", "--context", "4000"], \
        "--context 4000 is out of range for tiny; use 1..64"


@case("accepted")
def context_on_golden(root, inputs):
    return ["run", "--context", "8"], "--context is not used by the golden backend"


@case("accepted")
def logits_on_perf(root, inputs):
    return ["run", "--backend", "perf", "--logits", root / "l.npy"], \
        "--logits is not used by the perf backend"


@case("accepted")
def stats_empty_path(root, inputs):
    return ["run", "--stats", ""], "--stats is an empty path; give a file name"


@case("accepted")
def compile_output_empty_path(root, inputs):
    return ["compile", "-o", ""], "-o is an empty path; give a folder"


@case("accepted")
def hw_empty_string(root, inputs):
    return ["run", "--hw", ""], "--hw is an empty string"


@case("accepted")
def model_empty_string(root, inputs):
    return ["compile", "--model", "", "-o", root / "o"], "the model is an empty string"


@case("accepted")
def verilog_output_empty_path(root, inputs):
    return ["verilog", "mac", "-o", ""], "-o is an empty path; give a folder"


@case("accepted")
def verilog_hw_empty_string(root, inputs):
    return ["verilog", "mac", "--hw", "", "-o", root / "v"], "--hw is an empty string"


@case("accepted")
def paper_output_empty_path(root, inputs):
    return ["paper", "-o", ""], "-o is an empty path; give a folder"


@case("accepted")
def accuracy_output_is_a_file(root, inputs):
    (root / "f").write_text("x")
    return ["accuracy", "--quick", "-o", root / "f"], "exists and is not a folder"


@case("accepted")
def program_without_memmap(root, inputs):
    (root / "p").mkdir()
    shutil.copy(inputs / "prog" / "program.bin", root / "p")
    return ["run", "--program", root / "p" / "program.bin"], \
        "memmap.yaml: no such file; a compiled program needs the memmap.yaml"


# A --program run fixes its prompt, token count and KV-cache capacity: options that would
# change them were ignored.
_PROGRAM_FIX = "(the program was compiled with its own prompt and number of tokens); drop it " \
    "or recompile with `pimgpt compile ... --prompt IDS --new-tokens N`"


@case("accepted")
def program_with_prompt_and_new_tokens(root, inputs):
    return ["run", "--program", inputs / "prog" / "program.bin", "--prompt", "1,2",
            "--new-tokens", "5"], "--prompt is not used with --program " + _PROGRAM_FIX


@case("accepted")
def program_with_new_tokens(root, inputs):
    return ["run", "--program", inputs / "prog" / "program.bin", "--new-tokens", "5"], \
        "--new-tokens is not used with --program " + _PROGRAM_FIX


@case("accepted")
def program_with_prompt_text(root, inputs):
    return ["run", "--program", inputs / "prog" / "program.bin", "--prompt-text", "ab"], \
        "--prompt-text is not used with --program " + _PROGRAM_FIX


@case("accepted")
def program_with_context(root, inputs):
    return ["run", "--program", inputs / "prog" / "program.bin", "--context", "8"], \
        "--context is not used with --program (the program was compiled with its own KV-cache " \
        "capacity); drop it or recompile with `pimgpt compile ... --context N`"


# Partial outputs (issue: 6)
def _blocked(root):
    (root / "file").write_text("a file, not a folder")
    return root / "file" / "stats.json"


@case("partial")
def golden_logits_then_bad_stats(root, inputs):
    return ["run", "--logits", root / "l.npy", "--stats", _blocked(root)], \
        "--stats: "


@case("partial")
def golden_same_file_twice(root, inputs):
    return ["run", "--logits", root / "x", "--stats", root / "x"], "--stats and --logits both name"


@case("partial")
def perf_stats_then_bad_timeline(root, inputs):
    return ["run", "--backend", "perf", "--stats", root / "s.json", "--timeline",
            _blocked(root)], "--timeline: "


@case("partial")
def rtl_logits_then_bad_stats(root, inputs):
    return ["run", "--backend", "rtl", "--logits", root / "l.npy", "--stats", _blocked(root)], \
        "--stats: "


@case("partial")
def compile_into_folder_with_a_directory(root, inputs):
    shutil.copytree(inputs / "prog", root / "out")
    (root / "out" / "program.asm").unlink()
    (root / "out" / "program.asm").mkdir()
    return ["compile", "-o", root / "out"], "program.asm is a directory where a file must go"


@case("partial")
def compile_output_is_a_file(root, inputs):
    (root / "out").write_text("x")
    return ["compile", "-o", root / "out"], "exists and is not a folder"


@pytest.mark.parametrize("name", sorted(CASES))
def test_bad_input_is_one_clean_line(name, inputs, tmp_path):
    root = tmp_path / "case"
    root.mkdir()
    argv, words = CASES[name](root, inputs)
    before = snapshot(root)
    res = run_cli(argv, root, timeout=3 * TIME_LIMIT)
    assert res.rc == 1, (res.rc, res.err[-3000:])
    command = argv[0]
    assert len(res.err_lines) == 1, res.err
    line = res.err_lines[0]
    assert line.startswith(f"pimgpt {command}: error: "), line
    assert words in line, line
    after = snapshot(root)
    after.pop(".cache", None)  # an empty user cache folder may be created, nothing in it
    assert after == before
    assert res.seconds < TIME_LIMIT


# ---------------------------------------------------------------------------------------------
# Noise: no progress-bar lines before an error (issue: 13)
# ---------------------------------------------------------------------------------------------
def _fail_mid_run():
    from pimgpt.sim.golden import GoldenError, GoldenMachine

    def boom(self, a, flags):
        raise GoldenError("simulated failure in the middle of the run")

    GoldenMachine._out = boom


@pytest.mark.parametrize("progress", [None, "1"])
def test_error_after_progress_started_is_alone_on_stderr(progress, tmp_path):
    env = {"PIMGPT_PROGRESS": progress} if progress else {}
    res = run_cli(["run", "--new-tokens", "3"], tmp_path / "c", env=env, setup=_fail_mid_run,
                  timeout=3 * TIME_LIMIT)
    assert res.rc == 1, res.err
    message = "pimgpt run: error: simulated failure in the middle of the run\n"
    if progress is None:  # not a terminal: no bar at all
        assert res.err == message
    else:  # forced bar: its line is cleared (carriage return) before the message
        assert res.err.count("\n") == 1 and res.err.endswith("\r" + message), repr(res.err)
        assert "golden tiny" in res.err


def test_good_run_commits_all_outputs(tmp_path):
    root = tmp_path / "c"
    res = run_cli(["run", "--logits", root / "o" / "l.npy", "--stats", root / "o" / "s.json",
                   "--new-tokens", "2"], root, timeout=3 * TIME_LIMIT)
    assert res.rc == 0 and res.err == "", res.err
    assert sorted(p.name for p in (root / "o").iterdir()) == ["l.npy", "s.json"]
    assert np.load(root / "o" / "l.npy").shape == (2, TINY.vocab)


def test_console_script_in_a_subprocess(tmp_path):
    """The installed ``pimgpt`` script itself (not only ``main``): one line, exit 1."""
    import subprocess
    import sys

    bad = tmp_path / "h.yaml"
    bad.write_bytes(b"\xff")
    proc = subprocess.run([sys.executable, "-m", "pimgpt.cli", "run", "--hw", str(bad)],
                          capture_output=True, text=True, timeout=60, cwd=tmp_path)
    assert proc.returncode == 1
    assert proc.stderr.count("\n") == 1 and "not UTF-8 text" in proc.stderr


def test_closed_stdout_is_not_a_traceback(tmp_path):
    """``pimgpt models | head -1``: the reader goes away; no traceback, no error line."""
    import subprocess
    import sys

    proc = subprocess.Popen([sys.executable, "-m", "pimgpt.cli", "models"], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, cwd=tmp_path)
    proc.stdout.close()  # before the child writes: its first write fails with EPIPE
    err = proc.stderr.read().decode()
    assert proc.wait(timeout=60) == 1 and err == "", err

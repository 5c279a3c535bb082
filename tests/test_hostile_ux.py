"""Bad inputs found by a new user's review: one line naming the problem and the fix, exit 1.

The cases run like those of tests/test_hostile_cli.py (the real entry point in a forked child,
its own folder and user cache; hostile_run.py) and check: exit status 1; one stderr line,
``pimgpt <command>: error: ...``, holding the expected words and none of the misleading ones;
nothing created, changed or removed under the case's folder; and, where a run used to do its
work before failing, nothing on stdout (the failure came first).
"""

from __future__ import annotations

import pytest
from hostile_run import run_cli, snapshot

# Imported before the children fork, so that each case costs milliseconds.
import pimgpt.apps.compile_cli  # noqa: F401
import pimgpt.apps.paper  # noqa: F401
import pimgpt.apps.run_cli  # noqa: F401
import pimgpt.apps.sweep_run  # noqa: F401
import pimgpt.sim.perf.summary  # noqa: F401

TIME_LIMIT = 20.0
CASES = {}


def case(fn):
    CASES[fn.__name__] = fn
    return fn


# Each case: function(root) -> (argv, words the line must hold, words it must not hold,
# whether stdout must stay empty).
@case
def model_yaml_that_does_not_exist(root):
    return ["run", "--model", "./nonexist.yaml"], \
        "./nonexist.yaml: no such file; check the path", ("unknown model",), True


@case
def model_folder_that_does_not_exist(root):
    return ["run", "--model", "sub/ckpt"], "sub/ckpt: no such file or folder", \
        ("unknown model",), True


@case
def model_yaml_unknown_keys(root):
    m = root / "m.yaml"
    m.write_text("n_layer: 2\nd_model: 64\nheads: 4\nctx: 8\nlayers: 3\nfoo: 1\n")
    return ["run", "--model", m], \
        "unknown keys ['foo', 'heads', 'layers'] in the top level (did you mean 'n_head' for " \
        "'heads', 'n_layer' for 'layers'?); valid keys: name, n_layer", (), True


@case
def sweep_spec_that_does_not_exist(root):
    return ["sweep", "nonexist.yaml", "-o", root / "x"], \
        "nonexist.yaml: no such file; give the path of a sweep spec YAML file", \
        ("preset",), True


@case
def compile_new_tokens_without_prompt(root):
    return ["compile", "--new-tokens", "3", "-o", root / "cc"], \
        "--new-tokens is not used without --prompt", (), True


@case
def compile_new_tokens_zero(root):
    return ["compile", "--prompt", "1,2", "--new-tokens", "0", "-o", root / "cc"], \
        "--new-tokens must be at least 1, got 0", ("new_tokens",), True


@case
def run_more_tokens_than_the_cache_holds(root):
    return ["run", "--model", "tiny", "--new-tokens", "1000"], \
        "1 prompt token + 1000 new tokens need 1000 KV-cache positions (every token but the " \
        "last new one is cached), but the KV cache of model tiny holds 64; generate at most 64 " \
        "new tokens", ("1 prompt tokens",), False


@case
def run_prompt_longer_than_the_cache(root):
    return ["run", "--model", "tiny", "--prompt", ",".join(["1"] * 70)], \
        "70 prompt tokens + 4 new tokens need 73 KV-cache positions", \
        ("generate at most",), True


@case
def paper_negative_context(root):
    return ["paper", "--contexts", "-1", "-o", root / "p"], \
        "context -1 is not a positive number of tokens; give lengths of at least 1, e.g. " \
        "--contexts 128,1024", (), True


@case
def paper_negative_context_llama_only(root):
    return ["paper", "--models", "llama-2-7b", "--contexts", "-1", "-o", root / "p"], \
        "context -1 is not a positive number of tokens", ("shorter",), True


@case
def paper_default_contexts_beyond_the_model(root):
    # said "holds contexts None; use shorter ones"
    return ["paper", "--models", "tiny", "-o", root / "p"], \
        "no model among tiny holds any of the contexts 128, 256, 512, 1024, 2048 (the " \
        "longest each holds: tiny 64); give --contexts up to those", ("None",), True


@case
def paper_empty_models(root):
    # ran every default model
    return ["paper", "--models", "", "-o", root / "p"], \
        "--models is empty; give e.g. --models gpt2-small,gpt2-xl", (), True


@case
def paper_llama_beyond_the_hw(root):
    # --hw was not used for the Llama models (they ran on the 16- and 32-channel presets)
    return ["paper", "--models", "llama-3.2-1b", "--contexts", "128", "--hw", "tiny-rtl",
            "-o", root / "p"], \
        "llama-3.2-1b does not fit tiny-rtl at context 128 (model llama-3.2-1b with a " \
        "128-token KV cache needs", ("16ch", "--contexts"), True


@case
def paper_a_million_workers(root):
    # hung starting a local cluster of a million processes
    return ["paper", "--models", "tiny", "--contexts", "16,32", "--workers", "1000000",
            "-o", root / "p"], \
        "--workers 1000000: an embedded cluster runs at most", (), True


@case
def paper_zero_workers(root):
    return ["paper", "--models", "tiny", "--contexts", "16", "--workers", "0", "-o", root / "p"], \
        "--workers 0 must be at least 1", (), True


@case
def stats_in_proc(root):
    # os.access says yes to root for /proc: the whole simulation ran, then the write failed.
    return ["run", "--backend", "perf", "--model", "gpt2-small", "--stats", "/proc/s.json"], \
        "--stats: folder /proc is not writable", \
        ("No such file",), True


# Options a run would ignore (docs/reliability.md: refused, not silently dropped).
@case
def run_perf_new_tokens_without_prompt(root):
    # perf without a prompt simulates one decode step: it reported "decode: 1 token(s)".
    return ["run", "--backend", "perf", "-m", "tiny", "--new-tokens", "2"], \
        "--new-tokens is not used by the perf backend without --prompt (one decode step is " \
        "simulated); drop it or give --prompt ids to simulate a generation", ("token(s)",), True


@case
def run_simulator_on_golden(root):
    return ["run", "--simulator", "icarus"], \
        "--simulator is not used by the golden backend; drop it or use --backend rtl", (), True


@case
def run_simulator_on_perf(root):
    return ["run", "--backend", "perf", "--simulator", "verilator"], \
        "--simulator is not used by the perf backend; drop it or use --backend rtl", (), True


@case
def run_seed_with_trained_model(root):
    return ["run", "-m", "tiny-py", "--seed", "3"], \
        "--seed is not used by model tiny-py: its weights come from its checkpoint, and the " \
        "seed only draws random weights for untrained presets and model YAML files; drop " \
        "--seed", (), True


@case
def run_seed_on_perf(root):
    return ["run", "--backend", "perf", "--seed", "3"], \
        "--seed is not used by the perf backend; drop it or use --backend golden or rtl", (), True


@case
def run_unknown_hardware(root):
    # was named only after "no --prompt given, using [0]" on stdout
    return ["run", "--hw", "nope"], "unknown hardware preset 'nope'; choose one of", (), True


@pytest.mark.parametrize("name", sorted(CASES))
def test_bad_input_is_one_clean_line(name, tmp_path):
    root = tmp_path / "case"
    root.mkdir()
    argv, words, absent, quiet = CASES[name](root)
    before = snapshot(root)
    res = run_cli(argv, root, timeout=3 * TIME_LIMIT)
    assert res.rc == 1, (res.rc, res.err[-3000:])
    assert len(res.err_lines) == 1, res.err
    line = res.err_lines[0]
    assert line.startswith(f"pimgpt {argv[0]}: error: "), line
    assert words in line, line
    for word in absent:
        assert word not in line, line
    if quiet:
        assert res.out == "", res.out
    after = snapshot(root)
    after.pop(".cache", None)
    assert after == before
    assert res.seconds < TIME_LIMIT


def test_version(capsys):
    from pimgpt import __version__
    from pimgpt.cli import main

    with pytest.raises(SystemExit) as exc:
        main(["--version"])
    assert exc.value.code == 0
    assert capsys.readouterr().out == f"pimgpt {__version__}\n"


def test_options_given_where_they_are_used_still_run(capsys):
    """The refusals above are of options given where they are ignored: the same options where
    they are used, and the defaults, still run."""
    from pimgpt.cli import main

    assert main(["run", "-m", "tiny", "--seed", "3", "--new-tokens", "1"]) == 0
    assert main(["run", "--backend", "perf", "-m", "tiny", "--prompt", "1,2",
                 "--new-tokens", "2"]) == 0
    assert main(["run", "--backend", "perf", "-m", "tiny"]) == 0
    out = capsys.readouterr().out
    assert "decode: 1 token(s)" in out and "decode: 2 token(s)" not in out


def test_run_help_shows_the_defaults(capsys):
    from pimgpt.cli import main

    with pytest.raises(SystemExit):
        main(["run", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    for words in ("tokens to generate (default: 4)", "(default: golden)",
                  "(default: 0)", "(default: the model's maximum context",
                  "HDL simulator (default: verilator)"):
        assert words in text, words


def test_program_runs_on_its_compiled_model(tmp_path, capsys):
    """Without -m, a --program run takes the model named in its memmap.yaml: a tiny-py program
    ran on tiny's random weights (the same shape passes the fingerprint check)."""
    import json

    from pimgpt.cli import main

    out = tmp_path / "p"
    assert main(["compile", "-m", "tiny-py", "--prompt", "100,101", "--new-tokens", "2",
                 "-o", str(out)]) == 0
    stats = tmp_path / "s.json"
    assert main(["run", "--program", str(out / "program.bin"), "--stats", str(stats)]) == 0
    st = json.loads(stats.read_text())
    assert st["model"] == "tiny-py" and st["prompt"] == [100, 101] and len(st["tokens"]) == 2


@pytest.mark.parametrize("argv", [
    ["bench_dram", "--hw", "nope"],
    ["bench_compiler", "--hw", "nope"],
    ["bench_numerics", "--reference", "nope"],
    ["bench_llama_numerics", "--model", "nope"],
])
def test_bench_module_bad_input_is_one_clean_line(argv, tmp_path):
    """``python -m pimgpt.apps.<bench>`` ends as ``pimgpt`` does (pimgpt/apps/entry.py): one line
    naming the module, exit 1, before the report's work (each printed a traceback, and the
    numerics benches only after minutes)."""
    import os
    import subprocess
    import sys
    import time

    env = {**os.environ, "PIMGPT_CACHE_DIR": str(tmp_path / "cache")}
    t0 = time.perf_counter()
    res = subprocess.run([sys.executable, "-m", f"pimgpt.apps.{argv[0]}", *argv[1:]],
                         capture_output=True, text=True, cwd=tmp_path, env=env, timeout=120)
    assert res.returncode == 1, res.stderr[-2000:]
    lines = res.stderr.splitlines()
    assert len(lines) == 1, res.stderr
    assert lines[0].startswith(f"python -m pimgpt.apps.{argv[0]}: error: unknown "), lines[0]
    assert res.stdout == "" and time.perf_counter() - t0 < 60


def test_module_main_ends_on_sigterm_like_pimgpt(tmp_path):
    """``module_main`` (every ``python -m pimgpt.apps.<bench>``): SIGTERM runs the cleanup an
    interrupt runs and ends with one line and status 143, as ``pimgpt`` does."""
    import os
    import signal
    import subprocess
    import sys

    (tmp_path / "slowmod.py").write_text(
        "import sys, time\n"
        "from pimgpt.apps.entry import module_main\n\n\n"
        "def main(argv=None):\n"
        "    try:\n"
        "        print('ready', flush=True)\n"
        "        time.sleep(60)\n"
        "    finally:\n"
        "        print('cleaned up', flush=True)\n\n\n"
        "if __name__ == '__main__':\n"
        "    module_main(main)\n")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(tmp_path), *sys.path])}
    proc = subprocess.Popen([sys.executable, "-m", "slowmod"], cwd=tmp_path, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline() == "ready\n"
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=30)
    finally:
        proc.kill()
    assert proc.returncode == 143
    assert out == "cleaned up\n" and err == "python -m slowmod: terminated\n"

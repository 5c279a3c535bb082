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
def paper_zero_workers(root):
    return ["paper", "--models", "tiny", "--contexts", "16", "--workers", "0", "-o", root / "p"], \
        "--workers 0 must be at least 1", (), True


@case
def stats_in_proc(root):
    # os.access says yes to root for /proc: the whole simulation ran, then the write failed.
    return ["run", "--backend", "perf", "--model", "gpt2-small", "--stats", "/proc/s.json"], \
        "--stats: folder /proc is not writable", \
        ("No such file",), True


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

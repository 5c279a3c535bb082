"""The backend interface: ``run(program, weights, hw) -> RunResult`` behind one ``pimgpt run``.

Golden and perf run here; the RTL backend's run is in ``tests/test_hdl_system.py`` (Verilator).
"""

import json

import numpy as np
import pytest

from pimgpt.apps import run_cli
from pimgpt.apps.run_cli import BACKENDS, BackendEntry, make_backend, register_backend, run_model
from pimgpt.cli import main
from pimgpt.core.config import load_hw
from pimgpt.core.errors import PimgptError
from pimgpt.sim.backend import Backend, PerfBackend, RunResult
from pimgpt.sim.golden import run_golden
from pimgpt.sw.checkpoint import random_weights
from pimgpt.sw.models import get_model


def test_registry_and_protocol():
    assert list(BACKENDS) == ["golden", "perf", "rtl"]
    for name in ("golden", "perf"):
        backend = make_backend(name)
        assert isinstance(backend, Backend) and backend.name == name
    assert BACKENDS["rtl"].default_hw == "tiny-rtl"
    with pytest.raises(PimgptError, match="unknown backend 'nope'; use one of golden, perf, rtl"):
        make_backend("nope")
    with pytest.raises(ValueError, match="already registered"):
        register_backend("golden", BACKENDS["golden"])


def test_golden_backend_equals_run_golden():
    cfg, hw = get_model("tiny"), load_hw(None)
    result = run_model("golden", "tiny", prompt=[5, 6], new_tokens=3, seed=4)
    tokens, logits, _ = run_golden(cfg, hw, random_weights(cfg, 4), [5, 6], 3)
    assert isinstance(result, RunResult)
    assert result.tokens == tokens and result.error is None
    assert result.logits.dtype == np.float32 and result.logits.shape == (3, cfg.vocab)
    assert np.array_equal(result.logits.view(np.uint32), np.stack(logits).view(np.uint32))
    st = result.stats
    assert (st["backend"], st["model"], st["hw"], st["prompt"], st["seed"]) == \
        ("golden", "tiny", hw.name, [5, 6], 4)
    assert st["tokens"] == tokens and st["steps"] == 2 + 3 - 1 and st["instructions"] > 100


def test_perf_backend_decode_step_and_generation():
    step = run_model(PerfBackend(generation=False), "tiny", context=16)
    assert step.tokens is None and step.logits is None
    assert step.stats["tokens"] == 1 and step.stats["context"] == 16
    # one decode step after the preamble that loads the resident parameters
    assert "prefill" not in step.stats and step.stats["decode"]["tokens"] == 1
    assert step.stats["decode"]["latency_ns"] + step.stats["preamble"]["latency_ns"] == \
        pytest.approx(step.stats["whole"]["latency_ns"])
    assert step.lines[0].startswith("model tiny on ") and "decode: 1 token(s)" in step.lines[1]
    gen = run_model("perf", "tiny", prompt=[1, 2, 3], new_tokens=3)
    assert gen.stats["prefill"]["tokens"] == 3 and gen.stats["decode"]["tokens"] == 2
    assert gen.stats["cycles"] > step.stats["cycles"]
    assert gen.files == {} and "timeline" in PerfBackend(timeline=True).run(
        run_cli.make_program(get_model("tiny"), load_hw(None), None, 1, 8), None,
        load_hw(None)).files


def test_a_registered_backend_runs_behind_pimgpt_run(tmp_path, capsys, monkeypatch):
    """A new backend plugs in with register_backend: the handler prints its tokens and lines,
    writes its stats and offered files, and reports its error after writing the evidence."""

    class Echo:
        name = "echo"
        needs_weights = False

        def run(self, program, weights, hw):
            return RunResult([7, 8], None, {"instructions": len(program.program)},
                             lines=["echo ran"],
                             files={"timeline": lambda p: p.write_text("{}")},
                             error="echo says no")

    monkeypatch.setitem(BACKENDS, "echo", BackendEntry(lambda o: Echo(), "test", None,
                                                       ("timeline",)))
    from pimgpt.cli import build_parser

    stats = tmp_path / "s.json"
    args = build_parser().parse_args(["run", "-m", "tiny", "--prompt", "1", "--new-tokens", "1",
                                      "--stats", str(stats), "--timeline", str(tmp_path / "t")])
    args.backend = "echo"
    with pytest.raises(PimgptError, match="echo says no"):
        run_cli.cli_run(args)
    out = capsys.readouterr().out
    assert "tokens: 7,8" in out and "echo ran" in out
    st = json.loads(stats.read_text())
    assert st["backend"] == "echo" and st["prompt"] == [1] and st["instructions"] > 10
    assert (tmp_path / "t").read_text() == "{}"


def test_options_of_other_backends_are_refused(tmp_path, capsys):
    assert main(["run", "--backend", "perf", "--logits", str(tmp_path / "l.npy")]) == 1
    err = capsys.readouterr().err
    assert "--logits is not used by the perf backend" in err and "golden or rtl" in err
    assert main(["run", "--backend", "golden", "--timeline", str(tmp_path / "t.json")]) == 1
    assert "--timeline is not used by the golden backend; drop it or use --backend perf or " \
        "rtl" in capsys.readouterr().err
    assert not list(tmp_path.iterdir())


def test_rtl_backend_checks_its_options(tmp_path, capsys):
    from pimgpt.sim.cocotb_lib.rtl_backend import RtlBackend, RtlRunError

    with pytest.raises(RtlRunError, match="unknown simulator 'vcs'; use verilator or icarus"):
        RtlBackend(simulator="vcs")
    with pytest.raises(RtlRunError, match="waveform format 'png': use vcd or fst"):
        RtlBackend(waves="png")
    assert main(["run", "--backend", "rtl", "--waves", str(tmp_path / "w.png")]) == 1
    assert "w.png: give a .fst or .vcd file name" in capsys.readouterr().err
    assert not list(tmp_path.iterdir())

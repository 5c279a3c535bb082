"""``pimgpt run --backend rtl``: a generation on the system RTL, checked against the golden model.

The model is compiled for the hardware (``--hw``, default ``tiny-rtl``: the RTL simulates every
bank, so the default 8-channel preset would be far too slow), its weights are stored in a DRAM
image, and the same program runs three times: on the golden simulator (tokens and the logits of
every generated token), on the performance simulator (cycles), and on the Verilog system under
Verilator (or Icarus) through the host interface, with a DRAM-protocol monitor on every channel.
The RTL's tokens and the logits it scanned (every word its ``ARGMAX`` read) are compared bit for
bit with the golden run.

Printed: the tokens (and the text for byte-level models), cycles, golden match. ``--stats F``
writes JSON with ``tokens``, ``cycles``, ``golden_match`` (true only when every token and every
logit matched bit for bit), ``perf_cycles``, ``cycle_difference`` (relative),
``perf_cycles_rtl_vector_unit`` / ``cycle_difference_rtl_vector_unit`` (the perf engine with each
vector instruction costing what the RTL's one-lane unit takes: the fidelity of everything but the
vector unit's speed), the DRAM command counts, protocol violations (always empty in a passing run)
and timings. ``--logits F.npy`` writes
the RTL's logits (float32 ``[new_tokens, vocab]``), ``--waves F.fst|F.vcd`` the waveforms.
"""

from __future__ import annotations

import shutil
import time
from pathlib import Path

import numpy as np

from pimgpt.core.errors import PimgptError
from pimgpt.core.fileio import Outputs, atomic_write

__all__ = ["run_rtl_generation", "cli_run", "DEFAULT_RTL_HW"]

#: Hardware used by the RTL backend when ``--hw`` is not given.
DEFAULT_RTL_HW = "tiny-rtl"


class RtlRunError(PimgptError):
    """The RTL run could not be done or did not match the golden model."""


def run_rtl_generation(model: str, *, hw: str | None = None, prompt=None,
                       prompt_text: str | None = None, new_tokens: int = 4, seed: int = 0,
                       outdir=None, simulator: str = "verilator", waves: str | None = None,
                       p_idle: float = 0.0, outputs: Outputs | None = None) -> dict:
    """Compile, run on golden, perf and RTL, compare; returns the statistics dict.

    Parameters
    ----------
    model : str
        Model preset, shipped model or checkpoint (as ``--model``).
    hw : str, optional
        Hardware preset or YAML path (default ``tiny-rtl``).
    prompt : list of int, optional
        Prompt token ids; or ``prompt_text`` for byte-level models.
    new_tokens : int
        Tokens to generate.
    seed : int
        Seed of random weights (presets).
    outdir : path, optional
        Build directory of the simulation (default: ``system-<hw>`` in the user cache folder,
        see :func:`pimgpt.sim.cocotb_lib.runner.default_build_root`).
    simulator : {"verilator", "icarus"}
    waves : str, optional
        Write waveforms to this path (``.fst`` or ``.vcd``).
    p_idle : float
        Probability of an idle cycle before each host command while loading.
    outputs : Outputs, optional
        The command's outputs: with a ``--waves`` entry, the waveform is staged there (committed
        with the other outputs by the caller) instead of written at once.
    """
    from pimgpt.core.config import load_hw
    from pimgpt.sim.cocotb_lib.runner import simulator_available
    from pimgpt.sim.cocotb_lib.system_run import (
        compare_with_perf,
        perf_with_rtl_vector_unit,
        run_system,
    )
    from pimgpt.sim.golden import GoldenMachine
    from pimgpt.sw import checkpoint, tokenizer
    from pimgpt.sw.compiler import compile_generation
    from pimgpt.sw.mapper import build_dram_image
    from pimgpt.sw.models import get_model

    if simulator not in ("verilator", "icarus"):
        raise RtlRunError(f"unknown simulator {simulator!r}; use verilator or icarus")
    ok, why = simulator_available(simulator)
    if not ok:
        raise RtlRunError(f"{simulator} is not available: {why}")
    if waves is not None and Path(waves).suffix not in (".fst", ".vcd"):
        raise RtlRunError(f"--waves {waves}: give a .fst or .vcd file name")
    if isinstance(new_tokens, bool) or not isinstance(new_tokens, int) or new_tokens < 1:
        raise RtlRunError(f"--new-tokens must be a positive integer, got {new_tokens!r}")
    checkpoint.check_seed(seed)
    hw_spec = hw or DEFAULT_RTL_HW
    hwc = load_hw(hw_spec)
    cfg = get_model(model)
    if prompt_text is not None:
        if not tokenizer.is_byte_level(cfg):
            raise RtlRunError(f"--prompt-text needs a byte-level model; {cfg.name} has "
                              f"{cfg.vocab} tokens, give --prompt ids")
        prompt = tokenizer.encode(prompt_text)
    prompt = list(prompt if prompt is not None else [0])
    t0 = time.perf_counter()
    compiled = compile_generation(cfg, hwc, prompt, new_tokens)
    weights = checkpoint.weights_for(cfg, seed)
    image = build_dram_image(compiled.memmap, weights)
    prep_s = time.perf_counter() - t0

    t0 = time.perf_counter()
    golden = GoldenMachine(hwc, image.copy())
    golden.run(compiled.program)
    golden_s = time.perf_counter() - t0

    res = run_system(hwc, hw_spec, compiled.program, image, build_dir=outdir,
                     simulator=simulator, waves=Path(waves).suffix[1:] if waves else None,
                     p_idle=p_idle)
    cmp = compare_with_perf(hwc, compiled.program, res.traces, tokens=res.tokens)
    same_vu = perf_with_rtl_vector_unit(hwc, compiled.program, image, tokens=res.tokens)
    want_logits = [np.asarray(x, dtype=np.float32).view(np.uint32) for x in golden.logits]
    want = np.concatenate(want_logits) if want_logits else np.zeros(0, dtype=np.uint32)
    got = res.capture
    n_match = int(np.sum(got[:len(want)] == want[:len(got)])) if len(got) else 0
    logits_match = len(got) == len(want) and n_match == len(want)
    tokens_match = list(res.tokens) == list(golden.out)
    vocab = cfg.vocab
    rtl_logits = got[:(len(got) // vocab) * vocab].reshape(-1, vocab).view(np.float32)

    if waves is not None:
        _copy_waves(res.build_dir, waves, outputs)
    st = res.status
    sim_s = st.get("run_seconds", 0.0)
    stats = {
        "backend": "rtl",
        "simulator": simulator,
        "model": cfg.name,
        "hw": hwc.name,
        "prompt": prompt,
        "tokens": [int(t) for t in res.tokens],
        "golden_tokens": [int(t) for t in golden.out],
        "new_tokens": new_tokens,
        "seed": seed,
        "cycles": int(res.cycles),
        "golden_match": bool(tokens_match and logits_match),
        "tokens_match": bool(tokens_match),
        "logits_checked": int(len(want)),
        "logits_matching": n_match,
        "perf_cycles": cmp["perf_cycles"],
        "cycle_difference": (res.cycles - cmp["perf_cycles"]) / cmp["perf_cycles"]
        if cmp["perf_cycles"] else None,
        "perf_cycles_rtl_vector_unit": same_vu["cycles"],
        "cycle_difference_rtl_vector_unit": (res.cycles - same_vu["cycles"]) / same_vu["cycles"],
        "rtl_vector_unit_tck": same_vu["vector_tck"],
        "column_commands_match_perf": cmp["column_sequences_equal"],
        "commands_rtl_vs_perf": {str(c): v["rtl_vs_perf"] for c, v in cmp["channels"].items()},
        "instructions": len(compiled.program),
        "dram_commands": st.get("dram_commands"),
        "protocol_violations": st.get("violations", []),
        "dram_error": bool(st.get("dram_error")),
        "sim_seconds": sim_s,
        "cycles_per_second": res.cycles / sim_s if sim_s else None,
        "load_seconds": st.get("load_seconds"),
        "build_seconds": res.build_s,
        "verilog_seconds": res.verilog_s,
        "test_seconds": res.test_s,
        "prepare_seconds": prep_s,
        "golden_seconds": golden_s,
        "build_dir": str(res.build_dir),
    }
    if tokenizer.is_byte_level(cfg) and all(0 <= t < 256 for t in res.tokens):
        stats["text"] = tokenizer.decode(res.tokens)
    stats["_logits"] = rtl_logits
    return stats


def _copy_waves(build_dir, target, outputs: Outputs | None = None) -> None:
    build_dir = Path(build_dir)
    suffix = Path(target).suffix
    found = sorted(build_dir.rglob(f"*{suffix}"), key=lambda p: p.stat().st_mtime)
    if not found:
        have = [p.name for p in build_dir.rglob("*.fst")] + [p.name for p in
                                                              build_dir.rglob("*.vcd")]
        raise RtlRunError(f"the simulator wrote no {suffix} waveform (found {have}); "
                          "Verilator writes .fst, use --waves FILE.fst")
    if outputs is not None and "--waves" in outputs:
        outputs.write("--waves", lambda tmp: shutil.copyfile(found[-1], tmp))
    else:
        atomic_write(target, lambda tmp: shutil.copyfile(found[-1], tmp), "--waves")


def cli_run(args) -> int:
    """``pimgpt run --backend rtl``; see the module docstring."""
    from pimgpt.sw.models import get_model
    from pimgpt.sw.prompt import prompt_from_args

    waves = getattr(args, "waves", None)
    outs = Outputs({"--stats": getattr(args, "stats", None),
                    "--logits": getattr(args, "logits", None), "--waves": waves})
    cfg = get_model(args.model)
    prompt = prompt_from_args(args, cfg)
    with outs:
        stats = run_rtl_generation(
            args.model, hw=args.hw, prompt=prompt, new_tokens=args.new_tokens,
            seed=getattr(args, "seed", 0), simulator=getattr(args, "simulator", "verilator"),
            waves=waves, outputs=outs)
        logits = stats.pop("_logits")
        print("tokens: " + ",".join(str(t) for t in stats["tokens"]))
        if "text" in stats:
            from pimgpt.sw import tokenizer

            print("text: " + repr(tokenizer.decode(stats["prompt"]) + stats["text"]))
        diff = stats["cycle_difference"]
        print(f"cycles: {stats['cycles']} (perf simulator {stats['perf_cycles']}, "
              f"{100 * diff:+.1f} %; perf simulator with the RTL's vector-unit costs "
              f"{stats['perf_cycles_rtl_vector_unit']}, "
              f"{100 * stats['cycle_difference_rtl_vector_unit']:+.2f} %)")
        print(f"golden_match: {str(stats['golden_match']).lower()} ({stats['logits_matching']}/"
              f"{stats['logits_checked']} logits bit-exact, tokens "
              f"{'equal' if stats['tokens_match'] else 'DIFFER'})")
        if "--logits" in outs:
            def save(tmp):
                with open(tmp, "wb") as fh:
                    np.save(fh, np.asarray(logits, dtype=np.float32))

            outs.write("--logits", save)
            stats["logits_file"] = str(outs.path("--logits"))
        if "--stats" in outs:
            outs.write_json("--stats", stats, indent=2)
        # A mismatch is reported with its evidence: the outputs are written, then the error.
        outs.commit()
    if waves is not None:
        print(f"waves: {waves}")
    if not stats["golden_match"]:
        raise RtlRunError("the RTL's tokens or logits differ from the golden model "
                          f"(see {stats['build_dir']})")
    return 0

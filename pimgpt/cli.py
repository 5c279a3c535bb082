"""The ``pimgpt`` command: one entry point, a subcommand per job, ``--help`` on each.

Handlers live next to the code they drive and are imported lazily, so ``pimgpt --help`` is quick.
Every user-facing error is a :class:`pimgpt.core.errors.PimgptError` printed as one line, exit
status 1.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from pimgpt.apps.entry import run_guarded

# subcommand -> (module, function, one-line help)
HANDLERS = {
    "verilog": ("pimgpt.hdl.export", "cli_verilog", "write Verilog for an RTL block"),
    "compile": (
        "pimgpt.apps.compile_cli", "cli_compile", "compile a GPT model into a PIM program"
    ),
    "run": ("pimgpt.apps.run_cli", "cli_run", "run a model on the golden, perf or RTL backend"),
    "paper": ("pimgpt.apps.paper", "cli_paper", "reproduce the PIM-GPT evaluation"),
    "accuracy": (
        "pimgpt.apps.accuracy",
        "cli_accuracy",
        "PIM numerics vs float64: logits, top-1, perplexity",
    ),
    "models": ("pimgpt.apps.models_cli", "cli_models", "list model and hardware presets"),
    "demo": ("pimgpt.apps.demo", "cli_demo", "the end-to-end demonstration (`make demo`)"),
    "sweep": (
        "pimgpt.apps.sweep_run", "cli_sweep", "design-space sweep on a Dask cluster (embedded)"
    ),
    "bench": (
        "pimgpt.apps.bench", "cli_bench", "benchmarks of the tools and the modelled hardware"
    ),
}


def _add_model_args(p: argparse.ArgumentParser, hw_default: str,
                    model_default: str | None = "tiny", model_note: str = "") -> None:
    p.add_argument(
        "--model",
        "-m",
        default=model_default,
        help="preset name, shipped model, HF checkpoint dir or model YAML (docs/models.md; "
        f"default: tiny{model_note})",
    )
    p.add_argument(
        "--hw", default=None, help=f"hardware preset or YAML file (default: {hw_default})"
    )


def _add_cluster_args(p, in_process: bool = False) -> None:
    """``--workers`` and ``--scheduler`` of a command whose points run on Dask (``in_process``:
    ``--workers 1`` runs them in the calling process)."""
    alone = "; 1: in this process" if in_process else ""
    p.add_argument("--workers", type=int, default=None,
                   help=f"local cluster: worker processes (default: one per core{alone}); with "
                   "--scheduler: wait for this many workers")
    p.add_argument("--scheduler", default=None,
                   help="address of a running Dask scheduler, e.g. tcp://10.0.0.5:8786")


def _run_hw_default() -> str:
    """The ``--hw`` default of ``pimgpt run``: the global preset, and each backend's own."""
    from pimgpt.apps.run_cli import BACKENDS
    from pimgpt.core.config import DEFAULT_HW

    own = [f"{e.default_hw} with --backend {name}" for name, e in BACKENDS.items()
           if e.default_hw]
    return "; ".join([DEFAULT_HW] + own + ["with --program, the hardware named in its "
                                           "memmap.yaml"])


def _add_run_outputs(p) -> None:
    """``pimgpt run``'s output files and ``--program`` (kept apart: build_parser's size)."""
    p.add_argument("--stats", default=None,
                   help="write statistics JSON here (perf: the top-level latency_ns, energy_nj, "
                   "row_hit_rate and mac_utilization cover the whole program, preamble "
                   "included, like the 'whole' section; the prefill/decode sections leave the "
                   "preamble out, as the printed summary does, and each section's breakdowns "
                   "add up to its own latency_ns; the *_per_token keys and the top-level "
                   "breakdown_*, mac_busy_efficiency and dram cover the decode section "
                   "(prefill without decode), breakdown_* and dram totalled over its tokens)")
    p.add_argument("--logits", default=None, help="golden/rtl: write logits (.npy) here")
    p.add_argument(
        "--program",
        default=None,
        help="run this program.bin or (edited) program.asm from `pimgpt compile "
        "--prompt` instead of compiling one, on the model and hardware of the memmap.yaml beside "
        "it; its prompt and token count are compiled in, so --prompt, --prompt-text and "
        "--new-tokens are refused",
    )
    p.add_argument("--timeline", default=None,
                   help="perf, rtl: write a Chrome/Perfetto trace JSON (perf: instructions per "
                   "channel and on the vector unit; rtl: MAC trains and row commands per channel, "
                   "dispatches; both: each channel's register-mode visits and refreshes)")
    p.add_argument("--waves", default=None,
                   help="rtl: write waveforms (.vcd, or .fst where liblz4-dev is installed); "
                   "large: about 58 kB per simulated cycle on tiny-rtl (3.7 GB for tiny-py, "
                   "3-token prompt, 4 new tokens); plain, .vcd and .fst runs each build their "
                   "own simulator model (minutes, once)")
    p.add_argument("--waves-window", default=None, metavar="FIRST:LAST",
                   help="rtl, with --waves FILE.vcd: keep program cycles FIRST..LAST only (the "
                   "cycles of --commands, --timeline and the statistics: 0 at the program's "
                   "start, not the loading before it); the whole run is traced, then cut "
                   "(about 30 s per GB of the whole)")
    p.add_argument("--commands", default=None,
                   help="rtl, perf: write the DRAM commands issued as CSV (channel, cycle, "
                   "command, footprint index: the bank, the bank group or 0 for all banks); "
                   "perf: a line per command, about 590k (10 MB) for a gpt2-small token")


def build_parser() -> argparse.ArgumentParser:
    from pimgpt import __version__

    parser = argparse.ArgumentParser(
        prog="pimgpt",
        description="DRAM processing-in-memory GPT accelerator: RTL, golden model, compiler, "
        "performance simulator.",
    )
    parser.add_argument("--version", action="version", version=f"pimgpt {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    from pimgpt.core.config import DEFAULT_HW

    p = sub.add_parser(
        "verilog", help=HANDLERS["verilog"][2], description="Convert an Amaranth block to Verilog."
    )
    p.add_argument("block", help="block name (mac, bf16mul, fp32add, ...; `list` lists them)")
    p.add_argument("-o", "--output", default="build/verilog",
                   help="output directory (default: %(default)s)")
    p.add_argument("--hw", default=None,
                   help="hardware preset or YAML of the blocks that depend on it (default: the "
                   f"default preset, {DEFAULT_HW}; tiny-rtl is the small system the RTL tests "
                   "and `pimgpt run --backend rtl` use)")

    p = sub.add_parser(
        "compile",
        help=HANDLERS["compile"][2],
        description="Compile a model into program.bin, program.asm, memmap.yaml "
        "and program.aim. By default one decode step at position --context - 1.",
    )
    _add_model_args(p, DEFAULT_HW)
    p.add_argument(
        "--context",
        type=int,
        default=None,
        help="tokens attended by the compiled decode step (default: model maximum)",
    )
    p.add_argument(
        "--prompt",
        default=None,
        help="comma-separated prompt token ids: compile prefill plus --new-tokens decode "
        "steps instead of a single step",
    )
    p.add_argument("--new-tokens", type=int, default=None,
                   help="tokens to generate, with --prompt only (default: 1)")
    p.add_argument("-o", "--output", required=True, help="output directory")

    p = sub.add_parser(
        "run",
        help=HANDLERS["run"][2],
        description="Compile and run a model; print generated tokens (or text).",
    )
    # Options that a run may ignore default to None, so that cli_run can tell an option the user
    # gave (refused where it would be ignored) from the default (run_cli.RUN_DEFAULTS).
    from pimgpt.apps.run_cli import BACKENDS, RUN_DEFAULTS

    _add_model_args(p, _run_hw_default(), model_default=None,
                    model_note="; with --program, the model named in its memmap.yaml")
    p.add_argument("--backend", choices=list(BACKENDS), default="golden",
                   help="; ".join(f"{name}: {e.description}" for name, e in BACKENDS.items())
                   + " (default: %(default)s)")
    p.add_argument("--prompt", default=None, help="comma-separated prompt token ids, e.g. 1,2,3")
    p.add_argument("--prompt-text", default=None, help="prompt as text (byte-level models)")
    p.add_argument("--new-tokens", type=int, default=None,
                   help="tokens to generate (default: {new_tokens}); perf: with --prompt or "
                   "--prompt-text only".format(**RUN_DEFAULTS))
    p.add_argument(
        "--context",
        type=int,
        default=None,
        help="perf backend: the context the simulated decode step attends, or with --prompt the "
        "KV-cache capacity (default: the model's maximum context in both cases)",
    )
    p.add_argument("--seed", type=int, default=None,
                   help="golden/rtl: seed of the random weights of an untrained preset or model "
                   "YAML; a model with a checkpoint refuses it (default: {seed})"
                   .format(**RUN_DEFAULTS))
    _add_run_outputs(p)
    from pimgpt.sim.cocotb_lib.runner import SIMULATORS

    p.add_argument("--simulator", default=None, choices=SIMULATORS,
                   help="rtl: HDL simulator (default: {simulator})".format(**RUN_DEFAULTS))

    p = sub.add_parser(
        "paper",
        help=HANDLERS["paper"][2],
        description="Run the 8 GPT-2/3 and 5 Llama presets over context lengths; write "
        "Markdown, CSV and PNG plots. The points run side by side on Dask (a local cluster, "
        "or --scheduler).",
    )
    p.add_argument("-o", "--output", default="build/paper",
                   help="output directory (default: %(default)s)")
    p.add_argument("--hw", default=None,
                   help="hardware preset or YAML for every model (default: pimgpt-gddr6-8ch "
                   "for the GPT models, pimgpt-gddr6-16ch and -32ch for the Llama models)")
    p.add_argument("--models", default=None, help="comma-separated subset of models")
    p.add_argument("--contexts", default=None, help="comma-separated context lengths")
    _add_cluster_args(p, in_process=True)

    p = sub.add_parser(
        "accuracy",
        help=HANDLERS["accuracy"][2],
        description="Measure the PIM numerics against float64 and write "
        "docs/accuracy.md-style Markdown plus JSON.",
    )
    p.add_argument("-o", "--output", default="build/accuracy",
                   help="output directory (default: %(default)s)")
    p.add_argument("--quick", action="store_true", help="fewer steps/tokens (smoke run)")
    p.add_argument("--models", default=None, help="comma-separated subset of models")

    p = sub.add_parser(
        "sweep",
        help=HANDLERS["sweep"][2],
        description="Simulate every point of a sweep spec (hardware axes x models x contexts) "
        "on Dask; resumable. Writes results.csv, summary.md and PNG plots (docs/sweep.md).",
    )
    p.add_argument("spec", help="sweep specification YAML")
    p.add_argument("-o", "--output", required=True, help="output directory (resumed if present)")
    _add_cluster_args(p)
    p.add_argument("--cache-dir", default=None,
                   help="program cache directory (default: $PIMGPT_CACHE_DIR or ~/.cache/pimgpt)")
    p.add_argument("--no-cache", action="store_true",
                   help="compile and simulate every point on its own (no reuse)")

    sub.add_parser("models", help=HANDLERS["models"][2], description=HANDLERS["models"][2])
    p = sub.add_parser("demo", help=HANDLERS["demo"][2], description=HANDLERS["demo"][2])
    p.add_argument("-o", "--output", default="build/demo",
                   help="output directory (default: %(default)s)")
    p = sub.add_parser("bench", help=HANDLERS["bench"][2], description=HANDLERS["bench"][2])
    p.add_argument("--quick", action="store_true", help="smaller sizes")
    return parser


def main(argv: list[str] | None = None) -> int:
    # Paths from a non-UTF-8 command line hold lone surrogates: print them escaped, not crash.
    for stream in (sys.stdout, sys.stderr):
        if hasattr(stream, "reconfigure"):
            stream.reconfigure(errors="backslashreplace")
    args = build_parser().parse_args(argv)
    module, func, _ = HANDLERS[args.command]

    def command() -> int | None:
        return getattr(importlib.import_module(module), func)(args)

    return run_guarded(f"pimgpt {args.command}", command)


if __name__ == "__main__":
    sys.exit(main())

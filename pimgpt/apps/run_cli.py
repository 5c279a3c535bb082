"""``pimgpt run``: one handler for every backend (golden, perf, rtl; see :mod:`pimgpt.sim.backend`).

The handler parses the model, the hardware and the prompt; makes the program (a generation of
``--new-tokens`` after the prompt; for perf without a prompt, one decode step at ``--context``; or
``--program``, a program.bin or program.asm of ``pimgpt compile --prompt``); loads the weights
when the backend needs them; runs the backend; prints the tokens (and the text of byte-level
models) and the backend's summary; and writes ``--stats``, ``--logits``, ``--timeline`` and
``--waves`` together (:class:`pimgpt.core.fileio.Outputs`: every destination checked before the
run, all written or none). The statistics JSON holds the backend's own figures plus ``backend``,
``model``, ``hw``, ``prompt``, ``seed``, ``compile_seconds`` and ``weights_seconds``.

``--program`` (every backend; :mod:`pimgpt.apps.program_file`): the binary or the (edited)
assembly; the ``memmap.yaml`` beside it gives the KV-cache capacity, the default model and the
default hardware, and its fingerprint must match the model shape and the hardware
(:mod:`pimgpt.sw.fingerprint`); a ``-m`` or ``--hw`` that contradicts it is refused. The prompt
and the number of tokens are those compiled into it, so ``--prompt``, ``--prompt-text`` and
``--new-tokens`` are refused. On the rtl backend a program runs on its own hardware, so compile it
for ``tiny-rtl`` (the default presets simulate every bank: a large design, announced before its
build). Every option the run would ignore is refused
(:func:`check_program_options`, :func:`check_backend_options`, :func:`check_run_options`).

Backends are registered by name in :data:`BACKENDS` (:func:`register_backend` adds one);
:func:`run_model` runs a model on a backend from Python.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from pimgpt.apps.program_file import LoadedProgram, load_program
from pimgpt.core.errors import PimgptError

__all__ = ["BACKENDS", "BackendEntry", "register_backend", "make_program", "run_program",
           "run_model", "load_program", "cli_run", "RUN_DEFAULTS"]

#: Defaults of the ``pimgpt run`` options that parse as None: the handler refuses such an option
#: where the run would ignore it only when the user gave it, then fills in these values.
RUN_DEFAULTS = {"model": "tiny", "new_tokens": 4, "seed": 0, "simulator": "verilator"}


class RunError(PimgptError):
    """Bad arguments or files of ``pimgpt run``."""


@dataclass(frozen=True)
class BackendEntry:
    """A registered backend.

    Attributes
    ----------
    factory : callable
        ``factory(options)`` returns the backend; ``options`` holds every run option (``progress``,
        ``generation``, ``timeline``, ``simulator``, ``waves``) and each factory takes the ones its
        backend uses.
    description : str
    default_hw : str, optional
        Hardware preset when ``--hw`` is not given (None: the global default).
    options : tuple of str
        Command-line options (argparse destinations) only this backend uses.
    """

    factory: Callable[[dict], object]
    description: str
    default_hw: str | None = None
    options: tuple = ()


def _golden(options: dict):
    from pimgpt.sim.backend import GoldenBackend

    return GoldenBackend(progress=options.get("progress", False))


def _perf(options: dict):
    from pimgpt.sim.backend import PerfBackend

    return PerfBackend(generation=options.get("generation", True),
                       timeline=options.get("timeline", False),
                       commands=options.get("commands", False))


def _rtl(options: dict):
    from pimgpt.sim.cocotb_lib.rtl_backend import RtlBackend

    return RtlBackend(simulator=options.get("simulator", "verilator"),
                      waves=options.get("waves"), timeline=options.get("timeline", False),
                      waves_window=options.get("waves_window"))


#: Backends of ``pimgpt run --backend NAME``.
BACKENDS: dict[str, BackendEntry] = {
    "golden": BackendEntry(_golden, "functional, bit-exact: tokens and logits", None,
                           ("logits", "program", "seed")),
    "perf": BackendEntry(_perf, "cycle-accurate timing and energy", None,
                         ("timeline", "commands", "context", "program")),
    # The RTL simulates every bank: the default 8-channel preset would be far too slow.
    "rtl": BackendEntry(_rtl, "the Verilog system under Verilator/Icarus, checked against golden",
                        "tiny-rtl", ("logits", "program", "waves", "waves_window", "commands",
                                     "timeline", "seed", "simulator")),
}
#: Flags of the backend-specific options (argparse destination -> flag). ``--seed`` draws weights,
#: which perf does not read (it times the program only).
OPTION_FLAGS = {"logits": "--logits", "program": "--program", "timeline": "--timeline",
                "waves": "--waves", "waves_window": "--waves-window",
                "commands": "--commands", "context": "--context",
                "seed": "--seed",
                "simulator": "--simulator"}
#: Optional output files a backend may offer (RunResult.files key -> option).
FILE_OPTIONS = {"timeline": "--timeline", "waves": "--waves", "commands": "--commands"}


def register_backend(name: str, entry: BackendEntry) -> None:
    """Add a backend to :data:`BACKENDS` (``pimgpt run --backend`` lists the registry)."""
    if name in BACKENDS:
        raise ValueError(f"backend {name!r} is already registered")
    BACKENDS[name] = entry


def make_backend(name: str, **options):
    """The backend registered as ``name``, made with the run ``options`` it uses."""
    if name not in BACKENDS:
        raise RunError(f"unknown backend {name!r}; use one of {', '.join(BACKENDS)}")
    return BACKENDS[name].factory(options)


def check_backend_options(args) -> None:
    """Refuse options that ``args.backend`` would ignore.

    Raises
    ------
    PimgptError
        Naming the option and the backends that use it.
    """
    for dest, flag in OPTION_FLAGS.items():
        if getattr(args, dest, None) is None:
            continue
        users = [name for name, e in BACKENDS.items() if dest in e.options]
        if args.backend not in users:
            raise PimgptError(f"{flag} is not used by the {args.backend} backend; drop it or use "
                              f"--backend {' or '.join(users)}")


def check_program_options(args) -> None:
    """Refuse the options that a ``--program`` run ignores: the program fixes its prompt, its
    number of tokens and its KV-cache capacity. Checked before :func:`check_backend_options`,
    whose advice for ``--context`` (use perf) does not fit a program.

    Raises
    ------
    RunError
        Naming the option and the fix.
    """
    if getattr(args, "program", None) is None:
        return
    given = [flag for dest, flag in (("prompt", "--prompt"), ("prompt_text", "--prompt-text"),
                                     ("new_tokens", "--new-tokens"))
             if getattr(args, dest, None) is not None]
    if given:
        raise RunError(f"{given[0]} is not used with --program (the program was compiled with its "
                       "own prompt and number of tokens); drop it or recompile with `pimgpt "
                       "compile ... --prompt IDS --new-tokens N`")
    if getattr(args, "context", None) is not None:
        raise RunError("--context is not used with --program (the program was compiled with its "
                       "own KV-cache capacity); drop it or recompile with `pimgpt compile ... "
                       "--context N`")


def check_run_options(args, cfg) -> None:
    """Refuse the options that this run would ignore, beyond those of a ``--program`` run
    (:func:`check_program_options`) and of other backends (:func:`check_backend_options`):
    ``--new-tokens`` on perf without a prompt; ``--seed`` with a trained model.

    Raises
    ------
    RunError
        Naming the option and the fix.
    """
    if (args.backend == "perf" and getattr(args, "new_tokens", None) is not None
            and args.prompt is None and getattr(args, "prompt_text", None) is None):
        raise RunError("--new-tokens is not used by the perf backend without --prompt (one "
                       "decode step is simulated); drop it or give --prompt ids to simulate a "
                       "generation")
    if getattr(args, "seed", None) is not None and cfg.checkpoint:
        raise RunError(f"--seed is not used by model {cfg.name}: its weights come from its "
                       "checkpoint, and the seed only draws random weights for untrained presets "
                       "and model YAML files; drop --seed")


def make_program(cfg, hw, prompt, new_tokens: int, context: int | None = None):
    """A generation of ``new_tokens`` after ``prompt`` (``context``: the KV-cache capacity), or,
    when ``prompt`` is None, one decode step attending ``context`` tokens (default: the model's
    maximum)."""
    from pimgpt.sw.compiler import compile_decode_step, compile_generation
    from pimgpt.sw.mapper import map_model

    if prompt is None:
        return compile_decode_step(cfg, hw, cfg.ctx if context is None else context)
    memmap = map_model(cfg, hw, context) if context is not None else None
    return compile_generation(cfg, hw, prompt, new_tokens, memmap)


def run_program(backend, program, hw, seed: int = 0, prompt=None):
    """Run ``program`` on ``backend`` (weights from the model's checkpoint, or random with
    ``seed``); the result's statistics get the run's description added.

    Returns
    -------
    RunResult
    """
    from pimgpt.sw import checkpoint, tokenizer

    cfg = program.memmap.cfg
    t0 = time.perf_counter()
    weights = checkpoint.weights_for(cfg, seed) if backend.needs_weights else None
    weights_seconds = time.perf_counter() - t0
    result = backend.run(program, weights, hw)
    for key, value in (("backend", backend.name), ("model", cfg.name), ("hw", hw.name),
                       ("prompt", None if prompt is None else list(prompt)), ("seed", seed),
                       ("weights_seconds", weights_seconds)):
        result.stats.setdefault(key, value)
    tokens = result.tokens
    if tokens is not None and tokenizer.is_byte_level(cfg) and all(0 <= t < 256 for t in tokens):
        result.stats.setdefault("text", tokenizer.decode(tokens))
    return result


def run_model(backend, model: str | None, *, hw: str | None = None, prompt=None,
              prompt_text: str | None = None, new_tokens: int = 4, seed: int = 0,
              context: int | None = None, program: str | None = None):
    """Make the program for ``model`` and run it on ``backend`` (what ``pimgpt run`` does).

    Parameters
    ----------
    backend : Backend or str
        A backend object, or a registered name (made with default options).
    model : str or None
        Preset, shipped model, checkpoint folder or model YAML (None with ``program``: the model
        its memmap.yaml names).
    hw : str, optional
        Hardware preset or YAML (default: the program's hardware with ``program``, else the
        backend's default hardware).
    prompt : list of int, optional
        Prompt ids; ``prompt_text`` (byte-level models) instead. Without either, a backend that
        computes data generates after ``[0]``; perf simulates one decode step at ``context``.
    new_tokens, seed : int
        Tokens to generate; seed of random weights.
    context : int, optional
        KV-cache capacity (with a prompt), or the tokens the decode step attends (without).
    program : str or LoadedProgram, optional
        A program.bin or program.asm of ``pimgpt compile`` to run instead of compiling (see the
        module docstring), or one read by :func:`~pimgpt.apps.program_file.load_program`;
        ``prompt``/``new_tokens`` are then those compiled into it, and the statistics say
        ``program_edited`` when it differs from the one compiled with its memmap.yaml.

    Returns
    -------
    RunResult
    """
    from pimgpt.core.config import load_hw
    from pimgpt.sw import checkpoint, tokenizer
    from pimgpt.sw.models import get_model
    from pimgpt.sw.prompt import check_new_tokens

    if isinstance(backend, str):
        backend = make_backend(backend)
    entry = BACKENDS.get(backend.name)
    loaded = program if isinstance(program, LoadedProgram) else None
    if program is not None:
        if loaded is None:
            loaded = load_program(program, model, hw)
        cfg, hwc = loaded.cfg, loaded.hw
    else:
        cfg = get_model(model)
        hwc = load_hw(entry.default_hw if hw is None and entry else hw)
    checkpoint.check_seed(seed)
    check_new_tokens(new_tokens)
    if context is not None and (isinstance(context, bool) or not isinstance(context, int)
                                or not 1 <= context <= cfg.ctx):
        raise RunError(f"--context {context!r} is out of range for {cfg.name}; use 1..{cfg.ctx}")
    if prompt_text is not None:
        if not tokenizer.is_byte_level(cfg):
            raise RunError(f"--prompt-text needs a byte-level model; {cfg.name} has {cfg.vocab} "
                           "tokens, give --prompt ids")
        prompt = tokenizer.encode(prompt_text)
    if prompt is None and program is None and backend.needs_weights:
        prompt = [0]
    t0 = time.perf_counter()
    if loaded is not None:
        compiled, prompt = loaded.compiled, loaded.prompt
    else:
        compiled = make_program(cfg, hwc, prompt, new_tokens, context)
    compile_seconds = time.perf_counter() - t0
    result = run_program(backend, compiled, hwc, seed, prompt)
    result.stats.setdefault("compile_seconds", compile_seconds)
    if loaded is not None:
        result.stats.setdefault("program", loaded.path)
        result.stats.setdefault("program_edited", loaded.edited)
    if backend.name == "perf":
        result.stats.setdefault("context", compiled.memmap.context if loaded else
                                context if prompt is not None else
                                (cfg.ctx if context is None else context))
    return result


def _check_output_suffixes(args) -> None:
    """The formats are chosen by suffix (waves) or fixed (logits: NumPy ``.npy``): a file name
    whose suffix says otherwise is refused before anything runs."""
    waves = getattr(args, "waves", None)
    if waves is not None and Path(waves).suffix not in (".fst", ".vcd"):
        raise RunError(f"--waves {waves}: give a .fst or .vcd file name")
    window = getattr(args, "waves_window", None)
    entry = BACKENDS.get(getattr(args, "backend", None))
    if window is not None and entry is not None and "waves_window" in entry.options:
        # (a backend without it refuses the option itself: check_backend_options)
        from pimgpt.sim.cocotb_lib.vcd_window import parse_window

        parse_window(window)
        if waves is None or Path(waves).suffix != ".vcd":
            raise RunError(f"--waves-window {window} cuts a VCD: give --waves FILE.vcd too"
                           + (f" (not {waves})" if waves else ""))
    commands = getattr(args, "commands", None)
    if commands is not None and Path(commands).suffix not in (".csv", ""):
        raise RunError(f"--commands {commands}: the commands are written as CSV; give a file "
                       "name ending in .csv")
    logits = getattr(args, "logits", None)
    if logits is not None and Path(logits).suffix not in (".npy", ""):
        raise RunError(f"--logits {logits}: the logits are written in NumPy's .npy format; "
                       "give a file name ending in .npy")


def _backend_from_args(args, generation: bool):
    from pimgpt.sim.cocotb_lib.vcd_window import parse_window

    waves = getattr(args, "waves", None)
    window = getattr(args, "waves_window", None)
    simulator = getattr(args, "simulator", None)
    return make_backend(args.backend, progress=True, generation=generation,
                        timeline=getattr(args, "timeline", None) is not None,
                        commands=getattr(args, "commands", None) is not None,
                        simulator=RUN_DEFAULTS["simulator"] if simulator is None else simulator,
                        waves=Path(waves).suffix[1:] if waves else None,
                        waves_window=parse_window(window) if window is not None else None)


def _save_npy(array) -> Callable[[Path], None]:
    def save(tmp: Path) -> None:
        import numpy as np

        with open(tmp, "wb") as fh:
            np.save(fh, array, allow_pickle=False)

    return save


def cli_run(args) -> int:
    """``pimgpt run``; see the module docstring."""
    from pimgpt.core.config import load_hw
    from pimgpt.core.fileio import Outputs
    from pimgpt.sw.checkpoint import check_seed
    from pimgpt.sw.models import get_model
    from pimgpt.sw.prompt import check_new_tokens, prompt_from_args

    # A bad value is named as such before any "not used" refusal (and before anything is
    # printed): fixing it is the first step.
    if getattr(args, "new_tokens", None) is not None:
        check_new_tokens(args.new_tokens)
    if getattr(args, "seed", None) is not None:
        check_seed(args.seed)
    _check_output_suffixes(args)
    check_program_options(args)
    check_backend_options(args)
    outs = Outputs({"--stats": args.stats, "--logits": getattr(args, "logits", None),
                    "--timeline": getattr(args, "timeline", None),
                    "--waves": getattr(args, "waves", None),
                    "--commands": getattr(args, "commands", None)})
    program = getattr(args, "program", None)
    model = args.model
    if program is not None:  # the model (and hardware) named in its memmap.yaml by default
        program = load_program(program, model, args.hw)
        cfg = program.cfg
    else:
        model = RUN_DEFAULTS["model"] if model is None else model
        cfg = get_model(model)
        if args.hw is not None:  # a bad --hw is named before the default prompt is announced
            load_hw(args.hw)
    check_run_options(args, cfg)
    prompt = None if program is not None else prompt_from_args(
        args, cfg, default=(0,) if args.backend != "perf" else None)
    backend = _backend_from_args(args, generation=prompt is not None or program is not None)
    new_tokens = getattr(args, "new_tokens", None)
    seed = getattr(args, "seed", None)
    result = run_model(backend, model, hw=args.hw, prompt=prompt,
                       new_tokens=RUN_DEFAULTS["new_tokens"] if new_tokens is None else new_tokens,
                       seed=RUN_DEFAULTS["seed"] if seed is None else seed,
                       context=getattr(args, "context", None), program=program)
    try:
        _check_window(getattr(backend, "waves_window", None), result)
        written = _report(result, outs)
    finally:
        # A file a backend offered but nobody took (an output failed, Ctrl-C) may be a GB
        # waveform in the build cache: drop it (a no-op for one already moved into place).
        for offered in result.files.values():
            getattr(offered, "discard", lambda: None)()
    if "--waves" in written:  # a dump grows by kB per cycle: say what this one cost
        cycles = getattr(result.files.get("waves"), "cycles", None) or result.stats.get("cycles")
        print(_waves_size(written["--waves"], cycles), file=sys.stderr)
    if result.error:  # reported with its evidence: the outputs are written first
        raise RunError(result.error)
    return 0


def _check_window(window, result) -> None:
    """Refuse a ``--waves-window`` (the backend's parsed ``(first, last)``) that starts past the
    program's end before any output is written (with the RTL's own verdict, where its checks
    failed)."""
    cycles = result.stats.get("cycles")
    if window is None or cycles is None:
        return
    first, last = window
    if first >= cycles:
        also = f"; and {result.error}" if result.error else ""
        raise RunError(f"--waves-window {first}:{last}: the program ran {cycles:,} cycles (0 to "
                       f"{cycles - 1:,}); choose a window inside them{also}")


def _waves_size(path, cycles) -> str:
    """One line: the waveform ``path``, its size and its bytes per simulated cycle."""
    n = Path(path).stat().st_size
    size, unit = float(n), "bytes"
    for bigger in ("kB", "MB", "GB"):
        if size < 1000:
            break
        size, unit = size / 1000, bigger
    shown = f"{n} bytes" if unit == "bytes" else f"{size:.1f} {unit}"
    per = f" ({cycles:,} simulated cycles, {n / cycles:,.0f} bytes per cycle)" if cycles else ""
    return f"{path}: {shown} of waveforms{per}"


def _report(result, outs) -> dict:
    """Print the run's summary, write its outputs; the written files by option."""
    from pimgpt.sw import tokenizer

    prompt = result.stats["prompt"]
    if result.stats.get("program_edited"):
        print(f"note: {result.stats['program']} differs from the program compiled with its "
              f"memmap.yaml (edited); it ran on that memory map ({result.stats['model']} on "
              f"{result.stats['hw']})")
    if result.tokens is not None:
        print("tokens: " + ",".join(str(t) for t in result.tokens))
        if "text" in result.stats:
            print("text: " + repr(tokenizer.decode(prompt or []) + result.stats["text"]))
    for line in result.lines:
        print(line)
    with outs:  # everything computed: the outputs are committed together
        if "--logits" in outs and result.logits is not None:
            outs.write("--logits", _save_npy(result.logits))
            result.stats["logits_file"] = str(outs.path("--logits"))
        for name, opt in FILE_OPTIONS.items():
            if opt in outs and name in result.files:
                outs.write(opt, result.files[name])
        if "--stats" in outs:
            outs.write_json("--stats", result.stats, indent=2)
        written = outs.commit()
    labels = {"--stats": "statistics", "--logits": "logits",
              "--timeline": "timeline", "--waves": "waves", "--commands": "DRAM commands"}
    for opt, path in written.items():
        hint = " (open in ui.perfetto.dev)" if opt == "--timeline" else ""
        print(f"{labels.get(opt, opt)}: {path}{hint}")
    return written

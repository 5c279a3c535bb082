"""``pimgpt run --backend golden``: compile, load weights, run on the golden simulator.

Prints the generated token ids (and the decoded text for byte-level models). ``--stats F`` writes a
JSON object with at least ``tokens``, ``prompt``, ``model``, ``hw``, ``backend``,
``instructions``, ``seconds`` (golden execution time), ``seconds_per_token`` (execution seconds per
generated token) and, with ``--logits F.npy``, ``logits_file`` (float32 ``[new_tokens, vocab]``).
``--program program.bin`` runs a program made by ``pimgpt compile --prompt ...`` instead of
compiling one: the ``memmap.yaml`` beside it gives the KV-cache capacity and its fingerprint must
match the model, the hardware and the program (:mod:`pimgpt.sw.fingerprint`); the prompt and the
number of tokens are those compiled into it, ``--prompt``/``--new-tokens`` are ignored.
The destinations of ``--stats``/``--logits`` are checked before the run and both files are
committed together at the end (:class:`pimgpt.core.fileio.Outputs`).
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import yaml

from pimgpt.core.errors import PimgptError
from pimgpt.core.fileio import Outputs
from pimgpt.sw.prompt import prompt_from_args  # noqa: F401 (re-exported)


class RunError(PimgptError):
    """Bad arguments or files for a golden run."""


def _program_file(path: str, cfg, hw):
    """A CompiledProgram wrapping a program.bin (and the memmap.yaml beside it)."""
    from pimgpt.core.fileio import read_text
    from pimgpt.core.isa import FLAG_VEC_FROM_REG, Op, decode
    from pimgpt.sw.compiler import CompiledProgram, Step
    from pimgpt.sw.fingerprint import check_fingerprint
    from pimgpt.sw.mapper import MappingError, map_model

    if path == "":
        raise RunError("--program is an empty path; give a program.bin from `pimgpt compile`")
    p = Path(path)
    try:
        blob = p.read_bytes()
    except FileNotFoundError:
        raise RunError(f"{path}: no such program file; make one with `pimgpt compile`") from None
    except IsADirectoryError:
        raise RunError(f"{path} is a directory; give its program.bin") from None
    except OSError as exc:
        raise RunError(f"{path}: cannot read ({exc.strerror})") from None
    program = decode(blob, source=str(path))
    if not program or program[-1].op is not Op.EOC:
        raise RunError(f"{path}: the program does not end with EOC; it is truncated, recompile it")
    mm_file = p.with_name("memmap.yaml")
    text = read_text(mm_file, "memory map", RunError,
                     missing=f"a compiled program needs the memmap.yaml written beside "
                             f"{p.name} by `pimgpt compile`; keep the files together")
    try:
        info = yaml.safe_load(text)
    except yaml.YAMLError:
        raise RunError(f"{mm_file}: malformed YAML; recompile") from None
    if not isinstance(info, dict):
        raise RunError(f"{mm_file}: not a memory map (a mapping); recompile")
    check_fingerprint(info, cfg, hw, blob, str(mm_file))
    try:
        memmap = map_model(cfg, hw, info.get("context"))
    except MappingError as exc:
        raise RunError(f"{mm_file}: {exc}") from None
    # Every compiled step reads its token embedding by register once: that marks the steps.
    starts = [i for i, ins in enumerate(program)
              if ins.op is Op.RD_VEC and ins.flags & FLAG_VEC_FROM_REG]
    steps = [Step(start, pos, None, False) for pos, start in enumerate(starts)]
    prompt = [ins["imm"] for ins in program if ins.op is Op.SETR]
    compiled = CompiledProgram(program=program, memmap=memmap, tags=[""] * len(program),
                               scratchpad_words_used=0, steps=steps)
    return compiled, prompt


def cli_run(args) -> int:
    """Run a generation on the golden simulator; see the module docstring."""
    from pimgpt.core.config import load_hw
    from pimgpt.sim.golden import run_golden
    from pimgpt.sw import checkpoint, tokenizer
    from pimgpt.sw.compiler import compile_generation
    from pimgpt.sw.models import get_model

    outs = Outputs({"--stats": args.stats, "--logits": args.logits})
    cfg = get_model(args.model)
    hw = load_hw(args.hw)
    checkpoint.check_seed(args.seed)
    program_path = getattr(args, "program", None)
    prompt = [] if program_path is not None else prompt_from_args(args, cfg)
    new_tokens = args.new_tokens
    if new_tokens < 1:
        raise RunError(f"--new-tokens must be at least 1, got {new_tokens}")
    t_compile = time.perf_counter()
    if program_path is not None:
        compiled, prompt = _program_file(program_path, cfg, hw)
    else:
        compiled = compile_generation(cfg, hw, prompt, new_tokens)
    compile_seconds = time.perf_counter() - t_compile
    t0 = time.perf_counter()
    weights = checkpoint.weights_for(cfg, args.seed)
    weights_seconds = time.perf_counter() - t0
    tokens, logits, stats = run_golden(cfg, hw, weights, prompt, new_tokens, progress=True,
                                       compiled=compiled)
    print("tokens: " + ",".join(str(t) for t in tokens))
    if tokenizer.is_byte_level(cfg) and all(0 <= t < 256 for t in tokens):
        print("text: " + repr(tokenizer.decode(prompt) + tokenizer.decode(tokens)))
    out = {
        "backend": "golden",
        "model": cfg.name,
        "hw": hw.name,
        "prompt": prompt,
        "tokens": [int(t) for t in tokens],
        "new_tokens": len(tokens),
        "seed": args.seed,
        "instructions": stats["instructions"],
        "seconds": stats["seconds"],
        "seconds_per_token": stats["seconds"] / max(1, len(tokens)),
        "steps": stats["steps"],
        "seconds_per_step": stats["seconds"] / max(1, stats["steps"]),
        "compile_seconds": compile_seconds,
        "load_seconds": stats["load_seconds"],
        "weights_seconds": weights_seconds,
        "mac_columns": stats["mac_columns"],
        "ops": stats["ops"],
        "scratchpad_words_used": stats["scratchpad_words_used"],
    }
    with outs:
        if "--logits" in outs:
            array = (np.stack(logits) if logits else np.zeros((0, cfg.vocab))).astype(np.float32)

            def save(tmp):
                with open(tmp, "wb") as fh:
                    np.save(fh, array)

            outs.write("--logits", save)
            out["logits_file"] = str(outs.path("--logits"))
        if "--stats" in outs:
            outs.write_json("--stats", out, indent=2)
        outs.commit()
    return 0

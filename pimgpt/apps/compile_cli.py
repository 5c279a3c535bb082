"""``pimgpt compile``: write program.bin, program.asm, program.aim and memmap.yaml for a model."""

from __future__ import annotations

import sys
import time

from pimgpt.core.errors import PimgptError, plural
from pimgpt.sw.prompt import PromptError, check_new_tokens, parse_prompt  # noqa: F401 (re-exported)


def cli_compile(args) -> int:
    """Compile a decode step (default) or a whole generation (``--prompt``) into ``-o DIR``."""
    from pimgpt.core.config import load_hw
    from pimgpt.core.isa import Op
    from pimgpt.sw.compiler import compile_decode_step, compile_generation, program_outputs
    from pimgpt.sw.mapper import map_model, summary
    from pimgpt.sw.models import get_model

    # An option the compile would ignore is refused, as `pimgpt run` refuses them.
    new_tokens = getattr(args, "new_tokens", None)
    if args.prompt is None and new_tokens is not None:
        raise PimgptError("--new-tokens is not used without --prompt (one decode step is "
                          "compiled); drop it or give --prompt ids to compile a generation")
    if args.prompt is not None:
        new_tokens = check_new_tokens(1 if new_tokens is None else new_tokens)
    outs = program_outputs(args.output)  # every destination checked before compiling
    cfg = get_model(args.model)
    hw = load_hw(args.hw)
    t0 = time.perf_counter()
    if args.prompt is not None:
        prompt = parse_prompt(args.prompt, cfg)
        memmap = map_model(cfg, hw, args.context) if args.context is not None else None
        compiled = compile_generation(cfg, hw, prompt, new_tokens, memmap)
        what = f"{len(prompt)}-token prefill + {plural(new_tokens, 'generated token')}"
    else:
        compiled = compile_decode_step(cfg, hw, args.context)
        what = f"one decode step at context {args.context or cfg.ctx}"
    seconds = time.perf_counter() - t0
    paths = compiled.write(args.output, outs)
    syncs = sum(1 for ins in compiled.program if ins.op is Op.SYNC)
    print(f"compiled {cfg.name} for {hw.name}: {what}")
    print(f"  {len(compiled.program)} instructions ({syncs} SYNC), "
          f"{compiled.scratchpad_words_used}/{hw.asic.scratchpad_words} scratchpad words, "
          f"{seconds:.2f} s")
    print(f"  {summary(compiled.memmap)}")
    for path in paths.values():
        print(f"  wrote {path}")
    sys.stdout.flush()
    return 0

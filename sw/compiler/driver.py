"""Entry points: compile a generation (prefill + decode) or one decode step."""

from __future__ import annotations

import numpy as np

from pimgpt.core.config import HwConfig
from pimgpt.core.errors import plural
from pimgpt.core.isa import Op
from pimgpt.sw.mapper import MappingError, MemoryMap, map_model
from pimgpt.sw.models import ModelConfig

from .lowering import Lowering
from .plan import ScratchPlan
from .program import Builder, CompiledProgram, CompileError, Step
from .schedule import SCHEDULES, make_schedule


class _Compiler:
    """Lowers steps one by one and appends each, scheduled, to one program."""

    def __init__(self, cfg: ModelConfig, hw: HwConfig, mm: MemoryMap, schedule: str):
        if schedule not in SCHEDULES:
            raise CompileError(f"unknown schedule {schedule!r}; use one of {', '.join(SCHEDULES)}")
        self.mm = mm
        self.schedule = make_schedule(schedule, hw)
        self.lower = Lowering(cfg, hw, mm, self.schedule)
        self.out = Builder(hw.dram.banks)
        self.steps: list[Step] = []
        # The preamble (resident parameters), then a SYNC: steps start at a barrier.
        self.lower.preamble()
        program, tags = self.lower.b.take()
        if program:
            self.schedule.place(self.out, program, tags)
            self.out.sync(tags[-1])

    def run_step(self, pos: int, token: int | None, logits: bool) -> None:
        self.steps.append(Step(len(self.out.program), pos, token, logits))
        self.lower.step(pos, token, logits)
        self.steps[-1].plan = self.lower.step_plan()
        program, tags = self.lower.b.take()
        self.schedule.place(self.out, program, tags)

    def finish(self) -> CompiledProgram:
        out = self.out
        out.tag = "end"
        out.sync()
        out.emit(Op.EOC)
        return CompiledProgram(program=out.program, memmap=self.mm, tags=out.tags,
                               scratchpad_words_used=self.lower.P.high, steps=self.steps,
                               schedule=self.schedule.name)


def default_memmap(cfg: ModelConfig, hw: HwConfig, positions: int) -> MemoryMap:
    """The memory map a compile uses when given none: K/V caches for the model's whole context
    when they and their score buffers fit the hardware, else for the ``positions`` the program
    needs (a Llama 3 context of 131072 tokens fits no preset)."""
    try:
        mm = map_model(cfg, hw)
        ScratchPlan(cfg, hw, mm)
        return mm
    except (MappingError, CompileError):
        return map_model(cfg, hw, positions)


def _check_memmap(cfg: ModelConfig, hw: HwConfig, memmap: MemoryMap | None,
                  positions: int) -> MemoryMap:
    if memmap is None:
        return default_memmap(cfg, hw, positions)
    if memmap.cfg != cfg or memmap.hw.dram != hw.dram:
        raise CompileError("the memory map was made for another model or hardware; remap it")
    return memmap


def compile_generation(cfg: ModelConfig, hw: HwConfig, prompt, new_tokens: int,
                       memmap: MemoryMap | None = None,
                       schedule: str = "pipelined") -> CompiledProgram:
    """Prefill ``prompt`` one token per step, then decode ``new_tokens - 1`` more steps.

    The last prefill step and every decode step compute the LM head, ``ARGMAX`` into ``R0`` and
    ``OUT`` it; decode steps read the token embedding by register (``FLAG_VEC_FROM_REG``). The
    output stream of the program is the ``new_tokens`` generated tokens.

    Parameters
    ----------
    cfg, hw : ModelConfig, HwConfig
    prompt : sequence of int
        Token ids, at least one, each below ``cfg.vocab``.
    new_tokens : int
        Tokens to generate (>= 1).
    memmap : MemoryMap, optional
        Placement to use (default :func:`default_memmap`).
    schedule : {"pipelined", "serial"}
        ``"pipelined"`` (default) overlaps vector-unit work with PIM work (software pipelining,
        :class:`.schedule.PipelinedSchedule`); ``"serial"`` is the earlier schedule, kept for
        comparison. Both compute the same values bit for bit.

    Returns
    -------
    CompiledProgram
    """
    prompt = list(prompt)
    if not prompt:
        raise CompileError("the prompt is empty; give at least one token id")
    for tok in prompt:
        if isinstance(tok, bool) or not isinstance(tok, (int, np.integer)) or not (
            0 <= tok < cfg.vocab
        ):
            raise CompileError(
                f"prompt token {tok!r} is not an id in 0..{cfg.vocab - 1} of model {cfg.name}"
            )
    if isinstance(new_tokens, bool) or not isinstance(new_tokens, int) or new_tokens < 1:
        raise CompileError(f"new_tokens must be a positive integer, got {new_tokens!r}")
    total = len(prompt) + new_tokens - 1
    mm = _check_memmap(cfg, hw, memmap, min(total, cfg.ctx))
    if total > mm.context:
        # The last new token is produced but never attended, hence the - 1 in ``total``.
        fixes = []
        if (most := mm.context - len(prompt) + 1) >= 1:
            fixes.append(f"generate at most {plural(most, 'new token')}")
        if (most := mm.context - new_tokens + 1) >= 1:
            fixes.append(f"shorten the prompt to at most {plural(most, 'token')}")
        fix = " or ".join(fixes) or f"give at most {mm.context + 1} prompt and new tokens in all"
        raise CompileError(
            f"{plural(len(prompt), 'prompt token')} + {plural(new_tokens, 'new token')} need "
            f"{total} KV-cache positions (every token but the last new one is cached), but the "
            f"KV cache of model {cfg.name} holds {mm.context}; {fix}"
        )
    comp = _Compiler(cfg, hw, mm, schedule)
    for pos, tok in enumerate(prompt):
        comp.run_step(pos, int(tok), pos == len(prompt) - 1)
    for k in range(1, new_tokens):
        comp.run_step(len(prompt) - 1 + k, None, True)
    return comp.finish()


def compile_decode_step(cfg: ModelConfig, hw: HwConfig, context: int | None = None,
                        memmap: MemoryMap | None = None,
                        schedule: str = "pipelined") -> CompiledProgram:
    """One decode step attending ``context`` tokens (position ``context - 1``).

    The KV cache is assumed to hold the earlier ``context - 1`` tokens. The step reads its token
    from ``R0`` (0 at the start), as a generation's decode step does, and computes the LM head.
    The program may start with a preamble that loads the resident parameters (``steps[0].start``
    is its length); per-token figures exclude it.

    Parameters
    ----------
    cfg, hw : ModelConfig, HwConfig
    context : int, optional
        Tokens attended, 1..cfg.ctx (default ``cfg.ctx``).
    memmap : MemoryMap, optional
    schedule : {"pipelined", "serial"}
        See :func:`compile_generation`.

    Returns
    -------
    CompiledProgram
    """
    if context is None:
        context = cfg.ctx
    if isinstance(context, bool) or not isinstance(context, int) or not 1 <= context <= cfg.ctx:
        raise CompileError(f"context {context!r} is out of range for {cfg.name}; use 1..{cfg.ctx}")
    mm = _check_memmap(cfg, hw, memmap, context)
    if context > mm.context:
        raise CompileError(
            f"context {context} exceeds the memory map's KV-cache capacity {mm.context}; remap"
        )
    comp = _Compiler(cfg, hw, mm, schedule)
    comp.run_step(context - 1, None, True)
    return comp.finish()


def late_norm_positions_upto(cfg: ModelConfig, hw: HwConfig, positions: int) -> set[int]:
    """Positions ``< positions`` whose decode step (:func:`compile_decode_step`, alone) the
    compiler gives ``SOFTMAXU`` (:func:`.traffic.late_norm_positions`): for reference runs
    that compile nothing. Only positions where the configuration allows it are compiled
    (:func:`.attention.late_norm_allowed`), so none for contexts within two vector registers."""
    from .attention import late_norm_allowed
    from .traffic import late_norm_positions

    return {pos for pos in range(min(positions, cfg.ctx)) if late_norm_allowed(hw, pos + 1)
            and late_norm_positions(compile_decode_step(cfg, hw, pos + 1))}

"""Compile GPT and Llama-family generation into a pimgpt program (``docs/isa.md``) computing
``docs/dataflow.md``.

Entry points: :func:`compile_generation` (prefill + decode, the program the golden simulator runs
end to end) and :func:`compile_decode_step` (one decode step at a given context, the workload of
the performance simulator).

Modules
-------
:mod:`.program`
    :class:`CompiledProgram` and its files, :func:`hazards` and the ``SYNC``-placing builder.
:mod:`.lowering`, :mod:`.attention`, :mod:`.plan`
    Model step -> instructions in program order (GEMVs, attention, the scratchpad plan).
:mod:`.schedule`
    Schedule strategies (``pipelined``, ``serial``): how finely work is split and where the
    ``SYNC``\\ s go (the list scheduler and its cost model).
:mod:`.accum`
    The banks' MAC accumulators as a pool (batched reads, exact spills).
:mod:`.traffic`
    K/V-cache traffic of a compiled step against the grouped-query ideal; its attention plan.
:mod:`.driver`
    The entry points.
"""

from .driver import compile_decode_step, compile_generation, default_memmap
from .program import (
    PREAMBLE_TAG,
    PROGRAM_FILES,
    TOKEN_REG,
    CompiledProgram,
    CompileError,
    Step,
    hazards,
    preamble_length,
    program_outputs,
)
from .schedule import SCHEDULES
from .traffic import attention_plan, kv_traffic, late_norm_positions

__all__ = ["PREAMBLE_TAG", "PROGRAM_FILES", "SCHEDULES", "TOKEN_REG", "CompileError",
           "CompiledProgram", "Step", "attention_plan", "compile_decode_step",
           "compile_generation", "default_memmap", "hazards", "kv_traffic",
           "late_norm_positions", "preamble_length", "program_outputs"]

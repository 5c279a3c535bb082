"""K/V-cache traffic of a compiled step against the grouped-query ideal (``docs/dataflow.md``),
and the attention plan the compiler chose for it.

The attention MACs of a step (tags ``L*.attn.score`` and ``L*.attn.av``) are read from the
program, not simulated: the bytes they stream out of the banks (bank-columns x column bytes), the
rows they open (a MAC on another row than the one its bank last streamed; refresh, which also
closes rows, is left out) and the rows they touch. The *ideal* streams every attended K and V
element once: ``2 * n_layer * (pos + 1) * kv_dim`` elements, each row once; multi-head attention
streams ``group`` times that (every query head its own K/V head).
"""

from __future__ import annotations

from pimgpt.core.isa import Op
from pimgpt.sw.models import ModelConfig

from .program import CompiledProgram

_KINDS = (".attn.score", ".attn.av")


def kv_traffic(comp: CompiledProgram, cfg: ModelConfig, step: int = -1) -> dict:
    """The K/V traffic of step ``step`` of ``comp`` (default: the last).

    Parameters
    ----------
    comp : CompiledProgram
        A compiled program of ``cfg``.
    cfg : ModelConfig
    step : int
        Index into ``comp.steps``.

    Returns
    -------
    dict
        ``kv_bytes`` (streamed by the attention MACs), ``kv_bytes_ideal`` (every attended K/V
        element once, bf16), ``kv_bytes_mha`` (each query head streaming its K/V head: ``group``
        times the ideal), ``kv_over_ideal``; ``kv_row_opens``, ``kv_rows`` (distinct bank rows
        touched: the ideal opens each once) and ``kv_row_opens_over_ideal``.
    """
    hw = comp.memmap.hw.dram
    st = comp.steps[step]
    _, hi = _step_range(comp, step)
    last: dict = {}  # (channel, bank) -> row its last MAC streamed
    opens = cols = 0
    touched: set = set()
    for ins, tag in zip(comp.program[st.start:hi], comp.tags[st.start:hi], strict=True):
        if ins.op not in (Op.MAC_ABK, Op.MAC_SBK):
            continue
        a = ins.args
        chans = [c for c in range(hw.channels) if a["ch_mask"] >> c & 1]
        banks = range(hw.banks) if ins.op is Op.MAC_ABK else (a["bank"],)
        kv = tag.endswith(_KINDS)
        for c in chans:
            for bank in banks:
                if kv:
                    if last.get((c, bank)) != a["row"]:
                        opens += 1
                    touched.add((c, bank, a["row"]))
                last[(c, bank)] = a["row"]
        if kv:
            cols += a["ncols"] * len(chans) * len(banks)
    ideal = 2 * cfg.n_layer * (st.pos + 1) * cfg.kv_dim * 2
    kv_bytes = cols * hw.column_bytes
    return {
        "kv_bytes": kv_bytes,
        "kv_bytes_ideal": ideal,
        "kv_bytes_mha": ideal * cfg.group,
        "kv_over_ideal": kv_bytes / ideal,
        "kv_row_opens": opens,
        "kv_rows": len(touched),
        "kv_row_opens_over_ideal": opens / len(touched) if touched else None,
    }


def attention_plan(comp: CompiledProgram, step: int = -1) -> dict | None:
    """The attention plan of step ``step`` of ``comp`` (default: the last), as the compiler
    recorded it (``Step.plan``: ``head_groups``, ``value_projection_late``, ``merged_av``,
    ``deferred_av``, ``unnormalised_softmax``; :meth:`.lowering.Lowering.step_plan`,
    ``docs/dataflow.md``, "Attention schedule"). The compiler decides it once per step, for
    every layer. ``None`` for a step without attention, or a program the compiler did not
    record (no steps, or read from files)."""
    if not comp.steps or comp.steps[step].plan is None:
        return None
    return dict(comp.steps[step].plan)


def late_norm_positions(comp: CompiledProgram) -> set[int]:
    """Positions of the steps of ``comp`` whose plan (``Step.plan``, as the compiler recorded
    it) normalises after ``p . V`` (``unnormalised_softmax``): what the reference models are
    told (``PimModel(late_norm_at=)``). A program without the record (read from files) has
    none."""
    return {s.pos for s in comp.steps if s.plan and s.plan["unnormalised_softmax"]}


def _step_range(comp: CompiledProgram, step: int) -> tuple[int, int]:
    """The instructions ``[lo, hi)`` of step ``step`` of ``comp`` (an index into its steps)."""
    steps = comp.steps
    k = steps.index(steps[step])
    hi = steps[k + 1].start if k + 1 < len(steps) else len(comp.program)
    return steps[k].start, hi

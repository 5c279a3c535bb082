"""Statistics of a simulated program: totals, per-token figures (prefill and decode apart),
energy, row hits, MAC utilisation and the breakdowns of :mod:`pimgpt.sim.perf.report`.

:func:`summarize` is what every consumer of the perf engine reports (``pimgpt run --backend perf``,
``pimgpt paper``, the sweep, the benches); :func:`simulate_model` compiles a model and simulates it.
"""

from __future__ import annotations

import numpy as np

from pimgpt.sim.perf.energy import counter_diff, energy_of
from pimgpt.sim.perf.engine import PerfEngine, PerfResult
from pimgpt.sim.perf.report import (
    MAC_OPS,
    attribute,
    breakdown,
    dram_figures,
    range_begin,
    side_times,
)

__all__ = ["summarize", "run_compiled", "simulate_model", "format_summary"]


def _range_stats(res: PerfResult, hw, tags, lo: int, hi: int, c0: dict, c1: dict,
                 t0: int, t1: int, program=None) -> dict:
    cycles = max(t1 - t0, 0)
    cnt = counter_diff(c0, c1)
    en = energy_of(cnt, cycles, hw)
    acc, acts = cnt["bank_col_accesses"], cnt["bank_acts"]
    floor = cnt["mac_bank_cols"] / res.slots * res.nccdl
    mac = np.isin(res.op_codes[lo:hi], [int(op) for op in MAC_OPS])
    mac_busy = int(res.busy[lo:hi][mac].sum())
    attributed = attribute(res, tags, lo, hi)  # shared by the breakdown and the side times
    dram = dram_figures(res, cnt, program, tags, hw, lo, hi)
    return {
        "cycles": int(cycles),
        "latency_ns": cycles * res.tck_ns,
        "energy_nj": en["total_nj"],
        "energy_by_component_nj": en["by_component_nj"],
        "row_hit_rate": max(0.0, 1 - acts / acc) if acc else 0.0,
        "mac_utilization": floor / cycles if cycles else 0.0,
        # The same floor against the time the MAC instructions themselves took (activation,
        # precharge and column streaming; not the ASIC work or data transfers around them).
        "mac_busy_efficiency": floor / mac_busy if mac_busy else 0.0,
        "mac_bytes": cnt["mac_bank_cols"] * hw.dram.column_bytes,
        "commands": cnt["counts"],
        **breakdown(res, tags, lo, hi, attributed),
        **side_times(res, lo, hi, attributed),
        "dram": dram,
        "latency_bound_ns": dram["latency_bound_cycles"] * res.tck_ns,
    }


def summarize(res: PerfResult, hw, tags, steps=None, program=None) -> dict:
    """Statistics of a run: totals, per-token figures and breakdowns.

    Parameters
    ----------
    res : PerfResult
    hw : HwConfig
    tags : list of str or None
        Instruction tags (``CompiledProgram.tags``).
    steps : list of Step, optional
        Generation steps (``CompiledProgram.steps``): splits prefill (prompt tokens) and decode.
        Without them, a program that starts with a preamble (resident parameters, tagged
        ``preamble``) is one decode step after it, if the run marked the preamble's end.
    program : list of Instr, optional
        The simulated program (for the ideal pin bytes of ``dram``; ``None`` leaves them out).

    Returns
    -------
    dict
        Per part (``preamble``, ``prefill``, ``decode``; ``whole`` for the program) its
        statistics, the breakdowns of each adding up to its ``latency_ns`` (the parts cut the
        program's time at :func:`~pimgpt.sim.perf.report.range_begin` of their first
        instructions). At the top level, ``cycles``, ``latency_ns``, ``energy_nj``,
        ``row_hit_rate`` and ``mac_utilization`` are those of the whole program; the
        ``*_per_token`` figures, ``breakdown_*``, ``mac_busy_efficiency`` and ``dram`` those of
        the per-token part (decode, or prefill without decode; a program without steps is one
        decode step), ``breakdown_*`` and ``dram`` totalled over its tokens.
    """
    from pimgpt.sw.compiler import Step, preamble_length

    if not steps and tags is not None:
        pre = preamble_length(tags)
        if pre and pre in res.marks:
            steps = [Step(pre, None, None, True)]
    zero = {k: (dict.fromkeys(v, 0) if isinstance(v, dict) else 0)
            for k, v in res.counters().items()}
    whole = _range_stats(res, hw, tags, 0, res.n_instr, zero, res.counters(), 0, res.cycles,
                         program)
    out = {
        "hw": res.hw_name,
        "instructions": res.n_instr,
        "cycles": res.cycles,
        "tck_ns": res.tck_ns,
        "latency_ns": whole["latency_ns"],
        "energy_nj": whole["energy_nj"],
        "row_hit_rate": whole["row_hit_rate"],
        "mac_utilization": whole["mac_utilization"],
        "sim_wall_s": res.wall_s,
        "whole": whole,
    }
    if what_ifs := idealisations(hw):
        out["idealised"] = what_ifs
    if not steps:
        out["tokens"] = 1
        out["latency_ns_per_token"] = whole["latency_ns"]
        out["energy_nj_per_token"] = whole["energy_nj"]
        out["decode"] = whole
        return _top_breakdowns(out, whole)
    bounds = [s.start for s in steps] + [res.n_instr]
    # Instructions before the first step are the preamble (resident parameters, loaded once per
    # generation): reported apart, outside every per-token figure.
    # A part runs from the completion of everything before it to the next part's beginning: the
    # boundaries at which ``attribute`` charges it, so its breakdowns add up to its latency.
    ends = [range_begin(res, b) for b in bounds[:-1]] + [res.cycles]
    final = res.counters()

    def snap(i):
        return res.marks.get(i, final) if i < res.n_instr else final
    n_prefill = sum(1 for s in steps if s.token is not None)
    parts = {}
    if bounds[0]:
        parts["preamble"] = _range_stats(res, hw, tags, 0, bounds[0], zero, snap(bounds[0]), 0,
                                         ends[0], program)
    for name, k0, k1 in (("prefill", 0, n_prefill), ("decode", n_prefill, len(steps))):
        if k1 <= k0:
            continue
        st = _range_stats(res, hw, tags, bounds[k0], bounds[k1], snap(bounds[k0]),
                          snap(bounds[k1]), ends[k0], ends[k1], program)
        st["tokens"] = k1 - k0
        st["latency_ns_per_token"] = st["latency_ns"] / st["tokens"]
        st["energy_nj_per_token"] = st["energy_nj"] / st["tokens"]
        parts[name] = st
    out.update(parts)
    out["tokens"] = len(steps)
    per = parts.get("decode", parts.get("prefill"))
    out["latency_ns_per_token"] = per["latency_ns_per_token"]
    out["energy_nj_per_token"] = per["energy_nj_per_token"]
    return _top_breakdowns(out, per)


def _top_breakdowns(out: dict, part: dict) -> dict:
    """Copy the per-token part's breakdowns to the top level of the statistics (keys
    ``breakdown_*``, totals of that part: they add up to its latency, not the program's)."""
    for key in ("by_layer_ns", "by_kind_ns", "by_class_ns", "energy_by_component_nj"):
        out[f"breakdown_{key}"] = part[key]
    tokens = part.get("tokens", 1)
    for key in ("mac_busy_efficiency", "dram"):
        out[key] = part[key]
    for key in ("pim_busy_ns", "asic_busy_ns", "asic_exposed_ns", "hidden_ns",
                "latency_bound_ns"):
        out[f"{key[:-3]}_ns_per_token"] = part[key] / tokens
    return out


def idealisations(hw) -> list[str]:
    """The what-if options of ``hw`` that no silicon (and no RTL) has.

    Parameters
    ----------
    hw : HwConfig

    Returns
    -------
    list of str
        ``"key: what"`` each (``asic.vector_unit_ideal``; ``dram.mode_switch: false`` on a
        standard with modes): the run's figures are bounds, not a machine's, and
        :func:`summarize` records them as ``idealised``, which the summary prints first.
    """
    from pimgpt.core.dram import mode_switching, standard_of

    out = []
    if hw.asic.vector_unit_ideal:
        out.append("asic.vector_unit_ideal: every vector instruction in one cycle")
    if standard_of(hw).has_modes and not mode_switching(hw):
        out.append(f"dram.mode_switch: false: {hw.dram.standard} without its register-access "
                   "mode switches")
    return out


def run_compiled(comp, hw, log: bool = False) -> tuple[PerfResult, dict]:
    """Simulate a compiled program; statistics per part (preamble, prefill, decode).

    Parameters
    ----------
    comp : pimgpt.sw.compiler.CompiledProgram
    hw : HwConfig
    log : bool
        Keep the command log.

    Returns
    -------
    (PerfResult, dict)
        The run and :func:`summarize` of it by the program's steps, with the last step's
        ``attention_plan`` (:func:`pimgpt.sw.compiler.attention_plan`) where the compiler
        recorded one.
    """
    from pimgpt.sw.compiler import attention_plan

    res = PerfEngine(hw).run(comp.program, log=log, marks=[s.start for s in comp.steps])
    stats = summarize(res, hw, comp.tags, comp.steps, comp.program)
    plan = attention_plan(comp)
    if plan:  # the compiler's record (a program read from files has none)
        stats["attention_plan"] = plan
    return res, stats


def simulate_model(model, hw, context=None, prompt=None, new_tokens: int = 1, log=False):
    """Compile and simulate; returns ``(compiled program, PerfResult, summary dict)``.

    Without ``prompt``, one decode step at ``context`` (default: the model's maximum). With
    ``prompt``, the whole generation; ``context`` is then the KV-cache capacity, as for
    ``pimgpt compile --prompt`` (default: the model's maximum).
    """
    from pimgpt.sw.compiler import compile_decode_step, compile_generation
    from pimgpt.sw.mapper import map_model

    if prompt is not None:
        memmap = map_model(model, hw, context) if context is not None else None
        comp = compile_generation(model, hw, prompt, new_tokens, memmap)
    else:
        comp = compile_decode_step(model, hw, context)
    res, stats = run_compiled(comp, hw, log)
    stats["model"] = model.name
    stats["context"] = context
    return comp, res, stats


def format_summary(stats: dict) -> str:
    """The lines ``pimgpt run --backend perf`` prints: totals, then per part time, energy, row
    hits, the bank-bandwidth floor reached and the time by instruction class."""
    lines = [f"model {stats['model']} on {stats['hw']}: {stats['instructions']} instructions, "
             f"{stats['cycles']} cycles (simulated in {stats['sim_wall_s']:.2f} s)"]
    for what_if in stats.get("idealised", ()):
        lines.append(f"  what-if, not a buildable machine: {what_if}")
    for part in ("prefill", "decode"):
        st = stats.get(part)
        if st is None:
            continue
        cls = st["by_class_ns"]
        tot = sum(cls.values()) or 1.0
        lines.append(
            f"  {part}: {st.get('tokens', 1)} token(s), "
            f"{st.get('latency_ns_per_token', st['latency_ns']) / 1e3:.2f} us/token, "
            f"{st.get('energy_nj_per_token', st['energy_nj']) / 1e3:.2f} uJ/token, "
            f"row hits {st['row_hit_rate'] * 100:.2f} %, "
            f"bank-bandwidth floor reached {st['mac_utilization'] * 100:.1f} %")
        lines.append("    time: " + ", ".join(f"{k} {v / tot * 100:.1f} %" for k, v in cls.items()))
        lines.append(_fmt_sides(st))
        lines.append(_fmt_dram(st["dram"], st.get("tokens", 1)))
    if stats.get("attention_plan"):
        lines.append(_fmt_plan(stats["attention_plan"]))
    return "\n".join(lines)


def _fmt_sides(st: dict) -> str:
    n = st.get("tokens", 1)
    lat = st["latency_ns"] or 1.0
    return (f"    PIM busy {st['pim_busy_ns'] / n / 1e3:.2f} us/token, vector unit busy "
            f"{st['asic_busy_ns'] / n / 1e3:.2f} us/token of which exposed "
            f"{st['asic_exposed_ns'] / n / 1e3:.2f} (ASIC share {st['asic_exposed_ns'] / lat:.1%})"
            f", hidden {st['hidden_ns'] / n / 1e3:.2f}")


def _fmt_dram(d: dict, n: int) -> str:
    def ratio(v):
        return "-" if v is None else f"{v:.2f}x"
    pins = "-" if d["ideal_pin_bytes"] is None else f"{d['ideal_pin_bytes'] / n / 1e3:.1f}"
    return (f"    PIM busy / bank-bandwidth floor {ratio(d['pim_busy_over_floor'])} (lower bound "
            f"{ratio(d['pim_busy_bound_over_floor'])}; latency lower bound "
            f"{ratio(d['latency_bound_over_floor'])}, refresh included); activations "
            f"{d['bank_activations'] / n:.0f}/token ({ratio(d['activations_over_ideal'])} the "
            f"whole-row ideal); pins {d['pin_bytes'] / n / 1e3:.1f} kB/token (ideal {pins}, "
            f"{ratio(d['pin_bytes_over_ideal'])}); register-mode visits "
            f"{d['register_mode_visits'] / n:.0f}/token per channel")


def _fmt_plan(plan: dict) -> str:
    """The last step's attention plan (``sw.compiler.attention_plan``) in words."""
    k = plan["head_groups"]
    parts = [f"{k} head group{'s' if k != 1 else ''}"]
    for key, words in (("value_projection_late", "value projection under the first softmaxes"),
                       ("merged_av", "one p . V after the grouped softmaxes"),
                       ("deferred_av", "the last p . V after the projection's first chunk"),
                       ("unnormalised_softmax", "softmax normalised after p . V (SOFTMAXU)")):
        if plan.get(key):
            parts.append(words)
    return "    attention plan (last step): " + ", ".join(parts)

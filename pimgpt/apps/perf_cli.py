"""``pimgpt run --backend perf``: compile a model, simulate it, print and save the statistics.

Without ``--prompt`` one decode step at ``--context`` (default: the model's maximum context) is
simulated. With ``--prompt`` the whole generation (prefill of the prompt, one token per step, then
``--new-tokens - 1`` decode steps) is simulated and prefill and decode are reported separately;
``--context`` is then the KV-cache capacity (as for ``pimgpt compile --prompt``).
"""

from __future__ import annotations

from pimgpt.core.config import load_hw
from pimgpt.core.errors import PimgptError
from pimgpt.core.fileio import Outputs, atomic_write_json
from pimgpt.sim.perf.energy import counter_diff, energy_of
from pimgpt.sim.perf.engine import PerfEngine, PerfResult
from pimgpt.sim.perf.report import MAC_OPS, breakdown
from pimgpt.sw.models import get_model
from pimgpt.sw.prompt import prompt_from_args


class PerfCliError(PimgptError):
    """Bad arguments of the perf backend."""


def _range_stats(res: PerfResult, hw, tags, lo: int, hi: int, c0: dict, c1: dict,
                 t0: int, t1: int) -> dict:
    cycles = max(t1 - t0, 0)
    cnt = counter_diff(c0, c1)
    en = energy_of(cnt, cycles, hw)
    acc, acts = cnt["bank_col_accesses"], cnt["bank_acts"]
    floor = cnt["mac_bank_cols"] / res.slots * res.nccdl
    mac_busy = sum(int(res.busy[i]) for i in range(lo, hi) if res.ops[i] in MAC_OPS)
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
        "mac_bytes": cnt["mac_bank_cols"] * 32,
        "commands": cnt["counts"],
        **breakdown(res, tags, lo, hi),
    }


def summarize(res: PerfResult, hw, tags, steps=None) -> dict:
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
    """
    from pimgpt.sw.compiler import Step, preamble_length

    if not steps and tags is not None:
        pre = preamble_length(tags)
        if pre and pre in res.marks:
            steps = [Step(pre, None, None, True)]
    zero = {k: (dict.fromkeys(v, 0) if isinstance(v, dict) else 0)
            for k, v in res.counters().items()}
    whole = _range_stats(res, hw, tags, 0, res.n_instr, zero, res.counters(), 0, res.cycles)
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
    if not steps:
        out["tokens"] = 1
        out["latency_ns_per_token"] = whole["latency_ns"]
        out["energy_nj_per_token"] = whole["energy_nj"]
        out["decode"] = whole
        return _top_breakdowns(out, whole)
    bounds = [s.start for s in steps] + [res.n_instr]
    # Instructions before the first step are the preamble (resident parameters, loaded once per
    # generation): reported apart, outside every per-token figure.
    ends = [int(res.end[:bounds[0]].max()) if bounds[0] else 0]
    for k in range(len(steps)):
        hi = bounds[k + 1]
        ends.append(int(res.end[bounds[k]:hi].max()) if hi > bounds[k] else ends[-1])
    ends[-1] = res.cycles
    final = res.counters()

    def snap(i):
        return res.marks.get(i, final) if i < res.n_instr else final
    n_prefill = sum(1 for s in steps if s.token is not None)
    parts = {}
    if bounds[0]:
        parts["preamble"] = _range_stats(res, hw, tags, 0, bounds[0], zero, snap(bounds[0]), 0,
                                         ends[0])
    for name, k0, k1 in (("prefill", 0, n_prefill), ("decode", n_prefill, len(steps))):
        if k1 <= k0:
            continue
        st = _range_stats(res, hw, tags, bounds[k0], bounds[k1], snap(bounds[k0]),
                          snap(bounds[k1]), ends[k0], ends[k1])
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
    """Copy the per-token part's breakdowns to the top level of the statistics."""
    for key in ("by_layer_ns", "by_kind_ns", "by_class_ns", "energy_by_component_nj"):
        out[f"breakdown_{key}"] = part[key]
    out["mac_busy_efficiency"] = part["mac_busy_efficiency"]
    return out


def write_json_atomic(path, data) -> None:
    """Write JSON through a temporary file and a rename, so no partial file is left."""
    atomic_write_json(path, data, indent=1)


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
        The run and :func:`summarize` of it by the program's steps.
    """
    res = PerfEngine(hw).run(comp.program, log=log, marks=[s.start for s in comp.steps])
    return res, summarize(res, hw, comp.tags, comp.steps)


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


def _fmt(stats: dict) -> str:
    lines = [f"model {stats['model']} on {stats['hw']}: {stats['instructions']} instructions, "
             f"{stats['cycles']} cycles (simulated in {stats['sim_wall_s']:.2f} s)"]
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
    return "\n".join(lines)


def cli_run(args) -> int:
    """Entry point of ``pimgpt run --backend perf``."""
    outs = Outputs({"--stats": getattr(args, "stats", None),
                    "--timeline": getattr(args, "timeline", None)})
    model = get_model(args.model)
    hw = load_hw(args.hw)
    prompt = prompt_from_args(args, model, default=None)
    context = getattr(args, "context", None)
    if context is not None or prompt is None:
        context = model.ctx if context is None else context
        if isinstance(context, bool) or not isinstance(context, int) or not (
                1 <= context <= model.ctx):
            raise PerfCliError(f"--context {context!r} is out of range for {model.name}; "
                               f"use 1..{model.ctx}")
    new_tokens = getattr(args, "new_tokens", 1)
    if isinstance(new_tokens, bool) or not isinstance(new_tokens, int) or new_tokens < 1:
        raise PerfCliError(f"--new-tokens must be at least 1, got {new_tokens!r}")
    comp, res, stats = simulate_model(model, hw, context, prompt, new_tokens, log=False)
    print(_fmt(stats))
    # Outputs are committed together once everything has been computed.
    with outs:
        if "--timeline" in outs:
            from pimgpt.sim.perf.timeline import trace_events

            outs.write_json("--timeline", trace_events(res, comp.tags, comp.program),
                            separators=(",", ":"))
        if "--stats" in outs:
            outs.write_json("--stats", stats, indent=1)
        outs.commit()
    if "--stats" in outs:
        print(f"statistics: {args.stats}")
    if "--timeline" in outs:
        print(f"timeline: {args.timeline} (open in ui.perfetto.dev)")
    return 0

"""``pimgpt paper``: the PIM-GPT evaluation on the perf simulator.

For the 8 presets of the paper (``sw.models.PAPER_MODELS``) and context lengths 128, 256, 512, 1024
(and 2048 for the GPT-3 models) one decode step is compiled and simulated, once on the hardware as
configured, once with ``dram.act_overlap: true`` (the second row buffer that hides activation) and,
when the DRAM standard switches modes, once with ``dram.mode_switch: false`` (the idealised
variant, to report what the switches cost).
Measured GPU (H200) and CPU baselines ship with the package (``pimgpt/data/baselines``, provenance
in its README; ``$PIMGPT_ANCHORS`` names another folder), matched by model and context, both modes
(``hf-eager`` and ``graph``).
Two small sweeps follow: channel scaling (gpt2-medium, context 1024, 4-32 channels) and the
vector unit's width (gpt3-xl, context 2048), the two claims of the paper they test; a third, of
the number of vector units (``paper_llama.UNITS_SWEEPS``: gpt2-small at context 128 and gpt3-small
at 2048 on the default hardware, llama-3.2-1b on 32 channels at 4096; each where its family runs)
comes last. The Llama presets (and any other model that is not GPT-2-style named in
``--models``) run on the 16- and 32-channel presets (on ``--hw`` where one is given), contexts
128-4096 where they fit (:mod:`pimgpt.apps.paper_llama`).

The points are independent: they run side by side on Dask (:mod:`pimgpt.apps.tasks`; an embedded
cluster of one worker per core, ``--workers N``, or ``--scheduler ADDR``), and the report is the
same wherever they ran.

Outputs in ``-o DIR`` (written to a temporary folder first, moved in place at the end):
``results.md`` (tables), ``results.csv``, ``scaling.csv``, ``lanes.csv``, ``llama.csv``,
``units.csv`` and PNG plots.
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
import shutil
import tempfile
from importlib import resources
from pathlib import Path

from pimgpt.apps.paper_llama import (
    LLAMA_HW,
    llama_markdown,
    llama_plan,
    llama_plot,
    simulate_llama_point,
    simulate_units_point,
    units_markdown,
    units_plan,
)
from pimgpt.apps.tasks import run_tasks
from pimgpt.core.config import hw_variant, load_hw
from pimgpt.core.dram import mode_switching
from pimgpt.core.errors import PimgptError
from pimgpt.core.fileio import Outputs, check_directory, read_text
from pimgpt.sim.perf.summary import run_compiled, simulate_model
from pimgpt.sw.compiler import attention_plan
from pimgpt.sw.models import LLAMA_MODELS, PAPER_MODELS, get_model

DEFAULT_CONTEXTS = (128, 256, 512, 1024, 2048)
SCALING_MODEL, SCALING_CTX, SCALING_CHANNELS = "gpt2-medium", 1024, (4, 8, 16, 32)
LANES_MODEL, LANES_CTX, LANES = "gpt3-xl", 2048, (16, 32, 64, 128)
#: Board power of the GPU baseline used only for a rough energy-per-token estimate: NVIDIA H200
#: SXM, configurable TDP up to 700 W (vendor specification). Decode at batch 1 draws less, so the
#: GPU energy below is an upper bound and the efficiency ratio an optimistic one.
GPU_TDP_W = 700.0


class PaperError(PimgptError):
    """Bad arguments of ``pimgpt paper``."""


def anchors_dir() -> Path | None:
    """``$PIMGPT_ANCHORS`` if set (``None`` when it is not a folder), else the shipped baselines."""
    env = os.environ.get("PIMGPT_ANCHORS")
    if env:
        return Path(env) if Path(env).is_dir() else None
    return Path(str(resources.files("pimgpt") / "data" / "baselines"))


def load_anchors(folder: Path | None) -> dict:
    """``{(device, mode, model, ctx): median seconds}`` from the anchors' JSON-lines files."""
    out: dict = {}
    if folder is None:
        return out
    for path, dev in (("gpu_h200_decode.jsonl", "gpu"), ("cpu_xeon16_decode.jsonl", "cpu")):
        f = folder / path
        if not f.is_file():
            continue
        for line in read_text(f, "baseline file", PaperError).splitlines():
            line = line.strip()
            if not line or line.startswith("#"):
                continue
            try:
                rec = json.loads(line)
            except json.JSONDecodeError:
                continue
            try:
                key = (dev, str(rec["mode"]), str(rec["model"]), int(rec["ctx"]))
                seconds = float(rec["median_s"])
            except (KeyError, TypeError, ValueError, OverflowError):
                continue  # not a measurement record (or a malformed one): no anchor from it
            if math.isfinite(seconds) and seconds > 0:
                out[key] = seconds
    return out


#: An example value of each list option, for the fix of a bad one.
LIST_EXAMPLES = {"models": "gpt2-small,gpt2-xl", "contexts": "128,1024"}


def _parse_list(text, what, cast):
    fix = f"give e.g. --{what} {LIST_EXAMPLES[what]}"
    try:
        vals = [cast(x.strip()) for x in text.split(",") if x.strip()]
    except ValueError:
        raise PaperError(f"--{what} {text!r} is not a comma-separated list; {fix}") from None
    if not vals:
        raise PaperError(f"--{what} is empty; {fix}")
    return list(dict.fromkeys(vals))  # a name or length given twice is one point


def _check_contexts(contexts) -> None:
    for c in contexts or ():
        if c < 1:
            raise PaperError(f"context {c} is not a positive number of tokens; give lengths of "
                             f"at least 1, e.g. --contexts {LIST_EXAMPLES['contexts']}")


def split_models(models) -> tuple[list, list]:
    """``(GPT-2-style, others)`` of the requested models (default: the paper's and the Llama
    presets); the others go to the Llama section."""
    if not models:
        return list(PAPER_MODELS), list(LLAMA_MODELS)
    gpt = [n for n in models if get_model(n).family == "gpt2"]
    return gpt, [n for n in models if n not in gpt]


def plan(models=None, contexts=None, strict: bool = True) -> list[tuple[str, int]]:
    """(model, context) points: every requested context the model's KV cache holds (contexts
    beyond a model's maximum are skipped for that model); ``strict``: none is an error."""
    names = models or PAPER_MODELS
    for n in names:
        get_model(n)  # raises a one-line error for unknown names
    _check_contexts(contexts)
    pts = []
    for n in names:
        cfg = get_model(n)
        pts += [(n, c) for c in (contexts or DEFAULT_CONTEXTS) if c <= cfg.ctx]
    if strict and not pts:
        raise PaperError(_none_fit(names, contexts))
    return pts


def _none_fit(names, contexts, skipped=()) -> str:
    """The message for a plan without a point, with its fix: where the hardware could not hold a
    model at a context it has (``skipped``: the Llama plan's), a larger ``--hw``; else contexts
    the models hold."""
    if skipped:
        model, hw_name, ctx, why = skipped[0]
        return (f"{model} does not fit {hw_name} at context {ctx} ({why}); give a larger --hw, "
                "e.g. pimgpt-gddr6-32ch, or drop it from --models")
    tried = ", ".join(map(str, contexts or DEFAULT_CONTEXTS))
    most = ", ".join(f"{n} {get_model(n).ctx}" for n in names)
    return (f"no model among {', '.join(names)} holds any of the contexts {tried} (the longest "
            f"each holds: {most}); give --contexts up to those")


def simulate_point(model: str, ctx: int, hw, hw_overlap=None, hw_noswitch=None) -> dict:
    """One decode step: statistics on ``hw`` (and the gain with ``hw_overlap``, the cost of the
    mode switches against ``hw_noswitch``)."""
    cfg = get_model(model)
    comp, res, st = simulate_model(cfg, hw, context=ctx)
    dec = st["decode"]  # the step alone (a preamble of resident parameters is excluded)
    cls = dec["by_class_ns"]
    tot = sum(cls.values()) or 1.0
    d = dec["dram"]
    row = {
        "model": model, "ctx": ctx,
        "latency_us": st["latency_ns_per_token"] / 1e3,
        "energy_uj": st["energy_nj_per_token"] / 1e3,
        "row_hit_rate": dec["row_hit_rate"],
        "mac_utilization": dec["mac_utilization"],
        "mac_busy_efficiency": dec["mac_busy_efficiency"],
        **{f"frac_{k}": v / tot for k, v in cls.items()},
        "pim_busy_us": dec["pim_busy_ns"] / 1e3,
        "asic_busy_us": dec["asic_busy_ns"] / 1e3,
        "asic_exposed_us": dec["asic_exposed_ns"] / 1e3,
        "pim_busy_over_floor": d["pim_busy_over_floor"],
        "pim_busy_bound_over_floor": d["pim_busy_bound_over_floor"],
        "latency_bound_us": st["latency_bound_ns_per_token"] / 1e3,
        "activations_over_ideal": d["activations_over_ideal"],
        "pin_bytes_over_ideal": d["pin_bytes_over_ideal"],
        "register_mode_visits": d["register_mode_visits"],
        **(attention_plan(comp) or {}),  # the compiler's head groups and value projection
        "sim_wall_s": res.wall_s,
    }
    if hw_overlap is not None:
        _, ovs = run_compiled(comp, hw_overlap)
        ovs = ovs["decode"]
        row["latency_overlap_us"] = ovs["latency_ns"] / 1e3
        row["mac_utilization_overlap"] = ovs["mac_utilization"]
        row["mac_busy_efficiency_overlap"] = ovs["mac_busy_efficiency"]
        row["overlap_speedup"] = dec["latency_ns"] / ovs["latency_ns"]
        row["pim_busy_over_floor_overlap"] = ovs["dram"]["pim_busy_over_floor"]
        row["pim_busy_bound_over_floor_overlap"] = ovs["dram"]["pim_busy_bound_over_floor"]
        row["latency_bound_overlap_us"] = ovs["latency_bound_ns"] / ovs.get("tokens", 1) / 1e3
    if hw_noswitch is not None:
        nss = run_compiled(comp, hw_noswitch)[1]["decode"]
        row["latency_noswitch_us"] = nss["latency_ns"] / 1e3
        row["pim_busy_noswitch_us"] = nss["pim_busy_ns"] / 1e3
    return row


def add_baselines(row: dict, anchors: dict) -> None:
    for dev in ("gpu", "cpu"):
        for mode in ("graph", "hf-eager"):
            s = anchors.get((dev, mode, row["model"], row["ctx"]))
            key = f"{dev}_{mode.replace('-', '_')}"
            row[f"{key}_ms"] = s * 1e3 if s is not None else None
            row[f"speedup_{key}"] = s * 1e6 / row["latency_us"] if s is not None else None
    g = row.get("gpu_graph_ms")
    row["gpu_energy_uj_tdp"] = g * GPU_TDP_W * 1e3 if g is not None else None


def _csv(rows: list[dict]) -> str:
    keys = list(dict.fromkeys(k for r in rows for k in r))
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=keys)
    w.writeheader()
    for r in rows:
        w.writerow({k: ("" if r.get(k) is None else r.get(k)) for k in keys})
    return buf.getvalue()


def _f(v, fmt):
    return "-" if v is None else format(v, fmt)


def markdown(rows, scaling, lanes, hw_name, anchors_found) -> str:
    out = [f"# PIM-GPT evaluation on the perf simulator ({hw_name})", "",
           "One decode step (batch 1) per model and context. Latency and energy per token; "
           "speedup = baseline median latency / simulated latency (baselines: "
           "`pimgpt/data/baselines`"
           f"{'' if anchors_found else ', not found: no speedups'}); floor = achieved fraction "
           "of the bank-bandwidth floor over the whole token; MAC eff = the same floor against "
           "the time of the MAC instructions alone; `+ovl` = with `dram.act_overlap: true`.", "",
           "| model | ctx | us/token | uJ/token | row hits | floor | MAC eff | MAC eff +ovl | "
           "gain +ovl | GEMV | attn | ASIC | I/O | x GPU graph | x GPU eager | x CPU graph | "
           "x CPU eager |",
           "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        out.append(
            f"| {r['model']} | {r['ctx']} | {r['latency_us']:.1f} | {r['energy_uj']:.0f} | "
            f"{r['row_hit_rate'] * 100:.2f} % | {r['mac_utilization'] * 100:.1f} % | "
            f"{r['mac_busy_efficiency'] * 100:.1f} % | "
            f"{_f(r.get('mac_busy_efficiency_overlap'), '.1%')} | "
            f"{_f(r.get('overlap_speedup'), '.3f')}x | "
            f"{r['frac_gemv'] * 100:.1f} % | {r['frac_attention'] * 100:.1f} % | "
            f"{r['frac_asic'] * 100:.1f} % | {r['frac_io'] * 100:.1f} % | "
            + " | ".join(_f(r.get(f"speedup_{k}"), ".2f") for k in
                         ("gpu_graph", "gpu_hf_eager", "cpu_graph", "cpu_hf_eager")) + " |")
    out += _dram_table(rows)
    if scaling:
        base = scaling[0]
        out += ["", f"## Channel scaling ({SCALING_MODEL}, context {SCALING_CTX})", "",
                "| channels | us/token | speedup vs "
                f"{base['channels']} ch | GEMV us | GEMV speedup | floor |",
                "|---|---|---|---|---|---|"]
        for r in scaling:
            out.append(f"| {r['channels']} | {r['latency_us']:.1f} | "
                       f"{base['latency_us'] / r['latency_us']:.2f} | {r['gemv_us']:.1f} | "
                       f"{base['gemv_us'] / r['gemv_us']:.2f} | "
                       f"{r['mac_utilization'] * 100:.1f} % |")
    if lanes:
        out += ["", f"## Vector-unit width ({LANES_MODEL}, context {LANES_CTX})", "",
                "| vector lanes | us/token | non-GEMV (ASIC) share | floor |", "|---|---|---|---|"]
        for r in lanes:
            out.append(f"| {r['lanes']} | {r['latency_us']:.1f} | {r['frac_asic'] * 100:.1f} % | "
                       f"{r['mac_utilization'] * 100:.1f} % |")
    return "\n".join(out) + "\n"


def _dram_table(rows) -> list[str]:
    """The DRAM side per token: busy times of the two sides, PIM against the bank-bandwidth
    floor, activations and pin bytes against their ideals, register-mode visits, switch cost."""
    out = ["", "## DRAM side (per token)", "",
           "PIM busy = union of the PIM instructions' spans; ASIC exposed = vector-unit time not "
           "hidden under the PIM side (the ASIC share); floor = MAC bytes / (banks x 32 B per "
           "nCCDL); bound = the least PIM busy of any schedule of the same work on that DRAM "
           "(floor + whole-row switches + register-mode pin transfers, no mode switch or "
           "refresh) over the floor; latency bound = the least latency per token of any such "
           "schedule, refresh included; acts = bank activations / (MAC bank-columns / columns per "
           "row); pins = bytes over the pins / (input vectors + results, not accumulator "
           "spills, + appended K/V and embedding elements); "
           "visits = register-mode visits per channel; switch cost = latency with the mode "
           "switches - latency with `dram.mode_switch: false`.", "",
           "| model | ctx | us/token (latency bound) | PIM busy us | ASIC busy us | "
           "ASIC exposed us | PIM/floor (bound) | +ovl us/token (latency bound) | "
           "PIM/floor +ovl (bound) | acts/ideal | pins/ideal | visits | switch cost us |",
           "|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        sw = (r["latency_us"] - r["latency_noswitch_us"]) if "latency_noswitch_us" in r else None
        out.append(
            f"| {r['model']} | {r['ctx']} | {r['latency_us']:.1f} "
            f"({_f(r.get('latency_bound_us'), '.1f')}) | {r['pim_busy_us']:.1f} | "
            f"{r['asic_busy_us']:.1f} | "
            f"{r['asic_exposed_us']:.1f} | {_f(r['pim_busy_over_floor'], '.2f')}x "
            f"({_f(r.get('pim_busy_bound_over_floor'), '.2f')}x) | "
            f"{_f(r.get('latency_overlap_us'), '.1f')} "
            f"({_f(r.get('latency_bound_overlap_us'), '.1f')}) | "
            f"{_f(r.get('pim_busy_over_floor_overlap'), '.2f')}x "
            f"({_f(r.get('pim_busy_bound_over_floor_overlap'), '.2f')}x) | "
            f"{_f(r['activations_over_ideal'], '.3f')} | {_f(r['pin_bytes_over_ideal'], '.3f')} | "
            f"{r['register_mode_visits']:.0f} | {_f(sw, '.1f')} |")
    return out


def plots(rows, scaling, lanes, folder: Path) -> list[str]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(dict.fromkeys(r["model"] for r in rows))
    files = []

    def per_model(key, ylabel, fname, log=False, scale=1.0, extra=None):
        fig, ax = plt.subplots(figsize=(7, 4.2))
        for n in names:
            pts = [(r["ctx"], r[key]) for r in rows if r["model"] == n and r.get(key) is not None]
            if pts:
                ax.plot([p[0] for p in pts], [p[1] * scale for p in pts], marker="o", label=n)
        if extra:
            extra(ax)
        ax.set_xscale("log", base=2)
        if log:
            ax.set_yscale("log")
        ax.set_xlabel("context length (tokens)")
        ax.set_ylabel(ylabel)
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=7, ncol=2)
        fig.tight_layout()
        fig.savefig(folder / fname, dpi=120)
        plt.close(fig)
        files.append(fname)

    per_model("latency_us", "latency per token (us)", "latency_per_token.png", log=True)
    per_model("energy_uj", "energy per token (uJ)", "energy_per_token.png", log=True)
    per_model("row_hit_rate", "row-buffer hit rate (%)", "row_hit_rate.png", scale=100)
    per_model("mac_utilization", "fraction of bank-bandwidth floor (%)", "mac_utilization.png",
              scale=100)
    if any(r.get("speedup_gpu_graph") for r in rows):
        per_model("speedup_gpu_graph", "speedup vs H200 (graph)", "speedup_gpu_graph.png",
                  log=True)
        per_model("speedup_gpu_hf_eager", "speedup vs H200 (hf-eager)",
                  "speedup_gpu_hf_eager.png", log=True)
    # Time breakdown at each model's largest context.
    last = {}
    for r in rows:
        if r["model"] not in last or r["ctx"] > last[r["model"]]["ctx"]:
            last[r["model"]] = r
    fig, ax = plt.subplots(figsize=(8, 4.2))
    bottom = [0.0] * len(last)
    labels = [f"{m}\n{r['ctx']}" for m, r in last.items()]
    for cls in ("gemv", "attention", "asic", "io"):
        vals = [r[f"frac_{cls}"] * 100 for r in last.values()]
        ax.bar(labels, vals, bottom=bottom, label=cls)
        bottom = [b + v for b, v in zip(bottom, vals, strict=True)]
    ax.set_ylabel("share of latency (%)")
    ax.legend(fontsize=8)
    ax.tick_params(axis="x", labelsize=7)
    fig.tight_layout()
    fig.savefig(folder / "breakdown.png", dpi=120)
    plt.close(fig)
    files.append("breakdown.png")
    if scaling:
        fig, ax = plt.subplots(figsize=(5, 4))
        ch = [r["channels"] for r in scaling]
        b = scaling[0]
        ax.plot(ch, [b["latency_us"] / r["latency_us"] for r in scaling], marker="o",
                label="whole token")
        ax.plot(ch, [b["gemv_us"] / r["gemv_us"] for r in scaling], marker="s", label="GEMV")
        ax.plot(ch, [c / ch[0] for c in ch], "k--", label="linear")
        ax.set_xscale("log", base=2)
        ax.set_yscale("log", base=2)
        ax.set_xlabel("channels")
        ax.set_ylabel(f"speedup vs {ch[0]} channels")
        ax.legend()
        ax.grid(True, alpha=0.3)
        fig.tight_layout()
        fig.savefig(folder / "channel_scaling.png", dpi=120)
        plt.close(fig)
        files.append("channel_scaling.png")
    return files


def paper_task(kind: str, point: tuple, hw, hw_ovl, hw_nosw):
    """One point of the report (a Dask task of :func:`run_paper`, or a call in this process):
    ``kind`` ``gpt`` (``point`` = model, context: :func:`simulate_point`), ``scaling`` or
    ``lanes`` (``point`` = channels or lanes: the sweeps' record), ``llama`` or ``units``
    (:func:`~pimgpt.apps.paper_llama.simulate_llama_point`, ``simulate_units_point``)."""
    if kind == "gpt":
        return simulate_point(*point, hw, hw_ovl, hw_nosw)
    if kind == "llama":  # on --hw (``hw``, by its name), else on the preset the point names
        return simulate_llama_point(*point, hw=hw if point[1] == hw.name else None)
    if kind == "units":
        return simulate_units_point(*point)
    (v,) = point
    if kind == "scaling":
        h = hw_variant(hw, "dram", channels=v)
        model, ctx = SCALING_MODEL, SCALING_CTX
    else:
        h = hw_variant(hw, "asic", vector_lanes=v)
        model, ctx = LANES_MODEL, LANES_CTX
    st = simulate_model(get_model(model), h, context=ctx)[2]["decode"]
    cls = st["by_class_ns"]
    tot = sum(cls.values()) or 1.0
    return {"channels" if kind == "scaling" else "lanes": v,
            "latency_us": st["latency_ns"] / 1e3, "gemv_us": cls["gemv"] / 1e3,
            "mac_utilization": st["mac_utilization"], "frac_asic": cls["asic"] / tot}


def _label(kind: str, point: tuple) -> str:
    """What the progress bar shows for a task."""
    if kind == "gpt":
        return f"{point[0]} ctx {point[1]}"
    if kind == "units":
        return f"{point[0]} ctx {point[2]}: vector units {point[3]}"
    return " ".join(map(str, point)) if kind == "llama" else f"{kind} {point[0]}"


def run_paper(output, hw_name=None, models=None, contexts=None, sweeps=True,
              progress=True, workers: int | None = 1, scheduler: str | None = None) -> dict:
    """Run the evaluation and write the report into ``output``; returns the rows.

    The output files are checked before the run and committed together at its end
    (:class:`pimgpt.core.fileio.Outputs`). The points run side by side on a Dask cluster
    (:func:`pimgpt.apps.tasks.run_tasks`: ``workers`` processes of an embedded one, None: one
    per core, or the cluster at ``scheduler``); ``workers=1`` (the default here; the command's
    default is one per core) runs them in this process. The figures are the same either way.
    """
    from pimgpt.core.progress import progress as progress_bar

    out = check_directory("-o", output)
    # The fixed files are checked now; the plots' names are known only after the run.
    Outputs({name: out / name for name in ("results.md", "results.csv", "scaling.csv",
                                           "lanes.csv", "llama.csv", "units.csv")},
            label=f"-o {output}")
    hw = load_hw(hw_name)
    hw_ovl = hw_variant(hw, "dram", act_overlap=True) if not hw.dram.act_overlap else None
    hw_nosw = hw_variant(hw, "dram", mode_switch=False) if mode_switching(hw) else None
    gpt_models, llama_models = split_models(models)
    points = plan(gpt_models, contexts, strict=False) if gpt_models else []
    # --hw runs the Llama models too (the loaded config travels with the tasks, so a YAML path
    # need not exist on a remote worker); by default they run on the 16- and 32-channel presets
    l_hw = (hw,) if hw_name else LLAMA_HW
    l_points, l_skipped = llama_plan(llama_models, contexts, l_hw) if llama_models else ([], [])
    if not points and not l_points:
        raise PaperError(_none_fit(gpt_models + llama_models, contexts, l_skipped))
    anchors_path = anchors_dir()
    anchors = load_anchors(anchors_path)
    extra = []
    if sweeps:
        extra += [("scaling", c) for c in SCALING_CHANNELS] + [("lanes", n) for n in LANES]
    units = units_plan(bool(points), bool(l_points)) if sweeps else []
    tasks = ([("gpt", p) for p in points] + [(k, (v,)) for k, v in extra]
             + [("llama", p) for p in l_points] + [("units", p) for p in units])
    with progress_bar(len(tasks), "pimgpt paper", "run", progress) as bar:
        results = run_tasks(paper_task, [(k, p, hw, hw_ovl, hw_nosw) for k, p in tasks],
                            [_label(k, p) for k, p in tasks], bar, workers=workers,
                            scheduler=scheduler)
    by_kind = {k: [r for (kk, _), r in zip(tasks, results, strict=True) if kk == k]
               for k in ("gpt", "scaling", "lanes", "llama", "units")}
    rows, scaling, lanes = by_kind["gpt"], by_kind["scaling"], by_kind["lanes"]
    l_rows, u_rows = by_kind["llama"], by_kind["units"]
    for row in rows:
        add_baselines(row, anchors)
    with tempfile.TemporaryDirectory(prefix="pimgpt-paper-") as tmpdir:
        tmp = Path(tmpdir)
        text = (markdown(rows, scaling, lanes, hw.name, bool(anchors)) if rows
                else "# PIM-GPT evaluation on the perf simulator (Llama family)\n")
        if l_rows:
            text += "\n".join(llama_markdown(l_rows, l_skipped)) + "\n"
            (tmp / "llama.csv").write_text(_csv(l_rows))
            llama_plot(l_rows, tmp)
        if u_rows:
            text += "\n".join(units_markdown(u_rows)) + "\n"
            (tmp / "units.csv").write_text(_csv(u_rows))
        (tmp / "results.md").write_text(text)
        if rows:
            (tmp / "results.csv").write_text(_csv(rows))
            plots(rows, scaling, lanes, tmp)
        if scaling:
            (tmp / "scaling.csv").write_text(_csv(scaling))
        if lanes:
            (tmp / "lanes.csv").write_text(_csv(lanes))
        made = sorted(tmp.iterdir())
        outs = Outputs({f.name: out / f.name for f in made}, label=f"-o {output}")
        with outs:
            for f in made:
                outs.write(f.name, lambda dst, f=f: shutil.copyfile(f, dst))
            outs.commit()
    return {"rows": rows, "scaling": scaling, "lanes": lanes, "llama": l_rows, "units": u_rows,
            "llama_skipped": l_skipped, "anchors": str(anchors_path)}


def cli_paper(args) -> int:
    """Entry point of ``pimgpt paper``."""
    models = _parse_list(args.models, "models", str) if args.models is not None else None
    contexts = _parse_list(args.contexts, "contexts", int) if args.contexts is not None else None
    _check_contexts(contexts)  # before the Llama plan too, whose error would say "shorter"
    # A subset run (--models/--contexts) skips the fixed sweeps unless it asks for everything.
    sweeps = models is None and contexts is None
    result = run_paper(args.output, args.hw, models, contexts, sweeps=sweeps,
                       workers=args.workers, scheduler=args.scheduler)
    out = Path(args.output)
    print((out / "results.md").read_text())
    print(f"written: {out}/results.md, the CSV tables and PNG plots")
    if result["anchors"] == "None":
        print("note: no anchors directory found (set PIMGPT_ANCHORS); speedups left empty")
    return 0

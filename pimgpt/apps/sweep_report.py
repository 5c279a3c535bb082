"""Outputs of ``pimgpt sweep``: results.csv, summary.md, the Pareto and per-axis PNG plots.

Every file is rebuilt from the point records (``results.jsonl``) and written atomically.
Latency and energy are the per-token figures of the perf statistics (``latency_ns_per_token``,
``energy_nj_per_token``); the Pareto front is taken per model and context (different workloads
are not comparable), minimising both.
"""

from __future__ import annotations

import csv
import io
import json
from collections import Counter

from pimgpt.core.fileio import atomic_write, atomic_write_text

LATENCY = "latency_ns_per_token"
ENERGY = "energy_nj_per_token"
#: Columns every row starts with (then one per axis, then every statistics key).
LEAD = ("id", "model", "context")
STATUS = ("status", "error", "program_cache", "compile_s", "compile_cpu_s", "sim_s",
          "sim_cpu_s", "sim_shared_by", "worker")
#: Reasons listed in summary.md (the rest are counted).
MAX_REASONS = 10


def flatten(stats: dict, prefix: str = "") -> dict:
    """Nested statistics as one level of dotted keys (lists as JSON text)."""
    out = {}
    for key, value in stats.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            out.update(flatten(value, name + "."))
        elif isinstance(value, (list, tuple)):
            out[name] = json.dumps(value)
        else:
            out[name] = value
    return out


def _ordered(points, records: dict) -> list[dict]:
    """Records of the spec's points, in spec order (points not run yet are left out)."""
    return [records[p.id] for p in points if p.id in records]


def table(spec, points, records: dict) -> tuple[list[str], list[dict]]:
    """Column names and rows of results.csv."""
    axes = [a.path for a in spec.axes]
    rows, stat_cols = [], {}
    for rec in _ordered(points, records):
        row = {k: rec.get(k) for k in LEAD}
        row.update({a: rec.get("params", {}).get(a) for a in axes})
        row.update({k: rec.get(k, "") for k in STATUS})
        for key, value in flatten(rec.get("stats") or {}).items():
            if key not in row:
                stat_cols.setdefault(key, None)
                row[key] = value
        rows.append(row)
    cols = [*LEAD, *axes, *STATUS, *[c for c in stat_cols if c not in axes]]
    return cols, rows


def write_csv(out, spec, points, records: dict):
    """Rebuild results.csv (atomically)."""
    cols, rows = table(spec, points, records)
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=cols, extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow(row)
    return atomic_write_text(out / "results.csv", buf.getvalue())


def pareto_front(pairs: list[tuple[float, float]]) -> list[int]:
    """Indices of the points no other point beats in both coordinates (minimising), by x."""
    order = sorted(range(len(pairs)), key=lambda i: pairs[i])
    front, best = [], float("inf")
    for i in order:
        if pairs[i][1] < best:
            front.append(i)
            best = pairs[i][1]
    return front


def _series(spec, points, records: dict) -> dict:
    """(model, context) -> ok records."""
    out: dict = {}
    for rec in _ordered(points, records):
        if rec.get("status") == "ok":
            out.setdefault((rec["model"], rec["context"]), []).append(rec)
    return out


def _fmt(value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def summary_md(spec, points, records: dict, outcome=None) -> str:
    """The Markdown summary: spec, counts, Pareto fronts, invalid and failed points."""
    recs = _ordered(points, records)
    status = Counter(r.get("status") for r in recs)
    axes = [a.path for a in spec.axes]
    lines = [f"# Sweep `{spec.name}`", "",
             f"Base hardware `{spec.base_name}`; models {', '.join(spec.models)}; contexts "
             f"{', '.join(str(c) for c in spec.contexts)}; sampling {spec.method}"
             + (f" ({spec.samples} samples, seed {spec.seed})" if spec.method == "random" else "")
             + ".", ""]
    for a in spec.axes:
        vals = ", ".join(_fmt(v) for v in a.values) if not a.is_interval else (
            f"[{a.low}, {a.high}]{' log' if a.log else ''}")
        lines.append(f"- `{a.path}`: {vals}")
    lines += ["", f"{len(points)} points: ok {status['ok']}, invalid {status['invalid']}, "
              f"error {status['error']}, not run yet {len(points) - len(recs)}."]
    if outcome is not None:
        lines += ["", "This run: " + format_outcome(outcome).splitlines()[0] + ".",
                  "Per-token figures: one decode step at the given context (perf backend)."]
    lines += ["", "## Pareto front: latency vs energy per token", ""]
    for (model, ctx), rs in _series(spec, points, records).items():
        front = pareto_front([(r["stats"][LATENCY], r["stats"][ENERGY]) for r in rs])
        lines += [f"### {model}, context {ctx} ({len(front)} of {len(rs)} points)", "",
                  "| " + " | ".join([*axes, "latency (us/token)", "energy (uJ/token)"]) + " |",
                  "|" + "---|" * (len(axes) + 2)]
        for i in front:
            r = rs[i]
            cells = [_fmt(r["params"].get(a)) for a in axes]
            cells += [f"{r['stats'][LATENCY] / 1e3:.2f}", f"{r['stats'][ENERGY] / 1e3:.2f}"]
            lines.append("| " + " | ".join(cells) + " |")
        lines.append("")
    for kind, title in (("invalid", "Invalid points"), ("error", "Failed points")):
        reasons = Counter(r.get("error", "") for r in recs if r.get("status") == kind)
        if not reasons:
            continue
        lines += [f"## {title} (by reason)", "", "| points | reason |", "|---|---|"]
        for reason, n in reasons.most_common(MAX_REASONS):
            lines.append(f"| {n} | {reason.replace('|', '/')} |")
        rest = sum(reasons.values()) - sum(n for _, n in reasons.most_common(MAX_REASONS))
        if rest:
            lines.append(f"| {rest} | (other reasons: see results.csv) |")
        lines.append("")
    return "\n".join(lines) + "\n"


def _save(fig, path):
    atomic_write(path, lambda tmp: fig.savefig(tmp, format="png", dpi=110))
    return path


def _plots(out, spec, points, records: dict) -> list:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    series = _series(spec, points, records)
    if not series:
        return []
    models = list(dict.fromkeys(m for m, _ in series))
    written = []
    fig, axs = plt.subplots(1, len(models), figsize=(5.2 * len(models), 4.2), squeeze=False)
    for ax, model in zip(axs[0], models, strict=True):
        for (m, ctx), rs in series.items():
            if m != model:
                continue
            xy = [(r["stats"][LATENCY] / 1e3, r["stats"][ENERGY] / 1e3) for r in rs]
            sc = ax.scatter(*zip(*xy, strict=True), s=14, alpha=0.35, label=f"context {ctx}")
            front = [xy[i] for i in pareto_front(xy)]
            ax.step(*zip(*front, strict=True), where="post", color=sc.get_facecolor()[0][:3],
                    marker="o", ms=4)
        ax.set(title=model, xlabel="latency per token (us)", ylabel="energy per token (uJ)")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.suptitle(f"{spec.name}: latency vs energy per token (lines: Pareto fronts)",
                 fontsize=10)
    fig.tight_layout()
    written.append(_save(fig, out / "pareto.png"))
    plt.close(fig)
    for axis in spec.axes:
        written.append(_axis_plot(plt, out, axis, models, series))
    return written


def _axis_plot(plt, out, axis, models, series):
    """Latency per token against one swept axis: every point, and the best per value."""
    fig, axs = plt.subplots(1, len(models), figsize=(5.2 * len(models), 4.0), squeeze=False)
    numeric = all(isinstance(v, (int, float)) and not isinstance(v, bool)
                  for rs in series.values() for v in (r["params"].get(axis.path) for r in rs))
    cats = sorted({_fmt(r["params"].get(axis.path)) for rs in series.values() for r in rs})
    for ax, model in zip(axs[0], models, strict=True):
        for (m, ctx), rs in series.items():
            if m != model:
                continue
            xs = [r["params"].get(axis.path) for r in rs]
            xs = xs if numeric else [cats.index(_fmt(x)) for x in xs]
            ys = [r["stats"][LATENCY] / 1e3 for r in rs]
            sc = ax.scatter(xs, ys, s=12, alpha=0.35, label=f"context {ctx}")
            best = {}
            for x, y in zip(xs, ys, strict=True):
                best[x] = min(y, best.get(x, y))
            bx = sorted(best)
            ax.plot(bx, [best[x] for x in bx], color=sc.get_facecolor()[0][:3], marker="o",
                    ms=4)
        if not numeric:
            ax.set_xticks(range(len(cats)), cats)
            ax.set_xlim(-0.5, len(cats) - 0.5)
        ax.set(title=model, xlabel=axis.path, ylabel="latency per token (us)")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.suptitle(f"latency vs {axis.path} (lines: best over the other axes)", fontsize=10)
    fig.tight_layout()
    path = _save(fig, out / f"latency_vs_{axis.path.replace('.', '_')}.png")
    plt.close(fig)
    return path


def write_reports(out, spec, points, records: dict, outcome=None) -> list:
    """results.csv, summary.md and the plots; returns the paths written."""
    paths = [write_csv(out, spec, points, records)]
    paths.append(atomic_write_text(out / "summary.md", summary_md(spec, points, records,
                                                                  outcome)))
    paths += _plots(out, spec, points, records)
    return paths


def format_outcome(o) -> str:
    """Lines printed at the end of a sweep."""
    c = o.computed
    lines = [
        f"{o.points} points: {o.skipped} already done, computed {sum(c.values())} "
        f"(ok {c['ok']}, invalid {c['invalid']}, error {c['error']}) in {o.wall_s:.1f} s",
    ]
    if c["ok"]:
        lines.append(f"work: {o.programs} programs ({o.program_hits} from the program cache), "
                     f"{o.simulations} simulations for {c['ok']} ok points, "
                     f"{o.cpu_s:.1f} CPU s in the workers")
    lines += [f"  {p}" for p in o.outputs]
    return "\n".join(lines)

"""The Llama-family part of ``pimgpt paper``: decode steps of the Llama presets on the 16- and
32-channel hardware presets, over contexts 128 .. 4096 (where the model and its K/V caches fit).

Per point (one decode step, batch 1): latency and energy per token, row hits, the time by class
and the non-GEMV share, the vector unit's exposed share, the PIM side against the bank-bandwidth
floor, the K/V traffic against the grouped-query ideal (:func:`pimgpt.sw.compiler.kv_traffic`),
and the H200's bandwidth bound: the bytes a GPU must read per token (bf16 weights and the K/V of
the attended tokens) over its 4.8 TB/s of HBM3e (NVIDIA H200 SXM specification). That bound is a
lower bound on the GPU's time per token, so ``x H200 bound`` overstates nothing in PIM's favour.
"""

from __future__ import annotations

from pimgpt.core.config import hw_variant, load_hw
from pimgpt.core.errors import PimgptError
from pimgpt.sim.perf.summary import run_compiled
from pimgpt.sw.compiler import attention_plan, compile_decode_step, kv_traffic
from pimgpt.sw.compiler.plan import ScratchPlan
from pimgpt.sw.mapper import map_model
from pimgpt.sw.models import LLAMA_MODELS, get_model

LLAMA_HW = ("pimgpt-gddr6-16ch", "pimgpt-gddr6-32ch")
LLAMA_CONTEXTS = (128, 256, 512, 1024, 2048, 4096)
#: NVIDIA H200 SXM memory bandwidth (vendor specification), bytes per second.
H200_BYTES_PER_S = 4.8e12
#: The vector-unit count sweeps, ``(model, hardware, context, unit counts)``: the headline GPT
#: point (whose vector-unit windows also hide refreshes), the GPT point of the default hardware
#: where the softmax weighs most (12 heads of 2048 positions), and the Llama point where it
#: weighs most (32 heads of 4096 positions, on the hardware with the most banks per unit).
UNITS_SWEEPS = (
    ("gpt2-small", "pimgpt-gddr6-8ch", 128, (1, 2, 4)),
    ("gpt3-small", "pimgpt-gddr6-8ch", 2048, (1, 2, 4)),
    ("llama-3.2-1b", "pimgpt-gddr6-32ch", 4096, (1, 2, 4, 8)),
)


def llama_plan(models=None, contexts=None, hw_names=LLAMA_HW) -> tuple[list, list]:
    """``(points, skipped)``: ``(model, hw name, context)`` for every context the model holds and
    the hardware fits, and ``(model, hw name, context, reason)`` where the hardware cannot hold
    it. ``hw_names``: preset names, YAML paths or loaded :class:`HwConfig` objects."""
    points, skipped = [], []
    for name in models or LLAMA_MODELS:
        cfg = get_model(name)
        ctxs = [c for c in (contexts or LLAMA_CONTEXTS) if c <= cfg.ctx]
        for which in hw_names:
            hw = load_hw(which) if isinstance(which, str) else which
            hw_name = hw.name
            fits = []
            for c in ctxs:
                try:
                    ScratchPlan(cfg, hw, map_model(cfg, hw, c))
                except PimgptError as exc:
                    skipped.append((name, hw_name, c, str(exc).split(";")[0]))
                    continue
                fits.append(c)
            points += [(name, hw_name, c) for c in fits]
    return points, skipped


def h200_bound_us(cfg, ctx: int) -> float:
    """The H200's time per token if it only had to read the bf16 weights and the attended K/V."""
    kv = 2 * cfg.n_layer * ctx * cfg.kv_dim * 2
    return (2 * cfg.n_params + kv) / H200_BYTES_PER_S * 1e6


def simulate_llama_point(model: str, hw_name: str, ctx: int, hw=None) -> dict:
    """One decode step of ``model`` at ``ctx`` on ``hw_name`` (or on ``hw``, a variant of it):
    the row of the Llama table."""
    cfg, hw = get_model(model), load_hw(hw_name) if hw is None else hw
    comp = compile_decode_step(cfg, hw, ctx)
    res, st = run_compiled(comp, hw)
    dec = st["decode"]
    cls = dec["by_class_ns"]
    tot = sum(cls.values()) or 1.0
    lat_us = st["latency_ns_per_token"] / 1e3
    kv = kv_traffic(comp, cfg)
    bound = h200_bound_us(cfg, ctx)
    return {
        "model": model, "hw": hw_name, "channels": hw.dram.channels,
        "vector_units": hw.asic.vector_units, "ctx": ctx,
        "latency_us": lat_us,
        "energy_uj": st["energy_nj_per_token"] / 1e3,
        "row_hit_rate": dec["row_hit_rate"],
        "mac_utilization": dec["mac_utilization"],
        **{f"frac_{k}": v / tot for k, v in cls.items()},
        "non_gemv_share": 1.0 - cls["gemv"] / tot,
        "asic_exposed_share": dec["asic_exposed_ns"] / (dec["latency_ns"] or 1.0),
        "pim_busy_over_floor": dec["dram"]["pim_busy_over_floor"],
        "kv_mb": kv["kv_bytes"] / 1e6,
        "kv_ideal_mb": kv["kv_bytes_ideal"] / 1e6,
        "kv_over_ideal": kv["kv_over_ideal"],
        "kv_row_opens_over_ideal": kv["kv_row_opens_over_ideal"],
        **(attention_plan(comp) or {}),
        "h200_bound_us": bound,
        "x_h200_bound": bound / lat_us,
        "sim_wall_s": res.wall_s,
    }


def llama_markdown(rows: list[dict], skipped: list) -> list[str]:
    """The Llama section of ``results.md``."""
    out = ["", "## Llama family (one decode step, batch 1)", "",
           "non-GEMV = share of the token outside the weight GEMVs (attention MACs, vector unit, "
           "I/O); ASIC = the vector unit's exposed share; K/V = bytes the attention MACs stream "
           "against the grouped-query ideal (each attended K/V element once) and rows opened "
           "against rows touched; H200 bound = (bf16 weights + attended K/V bytes) / 4.8 TB/s, "
           "x bound = that bound / simulated latency; VU = vector units (one per 4 channels).", "",
           "| model | hw | ctx | us/token | uJ/token | row hits | floor | non-GEMV | ASIC | "
           "PIM/floor | K/V MB | K/V / ideal | K/V rows / ideal | H200 bound us | x bound |",
           "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        out.append(
            f"| {r['model']} | {r['channels']} ch, {r['vector_units']} VU | {r['ctx']} | "
            f"{r['latency_us']:.1f} | "
            f"{r['energy_uj']:.0f} | {r['row_hit_rate'] * 100:.2f} % | "
            f"{r['mac_utilization'] * 100:.1f} % | {r['non_gemv_share'] * 100:.1f} % | "
            f"{r['asic_exposed_share'] * 100:.1f} % | {r['pim_busy_over_floor']:.2f}x | "
            f"{r['kv_mb']:.1f} | {r['kv_over_ideal']:.2f}x | "
            f"{r['kv_row_opens_over_ideal']:.2f}x | {r['h200_bound_us']:.1f} | "
            f"{r['x_h200_bound']:.2f} |")
    first: dict = {}
    for m, h, c, why in skipped:  # the smallest context that does not fit says why
        first.setdefault((m, h), (c, why))
    if first:
        out += ["", "Not simulated (the model and its K/V caches do not fit): " + "; ".join(
            f"{m} on {h} from context {c} ({why})" for (m, h), (c, why) in first.items()) + "."]
    return out


def units_plan(gpt: bool, llama: bool) -> list[tuple]:
    """``(model, hw name, context, units)`` of every :data:`UNITS_SWEEPS` point whose family is
    in the run (``gpt``/``llama``)."""
    return [(m, h, c, u) for m, h, c, counts in UNITS_SWEEPS
            if (llama if m in LLAMA_MODELS else gpt) for u in counts]


def simulate_units_point(model: str, hw_name: str, ctx: int, units: int) -> dict:
    """The row of ``model`` at ``ctx`` on ``hw_name`` with ``asic.vector_units`` set to
    ``units`` (the columns of the Llama table)."""
    hw = hw_variant(load_hw(hw_name), "asic", vector_units=units)
    return simulate_llama_point(model, hw_name, ctx, hw)


def units_markdown(rows: list[dict]) -> list[str]:
    """The vector-unit count section of ``results.md``."""
    out = ["", "## Vector units", "",
           "`asic.vector_units` identical 128-lane units; a row-batched SOFTMAX is shared out by "
           "rows, everything else runs on one unit. The presets give one unit per 4 channels "
           "(2, 4 and 8 on 8, 16 and 32 channels); each further unit adds "
           "`energy.vector_unit_static_mw` of leakage. Late norm: the step's softmaxes leave "
           "their product by 1/sum to one VMUL after p . V (SOFTMAXU, the compiler's choice).",
           "", "| model | channels | ctx | vector units | us/token | uJ/token | ASIC | head groups "
           "| late norm | PIM/floor |", "|---|---|---|---|---|---|---|---|---|---|"]
    yes_no = {True: "yes", False: "no"}
    for r in rows:
        out.append(f"| {r['model']} | {r['channels']} | {r['ctx']} | {r['vector_units']} | "
                   f"{r['latency_us']:.1f} | {r['energy_uj']:.0f} | "
                   f"{r['asic_exposed_share'] * 100:.1f} % | {r.get('head_groups', '-')} | "
                   f"{yes_no.get(r.get('unnormalised_softmax'), '-')} | "
                   f"{r['pim_busy_over_floor']:.2f}x |")
    return out


def llama_plot(rows: list[dict], folder) -> list[str]:
    """Latency per token against context, one line per (model, hardware)."""
    if not rows:
        return []
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.2))
    for key in dict.fromkeys((r["model"], r["channels"]) for r in rows):
        pts = [(r["ctx"], r["latency_us"]) for r in rows if (r["model"], r["channels"]) == key]
        ax.plot([p[0] for p in pts], [p[1] for p in pts], marker="o",
                label=f"{key[0]} ({key[1]} ch)")
    ax.set_xscale("log", base=2)
    ax.set_yscale("log")
    ax.set_xlabel("context length (tokens)")
    ax.set_ylabel("latency per token (us)")
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(folder / "llama_latency.png", dpi=120)
    plt.close(fig)
    return ["llama_latency.png"]

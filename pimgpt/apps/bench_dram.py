"""Benchmarks of the DRAM side: what the silicon timing costs, how close the PIM is to its floor.

``python -m pimgpt.apps.bench_dram [--quick]`` (also a section of ``pimgpt bench``) prints:

* the calibration micro-programs against the silicon-calibrated AiM model (200 full-row
  ``MAC_ABK`` on distinct rows, then with an ``RD_MAC`` after each; refresh off, as there);
* per decode token of gpt2-small at context 128 and gpt2-xl at context 1024 (``--quick``:
  gpt2-small only), for the hardware as configured (``gddr6-aim``, mode switches on), with the
  in-order controller (``dram.early_activate: false``), without mode switches
  (``dram.mode_switch: false``), with ``dram.act_overlap: true``, on the plain ``gddr6``
  standard, with the interleaved V cache (``dram.v_channel_major: false``), and the what-if of a
  vector unit that takes one cycle an instruction (``asic.vector_unit_ideal``, also with
  ``act_overlap``, and that with ``dram.mode_switch: false`` too: what a faster vector unit could
  still buy; these variants also at gpt2-small context 1024; ``--points MODEL:CTX,...`` for other
  decode points): latency, PIM-side busy time against the bank-bandwidth
  floor, activations and pin bytes against their ideals, register-mode visits, the vector
  unit's exposed time, and ``bound``: the least PIM busy time any schedule of the same work could
  reach on that DRAM, against the floor (:func:`pimgpt.sim.perf.report.pim_busy_bound`), and
  ``lat bound``: the least latency per token any schedule of that work could reach, refresh
  included (:func:`pimgpt.sim.perf.report.latency_bound`);
* the same figures for ``dram.accumulators`` 1, 4, 8 and 16 (gpt2-small; the compiler decides how
  many accumulators its ``RD_MAC``\\ s read per visit);
* the PIM-side budget per token: a ladder that takes the DRAM's costs away one after another
  (refresh, the register-access mode switches, the single row buffer's activations) and charges
  each the PIM busy time it removed; what remains over the bank-bandwidth floor is the pins
  (global-buffer loads, result reads, K/V appends) and rows used only in part;
* on the last rung's DRAM, the instruction kinds that add the most PIM busy time over their share
  of the floor (:func:`excess_by_instruction`).

It prints figures and asserts nothing.
"""

from __future__ import annotations

import argparse
import json

import numpy as np

from pimgpt.core.config import MAX_CYCLES, hw_variant, load_hw
from pimgpt.core.isa import I, Op
from pimgpt.sim.perf.engine import PerfEngine
from pimgpt.sim.perf.summary import simulate_model
from pimgpt.sw.models import get_model

#: The AiM model's figures for the calibration programs (tCK), as quoted by the issue that asked
#: for the mode switch.
AIM_REFERENCE = {"macs": 45159, "macs_rdmac": 56538}
#: The hardware variants of the token table: name -> ``(section, keys)`` changes, applied in turn.
VARIANTS = {
    "as configured": (),
    "in-order controller": (("dram", {"early_activate": False}),),
    "no mode switch": (("dram", {"mode_switch": False}),),
    "act_overlap": (("dram", {"act_overlap": True}),),
    "plain gddr6": (("dram", {"standard": "gddr6"}),),
    "interleaved V": (("dram", {"v_channel_major": False}),),
    # what-ifs: a vector unit that takes one cycle an instruction (what a faster one could buy)
    "vector unit ideal": (("asic", {"vector_unit_ideal": True}),),
    "act_overlap, vector unit ideal": (("dram", {"act_overlap": True}),
                                       ("asic", {"vector_unit_ideal": True})),
    # ... and without the register-access mode: the best this schedule does on a second row buffer
    "act_overlap, no mode switch, VU ideal": (("dram", {"act_overlap": True, "mode_switch": False}),
                                              ("asic", {"vector_unit_ideal": True})),
}


def variant(hw, changes):
    """``hw`` with a :data:`VARIANTS` entry's changes applied.

    Parameters
    ----------
    hw : HwConfig
    changes : tuple of (str, dict)
        ``(section, keys)`` pairs, applied in turn (:func:`pimgpt.core.config.hw_variant`).

    Returns
    -------
    HwConfig
    """
    for section, keys in changes:
        hw = hw_variant(hw, section, **keys)
    return hw


POINTS = (("gpt2-small", 128), ("gpt2-xl", 1024))
#: Where the variants are also measured (not the budget): a long context of a small model, where
#: the V cache's layout matters most.
VARIANT_POINTS = POINTS + (("gpt2-small", 1024),)
ACCUMULATORS = (1, 4, 8, 16)


def calibration(hw_name: str | None = None) -> dict:
    """The two calibration programs on one channel, refresh out of the window."""
    hw = hw_variant(load_hw(hw_name), "timing", nREFI=MAX_CYCLES)
    macs = [I(Op.MAC_ABK, ch_mask=1, row=r, col=0, ncols=64, gb_col=0) for r in range(200)]
    reads = [x for m in macs for x in (m, I(Op.RD_MAC, ch_mask=1, dst=0))]
    out = {}
    for key, prog in (("macs", macs), ("macs_rdmac", reads)):
        res = PerfEngine(hw).run(prog + [I(Op.EOC)])
        out[key] = {"cycles": res.cycles, "aim_model": AIM_REFERENCE[key],
                    "difference": res.cycles - AIM_REFERENCE[key]}
    out["tck_per_rdmac"] = (out["macs_rdmac"]["cycles"] - out["macs"]["cycles"]) / 200
    return out


def token_figures(model: str, ctx: int, hw) -> dict:
    """One decode step's per-token DRAM figures on ``hw``."""
    _, _, st = simulate_model(get_model(model), hw, context=ctx)
    d = st["dram"]
    return {
        "latency_us": st["latency_ns_per_token"] / 1e3,
        "pim_busy_us": st["pim_busy_ns_per_token"] / 1e3,
        "asic_busy_us": st["asic_busy_ns_per_token"] / 1e3,
        "asic_exposed_us": st["asic_exposed_ns_per_token"] / 1e3,
        "pim_busy_over_floor": d["pim_busy_over_floor"],
        "pim_busy_bound_over_floor": d["pim_busy_bound_over_floor"],
        "latency_bound_us": st["latency_bound_ns_per_token"] / 1e3,
        "activations_per_token": d["bank_activations"],
        "activations_over_ideal": d["activations_over_ideal"],
        "pin_kbytes_per_token": d["pin_bytes"] / 1e3,
        "pin_bytes_over_ideal": d["pin_bytes_over_ideal"],
        "register_mode_visits": d["register_mode_visits"],
    }


#: The budget ladder: each step removes one more cost (cumulative), named by what it removed.
LADDER = (
    ("refresh", "timing", {"nREFI": MAX_CYCLES}),
    ("register-mode switches", "dram", {"mode_switch": False}),
    ("row switches (second row buffer)", "dram", {"act_overlap": True}),
)


def budget(model: str, ctx: int, hw) -> dict:
    """PIM busy time per token split by cause, in us and tCK (cumulative ablation).

    Returns
    -------
    dict
        ``floor_us``, ``pim_busy_us``, ``tck_ns`` and ``steps``: ``(cause, us removed)`` in
        ladder order, then the pins' time and the rest over the floor.
    """
    _, _, st = simulate_model(get_model(model), hw, context=ctx)
    busy = st["pim_busy_ns_per_token"] / 1e3
    floor = busy / st["dram"]["pim_busy_over_floor"]
    steps, h, prev = [], hw, busy
    for cause, section, keys in LADDER:
        h = hw_variant(h, section, **keys)
        _, _, s2 = simulate_model(get_model(model), h, context=ctx)
        now = s2["pim_busy_ns_per_token"] / 1e3
        steps.append((cause, prev - now))
        prev = now
    # The pins' share of the rest: every byte over the pins at the channel's rate (spread evenly
    # over the channels); what then remains is activations the second row buffer cannot hide
    # (rows used in part, the nFAW window), pipeline drains and dependences between instructions.
    d = hw.dram
    pins = s2["dram"]["pin_bytes"] / d.channels / d.channel_gbytes_per_s / 1e3
    steps.append(("pins (loads, reads, K/V appends)", pins))
    steps.append(("the rest over the floor", prev - floor - pins))
    return {"floor_us": floor, "pim_busy_us": busy, "tck_ns": hw.dram.tck_ns, "steps": steps}


def excess_by_instruction(model: str, ctx: int, hw, top: int | None = 8) -> list[tuple]:
    """Where the PIM busy time over the floor goes, per instruction kind, on the ideal DRAM of
    the budget's last rung (refresh off, no mode switches, the second row buffer).

    Each PIM instruction of the decode step adds to the union of the PIM spans the part of its
    own span no earlier-starting instruction covers; a MAC instruction's share of the floor is
    its bank-columns at the floor's rate. Returns the ``top`` kinds ``(op, tag kind, count,
    excess tCK)`` by excess (added time less floor share; ``top=None``: all).
    """
    from pimgpt.sim.perf.engine import PIM_SIDE
    from pimgpt.sim.perf.report import split_tag

    h = hw
    for _cause, section, keys in LADDER:
        h = hw_variant(h, section, **keys)
    comp, res, _ = simulate_model(get_model(model), h, context=ctx)
    lo = comp.steps[-1].start if comp.steps else 0
    idx = np.arange(lo, res.n_instr)
    idx = idx[res.side[lo:] == PIM_SIDE]
    idx = idx[np.argsort(res.start[idx], kind="stable")]
    start, end = res.start[idx], res.end[idx]
    reach = np.concatenate(([start[0] if len(idx) else 0], np.maximum.accumulate(end)[:-1]))
    added = np.maximum(end - np.maximum(start, reach), 0)
    out: dict = {}
    banks = h.dram.banks
    for k, i in enumerate(idx.tolist()):
        ins = comp.program[i]
        kind = split_tag(comp.tags[i])[1].split(".g")[0]
        share = 0.0
        if ins.op in (Op.MAC_ABK, Op.MAC_SBK):
            # its bank-columns at the floor's rate (PerfResult.floor_cycles: mac_bank_cols /
            # slots * nCCDL; a MAC_ABK streams every bank of its channels, a MAC_SBK one)
            cols = (ins.args["ncols"] * int(res.chmask[i]).bit_count()
                    * (banks if ins.op is Op.MAC_ABK else 1))
            share = cols / res.slots * res.nccdl
        c = out.setdefault((ins.op.name, kind), [0, 0.0])
        c[0] += 1
        c[1] += float(added[k]) - share
    rows = sorted(((op, kind, n, ex) for (op, kind), (n, ex) in out.items()),
                  key=lambda r: -r[3])
    return rows if top is None else rows[:top]


def parse_points(text: str) -> tuple:
    """Parse ``--points``.

    Parameters
    ----------
    text : str
        ``"gpt2-small:128,llama-3.2-1b:512"``: model and context pairs.

    Returns
    -------
    tuple of (str, int)
        ``(("gpt2-small", 128), ("llama-3.2-1b", 512))``.

    Raises
    ------
    PimgptError
        One line naming the bad item: the form, an unknown model, a context out of its range.
    """
    from pimgpt.core.errors import PimgptError

    if not text.strip():
        raise PimgptError("--points is empty; give MODEL:CONTEXT pairs separated by commas, "
                          "e.g. gpt2-small:128,gpt2-xl:1024")
    points = []
    for item in text.split(","):
        model, sep, ctx = item.strip().rpartition(":")
        if not sep or not model or not (ctx.strip().isascii() and ctx.strip().isdecimal()):
            bad = f"{item.strip()!r}" if item.strip() else f"{text!r} (an empty item)"
            raise PimgptError(f"--points {bad}: give MODEL:CONTEXT pairs separated by "
                              "commas, e.g. gpt2-small:128,gpt2-xl:1024")
        cfg, n = get_model(model), int(ctx)
        if not 1 <= n <= cfg.ctx:
            raise PimgptError(f"--points {item.strip()!r}: context {n} is out of range for "
                              f"{cfg.name}; use 1..{cfg.ctx}")
        points.append((model, n))
    return tuple(points)


def run(quick: bool = False, hw_name: str | None = None, points: tuple | None = None) -> dict:
    """Every figure of this benchmark (``quick``: the first point only).

    ``points``: ``(model, context)`` decode points instead of :data:`POINTS` (the variants then
    run at these alone, the accumulator table and the excess at the first).
    """
    hw = load_hw(hw_name)
    base = POINTS if points is None else tuple(points)
    var_points = VARIANT_POINTS if points is None else base
    out = {"calibration": calibration(hw_name), "tokens": {}, "accumulators": {}}
    for model, ctx in base[:1] if quick else var_points:
        for name, changes in VARIANTS.items():
            h = variant(hw, changes)
            out["tokens"][f"{model} ctx {ctx}, {name}"] = token_figures(model, ctx, h)
    model, ctx = base[0]
    out["accumulators_point"] = f"{model} ctx {ctx}"
    for n in ACCUMULATORS:
        h = hw_variant(hw, "dram", accumulators=n)
        out["accumulators"][n] = token_figures(model, ctx, h)
    out["budget"] = {f"{m} ctx {c}": budget(m, c, hw) for m, c in (base[:1] if quick else base)}
    out["excess"] = {f"{model} ctx {ctx}": excess_by_instruction(model, ctx, hw)}
    return out


def _table(rows: dict, first: str) -> list[str]:
    lines = [f"{first:58} {'us/tok':>8} {'lat bound':>9} {'PIM us':>8} {'PIM/floor':>9} "
             f"{'bound':>6} "
             f"{'acts/ideal':>10} "
             f"{'pins kB':>8} {'pins/ideal':>10} {'visits':>7} {'ASIC exp us':>11}"]
    for name, r in rows.items():
        lines.append(
            f"{name!s:58} {r['latency_us']:8.1f} {r['latency_bound_us']:9.1f} "
            f"{r['pim_busy_us']:8.1f} "
            f"{r['pim_busy_over_floor']:8.2f}x {r['pim_busy_bound_over_floor']:5.2f}x "
            f"{r['activations_over_ideal']:10.3f} "
            f"{r['pin_kbytes_per_token']:8.1f} {r['pin_bytes_over_ideal']:10.3f} "
            f"{r['register_mode_visits']:7.0f} {r['asic_exposed_us']:11.1f}")
    return lines


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="the first point only (gpt2-small)")
    p.add_argument("--hw", default=None, help="hardware preset or YAML (default: the default)")
    p.add_argument("--points", default=None, metavar="MODEL:CTX[,MODEL:CTX...]",
                   help="decode points (default: gpt2-small:128,gpt2-xl:1024, the variants also "
                   "at gpt2-small:1024); the accumulator table and the excess at the first")
    p.add_argument("--json", action="store_true", help="print the figures as JSON")
    args = p.parse_args(argv)
    points = parse_points(args.points) if args.points is not None else None
    res = run(args.quick, args.hw, points)
    if args.json:
        print(json.dumps(res, indent=1))
        return 0
    cal = res["calibration"]
    print("calibration (one channel, refresh off): "
          f"200 MAC_ABK {cal['macs']['cycles']} tCK (AiM model {cal['macs']['aim_model']}); "
          f"with RD_MAC after each {cal['macs_rdmac']['cycles']} tCK (AiM model "
          f"{cal['macs_rdmac']['aim_model']}); {cal['tck_per_rdmac']:.2f} tCK per RD_MAC")
    print("\n".join(_table(res["tokens"], "decode token")))
    point = res["accumulators_point"]
    acc = {f"{point}, {n} accumulator(s)": r for n, r in res["accumulators"].items()}
    print("\n".join(_table(acc, "dram.accumulators")))
    for point, b in res["budget"].items():
        print(f"PIM busy budget, {point}: {b['pim_busy_us']:.1f} us = floor {b['floor_us']:.1f} us "
              f"({b['floor_us'] * 1e3 / b['tck_ns']:.0f} tCK)")
        for cause, us in b["steps"]:
            print(f"  {cause:36} {us:8.1f} us {us * 1e3 / b['tck_ns']:9.0f} tCK "
                  f"{us / b['floor_us']:6.2f}x floor")
    for point, rows in res["excess"].items():
        print(f"PIM busy over the floor by instruction kind, {point}, refresh off, no mode "
              "switches, second row buffer (tCK per token):")
        for op, kind, n, ex in rows:
            print(f"  {op:8} {kind:20} {n:5d} instructions {ex:9.0f} tCK")
    return 0


if __name__ == "__main__":
    from pimgpt.apps.entry import module_main

    module_main(main)

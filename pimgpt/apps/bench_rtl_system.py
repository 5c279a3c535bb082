"""Benchmarks of the RTL system: co-simulation speed, cycles against the perf model, and area.

* :func:`cosim` -- one generation of ``tiny`` (random weights) on the system RTL under Verilator
  (Icarus where installed, on a shorter program): simulated cycles per wall-clock second of the
  simulator process (host loading excluded), build time, golden match, cycles against the perf
  simulator on the same program and hardware.
* :func:`cell_counts` -- Yosys cells of the ASIC alone, of one bank's PIM logic and of the vector
  unit (built-in Yosys, coarse cells; the DRAM array is not part of the bank's logic); the ASIC
  and the vector unit by parts (:func:`area_by_parts`) unless ``--flat``.
* :func:`bank_area_by_accumulators` -- one bank's PIM logic for 1, 4, 8, 16 MAC accumulators
  (``dram.accumulators``), the price of batching ``RD_MAC`` reads (issue 11).
* :func:`vector_unit_lanes` -- the vector unit for 16, 32, 64 and 128 lanes: its area (the same
  Yosys flow, plus the microcode ROM's bits) against the token latency of the perf backend on
  gpt2-small (context 128) and gpt2-xl (context 1024) with that lane count (issue 10).
* ``python -m pimgpt.apps.bench_rtl_system [--quick] [--no-area] [--flat] [--accumulators]
  [--lanes]`` prints the tables.
"""

from __future__ import annotations

import argparse
import time

__all__ = ["cosim", "cell_counts", "bank_area_by_accumulators", "area_by_parts",
           "vector_unit_lanes", "main"]

HW = "tiny-rtl"


def cosim(simulator: str = "verilator", new_tokens: int = 4, prompt=(1, 2, 3),
          model: str = "tiny") -> dict:
    """Run a generation on the system RTL; returns its statistics
    (:mod:`pimgpt.sim.cocotb_lib.rtl_backend`)."""
    from pimgpt.apps.run_cli import run_model
    from pimgpt.sim.cocotb_lib.rtl_backend import RtlBackend

    t0 = time.perf_counter()
    stats = run_model(RtlBackend(simulator=simulator), model, hw=HW, prompt=list(prompt),
                      new_tokens=new_tokens).stats
    stats["wall_seconds"] = time.perf_counter() - t0
    return stats


def cell_counts(blocks=("asic", "bank", "vector_unit"), hw: str = HW) -> list[dict]:
    """Area proxy of the ASIC, of one bank's PIM logic and of the vector unit.

    :func:`pimgpt.hdl.export.yosys_cell_counts` with the built-in Yosys (coarse cells after
    ``proc; flatten; opt -full; wreduce; share``; memories count as one cell each, the DRAM array
    is not part of the bank's logic). A gate-level ``synth`` of the ASIC does not finish in a
    reasonable time on a small machine.
    """
    from pimgpt.core.config import load_hw
    from pimgpt.hdl.export import yosys_cell_counts

    hwc = load_hw(hw)
    out = []
    for name in blocks:
        try:
            r = yosys_cell_counts(name, hwc, tool="builtin")
        except Exception as exc:  # noqa: BLE001 - reported in the table
            out.append({"block": name, "error": str(exc)})
            continue
        r["hw"] = hwc.name
        out.append(r)
    return out


def bank_area_by_accumulators(counts=(1, 4, 8, 16), hw: str = "pimgpt-gddr6-8ch") -> list[dict]:
    """Built-in Yosys cells of one bank (:func:`cell_counts`'s flow) for each accumulator count.

    The hardware ``hw`` with ``dram.accumulators`` replaced; every other parameter as configured
    (the bank's burst packing depends on the banks per channel: with fewer than 8, one RDMAC16
    moves several accumulators of each bank).
    """
    from pimgpt.core.config import hw_from_dict, load_hw
    from pimgpt.hdl.export import yosys_cell_counts

    base = load_hw(hw)
    out = []
    for a in counts:
        raw = dict(base.raw)
        raw["dram"] = dict(raw["dram"], accumulators=a)
        r = yosys_cell_counts("bank", hw_from_dict(raw, f"{base.name}-acc{a}"), tool="builtin")
        r.update(hw=base.name, accumulators=a)
        out.append(r)
    return out


def _stand_in_unit():
    """A :class:`~pimgpt.hdl.vector_unit.VectorUnit` whose lanes are pass-through stand-ins, and
    the two stand-in lane classes (:func:`area_by_parts`)."""
    from amaranth.hdl import Module

    from pimgpt.hdl.vector_unit import VectorUnit
    from pimgpt.hdl.vu_lanes import FpLane, IntLane, VectorLanes

    # Stand-ins: every output a different function of every input (so that the logic around
    # them cannot simplify), at a cost counted on its own and taken off again.
    class _FpStandIn(FpLane):
        def elaborate(self, platform):
            m = Module()
            x = self.a ^ self.b ^ self.c
            m.d.comb += [self.mul.eq(x ^ 0x5A5A5A5A), self.add.eq(x ^ 0x33CC33CC),
                         self.gt.eq(x.xor()), self.eq.eq(x[0:16].xor())]
            return m

    class _IntStandIn(IntLane):
        def elaborate(self, platform):
            m = Module()
            m.d.comb += self.y.eq(self.a ^ self.b ^ self.c ^ self.b0 ^ self.mode ^ self.op)
            return m

    class _Lanes(VectorLanes):
        FP_LANE, INT_LANE = _FpStandIn, _IntStandIn

    class _Unit(VectorUnit):
        LANES = _Lanes

    return _Unit, _FpStandIn, _IntStandIn


def area_by_parts(hw, block: str = "vector_unit", timeout: float = 7200.0) -> dict:
    """Built-in Yosys area of the vector unit or of the whole ASIC of ``hw``, by parts.

    Parameters
    ----------
    hw : HwConfig
    block : {"vector_unit", "asic"}
        The vector unit alone, or the ASIC with its vector units.
    timeout : float
        Seconds each Yosys run may take.

    Returns
    -------
    dict
        ``cells``, ``gate_equivalents``, ``flip_flops`` (the sums), ``parts`` (each part's
        counts) and ``yosys_seconds``.

    Notes
    -----

    Yosys on the whole flattened vector unit takes about 9 minutes at 16 lanes (the ASIC around
    it about 16) and grows much faster than the design (its ``share``/``opt`` passes over 2W
    floating-point units), so the block is counted as the sum of: one lane's multiply-add
    pipeline and one lane's INT unit, times ``W`` and the vector units, and the block with both
    replaced by pass-through stand-ins (sequencer, register file, lane network, operand and
    write-port multiplexers, memory stage; around them, for the ASIC, its front end, PIM engine,
    schedulers and scratchpad), less the stand-ins' own cost (each stand-in output depends on
    every input, so the logic around it cannot simplify). At 16 lanes the vector unit's sum is
    within 1 % of the whole unit's gate equivalents (359,276 against 356,319; cells 5,763 against
    5,492; flip-flops equal); the ASIC's within 0.7 % (471,817 against 468,573; cells 10,837
    against 10,439; flip-flops equal; 2026-12-06).
    """
    from amaranth.utils import ceil_log2

    from pimgpt.core.vu.cost import pipeline_of
    from pimgpt.hdl.controller import Asic
    from pimgpt.hdl.export import yosys_cell_counts
    from pimgpt.hdl.vu_lanes import FpLane, IntLane

    unit, fp_stand_in, int_stand_in = _stand_in_unit()
    w, lat = hw.asic.vector_lanes, pipeline_of(hw)
    if block == "asic":
        class _Asic(Asic):
            VECTOR_UNIT = unit

        rest, n_lanes = _Asic(hw), w * hw.asic.vector_units
    elif block == "vector_unit":
        rest = unit(lanes=w, lat=lat, sp_addr_width=max(4, ceil_log2(hw.asic.scratchpad_words)))
        n_lanes = w
    else:
        raise ValueError(f"block must be 'vector_unit' or 'asic', not {block!r}")
    parts = {"fp_lane": FpLane(lat), "int_lane": IntLane(1), "fp_stand_in": fp_stand_in(lat),
             "int_stand_in": int_stand_in(1), "rest": rest}
    got = {k: yosys_cell_counts(f"{block}_{k}", component=c, tool="builtin", timeout=timeout)
           for k, c in parts.items()}
    out = {"parts": {k: {x: r[x] for x in ("cells", "gate_equivalents", "flip_flops")}
                     for k, r in got.items()},
           "yosys_seconds": round(sum(r["seconds"] for r in got.values()), 1)}
    for x in ("cells", "gate_equivalents", "flip_flops"):
        lane = got["fp_lane"][x] + got["int_lane"][x]
        stand_in = got["fp_stand_in"][x] + got["int_stand_in"][x]
        out[x] = got["rest"][x] + n_lanes * (lane - stand_in)
    return out


def vector_unit_lanes(lanes=(16, 32, 64, 128), hw: str = "pimgpt-gddr6-8ch",
                      points=(("gpt2-small", 128), ("gpt2-xl", 1024)), area: bool = True,
                      timeout: float = 7200.0) -> list[dict]:
    """The vector unit of ``hw`` with ``asic.vector_lanes`` set to each of ``lanes``.

    Per lane count: built-in Yosys cells, gate equivalents and flip-flop bits of the vector unit
    (:func:`area_by_parts`; the microcode ROM is a memory, counted as ``rom_bits`` beside), and
    per ``(model, context)`` of ``points`` the perf backend's decode latency per token and the
    share of it the vector unit is exposed (not hidden behind PIM work).
    """
    import copy

    from pimgpt.core.config import hw_from_dict, load_hw
    from pimgpt.core.vu.cost import microcode_for, pipeline_of
    from pimgpt.core.vu.uisa import WORD_BITS
    from pimgpt.sim.perf.summary import simulate_model
    from pimgpt.sw.models import get_model

    base = load_hw(hw)
    out = []
    for w in lanes:
        raw = copy.deepcopy(base.raw)
        raw["asic"]["vector_lanes"] = w
        hww = hw_from_dict(raw, where=f"{base.name} with {w} vector lanes")
        row = {"lanes": w, "hw": base.name,
               "rom_words": len(microcode_for(w, pipeline_of(hww)).words)}
        row["rom_bits"] = row["rom_words"] * WORD_BITS
        if area:
            r = area_by_parts(hww, timeout=timeout)
            row.update(cells=r["cells"], gate_equivalents=r["gate_equivalents"],
                       flip_flops=r["flip_flops"], yosys_seconds=r["yosys_seconds"],
                       parts=r["parts"])
        for model, ctx in points:
            _, _, st = simulate_model(get_model(model), hww, context=ctx)
            lat = st["latency_ns_per_token"]
            row[f"{model}@{ctx}_us"] = lat / 1e3
            row[f"{model}@{ctx}_asic_exposed"] = st["asic_exposed_ns_per_token"] / lat
        out.append(row)
    return out


def _print_lanes(rows) -> None:
    keys = [k[:-3] for k in rows[0] if k.endswith("_us")]
    head = ["lanes", "coarse cells", "gate eq.", "flip-flop bits", "ROM bits"] + \
        [f"{k} us/token (ASIC exposed)" for k in keys]
    print("| " + " | ".join(head) + " |")
    print("|" + "---|" * len(head))
    for r in rows:
        cells = [f"{r['lanes']}"] + [f"{r[k]:,}" if k in r else "-"
                                     for k in ("cells", "gate_equivalents", "flip_flops")]
        cells.append(f"{r['rom_bits']:,} ({r['rom_words']} words)")
        cells += [f"{r[k + '_us']:.1f} ({100 * r[k + '_asic_exposed']:.1f} %)" for k in keys]
        print("| " + " | ".join(cells) + " |")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m pimgpt.apps.bench_rtl_system")
    parser.add_argument("--quick", action="store_true",
                        help="2 new tokens instead of 4; cell counts of the bank only")
    parser.add_argument("--flat", action="store_true",
                        help="count the ASIC and the vector unit whole, flattened (about 16 and 9 "
                             "minutes here), not by parts (one lane times the lanes, plus the "
                             "rest with stand-in lanes: minutes)")
    parser.add_argument("--no-area", action="store_true", help="skip the Yosys cell counts")
    parser.add_argument("--accumulators", action="store_true",
                        help="only the bank's area for 1, 4, 8, 16 MAC accumulators")
    parser.add_argument("--lanes", action="store_true",
                        help="only the vector unit's area and token latency for 16-128 lanes")
    args = parser.parse_args(argv)
    if args.lanes:
        _print_lanes(vector_unit_lanes(area=not args.no_area))
        return 0
    if args.accumulators:
        for hw in (HW, "pimgpt-gddr6-8ch"):
            rows = bank_area_by_accumulators(hw=hw)
            base = rows[0]
            for r in rows:
                print(f"bank ({r['hw']}, {r['accumulators']:2d} accumulators): {r['cells']} coarse "
                      f"cells, ~{r['gate_equivalents']} gate equivalents "
                      f"({100 * (r['gate_equivalents'] / base['gate_equivalents'] - 1):+.1f} %), "
                      f"{r['flip_flops']} flip-flop bits, yosys {r['seconds']} s")
        return 0
    from pimgpt.sim.cocotb_lib.runner import simulator_available

    rows = []
    for sim in ("verilator", "icarus"):
        ok, why = simulator_available(sim)
        if not ok:
            print(f"{sim}: skipped ({why})")
            continue
        # Icarus is far slower: a one-token generation only.
        n = 1 if sim == "icarus" else (2 if args.quick else 4)
        s = cosim(sim, new_tokens=n)
        rows.append(s)
        print(f"{sim}: tiny on {HW}, prompt 1,2,3, {n} new tokens: {s['cycles']} cycles in "
              f"{s['sim_seconds']:.1f} s = {s['cycles_per_second']:.0f} cycles/s "
              f"(build {s['build_seconds']:.0f} s, Verilog {s['verilog_seconds']:.0f} s, "
              f"host load {s['load_seconds']:.1f} s); golden_match={s['golden_match']}; "
              f"perf simulator {s['perf_cycles']} cycles "
              f"({100 * s['cycle_difference']:+.1f} %)")
    if not args.no_area:
        # block by block, each printed when done: one run interrupted keeps what it finished
        for block in ("bank",) if args.quick else ("asic", "bank", "vector_unit"):
            if block == "bank" or args.flat:
                (c,) = cell_counts((block,))
                if "error" in c:
                    print(f"{c['block']}: {c['error']}", flush=True)
                    continue
                how, seconds = "", c["seconds"]
            else:
                from pimgpt.core.config import load_hw

                try:
                    c = dict(area_by_parts(load_hw(HW), block), hw=HW)
                except Exception as exc:  # noqa: BLE001 - reported; the other blocks go on
                    print(f"{block}: {exc}", flush=True)
                    continue
                how, seconds = " by parts", c["yosys_seconds"]
            print(f"{block} ({c['hw']}){how}: {c['cells']} coarse cells, "
                  f"~{c.get('gate_equivalents', 0)} gate equivalents, {c['flip_flops']} "
                  f"flip-flop bits, yosys {seconds} s", flush=True)
            if "command" in c:
                print(f"  {c['command']}")
    bad = [r for r in rows if not r["golden_match"]]
    return 1 if bad else 0


if __name__ == "__main__":
    from pimgpt.apps.entry import module_main

    module_main(main)  # a `kill` stops its Yosys child and removes its folder too

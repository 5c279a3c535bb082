"""Several vector units (``asic.vector_units``): the row split (``pimgpt/core/vu/cluster.py``),
its cost, its results (the golden model's, bit for bit) and the RTL that shares a ``SOFTMAX``
out (a two-unit system under Verilator, against the golden model and the perf model)."""

import collections

import numpy as np
import pytest

from pimgpt.core import numerics as nx
from pimgpt.core.config import hw_from_dict, load_hw
from pimgpt.core.isa import I, Op
from pimgpt.core.vu.cluster import row_share, split_instr
from pimgpt.core.vu.cost import VectorUnitModel
from pimgpt.sim.golden import GoldenMachine


def _with_units(name: str, units: int):
    hw = load_hw(name)
    raw = dict(hw.raw)
    # its own name: the RTL build folder is named after the hardware
    raw["asic"] = dict(raw["asic"], vector_units=units)
    raw["name"] = f"{name}-{units}vu"
    return hw_from_dict(raw, raw["name"])


@pytest.mark.parametrize("units", [1, 2, 4, 8])
def test_row_share_covers_the_rows_in_order(units):
    for rows in range(1, 40):
        shares = [row_share(rows, units, u) for u in range(units)]
        at = 0
        for first, count in shares:
            assert first == at
            at += count
        assert at == rows
        counts = [c for _, c in shares]
        assert max(counts) - min(counts) <= 1 and counts[0] == max(counts)
        assert counts == sorted(counts, reverse=True)


def test_split_instr():
    sm = I(Op.SOFTMAX, dst=1000, src=100, n=40, rows=5)
    parts = split_instr(sm, 4)
    assert [(p.args["src"], p.args["dst"], p.args["rows"]) for p in parts] == [
        (100, 1000, 2), (180, 1080, 1), (220, 1120, 1), (260, 1160, 1)]
    assert split_instr(I(Op.SOFTMAX, dst=0, src=64, n=8, rows=2), 4)[1].args["src"] == 72
    assert len(split_instr(I(Op.SOFTMAX, dst=0, src=64, n=8, rows=2), 4)) == 2
    assert split_instr(sm, 1) == [sm]
    su = I(Op.SOFTMAXU, dst=1000, src=1000, n=40, rows=5, rcp=3000, rseg=64)
    assert [(p.args["src"], p.args["rows"], p.args["rcp"]) for p in split_instr(su, 4)] == [
        (1000, 2, 3000), (1080, 1, 3128), (1120, 1, 3192), (1160, 1, 3256)]
    add = I(Op.VADD, dst=0, a=8, b=16, n=8)
    assert split_instr(add, 4) == [add]


def test_cost_is_the_longest_share():
    one = VectorUnitModel(_with_units("pimgpt-gddr6-8ch", 1))
    four = VectorUnitModel(_with_units("pimgpt-gddr6-8ch", 4))
    big = I(Op.SOFTMAX, dst=0, src=100_000, n=4096, rows=16)
    quarter = I(Op.SOFTMAX, dst=0, src=100_000, n=4096, rows=4)
    assert four.cost(big).cycles == one.cost(quarter).cycles
    assert four.cost(big).cycles < one.cost(big).cycles / 3
    # the work (energy) is that of all the shares
    assert four.cost(big).ops == 4 * one.cost(quarter).ops
    odd = I(Op.SOFTMAX, dst=0, src=50_000, n=1000, rows=5)
    two_rows = I(Op.SOFTMAX, dst=0, src=50_000, n=1000, rows=2)
    one_row = I(Op.SOFTMAX, dst=0, src=50_000, n=1000, rows=1)
    assert four.cost(odd).cycles == one.cost(two_rows).cycles
    assert four.cost(odd).ops == one.cost(two_rows).ops + 3 * one.cost(one_row).ops
    # everything else runs on unit 0 alone
    ln = I(Op.VGELU, dst=0, src=8192, n=3072)
    assert four.cost(ln) == one.cost(ln)


def test_presets_have_one_unit_per_four_channels():
    for name in ("pimgpt-gddr6-8ch", "pimgpt-gddr6-16ch", "pimgpt-gddr6-32ch", "tiny-rtl"):
        hw = load_hw(name)
        assert hw.asic.vector_units == max(1, hw.dram.channels // 4), name


def test_shares_give_the_whole_instruction_bit_for_bit():
    """Rows are independent: the shares, run one after another, write what the whole does."""
    hw = load_hw("tiny-rtl")
    rng = np.random.default_rng(3)
    image = np.zeros((2, 4, 4, 1024), dtype=np.uint16)
    sp = (rng.normal(0, 4, 4096)).astype(np.float32)
    sp[17] = np.inf
    for sm in (I(Op.SOFTMAX, dst=2048, src=0, n=37, rows=7),
               I(Op.SOFTMAXU, dst=2048, src=0, n=37, rows=7, rcp=3000, rseg=5)):
        whole, parts = GoldenMachine(hw, image.copy()), GoldenMachine(hw, image.copy())
        whole.sp[:4096] = sp
        parts.sp[:4096] = sp
        whole.run([sm, I(Op.EOC)])
        parts.run(split_instr(sm, 4) + [I(Op.EOC)])
        assert np.array_equal(whole.sp.view(np.uint32), parts.sp.view(np.uint32))


def _cluster_program():
    rng = np.random.default_rng(21)
    sp = np.zeros(4096, dtype=np.float32)
    sp[:2048] = rng.normal(0, 3, 2048)
    sp[40] = -np.inf
    prog = [
        I(Op.SOFTMAX, dst=2048, src=0, n=40, rows=3),    # 2 + 1 rows
        I(Op.VADD, dst=2200, a=2048, b=2088, n=40),       # unit 0 alone, reads both shares
        I(Op.SOFTMAX, dst=2300, src=200, n=64, rows=8),   # 4 + 4
        I(Op.SOFTMAX, dst=2900, src=800, n=33, rows=1),   # unit 0 alone
        I(Op.SOFTMAX, dst=3000, src=900, n=16, rows=5),   # 3 + 2
        I(Op.VGELU, dst=3100, src=2300, n=48),
        I(Op.SOFTMAXU, dst=3150, src=1000, n=20, rows=3, rcp=3215, rseg=9),  # 2 + 1, rcp too
        I(Op.SYNC),
        I(Op.EOC),
    ]
    return sp, prog


def test_two_unit_system_rtl_matches_golden_and_perf():
    """The dispatch of ``hdl/controller.py`` with two units, under Verilator (a one-channel
    tiny-rtl): every word the program writes equals the golden model's, and the cycles are the
    perf model's (which costs each ``SOFTMAX`` as its longest share)."""
    from pimgpt.sim.cocotb_lib.runner import simulator_available
    from pimgpt.sim.cocotb_lib.system_run import run_system
    from pimgpt.sim.perf import simulate

    ok, why = simulator_available("verilator")
    if not ok:
        pytest.skip(f"verilator tests skipped: {why}")
    # tiny-rtl cut to one channel, 64 rows and a 4096-word scratchpad: the program is all vector
    # work, and the smaller system builds in about two thirds of the time
    base = _with_units("tiny-rtl", 2)
    raw = dict(base.raw)
    raw["asic"] = dict(raw["asic"], scratchpad_words=4096)
    raw["dram"] = dict(raw["dram"], channels=1, rows=64)
    hw = hw_from_dict(raw, raw["name"])
    image = nx.f32_to_bf16(np.zeros((1, 4, 64, 1024), dtype=np.float32))
    sp, prog = _cluster_program()
    golden = GoldenMachine(hw, image.copy())
    golden.sp[:len(sp)] = sp
    golden.run(prog)
    # a C++ build without optimisation: a third of the build time, and 4k cycles to run
    res = run_system(hw, prog, image, sp_init=sp.view(np.uint32), sp_read=[(2048, 1200)],
                     max_cycles=200_000, cxx_opt="-O0")
    got = np.array(res.status["sp_words"][0], dtype=np.uint32)
    want = golden.sp.view(np.uint32)[2048:2048 + 1200]
    assert np.array_equal(got, want), np.nonzero(got != want)[0][:10]
    perf2 = simulate(prog, hw).cycles
    raw["asic"]["vector_units"] = 1
    perf1 = simulate(prog, hw_from_dict(raw, "one unit")).cycles
    print(f"two units: RTL {res.cycles} cycles, perf {perf2} (one unit: perf {perf1})")
    assert perf2 < perf1 - 1000  # the shares really run side by side
    assert abs(res.cycles - perf2) <= 0.01 * perf2


def test_more_units_shorten_a_softmax_bound_token():
    """``pimgpt paper``'s vector-unit sweep point: llama-3.2-1b on 32 channels at context 4096,
    where one unit's softmaxes take longer than the attention's PIM work."""
    from pimgpt.apps.paper_llama import simulate_units_point, units_markdown, units_plan

    point = ("llama-3.2-1b", "pimgpt-gddr6-32ch", 4096)
    one, four = simulate_units_point(*point, 1), simulate_units_point(*point, 4)
    assert (one["vector_units"], four["vector_units"]) == (1, 4)
    assert four["latency_us"] < 0.85 * one["latency_us"]
    assert four["asic_exposed_share"] < 0.6 * one["asic_exposed_share"]
    table = units_markdown([one, four])
    assert table[-2].startswith("| llama-3.2-1b | 32 | 4096 | 1 | ")
    assert table[-1].startswith("| llama-3.2-1b | 32 | 4096 | 4 | ")
    # one unit's softmaxes bound the token: the compiler normalises after p . V
    assert one["unnormalised_softmax"] and table[-2].split(" | ")[-2] == "yes"
    # each family's sweeps run only where that family does
    assert {p[0] for p in units_plan(True, False)} == {"gpt2-small", "gpt3-small"}
    assert units_plan(False, True) == [(*point, u) for u in (1, 2, 4, 8)]


def test_further_units_add_their_leakage():
    from pimgpt.core.config import ConfigError, hw_variant
    from pimgpt.sim.perf.energy import asic_static_mw, energy_of

    hw = load_hw("pimgpt-gddr6-8ch")
    e = hw.energy
    assert asic_static_mw(hw_variant(hw, "asic", vector_units=1)) == e["asic_static_mw"]
    assert asic_static_mw(hw_variant(hw, "asic", vector_units=8)) == pytest.approx(
        e["asic_static_mw"] + 7 * e["vector_unit_static_mw"])
    # a hardware file written before the key still runs with one unit, and says what is
    # missing with more
    counts = dict.fromkeys(("bank_acts", "bank_pres", "mac_bank_cols", "io_bytes_in",
                             "io_bytes_out", "asic_ops", "asic_words"), 0)
    counts["counts"] = collections.defaultdict(int)
    raw = dict(hw.raw, energy={k: v for k, v in e.items() if k != "vector_unit_static_mw"})
    old = hw_from_dict(dict(raw, asic=dict(raw["asic"], vector_units=1)), "old")
    assert asic_static_mw(old) == e["asic_static_mw"]
    assert energy_of(counts, 100, old)["by_component_nj"]["asic_static"] > 0
    with pytest.raises(ConfigError, match=r"energy keys \['vector_unit_static_mw'\]"):
        energy_of(counts, 100, hw_from_dict(raw, "old two"))

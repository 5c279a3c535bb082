"""The RTL's views of the instruction set (generated from ``pimgpt.core.isa.SPEC``) and the PIM
engine's parts: opcode enum, named field layouts, the hazard ranges against ``isa.effects``,
construction checks and Verilog conversion of every part."""

import numpy as np
import pytest
from amaranth.hdl import Module, Signal
from amaranth.lib import wiring
from amaranth.sim import Simulator

from pimgpt.core import isa
from pimgpt.core.config import hw_from_dict, load_hw
from pimgpt.core.isa import Op
from pimgpt.hdl import export
from pimgpt.hdl.bank import acc_transfer_bursts
from pimgpt.hdl.isa_layout import (
    INSTR_BITS,
    InstrWord,
    Opcode,
    fields_layout,
    instr_word,
    opcode,
    sp_access,
)
from pimgpt.hdl.pim_engine import PimEngine
from pimgpt.hdl.pim_gen import AccGen, ColumnRunGen

HW = "tiny-rtl"
pytestmark = pytest.mark.filterwarnings("ignore:.*created but never used")
PIM_PARTS = ["pim_decode", "pim_column_runs", "pim_region", "pim_acc", "pim_elem_wave",
             "pim_issue", "pim_return", "pim_hazard", "pim_engine"]


def test_opcode_enum_and_field_layouts_follow_the_isa():
    assert [(o.name, o.value) for o in Opcode] == [(o.name, o.value) for o in Op]
    assert opcode(Op.MAC_ABK) is Opcode.MAC_ABK
    assert InstrWord.as_shape().size == INSTR_BITS == 8 * isa.INSTR.size
    for op, spec in isa.SPEC.items():
        layout = fields_layout(op)
        assert list(layout.members) == list(spec.fields)
        assert [f.offset for _, f in layout] == [32 * k for k in range(len(spec.fields))]


def test_instr_word_named_fields_decode_the_binary_form():
    rng = np.random.default_rng(4)
    for op, spec in isa.SPEC.items():
        args = {name: int(rng.integers(0, 2**32)) for name in spec.fields}
        flags = spec.flags
        ins = isa.Instr(op, args, flags)
        view = InstrWord.from_bits(instr_word(ins))
        assert view.op is opcode(op) and view.flags == flags
        named = getattr(view.args, op.name.lower())
        for k, name in enumerate(spec.fields):
            assert getattr(named, name) == args[name] == view.args.f[k], (op, name)


def _random_pim_instr(rng, op, banks, channels):
    spec = isa.SPEC[op]
    args = {}
    for name in spec.fields:
        if name == "ch_mask":
            args[name] = int(rng.integers(1, 2**channels))
        elif name in ("n", "ncols", "nacc", "n_local", "vec_len"):
            args[name] = int(rng.integers(1, 40))
        else:
            args[name] = int(rng.integers(0, 3000))
    return isa.Instr(op, args)


def test_hazard_ranges_are_the_isa_effects():
    """``sp_access`` in hardware gives, for every PIM opcode, the scratchpad range
    ``isa.effects`` gives (multi-accumulator RD_MAC/WR_BIAS, channel masks included)."""
    hw = load_hw(HW)
    B, C = hw.dram.banks, hw.dram.channels
    width = 16
    m = Module()
    ins = Signal(InstrWord)
    outs = {}
    for op in sorted(isa.PIM_OPS):
        rng_hw = sp_access(op, ins.args_of(op), banks=B, channels=C, width=width)
        if rng_hw is not None:
            lo, length, write = rng_hw
            outs[op] = (Signal(width, name=f"lo_{op.name}"), Signal(width, name=f"len_{op.name}"),
                        write)
            m.d.comb += [outs[op][0].eq(lo), outs[op][1].eq(length)]
    assert set(outs) == {op for op in isa.PIM_OPS
                         if any(a.space == "sp" for a in isa.SPEC[op].accesses)}
    rng = np.random.default_rng(9)
    cases = [_random_pim_instr(rng, op, B, C) for op in outs for _ in range(6)]
    got = []

    async def bench(ctx):
        for case in cases:
            ctx.set(ins.as_value(), instr_word(case))
            lo, n, _ = outs[case.op]
            got.append((ctx.get(lo), ctx.get(n)))

    sim = Simulator(m)
    sim.add_testbench(bench)
    sim.run()
    for case, (lo, n) in zip(cases, got, strict=True):
        _, reads, writes = isa.effects(case, B)
        (space, want_lo, want_hi), = [r for r in reads + writes if r[0] == "sp"]
        assert (lo, lo + n) == (want_lo, want_hi), case
        assert outs[case.op][2] == bool(writes)


def test_pim_parts_reject_bad_parameters():
    hw = load_hw(HW)
    with pytest.raises(TypeError, match="HwConfig"):
        PimEngine("tiny-rtl", sp_addr_width=14)
    with pytest.raises(ValueError, match="sp_addr_width"):
        ColumnRunGen(hw, sp_addr_width=2)
    with pytest.raises(ValueError, match="tag_depth"):
        PimEngine(hw, sp_addr_width=14, tag_depth=1)
    assert AccGen(hw, sp_addr_width=14).signature.members["cmd"].flow == wiring.In


@pytest.mark.parametrize("block", PIM_PARTS + ["channel_scheduler", "bank", "channel"])
def test_pim_blocks_convert_to_verilog(block):
    hw = load_hw(HW)
    text = export.verilog_text(block, hw)
    assert f"module {block}(" in text
    assert text.rstrip().endswith(("endmodule", "`endif"))  # guarded simulation models last
    for name in export.build_block(block, hw).signature.members:  # every port is there
        assert f" {name}" in text, name


def _hw(**dram):
    raw = dict(load_hw(HW).raw)
    raw["dram"] = dict(raw["dram"], **dram)
    return hw_from_dict(raw, "tiny-rtl-variant")


def test_accumulator_bursts_follow_the_standard_and_the_isa_layout():
    """RD_MAC / WR_BIAS with several accumulators: as many bursts per channel as the DRAM
    standard counts (accumulator-major, ``pimgpt.core.dram.acc_bursts``), each naming its
    accumulator and its words; RDMAC16 data land at ``dst + a * S + j`` (S selected banks),
    WRMAC16 data come from there."""
    from pimgpt.core.dram import acc_bursts

    hw = load_hw(HW)  # 2 channels x 4 banks, 4 accumulators
    B = hw.dram.banks
    gen = AccGen(hw, sp_addr_width=14)
    cases = [dict(write=0, chm=3, sp=100, acc=1, nacc=3),
             dict(write=1, chm=3, sp=500, acc=0, nacc=4)]
    seen = []

    async def bench(ctx):
        for case in cases:
            for k, v in case.items():
                ctx.set(getattr(gen.cmd.payload, k), v)
            ctx.set(gen.cmd.valid, 1)
            await ctx.tick()
            ctx.set(gen.cmd.valid, 0)
            ctx.set(gen.o.ready, 1)
            for _ in range(20):
                if ctx.get(gen.o.valid):
                    p = gen.o.payload
                    op = (ctx.get(p.chm), ctx.get(p.op.c.col), ctx.get(p.op.c.mask))
                    if case["write"]:
                        seen.append(("WRMAC16",) + op + (ctx.get(p.sp),))
                    else:
                        seen.append(("RDMAC16",) + op + (ctx.get(p.tagbase),
                                                         ctx.get(p.tagmask)))
                await ctx.tick()

    sim = Simulator(gen)
    sim.add_clock(1e-9)
    sim.add_testbench(bench)
    sim.run()
    S = 2 * B
    assert len(acc_transfer_bursts(hw, 3)) == acc_bursts(hw, 3) == 3
    # RD_MAC acc=1 nacc=3: accumulators 1, 2, 3 of the 4 banks, both channels at once
    rd = [("RDMAC16", 3, 1 + a, 0x0F, 100 + a * S, 0x0F) for a in range(3)]
    # WR_BIAS acc=0 nacc=4: channel by channel; channel 1's words start at rank 1 * B
    wr = [("WRMAC16", 1 << c, a, 0x0F, 500 + a * S + c * B) for c in (0, 1) for a in range(4)]
    assert seen == rd + wr


def test_engine_rejects_more_accumulators_than_the_mac_unit_holds():
    with pytest.raises(ValueError, match="dram.accumulators 100"):
        PimEngine(_hw(accumulators=100), sp_addr_width=14)

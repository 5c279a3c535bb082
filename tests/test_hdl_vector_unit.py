"""The vector unit's RTL blocks under Amaranth's simulator: the micro-word decode against the
micro-ISA's own definitions, the scratchpad's wide ports of any width, construction checks and
Verilog conversion. The whole unit is checked bit for bit against the golden model and cycle for
cycle (every micro-operation's issue cycle) against the ISS under Verilator:
``tests/cocotb/cocotb_vu.py`` through ``tests/cocotb/test_cocotb_rtl.py``."""

import numpy as np
import pytest
from amaranth.hdl import Module
from amaranth.sim import Simulator

from pimgpt.core.vu import uisa
from pimgpt.core.vu.cost import microcode_for
from pimgpt.core.vu.uisa import BSel, Pipeline, UOp, UWord
from pimgpt.hdl.scratchpad import Scratchpad
from pimgpt.hdl.vector_unit import VectorUnit, VectorUnitTop
from pimgpt.hdl.vu_decode import UCTL, UDecode, decode_table
from pimgpt.hdl.vu_lanes import FpLane, VectorLanes
from pimgpt.hdl.vu_seq import Sequencer

pytestmark = pytest.mark.filterwarnings("ignore:.*created but never used")
LAT = Pipeline(add=3, mul=2, load=2, issue=2)


def _python_decode(w: UWord, lat: Pipeline) -> dict:
    """What the issue logic must know of ``w``, straight from ``uisa`` (register numbers)."""
    unit = uisa.unit_of(w.op)
    vw = uisa.vector_writes(w)
    return {"unit": unit, "lat": lat.of(w.op), "vr": sorted(set(uisa.vector_reads(w))),
            "vw": list(vw), "sr": sorted(set(uisa.scalar_reads(w))),
            "sw": list(uisa.scalar_writes(w)), "port_f": unit is uisa.Unit.FP,
            "port_i": unit is not uisa.Unit.FP and bool(vw)}


def _rtl_decode(w: UWord, c: dict) -> dict:
    """The same from :class:`UDecode`'s outputs ``c`` (flags per field)."""
    field = {"a": w.ra, "b": w.rb, "c": w.rc, "d": w.rd}
    return {"unit": uisa.Unit(c["unit"]), "lat": c["lat"],
            "vr": sorted({field[f] for f in "abcd" if c[f"vr_{f}"]}),
            "vw": [w.rd] if c["vw_d"] else [],
            "sr": sorted({field[f] for f in "abc" if c[f"sr_{f}"]}),
            "sw": [w.rd] if c["sw_d"] else [], "port_f": bool(c["port_f"]),
            "port_i": bool(c["port_i"])}


def test_decode_logic_matches_the_micro_isa():
    """Every operation with every operand selection and mode, distinct and equal register fields
    (``rd = 0``: ``s0`` is never written), through the decode logic in simulation."""
    rng = np.random.default_rng(3)
    words = []
    for op in UOp:
        for bsel in BSel:
            for mode in (0, 1, 2, 5):
                regs = [int(x) for x in rng.integers(0, 32, 4)]
                words += [UWord(op, *regs, bsel, mode, int(rng.integers(0, 2**32))),
                          UWord(op, 0, 7, 7, 7, bsel, mode, 0)]
    words += microcode_for(16, LAT).words[::7]
    dut = UDecode(LAT)
    got = []

    async def bench(ctx):
        for w in words:
            ctx.set(dut.word.as_value(), uisa.encode(w))
            v = ctx.get(dut.ctl.as_value())
            got.append({name: (v >> f.offset) & ((1 << f.width) - 1)
                        for name, f in ((n, UCTL[n]) for n in UCTL.members)})

    sim = Simulator(dut)
    sim.add_testbench(bench)
    sim.run()
    for w, c in zip(words, got, strict=True):
        assert _rtl_decode(w, c) == _python_decode(w, LAT), w


def test_decode_table_covers_every_operation():
    table = decode_table(Pipeline())
    assert set(table) == set(UOp)
    # VMAD reads C from a register unless its mode says immediate; VCMOV reads its destination.
    assert table[UOp.VMAD][(BSel.REG, 0)]["vr_c"] == 1
    assert table[UOp.VMAD][(BSel.REG, 1)]["vr_c"] == 0
    assert table[UOp.VCMOV][(BSel.IMM, 0)]["vr_d"] == 1
    assert table[UOp.VLD][(BSel.REG, 0)]["lat"] == Pipeline().load


@pytest.mark.parametrize("lanes, widths", [(32, (16, 32)), (16, (16, 4))])
def test_scratchpad_wide_ports_of_any_width(lanes, widths):
    """Unaligned wide writes and reads of several widths on one banked memory, against a
    Python model (the vector unit's port is ``lanes`` words, the PIM engine's 16)."""
    words = 8 * lanes
    sp = Scratchpad(words, lanes=lanes, word_read_ports=1, word_write_ports=0,
                    wide_ports=len(widths), wide_widths=widths)
    rng = np.random.default_rng(lanes)
    model = np.zeros(words, dtype=np.int64)
    ports = [(getattr(sp, f"wide_rd{i or ''}"), getattr(sp, f"wide_wr{i or ''}"), w)
             for i, w in enumerate(widths)]
    errors = []

    async def bench(ctx):
        for _ in range(60):
            rd, wr, w = ports[int(rng.integers(0, len(ports)))]
            addr = int(rng.integers(0, words - w + 1))
            mask = int(rng.integers(0, 2**w))
            data = [int(x) for x in rng.integers(0, 2**32, w)]
            ctx.set(wr.addr, addr)
            ctx.set(wr.mask, mask)
            for k in range(w):
                ctx.set(wr.data[k], data[k])
                if mask >> k & 1:
                    model[addr + k] = data[k]
            await ctx.tick()
            ctx.set(wr.mask, 0)
            rd, _, w = ports[int(rng.integers(0, len(ports)))]
            addr = int(rng.integers(0, words - w + 1))
            ctx.set(rd.addr, addr)
            ctx.set(rd.en, 1)
            await ctx.tick()
            ctx.set(rd.en, 0)
            got = [ctx.get(rd.data[k]) for k in range(w)]
            if got != model[addr:addr + w].tolist():
                errors.append((addr, w))

    m = Module()
    m.submodules.sp = sp
    sim = Simulator(m)
    sim.add_clock(1e-9)
    sim.add_testbench(bench)
    sim.run()
    assert errors == []


def test_vector_unit_parameter_validation():
    with pytest.raises(ValueError, match="lanes"):
        VectorUnit(lanes=48)
    with pytest.raises(ValueError, match="sp_read_latency"):
        VectorUnit(lat=Pipeline(load=1))
    with pytest.raises(TypeError, match="Pipeline"):
        VectorUnit(lat=(2, 2, 2, 2))
    with pytest.raises(TypeError):
        VectorUnit(sp_addr_width="14")
    with pytest.raises(ValueError):
        VectorUnit(sp_addr_width=40)
    with pytest.raises(ValueError, match="other lanes"):
        VectorUnit(lanes=32, microcode=microcode_for(16, Pipeline()))
    with pytest.raises(TypeError, match="Microcode"):
        Sequencer([1, 2, 3])
    with pytest.raises(TypeError, match="Pipeline"):
        FpLane("fast")
    with pytest.raises(ValueError, match="lanes"):
        VectorLanes(24, Pipeline())
    with pytest.raises(ValueError, match="multiple"):
        VectorUnitTop(words=4100)
    with pytest.raises(ValueError, match="wide_widths"):
        Scratchpad(256, lanes=16, wide_ports=2, wide_widths=(16,))
    with pytest.raises(ValueError, match="wide width"):
        Scratchpad(256, lanes=16, wide_ports=1, wide_widths=(32,))


def test_vector_unit_runs_the_cost_models_rom():
    """The ROM is the cost model's microcode for the unit's lanes and pipeline (the perf model
    costs what the RTL runs); its conversion to Verilog is in tests/test_hdl_export.py."""
    vu = VectorUnit(lanes=16, lat=LAT, sp_addr_width=12)
    assert vu.microcode is microcode_for(16, LAT)
    assert Sequencer(vu.microcode).depth == len(vu.microcode.words) + 1

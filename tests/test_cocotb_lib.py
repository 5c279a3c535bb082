"""Pure-Python parts of the cocotb library: scoreboard, payload packing (stimulus and the
layout codec), parameter/report exchange, runner helpers."""

import numpy as np
import pytest

from pimgpt.core.errors import PimgptError
from pimgpt.hdl.mac import mac_column_layout
from pimgpt.sim.cocotb_lib import exchange, runner, stimulus
from pimgpt.sim.cocotb_lib.bus import Codec
from pimgpt.sim.cocotb_lib.scoreboard import Scoreboard


def test_scoreboard_counts_and_reports():
    sb = Scoreboard("t", context=lambda i: f"op{i}")
    sb.add_expected([1, 2, 3])
    sb.compare(1)
    sb.compare(5)
    assert sb.summary() == {"name": "t", "matched": 1, "mismatched": 1, "unexpected": 0,
                            "pending": 1,
                            "reports": ["item 1: got 0x00000005, expected 0x00000002 (op1)"]}
    msg = r"item 1: got 0x00000005, expected 0x00000002 \(op1\)"
    with pytest.raises(AssertionError, match=msg):
        sb.check()
    sb.compare(3)
    sb.compare(4)
    assert sb.unexpected == 1 and sb.pending == 0
    ok = Scoreboard("ok")
    ok.add_expected([7, 8])
    ok.compare(7)
    ok.compare(8)
    assert ok.check() == 2


def test_mac_packing_matches_the_rtl_layout():
    layout = mac_column_layout(16)
    a = np.arange(32, dtype=np.uint16).reshape(2, 16) + 0x100
    b = np.arange(32, dtype=np.uint16).reshape(2, 16) + 0x8000
    p = stimulus.pack_mac_columns(a, b, np.array([2]))
    for col in range(2):
        for k in range(16):
            off_a = layout["a"].offset + 16 * k
            off_b = layout["b"].offset + 16 * k
            assert (p[col] >> off_a) & 0xFFFF == a[col, k]
            assert (p[col] >> off_b) & 0xFFFF == b[col, k]
    first, last = layout["first"].offset, layout["last"].offset
    assert [(x >> first) & 1 for x in p] == [1, 0] and [(x >> last) & 1 for x in p] == [0, 1]


def test_pack_pairs_and_golden():
    assert stimulus.pack_pairs(np.array([0x3F80]), np.array([0x4000]), 16) == [0x40003F80]
    got = stimulus.golden("fp32add", np.array([0x3F800000], np.uint32),
                          np.array([0x3F800000], np.uint32))
    assert got.tolist() == [0x40000000]
    with pytest.raises(ValueError, match="unknown op 'div'"):
        stimulus.golden("div", np.zeros(1), np.zeros(1))


def test_random_mac_stream_shape():
    a16, b16, lengths = stimulus.mac_random(np.random.default_rng(0), 1000)
    assert a16.shape == b16.shape == (1000, 16) and lengths.sum() == 1000
    assert lengths.min() >= 1 and lengths.max() <= 8
    results = stimulus.mac_reference(a16, b16, lengths)
    normal = ((results >> 23) & 0xFF)
    assert np.mean((normal > 0) & (normal < 255)) > 0.8  # mostly finite, non-zero results


def test_runner_helpers(tmp_path):
    with pytest.raises(PimgptError, match="unknown simulator 'vcs'"):
        runner.simulator_available("vcs")
    v = tmp_path / "x.v"
    v.write_text("module other(a);\nendmodule\nmodule top(clk, i__payload,\n  o__valid);\n")
    assert runner._top_ports([v], "top") == ["clk", "i__payload", "o__valid"]
    with pytest.raises(runner.CocotbError, match="module nope not found"):
        runner._top_ports([v], "nope")
    with pytest.raises(ValueError, match="package.module:function"):
        runner.call_in_simulator("no_colon")


def test_codec_packs_the_host_command_as_the_rtl_decodes_it():
    """The host command of the system testbench, packed from ``host_cmd_layout``, is read back
    field by field by the RTL's own ``data.Const`` view of the same layout."""
    from pimgpt.core.config import load_hw
    from pimgpt.hdl.system import HostOp, dram_addr, host_cmd_layout

    layout = host_cmd_layout()
    codec = Codec(layout)
    hw = load_hw("tiny-rtl")
    addr = dram_addr(hw, 1, 3, 2, 5)
    word = codec.pack(op=HostOp.WR_DRAM, addr=addr, data=(1 << 255) | 7)
    view = layout.from_bits(word)
    assert view.op == HostOp.WR_DRAM and view.addr == addr and view.data == (1 << 255) | 7
    assert codec.unpack(word) == {"op": HostOp.WR_DRAM.value, "addr": addr,
                                  "data": (1 << 255) | 7}
    assert codec.get(word, "addr") == addr
    with pytest.raises(ValueError, match="'addr' = 4294967296 does not fit its 32 bits"):
        codec.pack(op=HostOp.START, addr=1 << 32)
    with pytest.raises(KeyError, match="no field 'adr'"):
        codec.pack(adr=1)


def test_codec_nested_struct_and_array_layouts():
    from amaranth.lib import data

    from pimgpt.core import isa
    from pimgpt.hdl.isa_layout import InstrWord, instr_word

    inner = data.StructLayout({"a": 3, "b": 5})
    codec = Codec(data.StructLayout({"valid": 1, "p": inner}))
    assert codec.pack(valid=1, p={"b": 2}) == 1 | 2 << 4
    assert codec.unpack(1 | 2 << 4) == {"valid": 1, "p": {"a": 0, "b": 2}}
    ins = isa.I(isa.Op.VADD, dst=3, a=4, b=5, n=6)
    word = Codec(InstrWord)
    assert word.pack(op=int(ins.op), flags=ins.flags, args={"f": ins.fields()}) == \
        instr_word(ins)
    # the opcode's named fields (a union member of the same bits)
    assert word.pack(op=int(ins.op), args={"vadd": ins.args}) == instr_word(ins)


def test_exchange_round_trip(tmp_path, monkeypatch):
    monkeypatch.setenv(exchange.PARAMS_ENV, '{"seed": 3}')
    monkeypatch.setenv(exchange.REPORT_ENV, str(tmp_path / "r.json"))
    assert exchange.params() == {"seed": 3} and exchange.param("nvec", 7) == 7
    exchange.report("a", {"n": np.int64(2)})
    exchange.report("b", np.arange(3))
    assert __import__("json").loads((tmp_path / "r.json").read_text()) == {"a": {"n": 2},
                                                                         "b": [0, 1, 2]}
    with pytest.raises(TypeError, match="cannot report object"):
        exchange.report("c", object())


def test_build_folder_of_another_toolchain_is_emptied(tmp_path):
    # The build cache is shared by every checkout; a folder built from another (removed or
    # recreated) .venv holds makefiles with dead absolute paths: it is emptied, its lock kept.
    d = tmp_path / "verilator"
    d.mkdir()
    (d / ".lock").write_text("")
    (d / "Vtop.mk").write_text("stale")
    (d / "obj").mkdir()
    (d / "toolchain.json").write_text('{"python": "/gone/.venv"}')
    runner._forget_other_toolchain(d, "verilator")
    assert sorted(p.name for p in d.iterdir()) == [".lock", "toolchain.json"]
    # The same toolchain again: the build is kept.
    (d / "Vtop.mk").write_text("fresh")
    runner._forget_other_toolchain(d, "verilator")
    assert (d / "Vtop.mk").read_text() == "fresh"


def test_rtl_build_key_follows_the_rom_in_memory(monkeypatch):
    """The key of a cached system build covers the vector unit's ROM as assembled in this process
    (not only the sources on disk, which an edit during a run can change under it)."""
    from pimgpt.core.config import load_hw
    from pimgpt.core.vu import cost
    from pimgpt.sim.cocotb_lib import system_run

    hw = load_hw("tiny-rtl")
    key = system_run._rtl_key(hw, {"p": 1})
    assert system_run._rtl_key(hw, {"p": 1}) == key
    real = cost.microcode_for(hw.asic.vector_lanes, cost.pipeline_of(hw))
    other = type(real)(real.words[:-1], real.entries, real.lanes, real.lat, real.labels)
    monkeypatch.setattr(cost, "microcode_for", lambda lanes, lat: other)
    assert system_run._rtl_key(hw, {"p": 1}) != key

"""The command-log checker: legal logs of real compiled programs pass, and every kind of broken log
(mutated by hand from a legal one) is caught with a message naming the constraint."""

from __future__ import annotations

import copy

import pytest

from pimgpt.core.config import hw_from_dict, load_hw
from pimgpt.core.dram import CMD
from pimgpt.core.isa import I, Op
from pimgpt.sim.perf.checker import TimingViolation, assert_legal, check_log
from pimgpt.sim.perf.engine import PerfEngine
from pimgpt.sw.compiler import compile_decode_step
from pimgpt.sw.models import get_model

HW = load_hw("pimgpt-gddr6-8ch")


def overlap_hw():
    raw = copy.deepcopy(HW.raw)
    raw["dram"]["act_overlap"] = True
    return hw_from_dict(raw, where="overlap")


def log_of(program, hw=HW):
    return PerfEngine(hw).run(program + [I(Op.EOC)], log=True).log


def mac(row, ncols=4):
    return I(Op.MAC_ABK, ch_mask=0xFF, row=row, col=0, ncols=ncols, gb_col=0)


def find(log, name, k=0):
    """Index of the k-th record of command ``name``."""
    idx = [i for i, r in enumerate(log) if r[0] == CMD[name]]
    return idx[k]


def with_record(log, i, **change):
    names = ("cmd", "mask", "fpi", "sub", "row", "t0", "n", "g")
    rec = dict(zip(names, log[i], strict=True))
    rec.update(change)
    out = list(log)
    out[i] = tuple(rec[n] for n in names)
    return out


# ---- legal logs -------------------------------------------------------------------------------
@pytest.mark.parametrize("model,hw_name,ctx", [("tiny", "tiny-rtl", 40),
                                               ("gpt2-small", "pimgpt-gddr6-8ch", 128)])
def test_compiled_decode_steps_are_legal(model, hw_name, ctx):
    hw = load_hw(hw_name)
    comp = compile_decode_step(get_model(model), hw, ctx)
    res = PerfEngine(hw).run(comp.program, log=True)
    # One MAC16 per column per selected channel of every MAC_ABK (the compiler emits no MAC_SBK).
    macs = [i for i in comp.program if i.op in (Op.MAC_ABK, Op.MAC_SBK)]
    assert {i.op for i in macs} == {Op.MAC_ABK}
    assert res.counts["MAC16"] == sum(i["ncols"] * bin(i["ch_mask"]).count("1") for i in macs)
    assert check_log(res.log, hw) == []


def test_compiled_generation_is_legal():
    # Prefill + decode of tiny on the 8-channel part: refreshes, lockstep merges at SYNCs.
    from pimgpt.sw.compiler import compile_generation

    comp = compile_generation(get_model("tiny"), HW, [1, 2, 3, 4, 5], 6)
    res = PerfEngine(HW).run(comp.program, log=True)
    # On every channel, at least one REFab per nREFI elapsed (the program's end issues those
    # still owed) and at most 8 more (pulled in).
    due = res.cycles // HW.timing["nREFI"]
    for ch in range(HW.dram.channels):
        n = sum(r[6] for r in res.log if r[0] == CMD["REFab"] and r[1] >> ch & 1)
        assert due <= n <= due + 8 and n > 0
    assert check_log(res.log, HW) == []


def test_compiled_decode_step_with_second_row_buffer_is_legal():
    hw = overlap_hw()
    comp = compile_decode_step(get_model("tiny"), hw, 64)
    res = PerfEngine(hw).run(comp.program, log=True)
    assert check_log(res.log, hw) == []


def test_hand_program_log_is_legal():
    assert check_log(log_of([mac(0), mac(1), mac(2)]), HW) == []


# ---- broken logs ------------------------------------------------------------------------------
def test_mac_too_soon_after_activation():
    log = log_of([mac(0)])
    i = find(log, "MAC16")
    bad = with_record(log, i, t0=log[i][5] - 1)
    errors = check_log(bad, HW)
    assert any("nRCDRDMAC" in e for e in errors), errors


def test_train_stride_below_nccd():
    log = log_of([mac(0)])
    bad = with_record(log, find(log, "MAC16"), g=1)
    errors = check_log(bad, HW)
    assert any("stride 1" in e and "nCCD" in e for e in errors), errors


def test_activation_of_an_open_bank():
    log = log_of([mac(0), mac(1)])
    bad = [r for k, r in enumerate(log) if k != find(log, "PREA")]
    errors = check_log(bad, HW)
    assert any("still open" in e for e in errors), errors


def test_column_command_on_a_closed_row():
    log = log_of([mac(0)])
    bad = with_record(log, find(log, "MAC16"), row=7)
    errors = check_log(bad, HW)
    assert any("row 7 not open" in e for e in errors), errors


def test_activation_before_precharge_completes():
    log = log_of([mac(0), mac(1)])
    i = find(log, "ACT16", 1)
    # Move the second ACT16 (and what follows it) 1 cycle earlier than PREA + nRP allows.
    bad = with_record(log, i, t0=log[i][5] - 1)
    errors = check_log(bad, HW)
    assert any("nRP" in e for e in errors), errors


def test_two_commands_in_one_cycle():
    log = log_of([I(Op.WR_GB, ch_mask=0xFF, gb_col=0, ncols=1, src=0), mac(0)])
    i = find(log, "ACT16")
    bad = with_record(log, i, t0=log[find(log, "WRGB")][5])
    errors = check_log(bad, HW)
    assert any("command bus" in e for e in errors), errors


def test_four_activation_window():
    prog = [I(Op.WR_ELEM, src=0, n=5, vec=0, region_row=0, n_local=1, vec_len=16, elem=0)]
    log = log_of(prog)
    i = find(log, "ACT")
    bad = with_record(log, i, t0=log[find(log, "ACT4")][5] + 11)  # nRRDS ok, nFAW not
    errors = check_log(bad, HW)
    assert any("nFAW" in e for e in errors), errors


def refreshes(log):
    return [i for i, r in enumerate(log) if r[0] == CMD["REFab"]]


def test_missing_refresh():
    # 150 rows x ~228 cycles > 9 x nREFI = 29997 cycles: without REFab the limit is broken.
    log = log_of([mac(r % 4, ncols=64) for r in range(150)])
    assert refreshes(log)
    bad = [r for r in log if r[0] != CMD["REFab"]]
    errors = check_log(bad, HW)
    assert any("missing by the end" in e and "more than 8 refreshes postponed" in e
               for e in errors), errors


def refresh_log(times):
    """A log of nothing but REFab on channel 0 at ``times``."""
    return [(CMD["REFab"], 1, 0, 0, -1, t, 1, 0) for t in times]


def test_refresh_postponed_too_long():
    # Refresh k is due at k x nREFI (3333); at most 8 may be owed, so refresh k must issue by
    # (k + 8) x nREFI: refresh 1 at 29997 is legal, at 29998 nine are owed before it.
    n = HW.timing["nREFI"]
    tail = [k * n for k in range(10, 20)]
    assert check_log(refresh_log([9 * n] + tail), HW) == []
    errors = check_log(refresh_log([9 * n + 1] + tail), HW)
    assert any("REFab 1 at 29998" in e and "more than 8 refreshes postponed" in e
               for e in errors), errors


def test_refresh_pulled_in_too_far():
    # Refresh k may issue from (k - 8) x nREFI on: eight refreshes nRFC apart from cycle 0 are
    # legal, a ninth before 3333 is one too many ahead.
    rfc = HW.timing["nRFC"]
    assert check_log(refresh_log([k * rfc for k in range(8)]), HW) == []
    errors = check_log(refresh_log([k * rfc for k in range(9)]), HW)
    assert any("REFab 9 at 1680" in e and "pulled in" in e for e in errors), errors


def test_assert_legal_raises_with_the_first_violations():
    log = log_of([mac(0)])
    bad = with_record(log, find(log, "MAC16"), g=1)
    with pytest.raises(TimingViolation, match="violation"):
        assert_legal(bad, HW)
    assert_legal(log, HW)


# ---- register-access mode ------------------------------------------------------------------------
def test_register_command_in_array_mode():
    log = log_of([mac(0), I(Op.RD_MAC, ch_mask=0xFF, dst=0)])
    bad = [r for k, r in enumerate(log) if k != find(log, "MODREG")]
    errors = check_log(bad, HW)
    assert any("RDMAC16" in e and "needs register mode" in e for e in errors), errors


def test_array_command_left_in_register_mode():
    log = log_of([mac(0), I(Op.RD_MAC, ch_mask=0xFF, dst=0), mac(1)])
    bad = [r for k, r in enumerate(log) if k != find(log, "MODARR")]
    errors = check_log(bad, HW)
    assert any("MAC16" in e and "needs array mode" in e for e in errors), errors


def test_command_within_nmodch_of_a_switch():
    log = log_of([mac(0), I(Op.RD_MAC, ch_mask=0xFF, dst=0)])
    i = find(log, "RDMAC16")
    bad = with_record(log, i, t0=log[find(log, "MODREG")][5] + 31)
    errors = check_log(bad, HW)
    assert any("nMODCH" in e for e in errors), errors


def test_switch_before_register_data_leave_the_pins():
    log = log_of([mac(0), I(Op.RD_MAC, ch_mask=0xFF, dst=0), mac(1)])
    i = find(log, "MODARR")
    rd = log[find(log, "RDMAC16")]
    bad = with_record(log, i, t0=rd[5] + (rd[6] - 1) * rd[7] + 1)  # 1 tCK after the last burst
    errors = check_log(bad, HW)
    assert any("off the pins" in e for e in errors), errors


def test_switch_inside_a_train():
    log = log_of([mac(0, ncols=8), I(Op.RD_MAC, ch_mask=0xFF, dst=0)])
    i = find(log, "MODREG")
    bad = with_record(log, i, t0=log[find(log, "MAC16")][5] + 3)
    errors = check_log(bad, HW)
    assert any("inside the train" in e for e in errors), errors

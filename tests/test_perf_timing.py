"""Device-timing tests of the perf simulator, one per constraint (after Ramulator 2's harness).

Each test runs a micro-program and asserts the issue cycle of a command (or the program's cycle
count) that is derived by hand below from the config's timing numbers. Where the default preset
makes two constraints coincide, the test uses a variant config in which the constraint under test
is the binding one. All cycles are DRAM tCK; the default preset has
nRCDRDMAC 56, nRCDRD 36, nRCDWR 28, nRP 32, nRAS 54, nRC 89, nRTP 12, nWR 33, nCWL 6, nBL 2, nCL 50,
nCCDS 2, nCCDL 2, nRRDS 11, nRRDL 11, nWTRS 9, nWTRL 11, nFAW 42, nRFC 210, nREFI 3333, and a
32 GB/s channel (one 32-byte burst = 1 ns = 2 tCK = nIO). Tests of rows between array and
register commands (``WRGB``, ``RDMAC16``, ``WRMAC16``) use ``dram.mode_switch: false`` so that the
row under test binds; the register-access mode itself is tested in ``tests/test_perf_modes.py``.
The device alone is under test: the PIM engine's pipeline latencies (``asic.pim_*``) are set to 0
(``PIPE0``) except in the tests of those latencies at the end.
"""

from __future__ import annotations

import copy

import pytest

from pimgpt.core.config import hw_from_dict, load_hw
from pimgpt.core.isa import I, Op, f32_bits
from pimgpt.core.vu.cost import VectorUnitModel
from pimgpt.sim.perf.checker import check_log
from pimgpt.sim.perf.engine import PerfEngine

ALL = 0xFF


NO_MODES = {"mode_switch": False}
#: The refresh policy before postponement (REFab at the first boundary after it falls due).
EAGER = {"refresh_policy": "eager"}


#: No PIM engine pipeline: commands leave at the barrier, reads complete at ``done_after``, a
#: WR_ELEM wave generator that emits its waves without examining elements.
PIPE0 = {"pim_dispatch_latency": 0, "pim_return_latency": 0, "elem_scan_cycles": 0,
         "elem_wave_cycles": 0}


def hw_with(timing=None, dram=None, asic=None, base="pimgpt-gddr6-8ch"):
    """The default preset with some keys replaced (and ``PIPE0`` unless ``asic`` sets them)."""
    raw = copy.deepcopy(load_hw(base).raw)
    raw["timing"].update(timing or {})
    raw["dram"].update(dram or {})
    raw["asic"].update({**PIPE0, **(asic or {})})
    return hw_from_dict(raw, where="test variant")


def run(program, hw=None):
    hw = hw or hw_with()
    res = PerfEngine(hw).run(list(program) + [I(Op.EOC)], log=True)
    assert check_log(res.log, hw) == []  # every run of these tests is also legal
    return res


def issues(res, name, ch=0):
    """Issue cycles of every command ``name`` on channel ``ch`` (trains expanded)."""
    from pimgpt.core.dram import CMD

    out = []
    for c, mask, _fpi, _sub, _row, t0, n, g in res.log:
        if c == CMD[name] and mask >> ch & 1:
            out.extend(t0 + k * g for k in range(n))
    return sorted(out)


def mac(row, ncols=1, mask=ALL, col=0):
    return I(Op.MAC_ABK, ch_mask=mask, row=row, col=col, ncols=ncols, gb_col=0)


# ---- row activation and column timing --------------------------------------------------------
def test_nrcdrdmac_act_to_first_mac():
    t = load_hw().timing
    res = run([mac(0)])
    # ACT16 at cycle 0 (nothing before it); MAC16 nRCDRDMAC later.
    assert issues(res, "ACT16") == [0]
    assert issues(res, "MAC16") == [t["nRCDRDMAC"]] == [56]


def test_nccdl_train_spacing():
    # 4 MAC16 after the ACT16: 56, then every max(nCCDL, nCCDS, command bus) = 2 cycles.
    res = run([mac(0, ncols=4)])
    assert issues(res, "MAC16") == [56, 58, 60, 62]
    slow = hw_with(timing={"nCCDL": 5})
    assert issues(run([mac(0, ncols=3)], slow), "MAC16") == [56, 61, 66]


def test_nrtp_then_nrp_on_row_switch():
    # MAC16 at 56 -> PREA >= max(ACT16 + nRAS = 54, MAC16 + nRTP = 68) = 68;
    # ACT16 >= max(PREA + nRP = 100, ACT16 + nRC = 89, ACT16 + nFAW = 42) = 100; MAC16 at 156.
    res = run([mac(0), mac(1)])
    assert issues(res, "PREA") == [68]
    assert issues(res, "ACT16") == [0, 100]
    assert issues(res, "MAC16") == [56, 156]


def test_nras_binds_precharge():
    # nRCDRDMAC 10: MAC16 at 10, PREA >= max(10 + nRTP = 22, 0 + nRAS = 54) = 54.
    hw = hw_with(timing={"nRCDRDMAC": 10})
    res = run([mac(0), mac(1)], hw)
    assert issues(res, "MAC16")[0] == 10
    assert issues(res, "PREA") == [54]


def test_nrc_binds_next_activation():
    # nRAS 20, nRCDRDMAC 10: PREA at max(10 + 12, 20) = 22; ACT16 >= max(22 + nRP = 54,
    # 0 + nRC = 89) = 89.
    hw = hw_with(timing={"nRAS": 20, "nRCDRDMAC": 10})
    res = run([mac(0), mac(1)], hw)
    assert issues(res, "PREA") == [22]
    assert issues(res, "ACT16") == [0, 89]


def test_row_hit_needs_no_activation():
    # Same row twice: one ACT16; the second MAC16 follows the first at nCCDL.
    res = run([mac(0, ncols=1), mac(0, ncols=1, col=1)])
    assert issues(res, "ACT16") == [0]
    assert issues(res, "MAC16") == [56, 58]
    assert res.bank_col_accesses == 2 * 16 * 8 and res.bank_acts == 16 * 8
    assert res.row_hit_rate == pytest.approx(0.5)


# ---- activation to activation ------------------------------------------------------------------
def wr_elem(vec, n):
    """V-cache style write of element 0 of vectors vec..vec+n-1 (row 0, column 0 of each slot)."""
    return I(Op.WR_ELEM, src=0, n=n, vec=vec, region_row=0, n_local=1, vec_len=16, elem=0)


def test_nrrds_other_bank_group():
    # Vectors 3 and 4 live in banks 3 (group 0) and 4 (group 1) of channel 0: ACT at 0, the
    # next ACT nRRDS = 11 later (nRRDL set to 20 so that the two differ).
    res = run([wr_elem(3, 2)], hw_with(timing={"nRRDL": 20}))
    assert issues(res, "ACT") == [0, 11]


def test_nrrdl_same_bank_group():
    # Banks 2 and 3 share group 0: the second ACT nRRDL = 20 after the first.
    res = run([wr_elem(2, 2)], hw_with(timing={"nRRDL": 20}))
    assert issues(res, "ACT") == [0, 20]


def test_nfaw_window_after_group_activation():
    # Vectors 0..4: banks 0-3 are one whole bank group -> ACT4 (weight 4 in the nFAW window) at
    # 0; the ACT of bank 4 must wait for the window: 0 + nFAW = 42 (> nRRDS = 11).
    res = run([wr_elem(0, 5)])
    assert issues(res, "ACT4") == [0]
    assert issues(res, "ACT") == [42]


def test_nfaw_four_single_activations():
    # nRRDS = nRRDL = 2, nFAW 42: banks 3,4,5,6,7 (vectors 3..7 minus the whole group 1 = banks
    # 4-7, which take one ACT4): ACT b3 at 0, ACT4 (group 1) >= 0 + nFAW (needs an empty window)
    # = 42.
    res = run([wr_elem(3, 5)], hw_with(timing={"nRRDS": 2, "nRRDL": 2}))
    assert issues(res, "ACT") == [0]
    assert issues(res, "ACT4") == [42]


# ---- writes, reads and turnarounds -----------------------------------------------------------
def wr_sbk(bank, row, elem=0, n=16, src=1000):
    return I(Op.WR_SBK, ch=0, bank=bank, row=row, elem=elem, n=n, src=src)


def rd_sbk(bank, row, elem=0, n=16):
    return I(Op.RD_SBK, ch=0, bank=bank, row=row, elem=elem, n=n, dst=0)


def test_nrcdwr_and_write_recovery():
    # ACT at 0, WR at nRCDWR = 28; PRE >= max(0 + nRAS = 54, 28 + nCWL + nBL + nWR = 69) = 69;
    # ACT at 69 + nRP = 101 (> nRC = 89); RD at 101 + nRCDRD = 137.
    res = run([wr_sbk(0, 0), rd_sbk(0, 1)])
    assert issues(res, "WR") == [28]
    assert issues(res, "PRE") == [69]
    assert issues(res, "ACT") == [0, 101]
    assert issues(res, "RD") == [137]


def test_write_to_read_same_bank_group():
    # WR at 28; RD (same bank, row open) >= max(28 + nCWL + nBL + nWTRL = 47,
    # 28 + nCWL + nIO + nWTRS = 45, ACT + nRCDRD = 36) = 47.
    res = run([wr_sbk(0, 0), rd_sbk(0, 0, elem=16)])
    assert issues(res, "RD") == [47]


def test_read_to_write_turnaround():
    # RD b0 at 36; ACT b4 next in order at 37; WR b4 >= max(37 + nRCDWR = 65,
    # 36 + nCL + nIO - nCWL = 82) = 82.
    res = run([rd_sbk(0, 0), wr_sbk(4, 0)])
    assert issues(res, "RD") == [36]
    assert issues(res, "ACT") == [0, 37]
    assert issues(res, "WR") == [82]


def test_scratchpad_hazard_between_pim_instructions():
    # WR_SBK reading the words RD_SBK writes is dispatched when RD's data have arrived:
    # 36 + nCL + nIO = 88; bank 4's ACT then issues at 88 and the WR nRCDWR = 28 later.
    res = run([rd_sbk(0, 0), wr_sbk(4, 0, src=0)])
    assert issues(res, "ACT") == [0, 88]
    assert issues(res, "WR") == [88 + 28]


def test_read_latency_ncl_completes_sync():
    # RD at 36; its data are in the scratchpad nCL + nIO = 52 later: SYNC ends at 88.
    res = run([rd_sbk(0, 0), I(Op.SYNC)])
    assert res.cycles == 88


# ---- global buffer, accumulators, data pins ----------------------------------------------------
def test_gb_write_lands_before_mac():
    # nRCDRDMAC 2: WRGB at 0, ACT16 at 1 (in order), MAC16 >= max(1 + 2, 0 + nCWL + nBL = 8) = 8.
    res = run([I(Op.WR_GB, ch_mask=ALL, gb_col=0, ncols=1, src=0), mac(0)],
              hw_with(timing={"nRCDRDMAC": 2}, dram=NO_MODES))
    assert issues(res, "WRGB") == [0]
    assert issues(res, "ACT16") == [1]
    assert issues(res, "MAC16") == [8]


def test_bias_lands_before_mac():
    # nRCDRDMAC 2. WR_BIAS of 16 banks' fp32 accumulators = 64 B = two WRMAC16 bursts, at 0 and
    # 0 + max(nCCDS, nIO) = 2; the MAC's ACT16 follows in order at 3; MAC16 >= max(3 + 2,
    # 2 + nCWL + nBL = 10) = 10: the bias row binds.
    res = run([I(Op.WR_BIAS, ch_mask=ALL, src=0), mac(0)],
              hw_with(timing={"nRCDRDMAC": 2}, dram=NO_MODES))
    assert issues(res, "WRMAC16") == [0, 2]
    assert issues(res, "ACT16") == [3]
    assert issues(res, "MAC16") == [10]


def test_accumulator_read_before_reuse():
    # nCCDL 4. MAC16 at 56; RDMAC16 bursts at 56 + nCCDL = 60 and 64; the next MAC16 (same row)
    # >= max(56 + nCCDL = 60, 64 + nCCDL = 68) = 68: the accumulator-reuse row binds.
    res = run([mac(0), I(Op.RD_MAC, ch_mask=ALL, dst=0), mac(0, col=1)],
              hw_with(timing={"nCCDL": 4}, dram=NO_MODES))
    assert issues(res, "RDMAC16") == [60, 64]
    assert issues(res, "MAC16") == [56, 68]


def test_mac_pipeline_before_rdmac():
    # nCCDL 4: MAC16 at 56, 60; RDMAC16 >= 60 + nCCDL = 64; the second burst of 16 fp32
    # accumulators (64 B = 2 bursts) at 64 + max(nCCDL, nIO) = 68; done at 68 + nIO = 70.
    res = run([mac(0, ncols=2), I(Op.RD_MAC, ch_mask=ALL, dst=0), I(Op.SYNC)],
              hw_with(timing={"nCCDL": 4}, dram=NO_MODES))
    assert issues(res, "MAC16") == [56, 60]
    assert issues(res, "RDMAC16") == [64, 68]
    assert res.cycles == 70


def test_io_rate_spaces_bursts():
    # 8 Gb/s per pin x 16 pins: a 32-byte burst takes 2 ns = 4 tCK = nIO > nCCDL: WRGB every 4.
    res = run([I(Op.WR_GB, ch_mask=ALL, gb_col=0, ncols=3, src=0)],
              hw_with(dram={"io_gbps_per_pin": 8, **NO_MODES}))
    assert issues(res, "WRGB") == [0, 4, 8]
    # WRGB bursts take the pins: 3 x 32 B into each of 8 channels.
    assert res.io_bytes_in == 3 * 32 * 8


# ---- refresh ----------------------------------------------------------------------------------
def test_refresh_every_nrefi_closes_rows():
    # Eager: rows streamed back to back for > nREFI: the first refresh is due at nREFI = 3333;
    # the open row is precharged (PREA >= 3333), REFab follows nRP later, and the next ACT16
    # waits nRFC.
    prog = [mac(r % 4, ncols=64) for r in range(20)]
    res = run(prog, hw_with(dram=EAGER))
    refs = issues(res, "REFab")
    assert refs, "no refresh issued"
    pre_before = max(t for t in issues(res, "PREA") if t < refs[0])
    assert pre_before >= 3333
    assert refs[0] >= pre_before + 32
    act_after = min(t for t in issues(res, "ACT16") if t > refs[0])
    assert act_after >= refs[0] + 210


def _vscale(hw, n):
    """A VSCALE of ``n`` words and its duration in tCK (the vector unit's cost model, 2 tCK per
    ASIC cycle on this hardware)."""
    vs = I(Op.VSCALE, dst=0, a=0, n=n, scale_f32=f32_bits(0.5))
    return vs, 2 * VectorUnitModel(hw).cost(vs).cycles


def test_refresh_precharge_nrp_then_nrfc():
    # nREFI 400. ACT16 0, MAC16 56 (done 58); a VSCALE of D tCK runs 58..58+D, past the refresh
    # due at 400, which is issued when the channels idle, at its due time: PREA at max(400,
    # ACT16 + nRAS = 54, MAC16 + nRTP = 68) = 400, REFab at 400 + nRP = 432; the next ACT16 at
    # max(58 + D, 432 + nRFC = 642) = 642, MAC16 at 642 + 56 = 698, end 700.
    # Eager policy (postponement is tested below).
    hw = hw_with(timing={"nREFI": 400}, dram=EAGER)
    vs, d = _vscale(hw, 128 * 100)
    assert 400 < 58 + d <= 642, d  # the scenario: the VSCALE spans the due time, ends before
    res = run([mac(0), I(Op.SYNC), vs, I(Op.SYNC), mac(1)], hw)
    assert issues(res, "PREA") == [400]
    assert issues(res, "REFab") == [432]
    assert issues(res, "ACT16") == [0, 642]
    assert issues(res, "MAC16") == [56, 698]
    assert res.cycles == 700


def test_refresh_blocks_every_command_for_nrfc():
    # As above (eager, nREFI 400, REFab at 432), then a WR_GB (no modes) instead of the MAC:
    # dispatched at 58 + D < 642, its first WRGB waits for REFab + nRFC = 642.
    hw = hw_with(timing={"nREFI": 400}, dram={**EAGER, **NO_MODES})
    vs, d = _vscale(hw, 128 * 100)
    assert 58 + d < 642, d
    res = run([mac(0), I(Op.SYNC), vs, I(Op.SYNC),
               I(Op.WR_GB, ch_mask=ALL, gb_col=0, ncols=2, src=0)], hw)
    assert issues(res, "REFab") == [432]
    assert issues(res, "WRGB") == [642, 644]


def test_refresh_waits_nrc_after_activation():
    # nREFI 400, nRAS 20, nRCDRDMAC 10. A VSCALE of D tCK (390 < D < 394): ACT16 at D, MAC16 at
    # D + 10 (done D + 12). The refresh due at 400 follows at the next instruction boundary: PREA
    # at max(400, D + nRAS, D + 10 + nRTP = D + 22) = D + 22; REFab at max(D + 22 + nRP,
    # D + nRC) = D + 89: the row cycle binds. After a second VSCALE (D + 12 .. 2D + 12): ACT16 at
    # max(2D + 12, D + 89 + nRFC) = 2D + 12, MAC16 at 2D + 22; the refresh due at 800: PREA at
    # 2D + 22 + 12, REFab at max(2D + 34 + 32, 2D + 12 + 89) = 2D + 101.
    # Eager policy.
    hw = hw_with(timing={"nREFI": 400, "nRAS": 20, "nRCDRDMAC": 10}, dram=EAGER)
    vs, d = _vscale(hw, 128 * 87)
    assert 390 < d and 2 * d + 12 < 800, d  # the scenario the comment works through
    res = run([vs, I(Op.SYNC), mac(0), I(Op.SYNC), vs, I(Op.SYNC), mac(1)], hw)
    assert issues(res, "ACT16") == [d, 2 * d + 12]
    assert issues(res, "MAC16") == [d + 10, 2 * d + 22]
    assert issues(res, "PREA") == [d + 22, 2 * d + 34]
    assert issues(res, "REFab") == [d + 89, 2 * d + 101]


def quarter_rows(n):
    """``n`` MAC_ABKs of 16 columns, four per row (a row switch every fourth)."""
    return [mac(k // 4, ncols=16, col=16 * (k % 4)) for k in range(n)]


def test_postponed_refresh_waits_for_the_row_switch():
    # nREFI 3300. Row k's MAC16s run 56 + 226k .. 182 + 226k (64 columns at nCCDL, then PREA
    # + nRTP, ACT16 + nRP, MAC16 + nRCDRDMAC: 226 tCK per row); row 14's four MAC_ABKs end at
    # 3250, 3282, 3314, 3346. Eager: the boundary after 3314 >= 3300 refreshes mid-row: PREA
    # 3326, REFab 3358, row 14 reopened at 3358 + nRFC = 3568, its last MAC_ABK at 3624.
    hw = hw_with(timing={"nREFI": 3300}, dram=EAGER)
    res = run(quarter_rows(64), hw)
    assert issues(res, "REFab")[0] == 3358
    assert [t for t in issues(res, "ACT16") if 3300 < t < 3650] == [3568]
    assert issues(res, "MAC16")[14 * 64 + 48] == 3624
    # Postponed, nREFI 825: a row switch refreshes once half the postponement budget is owed
    # (4 of 8: the rest waits for idle windows), i.e. from 4 x 825 = 3300 on. Owed 4 at 3315,
    # but the next MAC_ABK hits the open row; at 3347 row 15 is next (a row switch): PREA 3346 +
    # nRTP = 3358, REFab 3390, ACT16 of row 15 at 3600, MAC16 3656. Earlier row switches (owed
    # 1-3) refresh nothing.
    res = run(quarter_rows(64), hw_with(timing={"nREFI": 825}))
    assert issues(res, "REFab")[0] == 3390
    assert [t for t in issues(res, "ACT16") if 3300 < t < 3650] == [3600]
    assert issues(res, "MAC16")[15 * 64] == 3656
    # No activation beyond one per row: the refresh closed no row that was used again.
    assert len(issues(res, "ACT16")) == 16


def test_idle_window_pulls_refreshes_in():
    # ACT16 0, MAC16 56; SYNC at 58; a VSCALE of D tCK (462 <= D < 672), barrier at 58 + D.
    # Nothing is due (the first refresh at 3333), but refreshes may be pulled in while the
    # channel idles if they complete by 58 + D: PREA at max(ACT16 + nRAS, MAC16 + nRTP) = 68,
    # REFab 68 + nRP = 100 (done 310), REFab 310 (done 520); a third would end at 730 > 58 + D.
    # ACT16 at 58 + D, MAC16 56 later.
    vs, d = _vscale(load_hw("pimgpt-gddr6-8ch"), 128 * 130)
    assert 462 <= d < 672, d  # the scenario the comment works through
    res = run([mac(0), I(Op.SYNC), vs, I(Op.SYNC), mac(1)])
    assert issues(res, "PREA") == [68]
    assert issues(res, "REFab")[:2] == [100, 310]
    assert issues(res, "ACT16") == [0, 58 + d]
    assert issues(res, "MAC16") == [56, 114 + d]


def test_idle_window_takes_an_owed_refresh_that_half_fits():
    # nREFI 400. Eight MAC_ABKs stream row 0 (row hits) to about 1080: 2 refreshes owed, below
    # half the postponement budget, so none is issued yet. SYNC; a VSCALE of D tCK; barrier at
    # e; then row 1. In the window the first refresh's REFab issues at r0 (after PREA + nRP). An
    # owed refresh whose REFab has at least nRFC / 2 inside the window is issued even though it
    # ends after e (the next ACT16 waits for r0 + nRFC: more of it hides than it delays); with
    # less inside it waits, and row 1 opens right after e.
    hw = hw_with(timing={"nREFI": 400})
    rfc = hw.timing["nRFC"]
    head = [mac(0, ncols=64) for _ in range(8)] + [I(Op.SYNC)]

    def with_window(n):
        vs, d = _vscale(hw, n)
        return run(head + [vs, I(Op.SYNC), mac(1)], hw), d
    res, _ = with_window(128 * 400)  # a long window: where the first REFab goes
    ref = [t for t in issues(res, "REFab")]
    r0 = ref[0]
    end = issues(res, "MAC16")[8 * 64 - 1] + 2  # the SYNC before the window
    assert end < r0 and len(issues(res, "ACT16")) == 2

    def find(lo, hi):
        for n in range(128, 128 * 400, 64):  # the window's length from the cost model alone
            d = _vscale(hw, n)[1]
            if lo <= end + d < hi:
                return with_window(n)[0], end + d
        raise AssertionError((lo, hi))
    res, e = find(r0 + rfc // 2, r0 + rfc)
    assert issues(res, "REFab")[0] == r0
    assert issues(res, "ACT16")[1] == r0 + rfc > e
    res, e = find(r0 + 8, r0 + rfc // 2)
    assert issues(res, "PREA")[0] == e  # row 0 stayed open through the window
    assert issues(res, "ACT16")[1] == e + hw.timing["nRP"]
    assert not [t for t in issues(res, "REFab") if t < e]


def test_refresh_forced_after_seven_postponed():
    # The same row streamed over and over (every boundary a row hit): refreshes are postponed
    # until 7 are owed, owed(t) = (t - 3333) // 3333 + 1 >= 7 from t = 23331. MAC_ABK k streams
    # 56 + 128k .. 182 + 128k; the first boundary at or after 23331 follows k = 181 (t = 23351):
    # PREA at 23350 + nRTP = 23362, REFab 23394; owed is then 6: the row is reopened at
    # 23394 + nRFC = 23604.
    res = run([mac(0, ncols=64) for _ in range(200)])
    assert issues(res, "REFab")[0] == 23394
    assert issues(res, "ACT16")[:2] == [0, 23604]


# ---- second row buffer (act_overlap) -------------------------------------------------------------
def test_act_overlap_hides_activation():
    # Without overlap: MAC16 of row 0 at 56..182; PREA 182 + nRTP = 194; ACT16 194 + nRP = 226;
    # first MAC16 of row 1 at 226 + nRCDRDMAC = 282.
    base = run([mac(0, ncols=64), mac(1, ncols=64)])
    assert issues(base, "MAC16")[64] == 282
    # With a second row buffer, row 1 (buffer 1) is activated during row 0's MACs, at
    # ACT16 + nFAW = 42 (an ACT16 needs an empty window); its data are ready at 42 + 56 = 98, so
    # row 1's first MAC16 directly follows row 0's last: 182 + nCCDL = 184.
    hw = hw_with(dram={"act_overlap": True})
    ov = run([mac(0, ncols=64), mac(1, ncols=64)], hw)
    assert issues(ov, "ACT16") == [0, 42]
    assert issues(ov, "MAC16")[64] == 184
    assert ov.cycles < base.cycles


def test_act_overlap_precharges_the_other_buffer_between_macs():
    # Rows 0, 1, 2: row 2 reuses buffer 0, so its PREA must follow row 0's last MAC16 (182) by
    # nRTP: 194, but row 1's MAC16s hold the even cycles (184, 186, ...) of the command bus, so
    # it takes 195; its ACT16 195 + nRP = 227 (odd, free).
    hw = hw_with(dram={"act_overlap": True})
    res = run([mac(0, ncols=64), mac(1, ncols=64), mac(2, ncols=64)], hw)
    assert issues(res, "PREA") == [195]
    assert issues(res, "ACT16") == [0, 42, 227]
    macs = issues(res, "MAC16")
    assert macs[128] == macs[127] + 2  # row 2 follows row 1 without a bubble


def test_act_overlap_opens_the_row_after_a_row_split_over_macs():
    # Row 0 streamed by two MAC_ABKs (48 + 16 columns), then row 1: the row to open during row
    # 0 is the next MAC_ABK's on another row, so row 1 follows row 0 without a bubble, as when
    # row 0 is one MAC_ABK.
    hw = hw_with(dram={"act_overlap": True})
    split = [I(Op.MAC_ABK, ch_mask=ALL, row=0, col=0, ncols=48, gb_col=0),
             I(Op.MAC_ABK, ch_mask=ALL, row=0, col=48, ncols=16, gb_col=0, acc=1), mac(1, 64)]
    res = run(split, hw)
    macs = issues(res, "MAC16")
    assert macs[64] == macs[63] + 2
    assert res.cycles == run([mac(0, 64), mac(1, 64)], hw).cycles


def test_act_overlap_opens_the_next_row_across_a_sync():
    # A SYNC orders data, not rows: row 1 is activated during row 0's MACs (ACT16 + nFAW = 42)
    # and its first MAC16 only waits for the barrier.
    hw = hw_with(dram={"act_overlap": True})
    res = run([mac(0, 64), I(Op.SYNC), mac(1, 64)], hw)
    assert issues(res, "ACT16") == [0, 42]
    assert issues(res, "MAC16")[64] - issues(res, "MAC16")[63] < 56  # < nRCDRDMAC


@pytest.mark.parametrize("per_channel", [False, True])
def test_wr_elem_wave_generators_shared_or_per_channel(per_channel):
    # 128 vectors on 8 channels x 16 banks: one wave of 16 writes per channel. One generator
    # (the RTL's) emits the channels' waves one after another, one op per tCK; with one
    # generator per channel (asic.elem_per_channel) every channel's wave leaves at once.
    hw = hw_with(timing={"nRCDWR": 0}, asic={"elem_per_channel": per_channel})
    res = run([wr_elem(0, 128)], hw)
    firsts = [issues(res, "WR", c)[0] for c in range(8)]
    if per_channel:
        assert len(set(firsts)) == 1
    else:
        assert all(b - a >= 16 for a, b in zip(firsts, firsts[1:], strict=False))


def test_act_overlap_config_is_validated():
    from pimgpt.core.config import ConfigError

    with pytest.raises(ConfigError, match="act_overlap"):
        hw_with(dram={"act_overlap": "yes"})


# ---- ASIC and ordering ------------------------------------------------------------------------
def test_asic_vector_latency():
    # A vector instruction occupies the unit for its microcode's cycles (pimgpt.core.vu.cost),
    # at 1 GHz = 2 tCK of 0.5 ns per ASIC cycle.
    vu = VectorUnitModel(load_hw("pimgpt-gddr6-8ch"))
    for ins in (I(Op.VADD, dst=0, a=64, b=128, n=64), I(Op.SOFTMAX, dst=0, src=0, n=32)):
        cycles = vu.cost(ins).cycles
        assert 10 < cycles < 200
        assert run([ins]).cycles == 2 * cycles


def test_ideal_vector_unit_takes_one_cycle_and_does_the_work():
    # asic.vector_unit_ideal (a what-if): each vector instruction one ASIC cycle (2 tCK), its
    # fp32 operations and scratchpad words (energy) those of the routine.
    real = VectorUnitModel(load_hw("pimgpt-gddr6-8ch"))
    ideal = VectorUnitModel(hw_with(asic={"vector_unit_ideal": True}))
    pim = mac(0, ncols=64)
    for ins in (I(Op.VADD, dst=0, a=64, b=128, n=64), I(Op.SOFTMAX, dst=0, src=0, n=32)):
        r, i = real.cost(ins), ideal.cost(ins)
        assert r.cycles > 10 and i.cycles == 1
        assert (i.ops, i.words) == (r.ops, r.words) and r.ops > 0
        assert run([ins], hw_with(asic={"vector_unit_ideal": True})).cycles == 2
        # serial after a MAC train: only its one cycle adds to the train's 184 tCK
        assert run([pim, I(Op.SYNC), ins], hw_with(asic={"vector_unit_ideal": True})).cycles \
            == 184 + 2


def test_pim_and_asic_overlap_until_sync():
    # PIM: MAC16s of one row end at 56 + 126 + nCCDL = 184. ASIC: VSCALE of 16000 (longer than
    # the MACs). Without SYNC they overlap: the ASIC's time; with SYNC between: the sum.
    pim = mac(0, ncols=64)
    vec = I(Op.VSCALE, dst=0, a=0, n=16000, scale_f32=f32_bits(0.5))
    t_vec = 2 * VectorUnitModel(load_hw("pimgpt-gddr6-8ch")).cost(vec).cycles
    assert t_vec > 184
    assert run([pim, vec]).cycles == t_vec
    assert run([pim, I(Op.SYNC), vec]).cycles == 184 + t_vec


def test_channel_mask_limits_work_to_selected_channels():
    res = run([mac(0, ncols=2, mask=0x3)])
    assert res.counts["MAC16"] == 2 * 2 and res.counts["ACT16"] == 2
    assert issues(res, "MAC16", ch=5) == []


# ---- more constraints -------------------------------------------------------------------------
def test_nccds_other_bank_group_column_spacing():
    # nRRDS 2, nCCDS 5: ACT b3 at 0, ACT b4 at 2; WR b3 at 0 + nRCDWR = 28; WR b4 >= max(2 + 28,
    # 28 + nCCDS = 33) = 33.
    res = run([wr_elem(3, 2)], hw_with(timing={"nRRDS": 2, "nCCDS": 5}))
    assert issues(res, "ACT") == [0, 2]
    assert issues(res, "WR") == [28, 33]


def test_nccdl_same_bank_group_column_spacing():
    # nRRDS = nRRDL = 2 (the channel-wide nRRDS row applies to same-group pairs too), nCCDL 7:
    # banks 2 and 3 share a group: ACTs at 0 and 2, WR at 28 and max(2 + 28, 28 + 7) = 35.
    res = run([wr_elem(2, 2)], hw_with(timing={"nRRDS": 2, "nRRDL": 2, "nCCDL": 7}))
    assert issues(res, "ACT") == [0, 2]
    assert issues(res, "WR") == [28, 35]


def test_nwtrs_gb_write_to_accumulator_read():
    # WRGB at 0; RDMAC16 >= 0 + nCWL + nIO + nWTRS = 6 + 2 + 9 = 17 (no MAC before it).
    res = run([I(Op.WR_GB, ch_mask=ALL, gb_col=0, ncols=1, src=0),
               I(Op.RD_MAC, ch_mask=ALL, dst=4096)], hw_with(dram=NO_MODES))
    assert issues(res, "RDMAC16")[0] == 17


def test_nrcd_variants_of_gb_copies():
    # COPY_BKGB: ACT at 0, RDCP at nRCDRDCP = 66; COPY_GBBK of another bank's row: ACT at 67
    # (in order), WRCP at 67 + nRCDWRCP = 115.
    cp = dict(ch_mask=1, row=0, col=0, ncols=1, gb_col=0)
    res = run([I(Op.COPY_BKGB, bank=0, **cp), I(Op.COPY_GBBK, bank=5, **cp)])
    assert issues(res, "RDCP") == [66]
    assert issues(res, "ACT") == [0, 67]
    assert issues(res, "WRCP") == [115]


def test_latency_expressions_come_from_the_config():
    from pimgpt.core.config import ConfigError
    from pimgpt.core.dram import build_standard, derived_timing, evaluate

    t = derived_timing(load_hw())
    assert t["nIO"] == 2  # 32 B at 16 Gb/s x 16 pins = 1 ns = 2 tCK
    assert evaluate("nCWL+nBL+nWR", t) == 6 + 2 + 33
    assert evaluate("nCL+nIO-nCWL", t) == 50 + 2 - 6
    assert evaluate("nBL-nCL", t) == 0  # clamps at 0
    with pytest.raises(ConfigError, match="nXYZ"):
        evaluate("nRP+nXYZ", t)
    std = build_standard(load_hw())
    lat = {(r.note or r.latency): v for r, v in std.rows}
    assert lat["nRCDRDMAC"] == 56 and lat["row cycle"] == 89 and lat["write recovery"] == 41


# ---- every row of the standard has a hand-derived test above ---------------------------------
#: Row of pimgpt.core.dram.ROWS (its note, else its latency) -> the test that derives it by hand.
#: A row added to the standard fails test_every_row_has_a_hand_derived_test until one is added.
ROW_TESTS = {
    "command bus": test_read_to_write_turnaround,  # ACT 37 = RD 36 + 1
    "data bus, read bursts": test_mac_pipeline_before_rdmac,
    "data bus, write bursts": test_io_rate_spaces_bursts,
    "RD data off the bus before WR data": test_read_to_write_turnaround,
    "write-to-read turnaround": test_nwtrs_gb_write_to_accumulator_read,
    "write-to-read, same BG": test_write_to_read_same_bank_group,
    "column to column, any bank group": test_nccds_other_bank_group_column_spacing,
    "column to column, same bank group": test_nccdl_same_bank_group_column_spacing,
    "GB write lands before GB read": test_gb_write_lands_before_mac,
    "bias lands before MAC": test_bias_lands_before_mac,
    "MAC pipeline drains": test_mac_pipeline_before_rdmac,
    "accumulator read (and clear) before reuse": test_accumulator_read_before_reuse,
    "ACT to ACT, any bank group": test_nrrds_other_bank_group,
    "ACT to ACT, same bank group": test_nrrdl_same_bank_group,
    "four-activation window": test_nfaw_window_after_group_activation,
    "row cycle": test_nrc_binds_next_activation,
    "row active time": test_nras_binds_precharge,
    "precharge time": test_nrtp_then_nrp_on_row_switch,
    "nRCDRD": test_nrcdwr_and_write_recovery,
    "nRCDRDMAC": test_nrcdrdmac_act_to_first_mac,
    "nRCDRDCP": test_nrcd_variants_of_gb_copies,
    "nRCDWR": test_nrcdwr_and_write_recovery,
    "nRCDWRCP": test_nrcd_variants_of_gb_copies,
    "read to precharge": test_nrtp_then_nrp_on_row_switch,
    "write recovery": test_nrcdwr_and_write_recovery,
    "nRP": test_refresh_precharge_nrp_then_nrfc,
    "nRC": test_refresh_waits_nrc_after_activation,
    "refresh blocks the channel": test_refresh_blocks_every_command_for_nrfc,
    # The register-access mode's rows are derived by hand in tests/test_perf_modes.py.
    "mode switch (nMODCH)": "test_nmodch_to_enter_and_to_leave_register_mode",
    "register read data off the pins before a mode switch":
        "test_register_read_leaves_the_pins_before_the_switch",
    "register writes land before a mode switch": "test_register_write_lands_before_the_switch",
}


def test_every_row_has_a_hand_derived_test():
    """Every row of the default standard (``gddr6-aim``, the one these tests run) is named here."""
    import test_perf_modes

    from pimgpt.core.dram import DEFAULT_STANDARD, STANDARDS

    rows = [r.note or r.latency for r in STANDARDS[DEFAULT_STANDARD].rows]
    assert len(rows) == len(set(rows)), "two rows share a name; give each a note"
    assert set(rows) == set(ROW_TESTS), set(rows) ^ set(ROW_TESTS)
    for test in ROW_TESTS.values():
        assert callable(test) or callable(getattr(test_perf_modes, test, None)), test


# ---- the PIM engine's pipeline (asic.pim_*, the RTL's latencies) ------------------------------
def test_pim_dispatch_latency_delays_the_first_command_after_a_barrier():
    # The ACT16 of a MAC_ABK leaves pim_dispatch_latency after the program's start and after a
    # SYNC; the rest of the instruction follows from it by the standard alone.
    base, late = run([mac(0)]), run([mac(0)], hw_with(asic={"pim_dispatch_latency": 5}))
    assert issues(base, "ACT16") == [0] and issues(late, "ACT16") == [5]
    assert late.cycles == base.cycles + 5
    two = run([mac(0), I(Op.SYNC), mac(0, col=1)], hw_with(asic={"pim_dispatch_latency": 5}))
    assert issues(two, "MAC16") == [late.cycles - 2, late.cycles + 5]  # the row is open


@pytest.mark.parametrize("ret", [0, 1, 4])
def test_pim_return_latency_delays_the_completion_of_reads(ret):
    # RD_MAC ends when its last RDMAC16's words are in the scratchpad: nIO (the standard's
    # done_after) plus pim_return_latency; a SYNC after it waits for them.
    hw = hw_with(dram=NO_MODES, asic={"pim_return_latency": ret})
    res = run([mac(0), I(Op.RD_MAC, ch_mask=ALL, dst=0), I(Op.SYNC)], hw)
    assert res.cycles == issues(res, "RDMAC16")[-1] + 2 + ret
    rd = run([I(Op.RD_SBK, ch=0, bank=0, row=0, elem=0, n=16), I(Op.SYNC)], hw)
    assert rd.cycles == issues(rd, "RD")[-1] + 50 + 2 + ret  # nCL + nIO + the return path


def test_wr_elem_waves_leave_at_the_generators_pace():
    # tiny-rtl (2 channels x 4 banks), 16 vectors: elements 0-3 go to channel 0, 4-7 to channel
    # 1, ... The generator (elem_scan_cycles 2, elem_wave_cycles 3; it takes the instruction in
    # cycle 0) examines elements 0-7 in cycles 1-16; element 8 finds bank 0 taken: its
    # examination ends at 19, channel 0's wave's first op at 19 + 2 = 21, the wave (4 writes)
    # ends at 26; elements 8-11 to 34, element 12 closes channel 1's wave: first op 38, ends 43;
    # elements 12-15 to 51; at the end channel 0's wave at 53 + 2 = 55, channel 1's at 62 + 2 =
    # 64 (one op per tCK). With the rows open (nRCDWR 0), the first write of each second wave
    # leaves at dispatch (2) + that cycle, the rest one data burst (nIO = 2) apart.
    hw = hw_with(timing={"nRCDWR": 0, "nCCDS": 1, "nCCDL": 1}, base="tiny-rtl",
                 asic={"pim_dispatch_latency": 2, "elem_scan_cycles": 2, "elem_wave_cycles": 3})
    res = run([wr_elem(0, 16)], hw)
    assert issues(res, "WR", 0)[4:] == [57, 59, 61, 63]
    assert issues(res, "WR", 1)[4:] == [66, 68, 70, 72]
    # The generator never lets a write leave before its op (first waves: 2 + 21, 2 + 38).
    assert issues(res, "WR", 0)[0] >= 23 and issues(res, "WR", 1)[0] >= 40

"""The perf engine's DRAM commands, one row per command: expansion, CSV, timeline tracks, CLI."""

from __future__ import annotations

import json
from collections import Counter

import numpy as np
import pytest

from pimgpt.cli import main
from pimgpt.core.config import hw_variant, load_hw
from pimgpt.core.dram import CMD, COMMANDS, derived_timing
from pimgpt.sim.perf import simulate
from pimgpt.sim.perf.commands import (
    commands_csv,
    perf_commands,
    register_mode_spans,
    save_commands_csv,
)
from pimgpt.sim.perf.timeline import mode_thread, trace_events
from pimgpt.sw.compiler import compile_decode_step
from pimgpt.sw.models import get_model


@pytest.fixture(scope="module")
def run():
    """A tiny decode step on four channels with a refresh every 700 tCK (several refreshes,
    some inside register-mode visits' neighbourhood), its command log kept."""
    hw = hw_variant(hw_variant(load_hw("tiny-rtl"), "dram", channels=4), "timing", nREFI=700)
    comp = compile_decode_step(get_model("tiny"), hw, 32)
    return hw, comp, simulate(comp.program, hw, log=True)


def _naive(log, channels):
    """The expansion written the slow, obvious way."""
    out = {c: [] for c in range(channels)}
    for cmd, mask, fpi, _sub, _row, t, n, gap in log:
        for c in range(channels):
            if mask >> c & 1:
                out[c].extend((t + k * gap, cmd, fpi) for k in range(n))
    return {c: sorted(v, key=lambda x: x[0]) for c, v in out.items()}


def test_expansion_is_every_command_of_the_log(run):
    hw, _, res = run
    got = perf_commands(res.log, hw.dram.channels)
    want = _naive(res.log, hw.dram.channels)
    assert any(n > 1 for *_, n, _gap in res.log)  # MAC trains: one record, many commands
    for c in range(hw.dram.channels):
        assert [tuple(r) for r in got[c].tolist()] == want[c]
    total = Counter()
    for rows in got.values():
        total.update(COMMANDS[k] for k in rows[:, 1].tolist())
    assert {k: v for k, v in res.counts.items() if v} == dict(total)
    assert total["REFab"] > 0 and total["MODREG"] > 0 and total["MAC16"] > 0


def test_csv_rows_and_writer_agree(run, tmp_path):
    hw, _, res = run
    traces = perf_commands(res.log, hw.dram.channels)
    text = commands_csv(traces)
    path = tmp_path / "c.csv"
    n = save_commands_csv(traces, path)
    assert path.read_text() == text
    lines = text.splitlines()
    assert lines[0] == "channel,cycle,command,footprint_index"
    assert n == len(lines) - 1 == sum(len(v) for v in traces.values())
    ch, cyc, cmd, fpi = lines[1].split(",")
    first = traces[0][0].tolist()
    assert (int(ch), int(cyc), CMD[cmd], int(fpi)) == (0, *first)


def test_register_mode_spans_pair_switches():
    m, a = CMD["MODREG"], CMD["MODARR"]
    rows = [(10, m, 0), (12, CMD["WRGB"], 0), (50, a, 0), (90, CMD["MAC16"], 0), (100, m, 0),
            (140, CMD["RDMAC16"], 0)]
    assert register_mode_spans({0: rows}, 32) == {0: [(10, 82), (100, 172)]}


def test_timeline_has_the_visits_and_refreshes_of_each_channel(run):
    hw, comp, res = run
    t = derived_timing(hw)
    events = trace_events(res, comp.tags, comp.program, hw=hw)["traceEvents"]
    cmds = perf_commands(res.log, hw.dram.channels)
    tid = mode_thread(hw.dram.banks)
    for c in range(hw.dram.channels):
        mine = [e for e in events if e["pid"] == c and e["tid"] == tid and e["ph"] == "X"]
        names = Counter(e["name"] for e in mine)
        assert names["register mode"] == int((cmds[c][:, 1] == CMD["MODREG"]).sum()) > 0
        assert names["refresh"] == int((cmds[c][:, 1] == CMD["REFab"]).sum()) > 0
        # a visit is at least both switches; a refresh nRFC; they never overlap (a refresh
        # needs array mode)
        for e in mine:
            tck = e["args"]["tck"]
            assert tck >= 2 * t["nMODCH"] if e["name"] == "register mode" else tck == t["nRFC"]
        spans = sorted((e["ts"], e["ts"] + e["dur"]) for e in mine)
        assert all(b[0] >= a[1] - 1e-6 for a, b in zip(spans, spans[1:], strict=False))
        # the next thread: MAC trains covering every MAC command, a row command per instant
        trains = [e for e in events if e["pid"] == c and e["tid"] == tid + 1]
        macs = np.isin(cmds[c][:, 1], [CMD["MAC"], CMD["MAC16"]])
        rows = np.isin(cmds[c][:, 1], [CMD[k] for k in ("ACT", "ACT4", "ACT16", "PRE", "PRE4",
                                                         "PREA")])
        assert sum(e["args"]["columns"] for e in trains if e["ph"] == "X") == macs.sum() > 0
        assert sum(e["ph"] == "i" for e in trains) == rows.sum() > 0
    # without hw (or without the log) the trace is the instructions alone, as before
    plain = trace_events(res, comp.tags, comp.program)["traceEvents"]
    assert not [e for e in plain if e.get("tid") == tid and e["ph"] == "X"]


def test_cli_perf_writes_the_commands_and_the_mode_tracks(tmp_path, capsys):
    cmds, trace, stats = tmp_path / "c.csv", tmp_path / "t.json", tmp_path / "s.json"
    rc = main(["run", "--backend", "perf", "-m", "tiny", "--hw", "tiny-rtl", "--context", "32",
               "--commands", str(cmds), "--timeline", str(trace), "--stats", str(stats)])
    assert rc == 0
    assert f"DRAM commands: {cmds}" in capsys.readouterr().out
    hw = load_hw("tiny-rtl")
    res = simulate(compile_decode_step(get_model("tiny"), hw, 32).program, hw)
    rows = [line.split(",") for line in cmds.read_text().splitlines()[1:]]
    assert Counter(r[2] for r in rows) == Counter({k: v for k, v in res.counts.items() if v})
    assert json.loads(stats.read_text())["cycles"] == res.cycles
    for ch in {r[0] for r in rows}:
        cycles = [int(r[1]) for r in rows if r[0] == ch]
        assert cycles == sorted(cycles) and cycles[-1] < res.cycles
    events = json.loads(trace.read_text())["traceEvents"]
    visits = [e for e in events if e["ph"] == "X" and e["name"] == "register mode"]
    assert len(visits) == res.counts["MODREG"] > 0


def test_cli_refuses_a_commands_file_that_is_not_csv(tmp_path, capsys):
    out = tmp_path / "c.json"
    rc = main(["run", "--backend", "perf", "-m", "tiny", "--hw", "tiny-rtl", "--context", "32",
               "--commands", str(out)])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 1 and len(err) == 1 and ".csv" in err[0] and "--commands" in err[0]
    assert not out.exists()


def test_command_events_trains_rows_and_the_event_cap():
    """The RTL view's MAC-train thread: a train per run of MAC commands within 2 nCCDL, row
    commands as instants, the whole thread left out (and named so) past the event cap."""
    from pimgpt.sim.perf.timeline import command_events

    hw = load_hw("tiny-rtl")
    t = derived_timing(hw)
    step = t["nCCDL"]
    mac = [(100 + k * step, CMD["MAC16"], 0) for k in range(8)]
    mac += [(1000 + k * step, CMD["MAC16"], 0) for k in range(3)]
    rows = sorted([(60, CMD["ACT16"], 0), (900, CMD["PREA"], 0), *mac])
    ev = command_events({0: rows}, hw, 1e-3, mode_tid=1, train_tid=0)
    trains = [e for e in ev if e["name"] == "MAC train"]
    assert [(e["ts"], e["args"]["columns"]) for e in trains] == [(0.1, 8), (1.0, 3)]
    assert trains[0]["dur"] == pytest.approx(8 * step * 1e-3)
    assert [e["name"] for e in ev if e["ph"] == "i"] == ["ACT16", "PREA"]
    capped = command_events({0: rows}, hw, 1e-3, mode_tid=1, train_tid=0, max_events=3)
    assert not [e for e in capped if e["ph"] in ("X", "i") and e["tid"] == 0]
    assert any("left out: 4 events" in e["args"].get("name", "") for e in capped
               if e["ph"] == "M")

"""``python -m pimgpt.apps.bench_check``: the checker over decode steps, and its exit status."""

from pimgpt.apps import bench_check
from pimgpt.sim.perf import checker


def test_check_point_finds_no_violation_on_a_paper_step():
    r = bench_check.check_point("gpt2-small", "pimgpt-gddr6-8ch", 128)
    # every command of the token is in the log: its 491,808 MAC16 (61.5 us of MAC columns at
    # nCCDL on 8 channels) and the rest (the number of records depends on how many channels
    # run in lockstep, not on the work)
    assert r["commands"] > 491_808 and r["log_records"] > 1_000
    assert r["violations"] == 0 and r["first_violations"] == []


def test_a_violation_fails_the_section(monkeypatch, capsys):
    # The section must be able to fail: a checker that finds a fault makes it exit 1 and name it.
    monkeypatch.setattr(bench_check, "QUICK", (("tiny", "tiny-rtl", 16),))
    monkeypatch.setattr(bench_check, "check_log", lambda log, hw: ["ch0 ACT16 too early"])
    assert bench_check.main(["--quick"]) == 1
    cap = capsys.readouterr()
    assert "ch0 ACT16 too early" in cap.out and "violations at: tiny tiny-rtl ctx 16" in cap.err
    monkeypatch.setattr(bench_check, "check_log", checker.check_log)
    assert bench_check.main(["--quick"]) == 0

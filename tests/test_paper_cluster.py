"""``pimgpt paper`` on a Dask cluster: the points of an embedded ``LocalCluster`` (real worker
processes) give the report the calling process gives: the same rows, CSV cells and Markdown
(the host's simulation wall time aside)."""

from __future__ import annotations

import csv

import pytest

from pimgpt.apps.paper import run_paper
from pimgpt.apps.tasks import in_process, run_tasks


class _Bar:
    def __init__(self):
        self.n, self.labels = 0, []

    def set_postfix_str(self, s):
        self.labels.append(s)

    def update(self):
        self.n += 1


def _rows(res: dict) -> dict:
    # sim_wall_s is the host's time, not a figure of the report
    return {k: [{c: v for c, v in r.items() if c != "sim_wall_s"} for r in res[k]]
            for k in ("rows", "llama", "units", "scaling", "lanes")}


def _csv(path) -> list[dict]:
    with open(path) as f:
        return [{c: v for c, v in r.items() if c != "sim_wall_s"} for r in csv.DictReader(f)]


def test_paper_on_a_local_cluster_equals_the_calling_process(tmp_path):
    kw = {"models": ["tiny", "tiny-llama-py"], "contexts": [16, 64], "sweeps": False,
          "progress": False}
    here = run_paper(tmp_path / "here", workers=1, **kw)
    there = run_paper(tmp_path / "there", workers=2, **kw)
    assert len(here["rows"]) == 2 and len(here["llama"]) == 4  # tiny: 16, 64; llama: 2 hw x 2
    assert _rows(there) == _rows(here)
    assert [r["ctx"] for r in there["rows"]] == [16, 64]  # the plan's order, not finish order
    assert ((tmp_path / "there" / "results.md").read_text()
            == (tmp_path / "here" / "results.md").read_text())
    for name in ("results.csv", "llama.csv"):
        assert _csv(tmp_path / "there" / name) == _csv(tmp_path / "here" / name)
    assert (sorted(p.name for p in (tmp_path / "there").iterdir())
            == sorted(p.name for p in (tmp_path / "here").iterdir()))


def _square(x: int) -> int:
    if x < 0:
        raise ValueError(f"negative {x}")
    return x * x


def test_run_tasks_keeps_order_and_raises_a_task_error():
    bar = _Bar()
    assert run_tasks(_square, [(3,), (1,), (2,)], ["a", "b", "c"], bar, workers=2) == [9, 1, 4]
    assert bar.n == 3 and sorted(bar.labels) == ["a", "b", "c"]
    with pytest.raises(ValueError, match="negative -1"):
        run_tasks(_square, [(2,), (-1,)], ["a", "b"], _Bar(), workers=2)


def test_where_tasks_run():
    assert in_process(5, 1, None) and in_process(1, 4, None)
    assert not in_process(5, 2, None) and not in_process(1, 1, "tcp://127.0.0.1:8786")

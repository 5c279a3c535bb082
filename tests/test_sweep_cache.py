"""The program cache: which hardware fields key a program, storage, and the sharing of simulations.

The guard against drift: the compiler runs on a hardware config that records every field read,
and every field it reads must be in ``PROGRAM_HW_FIELDS`` (else two points that differ in it would
share a program that should differ). Likewise the perf engine must read nothing of
``SUMMARY_ONLY_SECTIONS`` (else points differing there could not share a simulation).
"""

from __future__ import annotations

import dataclasses
import json

import pytest

from pimgpt.apps.sweep_eval import SUMMARY_ONLY_SECTIONS, compile_task, sim_key, simulate_task
from pimgpt.core.config import hw_from_dict, load_hw
from pimgpt.core.isa import encode
from pimgpt.sim.perf.engine import PerfEngine
from pimgpt.sw.compiler import attention_plan, compile_decode_step
from pimgpt.sw.models import get_model
from pimgpt.sw.program_cache import (
    PROGRAM_HW_FIELDS,
    ProgramCache,
    compile_decode_step_cached,
    program_hw,
    program_key,
)

#: Operations through which a number's value is used (arithmetic, comparison, conversion).
_USES = ("add radd sub rsub mul rmul truediv rtruediv floordiv rfloordiv mod rmod divmod rdivmod "
         "pow rpow neg pos abs and rand or ror xor rxor lshift rlshift rshift rrshift invert "
         "lt le gt ge eq ne hash bool int float index round trunc floor ceil format repr str "
         "bytes").split()


def _recording_number(kind):
    """A subclass of ``kind`` whose instances add their path to ``seen`` whenever used."""

    def make(name):
        base = getattr(kind, f"__{name}__", None)

        def method(self, *args):
            self._seen.add(self._path)
            return base(self, *args)
        return method if base is not None else None

    ns = {f"__{n}__": m for n in _USES if (m := make(n)) is not None}
    return type(f"Recording{kind.__name__.title()}", (kind,), ns)


_REC = {int: _recording_number(int), float: _recording_number(float)}


def _value(value, path, seen):
    """``value`` that records its use; non-numbers are recorded as read at once."""
    kind = type(value)
    if kind in _REC:
        out = _REC[kind](value)
        out._path, out._seen = path, seen
        return out
    seen.add(path)
    return value


class _ReadDict(dict):
    """A config section (dict) whose values record their *use*, not their copying.

    Copying a section (``dict(hw.timing)``) is not a dependency; doing arithmetic with, comparing
    or converting a value taken from it (or from any copy) is. Non-numeric values and whole-key
    iteration without lookups are recorded when read.
    """

    def __init__(self, data, prefix, seen):
        super().__init__(data)
        self._prefix, self._seen = prefix, seen

    def __getitem__(self, k):
        return _value(super().__getitem__(k), self._prefix + str(k), self._seen)

    def get(self, k, default=None):
        return self[k] if dict.__contains__(self, k) else default

    def __iter__(self):  # the generic (slow) dict-merge path: copies go through __getitem__
        return iter(list(dict.keys(self)))

    def keys(self):
        return list(dict.keys(self))

    def items(self):
        return [(k, self[k]) for k in dict.keys(self)]

    def values(self):
        return [self[k] for k in dict.keys(self)]

    def copy(self):
        return {k: self[k] for k in dict.keys(self)}


def test_the_recorder_sees_uses_through_copies():
    seen: set = set()
    d = _ReadDict({"a": 3, "b": 2.5, "c": 1, "d": 4}, "t.", seen)
    copies = (dict(d), {**d}, d.copy(), dict(d.items()))
    assert not seen  # copying is no use
    assert copies[0]["a"] * 2 == 6 and max(copies[1]["b"], 1.0) == 2.5
    assert f"{copies[3]['d']}" == "4"
    assert seen == {"t.a", "t.b", "t.d"}
    assert d.get("zz") is None and "t.zz" not in seen


def _recording(obj, prefix: str, seen: set):
    """A copy of a config dataclass whose attribute reads (properties too) land in ``seen``."""
    fields = {f.name for f in dataclasses.fields(obj)}

    def getattribute(self, name, _p=prefix):
        if name in fields:
            seen.add(_p + name)
        return object.__getattribute__(self, name)

    cls = type(f"Recording{type(obj).__name__}", (type(obj),),
                {"__getattribute__": getattribute})
    new = object.__new__(cls)
    for name in fields:
        value = getattr(obj, name)
        if name == "raw":  # the YAML mapping: a read of raw.x.y is a read of x.y
            value = _ReadDict(value, "", seen)
        elif isinstance(value, dict):
            value = _ReadDict(value, f"{prefix}{name}.", seen)
        elif dataclasses.is_dataclass(value):
            value = _recording(value, f"{prefix}{name}.", seen)
        object.__setattr__(new, name, value)
    return new


def _leaf_reads(seen: set, hw) -> set:
    """Reads of fields that hold values (not of the sections containing them, nor the name)."""
    out = set()
    for path in seen:
        node = hw
        for part in path.split("."):
            node = node.get(part) if isinstance(node, dict) else getattr(node, part, None)
        if not (dataclasses.is_dataclass(node) or isinstance(node, dict) or path == "name"):
            out.add(path)
    return out


def _covered(path: str) -> bool:
    return any(path == f or path.startswith(f + ".") for f in PROGRAM_HW_FIELDS)


@pytest.mark.parametrize("model,hw_name,context", [
    ("tiny", "tiny-rtl", 16),            # heads fit the banks: one MAC_ABK serves all channels
    ("tiny", None, 64),                  # 16 banks: the narrow-head fallback (MAC_SBK)
    ("gpt2-small", None, 8),             # several chunks per GEMV, the whole pipelined schedule
])
def test_compiler_reads_only_program_hw_fields(model, hw_name, context):
    seen: set = set()
    hw = _recording(load_hw(hw_name), "", seen)
    compile_decode_step(get_model(model), hw, context)
    reads = _leaf_reads(seen, load_hw(hw_name))
    assert reads, "the recording config saw no reads: the test would prove nothing"
    missing = sorted(p for p in reads if not _covered(p))
    assert not missing, (f"the compiler reads {missing}; add them to PROGRAM_HW_FIELDS in "
                         "sw/program_cache.py")


def test_perf_engine_reads_no_summary_only_section():
    seen: set = set()
    hw = _recording(load_hw("tiny-rtl"), "", seen)
    comp = compile_decode_step(get_model("tiny"), load_hw("tiny-rtl"), 16)
    PerfEngine(hw).run(comp.program)
    reads = _leaf_reads(seen, load_hw("tiny-rtl"))
    assert any(r.startswith("timing.") for r in reads)
    bad = sorted(r for r in reads if r.split(".")[0] in SUMMARY_ONLY_SECTIONS)
    assert not bad, f"the perf engine reads {bad}: remove that section from SUMMARY_ONLY_SECTIONS"


def _hw(**over):
    data = json.loads(json.dumps(load_hw("tiny-rtl").raw))
    for path, value in over.items():
        sec, key = path.split("__")
        data[sec][key] = value
    return hw_from_dict(data)


def test_program_key_follows_the_projection():
    cfg = get_model("tiny")
    base = program_key(cfg, _hw(), 16)
    assert len(base) == 64
    # fields outside the projection leave the key alone ...
    assert program_key(cfg, _hw(dram__act_overlap=True), 16) == base
    assert program_key(cfg, _hw(energy__act_pj=1.0), 16) == base
    assert program_key(cfg, _hw(timing__nFAW=7), 16) == base
    # ... fields in it, the context, the model and the schedule change it
    for other in (program_key(cfg, _hw(dram__channels=1), 16),
                  program_key(cfg, _hw(asic__vector_lanes=32), 16),
                  program_key(cfg, _hw(timing__nRP=40), 16),
                  program_key(cfg, _hw(), 17),
                  program_key(get_model("gpt2-small"), _hw(), 16),
                  program_key(cfg, _hw(), 16, schedule="serial")):
        assert other != base
    assert program_hw(_hw())["dram.channels"] == 2
    assert program_hw(_hw())["asic.vector_issue_width"] == _hw().asic.vector_issue_width


def test_fields_outside_the_projection_do_not_change_the_program():
    """The converse spot check: perturbing fields the key ignores gives the same instructions."""
    cfg = get_model("tiny")
    ref = compile_decode_step(cfg, _hw(), 16)
    for over in ({"dram__act_overlap": True}, {"timing__nFAW": 90}, {"timing__nRCDRD": 70},
                 {"energy__mac_col_pj": 1.0}, {"dram__bank_groups": 1}):
        comp = compile_decode_step(cfg, _hw(**over), 16)
        assert encode(comp.program) == encode(ref.program), over
        assert comp.tags == ref.tags


def test_cache_round_trip_and_damage(tmp_path):
    cfg, hw = get_model("tiny"), _hw()
    cache = ProgramCache(tmp_path)
    prog, tags, hit, plan = compile_decode_step_cached(cfg, hw, 16, cache)
    assert not hit
    assert plan == attention_plan(compile_decode_step(cfg, hw, 16)) and "head_groups" in plan
    prog2, tags2, hit2, plan2 = compile_decode_step_cached(cfg, _hw(dram__act_overlap=True), 16,
                                                           cache)
    assert hit2 and encode(prog2) == encode(prog) and tags2 == tags
    assert plan2 == plan  # the plan comes back with the program
    key = program_key(cfg, hw, 16)
    bin_path = tmp_path / "programs" / key[:2] / f"{key}.bin"
    assert bin_path.is_file() and sorted(p.suffix for p in bin_path.parent.iterdir()) == [
        ".bin", ".json"]
    # a damaged program is a miss (then rewritten), never a wrong program
    bin_path.write_bytes(bin_path.read_bytes()[:-32])
    assert cache.get(key) is None
    _, _, hit3, _ = compile_decode_step_cached(cfg, hw, 16, cache)
    assert not hit3 and cache.get(key) is not None
    (bin_path.parent / f"{key}.json").write_text("{not json")
    assert cache.get(key) is None


def test_cache_folder_follows_the_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("PIMGPT_CACHE_DIR", str(tmp_path / "c"))
    assert ProgramCache().dir == tmp_path / "c" / "programs"


def test_tasks_share_a_simulation_across_energy_values(tmp_path):
    """simulate_task: one engine run, each point summarised with its own energy figures."""
    cfg = get_model("tiny")
    hw_a = json.loads(json.dumps(load_hw("tiny-rtl").raw))
    hw_b = json.loads(json.dumps(hw_a))
    hw_b["energy"]["act_pj"] = 2 * hw_a["energy"]["act_pj"]
    compiled = compile_task(cfg, 16, hw_a, str(tmp_path), True)
    assert compiled["status"] == "ok" and compiled["cache"] == "miss"
    key = compiled["key"]
    assert sim_key(key, hw_a) == sim_key(key, hw_b)
    pts = [{"id": i, "model": "tiny", "context": 16, "params": {}, "hw": h}
           for i, h in (("a", hw_a), ("b", hw_b))]
    ra, rb = simulate_task(pts, compiled)
    assert ra["status"] == rb["status"] == "ok" and ra["sim_shared_by"] == 2
    assert ra["stats"]["cycles"] == rb["stats"]["cycles"]
    act_a = ra["stats"]["whole"]["energy_by_component_nj"]
    act_b = rb["stats"]["whole"]["energy_by_component_nj"]
    assert act_b["activate"] == pytest.approx(2 * act_a["activate"])
    # the same statistics as simulating point b on its own
    alone = simulate_task([pts[1]], compile_task(cfg, 16, hw_b, str(tmp_path), True))[0]
    assert alone["stats"]["energy_nj_per_token"] == rb["stats"]["energy_nj_per_token"]


def test_tasks_record_invalid_and_failing_points(tmp_path):
    hw = json.loads(json.dumps(load_hw("tiny-rtl").raw))
    bad = compile_task(get_model("gpt2-xl"), 16, hw, str(tmp_path), True)
    assert bad["status"] == "invalid" and "rows per bank" in bad["error"]
    pts = [{"id": "x", "model": "gpt2-xl", "context": 16, "params": {}, "hw": hw}]
    rec = simulate_task(pts, bad)[0]
    assert rec["status"] == "invalid" and rec["error"] == bad["error"]
    crashed = compile_task("not a model config", 16, hw, str(tmp_path), True)
    assert crashed["status"] == "error" and crashed["error"].startswith("TypeError: ")
    assert "\n" not in crashed["error"]

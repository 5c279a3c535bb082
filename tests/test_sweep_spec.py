"""Sweep specifications: expansion into points (grid, seeded random) and one-line spec errors."""

from __future__ import annotations

import pytest
import yaml

from pimgpt.apps.sweep_spec import SweepSpecError, apply_overrides, load_spec, parse_spec


def _spec(**over):
    data = {"base": "tiny-rtl", "models": ["tiny"], "contexts": [16],
            "axes": {"dram.channels": [1, 2], "dram.act_overlap": [False, True]}}
    data.update(over)
    return parse_spec(data)


def test_grid_crosses_axes_models_and_contexts():
    spec = _spec(models=["tiny", "gpt2-small"], contexts=[16, "max", 16])
    pts = spec.points()
    # contexts: 16 and the model maximum (tiny: 64; gpt2-small: 1024); 16 listed twice counts once
    assert len(pts) == 2 * 2 * 2 * 2
    assert {(p.model, p.context) for p in pts} == {("tiny", 16), ("tiny", 64),
                                                   ("gpt2-small", 16), ("gpt2-small", 1024)}
    assert {tuple(p.params.items()) for p in pts if p.model == "tiny" and p.context == 16} == {
        (("dram.channels", c), ("dram.act_overlap", o)) for c in (1, 2) for o in (False, True)}
    p = pts[0]
    assert p.hw["dram"]["channels"] == p.params["dram.channels"]
    assert p.hw["dram"]["banks"] == 4  # the rest of the base is kept
    assert len({q.id for q in pts}) == len(pts)
    assert [q.id for q in _spec(models=["tiny", "gpt2-small"], contexts=[16, "max"]).points()] \
        == [q.id for q in pts]  # ids are content hashes: stable across runs


def test_range_axis_and_no_axes():
    spec = _spec(axes={"asic.vector_lanes": {"start": 16, "stop": 64, "step": 16}})
    assert [p.params["asic.vector_lanes"] for p in spec.points()] == [16, 32, 48, 64]
    assert len(_spec(axes={}).points()) == 1


def test_random_sampling_is_seeded_and_distinct():
    axes = {"dram.channels": [1, 2, 4, 8], "asic.vector_lanes": [8, 16, 32, 64, 128]}
    samp = {"method": "random", "samples": 7, "seed": 3}
    a = _spec(axes=axes, sampling=samp).points()
    b = _spec(axes=axes, sampling=samp).points()
    c = _spec(axes=axes, sampling={**samp, "seed": 4}).points()
    assert [p.params for p in a] == [p.params for p in b]
    assert [p.params for p in a] != [p.params for p in c]
    assert len({tuple(p.params.values()) for p in a}) == 7
    # asking for more samples than the grid has gives the whole grid
    assert len(_spec(axes=axes, sampling={**samp, "samples": 100}).points()) == 20


def test_random_intervals():
    spec = _spec(axes={"energy.act_pj": {"low": 100.0, "high": 200.0},
                       "asic.vector_lanes": {"low": 8, "high": 64, "log": True},
                       "dram.act_overlap": [False, True]},
                 sampling={"method": "random", "samples": 30, "seed": 1})
    pts = spec.points()
    assert len(pts) == 30
    acts = [p.params["energy.act_pj"] for p in pts]
    lanes = [p.params["asic.vector_lanes"] for p in pts]
    assert all(isinstance(v, float) and 100.0 <= v <= 200.0 for v in acts)
    assert all(isinstance(v, int) and 8 <= v <= 64 for v in lanes)
    assert len(set(acts)) == 30 and {p.params["dram.act_overlap"] for p in pts} == {False, True}


def test_apply_overrides_copies():
    base = {"dram": {"channels": 8}, "asic": {"elem_ops": {"exp": 21}}}
    out = apply_overrides(base, {"dram.channels": 4, "asic.elem_ops.exp": 9})
    assert out == {"dram": {"channels": 4}, "asic": {"elem_ops": {"exp": 9}}}
    assert base["dram"]["channels"] == 8 and base["asic"]["elem_ops"]["exp"] == 21


@pytest.mark.parametrize("over,needle", [
    ({"modles": ["tiny"]}, "unknown keys ['modles']"),
    ({"models": []}, "models:"),
    ({"models": ["nope-model"]}, "models[0]: unknown model 'nope-model'"),
    ({"contexts": [0]}, "contexts: 0"),
    ({"contexts": "max"}, "contexts:"),
    ({"base": "no-such-preset"}, "base:"),
    ({"axes": {"channels": [1]}}, "axes: 'channels' is not a dotted"),
    ({"axes": {"drm.channels": [1]}}, "axes.drm.channels: 'drm' is not a section"),
    ({"axes": {"dram.chanels": [1, 2]}}, "axes.dram.chanels: no value is accepted"),
    ({"axes": {"dram.channels": []}}, "axes.dram.channels: the list of values is empty"),
    ({"axes": {"dram.channels": [[1]]}}, "axes.dram.channels: values must be"),
    ({"axes": {"dram.channels": {"start": 1, "stop": 4, "step": 0}}}, "axes.dram.channels: range"),
    ({"axes": {"dram.channels": {"low": 1, "high": 4}}}, "axes.dram.channels: an interval"),
    ({"axes": {"dram.channels": {"low": 4, "high": 1}}}, "axes.dram.channels: interval"),
    ({"axes": {"dram.channels": 4}}, "axes.dram.channels: give a list"),
    ({"sampling": "random"}, "sampling: random needs samples"),
    ({"sampling": {"method": "sobol"}}, "sampling.method"),
    ({"sampling": {"method": "random", "samples": 0}}, "sampling.samples"),
    ({"sampling": {"method": "random", "samples": 2, "seed": -1}}, "sampling.seed"),
    ({"sampling": {"method": "random", "samples": 2, "seeds": 1}}, "sampling: unknown keys"),
    ({"name": 3}, "name:"),
    ({"axes": {"dram.channels": {"start": 1, "stop": 10**7, "step": 1}}}, "use a larger step"),
])
def test_spec_errors_name_the_field(over, needle):
    with pytest.raises(SweepSpecError) as exc:
        _spec(**over)
    msg = str(exc.value)
    assert needle in msg and "\n" not in msg


def _preset_path(name):
    from importlib import resources

    return resources.files("pimgpt") / "configs" / f"{name}.yaml"


def test_a_field_missing_from_the_base_is_a_valid_axis(tmp_path):
    """A path absent from the base is accepted when the config reads it (it is no typo)."""
    data = yaml.safe_load(_preset_path("tiny-rtl").read_text())
    del data["dram"]["act_overlap"]
    (tmp_path / "base.yaml").write_text(yaml.safe_dump(data))
    spec = parse_spec({"base": "base.yaml", "models": ["tiny"],
                       "axes": {"dram.act_overlap": [False, True]}}, spec_dir=tmp_path)
    assert [p.hw["dram"]["act_overlap"] for p in spec.points()] == [False, True]


def test_load_spec_resolves_base_beside_the_spec(tmp_path):
    data = yaml.safe_load(_preset_path("tiny-rtl").read_text())
    data["dram"]["rows"] = 128
    (tmp_path / "hw").mkdir()
    (tmp_path / "hw" / "mine.yaml").write_text(yaml.safe_dump(data))
    spec_path = tmp_path / "s.yaml"
    spec_path.write_text("base: hw/mine.yaml\nmodels: [tiny]\naxes: {dram.banks: [4]}\n")
    spec = load_spec(spec_path)
    assert spec.points()[0].hw["dram"]["rows"] == 128
    assert spec.text.startswith("base: hw/mine.yaml")
    spec_path.write_text("base: hw/mine.yaml\nmodels: [tiny]\naxes: {asic.bnks: [4, 8]}\n")
    with pytest.raises(SweepSpecError, match=r"s\.yaml: axes\.asic\.bnks: no value is accepted"):
        load_spec(spec_path)


def test_a_spec_without_a_name_takes_its_files(tmp_path):
    """The titles name the file (they read "sweep sweep" with the old default)."""
    from pimgpt.apps.sweep_spec import load_spec

    (tmp_path / "lanes.yaml").write_text("base: tiny-rtl\nmodels: [tiny]\n")
    (tmp_path / "named.yaml").write_text("name: mine\nbase: tiny-rtl\nmodels: [tiny]\n")
    assert load_spec(tmp_path / "lanes.yaml").name == "lanes"
    assert load_spec(tmp_path / "named.yaml").name == "mine"

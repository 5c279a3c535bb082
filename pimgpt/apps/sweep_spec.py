"""Sweep specifications (``pimgpt sweep SPEC.yaml``): parse, validate, expand into points.

A spec is a YAML mapping (``docs/sweep.md`` documents it)::

    name: channels-lanes            # optional, shown in summary.md
    base: pimgpt-gddr6-8ch          # hardware preset or YAML path (relative to the spec)
    models: [gpt2-small, gpt2-xl]   # model presets, shipped models, checkpoint dirs, model YAML
    contexts: [128, max]            # tokens attended by the decode step; max = the model's ctx
    axes:                           # dotted path into the hardware YAML -> values
      dram.channels: [4, 8, 16]
      asic.vector_lanes: {start: 16, stop: 64, step: 16}    # 16, 32, 48, 64
      energy.act_pj: {low: 500.0, high: 900.0}             # random sampling only
    sampling: grid                  # or {method: random, samples: 40, seed: 1}

Every point is a model, a context and one value per axis; its hardware is the base with the
values set. Spec errors raise :class:`SweepSpecError` with one line naming the field; a point whose
hardware does not validate is not a spec error: the sweep records it as invalid, with the reason.
"""

from __future__ import annotations

import copy
import hashlib
import itertools
import json
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from pimgpt.core.config import DEFAULT_HW, hw_from_dict, hw_presets, load_hw, load_yaml
from pimgpt.core.errors import PimgptError
from pimgpt.sw.models import ModelConfig, get_model

SPEC_KEYS = ("name", "base", "models", "contexts", "axes", "sampling")
SAMPLING_KEYS = ("method", "samples", "seed")
RANGE_KEYS = ("start", "stop", "step")
INTERVAL_KEYS = ("low", "high", "log")
#: The largest number of points one spec may expand to (a typo such as ``step: 1`` over a wide
#: range must fail fast instead of filling the disk).
MAX_POINTS = 1_000_000


class SweepSpecError(PimgptError):
    """The sweep specification is invalid; the message names the field."""


@dataclass(frozen=True)
class Axis:
    """One swept hardware field: a list of values, or an interval for random sampling."""

    path: str
    values: tuple = ()
    low: float | None = None
    high: float | None = None
    log: bool = False

    @property
    def is_interval(self) -> bool:
        return self.low is not None


@dataclass(frozen=True)
class Point:
    """One simulation: a model, a context and the hardware values of the swept axes."""

    id: str
    model: str
    context: int
    params: dict
    hw: dict = field(repr=False, compare=False)


@dataclass
class SweepSpec:
    """A parsed, validated sweep specification."""

    name: str
    base_name: str
    base: dict
    models: list[str]
    model_cfgs: dict
    contexts: list
    axes: list[Axis]
    method: str = "grid"
    samples: int | None = None
    seed: int = 0
    text: str = ""

    def points(self) -> list[Point]:
        """Every point of the sweep: hardware samples crossed with models and contexts."""
        combos = self._hardware_samples()
        out, seen = [], set()
        for model in self.models:
            cfg = self.model_cfgs[model]
            contexts = []
            for c in self.contexts:
                ctx = cfg.ctx if c == "max" else c
                if ctx not in contexts:
                    contexts.append(ctx)
            for ctx in contexts:
                for combo in combos:
                    params = dict(zip((a.path for a in self.axes), combo, strict=True))
                    hw = apply_overrides(self.base, params)
                    pid = point_id(model, cfg, ctx, hw)
                    if pid not in seen:
                        seen.add(pid)
                        out.append(Point(pid, model, ctx, params, hw))
        return out

    def _hardware_samples(self) -> list[tuple]:
        if self.method == "grid":
            return list(itertools.product(*(a.values for a in self.axes)))
        rng = np.random.default_rng(self.seed)
        sizes = [len(a.values) for a in self.axes]
        if not any(a.is_interval for a in self.axes) and self.samples >= math.prod(sizes):
            return list(itertools.product(*(a.values for a in self.axes)))
        if not any(a.is_interval for a in self.axes):
            # Distinct grid points, drawn without replacement (mixed-radix index -> combo).
            picks = rng.choice(math.prod(sizes), size=self.samples, replace=False)
            combos = []
            for flat in sorted(int(p) for p in picks):
                combo = []
                for axis, size in zip(reversed(self.axes), reversed(sizes), strict=True):
                    flat, idx = divmod(flat, size)
                    combo.append(axis.values[idx])
                combos.append(tuple(reversed(combo)))
            return combos
        return [tuple(_draw(a, rng) for a in self.axes) for _ in range(self.samples)]


def _draw(axis: Axis, rng: np.random.Generator):
    if not axis.is_interval:
        return axis.values[int(rng.integers(len(axis.values)))]
    lo, hi = axis.low, axis.high
    if isinstance(lo, int) and isinstance(hi, int):
        if axis.log:
            return int(round(math.exp(rng.uniform(math.log(lo), math.log(hi)))))
        return int(rng.integers(lo, hi + 1))
    if axis.log:
        return float(math.exp(rng.uniform(math.log(lo), math.log(hi))))
    return float(rng.uniform(lo, hi))


def point_id(model: str, cfg: ModelConfig, context: int, hw: dict) -> str:
    """Stable identity of a point: a hash of the model, the context and the whole hardware."""
    text = json.dumps({"model": model, "cfg": cfg.to_dict(), "context": context, "hw": hw},
                      sort_keys=True, default=repr)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def apply_overrides(base: dict, params: dict) -> dict:
    """A deep copy of ``base`` with each dotted path of ``params`` set to its value."""
    out = copy.deepcopy(base)
    for path, value in params.items():
        *parents, leaf = path.split(".")
        node = out
        for part in parents:
            node = node[part]
        node[leaf] = value
    return out


def _is_number(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _range_values(path: str, spec: dict) -> tuple:
    unknown = sorted(set(spec) - set(RANGE_KEYS))
    if unknown or not all(k in spec for k in RANGE_KEYS):
        raise SweepSpecError(
            f"axes.{path}: a range needs exactly start, stop, step (got {sorted(spec)})"
        )
    start, stop, step = (spec[k] for k in RANGE_KEYS)
    if not all(_is_number(v) for v in (start, stop, step)) or step <= 0 or stop < start:
        raise SweepSpecError(
            f"axes.{path}: range start/stop/step must be numbers with step > 0 and "
            f"stop >= start, got {start!r}/{stop!r}/{step!r}"
        )
    count = int(math.floor((stop - start) / step + 1e-9)) + 1
    if count > MAX_POINTS:
        raise SweepSpecError(f"axes.{path}: the range has {count} values; use a larger step")
    if all(isinstance(v, int) for v in (start, stop, step)):
        return tuple(start + i * step for i in range(count))
    return tuple(float(start + i * step) for i in range(count))


def _interval(path: str, spec: dict) -> Axis:
    unknown = sorted(set(spec) - set(INTERVAL_KEYS))
    if unknown or "low" not in spec or "high" not in spec:
        raise SweepSpecError(
            f"axes.{path}: an interval needs low and high (optional log), got {sorted(spec)}"
        )
    lo, hi, log = spec["low"], spec["high"], spec.get("log", False)
    if not (_is_number(lo) and _is_number(hi)) or hi < lo:
        raise SweepSpecError(
            f"axes.{path}: interval low/high must be numbers with high >= low, got {lo!r}/{hi!r}"
        )
    if not isinstance(log, bool) or (log and lo <= 0):
        raise SweepSpecError(f"axes.{path}: log must be true/false, and low > 0 with log: true")
    return Axis(path, low=lo, high=hi, log=log)


def _parse_axis(path, spec, base: dict) -> Axis:
    if not isinstance(path, str) or not path or "." not in path:
        raise SweepSpecError(
            f"axes: {path!r} is not a dotted hardware path such as dram.channels"
        )
    *parents, leaf = path.split(".")
    node = base
    for depth, part in enumerate(parents):
        node = node.get(part) if isinstance(node, dict) else None
        if not isinstance(node, dict):
            where = ".".join(parents[: depth + 1])
            raise SweepSpecError(
                f"axes.{path}: '{where}' is not a section of the base hardware config"
            )
    if isinstance(spec, list):
        if not spec:
            raise SweepSpecError(f"axes.{path}: the list of values is empty")
        if any(isinstance(v, (dict, list)) or v is None for v in spec):
            raise SweepSpecError(f"axes.{path}: values must be numbers, booleans or strings")
        axis = Axis(path, values=tuple(spec))
    elif isinstance(spec, dict) and "start" in spec:
        axis = Axis(path, values=_range_values(path, spec))
    elif isinstance(spec, dict):
        axis = _interval(path, spec)
    else:
        raise SweepSpecError(
            f"axes.{path}: give a list of values, {{start, stop, step}} or {{low, high}}"
        )
    if leaf not in node:
        _check_field_exists(path, axis, base)
    return axis


def _check_field_exists(path: str, axis: Axis, base: dict) -> None:
    """A path the base lacks must be a field the config accepts and reads (else it is a typo).

    Invalid *values* of a real field make invalid points, recorded by the sweep; but when no
    value at all is accepted, or none changes the configuration, the path itself is wrong.
    """
    ref = hw_from_dict(base)
    accepted, first_error = False, None
    for value in axis.values or (axis.low, axis.high):
        try:
            if hw_from_dict(apply_overrides(base, {path: value})) != ref:
                return
            accepted = True
        except PimgptError as exc:
            first_error = first_error or " ".join(str(exc).split())
    if not accepted:
        raise SweepSpecError(f"axes.{path}: no value is accepted ({first_error})")
    raise SweepSpecError(
        f"axes.{path}: the base config lacks this field and every value given equals its "
        "default; drop the axis or add other values"
    )


def _parse_contexts(value) -> list:
    if value is None:
        return ["max"]
    if not isinstance(value, list) or not value:
        raise SweepSpecError("contexts: give a non-empty list of token counts (or max)")
    for c in value:
        if c != "max" and (isinstance(c, bool) or not isinstance(c, int) or c < 1):
            raise SweepSpecError(f"contexts: {c!r} is not a positive integer or max")
    return list(value)


def _parse_sampling(value) -> tuple[str, int | None, int]:
    if value is None or value == "grid":
        return "grid", None, 0
    if value == "random":
        raise SweepSpecError("sampling: random needs samples; write {method: random, samples: N}")
    if not isinstance(value, dict):
        raise SweepSpecError(f"sampling: expected grid or {{method: random, ...}}, got {value!r}")
    unknown = sorted(set(value) - set(SAMPLING_KEYS))
    if unknown:
        raise SweepSpecError(f"sampling: unknown keys {unknown}; valid: {list(SAMPLING_KEYS)}")
    method = value.get("method", "grid")
    if method not in ("grid", "random"):
        raise SweepSpecError(f"sampling.method: {method!r} is not grid or random")
    if method == "grid":
        return "grid", None, 0
    samples, seed = value.get("samples"), value.get("seed", 0)
    if isinstance(samples, bool) or not isinstance(samples, int) or samples < 1:
        raise SweepSpecError(f"sampling.samples: need a positive integer, got {samples!r}")
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise SweepSpecError(f"sampling.seed: need a non-negative integer, got {seed!r}")
    return "random", samples, seed


def _load_base(base, spec_dir: Path) -> tuple[str, dict]:
    """The base hardware as a YAML mapping (validated once here, so its own errors are spec
    errors and points only fail for their overrides)."""
    if base is None:
        base = DEFAULT_HW
    if not isinstance(base, str):
        raise SweepSpecError(f"base: expected a preset name or YAML path, got {base!r}")
    where = base
    if base not in hw_presets() and not Path(base).is_absolute():
        where = str(spec_dir / base)
    try:
        return base, load_hw(where).raw
    except PimgptError as exc:
        raise SweepSpecError(f"base: {exc}") from None


def parse_spec(data, spec_dir: str | Path = ".", text: str = "") -> SweepSpec:
    """Validate a parsed spec mapping; relative paths are taken from ``spec_dir``."""
    if not isinstance(data, dict):
        raise SweepSpecError("the spec must be a mapping of models, axes, ... (docs/sweep.md)")
    unknown = sorted(set(data) - set(SPEC_KEYS))
    if unknown:
        raise SweepSpecError(f"unknown keys {unknown}; valid keys: {list(SPEC_KEYS)}")
    base_name, base = _load_base(data.get("base"), Path(spec_dir))
    models = data.get("models")
    if not isinstance(models, list) or not models or not all(isinstance(m, str) for m in models):
        raise SweepSpecError("models: give a non-empty list of model names")
    cfgs = {}
    for i, m in enumerate(models):
        try:
            cfgs[m] = get_model(m)
        except PimgptError as exc:
            raise SweepSpecError(f"models[{i}]: {exc}") from None
    axes_spec = data.get("axes") or {}
    if not isinstance(axes_spec, dict):
        raise SweepSpecError("axes: expected a mapping of dotted hardware paths to values")
    axes = [_parse_axis(path, spec, base) for path, spec in axes_spec.items()]
    method, samples, seed = _parse_sampling(data.get("sampling"))
    if method == "grid":
        for a in axes:
            if a.is_interval:
                raise SweepSpecError(
                    f"axes.{a.path}: an interval {{low, high}} needs sampling: "
                    "{method: random, samples: N}"
                )
        size = math.prod(len(a.values) for a in axes) * len(models) * len(data.get("contexts")
                                                                          or [1])
        if size > MAX_POINTS:
            raise SweepSpecError(
                f"axes: the grid has {size} points (limit {MAX_POINTS}); use random sampling"
            )
    name = data.get("name", "sweep")
    if not isinstance(name, str):
        raise SweepSpecError(f"name: expected a string, got {name!r}")
    return SweepSpec(name=name, base_name=base_name, base=base, models=list(dict.fromkeys(models)),
                     model_cfgs=cfgs, contexts=_parse_contexts(data.get("contexts")), axes=axes,
                     method=method, samples=samples, seed=seed, text=text)


def load_spec(path: str | Path) -> SweepSpec:
    """Read and validate a spec file (``yaml.safe_load``)."""
    path = Path(path)
    # A spec is always a file (there are no spec presets): point at the shipped example.
    data = load_yaml(path, "sweep spec", missing="give the path of a sweep spec YAML file, such "
                     "as examples/sweep_channels_lanes.yaml (docs/sweep.md)")
    try:
        text = path.read_text()
    except OSError:
        text = ""
    if isinstance(data, dict) and "name" not in data:
        data = {**data, "name": path.stem}  # titles name the file, not "sweep sweep"
    try:
        return parse_spec(data, path.parent, text)
    except SweepSpecError as exc:
        raise SweepSpecError(f"{path}: {exc}") from None

"""The layers only point down: core <- sw <- sim, hdl <- verification <- apps.

Every ``import`` of every module of the package (function-local imports included) is read with
``ast`` and checked against the layer table below; an upward or sideways import fails with the
file, the line and the two layers. ``docs/architecture.md`` explains the layers.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import pimgpt

#: Layer of a module, by the longest matching prefix of its dotted name.
LAYER_OF_PREFIX = {
    "pimgpt.core": "core",
    "pimgpt.sw": "sw",
    "pimgpt.sim": "sim",
    "pimgpt.sim.cocotb_lib": "verification",
    "pimgpt.hdl": "hdl",
    "pimgpt.apps": "apps",
    "pimgpt.cli": "apps",
    "pimgpt.__main__": "apps",
    "pimgpt": "core",  # the package's own __init__ (version only)
}
#: Layers each layer may import (itself included).
ALLOWED = {
    "core": {"core"},
    "sw": {"core", "sw"},
    "sim": {"core", "sw", "sim"},
    "hdl": {"core", "sw", "hdl"},
    "verification": {"core", "sw", "sim", "hdl", "verification"},
    "apps": {"core", "sw", "sim", "hdl", "verification", "apps"},
}
#: Source folders of the package (pyproject's package-dir).
ROOT = Path(__file__).resolve().parents[1]
FOLDERS = {"pimgpt": ROOT / "pimgpt", "pimgpt.hdl": ROOT / "hdl", "pimgpt.sim": ROOT / "sim",
           "pimgpt.sw": ROOT / "sw"}


def layer_of(module: str) -> str | None:
    best = None
    for prefix in LAYER_OF_PREFIX:
        if (module == prefix or module.startswith(prefix + ".")) and (
                best is None or len(prefix) > len(best)):
            best = prefix
    return LAYER_OF_PREFIX[best] if best else None


def modules() -> dict[str, Path]:
    """Dotted name -> file of every module of the package."""
    out = {}
    for pkg, folder in FOLDERS.items():
        for path in folder.rglob("*.py"):
            rel = path.relative_to(folder).with_suffix("")
            parts = [p for p in rel.parts if p != "__init__"]
            name = ".".join([pkg, *parts])
            if pkg == "pimgpt" and parts and parts[0] in ("hdl", "sim", "sw"):
                continue
            out[name] = path
    return out


def imports_of(name: str, path: Path) -> list[tuple[int, str]]:
    tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
    is_pkg = path.name == "__init__.py"
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out += [(node.lineno, a.name) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = name.split(".")
                base = base if is_pkg else base[:-1]
                base = base[: len(base) - (node.level - 1)]
                mod = ".".join(base + ([node.module] if node.module else []))
            else:
                mod = node.module or ""
            # ``from pimgpt.x import y`` may name a module y: check the most specific one.
            for a in node.names:
                full = f"{mod}.{a.name}"
                out.append((node.lineno, full if layer_of(full) != layer_of(mod) else mod))
    return [(ln, m) for ln, m in out if m == "pimgpt" or m.startswith("pimgpt.")]


MODULES = modules()


def test_every_module_has_a_layer():
    assert len(MODULES) > 40
    assert all(layer_of(m) for m in MODULES)


@pytest.mark.parametrize("name", sorted(MODULES))
def test_imports_point_down(name):
    mine = layer_of(name)
    bad = [
        f"{MODULES[name].relative_to(ROOT)}:{ln} imports {mod} ({layer_of(mod)}) from {mine}"
        for ln, mod in imports_of(name, MODULES[name])
        if layer_of(mod) not in ALLOWED[mine]
    ]
    assert not bad, "; ".join(bad)


def test_checker_catches_an_upward_import(tmp_path):
    """The check can fail: an sw module importing the simulator is flagged."""
    f = tmp_path / "x.py"
    f.write_text("from pimgpt.sim.golden import GoldenMachine\nimport pimgpt.hdl.bank\n")
    mods = [m for _, m in imports_of("pimgpt.sw.x", f)]
    assert [layer_of(m) for m in mods] == ["sim", "hdl"]
    assert not ALLOWED["sw"] & {"sim", "hdl"}
    assert pimgpt.__version__

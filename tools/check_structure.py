#!/usr/bin/env python3
"""Print the modules over the size limit and the functions over the length limit; exit 1 if any.

The project keeps modules to about 600 lines and functions under about 150 (see
``docs/architecture.md``). Without arguments every module of the package folders (``pimgpt/``,
``hdl/``, ``sim/``, ``sw/``) is checked; with arguments, the given files or folders::

    .venv/bin/python tools/check_structure.py
    .venv/bin/python tools/check_structure.py sim/cocotb_lib pimgpt/apps/run_cli.py
    .venv/bin/python tools/check_structure.py --max-module 800 --max-function 200

A function's length counts every line from its ``def`` (decorators excluded) to its last line,
docstring included; a class is not a function, its methods are.
"""

from __future__ import annotations

import argparse
import ast
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
#: The package's source folders (pyproject's package-dir).
PACKAGE_FOLDERS = ("pimgpt", "hdl", "sim", "sw")
MAX_MODULE_LINES = 600
MAX_FUNCTION_LINES = 150


def python_files(targets) -> list[Path]:
    """Every ``.py`` file of ``targets`` (files or folders), sorted."""
    out = set()
    for target in targets:
        path = Path(target)
        if path.is_dir():
            out.update(p for p in path.rglob("*.py") if ".venv" not in p.parts)
        elif path.suffix == ".py" and path.is_file():
            out.add(path)
        else:
            raise SystemExit(f"error: {target} is not a Python file or a folder")
    return sorted(out)


def functions(tree: ast.AST):
    """``(qualified name, first line, length)`` of every function and method of a module."""
    def walk(node, prefix):
        for child in ast.iter_child_nodes(node):
            if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef)):
                name = f"{prefix}{child.name}"
                yield name, child.lineno, child.end_lineno - child.lineno + 1
                yield from walk(child, name + ".")
            elif isinstance(child, ast.ClassDef):
                yield from walk(child, f"{prefix}{child.name}.")
            else:
                yield from walk(child, prefix)

    yield from walk(tree, "")


def check(paths, max_module: int = MAX_MODULE_LINES,
          max_function: int = MAX_FUNCTION_LINES) -> list[str]:
    """One line per module over ``max_module`` lines and per function over ``max_function``."""
    problems = []
    for path in paths:
        text = path.read_text(encoding="utf-8")
        shown = path.resolve().relative_to(REPO) if path.resolve().is_relative_to(REPO) else path
        lines = len(text.splitlines())
        if lines > max_module:
            problems.append(f"{shown}: {lines} lines (module limit {max_module})")
        for name, line, length in functions(ast.parse(text, str(path))):
            if length > max_function:
                problems.append(f"{shown}:{line} {name}: {length} lines "
                                f"(function limit {max_function})")
    return problems


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("targets", nargs="*", help="files or folders (default: the package)")
    parser.add_argument("--max-module", type=int, default=MAX_MODULE_LINES)
    parser.add_argument("--max-function", type=int, default=MAX_FUNCTION_LINES)
    args = parser.parse_args(argv)
    targets = args.targets or [REPO / f for f in PACKAGE_FOLDERS]
    paths = python_files(targets)
    problems = check(paths, args.max_module, args.max_function)
    for line in problems:
        print(line)
    print(f"{len(paths)} modules checked, {len(problems)} over the limits", file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())

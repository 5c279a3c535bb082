"""One Verilator build for the block-level testbenches of the system RTL.

Every Verilator build recompiles the Verilator and cocotb runtime as well as the design, so the
block testbenches share one top level (:class:`BlocksTop`, like the fp units' ``Harness``): the
vector unit with its scratchpad (ports ``vu_*``, see ``tests/cocotb/cocotb_vu.py``) and one PIM
channel (ports ``ch_*``, ``tests/cocotb/cocotb_channel.py``).
"""

from __future__ import annotations

from pathlib import Path

from amaranth.hdl import Module
from amaranth.lib import wiring
from amaranth.lib.wiring import In

from pimgpt.core.config import HwConfig

from .runner import default_build_root

__all__ = ["BLOCKS_TOP", "BlocksTop", "blocks_verilog"]

BLOCKS_TOP = "pimgpt_blocks"


class BlocksTop(wiring.Component):
    """Blocks side by side under one top, ports renamed ``<name>_<port>`` (plain and interface
    ports alike), one clock and reset."""

    def __init__(self, blocks: dict):
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


def blocks_verilog(hw: HwConfig, vu_words: int = 16384) -> tuple[Path, Path]:
    """Write the harness Verilog (unless unchanged); returns ``(source, build_dir)``."""
    from amaranth.back import verilog

    from pimgpt.hdl.bank import ARRAY_VERILOG
    from pimgpt.hdl.channel import Channel, bank_verilog
    from pimgpt.hdl.vector_unit import VectorUnitTop

    build_dir = default_build_root() / f"blocks-{hw.name}"
    build_dir.mkdir(parents=True, exist_ok=True)
    top = BlocksTop({"vu": VectorUnitTop(vu_words), "ch": Channel(hw, bank_instances=True)})
    text = verilog.convert(top, name=BLOCKS_TOP, emit_src=False) + bank_verilog(hw) + \
        ARRAY_VERILOG
    src = build_dir / f"{BLOCKS_TOP}.v"
    if not src.exists() or src.read_text() != text:  # same text: keep the build
        src.write_text(text)
    return src, build_dir

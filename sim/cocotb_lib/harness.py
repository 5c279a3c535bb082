"""Put several independent RTL blocks into one top level, so one simulator build tests them all.

Each Verilator build costs tens of seconds of C++ compilation; the small arithmetic units are
therefore tested side by side in a single :class:`Harness` whose ports are the blocks' ports
renamed ``<block>_<port>`` (``fp32add_i__payload``, ``fp32add_o__valid``, ...).
"""

from __future__ import annotations

from amaranth.hdl import Module
from amaranth.lib import wiring

__all__ = ["Harness"]


class Harness(wiring.Component):
    """Top level exposing the ports of several components under prefixed names.

    Parameters
    ----------
    blocks : dict of str to wiring.Component
        Name prefix -> component; the components share the harness's ``sync`` domain.
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
            for port in block.signature.members:
                wiring.connect(m, wiring.flipped(getattr(self, f"{name}_{port}")),
                               getattr(block, port))
        return m

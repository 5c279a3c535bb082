"""The ASIC's SRAM scratchpad: fp32 words, several independent read and write ports.

Every client (vector unit, PIM engine, host) gets its own ports, so no arbitration is needed: the
compiler's ``SYNC`` rules guarantee that the PIM side and the vector unit never touch the same words
at the same time, and the host only uses its ports while the ASIC is stopped.
"""

from __future__ import annotations

from amaranth.hdl import Module
from amaranth.lib import wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out
from amaranth.utils import ceil_log2

from .fp import check_int

__all__ = ["Scratchpad", "sp_read_signature", "sp_write_signature"]

#: Largest scratchpad (fp32 words) the address fields can describe.
MAX_WORDS = 1 << 26


def sp_read_signature(addr_width: int) -> wiring.Signature:
    """A synchronous read port seen from the client: ``addr`` and ``en`` out, ``data`` back one
    cycle after ``en``."""
    return wiring.Signature({"addr": Out(addr_width), "en": Out(1), "data": In(32)})


def sp_write_signature(addr_width: int) -> wiring.Signature:
    """A write port seen from the client: ``addr``, ``data`` and ``en``."""
    return wiring.Signature({"addr": Out(addr_width), "data": Out(32), "en": Out(1)})


class Scratchpad(wiring.Component):
    """Scratchpad SRAM of ``words`` fp32 words.

    Parameters
    ----------
    words : int
        Capacity in 32-bit words (``asic.scratchpad_words``), 16 .. 2**26.
    read_ports, write_ports : int
        Number of ports of each kind, 1..8.

    Attributes
    ----------
    rd : list of In(sp_read_signature)
        Read ports ``rd0``, ``rd1``...: data arrives one cycle after ``en``.
    wr : list of In(sp_write_signature)
        Write ports ``wr0``...; if two write the same word in one cycle the higher-numbered wins.
    """

    def __init__(self, words: int, *, read_ports: int = 2, write_ports: int = 2):
        self._words = check_int("words", words, 16, MAX_WORDS)
        self._nr = check_int("read_ports", read_ports, 1, 8)
        self._nw = check_int("write_ports", write_ports, 1, 8)
        self.addr_width = ceil_log2(words)
        members = {}
        for i in range(read_ports):
            members[f"rd{i}"] = In(sp_read_signature(self.addr_width))
        for i in range(write_ports):
            members[f"wr{i}"] = In(sp_write_signature(self.addr_width))
        super().__init__(members)

    @property
    def words(self) -> int:
        return self._words

    @property
    def rd(self) -> list:
        return [getattr(self, f"rd{i}") for i in range(self._nr)]

    @property
    def wr(self) -> list:
        return [getattr(self, f"wr{i}") for i in range(self._nw)]

    def elaborate(self, platform):
        m = Module()
        m.submodules.mem = mem = Memory(shape=32, depth=self._words, init=[])
        for port in self.rd:
            rp = mem.read_port()
            m.d.comb += [rp.addr.eq(port.addr), rp.en.eq(port.en), port.data.eq(rp.data)]
        for port in self.wr:
            wp = mem.write_port()
            m.d.comb += [wp.addr.eq(port.addr), wp.data.eq(port.data), wp.en.eq(port.en)]
        return m

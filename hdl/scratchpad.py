"""The ASIC's SRAM scratchpad: fp32 words in ``lanes`` interleaved banks.

Word ``a`` lives in lane ``a % lanes`` at index ``a // lanes``. That gives two kinds of port:

* *word* ports (host): one word per cycle;
* *wide* ports (PIM engine, vector unit): up to ``lanes`` consecutive words ``a ..`` at any
  alignment per cycle (lane ``j`` is addressed at ``a // lanes + (j < a % lanes)`` and the words
  are rotated), so a whole DRAM column of operands, or a vector register, moves in one cycle,
  with a per-word enable for writes.

Every client has its own ports, so there is no arbitration: the compiler's ``SYNC`` rules keep the
PIM side and the vector unit off each other's words, and the host uses its ports only while the
ASIC is stopped. Reads are synchronous (data one cycle after ``en``; the data holds while ``en``
is low).
"""

from __future__ import annotations

from amaranth.hdl import Array, Const, Module, Mux, Signal
from amaranth.lib import data, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out
from amaranth.utils import ceil_log2

from .fp import check_int

__all__ = ["Scratchpad", "sp_read_signature", "sp_write_signature", "sp_wide_read_signature",
           "sp_wide_write_signature"]

#: Largest scratchpad (fp32 words) the address fields can describe.
MAX_WORDS = 1 << 26


def sp_read_signature(addr_width: int) -> wiring.Signature:
    """A word read port seen from the client: ``addr`` and ``en`` out, ``data`` back one cycle
    after ``en``."""
    return wiring.Signature({"addr": Out(addr_width), "en": Out(1), "data": In(32)})


def sp_write_signature(addr_width: int) -> wiring.Signature:
    """A word write port seen from the client: ``addr``, ``data`` and ``en``."""
    return wiring.Signature({"addr": Out(addr_width), "data": Out(32), "en": Out(1)})


def sp_wide_read_signature(addr_width: int, lanes: int) -> wiring.Signature:
    """A wide read port: words ``addr .. addr+lanes-1`` arrive in ``data`` a cycle after ``en``."""
    return wiring.Signature({"addr": Out(addr_width), "en": Out(1),
                             "data": In(data.ArrayLayout(32, lanes))})


def sp_wide_write_signature(addr_width: int, lanes: int) -> wiring.Signature:
    """A wide write port: ``data[k]`` goes to word ``addr + k`` where ``mask[k]`` is set."""
    return wiring.Signature({"addr": Out(addr_width), "mask": Out(lanes),
                             "data": Out(data.ArrayLayout(32, lanes))})


def _rotate(values: list, amount, bits: int, down: bool) -> list:
    """``values`` rotated by ``amount`` positions (``bits`` wide): ``out[k] = values[k + amount]``
    when ``down``, else ``values[k - amount]`` (indices modulo the length, a power of two)."""
    n = len(values)
    for b in range(bits):
        step = 1 << b
        values = [Mux(amount[b], values[(k + step) % n if down else (k - step) % n], values[k])
                  for k in range(n)]
    return values


class Scratchpad(wiring.Component):
    """Scratchpad SRAM of ``words`` fp32 words.

    Parameters
    ----------
    words : int
        Capacity in 32-bit words (``asic.scratchpad_words``): a multiple of ``lanes``, at most
        2**26.
    lanes : int
        Interleaved banks = the widest wide access (16: one DRAM column), a power of two 1..128.
    word_read_ports, word_write_ports : int
        Number of word ports of each kind, 0..4.
    wide_widths : tuple of int, optional
        Words per access of each wide port pair (each 1..``lanes``); default ``lanes`` for all.
        The PIM engine moves one DRAM column (16 words), the vector unit ``asic.vector_lanes``.

    Attributes
    ----------
    rd0.., wr0.. : In(sp_read_signature), In(sp_write_signature)
        Word ports.
    wide_rd, wide_wr, wide_rd1, wide_wr1 ... : In(wide read / write signatures)
        Wide ports (``wide_ports`` pairs).
    wide_ports : int
        Pairs of wide read/write ports, 1..9 (the PIM engine and up to 8 vector units).
    """

    def __init__(self, words: int, *, lanes: int = 16, word_read_ports: int = 2,
                 word_write_ports: int = 2, wide_ports: int = 1, wide_widths=None):
        self._lanes = check_int("lanes", lanes, 1, 128)
        if lanes & (lanes - 1):
            raise ValueError(f"lanes must be a power of two, not {lanes!r}")
        self._words = check_int("words", words, lanes, MAX_WORDS)
        if words % lanes:
            raise ValueError(f"words ({words}) must be a multiple of lanes ({lanes})")
        self._nr = check_int("word_read_ports", word_read_ports, 0, 4)
        self._nw = check_int("word_write_ports", word_write_ports, 0, 4)
        self._nwide = check_int("wide_ports", wide_ports, 1, 9)
        widths = (lanes,) * wide_ports if wide_widths is None else tuple(wide_widths)
        if len(widths) != wide_ports:
            raise ValueError(f"wide_widths {wide_widths!r} must give one width per wide port "
                             f"({wide_ports})")
        self._widths = tuple(check_int("wide width", w, 1, lanes) for w in widths)
        self.addr_width = max(1, ceil_log2(words))
        members = {}
        for i in range(word_read_ports):
            members[f"rd{i}"] = In(sp_read_signature(self.addr_width))
        for i in range(word_write_ports):
            members[f"wr{i}"] = In(sp_write_signature(self.addr_width))
        for i in range(wide_ports):
            sfx = str(i) if i else ""
            members[f"wide_rd{sfx}"] = In(sp_wide_read_signature(self.addr_width, widths[i]))
            members[f"wide_wr{sfx}"] = In(sp_wide_write_signature(self.addr_width, widths[i]))
        super().__init__(members)

    @property
    def words(self) -> int:
        return self._words

    @property
    def lanes(self) -> int:
        return self._lanes

    @property
    def rd(self) -> list:
        return [getattr(self, f"rd{i}") for i in range(self._nr)]

    @property
    def wr(self) -> list:
        return [getattr(self, f"wr{i}") for i in range(self._nw)]

    def _wide(self, m, mems, rd, wr, split, lb, width):
        n = self._lanes
        # Wide read: lane j holds word (a + k) for k = (j - a) mod n, at index a//n + (j < a%n);
        # the words come out rotated by a mod n (a log shifter: n log n multiplexers).
        rot_q = Signal(max(1, lb))
        idx, off = split(rd.addr)
        with m.If(rd.en):
            m.d.sync += rot_q.eq(off)
        lane_data = []
        for j, mem in enumerate(mems):
            rp = mem.read_port()
            m.d.comb += [rp.addr.eq(idx + (j < off) if n > 1 else idx), rp.en.eq(rd.en)]
            lane_data.append(rp.data)
        words = _rotate(lane_data, rot_q, lb, down=True)
        for k in range(width):
            m.d.comb += rd.data[k].eq(words[k])
        # Wide write: lane j takes word k = (j - a) mod n (if k < width).
        idx, off = split(wr.addr)
        data = _rotate([wr.data[k] for k in range(width)] + [Const(0, 32)] * (n - width), off, lb,
                       down=False)
        mask = _rotate([wr.mask[k] for k in range(width)] + [Const(0, 1)] * (n - width), off, lb,
                       down=False)
        for j, mem in enumerate(mems):
            wp = mem.write_port()
            m.d.comb += [wp.addr.eq(idx + (j < off) if n > 1 else idx), wp.data.eq(data[j]),
                         wp.en.eq(mask[j])]

    def elaborate(self, platform):
        m = Module()
        n = self._lanes
        lb = ceil_log2(n)
        depth = self._words // n
        mems = []
        for j in range(n):
            mem = Memory(shape=32, depth=depth, init=[])
            m.submodules[f"lane{j}"] = mem
            mems.append(mem)

        def split(addr):
            return addr[lb:], addr[:lb] if lb else 0

        # Word read ports: every lane reads the same index, the lane is selected a cycle later.
        for port in self.rd:
            idx, lane = split(port.addr)
            lane_q = Signal(max(1, lb))
            with m.If(port.en):
                m.d.sync += lane_q.eq(lane)
            outs = []
            for mem in mems:
                rp = mem.read_port()
                m.d.comb += [rp.addr.eq(idx), rp.en.eq(port.en)]
                outs.append(rp.data)
            m.d.comb += port.data.eq(Array(outs)[lane_q] if n > 1 else outs[0])
        for port in self.wr:
            idx, lane = split(port.addr)
            for j, mem in enumerate(mems):
                wp = mem.write_port()
                m.d.comb += [wp.addr.eq(idx), wp.data.eq(port.data),
                             wp.en.eq(port.en & (lane == j) if n > 1 else port.en)]

        for i in range(self._nwide):
            sfx = str(i) if i else ""
            self._wide(m, mems, getattr(self, f"wide_rd{sfx}"), getattr(self, f"wide_wr{sfx}"),
                       split, lb, self._widths[i])
        return m

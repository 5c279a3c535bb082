"""DRAM command set and timing tables of the RTL, compiled from the one DRAM standard.

The timing of a PIM channel is defined once, as data, in :mod:`pimgpt.core.dram` (rows of
scope / preceding commands / following commands / latency, evaluated against the hardware
config). The perf simulator schedules with it; this module compiles the same rows into the form the
RTL needs:

* :class:`DramCmd`: the command codes on a channel's command bus (the standard's command index);
* :class:`TimingTables`: for every issued command, which *ready counters* it raises and by how
  much, and for every command, which counters must be zero before it may issue. A counter lives at
  a node of the channel tree (the channel, a bank group or a bank) and holds the cycles left until
  one following command is legal there; a constraint ``p -> f`` of scope ``s`` is kept at the
  coarsest of ``s`` and the footprints of ``p`` and ``f`` (the perf engine's rule, so both agree
  cycle for cycle);
* the four-activation window (``nFAW``) as a short list of window counters, activations weighted
  as in the standard (``ACT`` 1, ``ACT4``/``ACT16`` 4).

A pure-Python checker with its own timestamp algorithm lives in ``sim/cocotb_lib/dram_monitor.py``.
Only one row buffer per bank is supported (``dram.act_overlap: false``). With modes
(``gddr6-aim``, ``dram.mode_switch: true``) the tables contain the switch rows like any other; the
scheduler (:mod:`.pim_sched`) keeps each channel's mode and inserts ``MODREG``/``MODARR``.
"""

from __future__ import annotations

from dataclasses import dataclass

from amaranth.lib import enum

from pimgpt.core import dram as S
from pimgpt.core.config import ConfigError, HwConfig

__all__ = ["DramCmd", "TimingTables", "BANK", "BANKGROUP", "CHANNEL", "CMD_WIDTH"]

BANK, BANKGROUP, CHANNEL = S.BANK, S.BANKGROUP, S.CHANNEL
CMD_WIDTH = 5


class DramCmd(enum.Enum, shape=CMD_WIDTH):
    """Commands on a channel's command bus; the value is the standard's command index."""

    ACT = 0
    ACT4 = 1
    ACT16 = 2
    PRE = 3
    PRE4 = 4
    PREA = 5
    RD = 6
    WR = 7
    MAC = 8
    MAC16 = 9
    WR16 = 10
    RDCP = 11
    WRCP = 12
    WRGB = 13
    RDMAC16 = 14
    WRMAC16 = 15
    REFab = 16
    MODREG = 17
    MODARR = 18


# The RTL command codes must be the standard's; fail at import if the standard changes.
assert [c.name for c in DramCmd] == list(S.COMMANDS), "DramCmd is out of step with the standard"


@dataclass(frozen=True)
class Counter:
    """A ready counter: following command ``cmd`` at tree node ``(level, index)``."""

    level: int
    index: int
    cmd: int


class TimingTables:
    """The standard's rows compiled for counters (see the module docstring).

    Parameters
    ----------
    hw : HwConfig
        Hardware configuration; ``dram.act_overlap`` must be false.

    Attributes
    ----------
    updates : list of list of (int, int, int)
        ``updates[p]``: ``(level, f, latency)`` raised when command ``p`` issues (at the node of
        ``level`` above ``p``'s footprint).
    checks : list of list of int
        ``checks[f]``: levels whose counter for ``f`` must be zero (at the nodes above ``f``).
    window : (int, int, tuple) or None
        ``(latency, size, weights)`` of the activation window.
    bus : int
        Minimum distance between any two commands (command bus).
    done_after : tuple of int
        Cycles after issue at which each command's effect is complete.
    """

    def __init__(self, hw: HwConfig):
        if not isinstance(hw, HwConfig):
            raise TypeError(f"hw must be a HwConfig, not {hw!r}")
        if S.act_overlap(hw):
            raise ConfigError(f"{hw.name}: the RTL has one row buffer per bank; set "
                             "dram.act_overlap: false")
        self.hw = hw
        self.std = std = S.build_standard(hw)
        self.banks = hw.dram.banks
        self.bank_groups = hw.dram.bank_groups
        self.bpg = self.banks // self.bank_groups
        k = S.N_CMDS
        upd: list[dict] = [dict() for _ in range(k)]
        self.window = None
        self.bus = 1
        for row, lat in std.rows:
            pre = [S.CMD[c] for c in S.expand(row.preceding)]
            fol = [S.CMD[c] for c in S.expand(row.following)]
            if row.window:
                weights = tuple(std.window_weight)
                self.window = (lat, row.window, weights)
                continue
            if row.preceding == (S.ALL,) and row.following == (S.ALL,):
                self.bus = max(self.bus, lat)
                continue
            level = S.LEVELS[row.scope]
            for p in pre:
                for f in fol:
                    e = max(level, std.footprint[p], std.footprint[f])
                    if lat > upd[p].get((e, f), 0):
                        upd[p][(e, f)] = lat
        self.updates = [sorted((e, f, lat) for (e, f), lat in u.items()) for u in upd]
        checks: list[set] = [set() for _ in range(k)]
        for p in range(k):
            for e, f, _ in self.updates[p]:
                checks[f].add(e)
        self.checks = [sorted(c) for c in checks]
        self.done_after = tuple(std.done_after)
        if self.bus != 1:
            raise ConfigError(f"{hw.name}: the RTL issues at most one command per cycle and "
                             f"needs a command-bus spacing of 1 tCK, not {self.bus}")

    # ---- the channel tree ---------------------------------------------------------------
    def footprint(self, cmd: int) -> int:
        return self.std.footprint[int(cmd)]

    def ancestor(self, cmd: int, fpi: int, level: int) -> int:
        """Index of the node at ``level`` above command ``cmd`` at footprint index ``fpi``."""
        fp = self.footprint(cmd)
        if level < fp:
            raise ValueError("no ancestor below the footprint")
        if level == CHANNEL:
            return 0
        if level == BANKGROUP:
            return fpi if fp == BANKGROUP else fpi // self.bpg
        return fpi

    def n_nodes(self, level: int) -> int:
        return (self.banks, self.bank_groups, 1)[level]

    def counters(self) -> list[Counter]:
        """Every counter the RTL keeps, in a fixed order."""
        out = []
        for f in range(S.N_CMDS):
            for e in self.checks[f]:
                for idx in range(self.n_nodes(e)):
                    out.append(Counter(e, idx, f))
        return out

    def raise_by(self, p: int, fpi: int, counter: Counter) -> int:
        """Latency by which issuing ``p`` at ``fpi`` raises ``counter`` (0: not at all)."""
        best = 0
        for e, f, lat in self.updates[p]:
            if f == counter.cmd and e == counter.level and \
                    self.ancestor(p, fpi, e) == counter.index:
                best = max(best, lat)
        return best

    def fpi_count(self, cmd: int) -> int:
        """Number of footprint indices of ``cmd`` (banks, bank groups or 1)."""
        return self.n_nodes(self.footprint(cmd))

    def max_latency(self) -> int:
        lats = [lat for u in self.updates for _, _, lat in u] + list(self.done_after)
        if self.window:
            lats.append(self.window[0])
        return max(lats + [1])

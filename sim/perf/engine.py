"""Event-driven, DRAM-command-accurate execution of a pimgpt program.

How a program runs
------------------
* Two in-order issue sides: PIM instructions go to the channels' command queues, ASIC
  instructions to the vector unit; the two overlap freely between ``SYNC``\\ s. ``SYNC`` (and
  ``EOC``) waits until every earlier instruction of both sides has completed. A PIM instruction
  that reads scratchpad words also waits for earlier PIM instructions (since the last ``SYNC``)
  that write any of them (``RD_MAC``, ``RD_SBK``, ``RD_VEC``): the compiler only places ``SYNC``
  between the two sides.
* Each PIM instruction expands, per selected channel, into DRAM commands (``standard.COMMANDS``):
  an open-page policy keeps rows open until a conflicting access; a miss precharges and activates
  with the widest command that fits (``PREA``/``ACT16`` when every bank needs the row, ``PRE4``/
  ``ACT4`` for a whole bank group, else ``PRE``/``ACT``). Commands of one channel issue in order,
  each at the earliest cycle that every constraint of :mod:`.standard` allows. Nothing is ticked:
  the issue cycle of each command is computed from *ready times*.
* Ready times: issuing command ``p`` at cycle ``t`` raises, for every constraint row
  ``p -> f (latency L)``, the ready time of ``f`` to ``t + L`` at the node of the channel tree where
  the two footprints meet (the coarsest of the row's scope and the two footprints); the earliest
  cycle of ``f`` is the maximum over the nodes on its footprint's path to the channel. The table is
  compiled once from the rows; the engine has no timing rule of its own.
* A run of ``n`` identical commands (the columns of one ``MAC_ABK``, the bursts of a ``WR_GB``) is
  one closed-form *train*: the first issues at its earliest cycle, the rest at the self-spacing
  ``g`` (the largest latency of a row relating the command to itself), which no other ready time
  can exceed since none changes during the train. Logged as ``(cmd, t0, n, g)``.
* Channels in lockstep share one state object: an instruction that selects several channels in
  the same state is scheduled once (copy-on-write when they diverge); at each ``SYNC`` states that
  are equivalent from the barrier on are merged again. Refresh (``REFab`` every ``nREFI``, after
  ``PREA``) is issued when due, at the next instruction boundary of the channel.
* ``dram.act_overlap``: each bank gets a second row buffer (subarray group; row ``r`` uses buffer
  ``r % 2``). While a ``MAC_ABK`` streams row ``r``, the row of the next ``MAC_ABK`` before the next
  ``SYNC`` is precharged/activated in the other buffer, its commands placed between the MAC
  commands (the train is split around them).
* ASIC: one vector unit; an instruction occupies it ``pipeline_cycles + ceil(ops / lanes)`` cycles
  plus ``seq_add_cycles`` per dependent add of a left-to-right sum (and per op of a scalar
  reciprocal/rsqrt), at ``asic.clock_ghz``, rounded up to DRAM tCK, the common time base.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field

import numpy as np

from pimgpt.core import dram as S
from pimgpt.core.config import ConfigError, HwConfig
from pimgpt.core.isa import FLAG_VEC_FROM_REG, PIM_SP_READERS, PIM_SP_WRITERS, Op, effects
from pimgpt.core.vu.cost import VectorUnitModel

C_ACT, C_ACT4, C_ACT16 = S.CMD["ACT"], S.CMD["ACT4"], S.CMD["ACT16"]
C_PRE, C_PRE4, C_PREA = S.CMD["PRE"], S.CMD["PRE4"], S.CMD["PREA"]
C_RD, C_WR, C_MAC, C_MAC16, C_WR16 = (S.CMD[c] for c in ("RD", "WR", "MAC", "MAC16", "WR16"))
C_RDCP, C_WRCP, C_WRGB = S.CMD["RDCP"], S.CMD["WRCP"], S.CMD["WRGB"]
C_RDMAC16, C_WRMAC16, C_REF = S.CMD["RDMAC16"], S.CMD["WRMAC16"], S.CMD["REFab"]

PIM_SIDE, ASIC_SIDE, BARRIER = 0, 1, 2
#: PIM instructions that write / read the scratchpad (from the ISA metadata).
SP_WRITERS, SP_READERS = PIM_SP_WRITERS, PIM_SP_READERS
#: Scratchpad bytes per fp32 accumulator value moved by RD_MAC / WR_BIAS.
ACC_BYTES = 4


class ChannelState:
    """Timing and row state of one channel (possibly shared by channels in lockstep)."""

    __slots__ = ("ready", "open", "win", "last", "next_ref", "done")

    def __init__(self, size: int, subs: int, banks: int, windows: int, next_ref: int):
        self.ready = [-(1 << 60)] * size  # flat ready times, see PerfEngine._index
        self.open = [[-1] * banks for _ in range(subs)]  # open row per [sub][bank], -1 closed
        self.win = [[] for _ in range(windows)]  # recent issue cycles per window row
        self.last = -(1 << 60)  # issue cycle of the latest command (command bus)
        self.next_ref = next_ref  # cycle the next refresh is due
        self.done = 0  # completion cycle of the latest instruction on this channel

    def clone(self) -> ChannelState:
        c = ChannelState.__new__(ChannelState)
        c.ready = self.ready[:]
        c.open = [o[:] for o in self.open]
        c.win = [w[:] for w in self.win]
        c.last = self.last
        c.next_ref = self.next_ref
        c.done = self.done
        return c


@dataclass
class PerfResult:
    """Timing, counts and per-instruction spans of one simulated program."""

    hw_name: str
    tck_ns: float
    cycles: int
    counts: dict  # command name -> commands issued (summed over channels)
    bank_col_accesses: int  # bank-column accesses by row commands (MAC16 counts one per bank)
    bank_acts: int  # bank activations (ACT16 counts one per bank)
    bank_pres: int  # banks precharged while open
    mac_bank_cols: int  # MAC columns x banks
    io_bytes_in: int  # bytes ASIC -> DRAM over the pins
    io_bytes_out: int  # bytes DRAM -> ASIC
    asic_ops: int
    asic_words: int
    asic_busy: int  # tCK the vector unit was busy
    slots: int
    nccdl: int
    n_instr: int
    ops: list = field(repr=False, default_factory=list)  # Op per instruction
    start: np.ndarray = field(repr=False, default=None)  # first cycle of each instruction
    end: np.ndarray = field(repr=False, default=None)  # completion cycle of each instruction
    side: np.ndarray = field(repr=False, default=None)  # PIM_SIDE / ASIC_SIDE / BARRIER
    chmask: np.ndarray = field(repr=False, default=None)  # channels of PIM instructions
    busy: np.ndarray = field(repr=False, default=None)  # own time of each instruction (tCK)
    log: list | None = field(repr=False, default=None)
    wall_s: float = 0.0
    channels: int = 0
    marks: dict = field(repr=False, default_factory=dict)  # instruction index -> counters

    def counters(self) -> dict:
        """The additive event counters of the whole run (see :meth:`PerfEngine.counters`)."""
        return {"counts": dict(self.counts), "bank_acts": self.bank_acts,
                "bank_pres": self.bank_pres, "mac_bank_cols": self.mac_bank_cols,
                "bank_col_accesses": self.bank_col_accesses, "io_bytes_in": self.io_bytes_in,
                "io_bytes_out": self.io_bytes_out, "asic_ops": self.asic_ops,
                "asic_words": self.asic_words}

    @property
    def latency_ns(self) -> float:
        return self.cycles * self.tck_ns

    @property
    def row_hit_rate(self) -> float:
        """Fraction of bank-column accesses that found their row already open."""
        if not self.bank_col_accesses:
            return 0.0
        return max(0.0, 1.0 - self.bank_acts / self.bank_col_accesses)

    @property
    def mac_bytes(self) -> int:
        return self.mac_bank_cols * 32

    @property
    def floor_cycles(self) -> float:
        """Bank-bandwidth floor: MAC bytes / (slots x 32 B per nCCDL)."""
        return self.mac_bank_cols / self.slots * self.nccdl

    @property
    def mac_utilization(self) -> float:
        """Achieved fraction of the bank-bandwidth floor."""
        return self.floor_cycles / self.cycles if self.cycles else 0.0


class PerfEngine:
    """Simulator of one hardware configuration; reusable across programs.

    Parameters
    ----------
    hw : HwConfig
        Hardware configuration (DRAM organisation and timing, ASIC, ``dram.act_overlap``).
    """

    def __init__(self, hw: HwConfig):
        if not isinstance(hw, HwConfig):
            raise TypeError(f"hw must be a HwConfig, got {type(hw).__name__}")
        a = hw.asic
        missing = [k for k in ("pipeline_cycles", "seq_add_cycles") if getattr(a, k) is None]
        missing += [f"elem_ops.{k}" for k in ("exp", "recip", "rsqrt", "gelu")
                    if k not in a.elem_ops]
        if missing:
            raise ConfigError(
                f"{hw.name}: the perf model needs asic keys {missing}; copy them from "
                "pimgpt/configs/pimgpt-gddr6-8ch.yaml"
            )
        self.hw = hw
        self.std = std = S.build_standard(hw)
        d = hw.dram
        self.C, self.NB, self.NBG = d.channels, d.banks, d.bank_groups
        self.BPG = d.banks // d.bank_groups
        self.NS = std.subs
        self.K = K = S.N_CMDS
        self.row_elems, self.G, self.slots = d.row_elems, d.gb_elems, d.slots
        self.col_elems = d.col_elems
        self.nodes = 1 + self.NBG + self.NB
        self.node_stride = (1 + self.NS) * K
        self.size = self.nodes * self.node_stride
        self.t = std.timing
        self.nREFI, self.nCCDL = self.t["nREFI"], self.t["nCCDL"]
        self.done = std.done_after
        self._compile()
        # ASIC time base: tCK per ASIC cycle.
        self.asic_tck = (1.0 / a.clock_ghz) / d.tck_ns
        self.vu = VectorUnitModel(hw)
        self.burst_bytes = d.column_bytes
        self.acc_bursts = -(-d.banks * ACC_BYTES // d.column_bytes)

    # ------------------------------------------------------------------------------------------
    # Constraint table compilation
    # ------------------------------------------------------------------------------------------
    def _compile(self) -> None:
        std, K = self.std, self.K
        upd: list[dict] = [dict() for _ in range(K)]
        self.windows = []  # (preceding set, following set, latency, window size)
        self.bus = 0
        for row, lat in std.rows:
            pre = [S.CMD[c] for c in S.expand(row.preceding)]
            fol = [S.CMD[c] for c in S.expand(row.following)]
            if row.window:
                self.windows.append((frozenset(pre), frozenset(fol), lat, row.window))
                continue
            if row.preceding == (S.ALL,) and row.following == (S.ALL,):
                self.bus = max(self.bus, lat)
                continue
            level = S.LEVELS[row.scope]
            same_sub = row.scope == "subarray"
            for p in pre:
                for f in fol:
                    e = max(level, std.footprint[p], std.footprint[f])
                    sk = same_sub and std.has_sub[p] and std.has_sub[f]
                    key = (e, sk, f)
                    if lat > upd[p].get(key, -1):
                        upd[p][key] = lat
        self.upd = [tuple((e, sk, f, lat) for (e, sk, f), lat in sorted(u.items())) for u in upd]
        chk: list[set] = [set() for _ in range(K)]
        for p in range(K):
            for e, sk, f, _ in self.upd[p]:
                chk[f].add((e, sk))
        self.chk = [tuple(sorted(c)) for c in chk]
        # Self spacing of a train of identical commands.
        self.gap = []
        for c in range(K):
            g = self.bus
            for _e, _sk, f, lat in self.upd[c]:
                if f == c:
                    g = max(g, lat)
            self.gap.append(max(g, 1))
        self.win_of_pre = [tuple(i for i, w in enumerate(self.windows) if c in w[0])
                           for c in range(K)]
        self.win_of_fol = [tuple(i for i, w in enumerate(self.windows) if c in w[1])
                           for c in range(K)]
        # Ancestor node base offsets: anc[level][index] = (bank, bg, channel) base or -1.
        st = self.node_stride
        bank_anc = tuple((
            (1 + self.NBG + b) * st, (1 + b // self.BPG) * st, 0) for b in range(self.NB))
        bg_anc = tuple((-1, (1 + g) * st, 0) for g in range(self.NBG))
        self.anc = (bank_anc, bg_anc, ((-1, -1, 0),))
        self.fp = std.footprint
        self.has_sub = std.has_sub
        self.wweight = std.window_weight
        self.fp_banks = tuple((1, self.BPG, self.NB)[self.fp[c]] for c in range(K))
        self.row_cmd = tuple(S.COMMANDS[c] in S.NEEDS_OPEN_ROW for c in range(K))
        self._ccache: dict = {}
        self._ucache: dict = {}

    # ------------------------------------------------------------------------------------------
    # Command issue
    # ------------------------------------------------------------------------------------------
    def _earliest(self, st: ChannelState, c: int, fpi: int, sub: int, t: int) -> int:
        last = st.last + self.bus
        if last > t:
            t = last
        r = st.ready
        idx = self._ccache.get((c, fpi, sub))
        if idx is None:
            idx = self._check_index(c, fpi, sub)
        for i in idx:
            if r[i] > t:
                t = r[i]
        for wi in self.win_of_fol[c]:
            _, _, lat, size = self.windows[wi]
            w = st.win[wi]
            need = size - self.wweight[c] + 1
            if len(w) >= need:
                v = w[-need] + lat
                if v > t:
                    t = v
        return t

    def _check_index(self, c: int, fpi: int, sub: int) -> tuple:
        """Flat indices of the ready times that bound command ``c`` on footprint ``fpi``."""
        anc = self.anc[self.fp[c]][fpi]
        so = (1 + sub) * self.K
        idx = tuple(anc[e] + (so + c if sk else c) for e, sk in self.chk[c])
        self._ccache[(c, fpi, sub)] = idx
        return idx

    def _update_index(self, c: int, fpi: int, sub: int) -> tuple:
        """``(flat index, latency)`` pairs that command ``c`` on footprint ``fpi`` raises."""
        anc = self.anc[self.fp[c]][fpi]
        so = (1 + sub) * self.K
        pairs = tuple((anc[e] + (so + f if sk else f), lat) for e, sk, f, lat in self.upd[c])
        self._ucache[(c, fpi, sub)] = pairs
        return pairs

    def _apply(self, st: ChannelState, c: int, fpi: int, sub: int, t: int) -> None:
        r = st.ready
        pairs = self._ucache.get((c, fpi, sub))
        if pairs is None:
            pairs = self._update_index(c, fpi, sub)
        for i, lat in pairs:
            v = t + lat
            if r[i] < v:
                r[i] = v
        for wi in self.win_of_pre[c]:
            w = st.win[wi]
            w.extend([t] * self.wweight[c])
            size = self.windows[wi][3]
            if len(w) > size:
                del w[:-size]
        st.last = t

    def _banks_of(self, c: int, fpi: int):
        f = self.fp[c]
        if f == S.CHANNEL:
            return range(self.NB)
        if f == S.BANKGROUP:
            return range(fpi * self.BPG, (fpi + 1) * self.BPG)
        return (fpi,)

    def _issue(self, st, c, fpi, sub, t_min, g, row=-1) -> int:
        """Issue one command at its earliest cycle >= ``t_min``; returns the cycle."""
        t = self._earliest(st, c, fpi, sub, t_min)
        self._apply(st, c, fpi, sub, t)
        if self.first is None or t < self.first:
            self.first = t
        m = g.m
        self.counts[c] += m
        if c <= C_ACT16:
            op = st.open[sub]
            for b in self._banks_of(c, fpi):
                op[b] = row
            self.bank_acts += m * self.fp_banks[c]
        elif c <= C_PREA:
            op = st.open[sub]
            n = 0
            for b in self._banks_of(c, fpi):
                if op[b] >= 0:
                    n += 1
                    op[b] = -1
            self.bank_pres += m * n
        if self.log is not None:
            self.log.append((c, g.mask, fpi, sub, row, t, 1, 0))
        return t

    def _train(self, st, c, fpi, sub, n, t_min, g, inject=(), row=-1) -> int:
        """Issue ``n`` identical commands; returns the cycle of the last one.

        ``inject`` lists ``(cmd, fpi, sub, row)`` commands placed between the members as early as
        they are legal (the train is split around them).
        """
        gap = self.gap[c]
        m = g.m
        remaining = n
        t0 = t_min
        t_last = -1
        for ic, ifpi, isub, irow in inject:
            if remaining:
                t0 = self._earliest(st, c, fpi, sub, t0)
                x = self._earliest(st, ic, ifpi, isub, t_min)
                k = 0 if x < t0 else min(remaining, (x - t0) // gap + 1)
                if k:
                    if self.first is None or t0 < self.first:
                        self.first = t0
                    t_last = t0 + (k - 1) * gap
                    self._apply(st, c, fpi, sub, t_last)
                    if self.log is not None:
                        self.log.append((c, g.mask, fpi, sub, row, t0, k, gap))
                    remaining -= k
                    t0 = t_last
            self._issue(st, ic, ifpi, isub, t_min, g, irow)
        if remaining:
            t0 = self._earliest(st, c, fpi, sub, t0)
            if self.first is None or t0 < self.first:
                self.first = t0
            t_last = t0 + (remaining - 1) * gap
            self._apply(st, c, fpi, sub, t_last)
            if self.log is not None:
                self.log.append((c, g.mask, fpi, sub, row, t0, remaining, gap))
        self.counts[c] += n * m
        if self.row_cmd[c]:
            self.bank_cols += n * m * self.fp_banks[c]
        return t_last

    # ------------------------------------------------------------------------------------------
    # Row management
    # ------------------------------------------------------------------------------------------
    def _refresh(self, st: ChannelState, t: int, g) -> None:
        last = st.last if st.last > t else t
        while st.next_ref <= last:
            due = st.next_ref
            for s in range(self.NS):
                if max(st.open[s]) >= 0:
                    self._issue(st, C_PREA, 0, s, due, g)
            self._issue(st, C_REF, 0, 0, due, g)
            st.next_ref += self.nREFI

    def _refresh_all(self, t: int) -> None:
        """Issue the refreshes due by cycle ``t`` on every channel."""
        for s in {id(x): x for x in self.states}.values():
            chans = [c for c in range(self.C) if self.states[c] is s]
            self._refresh(s, t, _Group(s, chans, len(chans), self._mask_of(chans)))

    def _plan_open(self, st: ChannelState, banks, row: int) -> list:
        """Commands ``(cmd, fpi, sub, row)`` that open ``row`` in ``banks`` (PRE then ACT)."""
        sub = row % self.NS
        op = st.open[sub]
        if len(banks) == self.NB and op.count(row) == self.NB:
            return []  # every bank already holds the row
        need = [b for b in banks if op[b] != row]
        if not need:
            return []
        out = []
        close = [b for b in need if op[b] >= 0]
        if close:
            others_open = any(op[b] >= 0 for b in range(self.NB) if b not in close)
            if len(close) > 1 and not others_open:
                out.append((C_PREA, 0, sub, -1))
            else:
                self._grouped(close, op, C_PRE4, C_PRE, sub, -1, out, closing=True)
        if len(need) == self.NB:
            out.append((C_ACT16, 0, sub, row))
        else:
            self._grouped(need, op, C_ACT4, C_ACT, sub, row, out, closing=False)
        return out

    def _grouped(self, banks, op, c4, c1, sub, row, out, closing) -> None:
        bpg = self.BPG
        by_bg: dict = {}
        for b in banks:
            by_bg.setdefault(b // bpg, []).append(b)
        for bg, bs in by_bg.items():
            members = range(bg * bpg, (bg + 1) * bpg)
            if closing:
                whole = len(bs) > 1 and all(op[b] < 0 or b in bs for b in members)
            else:
                whole = len(bs) == bpg
            if whole:
                out.append((c4, bg, sub, row))
            else:
                out.extend((c1, b, sub, row) for b in bs)

    def _open(self, st, banks, row, t_min, g) -> None:
        for cmd in self._plan_open(st, banks, row):
            self._issue(st, cmd[0], cmd[1], cmd[2], t_min, g, cmd[3])

    # ------------------------------------------------------------------------------------------
    # Channel groups (lockstep sharing)
    # ------------------------------------------------------------------------------------------
    def _groups(self, chans: list) -> list:
        """Groups of ``chans`` sharing one state (copy-on-write when a state is shared with
        channels outside ``chans``); cached until the channel-to-state assignment changes."""
        key = tuple(chans)
        hit = self._gcache.get(key)
        if hit is not None:
            return hit
        states = self.states
        by_id: dict = {}
        for ch in chans:
            x = states[ch]
            ent = by_id.get(id(x))
            if ent is None:
                by_id[id(x)] = ent = (x, [])
            ent[1].append(ch)
        out = []
        for x, cs in by_id.values():
            if self.owners[id(x)] > len(cs):
                x = self._reassign(x.clone(), cs)
            out.append(_Group(x, cs, len(cs), self._mask_of(cs)))
        self._gcache[key] = out
        return out

    def _mask_of(self, chans) -> int:
        mask = 0
        for ch in chans:
            mask |= 1 << ch
        return mask

    def _reassign(self, new: ChannelState, chans) -> ChannelState:
        """Point ``chans`` at state ``new``, keeping the owner counts."""
        self._gcache.clear()
        owners = self.owners
        for ch in chans:
            old = self.states[ch]
            owners[id(old)] -= 1
            if not owners[id(old)]:
                del owners[id(old)]
            self.states[ch] = new
        owners[id(new)] = owners.get(id(new), 0) + len(chans)
        return new

    def _merge(self, barrier: int) -> None:
        distinct = {id(s): s for s in self.states}
        if len(distinct) < 2:
            return
        bus, wins = self.bus, self.windows
        canon: dict = {}
        for key, s in distinct.items():
            c = (
                s.next_ref,
                tuple(tuple(o) for o in s.open),
                max(s.last, barrier - bus),
                tuple(tuple(max(x, barrier - wins[i][2]) for x in
                            ([-(1 << 60)] * (wins[i][3] - len(w)) + w))
                      for i, w in enumerate(s.win)),
                tuple([x if x > barrier else barrier for x in s.ready]),
            )
            canon.setdefault(c, []).append(key)
        if len(canon) == len(distinct):
            return
        rep = {}
        for keys in canon.values():
            for k in keys:
                rep[k] = distinct[keys[0]]
        self.states = [rep[id(s)] for s in self.states]
        self._gcache.clear()
        self.owners = {}
        for s in self.states:
            self.owners[id(s)] = self.owners.get(id(s), 0) + 1

    # ------------------------------------------------------------------------------------------
    # Program execution
    # ------------------------------------------------------------------------------------------
    def counters(self) -> dict:
        """Snapshot of the additive event counters (for per-range energy)."""
        counts = {S.COMMANDS[c]: self.counts[c] for c in range(self.K)}
        return {"counts": counts, "bank_acts": self.bank_acts, "bank_pres": self.bank_pres,
                "mac_bank_cols": counts["MAC16"] * self.NB + counts["MAC"],
                "bank_col_accesses": self.bank_cols, "io_bytes_in": self.io_in,
                "io_bytes_out": self.io_out, "asic_ops": self.asic_ops,
                "asic_words": self.asic_words}

    def run(self, program, log: bool = False, marks=()) -> PerfResult:
        """Simulate ``program`` (a list of :class:`pimgpt.core.isa.Instr`).

        Parameters
        ----------
        program : list of Instr
            The program; ``EOC`` (or the end of the list) ends it.
        log : bool
            Keep the command log (``result.log``) for the checker and the timeline.
        marks : iterable of int
            Instruction indices at which to snapshot the event counters (``result.marks``), e.g.
            the first instruction of each generation step.

        Returns
        -------
        PerfResult
        """
        wall0 = time.perf_counter()
        n = len(program)
        self.counts = [0] * self.K
        self.bank_acts = self.bank_pres = self.bank_cols = 0
        self.io_in = self.io_out = 0
        self.asic_ops = self.asic_words = self.asic_busy = 0
        self.log = [] if log else None
        self.first = None
        self.regs = [0] * 16
        windows = len(self.windows)
        st0 = ChannelState(self.size, self.NS, self.NB, windows, self.nREFI)
        self.states = [st0] * self.C
        self.owners = {id(st0): self.C}
        self._gcache = {}
        all_mask = (1 << self.C) - 1
        start = np.zeros(n, dtype=np.int64)
        end = np.zeros(n, dtype=np.int64)
        side = np.zeros(n, dtype=np.int8)
        chm = np.zeros(n, dtype=np.int64)
        busy = np.zeros(n, dtype=np.int64)
        ops = [ins.op for ins in program]
        next_mac = self._lookahead(program) if self.NS > 1 else None
        barrier = 0  # both sides dispatch at or after this cycle
        pim_done = 0  # completion of every PIM instruction so far
        sp_writes = []  # (lo, hi, completion) of PIM scratchpad writes since the last SYNC
        asic_free = 0
        handlers = self._handlers()
        marks = set(marks)
        snaps = {}
        for i, ins in enumerate(program):
            if marks and i in marks:
                snaps[i] = self.counters()
            op = ops[i]
            if op >= 0x20:
                t0 = asic_free if asic_free > barrier else barrier
                dur = self._asic(ins)
                start[i], end[i], side[i], busy[i] = t0, t0 + dur, ASIC_SIDE, dur
                asic_free = t0 + dur
                self.asic_busy += dur
                continue
            if op == Op.SYNC or op == Op.EOC:
                b = pim_done if pim_done > asic_free else asic_free
                if b < barrier:
                    b = barrier
                start[i], end[i], side[i] = barrier, b, BARRIER
                barrier = b
                sp_writes = []
                # Refreshes that fell due while the channels idled are issued (at their due
                # cycles) before the merge: after it, every command is at or after the barrier.
                self._refresh_all(barrier)
                self._merge(barrier)
                if op == Op.EOC:
                    n = i + 1
                    break
                continue
            t_min = barrier
            if op in SP_READERS and sp_writes:
                lo, hi = self._sp_range(ins)
                for wlo, whi, wdone in sp_writes:
                    if wlo < hi and lo < whi and wdone > t_min:
                        t_min = wdone
            mask = ins.args.get("ch_mask", None)
            if mask is None:
                mask = 1 << ins.args["ch"] if "ch" in ins.args else all_mask
            self.own = 0
            s0, e0 = handlers[op](ins, t_min, mask, next_mac[i] if next_mac else None)
            start[i], end[i], side[i], chm[i], busy[i] = s0, e0, PIM_SIDE, mask, self.own
            if e0 > pim_done:
                pim_done = e0
            if op in SP_WRITERS:
                lo, hi = self._sp_range(ins)
                sp_writes.append((lo, hi, e0))
        total = max(pim_done, asic_free, barrier)
        # Refreshes that fall due before the end still cost energy.
        self._refresh_all(total)
        res = PerfResult(
            hw_name=self.hw.name, tck_ns=self.hw.dram.tck_ns, cycles=int(total),
            counts={S.COMMANDS[c]: self.counts[c] for c in range(self.K)},
            bank_col_accesses=self.bank_cols, bank_acts=self.bank_acts, bank_pres=self.bank_pres,
            mac_bank_cols=self.counts[C_MAC16] * self.NB + self.counts[C_MAC],
            io_bytes_in=self.io_in, io_bytes_out=self.io_out, asic_ops=self.asic_ops,
            asic_words=self.asic_words, asic_busy=self.asic_busy, slots=self.slots,
            nccdl=self.nCCDL, n_instr=n, ops=ops[:n], start=start[:n], end=end[:n],
            side=side[:n], chmask=chm[:n], busy=busy[:n], log=self.log,
        )
        res.channels = self.C
        res.marks = snaps
        res.wall_s = time.perf_counter() - wall0
        return res

    def _sp_range(self, ins) -> tuple:
        """Scratchpad words ``[lo, hi)`` a PIM instruction reads or writes (ISA metadata)."""
        _, reads, writes = effects(ins, self.NB)
        for space, lo, hi in writes or reads:
            if space == "sp":
                return lo, hi
        return 0, 0

    def _lookahead(self, program) -> list:
        """For each MAC_ABK, the (row, ch_mask) of the next MAC_ABK before the next SYNC."""
        out = [None] * len(program)
        nxt = None
        for i in range(len(program) - 1, -1, -1):
            op = program[i].op
            if op == Op.SYNC or op == Op.EOC:
                nxt = None
            elif op == Op.MAC_ABK:
                out[i] = nxt
                a = program[i].args
                nxt = (a["row"], a["ch_mask"])
        return out

    def _handlers(self) -> dict:
        return {
            Op.WR_GB: self._h_wr_gb, Op.MAC_ABK: self._h_mac_abk, Op.MAC_SBK: self._h_mac_sbk,
            Op.RD_MAC: self._h_rd_mac, Op.WR_BIAS: self._h_wr_bias, Op.WR_SBK: self._h_wr_sbk,
            Op.WR_ABK: self._h_wr_abk, Op.RD_SBK: self._h_rd_sbk, Op.COPY_BKGB: self._h_copy,
            Op.COPY_GBBK: self._h_copy, Op.RD_VEC: self._h_vec, Op.WR_VEC: self._h_vec,
            Op.WR_ELEM: self._h_wr_elem, Op.WR_COL: self._h_wr_elem,
        }

    def _chans(self, mask: int) -> list:
        if mask >> self.C:
            raise ConfigError(
                f"ch_mask {mask:#x} selects channels beyond the {self.C} of {self.hw.name}; "
                "compile the program for this hardware"
            )
        return [c for c in range(self.C) if mask >> c & 1]

    # ---- PIM instruction handlers: return (first command cycle, completion cycle) ----------
    def _uniform(self, mask, t_min, body):
        """Run ``body(state, t_min, group) -> completion`` once per group of lockstep channels."""
        self.first = None
        e0 = t_min
        for g in self._groups(self._chans(mask)):
            e0 = self._run_group(g, t_min, body, e0)
        return (t_min if self.first is None else self.first), e0

    def _run_group(self, g, t_min, body, e0) -> int:
        st = g.st
        if st.next_ref <= t_min or st.next_ref <= st.last:
            self._refresh(st, t_min, g)
        prev = st.done if st.done > t_min else t_min
        done = body(st, t_min, g)
        # Own time of the instruction on this channel: from when the channel finished its
        # previous instruction (or the instruction was dispatched) to its completion.
        if done - prev > self.own:
            self.own = done - prev
        if done > st.done:
            st.done = done
        return done if done > e0 else e0

    def _h_wr_gb(self, ins, t_min, mask, _la):
        n = ins.args["ncols"]
        self.io_in += n * self.burst_bytes * bin(mask).count("1")

        def body(st, t, g):
            if not n:
                return t
            return self._train(st, C_WRGB, 0, 0, n, t, g) + self.done[C_WRGB]
        return self._uniform(mask, t_min, body)

    def _h_mac_abk(self, ins, t_min, mask, la):
        a = ins.args
        row, n = a["row"], a["ncols"]
        NB = self.NB

        def body(st, t, g):
            sub = row % self.NS
            self._open(st, range(NB), row, t, g)
            if not n:
                return t
            inject = ()
            if la is not None and la[0] % self.NS != sub and (la[1] & g.mask) == g.mask:
                inject = self._plan_open(st, range(NB), la[0])
            return self._train(st, C_MAC16, 0, sub, n, t, g, inject, row) + self.done[C_MAC16]
        return self._uniform(mask, t_min, body)

    def _h_mac_sbk(self, ins, t_min, mask, _la):
        a = ins.args
        bank, row, n = a["bank"], a["row"], a["ncols"]
        self._check_bank(bank)

        def body(st, t, g):
            if not n:
                return t
            self._open(st, (bank,), row, t, g)
            return (self._train(st, C_MAC, bank, row % self.NS, n, t, g, (), row)
                    + self.done[C_MAC])
        return self._uniform(mask, t_min, body)

    def _h_rd_mac(self, ins, t_min, mask, _la):
        nacc = ins.args["nacc"]
        k = self.acc_bursts * nacc
        self.io_out += self.NB * ACC_BYTES * bin(mask).count("1") * nacc

        def body(st, t, g):
            return self._train(st, C_RDMAC16, 0, 0, k, t, g) + self.done[C_RDMAC16]
        return self._uniform(mask, t_min, body)

    def _h_wr_bias(self, ins, t_min, mask, _la):
        nacc = ins.args["nacc"]
        k = self.acc_bursts * nacc
        self.io_in += self.NB * ACC_BYTES * bin(mask).count("1") * nacc

        def body(st, t, g):
            return self._train(st, C_WRMAC16, 0, 0, k, t, g) + self.done[C_WRMAC16]
        return self._uniform(mask, t_min, body)

    def _cols(self, elem: int, n: int) -> tuple:
        if n <= 0:
            return 0, 0
        ce = self.col_elems
        c0 = elem // ce
        return c0, (elem + n - 1) // ce - c0 + 1

    def _check_bank(self, bank: int) -> None:
        if bank >= self.NB:
            raise ConfigError(
                f"bank {bank} does not exist on {self.hw.name} ({self.NB} banks per channel); "
                "compile the program for this hardware"
            )

    def _runs_body(self, runs, c):
        """Body for a list of single-bank runs ``(bank, row, col, ncols)`` of command ``c``."""
        def body(st, t, g):
            last = t
            for bank, row, _col, ncols in runs:
                self._open(st, (bank,), row, t, g)
                last = self._train(st, c, bank, row % self.NS, ncols, t, g, (), row)
            return last + self.done[c]
        return body

    def _h_wr_sbk(self, ins, t_min, mask, _la):
        a = ins.args
        c0, nc = self._cols(a["elem"], a["n"])
        self._check_bank(a["bank"])
        self.io_in += nc * self.burst_bytes
        if not nc:
            return t_min, t_min
        return self._uniform(mask, t_min, self._runs_body([(a["bank"], a["row"], c0, nc)], C_WR))

    def _h_rd_sbk(self, ins, t_min, mask, _la):
        a = ins.args
        c0, nc = self._cols(a["elem"], a["n"])
        self._check_bank(a["bank"])
        self.io_out += nc * self.burst_bytes
        if not nc:
            return t_min, t_min
        return self._uniform(mask, t_min, self._runs_body([(a["bank"], a["row"], c0, nc)], C_RD))

    def _h_wr_abk(self, ins, t_min, mask, _la):
        a = ins.args
        row = a["row"]
        c0, nc = self._cols(a["elem"], a["n"])
        self.io_in += nc * self.burst_bytes * bin(mask).count("1")
        if not nc:
            return t_min, t_min

        def body(st, t, g):
            self._open(st, range(self.NB), row, t, g)
            return (self._train(st, C_WR16, 0, row % self.NS, nc, t, g, (), row)
                    + self.done[C_WR16])
        return self._uniform(mask, t_min, body)

    def _h_copy(self, ins, t_min, mask, _la):
        a = ins.args
        c = C_RDCP if ins.op == Op.COPY_BKGB else C_WRCP
        self._check_bank(a["bank"])
        if not a["ncols"]:
            return t_min, t_min
        return self._uniform(mask, t_min,
                             self._runs_body([(a["bank"], a["row"], a["col"], a["ncols"])], c))

    def _vec_runs(self, vec, n, region_row, n_local, vec_len):
        """Per-channel runs ``(bank, row, col, ncols)`` covering elements ``[0, n)`` of ``vec``."""
        slot = vec % self.slots
        i = vec // self.slots
        ch, bank = divmod(slot, self.NB)
        G, RE = self.G, self.row_elems
        runs = []
        e = 0
        while e < n:
            tk = e // G
            lt = min(G, vec_len - tk * G)
            stop = min(n, tk * G + lt)
            flat = region_row * RE + tk * n_local * G + i * lt + (e - tk * G)
            flat_end = flat + (stop - e)
            while flat < flat_end:
                row, el = divmod(flat, RE)
                chunk = min(flat_end - flat, RE - el)
                c0, nc = self._cols(el, chunk)
                runs.append((bank, row, c0, nc))
                flat += chunk
            e = stop
        return ch, runs

    def _h_vec(self, ins, t_min, mask, _la):
        a = ins.args
        vec = a["vec"]
        if ins.op == Op.RD_VEC and ins.flags & FLAG_VEC_FROM_REG:
            vec = self.regs[vec % 16]
        if a["n"] == 0:
            return t_min, t_min
        ch, runs = self._vec_runs(vec, a["n"], a["region_row"], a["n_local"], a["vec_len"])
        c = C_RD if ins.op == Op.RD_VEC else C_WR
        nbytes = sum(r[3] for r in runs) * self.burst_bytes
        if c == C_RD:
            self.io_out += nbytes
        else:
            self.io_in += nbytes
        return self._uniform(1 << ch, t_min, self._runs_body(runs, c))

    def _h_wr_elem(self, ins, t_min, mask, _la):
        a = ins.args
        n, vec0, elem = a["n"], a["vec"], a["elem"]
        region_row, n_local, vec_len = a["region_row"], a["n_local"], a["vec_len"]
        if n == 0:
            return t_min, t_min
        G, RE, CE = self.G, self.row_elems, self.col_elems
        tk = elem // G
        lt = min(G, vec_len - tk * G)
        per_ch: dict = {}
        for j in range(n):
            v = vec0 + j
            slot = v % self.slots
            i = v // self.slots
            ch, bank = divmod(slot, self.NB)
            flat = region_row * RE + tk * n_local * G + i * lt + (elem - tk * G)
            row, el = divmod(flat, RE)
            per_ch.setdefault(ch, []).append((bank, row, el // CE))
        self.io_in += n * self.burst_bytes
        by_key: dict = {}
        for ch, acc in per_ch.items():
            by_key.setdefault(tuple(acc), []).append(ch)
        self.first = None
        e0 = t_min
        for acc, chans in by_key.items():
            waves = self._waves(acc)
            for g in self._groups(chans):
                e0 = self._run_group(
                    g, t_min, lambda st, t, g, w=waves: self._wr_waves(st, w, t, g), e0)
        return (t_min if self.first is None else self.first), e0

    @staticmethod
    def _waves(acc) -> list:
        """Split accesses ``(bank, row, col)`` into waves in which each bank appears once."""
        waves, cur, seen = [], [], set()
        for x in acc:
            if x[0] in seen:
                waves.append(cur)
                cur, seen = [], set()
            cur.append(x)
            seen.add(x[0])
        if cur:
            waves.append(cur)
        return waves

    def _wr_waves(self, st, waves, t, g):
        last = t
        for wave in waves:
            by_row: dict = {}
            for bank, row, _ in wave:
                by_row.setdefault(row, []).append(bank)
            for row, banks in by_row.items():
                self._open(st, banks, row, t, g)
            for bank, row, _ in wave:
                last = self._train(st, C_WR, bank, row % self.NS, 1, t, g, (), row)
        return last + self.done[C_WR]

    # ------------------------------------------------------------------------------------------
    # ASIC
    # ------------------------------------------------------------------------------------------
    def _asic(self, ins) -> int:
        """Busy time (tCK) of one vector-unit instruction; counts its ops and words."""
        op, a = ins.op, ins.args
        if op == Op.SETR:
            self.regs[a["reg"] % 16] = a["imm"]
        elif op == Op.ARGMAX:
            self.regs[a["reg"] % 16] = 0
        c = self.vu.cost(ins)
        self.asic_ops += c.ops
        self.asic_words += c.words
        return max(1, math.ceil(c.cycles * self.asic_tck - 1e-9))


@dataclass
class _Group:
    st: ChannelState
    chans: list
    m: int
    mask: int


def simulate(program, hw: HwConfig, log: bool = False) -> PerfResult:
    """Simulate ``program`` on ``hw``; see :class:`PerfEngine`."""
    return PerfEngine(hw).run(program, log=log)

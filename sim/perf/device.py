"""Device state of the perf engine: channel states, command issue, row and mode policy, lockstep.

The DRAM standard (:mod:`pimgpt.core.dram`) is compiled once into ready-time tables: issuing
command ``p`` at cycle ``t`` raises, for every row ``p -> f (latency L)``, the ready time of ``f``
to ``t + L`` at the node of the channel tree where the two footprints meet (the coarsest of the
row's scope and the two footprints); the earliest cycle of ``f`` is the maximum over the nodes on
its footprint's path to the channel. The device has no timing rule of its own.

* A run of ``n`` identical commands (the columns of one ``MAC_ABK``, the bursts of a ``WR_GB``) is
  one closed-form *train*: the first issues at its earliest cycle, the rest at the self-spacing
  ``g`` (the largest latency of a row relating the command to itself), which no other ready time
  can exceed since none changes during the train. Logged as ``(cmd, mask, fpi, sub, row, t0, n,
  g)``.
* Rows stay open until a conflicting access (open-page policy); a miss precharges and activates
  with the widest command that fits (``PREA``/``ACT16`` when every bank needs the row, ``PRE4``/
  ``ACT4`` for a whole bank group, else ``PRE``/``ACT``).
* Modes: when the standard models them, a command that needs the other mode than its channel is
  in is preceded by the switch into that mode (``MODREG``/``MODARR``); the channel then stays in
  that mode until a command needs the other one.
* Refresh: ``REFab`` (after ``PREA`` of open rows) by the configured refresh policy
  (:mod:`.refresh`: postponed while busy, at row switches and in idle windows; or eager, at the
  first instruction boundary after each due cycle).
* Channels in lockstep share one :class:`ChannelState`: an instruction that selects several
  channels in the same state is scheduled once (copy-on-write when they diverge); at each ``SYNC``
  states that are equivalent from the barrier on (rows, mode, ready times, windows) merge again.
* Memo (:mod:`.memo`, on by default): an instruction body that the expansion describes by a shape
  (``sig``) and its rows is issued in full once per canonical channel state and replayed, shifted,
  after that, with identical results.
"""

from __future__ import annotations

from dataclasses import dataclass

from pimgpt.core import dram as S
from pimgpt.core.config import ConfigError, HwConfig
from pimgpt.sim.perf.memo import Memo
from pimgpt.sim.perf.refresh import REFRESH, Refresher

C_ACT16, C_PRE4, C_PREA = S.CMD["ACT16"], S.CMD["PRE4"], S.CMD["PREA"]
C_ACT, C_ACT4, C_PRE, C_REF = S.CMD["ACT"], S.CMD["ACT4"], S.CMD["PRE"], S.CMD["REFab"]
C_RD, C_RDMAC16 = S.CMD["RD"], S.CMD["RDMAC16"]
NEVER = -(1 << 60)


class ChannelState:
    """Timing, row and mode state of one channel (possibly shared by channels in lockstep)."""

    __slots__ = ("ready", "open", "win", "last", "next_ref", "done", "mode", "node", "valid",
                 "live")

    def __init__(self, size: int, subs: int, banks: int, windows: int, next_ref: int):
        self.ready = [NEVER] * size  # flat ready times, see Device._check_index
        self.open = [[-1] * banks for _ in range(subs)]  # open row per [sub][bank], -1 closed
        self.win = [[] for _ in range(windows)]  # recent issue cycles per window row
        self.last = NEVER  # issue cycle of the latest command (command bus)
        self.next_ref = next_ref  # cycle the next refresh is due
        self.done = 0  # completion cycle of the latest instruction on this channel
        self.mode = S.ARRAY_MODE  # the mode after power-up
        self.node = None  # canonical form (:mod:`.memo`), None when not computed since a change
        self.valid = True  # ``ready`` and ``win`` are up to date (else ``node`` holds them)
        self.live = None  # with the memo: indices of ``ready`` that may exceed min(last, done)

    def clone(self) -> ChannelState:
        c = ChannelState.__new__(ChannelState)
        c.valid, c.node = self.valid, self.node
        c.ready = self.ready[:]  # when not valid: stale, at or below the true times
        c.open = [o[:] for o in self.open]
        c.win = [w[:] for w in self.win]
        c.live = None if self.live is None else set(self.live)
        c.last = self.last
        c.next_ref = self.next_ref
        c.done = self.done
        c.mode = self.mode
        return c


@dataclass
class Group:
    """Channels ``chans`` (bit mask ``mask``, ``m`` of them) sharing state ``st``."""

    st: ChannelState
    chans: list
    m: int
    mask: int


class Device:
    """The channels of one hardware configuration, driven command by command.

    Parameters
    ----------
    hw : HwConfig
        Hardware configuration (DRAM organisation, timing, standard, ``dram.act_overlap``).
    memo : bool
        Replay instruction bodies from canonical states (:mod:`.memo`; identical results). False
        issues every command in full (the reference the memo is tested against).
    """

    def __init__(self, hw: HwConfig, memo: bool = True):
        self.hw = hw
        self.std = std = S.build_standard(hw)
        d = hw.dram
        self.C, self.NB, self.NBG = d.channels, d.banks, d.bank_groups
        self.BPG = d.banks // d.bank_groups
        self.NS = std.subs
        self.K = S.N_CMDS
        self.nodes = 1 + self.NBG + self.NB
        self.node_stride = (1 + self.NS) * self.K
        self.size = self.nodes * self.node_stride
        self.nREFI = std.timing["nREFI"]
        # Completion of a command's instruction: the standard's done_after, plus the PIM engine's
        # return path for data read into the scratchpad (RD, RDMAC16).
        ret = hw.asic.pim_return_latency
        self.done = tuple(d + (ret if c in (C_RD, C_RDMAC16) else 0)
                          for c, d in enumerate(std.done_after))
        self.mode_of = std.mode_of
        self.switch_to = std.switch_to
        self._compile()
        self.memo = Memo(self) if memo else None
        self.ref = Refresher(self)
        self.reset()

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
        self.wweight = std.window_weight
        self.fp_banks = tuple((1, self.BPG, self.NB)[self.fp[c]] for c in range(K))
        self.row_cmd = tuple(S.COMMANDS[c] in S.NEEDS_OPEN_ROW for c in range(K))
        self._ccache: dict = {}
        self._ucache: dict = {}
        # Everything command issue depends on (devices with equal tables share a memo store).
        self.tables = (K, self.NS, self.NB, self.NBG, self.bus, tuple(self.upd), tuple(self.chk),
                       tuple(self.windows), tuple(self.gap), self.done, self.mode_of,
                       self.switch_to, self.fp, self.wweight, self.row_cmd)

    def reset(self) -> None:
        """Power-up state: every channel idle, rows closed, array mode; counters at zero."""
        self.counts = [0] * self.K
        self.bank_acts = self.bank_pres = self.bank_cols = 0
        if self.memo is not None:
            self.memo.discard()
        self.log = None
        self.floor = 0  # the latest barrier: no command is placed before it
        self.first = None  # first command cycle of the current instruction
        self.own = 0  # own time of the current instruction (see run_group)
        st0 = ChannelState(self.size, self.NS, self.NB, len(self.windows), self.nREFI)
        if self.memo is not None:
            st0.live = set()
        self.states = [st0] * self.C
        self.owners = {id(st0): self.C}
        self._gcache = {}
        self._mcache = {}

    def touch(self, st: ChannelState) -> None:
        """Before changing ``st`` command by command: its lists valid, its canonical form unset."""
        if not st.valid:
            self.memo.materialize(st)
        if st.node is not None:
            st.live = set(st.node.live)
            st.node = None

    # ------------------------------------------------------------------------------------------
    # Command issue
    # ------------------------------------------------------------------------------------------
    def earliest(self, st: ChannelState, c: int, fpi: int, sub: int, t: int) -> int:
        """Earliest cycle ``>= t`` at which command ``c`` on footprint ``fpi`` may issue."""
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
        """``(flat index, latency)`` pairs that command ``c`` on footprint ``fpi`` raises, and
        the indices alone."""
        anc = self.anc[self.fp[c]][fpi]
        so = (1 + sub) * self.K
        pairs = tuple((anc[e] + (so + f if sk else f), lat) for e, sk, f, lat in self.upd[c])
        self._ucache[(c, fpi, sub)] = hit = (pairs, tuple(i for i, _ in pairs))
        return hit

    def _apply(self, st: ChannelState, c: int, fpi: int, sub: int, t: int) -> None:
        r = st.ready
        hit = self._ucache.get((c, fpi, sub))
        if hit is None:
            hit = self._update_index(c, fpi, sub)
        pairs, idx = hit
        if st.live is not None:
            st.live.update(idx)
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

    def banks_of(self, c: int, fpi: int):
        f = self.fp[c]
        if f == S.CHANNEL:
            return range(self.NB)
        if f == S.BANKGROUP:
            return range(fpi * self.BPG, (fpi + 1) * self.BPG)
        return (fpi,)

    def _enter_mode(self, st: ChannelState, mode: int, t_min: int, g: Group) -> None:
        """Switch the channel into ``mode`` (the switch command at its earliest cycle)."""
        self.issue(st, self.switch_to[mode], 0, 0, t_min, g)
        st.mode = mode

    def issue(self, st, c, fpi, sub, t_min, g, row=-1) -> int:
        """Issue one command at its earliest cycle >= ``t_min``; returns the cycle."""
        m = self.mode_of[c]
        if m and st.mode != m:
            self._enter_mode(st, m, t_min, g)
        t = self.earliest(st, c, fpi, sub, t_min)
        self._apply(st, c, fpi, sub, t)
        if self.first is None or t < self.first:
            self.first = t
        mult = g.m
        self.counts[c] += mult
        if c <= C_ACT16:
            op = st.open[sub]
            for b in self.banks_of(c, fpi):
                op[b] = row
            self.bank_acts += mult * self.fp_banks[c]
        elif c <= C_PREA:
            op = st.open[sub]
            n = 0
            for b in self.banks_of(c, fpi):
                if op[b] >= 0:
                    n += 1
                    op[b] = -1
            self.bank_pres += mult * n
        if self.log is not None:
            self.log.append((c, g.mask, fpi, sub, row, t, 1, 0))
        return t

    def train(self, st, c, fpi, sub, n, t_min, g, inject=(), row=-1) -> int:
        """Issue ``n`` identical commands; returns the cycle of the last one.

        ``inject`` lists ``(cmd, fpi, sub, row)`` commands placed between the members as early as
        they are legal (the train is split around them); they need the train's mode.
        """
        m = self.mode_of[c]
        if m and st.mode != m:
            self._enter_mode(st, m, t_min, g)
        gap = self.gap[c]
        mult = g.m
        remaining = n
        t0 = t_min
        t_last = -1
        for ic, ifpi, isub, irow in inject:
            if remaining:
                t0 = self.earliest(st, c, fpi, sub, t0)
                x = self.earliest(st, ic, ifpi, isub, t_min)
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
            self.issue(st, ic, ifpi, isub, t_min, g, irow)
        if remaining:
            t0 = self.earliest(st, c, fpi, sub, t0)
            if self.first is None or t0 < self.first:
                self.first = t0
            t_last = t0 + (remaining - 1) * gap
            self._apply(st, c, fpi, sub, t_last)
            if self.log is not None:
                self.log.append((c, g.mask, fpi, sub, row, t0, remaining, gap))
        self.counts[c] += n * mult
        if self.row_cmd[c]:
            self.bank_cols += n * mult * self.fp_banks[c]
        return t_last

    # ------------------------------------------------------------------------------------------
    # Rows and refresh
    # ------------------------------------------------------------------------------------------
    def refresh(self, st: ChannelState, t: int, g: Group) -> None:
        """The ``eager`` policy: issue the refreshes of ``st`` that are due by ``max(t, its last
        command)``, each at its due cycle or the earliest after."""
        last = st.last if st.last > t else t
        while st.next_ref <= last:
            if self.memo is None or st.next_ref > st.last + self.bus:
                # An idle channel's refresh is keyed by its exact last completion: rarely
                # repeated, so issued in full.
                self.touch(st)
                self._refresh(st, st.next_ref, g)
            else:
                self.memo.run(g, st, st.next_ref, self._refresh, REFRESH, (), 0, sets_done=False)
            st.next_ref += self.nREFI

    def _refresh(self, st: ChannelState, due: int, g: Group) -> int:
        """One refresh sequence from cycle ``due``: ``PREA`` where rows are open, then ``REFab``
        (the first command returns to array mode if needed)."""
        for s in range(self.NS):
            if max(st.open[s]) >= 0:
                self.issue(st, C_PREA, 0, s, due, g)
        return self.issue(st, C_REF, 0, 0, due, g)

    def refresh_all(self, t: int, end: bool = False) -> None:
        """Every channel at a barrier at cycle ``t`` (idle until then): its refreshes by the
        policy; ``end``: the program ends at ``t``, the refreshes due by then are issued."""
        for s in {id(x): x for x in self.states}.values():
            chans = [c for c in range(self.C) if self.states[c] is s]
            g = Group(s, chans, len(chans), self.mask_of(chans))
            if end:
                self.ref.finish(s, t, g)
            else:
                self.ref.barrier(s, t, g)

    def plan_open(self, st: ChannelState, banks, row: int) -> list:
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

    def open(self, st, banks, row, t_min, g) -> None:
        """Open ``row`` in ``banks`` (precharging conflicting rows first)."""
        for cmd in self.plan_open(st, banks, row):
            self.issue(st, cmd[0], cmd[1], cmd[2], t_min, g, cmd[3])

    # ------------------------------------------------------------------------------------------
    # Channel groups (lockstep sharing)
    # ------------------------------------------------------------------------------------------
    def chans(self, mask: int) -> list:
        """Channels of ``mask``; a channel beyond the hardware is a :class:`ConfigError`."""
        if mask >> self.C:
            raise ConfigError(
                f"ch_mask {mask:#x} selects channels beyond the {self.C} of {self.hw.name}; "
                "compile the program for this hardware"
            )
        return [c for c in range(self.C) if mask >> c & 1]

    def groups(self, chans: list) -> list:
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
            out.append(Group(x, cs, len(cs), self.mask_of(cs)))
        self._gcache[key] = out
        return out

    @staticmethod
    def mask_of(chans) -> int:
        mask = 0
        for ch in chans:
            mask |= 1 << ch
        return mask

    def _reassign(self, new: ChannelState, chans) -> ChannelState:
        """Point ``chans`` at state ``new``, keeping the owner counts."""
        self._gcache.clear()
        self._mcache.clear()
        owners = self.owners
        for ch in chans:
            old = self.states[ch]
            owners[id(old)] -= 1
            if not owners[id(old)]:
                del owners[id(old)]
            self.states[ch] = new
        owners[id(new)] = owners.get(id(new), 0) + len(chans)
        return new

    def merge(self, barrier: int) -> None:
        """Share one state among channels whose states are equivalent from ``barrier`` on."""
        # A merged state stands for its channels from the barrier on only: no command may be
        # placed before it any more (the refresh policy's idle windows start there at the
        # earliest).
        self.floor = barrier
        distinct = {id(s): s for s in self.states}
        if len(distinct) < 2:
            return
        canon = (self._equivalent(distinct, barrier) if self.memo is None
                 else self.memo.equivalent(distinct, barrier))
        if canon is None or len(canon) == len(distinct):
            return
        rep = {}
        for keys in canon.values():
            for k in keys:
                rep[k] = distinct[keys[0]]
        self.states = [rep[id(s)] for s in self.states]
        self._gcache.clear()
        self._mcache.clear()
        self.owners = {}
        for s in self.states:
            self.owners[id(s)] = self.owners.get(id(s), 0) + 1

    def _equivalent(self, distinct: dict, barrier: int) -> dict:
        """``distinct`` (id -> state) grouped by their state from ``barrier`` on: key -> ids."""
        bus, wins = self.bus, self.windows
        canon: dict = {}
        for key, s in distinct.items():
            c = (
                s.next_ref,
                s.mode,
                tuple(tuple(o) for o in s.open),
                max(s.last, barrier - bus),
                tuple(tuple(max(x, barrier - wins[i][2]) for x in
                            ([NEVER] * (wins[i][3] - len(w)) + w))
                      for i, w in enumerate(s.win)),
                tuple([x if x > barrier else barrier for x in s.ready]),
            )
            canon.setdefault(c, []).append(key)
        return canon

    def run_group(self, g: Group, t_min: int, body, e0: int, sig=None, rows=(),
                  ahead: int = 0, paced: int = 0) -> int:
        """Run ``body(state, t_min, group) -> completion`` on one group (refreshing first when
        due); returns the later of ``e0`` and the completion.

        ``sig`` (hashable), ``rows`` and ``ahead`` describe the body for the memo: two bodies
        with equal ``sig`` must issue the same commands from the same state on groups of as many
        channels, given their rows (``rows``: every row the body opens or compares, by label)
        and whether ``ahead`` (a channel mask; 0: none) covers the group (a body may read the
        group's channels through that test only). Their completion must not be ``t_min``
        itself (a body that may return it passes ``sig=None`` and runs in full). ``paced``: the
        latest offset from ``t_min`` at which the body asks for a command of its own pace
        (:meth:`.memo.Memo.replay`; 0: it asks for none after ``t_min``)."""
        st = g.st
        if self.ref.due(st, t_min, rows):
            self.ref.boundary(st, t_min, g, rows)
        prev = st.done if st.done > t_min else t_min
        if sig is not None and self.memo is not None:
            done = self.memo.run(g, st, t_min, body, sig, rows, ahead, paced=paced)
        else:
            self.touch(st)
            done = body(st, t_min, g)
        # Own time of the instruction on this channel: from when the channel finished its
        # previous instruction (or the instruction was dispatched) to its completion.
        if done - prev > self.own:
            self.own = done - prev
        if done > st.done:
            st.done = done
        return done if done > e0 else e0

    def uniform(self, mask: int, t_min: int, body, sig=None, rows=(), ahead: int = 0) -> tuple:
        """Run ``body`` once per group of lockstep channels of ``mask`` (``sig``, ``rows``,
        ``ahead``: see :meth:`run_group`); returns ``(first command cycle, completion)``."""
        self.first = None
        e0 = t_min
        groups = self._mcache.get(mask)
        if groups is None:
            groups = self._mcache[mask] = self.groups(self.chans(mask))
        memo = self.memo if sig is not None else None
        for g in groups:
            st = g.st
            if memo is not None and not self.ref.due(st, t_min, rows):
                # The hit path of run_group (no refresh work; the memo has the outcome).
                prev = st.done if st.done > t_min else t_min
                done = memo.replay(g, st, t_min, sig, rows, ahead)
                if done is not None:
                    if done - prev > self.own:
                        self.own = done - prev
                    if done > e0:
                        e0 = done
                    continue
            e0 = self.run_group(g, t_min, body, e0, sig, rows, ahead)
        return (t_min if self.first is None else self.first), e0

    def counters(self) -> dict:
        """Snapshot of the device's additive event counters."""
        if self.memo is not None:
            self.memo.flush()
        counts = {S.COMMANDS[c]: self.counts[c] for c in range(self.K)}
        return {"counts": counts, "bank_acts": self.bank_acts, "bank_pres": self.bank_pres,
                "mac_bank_cols": counts["MAC16"] * self.NB + counts["MAC"],
                "bank_col_accesses": self.bank_cols}

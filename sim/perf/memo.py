"""Memoised instruction bodies: channel states in canonical form and the transitions between them.

Why: a decode step runs a few instruction shapes (``MAC_ABK``, ``RD_MAC``, ``WR_GB``, ...) tens of
thousands of times from a few channel states that differ only by a shift in time and by their row
numbers. The device issues a shape's commands in full once per distinct (canonical state, shape)
and replays the recorded outcome, shifted, every other time: the same commands at the same cycles,
the same counters and log records, the same next state. Results are identical with and without
the memo (``tests/test_perf_memo.py`` compares everything a run returns).

Canonical form (a :class:`Node`). Let ``B = last + bus`` (no later command issues before ``B``) and
``F = min(B, done)``. The node holds the mode, ``done - B``, and the ready times and window entries
(plus their latency) above ``F``, relative to ``B``; all others count as ``F``. This is exact:

* timing: every later command issues at ``B`` or after, so a bound at or below ``B`` never binds;
* the ``SYNC`` merge (:meth:`~.device.Device.merge`) clamps ready times and window entries at the
  barrier, and every barrier is at or after ``done >= F``: a value at or below ``F`` changes no
  merge decision.

Only ready times above ``F`` are stored (a few dozen of several hundred): a state remembers which
indices it raised since its node was made (``live``), so making a node and shifting it back
(:meth:`Memo.materialize`, which rewrites only those) cost little; the other entries of the lists
keep older values, at or below the true ones and therefore at or below ``F`` too.

A body dispatched after its channel's last command (``t_min > B``: the channel idles until then)
is keyed by what binds after ``t_min`` alone (:meth:`Memo._idle`): every body issues a command at
``t_min`` or later and completes no earlier, so nothing at or below ``t_min`` outlives it. Its
outcome is recorded relative to ``t_min``.

Row numbers and the refresh schedule stay out of the node. The transition key holds the number
of channels of the group and whether the look-ahead row is for all of them (the group's mask only
labels its log records, so the two halves of the channels share transitions), the instruction's
shape (``sig``, from :mod:`.expand`), the open rows as labels relative to the instruction's rows
(``k``: the ``k``-th row, -1: closed, -2: another row), which of those rows are equal and their
subarray groups. A body never reads the refresh schedule: a due refresh comes before it
(:meth:`~.device.Device.run_group`), itself a memoised body when the channel is busy (an idle
channel's refresh depends on its exact last completion and is issued in full).

While a state follows transitions its ready-time and window lists are stale (``valid`` false);
whatever reads or changes them command by command first calls :meth:`~.device.Device.touch`.
Counters are added per transition when they are read (:meth:`Memo.flush`).

The states and transitions depend on the device's timing tables only (not on the channel count,
the vector unit or the energy figures): engines with equal tables in one process share them
(:func:`shared_store`), up to :data:`MAX_ENTRIES` in all.
"""

from __future__ import annotations

import threading


class Node:
    """A channel state in canonical form (see the module doc) and its outgoing transitions."""

    __slots__ = ("ready", "live", "win", "trans")

    def __init__(self, ready: tuple, win: tuple):
        self.ready = ready  # (index, ready time relative to B) where above F, by index
        self.live = tuple(i for i, _ in ready)
        self.win = win  # per window row: entries plus latency, relative to B, padded to its size
        self.trans: dict = {}  # transition key -> Transition


class Transition:
    """The outcome of one instruction body from one node: next node, shifts, counters, log."""

    __slots__ = ("node", "dlast", "done", "mode", "first", "opens", "counts", "acts", "pres",
                 "cols", "log", "uses")

    def __init__(self, **kw):
        self.uses = 0  # replays whose counters are not yet added (Memo.flush)
        for k, v in kw.items():
            setattr(self, k, v)


def labels_of(rows: tuple) -> dict:
    """Row -> its label: the index of its first occurrence in ``rows`` (-1, closed: -1)."""
    first = {r: k for k, r in reversed(list(enumerate(rows)))}
    first[-1] = -1
    return first


def row_labels(st, first: dict, nb: int) -> tuple:
    """The open rows of ``st`` relative to the instruction's rows (``first``: their
    :func:`labels_of`): per subarray group an int (every bank holds the same: label of it) or a
    tuple of per-bank labels (``k``: ``rows[k]``, -1 closed, -2 another row)."""
    get = first.get
    out = []
    for op in st.open:
        x = op[0]
        if op.count(x) == nb:
            out.append(get(x, -2))
        else:
            out.append(tuple([get(y, -2) for y in op]))
    return tuple(out)


class Store:
    """The canonical states (with their transitions) of one set of device timing tables."""

    __slots__ = ("nodes", "entries")

    def __init__(self):
        self.nodes: dict = {}  # node key -> Node
        self.entries = 0  # nodes plus transitions


#: Stores per device timing tables, shared by every engine of this thread whose tables are equal
#: (a sweep's points that differ elsewhere, a benchmark's repeats); the least recently used are
#: dropped beyond STORES_KEPT. Per thread: a store is mutated while an engine runs, and a Dask
#: worker runs tasks in several threads at once (two engines on one store gave wrong counters).
_LOCAL = threading.local()
STORES_KEPT = 8
#: Nodes plus transitions in all stores together at which the memo stops recording (about 1-2 kB
#: each; a run then goes on replaying what it holds and issues the rest in full).
MAX_ENTRIES = 50_000


def _stores() -> dict:
    """This thread's stores."""
    stores = getattr(_LOCAL, "stores", None)
    if stores is None:
        stores = _LOCAL.stores = {}
    return stores


def shared_store(tables) -> Store:
    """The store of this thread's devices whose compiled timing tables are ``tables``."""
    stores = _stores()
    store = stores.pop(tables, None) or Store()
    stores[tables] = store  # most recently used last
    while len(stores) > STORES_KEPT:
        del stores[next(iter(stores))]
    return store


def stores_full() -> bool:
    """Whether this thread's stores hold :data:`MAX_ENTRIES` entries."""
    return sum(s.entries for s in _stores().values()) >= MAX_ENTRIES


def clear_stores() -> None:
    """Forget this thread's shared stores (the next run starts cold: benchmarks, tests)."""
    _stores().clear()


class Memo:
    """Canonical states and transitions for one :class:`~.device.Device` (the store is shared,
    see :func:`shared_store`: it depends on the timing tables only)."""

    def __init__(self, dev):
        self.dev = dev
        self.store = shared_store(dev.tables)
        self.nodes = self.store.nodes
        self.wins = tuple((lat, size) for _pre, _fol, lat, size in dev.windows)
        self.nb, self.ns = dev.NB, dev.NS
        self.hits = self.misses = 0  # replays (added up in flush) and bodies run in full
        self.bus = dev.bus
        self.used: list = []  # transitions replayed since the last flush (see Transition.uses)

    # ---- canonical form ----------------------------------------------------------------------
    def canon(self, st) -> Node:
        """The node of a state whose lists are valid (interned: equal states share one node)."""
        b = st.last + self.dev.bus
        f = st.done if st.done < b else b
        lo = f - b
        r = st.ready
        ready = tuple([(i, r[i] - b) for i in sorted(st.live) if r[i] > f])
        win = []
        for (lat, size), w in zip(self.wins, st.win, strict=True):
            ent = [x + lat - b if x + lat > f else lo for x in w[-size:]]
            win.append(tuple([lo] * (size - len(ent)) + ent))
        key = (st.mode, st.done - b, ready, tuple(win))
        node = self.nodes.get(key)
        if node is None:
            node = self._new(key, ready, tuple(win))
        return node

    def _idle(self, st, t: int) -> Node:
        """A key node for a body dispatched at ``t`` after every command of ``st`` (``t > last +
        bus``): the mode and the ready times and window bounds above ``t``, relative to ``t``.
        Bounds at or below ``t`` bind no command of the body and are dead after it (every body
        issues a command at ``t`` or later and completes no earlier)."""
        node = st.node
        if node is not None:
            d = st.last + self.dev.bus - t
            ready = tuple([(i, x + d) for i, x in node.ready if x + d > 0])
            win = tuple(tuple([x + d if x + d > 0 else 0 for x in w]) for w in node.win)
        else:
            r = st.ready
            ready = tuple([(i, r[i] - t) for i in sorted(st.live) if r[i] > t])
            win = tuple(tuple([0] * (size - len(w)) + [x + lat - t if x + lat > t else 0
                                                         for x in w[-size:]])
                        for (lat, size), w in zip(self.wins, st.win, strict=True))
        key = ("idle", st.mode, ready, win)
        node = self.nodes.get(key)
        if node is None:
            node = self._new(key, ready, win)
        return node

    def _new(self, key, ready: tuple, win: tuple) -> Node:
        """A new node, kept in the store unless the stores are full."""
        node = Node(ready, win)
        if not stores_full():
            self.nodes[key] = node
            self.store.entries += 1
        return node

    def materialize(self, st) -> None:
        """Make the ready-time and window lists of ``st`` valid again (from its node)."""
        node = st.node
        b = st.last + self.dev.bus
        r = st.ready
        for i, x in node.ready:
            r[i] = b + x
        st.win = [[b + x - lat for x in w]
                  for (lat, _size), w in zip(self.wins, node.win, strict=True)]
        st.valid = True

    def merge_key(self, st, barrier: int) -> tuple:
        """What :meth:`~.device.Device.merge` compares: the state from ``barrier`` on (ready times
        and window entries clamped there; only the live indices can exceed it)."""
        bus = self.dev.bus
        if st.node is not None:
            b = st.last + bus
            ready = tuple([(i, b + x) for i, x in st.node.ready if b + x > barrier])
            wins = tuple(tuple(max(b + x - lat, barrier - lat) for x in w)
                         for (lat, _size), w in zip(self.wins, st.node.win, strict=True))
        else:
            r = st.ready
            ready = tuple([(i, r[i]) for i in sorted(st.live) if r[i] > barrier])
            wins = tuple(tuple([barrier - lat] * (size - len(w))
                               + [max(x, barrier - lat) for x in w])
                         for (lat, size), w in zip(self.wins, st.win, strict=True))
        return (st.next_ref, st.mode, tuple(tuple(o) for o in st.open),
                max(st.last, barrier - bus), wins, ready)

    def equivalent(self, distinct: dict, barrier: int) -> dict | None:
        """:meth:`~.device.Device._equivalent` with the memo's states: the full comparison
        (:meth:`merge_key`) only among states that agree on the cheap fields and are not
        plainly the same; None when no two states can be equivalent."""
        cheap: dict = {}
        for key, s in distinct.items():
            cheap.setdefault((s.next_ref, s.mode, max(s.last, barrier - self.bus)), []).append(key)
        if len(cheap) == len(distinct):
            return None
        canon: dict = {}
        for keys in cheap.values():
            if len(keys) == 1:
                canon[keys[0],] = keys
                continue
            # States with one node, one last command and the same open rows are the same state.
            same: dict = {}
            for key in keys:
                s = distinct[key]
                ident = key if s.node is None else (id(s.node), s.last, str(s.open))
                same.setdefault(ident, []).append(key)
            if len(same) == 1:
                canon[keys[0], "same"] = keys
                continue
            for members in same.values():
                canon.setdefault(self.merge_key(distinct[members[0]], barrier), []).extend(members)
        return canon

    # ---- one body ----------------------------------------------------------------------------
    def run(self, g, st, t_min: int, body, sig, rows: tuple, ahead: int = 0,
            sets_done: bool = True, paced: int = 0) -> int:
        """Run ``body`` on group ``g`` (state ``st``, refreshed already) from the memo, recording
        it on a miss; returns its completion cycle and updates ``st.done`` (unless not
        ``sets_done``: a refresh, which is not an instruction). ``paced``: see :meth:`replay`."""
        done = self.replay(g, st, t_min, sig, rows, ahead, sets_done, paced)
        if done is not None:
            return done
        node, b, key = self._miss
        self.misses += 1
        if stores_full():  # issue in full, record nothing more
            self.dev.touch(st)
            done = body(st, t_min, g)
            if done > st.done and sets_done:
                st.done = done
            return done
        tr = node.trans[key] = self._record(g, st, t_min, body, rows, b, sets_done)
        self.store.entries += 1
        return b + tr.done

    def replay(self, g, st, t_min: int, sig, rows: tuple, ahead: int = 0,
               sets_done: bool = True, paced: int = 0):
        """Replay the body ``sig``/``rows`` on group ``g`` (state ``st``) if the memo holds its
        outcome: the state, counters, log and ``dev.first`` as the body would leave them
        (``st.done`` included); returns the completion cycle. None, with nothing changed, if it
        does not (the key is kept for :meth:`run`).

        ``paced``: the body asks for its commands at cycles up to ``t_min + paced`` (a pace of
        its own from dispatch, e.g. ``WR_ELEM``'s wave generator); dispatched before ``b``, its
        outcome then depends on ``b - t_min`` up to ``paced``, which enters the key."""
        b = st.last + self.bus
        if t_min > b:
            # The channel idles until t_min: only what binds after t_min matters, and the
            # completion of its last body if that is later (the next state's ``done``; all of
            # it when the body does not set ``done``).
            node = self._idle(st, t_min)
            b = t_min
            after = (st.done - b if st.done > b else 0) if sets_done else st.done - b
        else:
            node = st.node
            if node is None:
                node = st.node = self.canon(st)
            # ``done - b`` is part of the node; a paced body also depends on how far before
            # ``b`` it was dispatched (beyond ``paced`` every request waits for ``b`` alike)
            after = -min(b - t_min, paced) if paced else 0
        # The group enters by its size (its mask only labels the log) and by whether ``ahead``
        # covers it: groups of either half of the channels share their transitions.
        m = -g.m if ahead and (ahead & g.mask) == g.mask else g.m
        opn = st.open
        if len(rows) <= 2 and len(opn) == 1:  # the common case, inline
            op = opn[0]
            x = op[0]
            if op.count(x) == self.nb:
                labels = -1 if x < 0 else rows.index(x) if x in rows else -2
            else:
                labels = row_labels(st, labels_of(rows), self.nb)
            key = (m, sig, labels, after, len(rows) == 2 and rows[0] == rows[1])
        else:
            first = labels_of(rows)
            key = (m, sig, row_labels(st, first, self.nb), after, self._pattern(rows, first))
        tr = node.trans.get(key)
        if tr is None:
            self._miss = node, b, key
            return None
        st.node = tr.node
        st.valid = False
        st.last = b + tr.dlast
        st.mode = tr.mode
        done = b + tr.done
        if done > st.done and sets_done:
            st.done = done
        if tr.opens:
            self._set_rows(st, tr.opens, rows)
        # Counters are added up lazily (flush), per transition.
        uses = tr.uses
        if not uses:
            self.used.append(tr)
        tr.uses = uses + 1
        dev = self.dev
        if tr.first is not None:
            f = b + tr.first
            if dev.first is None or f < dev.first:
                dev.first = f
        if dev.log is not None:
            m = g.mask
            dev.log.extend([(c, m, fpi, sub, -1 if lab < 0 else rows[lab], b + t, n, gap)
                            for c, fpi, sub, lab, t, n, gap in tr.log])
        return done

    def _pattern(self, rows: tuple, first: dict) -> tuple:
        """Which of ``rows`` are equal (their labels, ``first``: :func:`labels_of`) and their
        subarray groups."""
        pat = tuple(map(first.__getitem__, rows))
        ns = self.ns
        return pat + tuple([r % ns for r in rows]) if ns > 1 else pat

    def flush(self) -> None:
        """Add the counters of the transitions replayed since the last flush to the device's."""
        dev = self.dev
        counts = dev.counts
        for tr in self.used:
            k, tr.uses = tr.uses, 0
            self.hits += k
            for c, n in tr.counts:
                counts[c] += k * n
            dev.bank_acts += k * tr.acts
            dev.bank_pres += k * tr.pres
            dev.bank_cols += k * tr.cols
        self.used = []

    def discard(self) -> None:
        """Forget the pending counters (a new run starts)."""
        for tr in self.used:
            tr.uses = 0
        self.used = []

    def _set_rows(self, st, opens, rows) -> None:
        for s, p in opens:
            op = st.open[s]
            if type(p) is int:
                op[:] = [-1 if p < 0 else rows[p]] * len(op)
            else:
                for k, lab in enumerate(p):
                    if lab != -2:
                        op[k] = -1 if lab < 0 else rows[lab]

    def _record(self, g, st, t_min, body, rows, b, sets_done) -> Transition:
        """Run ``body`` in full on ``st`` and record its outcome relative to ``b``."""
        dev = self.dev
        label = labels_of(rows)
        pre_labels = row_labels(st, label, dev.NB)
        dev.touch(st)
        counts0 = dev.counts[:]
        acts0, pres0, cols0 = dev.bank_acts, dev.bank_pres, dev.bank_cols
        log, first = dev.log, dev.first
        rec = []
        dev.log, dev.first = rec, None
        try:
            done = body(st, t_min, g)
        finally:
            dev.log = log
        f = dev.first
        if first is not None and (f is None or first < f):
            dev.first = first
        if log is not None:
            log.extend(rec)
        if done > st.done and sets_done:
            st.done = done
        post = row_labels(st, label, dev.NB)
        st.node = self.canon(st)
        return Transition(
            node=st.node, dlast=st.last - b, done=done - b, mode=st.mode,
            first=None if f is None else f - b,
            opens=tuple((s, p) for s, (p, q) in enumerate(zip(post, pre_labels, strict=True))
                        if p != q),
            counts=tuple((c, n - counts0[c]) for c, n in enumerate(dev.counts)
                         if n != counts0[c]),
            acts=dev.bank_acts - acts0, pres=dev.bank_pres - pres0, cols=dev.bank_cols - cols0,
            log=tuple((c, fpi, sub, label[row], t - b, n, gap)
                      for c, _m, fpi, sub, row, t, n, gap in rec),
        )

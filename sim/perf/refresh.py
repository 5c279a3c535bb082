"""The channel controller's refresh policy (``dram.refresh_policy``, :mod:`pimgpt.core.dram`).

The policy is defined, for the perf engine and the RTL scheduler alike, in the docstring of
:mod:`pimgpt.core.dram` ("Refresh"). Per channel the state is ``next_ref``: the due cycle of the
next refresh to issue (``k * nREFI`` after ``k - 1`` refreshes), so that
``owed(t) = (t - next_ref) // nREFI + 1`` (negative: refreshes pulled in).

Where the device asks (:class:`~.device.Device`):

* :meth:`Refresher.due` before every instruction body: whether the boundary needs any refresh
  work (a cheap test; the memo's fast path needs it false);
* :meth:`Refresher.boundary` then does it (idle refreshes up to the dispatch, then the refreshes
  at a row switch or forced ones);
* :meth:`Refresher.barrier` at every ``SYNC``/``EOC`` on every channel (idle until the barrier);
* :meth:`Refresher.finish` at the end of a program (refreshes due by then, for their energy).

Refreshes at a busy boundary are memoised bodies (``REFRESH``); idle ones depend on the exact
idle window and are issued in full.
"""

from __future__ import annotations

from pimgpt.core import dram as S

REFRESH = ("refresh",)  # the memo's shape of one refresh sequence


class Refresher:
    """Refresh decisions of one :class:`~.device.Device` (its policy and the standard's limits).

    Parameters
    ----------
    dev : Device
        The device whose channels it refreshes.
    """

    def __init__(self, dev):
        self.dev = dev
        std = S.standard_of(dev.hw)
        self.policy = S.refresh_policy(dev.hw)
        self.N = dev.nREFI
        self.postpone = std.refresh_postpone
        self.pull_in = std.refresh_pull_in if self.policy == "postpone" else 0
        # Forced at this many owed: one interval in reserve for the instruction that follows.
        self.forced = max(self.postpone - 1, 1)
        # At a row switch once half the postponement budget is used: the owed refreshes that
        # are left wait for the vector unit's windows, where they cost the PIM nothing.
        self.at_switch = max(self.postpone // 2, 1)
        self.eager = self.policy == "eager"
        self.c_ref, self.c_prea = S.CMD["REFab"], S.CMD["PREA"]
        self.c_modarr = dev.switch_to[S.ARRAY_MODE]
        # Latency from one command of a refresh sequence to the next (all channel-wide).
        seqc = (self.c_modarr, self.c_prea, self.c_ref)
        self.lat = {p: {f: max([dev.bus] + [lat for _e, _sk, ff, lat in dev.upd[p] if ff == f])
                        for f in seqc} for p in seqc if p >= 0}

    def owed(self, st, t: int) -> int:
        """Refreshes due by cycle ``t`` and not issued (negative: issued ahead)."""
        return (t - st.next_ref) // self.N + 1

    # ---- the device's questions ---------------------------------------------------------------
    def due(self, st, t_min: int, rows: tuple) -> bool:
        """Whether a body dispatched at ``t_min`` with ``rows`` needs refresh work first."""
        if self.eager:
            return st.next_ref <= t_min or st.next_ref <= st.last
        b = st.last + self.dev.bus
        if t_min > b:  # idle before the body: refreshes that fit the window
            return self.owed(st, t_min) > -self.pull_in
        owed = self.owed(st, b)
        return owed >= self.forced or (owed >= self.at_switch and self.row_switch(st, rows))

    def boundary(self, st, t_min: int, g, rows: tuple) -> None:
        """The refresh work before a body dispatched at ``t_min`` (see :meth:`due`)."""
        if self.eager:
            self.dev.refresh(st, t_min, g)
            return
        dev = self.dev
        floor = self.at_switch if self.row_switch(st, rows) else self.forced
        if t_min > st.last + dev.bus:
            self.idle(st, t_min, g, floor)
        b = st.last + dev.bus
        t = t_min if t_min > b else b
        while self.owed(st, t) >= floor:
            if dev.memo is None:
                dev._refresh(st, t_min, g)
            else:
                dev.memo.run(g, st, t_min, dev._refresh, REFRESH, (), 0, sets_done=False)
            st.next_ref += self.N
            t = st.last + dev.bus

    def barrier(self, st, t: int, g) -> None:
        """At a barrier at ``t``: the refreshes of a channel idle until then."""
        if self.eager:
            if st.next_ref <= t or st.next_ref <= st.last:
                self.dev.refresh(st, t, g)
        elif self.owed(st, t) > -self.pull_in:
            self.idle(st, t, g, self.forced)

    def finish(self, st, t: int, g) -> None:
        """At the end of a program at ``t``: the refreshes due by then (they cost energy)."""
        if self.eager:
            self.barrier(st, t, g)
            return
        dev = self.dev
        if self.owed(st, t) > 0:
            dev.touch(st)
        while self.owed(st, t) > 0:
            dev._refresh(st, max(st.next_ref, st.last + dev.bus, dev.floor), g)
            st.next_ref += self.N

    # ---- policy --------------------------------------------------------------------------------
    def row_switch(self, st, rows: tuple) -> bool:
        """Whether a body with ``rows`` (its rows, by number) closes every open row of ``st``
        anyway: it names rows and none of them is open."""
        if not rows:
            return False
        for op in st.open:
            for r in rows:
                if r in op:
                    return False
        return True

    def idle(self, st, t_end: int, g, floor: int) -> None:
        """Refresh sequences while the channel idles before ``t_end``: each one that completes
        by ``t_end``; (from the start of the window) those the boundary at ``t_end`` would
        issue anyway (``owed >= floor``); and an owed one whose ``REFab`` has at least half of
        ``nRFC`` inside the window (it delays the next instruction by less than it hides)."""
        dev = self.dev
        dev.touch(st)
        ahead = self.pull_in * self.N
        rfc = dev.done[self.c_ref]
        while True:
            lo = max(st.last + dev.bus, dev.floor, st.next_ref - ahead)  # the last: owed is
            # above -pull_in from there on
            if lo >= t_end:
                return
            times = self._sequence(st, lo)
            owed = self.owed(st, t_end)
            if times[-1] + rfc > t_end and owed < floor and not (
                    owed >= 1 and 2 * (t_end - times[-1]) >= rfc):
                return  # it would delay the instruction dispatched at t_end
            dev._refresh(st, times[0], g)
            st.next_ref += self.N

    def _sequence(self, st, t: int) -> list:
        """Issue cycles of the commands of a refresh sequence from cycle ``t`` on ``st``
        (``MODARR`` in register mode, ``PREA`` per row buffer with open rows, ``REFab``),
        computed without issuing them."""
        dev = self.dev
        seq = []
        if st.mode == S.REGISTER_MODE:
            seq.append((self.c_modarr, 0))
        seq += [(self.c_prea, s) for s in range(dev.NS) if max(st.open[s]) >= 0]
        seq.append((self.c_ref, 0))
        done = []
        for c, sub in seq:
            lo = t
            for p, tp in done:
                v = tp + self.lat[p][c]
                if v > lo:
                    lo = v
            done.append((c, dev.earliest(st, c, 0, sub, lo)))
        return [x for _, x in done]

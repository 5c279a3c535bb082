"""Independent replay of a perf-simulator command log: every constraint of the standard, every pair.

The engine (:mod:`.engine`) schedules with compiled ready-time tables; this checker shares none of
that code. It reads the command log, expands each record to its channels, and

1. replays the row state of every bank (an ``ACT`` needs its banks closed, a column command needs
   its row open, ``REFab`` needs every bank closed) and the mode of every channel (each command in
   the mode the standard requires, starting in array mode; no mode switch inside a train);
2. for every timing row of the configured standard (:func:`pimgpt.core.dram.build_standard`),
   groups the commands by the node of the scope they
   touch (channel, bank group, bank, bank + row buffer), orders each group by issue cycle and checks
   each following command against the *latest* earlier preceding command of the group (the latest
   one is the binding one, so this checks every pair), vectorised with numpy;
3. checks the spacing inside each train (identical commands at stride ``g``) against every row
   relating the command to itself, the rolling ``nFAW`` window, and the refresh account of each
   channel (refreshes due minus issued within the standard's postponement and pull-in limits at
   every cycle: the average rate holds).

A log record is ``(cmd, ch_mask, footprint index, sub, row, first cycle, count, stride)``.
"""

from __future__ import annotations

import numpy as np

from pimgpt.core import dram as S
from pimgpt.core.config import HwConfig


class TimingViolation(AssertionError):
    """The command log breaks a constraint; the message lists the first violations."""


def _expand(log, channels: int) -> np.ndarray:
    """Records -> one structured row per (record, channel), ordered by channel, cycle, log order."""
    rec = np.array(log, dtype=np.int64).reshape(-1, 8)
    bits = (rec[:, 1:2] >> np.arange(channels)[None, :]) & 1
    r, ch = np.nonzero(bits)
    dt = np.dtype([("ch", "i8"), ("cmd", "i8"), ("fpi", "i8"), ("sub", "i8"), ("row", "i8"),
                   ("t0", "i8"), ("t1", "i8"), ("n", "i8"), ("g", "i8"), ("seq", "i8")])
    arr = np.zeros(len(r), dtype=dt)
    arr["ch"] = ch
    for k, name in ((0, "cmd"), (2, "fpi"), (3, "sub"), (4, "row"), (5, "t0"), (6, "n"),
                    (7, "g")):
        arr[name] = rec[r, k]
    arr["t1"] = arr["t0"] + (arr["n"] - 1) * arr["g"]
    arr["seq"] = r
    order = np.lexsort((arr["seq"], arr["t0"], arr["ch"]))
    return arr[order]


def _banks(level: int, fpi: int, banks: int, bpg: int) -> range:
    if level == S.CHANNEL:
        return range(banks)
    if level == S.BANKGROUP:
        return range(fpi * bpg, (fpi + 1) * bpg)
    return range(fpi, fpi + 1)


def check_log(log, hw: HwConfig, limit: int = 20) -> list[str]:
    """All violations (up to ``limit`` messages) of the command ``log`` on ``hw``.

    Parameters
    ----------
    log : list of tuple
        ``PerfResult.log`` of a run with ``log=True``.
    hw : HwConfig
        The hardware the log was produced for.
    limit : int
        Stop collecting after this many messages.

    Returns
    -------
    list of str
        Empty when the log is legal.
    """
    if not log:
        return []
    d = hw.dram
    nb, bpg = d.banks, d.banks // d.bank_groups
    subs = 2 if S.act_overlap(hw) else 1
    std = S.build_standard(hw)
    arr = _expand(log, d.channels)
    errors: list[str] = []

    def err(msg: str) -> bool:
        errors.append(msg)
        return len(errors) >= limit

    # ---- 1. row state ----------------------------------------------------------------------
    exp = _Expansion(arr, nb, bpg, subs)
    keys, e = exp.sorted("state")
    names = np.array(S.COMMANDS)[e["cmd"]]
    opens = np.isin(names, list(S.OPENS))
    closes = np.isin(names, list(S.CLOSES))
    needs = np.isin(names, list(S.NEEDS_OPEN_ROW))
    refs = names == "REFab"
    n = len(keys)
    pos = np.arange(n)
    seg_start = np.zeros(n, dtype=np.int64)
    if n:
        brk = np.concatenate(([True], keys[1:] != keys[:-1]))
        seg_start = np.maximum.accumulate(np.where(brk, pos, 0))
    event = opens | closes
    last_ev = np.maximum.accumulate(np.where(event, pos, -1)) if n else pos
    prev_ev = np.full(n, -1, dtype=np.int64)
    prev_ev[1:] = last_ev[:-1]
    prev_ev = np.where(prev_ev >= seg_start, prev_ev, -1)
    ev_state = np.where(opens, e["row"], -1)
    before = np.where(prev_ev >= 0, ev_state[np.maximum(prev_ev, 0)], -1)
    bank_of = keys // subs % nb
    checks = (
        (opens & (before >= 0), "row {b} still open"),
        (needs & (before != e["row"]), "row {r} not open (open: {b})"),
        (refs & (before >= 0), "banks not precharged (row {b} open)"),
    )
    for bad, text in checks:
        for k in np.nonzero(bad)[0][:limit]:
            msg = text.format(b=before[k], r=e["row"][k])
            if err(f"ch{e['ch'][k]} {names[k]}@{e['t0'][k]} bank {bank_of[k]}: {msg}"):
                return errors

    for msg in _check_modes(arr, std, limit):
        if err(msg):
            return errors

    # ---- 2./3. timing rows ---------------------------------------------------------------
    ncmd = len(S.COMMANDS)
    for row, lat in std.rows:
        pre = np.zeros(ncmd, bool)
        fol = np.zeros(ncmd, bool)
        pre[[S.CMD[c] for c in S.expand(row.preceding)]] = True
        fol[[S.CMD[c] for c in S.expand(row.following)]] = True
        if row.window:
            _check_window(arr, pre, fol, lat, row, err)
            if len(errors) >= limit:
                return errors
            continue
        # Intra-train spacing.
        same = pre[arr["cmd"]] & fol[arr["cmd"]] & (arr["n"] > 1) & (arr["g"] < lat)
        for e in arr[same][: limit]:
            if err(f"ch{e['ch']} train of {S.COMMANDS[e['cmd']]}@{e['t0']} stride {e['g']} < "
                   f"{row.latency}={lat} ({row.note or row.scope})"):
                return errors
        if lat == 0:
            continue
        keys, e = exp.sorted(row.scope, pre | fol)
        if not len(keys):
            continue
        is_p, is_f = pre[e["cmd"]], fol[e["cmd"]]
        big = int(max(arr["t1"].max(), 0)) + 4
        seg = np.concatenate(([0], np.cumsum(keys[1:] != keys[:-1])))
        vals = np.where(is_p, e["t1"], -1) + seg * big
        cum = np.maximum.accumulate(vals)
        prev = np.full(len(keys), -1, dtype=np.int64)
        same_seg = np.zeros(len(keys), bool)
        same_seg[1:] = seg[1:] == seg[:-1]
        prev[1:] = cum[:-1] - seg[1:] * big
        prev = np.where(same_seg, prev, -1)
        bad = is_f & (prev >= 0) & (e["t0"] - prev < lat)
        for k in np.nonzero(bad)[0][:limit]:
            if err(f"ch{e['ch'][k]} {S.COMMANDS[e['cmd'][k]]}@{e['t0'][k]} is "
                   f"{e['t0'][k] - prev[k]} after a preceding command of "
                   f"{'/'.join(row.preceding)} at {prev[k]}; needs {row.latency}={lat} "
                   f"({row.note or row.scope}, scope {row.scope})"):
                return errors

    for msg in _check_refresh(arr, hw, limit):
        if err(msg):
            return errors
    return errors


def _check_refresh(arr, hw: HwConfig, limit: int) -> list[str]:
    """The refresh account of every channel: with ``owed(t)`` = refreshes due by ``t`` (one per
    ``nREFI`` from power-up) minus ``REFab`` issued by ``t``, the standard's bounds
    ``-refresh_pull_in <= owed(t) <= refresh_postpone`` hold at every cycle up to the log's end
    (so the average rate holds and no refresh is postponed beyond the allowed count)."""
    std = S.standard_of(hw)
    postpone, pull_in = std.refresh_postpone, std.refresh_pull_in
    nrefi = hw.timing["nREFI"]
    end = int(arr["t1"].max())
    ref = S.CMD["REFab"]
    out: list[str] = []
    for ch in np.unique(arr["ch"]):
        t = np.sort(arr["t0"][(arr["ch"] == ch) & (arr["cmd"] == ref)])
        k = np.arange(1, len(t) + 1)
        # Refresh k is issued no later than the due cycle of refresh k + postpone, and the
        # refreshes missing at the end (due by then, beyond the allowed count) are late too.
        late = t > (k + postpone) * nrefi
        missing = end // nrefi - postpone - len(t)
        early = t < (k - pull_in) * nrefi
        if late.any() or missing > 0:
            j = int(np.argmax(late)) if late.any() else len(t)
            out.append(f"ch{ch}: REFab {j + 1} "
                       + (f"at {int(t[j])}" if j < len(t) else "missing by the end")
                       + f": more than {postpone} refreshes postponed (due every nREFI = "
                       f"{nrefi}; refresh {j + 1} is due by {(j + 1 + postpone) * nrefi})")
        if early.any():
            j = int(np.argmax(early))
            out.append(f"ch{ch}: REFab {j + 1} at {int(t[j])}: more than {pull_in} refreshes "
                       f"pulled in (not before {(j + 1 - pull_in) * nrefi})")
        if len(out) >= limit:
            break
    return out[:limit]


def _check_modes(arr, std, limit: int) -> list[str]:
    """Mode replay: every command in the mode it needs; no switch inside a train."""
    out: list[str] = []
    mode_of = np.array(std.mode_of)
    switch = np.full(len(S.COMMANDS), S.ANY_MODE)
    for mode, code in enumerate(std.switch_to):
        if code >= 0:
            switch[code] = mode
    cmd = arr["cmd"]
    is_sw = switch[cmd] != S.ANY_MODE
    need = mode_of[cmd]
    if not (need.any() or is_sw.any()):
        return out
    for ch in np.unique(arr["ch"]):
        sel = np.nonzero(arr["ch"] == ch)[0]  # in issue order (the array is sorted)
        sw = sel[is_sw[sel]]
        pos = np.arange(len(sel))
        last = np.maximum.accumulate(np.where(is_sw[sel], pos, -1))
        prev = np.concatenate(([-1], last[:-1]))  # latest switch strictly before each entry
        mode = np.where(prev >= 0, switch[cmd[sel[np.maximum(prev, 0)]]], S.ARRAY_MODE)
        bad = (need[sel] != S.ANY_MODE) & (need[sel] != mode)
        for k in np.nonzero(bad)[0][:limit]:
            e = arr[sel[k]]
            out.append(f"ch{ch} {S.COMMANDS[e['cmd']]}@{e['t0']} needs "
                       f"{S.MODE_NAMES[need[sel[k]]]} mode, channel is in "
                       f"{S.MODE_NAMES[mode[k]]} mode")
        if len(sw):
            t_sw = np.sort(arr["t0"][sw])
            trains = sel[arr["n"][sel] > 1]
            inside = (np.searchsorted(t_sw, arr["t1"][trains], "left")
                      - np.searchsorted(t_sw, arr["t0"][trains], "right"))
            for k in np.nonzero(inside > 0)[0][:limit]:
                e = arr[trains[k]]
                out.append(f"ch{ch} mode switch inside the train of "
                           f"{S.COMMANDS[e['cmd']]}@{e['t0']}..{e['t1']}")
        if len(out) >= limit:
            break
    return out[:limit]


class _Expansion:
    """Entries expanded to the scope nodes they touch, vectorised (built once per log)."""

    def __init__(self, arr, nb, bpg, subs):
        self.arr, self.nb, self.bpg, self.subs = arr, nb, bpg, subs
        self.nbg = nb // bpg
        fp = np.array([S.FOOTPRINT[c] for c in S.COMMANDS])[arr["cmd"]]
        self.has_sub = np.array([c in S.HAS_SUB for c in S.COMMANDS])[arr["cmd"]]
        self.fp, self.fpi = fp, arr["fpi"]
        self.cache = {}
        self.cols = {k: np.ascontiguousarray(arr[k]) for k in arr.dtype.names}

    def _rep(self, counts):
        idx = np.repeat(np.arange(len(counts)), counts)
        starts = np.cumsum(counts) - counts
        off = np.arange(len(idx)) - np.repeat(starts, counts)
        return idx, off

    def _nodes(self, scope):
        if scope in self.cache:
            return self.cache[scope]
        arr, fp, fpi, nb, bpg = self.arr, self.fp, self.fpi, self.nb, self.bpg
        ch = arr["ch"]
        if scope == "channel":
            out = (ch.copy(), np.arange(len(arr)))
        elif scope == "bankgroup":
            counts = np.where(fp == S.CHANNEL, self.nbg, 1)
            idx, off = self._rep(counts)
            f = fp[idx]
            g = np.where(f == S.CHANNEL, off, np.where(f == S.BANKGROUP, fpi[idx], fpi[idx] // bpg))
            out = (ch[idx] * self.nbg + g, idx)
        else:
            counts = np.where(fp == S.CHANNEL, nb, np.where(fp == S.BANKGROUP, bpg, 1))
            idx, off = self._rep(counts)
            f = fp[idx]
            b = np.where(f == S.CHANNEL, off, np.where(f == S.BANKGROUP, fpi[idx] * bpg + off,
                                                       fpi[idx]))
            # Row buffer: the command's own for row-buffer scopes, every buffer otherwise.
            own = self.has_sub[idx] & (scope in ("subarray", "state"))
            counts2 = np.where(own, 1, self.subs)
            idx2, off2 = self._rep(counts2)
            sub = np.where(own[idx2], arr["sub"][idx[idx2]], off2)
            out = ((ch[idx[idx2]] * nb + b[idx2]) * self.subs + sub, idx[idx2])
        self.cache[scope] = out
        return out

    def sorted(self, scope, cmd_mask=None):
        """Keys and entries of ``scope`` (restricted to commands in ``cmd_mask``), ordered by
        (node, issue cycle, log order); the entries' fields are gathered when first read."""
        key = ("sorted", scope)
        if key not in self.cache:
            keys, idx = self._nodes(scope)
            # ``seq`` order is the array order within equal (node, cycle): a stable sort keeps
            # it, and a selection of the sorted entries keeps their order.
            order = np.lexsort((self.cols["t0"][idx], keys))
            self.cache[key] = keys[order], idx[order]
        keys, idx = self.cache[key]
        if cmd_mask is not None:
            keep = cmd_mask[self.cols["cmd"][idx]]
            keys, idx = keys[keep], idx[keep]
        return keys, _Fields(self.cols, idx)


class _Fields:
    """The fields of the entries ``idx`` of ``cols``, each gathered on first access."""

    def __init__(self, cols: dict, idx: np.ndarray):
        self.cols, self.idx, self.got = cols, idx, {}

    def __getitem__(self, name: str) -> np.ndarray:
        v = self.got.get(name)
        if v is None:
            v = self.got[name] = self.cols[name][self.idx]
        return v


def _check_window(arr, pre, fol, lat, row, err) -> None:
    """Rolling window: a following command needs ``row.window - weight + 1`` earlier weighted
    preceding entries to be at least ``lat`` old."""
    size = row.window
    for ch in np.unique(arr["ch"]):
        sel = arr[(arr["ch"] == ch) & (pre[arr["cmd"]] | fol[arr["cmd"]])]
        hist: list[int] = []
        for e in sel:
            name = S.COMMANDS[int(e["cmd"])]
            w = S.WINDOW_WEIGHT.get(name, 1)
            if fol[e["cmd"]]:
                need = size - w + 1
                if len(hist) >= need and e["t0"] - hist[-need] < lat:
                    if err(f"ch{ch} {name}@{e['t0']}: {row.latency}={lat} window of {size} "
                           f"broken (entry at {hist[-need]})"):
                        return
            if pre[e["cmd"]]:
                hist.extend([int(e["t0"])] * w)


def assert_legal(log, hw: HwConfig) -> None:
    """Raise :class:`TimingViolation` listing the first violations of ``log``, if any."""
    errors = check_log(log, hw)
    if errors:
        raise TimingViolation(f"{len(errors)} violation(s): " + "; ".join(errors[:5]))

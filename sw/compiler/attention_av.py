r"""``o = p . V`` of one attention layer (the last bullet of :mod:`.attention`'s notes): the
accumulators, buffer loads and ``MAC``\ s of each head group, and the reads into ``o``."""

from __future__ import annotations

from pimgpt.core.isa import Op
from pimgpt.sw.mapper import COL, Region, v_head_units, v_load_tokens, v_local

__all__ = ["AvState"]


class AvState:
    """``o = p . V`` of one layer, head group by head group (see the module notes)."""

    def __init__(self, low, layer: int, vreg: Region, npad: int, stride: int,
                 query: bool = False):
        """``query``: only asked (:meth:`first_written`), never run: it takes no item id, so
        trial recordings keep the ids they would have had."""
        self.low, self.vreg, self.npad, self.stride = low, vreg, npad, stride
        self.layer = layer
        self.group = low.cfg.group
        self.T = vreg.vec_len  # tokens per block
        self.nl = low.v_dims // low.S  # local indices of the K/V dimensions
        self.blocks = vreg.n_vectors // low.v_dims
        self.id = None if query else low._new_id()
        S, kv = low.S, low.cfg.kv_dim
        self.masks = [low._mask(kv - i * S) for i in range(self.nl)]
        self.cm = low.v_channel_major
        # heads still to be done per accumulator item: it is complete after the last (the
        # channel-major items are a head group's own: complete after its run)
        self.pending: dict = {}
        for a in range(0 if self.cm else low.H):
            for i in self._locals(a):
                key = self._key(a, i)
                self.pending[key] = self.pending.get(key, 0) + 1

    def _key(self, a: int, i: int) -> tuple:
        """The accumulator item of query head ``a`` at local index ``i``: one per local index
        (multi-head), one per local index and query head of a group (grouped-query)."""
        return (self.id, i) if self.group == 1 else (self.id, i, a % self.group)

    def _span(self, a: int) -> tuple[int, int]:
        """The K/V dimensions ``[lo, hi)`` query head ``a`` attends with."""
        g = a // self.group
        return g * self.low.dh, (g + 1) * self.low.dh

    def _locals(self, a: int) -> range:
        lo, hi = self._span(a)
        return range(lo // self.low.S, (hi - 1) // self.low.S + 1)

    def _chans(self, a: int, i: int) -> list[int]:
        """Channels whose banks at local index ``i`` hold dimensions of head ``a``'s K/V head."""
        low = self.low
        lo, hi = self._span(a)
        return [c for c in range(low.C)
                if lo < i * low.S + (c + 1) * low.B and i * low.S + c * low.B < hi]

    def _slot(self, a: int, i: int, slots: int) -> int:
        """Global-buffer slice of query head ``a``'s probabilities for local index ``i``."""
        return (i * self.group + a % self.group) % slots

    def run(self, heads: list[int]) -> None:
        """``p . V`` of ``heads`` over every block of the context."""
        if self.cm:
            self._run_channel_major(heads)
            return
        low = self.low
        b, pool = low.b, low.pool
        b.tag = f"L{self.layer}.attn.av"
        cb = self.T // COL
        slots = max(1, low.G // COL // cb)  # block slices a global buffer holds side by side
        pairs = [(a, i, sum(1 << c for c in self._chans(a, i)))
                 for a in heads for i in self._locals(a)]
        for t0 in range(0, self.npad, self.T):
            ncols = (min(self.npad, t0 + self.T) - t0) // COL
            blk = t0 // self.T
            if not low.heads_fit_banks:
                for a, i, _ in pairs:
                    self._fallback(a, i, blk, t0, ncols)
                continue
            k = 0
            while k < len(pairs):  # buffer loads for a batch whose slices do not collide...
                used: set = set()
                batch = []
                while k < len(pairs):
                    a, i, chm = pairs[k]
                    keys = {(c, self._slot(a, i, slots)) for c in range(low.C) if chm >> c & 1}
                    if used & keys:
                        break
                    used |= keys
                    batch.append(pairs[k])
                    k += 1
                for a, i, chm in batch:
                    b.emit(Op.WR_GB, ch_mask=chm, gb_col=self._slot(a, i, slots) * cb,
                           ncols=ncols, src=low._score_at(a, self.stride) + t0)
                # ... then their MACs: the query heads that read the same V vector (one K/V
                # head's group) go row piece by row piece, so a vector that straddles two rows
                # opens each once
                reads: dict = {}
                for a, i, chm in batch:
                    reads.setdefault((i, chm), []).append(a)
                for (i, chm), group in reads.items():
                    accs = self._acquire_all(group, i)
                    local = v_local(low.v_parts, self.blocks, blk, i)
                    segs = self.vreg.segments(local, 0, ncols * COL)
                    for row, col, nc, gb_col in segs:
                        for a, acc in zip(group, accs, strict=True):
                            b.emit(Op.MAC_ABK, ch_mask=chm, row=row, col=col, ncols=nc,
                                   gb_col=self._slot(a, i, slots) * cb + gb_col, acc=acc)
        complete = []
        for a, i, _ in pairs:
            key = self._key(a, i)
            self.pending[key] -= 1
            if not self.pending[key]:
                complete.append(key)
        pool.done(complete)
        pool.flush(complete)  # read here, not among the next group's score reads

    def _run_channel_major(self, heads: list[int]) -> None:
        """``p . V`` of ``heads`` with a channel-major V cache (:func:`pimgpt.sw.mapper.v_vector`).

        Per load (:func:`pimgpt.sw.mapper.v_load_tokens`: several V-cache blocks): one buffer
        load per head and channel, into the slice of the head's rank among the heads of that
        channel, then block by block (a row each), per local index one ``MAC_ABK`` per slice
        over the channels whose unit there belongs to one of ``heads`` (in batches of the slices
        a global buffer holds, when a channel's heads do not fit it at once). The group's items
        (one per local index: its channels' accumulators) are complete after the last block and
        read straight into ``o``, channel by channel (consecutive local indices of a channel in
        one ``RD_MAC``); spills go to ``ov``.
        """
        low = self.low
        b, pool = low.b, low.pool
        b.tag = f"L{self.layer}.attn.av"
        load = v_load_tokens(low.cfg, low.hw, low.mm.context)
        cl = load // COL  # columns of a slice
        slots = max(1, low.G // COL // cl)
        macs: dict = {}  # local index -> {slice: channel mask}
        loads: dict = {}  # (head, slice) -> channel mask
        dims: dict = {}  # local index -> {channel: first K/V dimension of its unit there}
        for a in heads:
            for j, (c, i, k) in enumerate(v_head_units(low.cfg, low.hw, a)):
                macs.setdefault(i, {})
                macs[i][k] = macs[i].get(k, 0) | 1 << c
                loads[a, k] = loads.get((a, k), 0) | 1 << c
                dims.setdefault(i, {})[c] = a * low.dh + j * low.B
        specs = {}
        for i in sorted(macs):
            parts = tuple((1 << c, low.P.o + dims[i][c]) for c in sorted(dims[i]))
            mask = sum(m for m, _dst in parts)
            specs[i] = ((self.id, i, heads[0]), mask, low.P.ov + i * low.S, parts)
        top = max(k for _a, k in loads) + 1
        for g0 in range(0, self.npad, load):
            g1 = min(self.npad, g0 + load)
            for k0 in range(0, top, slots):  # slices k0 .. k0 + slots - 1 at a time
                for (a, k), chm in loads.items():
                    if k0 <= k < k0 + slots:
                        b.emit(Op.WR_GB, ch_mask=chm, gb_col=(k - k0) * cl,
                               ncols=(g1 - g0) // COL, src=low._score_at(a, self.stride) + g0)
                batches = {i: [(k, chm) for k, chm in sorted(macs[i].items())
                               if k0 <= k < k0 + slots] for i in specs}
                for t0 in range(g0, g1, self.T):  # the load's blocks, a row each
                    ncols = (min(g1, t0 + self.T) - t0) // COL
                    shift = (t0 - g0) // COL
                    for i, spec in specs.items():
                        batch = batches[i]
                        if not batch:
                            continue
                        pool.acquire([spec])
                        acc = pool.acc(spec[0])
                        local = v_local(low.v_parts, self.blocks, t0 // self.T, i)
                        for row, col, nc, gb_col in self.vreg.segments(local, 0, ncols * COL):
                            for k, chm in batch:
                                b.emit(Op.MAC_ABK, ch_mask=chm, row=row, col=col, ncols=nc,
                                       gb_col=(k - k0) * cl + shift + gb_col, acc=acc)
        keys = [spec[0] for spec in specs.values()]
        pool.done(keys)
        pool.flush(keys)

    def first_written(self, heads: list[int]) -> int:
        """The lowest word of ``o`` (offset) that ``p . V`` of ``heads``, run last, writes: its
        items' final reads (with the earlier heads that share them). 0 for the grouped-query
        fallback, whose ``finish`` moves every head into ``o``."""
        low = self.low
        if self.cm:  # the group's own items, read unit by unit into o
            return min(heads) * low.dh
        if self.group > 1 and not low.heads_fit_banks:
            return 0
        first = low.d
        for a in heads:
            for i in self._locals(a):
                _key, mask, dst, *parts = self._spec(a, i)
                first = min([first] + [at - low.P.o for _m, at in (parts[0] if parts
                                                                     else ((mask, dst),))])
        return first

    def _acquire_all(self, heads: list[int], i: int) -> list[int]:
        """Accumulators of the items of ``heads`` at local index ``i``, resident together when
        they fit the accumulators (else one after another: correct, more spills)."""
        pool = self.low.pool
        if len(heads) == 1 or len(heads) > pool.A:
            return [self._acquire(a, i) for a in heads]
        pool.acquire([self._spec(a, i) for a in heads])
        return [pool.acc(self._key(a, i)) for a in heads]

    def _acquire(self, a: int, i: int) -> int:
        self.low.pool.acquire([self._spec(a, i)])
        return self.low.pool.acc(self._key(a, i))

    def _spec(self, a: int, i: int) -> tuple:
        """The accumulator pool's spec of the item of head ``a`` at local index ``i``."""
        low = self.low
        key = self._key(a, i)
        if self.group == 1:
            return (key, self.masks[i], low.P.o + i * low.S)
        r = a % self.group
        spec = (key, self.masks[i], low.P.ov + r * low.v_dims + i * low.S)
        if low.heads_fit_banks:  # final read: each K/V head's channels into its slice of o
            parts = []
            for g in range(i * low.S // low.dh, low.cfg.n_kv_head):
                head = g * self.group + r
                chans = self._chans(head, i)
                if not chans:
                    break
                mask = sum(1 << c for c in chans)
                first = i * low.S + chans[0] * low.B  # K/V dimension of the first bank
                parts.append((mask, low.P.o + head * low.dh + first - g * low.dh))
            spec += (tuple(parts),)
        return spec

    def _fallback(self, a: int, i: int, blk: int, t0: int, ncols: int) -> None:
        """Heads narrower than a channel: per channel, the head's probabilities into the buffer
        and ``MAC_SBK`` on its banks."""
        low = self.low
        b = low.b
        lo, hi = self._span(a)
        segs = self.vreg.segments(v_local(low.v_parts, self.blocks, blk, i), 0, ncols * COL)
        acc = self._acquire(a, i)
        for c in self._chans(a, i):
            banks = [bank for bank in range(low.B) if lo <= i * low.S + c * low.B + bank < hi]
            b.emit(Op.WR_GB, ch_mask=1 << c, gb_col=0, ncols=ncols,
                   src=low._score_at(a, self.stride) + t0)
            for bank in banks:
                for row, col, nc, gb_col in segs:
                    b.emit(Op.MAC_SBK, ch_mask=1 << c, bank=bank, row=row, col=col, ncols=nc,
                           gb_col=gb_col, acc=acc)

    def finish(self) -> None:
        """Read ``o`` (every item is complete); the grouped-query fallback moves each query
        head's slice from the buffer by query head of a group into ``o``."""
        low = self.low
        low.pool.flush()
        if self.group == 1 or low.heads_fit_banks:
            return
        dh = low.dh
        for a in range(low.H):
            lo, _ = self._span(a)
            low.b.emit(Op.VMOV, dst=low.P.o + a * dh,
                       src=low.P.ov + a % self.group * low.v_dims + lo, n=dh)

"""Lowering of attention: K/V appends, ``q . K^T``, softmax and ``p . V`` (``docs/dataflow.md``).

* ``bf16(k)`` is appended with ``WR_VEC`` (K cache, one vector per token) and ``bf16(v)`` with
  ``WR_ELEM`` (V cache transposed in token blocks, :func:`pimgpt.sw.mapper.v_block_tokens`).
* ``q . K^T``: ``WR_GB`` of each chunk of ``q``, then for each local token ``i`` (a row stream of
  the K cache) a ``MAC_ABK`` over each head's columns into the head's accumulator; a head that
  straddles a chunk boundary keeps accumulating in the next chunk's pass. Each head's scores are
  read into its own row; then ``VSCALE`` by ``fp32(1/sqrt(d_head))``, ``SOFTMAX`` and a ``VFILL``
  of zeros up to the next column boundary.
* ``p . V``: model dimension ``m`` lies in bank slot ``m % slots``, local index ``m // slots`` of
  every token block; when ``d_head % banks == 0`` each channel's banks at one local index hold
  dimensions of one head, so a channel's global buffer holds, side by side, one block's
  probabilities of the heads of its local indices, and one ``MAC_ABK`` per (block, local index)
  serves the channels of a head into the local index's accumulator. The blocks are visited in
  order (rows in address order); the accumulators of the local indices are read at the end.
  Heads narrower than a channel use a correct fallback: per-channel buffer loads and ``MAC_SBK``
  per bank.
"""

from __future__ import annotations

from pimgpt.core.isa import Op
from pimgpt.sw.mapper import COL, Region, round_up


class AttentionLowering:
    """Attention of one layer; mixed into :class:`.lowering.Lowering` (uses its state)."""

    def attention(self, layer: int, pos: int) -> None:
        """Append K and V of position ``pos``, then ``o = attention(q, K, V)`` of every head,
        in the order of the schedule's head blocks."""
        b, mm, d, P = self.b, self.mm, self.d, self.P
        kreg = mm.region(f"h.{layer}.k_cache")
        vreg = mm.region(f"h.{layer}.v_cache")
        k, v = P.qkv + d, P.qkv + 2 * d
        npos = pos + 1
        npad = round_up(npos, COL)
        block = vreg.vec_len
        # q's first chunk into the global buffers before the K/V appends: it joins the
        # register-mode visit that read the last q/k/v outputs.
        _, start, size = kreg.chunks()[0]
        b.tag = f"L{layer}.attn.score"
        b.emit(Op.WR_GB, ch_mask=self.all_ch, gb_col=0, ncols=size // COL, src=P.qkv + start)
        self._gb_q = start  # the q chunk the global buffers hold
        b.tag = f"L{layer}.attn.kv"
        b.emit(Op.WR_VEC, src=k, n=d, vec=pos, **kreg.isa())
        b.emit(Op.WR_ELEM, src=v, n=d, vec=pos // block * self.v_dims, elem=pos % block,
               **vreg.isa())
        blocks = self.schedule.head_blocks(self.H)
        av = _AvState(self, layer, vreg, npad)
        if self.schedule.av_after_each_block and npad <= block:
            # One V block: every score first (one q load), then each head block's softmaxes and
            # its p . V, so the vector unit's softmaxes of a block overlap the previous block's
            # p . V on the PIM.
            self._scores(layer, kreg, list(range(self.H)), npos)
            for heads in blocks:
                for a in heads:
                    self._softmax(layer, a, npos, npad)
                av.run(heads)
        else:
            # Several V blocks: p . V walks every block's rows once, after all softmaxes. The
            # scores go in passes that open each K row once (one pass per q chunk; halves when
            # q is one chunk), so the softmaxes of a pass run while the PIM computes the next.
            if self.schedule.av_after_each_block:
                blocks = self._score_passes(kreg)
            later = {heads[0]: heads for heads in blocks[2:]}
            for heads in blocks[:2]:
                self._scores(layer, kreg, heads, npos)
            for a in range(self.H):
                if a + 2 in later:
                    self._scores(layer, kreg, later[a + 2], npos)
                self._softmax(layer, a, npos, npad)
            av.run(list(range(self.H)))
        av.finish()

    def _score_passes(self, kreg: Region) -> list[list[int]]:
        """Heads by the q chunk they start in (two halves when there is one chunk)."""
        starts = [s for _, s, _ in kreg.chunks()]
        passes: dict[int, list[int]] = {}
        for a in range(self.H):
            first = max(s for s in starts if s <= a * self.dh)
            passes.setdefault(first, []).append(a)
        out = list(passes.values())
        if len(out) == 1 and self.H > 1:
            out = [list(range(self.H // 2)), list(range(self.H // 2, self.H))]
        return out

    def _scores(self, layer: int, kreg: Region, heads: list[int], npos: int) -> None:
        """Scores of ``heads``: row ``a`` of the score buffer, token ``t`` at word ``t``."""
        b, S, P, pool = self.b, self.S, self.P, self.pool
        b.tag = f"L{layer}.attn.score"
        n_tok_local = -(-npos // S)
        sid = self._new_id()
        ends = {a: (a + 1) * self.dh for a in heads}
        for _t, start, size in kreg.chunks():
            parts = [(a, max(a * self.dh, start), min(ends[a], start + size)) for a in heads]
            parts = [p for p in parts if p[1] < p[2]]
            if not parts:
                continue
            if self._gb_q != start:
                b.emit(Op.WR_GB, ch_mask=self.all_ch, gb_col=0, ncols=size // COL,
                       src=P.qkv + start)
                self._gb_q = start
            for i in range(n_tok_local):
                mask = self._mask(npos - i * S)
                for j0 in range(0, len(parts), pool.A):
                    batch = parts[j0:j0 + pool.A]
                    pool.acquire([((sid, a, i), mask, P.score_addr[a] + i * S)
                                  for a, _, _ in batch])
                    for a, lo, hi in batch:
                        acc = pool.acc((sid, a, i))
                        for row, col, ncols, gb_col in kreg.segments(i, lo, hi):
                            b.emit(Op.MAC_ABK, ch_mask=mask, row=row, col=col, ncols=ncols,
                                   gb_col=gb_col, acc=acc)
                        if hi == ends[a]:
                            pool.done([(sid, a, i)])
        pool.flush()

    def _softmax(self, layer: int, a: int, npos: int, npad: int) -> None:
        b = self.b
        b.tag = f"L{layer}.attn.softmax"
        base = self.P.score_addr[a]
        b.emit(Op.VSCALE, dst=base, a=base, n=npos, scale_f32=self.scale)
        b.emit(Op.SOFTMAX, dst=base, src=base, n=npos)
        if npad > npos:
            b.emit(Op.VFILL, dst=base + npos, n=npad - npos, value_f32=0)


class _AvState:
    """``o = p . V`` of one layer, head group by head group (see the module notes)."""

    def __init__(self, low, layer: int, vreg: Region, npad: int):
        self.low, self.vreg, self.npad = low, vreg, npad
        self.layer = layer
        self.T = vreg.vec_len  # tokens per block
        self.nl = low.v_dims // low.S  # local indices of the model dimensions
        self.id = low._new_id()
        S, d = low.S, low.d
        self.masks = [low._mask(d - i * S) for i in range(self.nl)]
        # heads still to be done per local index: its accumulator is complete after the last
        self.pending = [0] * self.nl
        for a in range(low.H):
            for i in self._locals(a):
                self.pending[i] += 1

    def _locals(self, a: int) -> range:
        low = self.low
        return range(a * low.dh // low.S, ((a + 1) * low.dh - 1) // low.S + 1)

    def _chans(self, a: int, i: int) -> list[int]:
        """Channels whose banks at local index ``i`` hold dimensions of head ``a``."""
        low = self.low
        lo, hi = a * low.dh, (a + 1) * low.dh
        return [c for c in range(low.C)
                if lo < i * low.S + (c + 1) * low.B and i * low.S + c * low.B < hi]

    def run(self, heads: list[int]) -> None:
        """``p . V`` of ``heads`` over every block of the context."""
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
                    keys = {(c, i % slots) for c in range(low.C) if chm >> c & 1}
                    if used & keys:
                        break
                    used |= keys
                    batch.append(pairs[k])
                    k += 1
                for a, i, chm in batch:
                    b.emit(Op.WR_GB, ch_mask=chm, gb_col=i % slots * cb, ncols=ncols,
                           src=low.P.score_addr[a] + t0)
                for _a, i, chm in batch:  # ... then their MACs
                    acc = self._acquire(i)
                    for row, col, nc, gb_col in self.vreg.segments(blk * self.nl + i, 0,
                                                                    ncols * COL):
                        b.emit(Op.MAC_ABK, ch_mask=chm, row=row, col=col, ncols=nc,
                               gb_col=i % slots * cb + gb_col, acc=acc)
        for _a, i, _ in pairs:
            self.pending[i] -= 1
            if not self.pending[i]:
                pool.done([(self.id, i)])

    def _acquire(self, i: int) -> int:
        low = self.low
        key = (self.id, i)
        low.pool.acquire([(key, self.masks[i], low.P.o + i * low.S)])
        return low.pool.acc(key)

    def _fallback(self, a: int, i: int, blk: int, t0: int, ncols: int) -> None:
        """Heads narrower than a channel: per channel, the head's probabilities into the buffer
        and ``MAC_SBK`` on its banks."""
        low = self.low
        b = low.b
        lo, hi = a * low.dh, (a + 1) * low.dh
        segs = self.vreg.segments(blk * self.nl + i, 0, ncols * COL)
        acc = self._acquire(i)
        for c in self._chans(a, i):
            banks = [bank for bank in range(low.B) if lo <= i * low.S + c * low.B + bank < hi]
            b.emit(Op.WR_GB, ch_mask=1 << c, gb_col=0, ncols=ncols,
                   src=low.P.score_addr[a] + t0)
            for bank in banks:
                for row, col, nc, gb_col in segs:
                    b.emit(Op.MAC_SBK, ch_mask=1 << c, bank=bank, row=row, col=col, ncols=nc,
                           gb_col=gb_col, acc=acc)

    def finish(self) -> None:
        """Read ``o`` (every local index is complete)."""
        self.low.pool.flush()

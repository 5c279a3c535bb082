"""Lowering of attention: K/V appends, ``q . K^T``, softmax and ``p . V`` (``docs/dataflow.md``).

* ``bf16(k)`` is appended with ``WR_VEC`` (K cache, one vector per token) and ``bf16(v)`` with
  ``WR_ELEM`` (V cache transposed: element ``pos`` of the vectors of every model dimension).
* ``q . K^T``: ``WR_GB`` of each chunk of ``q``, then for each local token ``i`` and each head a
  ``MAC_ABK`` over the head's columns of the token vectors and a ``RD_MAC`` (a head that straddles
  a chunk boundary gives two partial scores, added by ``VADD``). ``VSCALE`` by
  ``fp32(1/sqrt(d_head))``, ``SOFTMAX`` and a ``VFILL`` of zeros up to the next column boundary.
* ``p . V``: the V cache's vector ``m`` (model dimension) lies in bank slot ``m % slots``, so at
  local index ``i`` channel ``c`` holds dimensions ``i*slots + c*banks ..`` of one head when
  ``d_head % banks == 0``: each channel's GB gets that head's probabilities (``WR_GB`` with a
  one-head channel mask, skipped when already loaded), then one ``MAC_ABK`` serves all channels.
  Otherwise (heads narrower than a channel) a correct fallback reloads the GB per head group and
  uses ``MAC_SBK`` per bank.
"""

from __future__ import annotations

from pimgpt.core.isa import Op
from pimgpt.sw.mapper import COL, Region, round_up


def _popcount(x: int) -> int:
    return bin(x).count("1")


class AttentionLowering:
    """Attention of one layer; mixed into :class:`.lowering.Lowering` (uses its state)."""

    def attention(self, layer: int, pos: int) -> None:
        """Append K and V of position ``pos``, then ``o = attention(q, K, V)`` of every head.

        The schedule's head blocks set the order of the scores; with ``av_per_head`` (and heads
        at least a channel wide) each head's ``p . V`` follows its softmax, and the scores of a
        later block are recorded two heads ahead of its first softmax.
        """
        b, mm, d, P = self.b, self.mm, self.d, self.P
        kreg = mm.region(f"h.{layer}.k_cache")
        vreg = mm.region(f"h.{layer}.v_cache")
        k, v = P.qkv + d, P.qkv + 2 * d
        npos = pos + 1
        npad = round_up(npos, COL)
        b.tag = f"L{layer}.attn.kv"
        b.emit(Op.WR_VEC, src=k, n=d, vec=pos, **kreg.isa())
        b.emit(Op.WR_ELEM, src=v, n=d, vec=0, elem=pos, **vreg.isa())
        blocks = self.schedule.head_blocks(self.H)
        if not (self.schedule.av_per_head and self.heads_fit_banks):
            for heads in blocks:
                self._scores(layer, kreg, heads, npos)
            for a in range(self.H):
                self._softmax(layer, a, npos, npad)
            b.tag = f"L{layer}.attn.av"
            self._av_all(vreg, npad)
            return
        vchunks = [(t, s, min(n, npad - s)) for t, s, n in vreg.chunks() if s < npad]
        later = {heads[0]: heads for heads in blocks[2:]}
        for heads in blocks[:2]:
            self._scores(layer, kreg, heads, npos)
        for a in range(self.H):
            if a + 2 in later:  # scores of head a+2.. run on the PIM during softmax a
                self._scores(layer, kreg, later[a + 2], npos)
            self._softmax(layer, a, npos, npad)
            self._av_head(layer, vreg, a, vchunks)

    def _scores(self, layer: int, kreg: Region, heads: list[int], npos: int) -> None:
        b, S, P = self.b, self.S, self.P
        b.tag = f"L{layer}.attn.score"
        q = P.qkv
        n_tok_local = -(-npos // S)
        for t, start, size in kreg.chunks():
            parts = [(a, k_, lo, hi) for a in heads
                     for k_, (tt, lo, hi) in enumerate(P.head_parts[a]) if tt == t]
            if not parts:
                continue
            b.emit(Op.WR_GB, ch_mask=self.all_ch, gb_col=0, ncols=size // COL, src=q + start)
            for i in range(n_tok_local):
                mask = self._mask(npos - i * S)
                for a, k_, lo, hi in parts:
                    for row, col, ncols, gb_col in kreg.segments(i, lo, hi):
                        b.emit(Op.MAC_ABK, ch_mask=mask, row=row, col=col, ncols=ncols,
                               gb_col=gb_col)
                    b.emit(Op.RD_MAC, ch_mask=mask, dst=P.score_addr[a][k_] + i * S)

    def _softmax(self, layer: int, a: int, npos: int, npad: int) -> None:
        b = self.b
        b.tag = f"L{layer}.attn.softmax"
        base = self.P.score_addr[a][0]
        for extra in self.P.score_addr[a][1:]:
            b.emit(Op.VADD, dst=base, a=base, b=extra, n=npos)
        b.emit(Op.VSCALE, dst=base, a=base, n=npos, scale_f32=self.scale)
        b.emit(Op.SOFTMAX, dst=base, src=base, n=npos)
        if npad > npos:
            b.emit(Op.VFILL, dst=base + npos, n=npad - npos, value_f32=0)

    def _p_src(self, head: int, start: int) -> int:
        return self.P.score_addr[head][0] + start

    def _av_head(self, layer: int, vreg: Region, a: int, vchunks: list) -> None:
        """``o[a*dh : (a+1)*dh] = p_a . V``: only the channels holding head ``a``'s dimensions."""
        b, S, B, dh, P = self.b, self.S, self.B, self.dh, self.P
        b.tag = f"L{layer}.attn.av"
        nvc = len(vchunks)
        lo_dim, hi_dim = a * dh, (a + 1) * dh
        for t_idx, (_t, start, size) in enumerate(vchunks):
            for i in range(lo_dim // S, (hi_dim - 1) // S + 1):
                chans = [c for c in range(self.C) if lo_dim <= i * S + c * B < hi_dim]
                chm = sum(1 << c for c in chans)
                dim0 = i * S + chans[0] * B
                b.emit(Op.WR_GB, ch_mask=chm, gb_col=0, ncols=size // COL,
                       src=self._p_src(a, start))
                for row, col, ncols, gb_col in vreg.segments(i, start, start + size):
                    b.emit(Op.MAC_ABK, ch_mask=chm, row=row, col=col, ncols=ncols,
                           gb_col=gb_col)
                dst = (P.o + dim0 if nvc == 1 else
                       P.o_part + a * nvc * dh + t_idx * dh + dim0 - lo_dim)
                b.emit(Op.RD_MAC, ch_mask=chm, dst=dst)
        if nvc > 1:
            b.emit(Op.VREDUCE, dst=P.o + lo_dim, src=P.o_part + a * nvc * dh, n=dh, k=nvc)

    def _av_all(self, vreg: Region, npad: int) -> None:
        """``o = p . V`` of every head, local vector by local vector."""
        b, d, S, P = self.b, self.d, self.S, self.P
        vchunks = [(t, s, min(n, npad - s)) for t, s, n in vreg.chunks() if s < npad]
        target = P.o if len(vchunks) == 1 else P.o_part
        for t_idx, (_t, start, size) in enumerate(vchunks):
            loaded: dict[int, int] = {}  # channel -> head whose probabilities its GB holds
            for i in range(vreg.n_local):
                mask = self._mask(d - i * S)
                if self.heads_fit_banks:
                    self._av_uniform(vreg, i, start, size, mask, loaded)
                else:
                    self._av_fallback(vreg, i, start, size, loaded)
                b.emit(Op.RD_MAC, ch_mask=mask, dst=target + t_idx * d + i * S)
        if len(vchunks) > 1:
            b.emit(Op.VREDUCE, dst=P.o, src=P.o_part, n=d, k=len(vchunks))

    def _av_uniform(self, vreg, i, start, size, mask, loaded) -> None:
        """Every channel's banks at local ``i`` hold dimensions of one head."""
        b = self.b
        groups: dict[int, int] = {}
        for c in range(_popcount(mask)):
            head = (i * self.S + c * self.B) // self.dh
            if loaded.get(c) != head:
                groups[head] = groups.get(head, 0) | (1 << c)
                loaded[c] = head
        for head, chm in groups.items():
            b.emit(Op.WR_GB, ch_mask=chm, gb_col=0, ncols=size // COL,
                   src=self._p_src(head, start))
        for row, col, ncols, gb_col in vreg.segments(i, start, start + size):
            b.emit(Op.MAC_ABK, ch_mask=mask, row=row, col=col, ncols=ncols, gb_col=gb_col)

    def _av_fallback(self, vreg, i, start, size, loaded) -> None:
        """Heads narrower than a channel: per-channel GB reloads and single-bank MACs."""
        b, d = self.b, self.d
        segs = vreg.segments(i, start, start + size)
        for c in range(self.C):
            first = i * self.S + c * self.B
            if first >= d:
                break
            banks_by_head: dict[int, list[int]] = {}
            for bank in range(self.B):
                dim = first + bank
                if dim < d:
                    banks_by_head.setdefault(dim // self.dh, []).append(bank)
            for head, banks in banks_by_head.items():
                if loaded.get(c) != head:
                    b.emit(Op.WR_GB, ch_mask=1 << c, gb_col=0, ncols=size // COL,
                           src=self._p_src(head, start))
                    loaded[c] = head
                for bank in banks:
                    for row, col, ncols, gb_col in segs:
                        b.emit(Op.MAC_SBK, ch_mask=1 << c, bank=bank, row=row, col=col,
                               ncols=ncols, gb_col=gb_col)

"""Lowering of attention: K/V appends, ``q . K^T``, softmax and ``p . V`` (``docs/dataflow.md``).

* ``bf16(k)`` is appended with ``WR_VEC`` (K cache: one vector per token, or per token and pass
  of K/V heads with grouped-query attention, :func:`pimgpt.sw.mapper.k_layout`) and ``bf16(v)``
  with ``WR_ELEM`` (V cache transposed in token blocks, :func:`pimgpt.sw.mapper.v_block_tokens`).
* ``q . K^T`` goes in *windows*: a window is a piece of ``q`` in the global buffers (``WR_GB``)
  and the K elements its heads meet, within one chunk of one pass's K vectors. Multi-head
  attention: one window per chunk of ``q`` (which is also the chunk of ``K``); grouped-query
  attention: one window per pass, holding the queries of all the pass's query heads side by side.
  For each local token ``i`` (a row stream of the K cache) a ``MAC_ABK`` per head over its K/V
  head's columns into the head's accumulator; a head that straddles a chunk boundary keeps
  accumulating in the next window. The query heads of one K/V head read the same columns one
  after another, so each K row is opened once per token for the whole group. Each head's scores
  are read into its own row; the rows of all heads follow one another at the step's stride
  (``npos`` rounded up to whole banks and columns, :meth:`.plan.ScratchPlan.score_stride`).
* Softmax, per group of heads whose scores are complete (a head block, or a score pass): one
  ``VSCALE`` by ``fp32(1/sqrt(d_head))`` over the group's rows (none when that is a power of
  two: the image's query weights and biases carry it, ``MemoryMap.q_scale``), a ``VFILL`` of
  ``-inf`` over each row's pad ``[npos, stride)`` (garbage: K vectors not written yet, or words
  the reads did not reach), then one ``SOFTMAX`` of ``rows`` = the group's heads.
  ``exp(-inf) = +0`` exactly and adding ``+0`` to the non-negative exponentials is exact, so each
  row's probabilities are
  bit for bit those of a softmax over its ``npos`` scores, and the pads come out ``+0``, which
  ``p . V`` reads up to the next column boundary.
* ``p . V``: K/V dimension ``m`` lies in bank slot ``m % slots``, local index ``m // slots`` of
  every token block; when ``d_head % banks == 0`` each channel's banks at one local index hold
  dimensions of one K/V head, so a channel's global buffer holds, side by side, one block's
  probabilities of every query head its local indices serve, and one ``MAC_ABK`` per (block,
  local index, query head) serves the channels of the K/V head. Multi-head attention: one
  accumulator per local index, read into ``o`` in one piece. Grouped-query attention: one
  accumulator per (local index, query head of the group); its final read goes in parts, the
  channels of each K/V head into that query head's slice of ``o``. The blocks are visited in
  order (rows in address order). Heads narrower than a channel use a correct fallback:
  per-channel buffer loads and ``MAC_SBK`` per bank (grouped-query: read into a buffer by query
  head of the group, then one ``VMOV`` per query head into ``o``).
"""

from __future__ import annotations

import copy

from pimgpt.core.isa import Op, f32_bits
from pimgpt.sw.mapper import (
    COL,
    Region,
    k_chunk_heads,
    round_up,
    v_head_units,
    v_local,
    v_vector,
)

from .attention_av import AvState

_NEG_INF = f32_bits(float("-inf"))  # the pads of the score rows: exp(-inf) = +0 exactly


class AttentionLowering:
    """Attention of one layer; mixed into :class:`.lowering.Lowering` (uses its state)."""

    def attention(self, layer: int, pos: int, proj, v_proj=None) -> None:
        """Append K and V of position ``pos``, then ``o = attention(q, K, V)`` of every head,
        in the order of the schedule's head blocks, and the attention projection:
        ``proj(after_first)`` emits it, calling ``after_first`` (when not ``None``) after its
        first input chunk's MACs (:meth:`.lowering.Lowering.gemv`). ``v_proj``: emits the
        value projection (split off the QKV GEMV), which then runs after the first head groups'
        scores, while the vector unit computes the first softmaxes."""
        b, mm, d, P, dh = self.b, self.mm, self.d, self.P, self.dh
        kl = self.k_layout
        kreg = mm.region(f"h.{layer}.k_cache")
        vreg = mm.region(f"h.{layer}.v_cache")
        k, v = P.qkv + d, P.qkv + d + self.cfg.kv_dim
        npos = pos + 1
        block = vreg.vec_len
        # The first window's queries into the global buffers before the K/V appends: it joins
        # the register-mode visit that read the last q/k/v outputs.
        b.tag = f"L{layer}.attn.score"
        self._gb_q = None
        self._load_q(self._score_plan(kreg)[0])
        b.tag = f"L{layer}.attn.kv"
        width = kl.heads * dh
        for p in range(kl.passes):
            b.emit(Op.WR_VEC, src=k + p * width, n=width, vec=p * kl.per_pass + pos,
                   **kreg.isa())
        # V's append goes after the first scores (p . V is the first to read it): the PIM
        # writes it while the vector unit computes the first softmaxes.
        blocks, kv, S, B = vreg.n_vectors // self.v_dims, self.cfg.kv_dim, self.S, self.B
        blk = pos // block
        if self.v_channel_major:  # one run of vectors per unit (mapper.v_vector)
            self._v_append = [
                {"src": v + m, "n": B, "elem": pos % block,
                 "vec": v_local(self.v_parts, blocks, blk, vec // S) * S + vec % S,
                 **vreg.isa()}
                for m in range(0, kv, B) for vec in [v_vector(self.cfg, self.hw, m)]]
        else:
            self._v_append = [
                {"src": v + lo * S, "n": min(hi * S, kv) - lo * S, "elem": pos % block,
                 "vec": v_local(self.v_parts, blocks, blk, lo) * S, **vreg.isa()}
                for lo, hi in self.v_parts]  # one run of vectors per V part (mapper.v_parts)
        self._groups_of(layer, kreg, vreg, npos, proj, v_proj)
        _key, groups, defer, merge, unnorm = self._groups
        self._pipeline(layer, kreg, vreg, npos, groups, proj, defer, v_proj, merge, unnorm)

    def _groups_of(self, layer: int, kreg: Region, vreg: Region, npos: int, proj,
                   v_proj=None) -> None:
        """The schedule's partition of the heads for a step attending ``npos`` tokens, whether
        the projection's first chunk goes under the last group's softmaxes, and whether one
        ``p . V`` of every head follows the softmaxes: of the candidates (each partition; with
        a last group that leaves the first chunk of ``o`` final, also that partition deferring
        its last ``p . V``; each partition of 2 to ``max_merged_groups`` groups also with one
        ``p . V``, :meth:`_merged`), the one whose trial recording the schedule's cost model
        finds fastest (the same for every layer of the step: decided at the first one, for
        either place of the value projection). ``self._groups``: ``(key, groups, defer,
        merge, unnorm)``; ``unnorm``: the softmaxes are ``SOFTMAXU`` and the product by
        ``1/sum`` follows ``p . V`` (:meth:`_normalise_o`), where the configuration allows it
        (:func:`late_norm_allowed`), the chosen candidate does not defer (the projection's
        first chunk would read ``o`` before the product) and its trial with them is faster by
        ``late_norm_margin``."""
        key = (npos, v_proj is not None)
        chosen = self._group_choice
        if key in chosen:
            self._groups = (key, *chosen[key])
            return
        # A head group of whole K-vector chunks opens K and V rows no other group opens.
        align = k_chunk_heads(self.cfg, self.hw)
        parts = self.schedule.head_groups(self.H, self.cfg.group, align)
        if self.v_channel_major and len(parts) > 1:  # a schedule that splits heads (pipelined)
            parts += [g for g in self._balanced_groups() if g not in parts]
        cands = [(groups, False, False) for groups in parts]
        chunks = self.mm.region(f"h.{layer}.attn.c_proj.weight").chunks()
        if len(chunks) > 1:
            av = AvState(self, layer, vreg, round_up(npos, COL), self.P.score_stride(npos),
                         query=True)
            cands += [(groups, True, False) for groups, *_ in cands
                      if len(groups) > 1 and av.first_written(groups[-1]) >= chunks[0][2]]
        cands += [(groups, False, True) for groups in parts
                  if 1 < len(groups) <= self.schedule.max_merged_groups]
        # With deferring candidates the trials include the projection: deferring moves its
        # first chunk's PIM time under the last softmaxes.
        trial_proj = proj if any(defer for _, defer, _ in cands) else None
        best, time = cands[0], None
        if len(cands) > 1:
            times = [self._trial_time(lambda g=groups, d=defer, mg=merge: self._pipeline(
                layer, kreg, vreg, npos, g, trial_proj, d, v_proj, mg))
                for groups, defer, merge in cands]
            k = min(range(len(cands)), key=times.__getitem__)
            best, time = cands[k], times[k]
        groups, defer, merge = best
        unnorm, force = False, self.schedule.late_norm
        if not defer and force is not False and late_norm_allowed(self.hw, npos):
            def trial(u: bool) -> float:
                return self._trial_time(lambda: self._pipeline(
                    layer, kreg, vreg, npos, groups, trial_proj, defer, v_proj, merge, u))
            if force:
                unnorm = True
            else:
                base = trial(False) if time is None else time
                unnorm = trial(True) < base * (1 - self.schedule.late_norm_margin)
        chosen[key] = (*best, unnorm)
        self._groups = (key, *chosen[key])

    def _trial_time(self, record) -> float:
        """The schedule's estimate (tCK) of what ``record()`` records, then undone: the
        recording, the current tag, the item ids, the global buffers' queries and the
        accumulator pool are as before."""
        b, pool = self.b, self.pool
        mark = len(b.program), b.tag, self._ids, self._gb_q
        state = copy.deepcopy((pool.items, pool.slots, pool.clock))
        record()
        time = self.schedule.estimate(b.program[mark[0]:])
        del b.program[mark[0]:], b.tags[mark[0]:]
        b.tag, self._ids, self._gb_q = mark[1:]
        pool.items, pool.slots, pool.clock = state
        return time

    def _balanced_groups(self) -> list[list[list[int]]]:
        """Head partitions for a channel-major V cache (``mapper.v_vector``), whose channels
        hold consecutive heads: a group of consecutive heads would run its ``p . V`` on a few
        channels. Here head ``a`` joins group ``floor(n * offset / U)``, ``offset`` being the
        local index of its first unit within its channel (``U`` per channel), so every channel
        gives each group about ``U / n`` units; 2 .. 4 groups, each also reversed."""
        U = self.v_dims // self.S
        offset = [v_head_units(self.cfg, self.hw, a)[0][1] for a in range(self.H)]
        out = []
        for n in range(2, min(4, self.H) + 1):
            groups = [[a for a in range(self.H) if offset[a] * n // U == g] for g in range(n)]
            groups = [g for g in groups if g]
            for cand in (groups, groups[::-1]):
                if len(cand) > 1 and cand not in out:
                    out.append(cand)
        return out

    def _pipeline(self, layer: int, kreg: Region, vreg: Region, npos: int,
                  groups: list[list[int]], proj=None, defer: bool = False,
                  v_proj=None, merge: bool = False, unnorm: bool = False) -> None:
        """Scores, softmaxes and ``p . V`` of the head groups ``groups``, software-pipelined:
        PIM  S0 S1 AV0 S2 AV1 ..., vector unit  SM0 SM1 SM2 ...: the softmaxes of group g+1 run
        while the PIM computes ``p . V`` of group g and the scores of group g+2; then the
        projection ``proj(after_first)`` if given. ``defer``: the last group's ``p . V`` goes
        after the projection's first input chunk (``o`` there is final without it), so the PIM
        streams that chunk while the vector unit computes the last softmaxes. ``v_proj``: the
        value projection's PIM work, recorded after the first group's scores (it runs under
        the first softmaxes); it returns its vector-unit work, recorded behind the first
        softmaxes and followed by the V append. ``unnorm`` (never with ``defer``): the
        softmaxes are ``SOFTMAXU`` and the product by ``1/sum`` follows ``p . V``
        (:meth:`_normalise_o`)."""
        npad = round_up(npos, COL)
        stride = self.P.score_stride(npos)
        order = [a for heads in groups for a in heads]
        self._rows = {a: r for r, a in enumerate(order)} if self.v_channel_major else {}
        self._unnorm = unnorm
        av = AvState(self, layer, vreg, npad, stride)
        if merge:
            self._merged(layer, kreg, npos, stride, groups, av, v_proj)
            self._normalise_o(layer)
            if proj is not None:
                proj(None)
            self._gb_q = None
            return
        finish = None
        for g, heads in enumerate(groups[:2]):
            self._scores(layer, kreg, heads, npos, stride)
            if g == 0 and v_proj is not None:
                finish = v_proj()
                self._gb_q = None  # its loads overwrote the global buffers
        if v_proj is None:
            self._append_v(layer)
        for g, heads in enumerate(groups):
            self._softmax(layer, heads, npos, stride)
            if g == 0 and finish is not None:
                for fin in finish:  # behind the first softmaxes in the vector unit's order
                    fin()
                self._append_v(layer)
            if defer and g == len(groups) - 1:
                break
            av.run(heads)
            self._gb_q = None  # p . V overwrote the global buffers
            if g + 2 < len(groups):
                self._scores(layer, kreg, groups[g + 2], npos, stride)

        def last() -> None:
            av.run(groups[-1])
            av.finish()

        if not defer:
            av.finish()
            self._normalise_o(layer)
        if proj is not None:
            proj(last if defer else None)
        elif defer:
            last()
        self._gb_q = None  # the projection overwrote the global buffers

    def _merged(self, layer: int, kreg: Region, npos: int, stride: int, groups, av,
                v_proj) -> None:
        """Scores and softmaxes by head groups, then one ``p . V`` of every head: PIM
        ``S0 S1 .. Sn-1 AV``, vector unit ``SM0 .. SMn-1``; each group's softmaxes run under the
        next group's scores, so only the last group's are exposed, and ``V`` rows open once, as
        with one group. ``v_proj`` as in :meth:`_pipeline`."""
        finish = None
        for g, heads in enumerate(groups):
            self._scores(layer, kreg, heads, npos, stride)
            if g == 0 and v_proj is not None:
                finish = v_proj()
                self._gb_q = None  # its loads overwrote the global buffers
            if g == 0:
                continue
            self._softmax(layer, groups[g - 1], npos, stride)
            if g == 1 and finish is not None:
                for fin in finish:  # behind the first softmaxes in the vector unit's order
                    fin()
                self._append_v(layer)
        if v_proj is None:
            self._append_v(layer)
        self._softmax(layer, groups[-1], npos, stride)
        av.run([a for heads in groups for a in heads])
        av.finish()

    def _append_v(self, layer: int) -> None:
        self.b.tag = f"L{layer}.attn.kv"
        for args in self._v_append:
            self.b.emit(Op.WR_ELEM, **args)

    # ---- q . K^T ---------------------------------------------------------------------------
    def _score_plan(self, kreg: Region) -> list[tuple]:
        """The windows of ``q . K^T`` over all heads, in order (the same for every layer).

        Returns
        -------
        list of (int, int, int, int, list)
            ``(local0, start, wlo, whi, items)``: the K vectors' first local index (the pass),
            the K chunk's first element, the window ``q[wlo:whi]`` and its items ``(a, lo, hi,
            qlo, last)``: head ``a`` meets K elements ``[lo, hi)`` of the chunk with the queries
            from ``qlo``; ``last`` when that ends the head.
        """
        plan = getattr(self, "_splan", None)
        if plan is not None:
            return plan
        kl, dh, group, G = self.k_layout, self.dh, self.cfg.group, self.G
        plan = []
        for p in range(kl.passes):
            for _t, start, size in kreg.chunks():
                items = []
                for a in range(self.H):
                    g = a // group
                    if g // kl.heads != p:
                        continue
                    koff = (g - p * kl.heads) * dh
                    lo, hi = max(koff, start), min(koff + dh, start + size)
                    if lo < hi:
                        items.append((a, lo, hi, a * dh + lo - koff, hi == koff + dh))
                window: list = []
                for it in items:
                    span = window + [it]
                    if window and (max(w[3] + w[2] - w[1] for w in span)
                                   - min(w[3] for w in span)) > G:
                        plan.append(self._window(p, start, window))
                        window = []
                    window.append(it)
                if window:
                    plan.append(self._window(p, start, window))
        self._splan = plan
        return plan

    def _window(self, p: int, start: int, items: list) -> tuple:
        wlo = min(it[3] for it in items)
        whi = max(it[3] + it[2] - it[1] for it in items)
        return (p * self.k_layout.per_pass // self.S, start, wlo, whi, items)

    def _load_q(self, window: tuple) -> None:
        """``WR_GB`` of a window's queries, unless the global buffers hold them already."""
        wlo, whi = window[2], window[3]
        if self._gb_q != (wlo, whi):
            self.b.emit(Op.WR_GB, ch_mask=self.all_ch, gb_col=0, ncols=(whi - wlo) // COL,
                        src=self.P.qkv + wlo)
            self._gb_q = (wlo, whi)

    def _scores(self, layer: int, kreg: Region, heads: list[int], npos: int,
                stride: int) -> None:
        """Scores of ``heads``: row ``a`` of the score buffer (at ``stride``), token ``t`` at
        word ``t``. The read of local token ``i`` writes whole channels, up to word
        ``round_up(npos, banks) <= stride``: it never reaches the next head's row."""
        b, S, pool = self.b, self.S, self.pool
        b.tag = f"L{layer}.attn.score"
        n_tok_local = -(-npos // S)
        sid = self._new_id()
        chosen = set(heads)
        for window in self._score_plan(kreg):
            local0, start, wlo, _whi, items = window
            items = [it for it in items if it[0] in chosen]
            if not items:
                continue
            self._load_q(window)
            for i in range(n_tok_local):
                mask = self._mask(npos - i * S)
                assert i * S + mask.bit_count() * self.B <= stride, "score read past its row"
                for j0 in range(0, len(items), pool.A):
                    batch = items[j0:j0 + pool.A]
                    pool.acquire([((sid, a, i), mask, self._score_at(a, stride) + i * S)
                                  for a, *_ in batch])
                    for a, lo, hi, qlo, last in batch:
                        acc = pool.acc((sid, a, i))
                        shift = (qlo - wlo - (lo - start)) // COL
                        for row, col, ncols, gb_col in kreg.segments(local0 + i, lo, hi):
                            b.emit(Op.MAC_ABK, ch_mask=mask, row=row, col=col, ncols=ncols,
                                   gb_col=gb_col + shift, acc=acc)
                        if last:
                            pool.done([(sid, a, i)])
        pool.flush()

    def _score_at(self, a: int, stride: int) -> int:
        """Address of head ``a``'s row of scores: the rows go in the order of the step's head
        groups (``self._rows``), so each group's rows are contiguous (one ``SOFTMAX``)."""
        return self.P.score_at(self._rows.get(a, a), stride)

    def _softmax(self, layer: int, heads: list[int], npos: int, stride: int) -> None:
        """Probabilities of ``heads`` (whose scores are complete): per run of consecutive heads,
        one ``VSCALE``, ``-inf`` over each row's pad, one ``SOFTMAX`` of all the run's rows of
        ``stride`` (see the module notes: the pads add exactly nothing)."""
        b = self.b
        b.tag = f"L{layer}.attn.softmax"
        for first, rows in _runs([self._rows.get(a, a) for a in heads]):
            base = self.P.score_at(first, stride)
            if self.mm.q_scale == 1.0:  # else the image's q weights carry the scale
                b.emit(Op.VSCALE, dst=base, a=base, n=rows * stride, scale_f32=self.scale)
            if stride > npos:
                for r in range(rows):
                    b.emit(Op.VFILL, dst=base + r * stride + npos, n=stride - npos,
                           value_f32=_NEG_INF)
            if self._unnorm:
                b.emit(Op.SOFTMAXU, dst=base, src=base, n=stride, rows=rows,
                       rcp=self.P.tmp + first * self.dh, rseg=self.dh)
            else:
                b.emit(Op.SOFTMAX, dst=base, src=base, n=stride, rows=rows)

    def _norm_runs(self) -> list[tuple[int, int, int]]:
        """``(first head, its row, heads)``: runs of consecutive heads whose rows of scores
        are consecutive too (one ``VMUL`` of :meth:`_normalise_o` each)."""
        runs: list = []
        for a in range(self.H):
            r = self._rows.get(a, a)
            if runs and runs[-1][0] + runs[-1][2] == a and runs[-1][1] + runs[-1][2] == r:
                runs[-1][2] += 1
            else:
                runs.append([a, r, 1])
        return [tuple(run) for run in runs]

    def _normalise_o(self, layer: int) -> None:
        """After ``SOFTMAXU``: ``o`` of each head times its row's ``1/sum``, one ``VMUL`` per
        run of :meth:`_norm_runs` (SOFTMAX's last product, moved past ``p . V``:
        ``docs/numerics.md``, "Softmax")."""
        if not self._unnorm:
            return
        b, P, dh = self.b, self.P, self.dh
        b.tag = f"L{layer}.attn.softmax"
        for a, r, k in self._norm_runs():
            b.emit(Op.VMUL, dst=P.o + a * dh, a=P.o + a * dh, b=P.tmp + r * dh, n=k * dh)


def late_norm_allowed(hw, npos: int) -> bool:
    """Whether a step attending ``npos`` positions may take ``SOFTMAXU`` and
    :meth:`AttentionLowering._normalise_o`: ``asic.late_softmax_norm`` and rows longer than two
    vector registers (shorter ones keep the probabilities in registers, where the product costs
    one multiply a register, less than the ``VMUL`` after ``p . V``)."""
    return hw.asic.late_softmax_norm and npos > 2 * hw.asic.vector_lanes


def _runs(heads: list[int]) -> list[tuple[int, int]]:
    """``heads`` as runs ``(first, count)`` of consecutive heads, in order."""
    runs: list = []
    for a in heads:
        if runs and runs[-1][0] + runs[-1][1] == a:
            runs[-1][1] += 1
        else:
            runs.append([a, 1])
    return [(first, n) for first, n in runs]

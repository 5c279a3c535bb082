"""Lowering: one GPT step (``docs/dataflow.md``) as pimgpt instructions, in program order.

* **GEMV** ``y = linear(x, W)``: for each input chunk (``gb_elems`` elements) one ``WR_GB``
  broadcasts ``bf16(x[chunk])`` to every channel's global buffer; each local vector ``i`` (``i = 0
  .. n_local-1``, vectors ``i*slots ..``) streams its DRAM row pieces with ``MAC_ABK`` into its own
  accumulator, chunk after chunk, and is read into the scratchpad with ``RD_MAC`` when its last
  chunk is done (groups of local vectors in consecutive accumulators are read together); the bias
  is a ``VADD``.
* **Attention**: :mod:`.attention`. The QKV GEMV may stop after the keys: its value outputs'
  GEMV then runs after the first head group's scores, under the first softmaxes, where the
  schedule's cost model finds the step faster (:meth:`Lowering._qkv_attention`).
* LayerNorm, GELU, softmax, residual adds are the vector unit's ops; the LM head is a GEMV over
  ``wte`` followed by ``ARGMAX`` and ``OUT``.

Region data are chunk-major and the GEMV loops run chunk-outer, local-vector-inner, so the MACs
of a GEMV walk each bank's rows in address order: every row is opened once and streamed whole.
All banks of all channels work on every ``MAC_ABK`` (only the last local vector of a region may
leave trailing channels idle; their accumulators are not read).

The :class:`.schedule.Schedule` decides how finely the work is split (output groups of a GEMV,
head blocks) and the recording is handed to it to place the ``SYNC``\\ s.

Parameters (biases, LayerNorm gains and shifts) stay resident in the scratchpad when they fit
(:class:`.plan.ScratchPlan`): :meth:`Lowering.preamble` loads them once per generation, before the
first step. Otherwise each layer's are loaded (``RD_VEC``) with the PIM work of the preceding GEMV,
so that they need no extra ``SYNC``.
"""

from __future__ import annotations

import math

import numpy as np

from pimgpt.core.config import HwConfig
from pimgpt.core.isa import FLAG_VEC_FROM_REG, Op, f32_bits
from pimgpt.core.rope import rope_table
from pimgpt.sw.mapper import (
    COL,
    MemoryMap,
    Region,
    k_layout,
    v_channel_major,
    v_dims,
    v_parts,
)
from pimgpt.sw.models import ModelConfig, folds_norm

from .accum import AccPool
from .attention import AttentionLowering
from .plan import ScratchPlan
from .program import PREAMBLE_TAG, TOKEN_REG, Recorder
from .schedule import Schedule


class Lowering(AttentionLowering):
    """Records model steps as instructions (no ``SYNC``) into :attr:`b`, a :class:`.Recorder`.

    Parameters
    ----------
    cfg, hw, mm : ModelConfig, HwConfig, MemoryMap
    schedule : Schedule
        Decides how finely GEMVs and attention are split.
    """

    def __init__(self, cfg: ModelConfig, hw: HwConfig, mm: MemoryMap, schedule: Schedule):
        self.cfg, self.hw, self.mm, self.schedule = cfg, hw, mm, schedule
        dram = hw.dram
        self.C, self.B, self.S, self.G = dram.channels, dram.banks, dram.slots, dram.gb_elems
        self.all_ch = (1 << self.C) - 1
        self.b = Recorder()
        self.d, self.dh, self.H = cfg.d_model, cfg.d_head, cfg.n_head
        self.eps = f32_bits(cfg.ln_eps)
        self.scale = f32_bits(np.float32(1.0 / math.sqrt(self.dh)))
        self.heads_fit_banks = self.dh % self.B == 0
        self.v_dims = v_dims(cfg, hw)
        self.v_parts = v_parts(cfg, hw)
        self.v_channel_major = v_channel_major(cfg, hw)
        self.k_layout = k_layout(cfg, hw, mm.context)
        self.P = ScratchPlan(cfg, hw, mm)
        self.inv_freq = cfg.rope_inv_freq()
        self.pool = AccPool(self.b, dram.accumulators, self.B)
        self._ids = 0
        self._rows: dict = {}  # head -> its row of scores, when not its index (attention.py)
        self._unnorm = False  # the layer's softmaxes are SOFTMAXU (attention.py)
        self._gb_q = None  # the window of queries the global buffers hold (attention.py)
        # per (positions attended, value projection late): the head groups chosen (attention.py)
        self._group_choice: dict = {}
        self._v_late = None  # (positions attended, whether the value projection goes late)
        self._groups = None  # the attention's plan: (key, groups, defer, merge, unnorm)
        self.fold_norms = folds_norm(cfg)
        # A residual projection (attention, MLP) reads a tail group only where the residual
        # stream is the next GEMV's input as it is (a folded RMSNorm): that GEMV's first input
        # chunk loads while the tail streams. Before a LayerNorm, whose statistics need every
        # output, the tail's register-mode visit buys only the bulk's residual add. Measured,
        # with the tail and without: gpt2-small ctx 128 132.47 / 132.18 us, gpt2-large 819.8 /
        # 816.6, gpt2-xl ctx 1024 1807.3 / 1805.1; llama-3.2-1b ctx 128 617.6 / 618.9.
        self.residual_tail = cfg.norm == "rmsnorm" and self.fold_norms

    # ---- helpers -------------------------------------------------------------------------
    def _mask(self, remaining: int) -> int:
        """Channels holding any of the next ``remaining`` vectors of a local index."""
        nch = min(self.C, -(-remaining // self.B))
        return (1 << nch) - 1

    def _new_id(self) -> int:
        """A fresh id for the accumulator items of one GEMV or attention phase."""
        self._ids += 1
        return self._ids

    def _param(self, name: str) -> int:
        """Scratchpad address of the parameter vector ``name`` (checkpoint name)."""
        return self.P.params[name]

    def _rd_vec(self, name: str) -> None:
        """Load the parameter vector ``name`` into its scratchpad words: one ``RD_VEC`` per
        piece, the pieces in different channels (:func:`pimgpt.sw.mapper.piece_index`), so the
        loads run side by side."""
        dst = self._param(name)
        for region, index, lo, n in self.mm.pieces(name):
            self.b.emit(Op.RD_VEC, dst=dst + lo, n=n, vec=index, **region.isa())

    def preamble(self) -> None:
        """Load the resident parameters (once per generation, before the first step)."""
        self.b.tag = PREAMBLE_TAG
        for name in self.P.params:
            if name in self.P.resident:
                self._rd_vec(name)

    def _prefetch(self, names) -> None:
        """Load parameters that are not resident (per layer, with earlier PIM work); names the
        model lacks (biases, LayerNorm shifts of an RMSNorm) are skipped."""
        for name in names:
            if name in self.P.params and name not in self.P.resident:
                self._rd_vec(name)

    def _norm_params(self, prefix: str) -> tuple:
        """Parameter names of the norm ``prefix`` that the vector unit reads (gain, and the
        shift of a LayerNorm that is not folded into its GEMV; nothing for a folded RMSNorm,
        whose gain is in the GEMV's weights)."""
        if self.cfg.norm == "layernorm" and not self._folded(prefix):
            return (prefix + ".weight", prefix + ".bias")
        if self.cfg.norm == "rmsnorm" and self._folded(prefix):
            return ()
        return (prefix + ".weight",)

    def _folded(self, prefix: str) -> bool:
        """Whether the norm ``prefix`` is folded into the GEMV it feeds (``ln_1``, ``ln_2``;
        :func:`~pimgpt.sw.models.folds_norm`)."""
        return self.fold_norms and prefix.startswith("h.")

    def _norm(self, prefix: str, src: int, dst: int) -> int:
        """``dst = norm(src)`` with the parameters of ``prefix`` (LayerNorm or RMSNorm); returns
        where the GEMV it feeds reads its input. A folded LayerNorm only centres and scales
        (``LNCENTRE``): the GEMV it feeds finishes it; a folded RMSNorm emits nothing: its gain is
        in the weights (:func:`~pimgpt.sw.models.folded_gain_weight`), the GEMV reads ``src``."""
        W = self._param
        if self._folded(prefix) and self.cfg.norm == "rmsnorm":
            return src
        if self._folded(prefix):
            self.b.emit(Op.LNCENTRE, dst=dst, src=src, gamma=W(prefix + ".weight"), n=self.d)
        elif self.cfg.norm == "layernorm":
            self.b.emit(Op.LAYERNORM, dst=dst, src=src, gamma=W(prefix + ".weight"),
                        beta=W(prefix + ".bias"), n=self.d, eps_f32=self.eps)
        else:
            self.b.emit(Op.RMSNORM, dst=dst, src=src, gamma=W(prefix + ".weight"), n=self.d,
                        eps_f32=self.eps)
        return dst

    # ---- GEMV ----------------------------------------------------------------------------
    def gemv(self, region: Region, x: int, dst: int, n_out: int, bias: int | None = None,
             prefetch: tuple = (), post=None, feeds: Region | None = None,
             per_input: int = 1, folded: int | None = None,
             groups: list | None = None, after_first=None, behind_load=None,
             part: tuple[int, int] | None = None, finish: list | None = None,
             tail: bool = True) -> None:
        """``dst = dot(bf16(x), region vectors) (+ bias)``, then ``post(lo, n)`` per output group.

        Chunk-outer: one ``WR_GB`` per input chunk; each local vector accumulates all its chunks
        in one accumulator (:class:`.accum.AccPool`), in batches of at most ``accumulators``
        local vectors (spilled and restored exactly when there are more). Successive chunks
        visit the batches in alternating directions, so the batches at the turn stay in their
        accumulators, and the last chunk runs forwards: each output group of the schedule is
        read, biased and post-processed as soon as its MACs are done (aligned with the input
        chunks of ``feeds``, the region of the GEMV that consumes the outputs, ``per_input``
        outputs per element of its input: 2 for SwiGLU's gate and up). ``groups``: the output
        groups ``[(i0, i1), ...]`` of local vectors (default: the schedule's; ``tail``: with a
        short tail group where the schedule splits one off, :attr:`residual_tail`).

        ``folded``: the address of the residual stream whose folded norm ``x`` is (``x`` from
        ``LNCENTRE``, or an RMSNorm's ``VMUL`` by the gain): ``LNRSTD`` / ``RMSRSTD`` runs on the
        vector unit behind the first load, and each output group is finished with ``VMADS``
        (``y = acc * rstd + bias``, the bias holding a LayerNorm's folded shift) instead of the
        bias ``VADD``, or without biases ``VMULS`` (``y = acc * rstd``).

        ``after_first``: called after the first chunk's MACs when there are several chunks
        (the attention projection: the last head group's ``p . V``, which writes only inputs
        of later chunks).

        ``behind_load``: called after the first load (and the folded norm's statistics), for
        vector-unit work that the GEMV's outputs do not need yet: it runs while the banks
        stream (the RoPE table of the step, before the first layer's QKV).

        ``part``: only the local vectors ``[i0, i1)`` (outputs ``[i0 * slots, i1 * slots)``):
        a GEMV split in two (the value projection after the first softmax, :mod:`.attention`);
        a part after the first uses the folded norm's statistics the first part computed.
        ``finish``: a list that receives each output group's vector-unit work (bias, norm
        scale, ``post``) as a function to call later, instead of emitting it (the caller places
        it in the vector unit's order).
        """
        b, S, pool = self.b, self.S, self.pool
        self._prefetch(prefetch)
        chunks = region.chunks()
        k = len(chunks)
        nl = region.n_local
        p0, p1 = part if part is not None else (0, nl)
        masks = [self._mask(n_out - i * S) for i in range(nl)]
        align = None
        if feeds is not None and len(feeds.chunks()) > 1:
            align = -(-feeds.chunks()[0][2] * per_input // S)
        if groups is None:  # without post-processing the results are only read: one group
            groups = [(p0 + i0, p0 + i1) for i0, i1 in
                      (self.schedule.gemv_groups(p1 - p0, align, tail)
                       if bias is not None or post is not None
                       else [(0, p1 - p0)])]
        batches = [(j0, min(i1, j0 + pool.A)) for i0, i1 in groups
                   for j0 in range(i0, i1, pool.A)]
        gid = self._new_id()
        tag = b.tag
        for t_idx, (_t, start, size) in enumerate(chunks):
            if t_idx == 1 and after_first is not None:
                after_first()  # before the load: it may write this chunk's inputs
                b.tag = tag
            b.emit(Op.WR_GB, ch_mask=self.all_ch, gb_col=0, ncols=size // COL, src=x + start)
            if folded is not None and t_idx == 0 and p0 == 0:
                # behind the load, so that it runs while the banks stream the GEMV
                if self.cfg.norm == "rmsnorm":
                    b.emit(Op.RMSRSTD, dst=self.P.stat, src=folded, n=self.d, eps_f32=self.eps)
                else:
                    b.emit(Op.LNRSTD, dst=self.P.stat, src=folded, tmp=self.P.tmp, n=self.d,
                           eps_f32=self.eps)
            if behind_load is not None and t_idx == 0:
                behind_load()
                b.tag = tag
            last = t_idx == k - 1
            for j0, j1 in (batches if (k - 1 - t_idx) % 2 == 0 else batches[::-1]):
                keys = [(gid, i) for i in range(j0, j1)]
                pool.acquire([((gid, i), masks[i], dst + i * S) for i in range(j0, j1)])
                for i in range(j0, j1):
                    acc = pool.acc((gid, i))
                    for row, col, ncols, gb_col in region.segments(i, start, start + size):
                        b.emit(Op.MAC_ABK, ch_mask=masks[i], row=row, col=col, ncols=ncols,
                               gb_col=gb_col, acc=acc)
                if not last:
                    continue
                pool.done(keys)
                group = next(g for g in groups if g[0] <= j0 < g[1])
                if j1 < group[1]:
                    continue
                i0, i1 = group
                pool.flush([(gid, i) for i in range(i0, i1)])
                lo = i0 * S
                fin = self._finisher(dst, lo, min(n_out, i1 * S) - lo, bias, folded, post, tag)
                if finish is None:
                    fin()
                else:
                    finish.append(fin)

    def _finisher(self, dst: int, lo: int, n: int, bias: int | None, folded: int | None, post,
                  tag: str):
        """The vector-unit work that finishes the outputs ``dst[lo:lo + n]`` of a GEMV once they
        are read (:meth:`gemv`), as a function that emits it."""
        def fin() -> None:
            b = self.b
            b.tag = tag
            if folded is not None and bias is None:
                b.emit(Op.VMULS, dst=dst + lo, a=dst + lo, s=self.P.stat, n=n)
            elif folded is not None:
                b.emit(Op.VMADS, dst=dst + lo, a=dst + lo, s=self.P.stat, b=bias + lo, n=n)
            elif bias is not None and getattr(post, "residual", False):
                # the bias and the residual add in one pass: x + (y + bias), as the two VADDs
                assert dst == self.P.y, "a residual post adds y"
                b.tag = post.residual
                b.emit(Op.VADD3, dst=self.P.x + lo, a=self.P.x + lo, b=dst + lo, c=bias + lo,
                       n=n)
                b.tag = tag
                return
            elif bias is not None:
                b.emit(Op.VADD, dst=dst + lo, a=dst + lo, b=bias + lo, n=n)
            if post is not None:
                post(lo, n)
                b.tag = tag
        return fin

    def linear(self, layer: int, name: str, x: int, dst: int, n_out: int,
               prefetch: tuple = (), post=None, feeds: str | None = None,
               per_input: int = 1, folded: int | None = None, after_first=None,
               behind_load=None, part: tuple[int, int] | None = None,
               tail: bool = True) -> None:
        """``dst = linear(x, h.{layer}.{name})``; a non-resident bias is loaded first, then the
        parameters named in ``prefetch``; ``feeds``: the layer's matrix that consumes ``dst``;
        ``after_first``, ``behind_load``, ``tail``: see :meth:`gemv`.
        Without biases (Llama) no add at all: adding +0 would turn a -0 into +0."""
        region = self.mm.region(f"h.{layer}.{name}.weight")
        bias = f"h.{layer}.{name}.bias" if self.cfg.bias else None
        consumer = self.mm.region(f"h.{layer}.{feeds}.weight") if feeds else None
        self.gemv(region, x, dst, n_out, None if bias is None else self._param(bias),
                  ((bias,) if bias else ()) + tuple(prefetch), post, consumer, per_input, folded,
                  after_first=after_first, behind_load=behind_load, part=part, tail=tail)

    def _residual(self, tag: str):
        """``x += y`` per output group (a GEMV into ``y``); ``post.residual`` (its tag) lets a
        biased GEMV's finisher fuse the bias into it (``VADD3``)."""
        def post(lo: int, n: int) -> None:
            self.b.tag = tag
            self.b.emit(Op.VADD, dst=self.P.x + lo, a=self.P.x + lo, b=self.P.y + lo, n=n)
        post.residual = tag
        return post

    def _gelu(self, tag: str):
        def post(lo: int, n: int) -> None:
            self.b.tag = tag
            self.b.emit(Op.VGELU, dst=self.P.g + lo, src=self.P.u + lo, n=n)
        return post

    def _swiglu(self, tag: str):
        """SwiGLU of every chunk whose gate and up outputs are in (:func:`~pimgpt.sw.mapper.
        fc_order`: chunk ``t`` of ``u`` is the gate's ``L_t`` outputs, then the up's)."""
        f, G, P = self.cfg.d_ff, self.G, self.P
        chunks = [(t0, min(G, f - t0)) for t0 in range(0, f, G)]
        state = {"next": 0}

        def post(lo: int, n: int) -> None:
            self.b.tag = tag
            while state["next"] < len(chunks):
                t0, size = chunks[state["next"]]
                if 2 * t0 + 2 * size > lo + n:
                    break
                self.b.emit(Op.SWIGLU, dst=P.g + t0, gate=P.u + 2 * t0, up=P.u + 2 * t0 + size,
                            n=size)
                state["next"] += 1
        return post

    def _rope(self, tag: str):
        """RoPE of the query and key heads (contiguous in ``qkv``, ``d_head`` words each) whose
        outputs are in, in place.

        When the query heads arrive in an earlier output group than the keys, only the queries
        of the first global-buffer window of the scores (``G / d_head`` heads) are rotated at
        once; the others wait until the keys are rotated. The K append, and with it every
        score, waits for the keys, while the first window's scores need only its queries: the
        vector unit rotates the rest while the banks compute them. ROPE is per head, so the
        order changes no bit."""
        P, dh, H = self.P, self.dh, self.H
        heads = H + self.cfg.n_kv_head
        first = max(1, min(H, self.G // dh))
        state = {"done": 0, "held": None}

        def rope(a: int, z: int) -> None:
            if z > a:
                at = P.qkv + a * dh
                self.b.emit(Op.ROPE, dst=at, src=at, tab=P.rope, half=dh // 2, nhead=z - a)

        def post(lo: int, n: int) -> None:
            ready = min(heads, (lo + n) // dh)
            a = state["done"]
            if ready <= a:
                return
            self.b.tag = tag
            state["done"] = ready
            held = state["held"]
            q_end = min(ready, H)
            rope(a, max(a, min(q_end, first)))
            if q_end > max(a, first):  # later queries wait for the keys
                held = state["held"] = (held[0] if held else max(a, first), q_end)
            rope(max(a, H), ready)  # keys
            if ready == heads and held is not None:
                rope(*held)
        return post

    def _rope_table(self, pos: int) -> None:
        """The cos/sin table of position ``pos`` into the scratchpad: the host computes it
        (:func:`pimgpt.core.rope.rope_table`) and sends it as ``VFILL`` immediates, one per run
        of equal values (``docs/dataflow.md``)."""
        cos, sin = rope_table([pos], self.inv_freq)
        values = np.concatenate([cos[0], sin[0]]).astype(np.float32).view(np.uint32)
        k = 0
        while k < values.size:
            run = 1
            while k + run < values.size and values[k + run] == values[k]:
                run += 1
            self.b.emit(Op.VFILL, dst=self.P.rope + k, n=run, value_f32=int(values[k]))
            k += run

    # ---- one model step ------------------------------------------------------------------
    def step_plan(self) -> dict | None:
        """The attention plan of the step recorded last, the same for all its layers (decided
        at the first): ``head_groups`` (the groups the heads are partitioned into),
        ``value_projection_late`` (:meth:`_qkv_attention`), ``merged_av`` (one ``p . V`` of
        every head after the grouped softmaxes), ``deferred_av`` (the last group's ``p . V``
        after the projection's first input chunk) and ``unnormalised_softmax`` (``SOFTMAXU``,
        the product by ``1/sum`` after ``p . V``); ``None`` without attention."""
        if self._groups is None:
            return None
        _, groups, defer, merge, unnorm = self._groups
        return {"head_groups": len(groups),
                "value_projection_late": bool(self._v_late is not None and self._v_late[1]),
                "merged_av": bool(merge), "deferred_av": bool(defer),
                "unnormalised_softmax": bool(unnorm)}

    def step(self, pos: int, token: int | None, logits: bool) -> None:
        """Record the step of token ``token`` (``None``: the token in ``R0``) at ``pos``."""
        b, mm, d, cfg, P = self.b, self.mm, self.d, self.cfg, self.P
        self._groups = None
        b.tag = "embed"
        if token is not None:
            b.emit(Op.SETR, reg=TOKEN_REG, imm=token)
        b.emit(Op.RD_VEC, FLAG_VEC_FROM_REG, dst=P.x, n=d, vec=TOKEN_REG, **mm.region("wte").isa())
        if cfg.position == "learned":
            b.emit(Op.RD_VEC, dst=P.tmp, n=d, vec=pos, **mm.region("wpe").isa())
            self._prefetch(self._norm_params("h.0.ln_1"))
            b.emit(Op.VADD, dst=P.x, a=P.x, b=P.tmp, n=d)
        else:
            self._prefetch(self._norm_params("h.0.ln_1"))

        def rope_table() -> None:  # needed first by layer 0's ROPE: behind its QKV's first load
            b.tag = "rope"
            self._rope_table(pos)
        for layer in range(cfg.n_layer):
            self._layer(layer, pos, logits, rope_table if layer == 0 else None)
        if logits:
            b.tag = "ln_f"
            self._norm("ln_f", P.x, P.h)
            self._lm_head(mm.region("wte" if cfg.tied_head else "lm_head"))
            b.emit(Op.OUT, reg=TOKEN_REG)

    def _layer(self, layer: int, pos: int, logits: bool, behind_load) -> None:
        """Record layer ``layer`` of the step at ``pos`` (``behind_load``: the RoPE table, at
        the first layer)."""
        b, d, cfg, P = self.b, self.d, self.cfg, self.P
        p = f"h.{layer}."
        b.tag = f"L{layer}.ln1"
        h = self._norm(p + "ln_1", P.x, P.h)
        folded = P.x if self.fold_norms else None
        npos = pos + 1
        late = self._v_late
        if late is None or late[0] != npos:
            late = self._v_late = (npos, self._v_late_faster(layer, pos, h, folded, behind_load))
        self._qkv_attention(layer, pos, h, folded, behind_load, late[1])
        b.tag = f"L{layer}.ln2"
        h = self._norm(p + "ln_2", P.x, P.h)
        b.tag = f"L{layer}.mlp.fc"
        if cfg.mlp == "swiglu":
            self.linear(layer, "mlp.c_fc", h, P.u, cfg.fc_dim,
                        post=self._swiglu(f"L{layer}.mlp.swiglu"), feeds="mlp.c_proj",
                        per_input=2, folded=folded)
        else:
            self.linear(layer, "mlp.c_fc", h, P.u, cfg.d_ff,
                        post=self._gelu(f"L{layer}.mlp.gelu"), feeds="mlp.c_proj",
                        folded=folded)
        b.tag = f"L{layer}.mlp.proj"
        if layer + 1 < cfg.n_layer:
            nxt = self._norm_params(f"h.{layer + 1}.ln_1")
        else:
            nxt = self._norm_params("ln_f") if logits else ()
        self.linear(layer, "mlp.c_proj", P.g, P.y, d, nxt,
                    self._residual(f"L{layer}.mlp.residual"), tail=self.residual_tail)

    def _v_late_faster(self, layer: int, pos: int, h: int, folded: int | None,
                       behind_load) -> bool:
        """Whether the schedule's cost model finds the QKV projection, attention and attention
        projection of ``layer`` faster with the value projection late (:meth:`_qkv_attention`),
        from trial recordings of both. Decided at the first layer of a step, kept for the
        others."""
        if self._v_split() is None:
            return False
        if self.schedule.v_late is not None:
            return self.schedule.v_late
        fused, late = (self._trial_time(lambda v=v: self._qkv_attention(
            layer, pos, h, folded, behind_load, v)) for v in (False, True))
        return late < fused * (1 - self.schedule.v_late_margin)

    def _qkv_attention(self, layer: int, pos: int, h: int, folded: int | None,
                       behind_load, v_late: bool) -> None:
        """The QKV projection of ``layer``, its attention and the attention projection;
        ``v_late``: the value projection split off the QKV GEMV (:meth:`_v_split`) and recorded
        after the first head group's scores, so that the PIM computes it while the vector unit
        computes the first softmaxes."""
        cfg, P, b = self.cfg, self.P, self.b
        b.tag = f"L{layer}.attn.qkv"
        rope = self._rope(f"L{layer}.attn.rope") if cfg.position == "rope" else None
        behind = behind_load if rope is not None else None
        if not v_late:
            self.linear(layer, "attn.c_attn", h, P.qkv, cfg.qkv_dim, post=rope, folded=folded,
                        behind_load=behind)
            self.attention(layer, pos, self._attn_proj(layer))
            return
        split = self._v_split()
        region = self.mm.region(f"h.{layer}.attn.c_attn.weight")
        self.linear(layer, "attn.c_attn", h, P.qkv, cfg.qkv_dim, post=rope, folded=folded,
                    behind_load=behind, part=(0, split))
        bias = self._param(f"h.{layer}.attn.c_attn.bias") if cfg.bias else None

        def v_proj() -> list:
            b.tag = f"L{layer}.attn.qkv"
            finish: list = []
            self.gemv(region, h, P.qkv, cfg.qkv_dim, bias, folded=folded,
                      part=(split, region.n_local), finish=finish)
            return finish
        self.attention(layer, pos, self._attn_proj(layer), v_proj)

    def _v_split(self) -> int | None:
        """The first local vector of the QKV projection that holds only value outputs, when the
        value projection can be split off there (outputs past it)."""
        nl = -(-self.cfg.qkv_dim // self.S)
        first = -(-(self.d + self.cfg.kv_dim) // self.S)
        return first if first < nl else None

    def _attn_proj(self, layer: int):
        """The attention projection of ``layer`` and its residual add, as ``proj(after_first)``
        for :meth:`~.attention.AttentionLowering.attention`."""
        def proj(after_first=None) -> None:
            self.b.tag = f"L{layer}.attn.proj"
            self.linear(layer, "attn.c_proj", self.P.o, self.P.y, self.d,
                        self._norm_params(f"h.{layer}.ln_2"),
                        self._residual(f"L{layer}.attn.residual"), after_first=after_first,
                        tail=self.residual_tail)
        return proj

    def _lm_head(self, region: Region) -> None:
        """The logits and their ARGMAX into ``R0``. With several read groups (the schedule's
        :meth:`~.schedule.Schedule.read_groups`, contiguous runs of local vectors, so contiguous
        ranges of the logits in order), each group is scanned as soon as it is read: ARGMAX over
        the first, ARGMAXC over each later one, while the PIM computes the next (the merge of
        first maxima is exact: the chain's index is one ARGMAX's); else one ARGMAX at the end."""
        b, P, vocab = self.b, self.P, self.cfg.vocab
        b.tag = "lm_head"
        groups = self.schedule.read_groups(region.n_local, self.pool.A)
        tiled = all(g[1] == h[0] for g, h in zip(groups, groups[1:], strict=False))
        if len(groups) < 2 or groups[0][0] or groups[-1][1] != region.n_local or not tiled:
            self.gemv(region, P.h, P.logits, vocab)
            b.tag = "argmax"
            b.emit(Op.ARGMAX, reg=TOKEN_REG, src=P.logits, n=vocab)
            return
        end = [0]

        def post(lo: int, n: int) -> None:
            assert lo == end[0], "the last chunk reads the groups in order"
            b.tag = "argmax"
            if lo == 0:
                b.emit(Op.ARGMAX, reg=TOKEN_REG, src=P.logits, n=n)
            else:
                b.emit(Op.ARGMAXC, reg=TOKEN_REG, src=P.logits, lo=lo, n=n)
            end[0] = lo + n

        self.gemv(region, P.h, P.logits, vocab, post=post, groups=groups)
        assert end[0] == vocab, "the groups cover the logits"

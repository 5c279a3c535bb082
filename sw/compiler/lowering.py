"""Lowering: one GPT step (``docs/dataflow.md``) as pimgpt instructions, in program order.

* **GEMV** ``y = linear(x, W)``: for each input chunk (``gb_elems`` elements) one ``WR_GB``
  broadcasts ``bf16(x[chunk])`` to every channel's global buffer; each local vector ``i`` (``i = 0
  .. n_local-1``, vectors ``i*slots ..``) streams its DRAM row pieces with ``MAC_ABK`` into its own
  accumulator, chunk after chunk, and is read into the scratchpad with ``RD_MAC`` when its last
  chunk is done (groups of local vectors in consecutive accumulators are read together); the bias
  is a ``VADD``.
* **Attention**: :mod:`.attention`.
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
from pimgpt.sw.mapper import COL, MemoryMap, Region, v_dims
from pimgpt.sw.models import ModelConfig

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
        self.P = ScratchPlan(cfg, hw, mm)
        self.pool = AccPool(self.b, dram.accumulators, self.B)
        self._ids = 0

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
        """Load the parameter vector ``name`` into its scratchpad words."""
        region, index = self.mm.vector(name)
        n = self.mm.vec_length(name)
        self.b.emit(Op.RD_VEC, dst=self._param(name), n=n, vec=index, **region.isa())

    def preamble(self) -> None:
        """Load the resident parameters (once per generation, before the first step)."""
        self.b.tag = PREAMBLE_TAG
        for name in self.P.params:
            if name in self.P.resident:
                self._rd_vec(name)

    def _prefetch(self, names) -> None:
        """Load parameters that are not resident (per layer, with earlier PIM work)."""
        for name in names:
            if name not in self.P.resident:
                self._rd_vec(name)

    # ---- GEMV ----------------------------------------------------------------------------
    def gemv(self, region: Region, x: int, dst: int, n_out: int, bias: int | None = None,
             prefetch: tuple = (), post=None, feeds: Region | None = None) -> None:
        """``dst = dot(bf16(x), region vectors) (+ bias)``, then ``post(lo, n)`` per output group.

        Chunk-outer: one ``WR_GB`` per input chunk; each local vector accumulates all its chunks
        in one accumulator (:class:`.accum.AccPool`), in batches of at most ``accumulators``
        local vectors (spilled and restored exactly when there are more). Successive chunks
        visit the batches in alternating directions, so the batches at the turn stay in their
        accumulators, and the last chunk runs forwards: each output group of the schedule is
        read, biased and post-processed as soon as its MACs are done (aligned with the input
        chunks of ``feeds``, the region of the GEMV that consumes the outputs).
        """
        b, S, pool = self.b, self.S, self.pool
        self._prefetch(prefetch)
        chunks = region.chunks()
        k = len(chunks)
        nl = region.n_local
        masks = [self._mask(n_out - i * S) for i in range(nl)]
        align = None
        if feeds is not None and len(feeds.chunks()) > 1:
            align = -(-feeds.chunks()[0][2] // S)
        # without post-processing (the LM head) the results are only read: one group
        groups = (self.schedule.gemv_groups(nl, align) if bias is not None or post is not None
                  else [(0, nl)])
        batches = [(j0, min(i1, j0 + pool.A)) for i0, i1 in groups
                   for j0 in range(i0, i1, pool.A)]
        gid = self._new_id()
        tag = b.tag
        for t_idx, (_t, start, size) in enumerate(chunks):
            b.emit(Op.WR_GB, ch_mask=self.all_ch, gb_col=0, ncols=size // COL, src=x + start)
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
                n_g = min(n_out, i1 * S) - lo
                if bias is not None:
                    b.emit(Op.VADD, dst=dst + lo, a=dst + lo, b=bias + lo, n=n_g)
                if post is not None:
                    post(lo, n_g)
                    b.tag = tag

    def linear(self, layer: int, name: str, x: int, dst: int, n_out: int,
               prefetch: tuple = (), post=None, feeds: str | None = None) -> None:
        """``dst = linear(x, h.{layer}.{name})``; a non-resident bias is loaded first, then the
        parameters named in ``prefetch``; ``feeds``: the layer's matrix that consumes ``dst``."""
        region = self.mm.region(f"h.{layer}.{name}.weight")
        bias = f"h.{layer}.{name}.bias"
        consumer = self.mm.region(f"h.{layer}.{feeds}.weight") if feeds else None
        self.gemv(region, x, dst, n_out, self._param(bias), (bias,) + tuple(prefetch), post,
                  consumer)

    def _residual(self, tag: str):
        def post(lo: int, n: int) -> None:
            self.b.tag = tag
            self.b.emit(Op.VADD, dst=self.P.x + lo, a=self.P.x + lo, b=self.P.y + lo, n=n)
        return post

    def _gelu(self, tag: str):
        def post(lo: int, n: int) -> None:
            self.b.tag = tag
            self.b.emit(Op.VGELU, dst=self.P.g + lo, src=self.P.u + lo, n=n)
        return post

    # ---- one model step ------------------------------------------------------------------
    def step(self, pos: int, token: int | None, logits: bool) -> None:
        """Record the step of token ``token`` (``None``: the token in ``R0``) at ``pos``."""
        b, mm, d, cfg, P, W = self.b, self.mm, self.d, self.cfg, self.P, self._param
        wte, wpe = mm.region("wte"), mm.region("wpe")
        b.tag = "embed"
        if token is not None:
            b.emit(Op.SETR, reg=TOKEN_REG, imm=token)
        b.emit(Op.RD_VEC, FLAG_VEC_FROM_REG, dst=P.x, n=d, vec=TOKEN_REG, **wte.isa())
        b.emit(Op.RD_VEC, dst=P.tmp, n=d, vec=pos, **wpe.isa())
        self._prefetch(("h.0.ln_1.weight", "h.0.ln_1.bias"))
        b.emit(Op.VADD, dst=P.x, a=P.x, b=P.tmp, n=d)
        eps = self.eps
        for layer in range(cfg.n_layer):
            p = f"h.{layer}."
            b.tag = f"L{layer}.ln1"
            b.emit(Op.LAYERNORM, dst=P.h, src=P.x, gamma=W(p + "ln_1.weight"),
                   beta=W(p + "ln_1.bias"), n=d, eps_f32=eps)
            b.tag = f"L{layer}.attn.qkv"
            self.linear(layer, "attn.c_attn", P.h, P.qkv, 3 * d)
            self.attention(layer, pos)
            b.tag = f"L{layer}.attn.proj"
            self.linear(layer, "attn.c_proj", P.o, P.y, d, (p + "ln_2.weight", p + "ln_2.bias"),
                        self._residual(f"L{layer}.attn.residual"))
            b.tag = f"L{layer}.ln2"
            b.emit(Op.LAYERNORM, dst=P.h, src=P.x, gamma=W(p + "ln_2.weight"),
                   beta=W(p + "ln_2.bias"), n=d, eps_f32=eps)
            b.tag = f"L{layer}.mlp.fc"
            self.linear(layer, "mlp.c_fc", P.h, P.u, cfg.d_ff,
                        post=self._gelu(f"L{layer}.mlp.gelu"), feeds="mlp.c_proj")
            b.tag = f"L{layer}.mlp.proj"
            if layer + 1 < cfg.n_layer:
                nxt = (f"h.{layer + 1}.ln_1.weight", f"h.{layer + 1}.ln_1.bias")
            else:
                nxt = ("ln_f.weight", "ln_f.bias") if logits else ()
            self.linear(layer, "mlp.c_proj", P.g, P.y, d, nxt,
                        self._residual(f"L{layer}.mlp.residual"))
        if logits:
            b.tag = "ln_f"
            b.emit(Op.LAYERNORM, dst=P.h, src=P.x, gamma=W("ln_f.weight"), beta=W("ln_f.bias"),
                   n=d, eps_f32=eps)
            b.tag = "lm_head"
            self.gemv(wte, P.h, P.logits, cfg.vocab)
            b.tag = "argmax"
            b.emit(Op.ARGMAX, reg=TOKEN_REG, src=P.logits, n=cfg.vocab)
            b.emit(Op.OUT, reg=TOKEN_REG)

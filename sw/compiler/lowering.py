"""Lowering: one GPT step (``docs/dataflow.md``) as pimgpt instructions, in program order.

* **GEMV** ``y = linear(x, W)``: for each input chunk ``t`` (``gb_elems`` elements) one ``WR_GB``
  broadcasts ``bf16(x[chunk])`` to every channel's global buffer; then for each local vector ``i``
  (``i = 0 .. n_local-1``) a ``MAC_ABK`` per DRAM row the chunk segment touches and one ``RD_MAC``
  that drops the partial sums of vectors ``i*slots ..`` into the scratchpad. Partials of the chunks
  are summed in chunk order by ``VREDUCE``; the bias is a ``VADD``.
* **Attention**: :mod:`.attention`.
* LayerNorm, GELU, softmax, residual adds are the vector unit's ops; the LM head is a GEMV over
  ``wte`` followed by ``ARGMAX`` and ``OUT``.

Region data are chunk-major and the GEMV loops run chunk-outer, local-vector-inner, so the MACs
of a GEMV walk each bank's rows in address order: every row is opened once and streamed whole.
All banks of all channels work on every ``MAC_ABK`` (only the last local vector of a region may
leave trailing channels idle; their accumulators are not read).

The :class:`.schedule.Schedule` decides how finely the work is split (output groups of a GEMV,
head blocks) and the recording is handed to it to place the ``SYNC``\\ s. Parameter loads
(``RD_VEC`` of biases and LayerNorm parameters) are recorded with the PIM work of the preceding
GEMV, so that they need no extra ``SYNC``.
"""

from __future__ import annotations

import math

import numpy as np

from pimgpt.core.config import HwConfig
from pimgpt.core.isa import FLAG_VEC_FROM_REG, Op, f32_bits
from pimgpt.sw.mapper import COL, MemoryMap, Region
from pimgpt.sw.models import ModelConfig

from .attention import AttentionLowering
from .plan import ScratchPlan
from .program import TOKEN_REG, Recorder
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
        self.C, self.B, self.S = dram.channels, dram.banks, dram.slots
        self.all_ch = (1 << self.C) - 1
        self.b = Recorder()
        self.d, self.dh, self.H = cfg.d_model, cfg.d_head, cfg.n_head
        self.eps = f32_bits(cfg.ln_eps)
        self.scale = f32_bits(np.float32(1.0 / math.sqrt(self.dh)))
        self.heads_fit_banks = self.dh % self.B == 0
        self.P = ScratchPlan(cfg, hw, mm)

    # ---- helpers -------------------------------------------------------------------------
    def _mask(self, remaining: int) -> int:
        """Channels holding any of the next ``remaining`` vectors of a local index."""
        nch = min(self.C, -(-remaining // self.B))
        return (1 << nch) - 1

    def _rd_vec(self, name: str, dst: int) -> None:
        region, index = self.mm.vector(name)
        n = self.mm.vec_length(name)
        self.b.emit(Op.RD_VEC, dst=dst, n=n, vec=index, **region.isa())

    # ---- GEMV ----------------------------------------------------------------------------
    def gemv(self, region: Region, x: int, dst: int, n_out: int, part: int,
             bias: int | None = None, prefetch: tuple = (), post=None,
             growing: bool = False) -> None:
        """``dst = chunkdot(bf16(x), region) (+ bias)``, then ``post(lo, n)`` per output group.

        Several input chunks: the partial sums of output group ``[i0*S, i0*S + n_g)`` lie at
        ``part + k*i0*S + t*n_g`` (chunk ``t`` of ``k``) so that one ``VREDUCE`` per group adds
        them in chunk order. The loops run chunk-outer (one GB load per chunk; outputs complete
        only in the last chunk's pass) or, when ``growing`` and the schedule's groups grow,
        group-outer (one GB load per group and chunk, but the first outputs complete early: for
        a heavy ``post`` such as GELU).
        """
        b, S = self.b, self.S
        for name, addr in prefetch:
            self._rd_vec(name, addr)
        chunks = region.chunks()
        k = len(chunks)
        nl = region.n_local
        masks = [self._mask(n_out - i * S) for i in range(nl)]
        group_outer = growing and k > 1
        groups = self.schedule.gemv_groups(nl, group_outer)
        if group_outer:
            passes = [(chunks, g0, g1) for g0, g1 in groups]
        else:
            passes = [([c], 0, nl) for c in chunks]
        group_of = [g for g, (i0, i1) in enumerate(groups) for _ in range(i0, i1)]
        tag = b.tag
        for pass_chunks, p0, p1 in passes:
            for t, start, size in pass_chunks:
                b.emit(Op.WR_GB, ch_mask=self.all_ch, gb_col=0, ncols=size // COL, src=x + start)
                for i in range(p0, p1):
                    i0, i1 = groups[group_of[i]]
                    n_g = min(n_out, i1 * S) - i0 * S
                    for row, col, ncols, gb_col in region.segments(i, start, start + size):
                        b.emit(Op.MAC_ABK, ch_mask=masks[i], row=row, col=col, ncols=ncols,
                               gb_col=gb_col)
                    where = dst + i * S if k == 1 else part + k * i0 * S + t * n_g + (i - i0) * S
                    b.emit(Op.RD_MAC, ch_mask=masks[i], dst=where)
                    if t == k - 1 and i == i1 - 1:
                        lo = i0 * S
                        if k > 1:
                            b.emit(Op.VREDUCE, dst=dst + lo, src=part + k * lo, n=n_g, k=k)
                        if bias is not None:
                            b.emit(Op.VADD, dst=dst + lo, a=dst + lo, b=bias + lo, n=n_g)
                        if post is not None:
                            post(lo, n_g)
                            b.tag = tag

    def linear(self, layer: int, name: str, x: int, dst: int, n_out: int, bias: int,
               prefetch: tuple = (), post=None, growing: bool = False) -> None:
        """``dst = linear(x, h.{layer}.{name})``: its bias loaded first, then ``prefetch``."""
        region = self.mm.region(f"h.{layer}.{name}.weight")
        self.gemv(region, x, dst, n_out, self.P.part, bias,
                  ((f"h.{layer}.{name}.bias", bias),) + tuple(prefetch), post, growing)

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
        b, mm, d, cfg, P = self.b, self.mm, self.d, self.cfg, self.P
        wte, wpe = mm.region("wte"), mm.region("wpe")
        b.tag = "embed"
        if token is not None:
            b.emit(Op.SETR, reg=TOKEN_REG, imm=token)
        b.emit(Op.RD_VEC, FLAG_VEC_FROM_REG, dst=P.x, n=d, vec=TOKEN_REG, **wte.isa())
        b.emit(Op.RD_VEC, dst=P.tmp, n=d, vec=pos, **wpe.isa())
        self._rd_vec("h.0.ln_1.weight", P.ln1w)
        self._rd_vec("h.0.ln_1.bias", P.ln1b)
        b.emit(Op.VADD, dst=P.x, a=P.x, b=P.tmp, n=d)
        eps = self.eps
        for layer in range(cfg.n_layer):
            p = f"h.{layer}."
            b.tag = f"L{layer}.ln1"
            b.emit(Op.LAYERNORM, dst=P.h, src=P.x, gamma=P.ln1w, beta=P.ln1b, n=d, eps_f32=eps)
            b.tag = f"L{layer}.attn.qkv"
            self.linear(layer, "attn.c_attn", P.h, P.qkv, 3 * d, P.bqkv)
            self.attention(layer, pos)
            b.tag = f"L{layer}.attn.proj"
            self.linear(layer, "attn.c_proj", P.o, P.y, d, P.bproj,
                        ((p + "ln_2.weight", P.ln2w), (p + "ln_2.bias", P.ln2b)),
                        self._residual(f"L{layer}.attn.residual"))
            b.tag = f"L{layer}.ln2"
            b.emit(Op.LAYERNORM, dst=P.h, src=P.x, gamma=P.ln2w, beta=P.ln2b, n=d, eps_f32=eps)
            b.tag = f"L{layer}.mlp.fc"
            self.linear(layer, "mlp.c_fc", P.h, P.u, cfg.d_ff, P.bfc,
                        post=self._gelu(f"L{layer}.mlp.gelu"), growing=True)
            b.tag = f"L{layer}.mlp.proj"
            if layer + 1 < cfg.n_layer:
                nxt = ((f"h.{layer + 1}.ln_1.weight", P.ln1w),
                       (f"h.{layer + 1}.ln_1.bias", P.ln1b))
            elif logits:
                nxt = (("ln_f.weight", P.lnfw), ("ln_f.bias", P.lnfb))
            else:
                nxt = ()
            self.linear(layer, "mlp.c_proj", P.g, P.y, d, P.bmproj, nxt,
                        self._residual(f"L{layer}.mlp.residual"))
        if logits:
            b.tag = "ln_f"
            b.emit(Op.LAYERNORM, dst=P.h, src=P.x, gamma=P.lnfw, beta=P.lnfb, n=d, eps_f32=eps)
            b.tag = "lm_head"
            self.gemv(wte, P.h, P.logits, cfg.vocab, P.part_lm)
            b.tag = "argmax"
            b.emit(Op.ARGMAX, reg=TOKEN_REG, src=P.logits, n=cfg.vocab)
            b.emit(Op.OUT, reg=TOKEN_REG)

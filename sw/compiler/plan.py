"""The scratchpad plan: where every buffer of a step lives in the ASIC's scratchpad.

Buffers of phases that never overlap share words: after the persistent and GEMV buffers, the
attention phase (scores), the MLP phase (fc outputs, GELU) and the LM-head phase (logits) are
allocated from the same address.
"""

from __future__ import annotations

from pimgpt.core.config import HwConfig
from pimgpt.sw.mapper import COL, MemoryMap, round_up, v_channel_major, v_dims
from pimgpt.sw.models import FOLDED_LN, ModelConfig, folded_gain_name

from .program import CompileError


class Scratch:
    """Bump allocator of scratchpad words with phase-shared (union) areas."""

    def __init__(self, limit: int):
        self.limit = limit
        self.top = 0
        self.high = 0
        self.buffers: dict[str, tuple[int, int]] = {}

    def alloc(self, name: str, n: int) -> int:
        addr = self.top
        self.top += int(n)
        self.high = max(self.high, self.top)
        self.buffers[name] = (addr, int(n))
        return addr

    def check(self, what: str) -> None:
        if self.high > self.limit:
            big = sorted(self.buffers.items(), key=lambda kv: -kv[1][1])[:3]
            names = ", ".join(f"{k} {v[1]}" for k, v in big)
            raise CompileError(
                f"{what} needs {self.high} scratchpad words but the ASIC has {self.limit} "
                f"(largest buffers: {names}); use hw with a larger asic.scratchpad_words or a "
                "smaller model/context"
            )


class ScratchPlan:
    """Addresses of the buffers of one model step (attributes named after the buffers).

    Attributes
    ----------
    x, tmp, h : int
        Residual stream, embedding and ``LNRSTD`` scratch, norm output (``d`` words each).
    stat : int
        A folded LayerNorm's ``rstd`` (``LNRSTD``, one word).
    rope : int or None
        The RoPE cos/sin table of the step's position (``d_head`` words), rotary models only.
    params : dict of str to int
        Address of every parameter vector (LayerNorm gains and shifts, biases) by checkpoint
        name; resident ones have their own words, the others share one slot per kind.
    resident : set of str
        The parameters that stay in the scratchpad for the whole generation.
    resident_layers : int
        Layers whose parameters are all resident (the first ones).
    qkv, y, o : int
        GEMV outputs (an ``RD_MAC`` writes whole channels: sizes are rounded up to ``banks``).
    score_addr : list of int
        Per head, its row of scores (then probabilities) at the full context, ``score_len``
        words. A step at ``npos`` positions packs the rows closer: :meth:`score_at`.
    ov : int or None
        Grouped-query attention: ``p . V`` partial sums by query head of a group; a channel-major
        V cache (:func:`pimgpt.sw.mapper.v_channel_major`): where ``p . V`` spills its partial
        sums (their final reads go straight into ``o``). Else ``None``.
    u, g, logits : int
        fc output (SwiGLU: gate and up interleaved by chunk), GELU / SwiGLU output, logits.
    high : int
        Words used.
    """

    def __init__(self, cfg: ModelConfig, hw: HwConfig, mm: MemoryMap):
        self.cfg, self.mm = cfg, mm
        dram = hw.dram
        self.B = dram.banks
        d = cfg.d_model
        sp = Scratch(hw.asic.scratchpad_words)
        self.sp = sp
        self.x = sp.alloc("x", d)
        self.tmp = sp.alloc("tmp", d)
        self.h = sp.alloc("h", d)
        # a folded LayerNorm's rstd (LNRSTD; one word, a column for alignment)
        self.stat = sp.alloc("stat", COL)
        # RoPE: the cos/sin table of the step's position (cos[0..dh/2), then sin)
        self.rope = sp.alloc("rope", cfg.d_head) if cfg.position == "rope" else None
        self._plan_params(cfg, mm, sp)
        self.qkv = sp.alloc("qkv", self.out_size(cfg.qkv_dim))
        self.y = sp.alloc("y", self.out_size(d))
        self.o = sp.alloc("o", self.out_size(d))
        union = sp.top
        # attention phase: one row of scores per head; with grouped-query attention the p . V
        # partial sums of each query head of a group (spills, and the fallback's reads)
        self.score_len = self.score_words(mm)
        self.score_addr = [sp.alloc(f"score{a}", self.score_len) for a in range(cfg.n_head)]
        self.ov = (sp.alloc("ov", self.ov_words(cfg, hw))
                   if cfg.group > 1 or v_channel_major(cfg, hw) else None)
        # MLP phase
        sp.top = union
        self.u = sp.alloc("u", self.out_size(cfg.fc_dim))
        self.g = sp.alloc("g", cfg.d_ff)
        # LM-head phase
        sp.top = union
        self.logits = sp.alloc("logits", self.out_size(cfg.vocab))
        sp.check(f"model {cfg.name} at context {mm.context}")

    def _plan_params(self, cfg: ModelConfig, mm: MemoryMap, sp: Scratch) -> None:
        """Parameters (LayerNorm gains and shifts, biases): the final LayerNorm's and those of the
        first layers stay resident for the whole generation, as many layers as fit next to the
        largest working set; the other layers share one slot per kind, reloaded per layer."""
        def words(name: str) -> int:
            return round_up(mm.vec_length(name), COL)

        layer_of = {n: int(n.split(".")[1]) if n.startswith("h.") else -1 for n in mm.vectors}
        # A folded RMSNorm's gain is in its GEMV's weights: the vector unit never reads it.
        unread = {folded_gain_name(cfg, f"h.{i}.{m}.weight")
                  for i in range(cfg.n_layer) for m in FOLDED_LN} - {None}
        names = sorted((n for n in mm.vectors if n not in unread),
                       key=lambda n: (layer_of[n], mm.vectors[n]))
        per_layer = [sum(words(n) for n in names if layer_of[n] == i)
                     for i in range(cfg.n_layer)]
        glob = sum(words(n) for n in names if layer_of[n] < 0)
        slots = max(per_layer, default=0)
        free = sp.limit - sp.top - self._working_set(cfg)
        k = cfg.n_layer
        while k and glob + sum(per_layer[:k]) + (slots if k < cfg.n_layer else 0) > free:
            k -= 1
        if not k and glob + slots > free:
            glob = -1  # nothing resident
        self.params: dict[str, int] = {}
        self.resident: set[str] = set()
        slot: dict[str, int] = {}
        for name in names:
            if 0 <= layer_of[name] < k or (layer_of[name] < 0 and glob >= 0):
                self.params[name] = sp.alloc(name, words(name))
                self.resident.add(name)
                continue
            kind = name.split(".", 2)[-1] if name.startswith("h.") else name
            if kind not in slot:
                slot[kind] = sp.alloc(kind, words(name))
            self.params[name] = slot[kind]
        self.resident_layers = k

    def _working_set(self, cfg: ModelConfig) -> int:
        """Words of every buffer but the parameters (an upper bound of the plan below)."""
        d, B = cfg.d_model, self.B
        attention = cfg.n_head * self.score_words(self.mm)
        if cfg.group > 1 or v_channel_major(cfg, self.mm.hw):
            attention += self.ov_words(cfg, self.mm.hw)
        mlp = round_up(cfg.fc_dim, B) + cfg.d_ff
        return (round_up(cfg.qkv_dim, B) + 2 * round_up(d, B)
                + max(attention, mlp, round_up(cfg.vocab, B)))

    @staticmethod
    def ov_words(cfg: ModelConfig, hw: HwConfig) -> int:
        """Words of the ``p . V`` buffer ``ov``: per query head of a group, one word per K/V
        dimension (rounded up to whole local indices)."""
        return cfg.group * v_dims(cfg, hw)

    def score_words(self, mm: MemoryMap) -> int:
        """Words of one head's row of scores at the full context (the allocation)."""
        return self.score_stride(mm.context)

    def score_stride(self, npos: int) -> int:
        """Words between the score rows of two heads in a step at ``npos`` positions: ``npos``
        rounded up to whole banks (the last ``RD_MAC`` of a row writes whole channels) and then
        to whole columns (``p . V`` reads whole columns of probabilities). The rows of all heads
        are contiguous at this stride, so one ``SOFTMAX`` with ``rows > 1`` serves several
        heads; it never exceeds ``score_len``."""
        return round_up(round_up(npos, self.B), COL)

    def score_at(self, a: int, stride: int) -> int:
        """Address of head ``a``'s row of scores at row stride ``stride``
        (:meth:`score_stride`)."""
        return self.score_addr[0] + a * stride

    @property
    def high(self) -> int:
        return self.sp.high

    def out_size(self, n_out: int) -> int:
        """Words a GEMV output needs: the last RD_MAC may write past ``n_out`` (whole channels)."""
        return round_up(n_out, self.B)

"""The scratchpad plan: where every buffer of a step lives in the ASIC's scratchpad.

Buffers of phases that never overlap share words: after the persistent and GEMV buffers, the
attention phase (scores, partial ``p . V`` outputs), the MLP phase (fc outputs, GELU) and the
LM-head phase (logits, partial sums) are allocated from the same address.
"""

from __future__ import annotations

from pimgpt.core.config import HwConfig
from pimgpt.sw.mapper import COL, MemoryMap, Region, round_up
from pimgpt.sw.models import ModelConfig

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
        Residual stream, embedding scratch, LayerNorm output (``d`` words each).
    ln1w, ln1b, ln2w, ln2b, lnfw, lnfb, bqkv, bproj, bfc, bmproj : int
        Parameter vectors (LayerNorm gains and shifts, biases).
    qkv, y, o, part : int
        GEMV outputs and the partial sums of multi-chunk GEMVs.
    head_parts : list of list of (int, int, int)
        Per head, its pieces ``(chunk t, lo, hi)`` of the K-cache vector.
    score_addr : list of list of int
        Per head and piece, the scores' address.
    o_part, u, g, logits, part_lm : int
        Partial ``p . V`` outputs, fc output, GELU output, logits and their partial sums.
    high : int
        Words used.
    """

    def __init__(self, cfg: ModelConfig, hw: HwConfig, mm: MemoryMap):
        self.cfg, self.mm = cfg, mm
        dram = hw.dram
        self.B, self.G = dram.banks, dram.gb_elems
        d, dh = cfg.d_model, cfg.d_head
        sp = Scratch(hw.asic.scratchpad_words)
        self.sp = sp
        l0 = "h.0."
        r = {k: mm.region(l0 + k) for k in
             ("attn.c_attn.weight", "attn.c_proj.weight", "mlp.c_fc.weight", "mlp.c_proj.weight")}
        self.x = sp.alloc("x", d)
        self.tmp = sp.alloc("tmp", d)
        self.h = sp.alloc("h", d)
        for name, n in (("ln1w", d), ("ln1b", d), ("ln2w", d), ("ln2b", d), ("lnfw", d),
                        ("lnfb", d), ("bqkv", 3 * d), ("bproj", d), ("bfc", cfg.d_ff),
                        ("bmproj", d)):
            setattr(self, name, sp.alloc(name, n))
        self.qkv = sp.alloc("qkv", self.out_size(r["attn.c_attn.weight"], 3 * d))
        self.y = sp.alloc("y", max(self.out_size(r["attn.c_proj.weight"], d),
                                   self.out_size(r["mlp.c_proj.weight"], d)))
        cap_pad = round_up(mm.context, COL)
        n_vchunks_max = -(-cap_pad // self.G)
        o_single = round_up(d, self.B)
        self.o = sp.alloc("o", o_single)
        self.part = sp.alloc("part", max(self.part_size(reg, n) for reg, n in (
            (r["attn.c_attn.weight"], 3 * d), (r["attn.c_proj.weight"], d),
            (r["mlp.c_fc.weight"], cfg.d_ff), (r["mlp.c_proj.weight"], d))))
        union = sp.top
        # attention phase: scores per (head, part) and the partial outputs of p . V
        kreg = mm.region(l0 + "k_cache")
        self.head_parts = []  # per head: list of (chunk t, lo, hi)
        for a in range(cfg.n_head):
            lo, hi = a * dh, (a + 1) * dh
            self.head_parts.append([(t, max(lo, s), min(hi, s + n)) for t, s, n in kreg.chunks()
                                    if max(lo, s) < min(hi, s + n)])
        score_len = max(round_up(mm.context, self.B), cap_pad)
        self.score_addr = []
        for a in range(cfg.n_head):
            self.score_addr.append([sp.alloc(f"score{a}.{k}", score_len)
                                    for k in range(len(self.head_parts[a]))])
        self.o_part = sp.alloc("o_part", 0 if n_vchunks_max == 1 else
                               (n_vchunks_max - 1) * d + o_single)
        # MLP phase
        sp.top = union
        self.u = sp.alloc("u", self.out_size(r["mlp.c_fc.weight"], cfg.d_ff))
        self.g = sp.alloc("g", cfg.d_ff)
        # LM-head phase
        sp.top = union
        wte = mm.region("wte")
        self.logits = sp.alloc("logits", self.out_size(wte, cfg.vocab))
        self.part_lm = sp.alloc("part_lm", self.part_size(wte, cfg.vocab))
        sp.check(f"model {cfg.name} at context {mm.context}")

    @property
    def high(self) -> int:
        return self.sp.high

    def out_size(self, region: Region, n_out: int) -> int:
        """Words a GEMV output needs: the last RD_MAC may write past ``n_out`` (whole channels)."""
        return round_up(n_out, self.B) if len(region.chunks()) == 1 else n_out

    def part_size(self, region: Region, n_out: int) -> int:
        """Words of the partial sums of a GEMV over ``region`` (0 for a single chunk)."""
        t = len(region.chunks())
        return 0 if t == 1 else (t - 1) * n_out + round_up(n_out, self.B)

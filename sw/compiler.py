"""Compile GPT generation into a pimgpt program (``docs/isa.md``) computing ``docs/dataflow.md``.

Entry points: :func:`compile_generation` (prefill + decode, the program the golden simulator runs
end to end) and :func:`compile_decode_step` (one decode step at a given context, the workload of
the performance simulator).

Dataflow (bit for bit ``docs/dataflow.md``)
--------------------------------------------
* **GEMV** ``y = linear(x, W)``: for each input chunk ``t`` (``gb_elems`` elements) one ``WR_GB``
  broadcasts ``bf16(x[chunk])`` to every channel's global buffer; then for each local vector ``i``
  (``i = 0 .. n_local-1``) a ``MAC_ABK`` per DRAM row the chunk segment touches and one ``RD_MAC``
  that drops the partial sums of vectors ``i*slots ..`` into the scratchpad. Partials of the chunks
  are laid out at stride ``n_out`` and summed in chunk order by one ``VREDUCE``; the bias is a
  ``VADD``.
* **Attention**: ``bf16(k)`` is appended with ``WR_VEC`` (K cache, one vector per token) and
  ``bf16(v)`` with ``WR_ELEM`` (V cache transposed: element ``pos`` of the vectors of every
  model dimension). ``q . K^T``: ``WR_GB`` of each chunk of ``q``, then for each local token ``i``
  and each head a ``MAC_ABK`` over the head's columns of the token vectors and a ``RD_MAC`` (a
  head that straddles a chunk boundary gives two partial scores, added by ``VADD``). ``VSCALE``
  by ``fp32(1/sqrt(d_head))``, ``SOFTMAX`` and a ``VFILL`` of zeros up to the next column
  boundary. ``p . V``: the V cache's vector ``m`` (model dimension) lies in bank slot
  ``m % slots``, so at local index ``i`` channel ``c`` holds dimensions ``i*slots + c*banks ..``
  of one head when ``d_head % banks == 0``: each channel's GB gets that head's probabilities
  (``WR_GB`` with a one-head channel mask, skipped when already loaded), then one ``MAC_ABK``
  serves all channels. Otherwise (heads narrower than a channel) a correct fallback reloads the
  GB per head group and uses ``MAC_SBK`` per bank.
* LayerNorm, GELU, softmax, residual adds are the vector unit's ops; the LM head is a GEMV over
  ``wte`` followed by ``ARGMAX`` and ``OUT``.

Loop order and locality
-----------------------
Region data are chunk-major, and the GEMV loops run chunk-outer, local-vector-inner, so the MACs
of a GEMV walk each bank's rows in address order: every row is opened once and streamed whole
(row-hit rate near 1 - 1/64). All banks of all channels work on every ``MAC_ABK`` (only the last
local vector of a region may leave trailing channels idle; their accumulators are not read).

Synchronisation
---------------
The hardware may overlap PIM-side and ASIC-side instructions between ``SYNC``\\ s. The builder
tracks, since the last ``SYNC``, the scratchpad words (and scalar registers) each side has read and
written, and inserts a ``SYNC`` right before an instruction that reads what the other side
writes, or writes what it reads or writes (RAW, WAR, WAW). Hence a ``SYNC`` follows each group
of ``RD_MAC``\\ s before the ASIC reduces them, and precedes each ``WR_GB`` / ``WR_VEC`` of a
vector the ASIC just produced. Parameter loads (``RD_VEC`` of biases and LayerNorm parameters)
are issued with the PIM work of the preceding GEMV so that they need no extra ``SYNC``.

Software pipelining (``schedule="pipelined"``, the default)
-----------------------------------------------------------
The serial schedule above leaves one side idle most of the time (the vector unit waits for each
GEMV, the PIM for each softmax / GELU / LayerNorm). The pipelined schedule computes the same
values with the same instructions split finer, recorded in an order that exposes overlap:

* every GEMV finishes its outputs group by group of local vectors (``VREDUCE`` of the group's
  chunk partials, laid out per group; bias ``VADD``; then GELU for ``mlp.c_fc`` or the residual
  add for the projections), so GELU runs while the PIM streams the remaining fc rows and the
  MLP projection's early input chunks; the fc GEMV with several input chunks runs group-outer
  (groups of 1, 2, 4, 8, 8, ... local vectors) so that its first outputs complete early;
* attention computes scores in head blocks ``[0], [1], [2, 3], [4..7], ...`` and each head's
  softmax is followed by that head's ``p . V`` on the channels holding its dimensions, so the
  vector unit's softmax of head h runs while the PIM computes later heads' scores and earlier
  heads' ``p . V``; LayerNorm stays a barrier, the next GEMV's parameter loads overlap it.

Each step is recorded without any ``SYNC`` and :func:`_schedule` cuts it into ``SYNC`` intervals:
each side keeps its order, an instruction joins an interval only once every conflicting earlier
instruction of the other side sits in an earlier interval (so :func:`hazards` finds nothing and
program order computes exactly what the recording computes), and a :class:`_CostModel` picks
where intervals end. ``schedule="serial"`` gives the schedule above, for comparison.
"""

from __future__ import annotations

import math
import os
import shutil
import tempfile
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from pimgpt.core.config import HwConfig
from pimgpt.core.errors import PimgptError
from pimgpt.core.isa import FLAG_VEC_FROM_REG, PIM_OPS, Instr, Op, encode, f32_bits
from pimgpt.sw.mapper import COL, MemoryMap, Region, map_model, round_up
from pimgpt.sw.models import ModelConfig


class CompileError(PimgptError):
    """A model, prompt or hardware that cannot be compiled; the message says why and what to do."""


#: Scalar register holding the current token.
TOKEN_REG = 0
#: Hazard address of scalar register r: REG_BASE + r (beyond every 32-bit scratchpad address).
REG_BASE = 1 << 33


# ---------------------------------------------------------------------------------------------
# Scratchpad effects of instructions (used for SYNC placement and its checker)
# ---------------------------------------------------------------------------------------------
def _popcount(x: int) -> int:
    return bin(x).count("1")


def sp_effects(ins: Instr, banks: int) -> tuple[bool, list, list]:
    """Which side executes ``ins`` and the scratchpad/register ranges it reads and writes.

    Parameters
    ----------
    ins : Instr
        The instruction.
    banks : int
        Banks per channel (``RD_MAC``/``WR_BIAS`` move one word per selected bank).

    Returns
    -------
    (bool, list of (int, int), list of (int, int))
        ``is_pim`` and half-open ranges read and written; register ``r`` is ``REG_BASE + r``.
    """
    op, a = ins.op, ins.args
    pim = op in PIM_OPS
    r: list = []
    w: list = []
    if op is Op.WR_GB:
        r.append((a["src"], a["src"] + COL * a["ncols"]))
    elif op is Op.RD_MAC:
        w.append((a["dst"], a["dst"] + _popcount(a["ch_mask"]) * banks))
    elif op is Op.WR_BIAS:
        r.append((a["src"], a["src"] + _popcount(a["ch_mask"]) * banks))
    elif op in (Op.WR_SBK, Op.WR_ABK, Op.WR_VEC, Op.WR_ELEM):
        r.append((a["src"], a["src"] + a["n"]))
    elif op in (Op.RD_SBK, Op.RD_VEC):
        w.append((a["dst"], a["dst"] + a["n"]))
        if op is Op.RD_VEC and ins.flags & FLAG_VEC_FROM_REG:
            r.append((REG_BASE + a["vec"], REG_BASE + a["vec"] + 1))
    elif op in (Op.VADD, Op.VMUL):
        r += [(a["a"], a["a"] + a["n"]), (a["b"], a["b"] + a["n"])]
        w.append((a["dst"], a["dst"] + a["n"]))
    elif op is Op.VSCALE:
        r.append((a["a"], a["a"] + a["n"]))
        w.append((a["dst"], a["dst"] + a["n"]))
    elif op is Op.VFILL:
        w.append((a["dst"], a["dst"] + a["n"]))
    elif op is Op.VREDUCE:
        r.append((a["src"], a["src"] + a["n"] * a["k"]))
        w.append((a["dst"], a["dst"] + a["n"]))
    elif op is Op.VMAX:
        r.append((a["src"], a["src"] + a["n"]))
        w.append((a["dst"], a["dst"] + 1))
    elif op in (Op.VMOV, Op.VEXP, Op.VRECIP, Op.VRSQRT, Op.VGELU, Op.SOFTMAX):
        r.append((a["src"], a["src"] + a["n"]))
        w.append((a["dst"], a["dst"] + a["n"]))
    elif op is Op.LAYERNORM:
        n = a["n"]
        r += [(a["src"], a["src"] + n), (a["gamma"], a["gamma"] + n), (a["beta"], a["beta"] + n)]
        w.append((a["dst"], a["dst"] + n))
    elif op is Op.ARGMAX:
        r.append((a["src"], a["src"] + a["n"]))
        w.append((REG_BASE + a["reg"], REG_BASE + a["reg"] + 1))
    elif op is Op.SETR:
        w.append((REG_BASE + a["reg"], REG_BASE + a["reg"] + 1))
    elif op is Op.OUT:
        r.append((REG_BASE + a["reg"], REG_BASE + a["reg"] + 1))
    return pim, r, w


class _Ranges:
    """A set of half-open ranges with a bounding box for quick rejection."""

    __slots__ = ("items", "lo", "hi")

    def __init__(self):
        self.clear()

    def clear(self):
        self.items: list = []
        self.lo = math.inf
        self.hi = -math.inf

    def add(self, lo: int, hi: int) -> None:
        if lo >= hi:
            return
        items = self.items
        if items and items[-1][1] == lo:  # consecutive RD_MACs: extend the last range
            items[-1] = (items[-1][0], hi)
        else:
            items.append((lo, hi))
        self.lo = min(self.lo, lo)
        self.hi = max(self.hi, hi)

    def hits(self, lo: int, hi: int) -> bool:
        if lo >= hi or hi <= self.lo or lo >= self.hi:
            return False
        return any(a < hi and lo < b for a, b in self.items)


def hazards(program: list[Instr], banks: int) -> list[int]:
    """Indices of instructions that would race with the other side (no ``SYNC`` in between).

    Used to check compiled programs: the result must be empty.
    """
    pend = {True: (_Ranges(), _Ranges()), False: (_Ranges(), _Ranges())}
    bad = []
    for index, ins in enumerate(program):
        if ins.op is Op.SYNC:
            for rs in pend.values():
                rs[0].clear()
                rs[1].clear()
            continue
        pim, reads, writes = sp_effects(ins, banks)
        other_r, other_w = pend[not pim]
        if any(other_w.hits(lo, hi) for lo, hi in reads) or any(
            other_r.hits(lo, hi) or other_w.hits(lo, hi) for lo, hi in writes
        ):
            bad.append(index)
        mine_r, mine_w = pend[pim]
        for lo, hi in reads:
            mine_r.add(lo, hi)
        for lo, hi in writes:
            mine_w.add(lo, hi)
    return bad


# ---------------------------------------------------------------------------------------------
# Program builder: instructions, tags, automatic SYNC
# ---------------------------------------------------------------------------------------------
class _Builder:
    """Appends instructions; ``collect=True`` records them in program order without any SYNC
    (the pipelined schedule places SYNCs afterwards), otherwise a SYNC is inserted before every
    instruction that races with the other side."""

    def __init__(self, banks: int, collect: bool = False):
        self.banks = banks
        self.collect = collect
        self.program: list[Instr] = []
        self.tags: list[str] = []
        self.tag = ""
        self._pend = {True: (_Ranges(), _Ranges()), False: (_Ranges(), _Ranges())}

    def sync(self) -> None:
        self.program.append(Instr(Op.SYNC))
        self.tags.append(self.tag)
        for rs in self._pend.values():
            rs[0].clear()
            rs[1].clear()

    def emit(self, op: Op, flags: int = 0, **fields) -> None:
        ins = Instr(op, fields, flags)
        if self.collect:
            self.program.append(ins)
            self.tags.append(self.tag)
            return
        pim, reads, writes = sp_effects(ins, self.banks)
        other_r, other_w = self._pend[not pim]
        if any(other_w.hits(lo, hi) for lo, hi in reads) or any(
            other_r.hits(lo, hi) or other_w.hits(lo, hi) for lo, hi in writes
        ):
            self.sync()
        mine_r, mine_w = self._pend[pim]
        for lo, hi in reads:
            mine_r.add(lo, hi)
        for lo, hi in writes:
            mine_w.add(lo, hi)
        self.program.append(ins)
        self.tags.append(self.tag)


# ---------------------------------------------------------------------------------------------
# Software pipelining: a list scheduler of the two in-order sides into SYNC intervals
# ---------------------------------------------------------------------------------------------
class _CostModel:
    """Rough duration (DRAM tCK) of instructions, only to choose where SYNC intervals end.

    ASIC: the vector-unit cost the hardware config states (``pipeline_cycles`` + element ops /
    lanes + ``seq_add_cycles`` per dependent add). PIM: column streaming at ``nCCDL``, a row
    switch (``nRTP + nRP + nRCDRDMAC``) when a MAC needs another row, transfers at the pin rate.
    Estimates need not be exact: a wrong one costs some overlap, never correctness.
    """

    def __init__(self, hw: HwConfig):
        d, t, a = hw.dram, hw.timing, hw.asic
        self.C, self.NB = d.channels, d.banks
        self.ccd = max(t.get("nCCDL", 2), t.get("nCCDS", 2), 1)
        self.miss = t.get("nRTP", 12) + t.get("nRP", 32) + t.get("nRCDRDMAC", 56)
        self.io_col = max(d.column_bytes / d.channel_gbytes_per_s / d.tck_ns, 1.0)
        self.lat = t.get("nCL", 50)
        self.asic_tck = 1.0 / a.clock_ghz / d.tck_ns
        self.lanes = a.vector_lanes
        self.pipe = 4 if a.pipeline_cycles is None else a.pipeline_cycles
        self.seq = 1 if a.seq_add_cycles is None else a.seq_add_cycles
        e = {"exp": 21, "recip": 11, "rsqrt": 17, "gelu": 40}
        e.update(a.elem_ops)
        self.e = e

    def asic(self, ins: Instr) -> float:
        op, a = ins.op, ins.args
        n = a.get("n", 0)
        e = self.e
        par = n
        seq = 0
        if op is Op.VREDUCE:
            par = n * max(a["k"] - 1, 1)
        elif op in (Op.VMAX, Op.ARGMAX):
            seq = math.ceil(math.log2(max(self.lanes, 2)))
        elif op is Op.VEXP:
            par = n * e["exp"]
        elif op is Op.VRECIP:
            par = n * e["recip"]
        elif op is Op.VRSQRT:
            par = n * e["rsqrt"]
        elif op is Op.VGELU:
            par = n * e["gelu"]
        elif op is Op.SOFTMAX:
            par, seq = n * (3 + e["exp"]), n + e["recip"]
        elif op is Op.LAYERNORM:
            par, seq = 5 * n, 2 * n + e["recip"] + e["rsqrt"] + 3
        elif op in (Op.SETR, Op.OUT):
            return self.asic_tck
        cycles = self.pipe + -(-par // self.lanes) + seq * self.seq
        return cycles * self.asic_tck

    def pim(self, ins: Instr, open_rows: list) -> tuple[tuple, float]:
        """``(channels, duration)``; updates ``open_rows`` (the row each channel streams)."""
        op, a = ins.op, ins.args
        mask = a.get("ch_mask")
        if mask is None:
            chans = (a["ch"],) if "ch" in a else tuple(range(self.C))
        else:
            chans = tuple(c for c in range(self.C) if mask >> c & 1)
        if op in (Op.MAC_ABK, Op.MAC_SBK):
            row = a["row"]
            miss = any(open_rows[c] != row for c in chans)
            for c in chans:
                open_rows[c] = row
            return chans, a["ncols"] * self.ccd + (self.miss if miss else 0)
        if op in (Op.RD_MAC, Op.WR_BIAS):
            return chans, 40.0
        if op is Op.WR_GB:
            return chans, a["ncols"] * self.io_col + 10
        for c in chans:
            open_rows[c] = None
        n = a.get("n", a.get("ncols", 1) * COL)
        if op is Op.WR_ELEM:
            return chans, n / self.C * 8 + self.miss
        return chans, -(-n // COL) * self.io_col + self.miss + self.lat


def _schedule(program: list, tags: list, banks: int, cost: _CostModel,
              limit: int) -> list[tuple[list, list]]:
    """Split a sequential instruction stream into SYNC intervals that overlap the two sides.

    Each side keeps its own program order; an instruction may join an interval only when every
    earlier (in ``program``) instruction of the other side that it conflicts with (scratchpad or
    register words: read-after-write, write-after-read, write-after-write) sits in an earlier
    interval. So no two instructions of one interval conflict across the sides, the golden
    simulator (program order) computes exactly what ``program`` computes, and :func:`hazards`
    finds nothing. Intervals are built greedily with :class:`_CostModel` times: both sides run
    what is ready; when one side stalls on an instruction the other side has already executed,
    the interval ends at the other side's first instruction boundary after the stall (a SYNC
    there costs the busy side nothing).

    Returns
    -------
    list of (list of int, list of int)
        Per interval, the PIM and the ASIC instruction indices into ``program``.
    """
    n = len(program)
    effects = [sp_effects(ins, banks) for ins in program]
    top = limit
    for _, rs, ws in effects:
        for lo, hi in rs + ws:
            if lo < REG_BASE:
                top = max(top, hi)
    size = top + 16

    def words(lo, hi):
        return (lo - REG_BASE + top, hi - REG_BASE + top) if lo >= REG_BASE else (lo, hi)

    last_w = {True: np.full(size, -1, np.int64), False: np.full(size, -1, np.int64)}
    last_r = {True: np.full(size, -1, np.int64), False: np.full(size, -1, np.int64)}
    queues: dict = {True: [], False: []}
    deps: dict = {True: [], False: []}
    for u in range(n):
        pim, rs, ws = effects[u]
        q = queues[pim]
        pos = len(q)
        ow, orr = last_w[not pim], last_r[not pim]
        dep = -1
        for lo, hi in rs:
            lo, hi = words(lo, hi)
            dep = max(dep, int(ow[lo:hi].max()))
        for lo, hi in ws:
            lo, hi = words(lo, hi)
            dep = max(dep, int(ow[lo:hi].max()), int(orr[lo:hi].max()))
        mw, mr = last_w[pim], last_r[pim]
        for lo, hi in rs:
            lo, hi = words(lo, hi)
            mr[lo:hi] = pos
        for lo, hi in ws:
            lo, hi = words(lo, hi)
            mw[lo:hi] = pos
        q.append(u)
        deps[pim].append(dep)
    P, A = queues[True], queues[False]
    dP, dA = deps[True], deps[False]
    nP, nA = len(P), len(A)
    cP = [0.0] * nP
    pchans: list = [()] * nP
    open_rows: list = [None] * cost.C
    for k, u in enumerate(P):
        pchans[k], cP[k] = cost.pim(program[u], open_rows)
    cA = [cost.asic(program[u]) for u in A]
    out = []
    p = a = 0
    while p < nP or a < nA:
        ch = [0.0] * cost.C
        tP = tA = 0.0
        i, j = p, a
        while True:
            pr = i < nP and dP[i] < a
            ar = j < nA and dA[j] < p
            if pr and ar:
                run_p = tP <= tA
            elif pr:
                if j < nA and i > dA[j] and tP >= tA:
                    break  # the ASIC waits on PIM work done in this interval: SYNC now
                run_p = True
            elif ar:
                if i < nP and j > dP[i] and tA >= tP:
                    break
                run_p = False
            else:
                break
            if run_p:
                cs = pchans[i]
                t0 = max(ch[c] for c in cs) if cs else tP
                t1 = t0 + cP[i]
                for c in cs:
                    ch[c] = t1
                if t1 > tP:
                    tP = t1
                i += 1
            else:
                tA += cA[j]
                j += 1
        out.append((P[p:i], A[a:j]))
        p, a = i, j
    return out


class _Scratch:
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


# ---------------------------------------------------------------------------------------------
# Compiled program
# ---------------------------------------------------------------------------------------------
@dataclass
class Step:
    """One model step in a compiled program."""

    start: int  # index of its first instruction
    pos: int
    token: int | None  # prompt token, or None when the token comes from the previous ARGMAX
    logits: bool


@dataclass
class CompiledProgram:
    """A compiled program plus what tools need to interpret it.

    Attributes
    ----------
    program : list of Instr
    memmap : MemoryMap
    tags : list of str
        Parallel to ``program``: ``L3.attn.qkv``, ``L3.attn.score``, ``lm_head``, ...
    scratchpad_words_used : int
    steps : list of Step
    schedule : str
        ``"pipelined"`` or ``"serial"`` (see :func:`compile_generation`).
    """

    program: list
    memmap: MemoryMap
    tags: list
    scratchpad_words_used: int
    steps: list = field(default_factory=list)
    schedule: str = "pipelined"

    def encode(self) -> bytes:
        """``program.bin`` contents."""
        return encode(self.program)

    def to_asm(self) -> str:
        """``program.asm``: assembly with comments at step and tag boundaries."""
        starts = {s.start: s for s in self.steps}
        lines, last = [], None
        for index, (ins, tag) in enumerate(zip(self.program, self.tags, strict=True)):
            if index in starts:
                s = starts[index]
                src = f"token {s.token}" if s.token is not None else f"token R{TOKEN_REG}"
                lines.append(f"# step pos={s.pos} {src}{' logits' if s.logits else ''}")
            if tag != last:
                lines.append(f"# {tag}")
                last = tag
            lines.append(ins.to_text())
        return "\n".join(lines) + "\n"

    def to_aim(self) -> str:
        """``program.aim``: the AiM trace (see :mod:`pimgpt.sw.aim`)."""
        from pimgpt.sw.aim import to_aim

        return to_aim(self.program, self.memmap.hw, header=f"{self.memmap.cfg.name}")

    def tag_counts(self, level: str = "kind") -> Counter:
        """Instruction counts per tag: ``level='kind'`` drops the layer (``attn.qkv``), ``'layer'``
        keeps only it (``L3``), ``'tag'`` the full tag."""
        def key(tag: str) -> str:
            if level == "tag":
                return tag
            head, _, rest = tag.partition(".")
            is_layer = head.startswith("L") and head[1:].isdigit()
            if level == "layer":
                return head if is_layer else tag
            return rest if is_layer else tag
        return Counter(key(t) for t in self.tags)

    def write(self, directory: str | Path) -> dict[str, Path]:
        """Write program.bin, program.asm, program.aim and memmap.yaml into ``directory``.

        All files are written to a temporary directory first and moved into place only when all
        of them are complete, so an error leaves no partial output.
        """
        directory = Path(directory)
        contents = {
            "program.bin": self.encode(),
            "program.asm": self.to_asm().encode(),
            "program.aim": self.to_aim().encode(),
            "memmap.yaml": self.memmap.to_yaml().encode(),
        }
        try:
            directory.parent.mkdir(parents=True, exist_ok=True)
            tmp = Path(tempfile.mkdtemp(prefix=".pimgpt-compile-", dir=directory.parent))
            try:
                for name, data in contents.items():
                    (tmp / name).write_bytes(data)
                directory.mkdir(exist_ok=True)
                for name in contents:
                    os.replace(tmp / name, directory / name)
            finally:
                shutil.rmtree(tmp, ignore_errors=True)
        except OSError as exc:
            raise CompileError(
                f"{directory}: cannot write the outputs ({exc.strerror or exc}); choose another "
                "output directory"
            ) from None
        return {name: directory / name for name in contents}


# ---------------------------------------------------------------------------------------------
# The compiler
# ---------------------------------------------------------------------------------------------
#: Schedules of :func:`compile_generation` / :func:`compile_decode_step`.
SCHEDULES = ("pipelined", "serial")


class _Compiler:
    def __init__(self, cfg: ModelConfig, hw: HwConfig, mm: MemoryMap,
                 schedule: str = "pipelined"):
        if schedule not in SCHEDULES:
            raise CompileError(f"unknown schedule {schedule!r}; use one of {', '.join(SCHEDULES)}")
        if cfg.family != "gpt2":
            raise CompileError(
                f"model {cfg.name} is {cfg.family}-style ({cfg.norm}, {cfg.position} positions, "
                f"{cfg.mlp}); the compiler lowers GPT-2-style models only so far (Llama lowering "
                "is not implemented yet); use the reference models in pimgpt.sim.reference"
            )
        self.cfg, self.hw, self.mm = cfg, hw, mm
        dram = hw.dram
        self.C, self.B, self.S = dram.channels, dram.banks, dram.slots
        self.G = dram.gb_elems
        self.all_ch = (1 << self.C) - 1
        self.pipelined = schedule == "pipelined"
        # Pipelined: each step is recorded in self.b without SYNCs, then scheduled into self.out.
        self.out = _Builder(self.B)
        self.b = _Builder(self.B, collect=True) if self.pipelined else self.out
        self.cost = _CostModel(hw) if self.pipelined else None
        self.d = cfg.d_model
        self.dh = cfg.d_head
        self.H = cfg.n_head
        self.eps = f32_bits(cfg.ln_eps)
        self.scale = f32_bits(np.float32(1.0 / math.sqrt(self.dh)))
        self.heads_fit_banks = self.dh % self.B == 0
        self._plan_scratch()

    # ---- scratchpad plan -----------------------------------------------------------------
    def _out_size(self, region: Region, n_out: int) -> int:
        """Words a GEMV output needs: the last RD_MAC may write past ``n_out`` (whole channels)."""
        return round_up(n_out, self.B) if len(region.chunks()) == 1 else n_out

    def _part_size(self, region: Region, n_out: int) -> int:
        t = len(region.chunks())
        return 0 if t == 1 else (t - 1) * n_out + round_up(n_out, self.B)

    def _plan_scratch(self) -> None:
        cfg, mm, d = self.cfg, self.mm, self.d
        sp = _Scratch(self.hw.asic.scratchpad_words)
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
        self.qkv = sp.alloc("qkv", self._out_size(r["attn.c_attn.weight"], 3 * d))
        self.y = sp.alloc("y", max(self._out_size(r["attn.c_proj.weight"], d),
                                   self._out_size(r["mlp.c_proj.weight"], d)))
        cap_pad = round_up(mm.context, COL)
        self.n_vchunks_max = -(-cap_pad // self.G)
        o_single = round_up(d, self.B)
        self.o = sp.alloc("o", o_single)
        self.part = sp.alloc("part", max(self._part_size(reg, n) for reg, n in (
            (r["attn.c_attn.weight"], 3 * d), (r["attn.c_proj.weight"], d),
            (r["mlp.c_fc.weight"], cfg.d_ff), (r["mlp.c_proj.weight"], d))))
        union = sp.top
        # attention phase: scores per (head, part) and the partial outputs of p . V
        kreg = mm.region(l0 + "k_cache")
        self.head_parts = []  # per head: list of (chunk t, lo, hi)
        for a in range(self.H):
            lo, hi = a * self.dh, (a + 1) * self.dh
            self.head_parts.append([(t, max(lo, s), min(hi, s + n)) for t, s, n in kreg.chunks()
                                    if max(lo, s) < min(hi, s + n)])
        self.score_len = max(round_up(mm.context, self.B), cap_pad)
        self.score_addr = []
        for a in range(self.H):
            self.score_addr.append([sp.alloc(f"score{a}.{k}", self.score_len)
                                    for k in range(len(self.head_parts[a]))])
        self.o_part = sp.alloc("o_part", 0 if self.n_vchunks_max == 1 else
                               (self.n_vchunks_max - 1) * d + o_single)
        # MLP phase
        sp.top = union
        self.u = sp.alloc("u", self._out_size(r["mlp.c_fc.weight"], cfg.d_ff))
        self.g = sp.alloc("g", cfg.d_ff)
        # LM-head phase
        sp.top = union
        wte = mm.region("wte")
        self.logits = sp.alloc("logits", self._out_size(wte, cfg.vocab))
        self.part_lm = sp.alloc("part_lm", self._part_size(wte, cfg.vocab))
        sp.check(f"model {cfg.name} at context {mm.context}")

    # ---- helpers -------------------------------------------------------------------------
    def _mask(self, remaining: int) -> int:
        """Channels holding any of the next ``remaining`` vectors of a local index."""
        nch = min(self.C, -(-remaining // self.B))
        return (1 << nch) - 1

    def _rd_vec(self, name: str, dst: int) -> None:
        region, index = self.mm.vector(name)
        n = self.mm.vec_length(name)
        self.b.emit(Op.RD_VEC, dst=dst, n=n, vec=index, **region.isa())

    def gemv(self, region: Region, x: int, dst: int, n_out: int, part: int,
             prefetch: tuple = ()) -> None:
        """``dst[0:n_out] = chunkdot(bf16(x), vectors of region)`` (no bias)."""
        b = self.b
        for name, addr in prefetch:
            self._rd_vec(name, addr)
        chunks = region.chunks()
        target = dst if len(chunks) == 1 else part
        S, nl = self.S, region.n_local
        masks = [self._mask(n_out - i * S) for i in range(nl)]
        for t, start, size in chunks:
            b.emit(Op.WR_GB, ch_mask=self.all_ch, gb_col=0, ncols=size // COL, src=x + start)
            base = target + t * n_out
            for i in range(nl):
                mask = masks[i]
                for row, col, ncols, gb_col in region.segments(i, start, start + size):
                    b.emit(Op.MAC_ABK, ch_mask=mask, row=row, col=col, ncols=ncols, gb_col=gb_col)
                b.emit(Op.RD_MAC, ch_mask=mask, dst=base + i * S)
        if len(chunks) > 1:
            b.emit(Op.VREDUCE, dst=dst, src=part, n=n_out, k=len(chunks))

    def linear(self, layer: int, name: str, x: int, dst: int, n_out: int, bias: int,
               prefetch: tuple = ()) -> None:
        region = self.mm.region(f"h.{layer}.{name}.weight")
        self.gemv(region, x, dst, n_out, self.part,
                  ((f"h.{layer}.{name}.bias", bias),) + tuple(prefetch))
        self.b.emit(Op.VADD, dst=dst, a=dst, b=bias, n=n_out)

    # ---- attention -----------------------------------------------------------------------
    def attention(self, layer: int, pos: int) -> None:
        b, mm, d, S = self.b, self.mm, self.d, self.S
        kreg = mm.region(f"h.{layer}.k_cache")
        vreg = mm.region(f"h.{layer}.v_cache")
        q, k, v = self.qkv, self.qkv + d, self.qkv + 2 * d
        npos = pos + 1
        npad = round_up(npos, COL)

        b.tag = f"L{layer}.attn.kv"
        b.emit(Op.WR_VEC, src=k, n=d, vec=pos, **kreg.isa())
        b.emit(Op.WR_ELEM, src=v, n=d, vec=0, elem=pos, **vreg.isa())

        b.tag = f"L{layer}.attn.score"
        n_tok_local = -(-npos // S)
        tok_masks = [self._mask(npos - i * S) for i in range(n_tok_local)]
        for t, start, size in kreg.chunks():
            heads = [(a, k_, lo, hi) for a in range(self.H)
                     for k_, (tt, lo, hi) in enumerate(self.head_parts[a]) if tt == t]
            if not heads:
                continue
            b.emit(Op.WR_GB, ch_mask=self.all_ch, gb_col=0, ncols=size // COL, src=q + start)
            for i in range(n_tok_local):
                mask = tok_masks[i]
                for a, k_, lo, hi in heads:
                    for row, col, ncols, gb_col in kreg.segments(i, lo, hi):
                        b.emit(Op.MAC_ABK, ch_mask=mask, row=row, col=col, ncols=ncols,
                               gb_col=gb_col)
                    b.emit(Op.RD_MAC, ch_mask=mask, dst=self.score_addr[a][k_] + i * S)

        b.tag = f"L{layer}.attn.softmax"
        for a in range(self.H):
            base = self.score_addr[a][0]
            for extra in self.score_addr[a][1:]:
                b.emit(Op.VADD, dst=base, a=base, b=extra, n=npos)
            b.emit(Op.VSCALE, dst=base, a=base, n=npos, scale_f32=self.scale)
            b.emit(Op.SOFTMAX, dst=base, src=base, n=npos)
            if npad > npos:
                b.emit(Op.VFILL, dst=base + npos, n=npad - npos, value_f32=0)

        self._av_all(vreg, npad)

    def _av_all(self, vreg: Region, npad: int) -> None:
        """``o = p . V`` of every head (the serial schedule's loop)."""
        b, d, S = self.b, self.d, self.S
        b.tag = b.tag.rsplit(".", 1)[0] + ".av"
        vchunks = [(t, s, min(n, npad - s)) for t, s, n in vreg.chunks() if s < npad]
        target = self.o if len(vchunks) == 1 else self.o_part
        for t_idx, (_t, start, size) in enumerate(vchunks):
            loaded: dict[int, int] = {}  # channel -> head whose probabilities its GB holds
            for i in range(vreg.n_local):
                remaining = d - i * S
                mask = self._mask(remaining)
                if self.heads_fit_banks:
                    self._av_uniform(vreg, i, start, size, mask, loaded)
                else:
                    self._av_fallback(vreg, i, start, size, loaded)
                b.emit(Op.RD_MAC, ch_mask=mask, dst=target + t_idx * d + i * S)
        if len(vchunks) > 1:
            b.emit(Op.VREDUCE, dst=self.o, src=self.o_part, n=d, k=len(vchunks))

    def _p_src(self, head: int, start: int) -> int:
        return self.score_addr[head][0] + start

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

    # ---- one model step ------------------------------------------------------------------
    def step(self, pos: int, token: int | None, logits: bool) -> None:
        b, mm, d, cfg = self.b, self.mm, self.d, self.cfg
        wte, wpe = mm.region("wte"), mm.region("wpe")
        b.tag = "embed"
        if token is not None:
            b.emit(Op.SETR, reg=TOKEN_REG, imm=token)
        b.emit(Op.RD_VEC, FLAG_VEC_FROM_REG, dst=self.x, n=d, vec=TOKEN_REG, **wte.isa())
        b.emit(Op.RD_VEC, dst=self.tmp, n=d, vec=pos, **wpe.isa())
        self._rd_vec("h.0.ln_1.weight", self.ln1w)
        self._rd_vec("h.0.ln_1.bias", self.ln1b)
        b.emit(Op.VADD, dst=self.x, a=self.x, b=self.tmp, n=d)
        eps = self.eps
        for layer in range(cfg.n_layer):
            p = f"h.{layer}."
            b.tag = f"L{layer}.ln1"
            b.emit(Op.LAYERNORM, dst=self.h, src=self.x, gamma=self.ln1w, beta=self.ln1b, n=d,
                   eps_f32=eps)
            b.tag = f"L{layer}.attn.qkv"
            self.linear(layer, "attn.c_attn", self.h, self.qkv, 3 * d, self.bqkv)
            self.attention(layer, pos)
            b.tag = f"L{layer}.attn.proj"
            self.linear(layer, "attn.c_proj", self.o, self.y, d, self.bproj,
                        ((p + "ln_2.weight", self.ln2w), (p + "ln_2.bias", self.ln2b)))
            b.tag = f"L{layer}.attn.residual"
            b.emit(Op.VADD, dst=self.x, a=self.x, b=self.y, n=d)
            b.tag = f"L{layer}.ln2"
            b.emit(Op.LAYERNORM, dst=self.h, src=self.x, gamma=self.ln2w, beta=self.ln2b, n=d,
                   eps_f32=eps)
            b.tag = f"L{layer}.mlp.fc"
            self.linear(layer, "mlp.c_fc", self.h, self.u, cfg.d_ff, self.bfc)
            b.tag = f"L{layer}.mlp.gelu"
            b.emit(Op.VGELU, dst=self.g, src=self.u, n=cfg.d_ff)
            b.tag = f"L{layer}.mlp.proj"
            if layer + 1 < cfg.n_layer:
                nxt = ((f"h.{layer + 1}.ln_1.weight", self.ln1w),
                       (f"h.{layer + 1}.ln_1.bias", self.ln1b))
            elif logits:
                nxt = (("ln_f.weight", self.lnfw), ("ln_f.bias", self.lnfb))
            else:
                nxt = ()
            self.linear(layer, "mlp.c_proj", self.g, self.y, d, self.bmproj, nxt)
            b.tag = f"L{layer}.mlp.residual"
            b.emit(Op.VADD, dst=self.x, a=self.x, b=self.y, n=d)
        if logits:
            b.tag = "ln_f"
            b.emit(Op.LAYERNORM, dst=self.h, src=self.x, gamma=self.lnfw, beta=self.lnfb, n=d,
                   eps_f32=eps)
            b.tag = "lm_head"
            self.gemv(wte, self.h, self.logits, cfg.vocab, self.part_lm)
            b.tag = "argmax"
            b.emit(Op.ARGMAX, reg=TOKEN_REG, src=self.logits, n=cfg.vocab)
            b.emit(Op.OUT, reg=TOKEN_REG)

    # ---- pipelined schedule ----------------------------------------------------------------
    # The same arithmetic as above, recorded in a program order that lets the two sides overlap:
    # GEMV outputs are finished group by group (reduction, bias, GELU or residual add of each
    # group of local vectors as soon as its RD_MACs are in), scores are computed in head blocks
    # (head 0 first) and each head's softmax is followed by that head's p . V, so the vector
    # unit works on head h while the PIM computes later heads' scores and earlier heads' p . V.
    # :func:`_schedule` then cuts the recording into SYNC intervals.
    def _groups(self, n_local: int) -> list[tuple[int, int]]:
        per = max(1, -(-n_local // 32))  # at most 32 groups: enough overlap, few instructions
        return [(i0, min(n_local, i0 + per)) for i0 in range(0, n_local, per)]

    def gemv_p(self, region: Region, x: int, dst: int, n_out: int, part: int,
               bias: int | None = None, prefetch: tuple = (), post=None,
               group_outer: bool = False) -> None:
        """``dst = chunkdot(bf16(x), region) (+ bias)``, then ``post(lo, n)`` per output group.

        Several input chunks: the partial sums of output group ``[i0*S, i0*S + n_g)`` lie at
        ``part + k*i0*S + t*n_g`` (chunk ``t`` of ``k``) so that one ``VREDUCE`` per group adds
        them in chunk order, as the single ``VREDUCE`` of the serial schedule does. The loops
        run chunk-outer (one GB load per chunk; outputs complete only in the last chunk's pass)
        or, with ``group_outer``, group-outer with groups of 1, 2, 4, 8, 8, ... local vectors
        (one GB load per group and chunk, but the first outputs complete early: for a heavy
        ``post`` such as GELU).
        """
        b, S = self.b, self.S
        for name, addr in prefetch:
            self._rd_vec(name, addr)
        chunks = region.chunks()
        k = len(chunks)
        nl = region.n_local
        masks = [self._mask(n_out - i * S) for i in range(nl)]
        if group_outer and k > 1:
            groups, i0, width = [], 0, 1
            while i0 < nl:
                groups.append((i0, min(nl, i0 + width)))
                i0, width = i0 + width, min(2 * width, 8)
            passes = [(chunks, g0, g1) for g0, g1 in groups]
        else:
            groups = self._groups(nl)
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

    def linear_p(self, layer: int, name: str, x: int, dst: int, n_out: int, bias: int,
                 prefetch: tuple = (), post=None, group_outer: bool = False) -> None:
        region = self.mm.region(f"h.{layer}.{name}.weight")
        self.gemv_p(region, x, dst, n_out, self.part, bias,
                    ((f"h.{layer}.{name}.bias", bias),) + tuple(prefetch), post, group_outer)

    def _residual(self, tag: str):
        def post(lo: int, n: int) -> None:
            self.b.tag = tag
            self.b.emit(Op.VADD, dst=self.x + lo, a=self.x + lo, b=self.y + lo, n=n)
        return post

    def _gelu(self, tag: str):
        def post(lo: int, n: int) -> None:
            self.b.tag = tag
            self.b.emit(Op.VGELU, dst=self.g + lo, src=self.u + lo, n=n)
        return post

    def _head_blocks(self) -> list[list[int]]:
        """Heads ``[0], [1], [2, 3], [4..7], ...``: the first softmax can start early and each
        later block's scores take no longer than the softmaxes that hide them."""
        blocks, first, width = [[0]], 1, 1
        while first < self.H:
            blocks.append(list(range(first, min(self.H, first + width))))
            first += width
            width *= 2
        return blocks

    def _scores(self, layer: int, kreg: Region, heads: list[int], npos: int) -> None:
        b, S = self.b, self.S
        b.tag = f"L{layer}.attn.score"
        q = self.qkv
        n_tok_local = -(-npos // S)
        for t, start, size in kreg.chunks():
            parts = [(a, k_, lo, hi) for a in heads
                     for k_, (tt, lo, hi) in enumerate(self.head_parts[a]) if tt == t]
            if not parts:
                continue
            b.emit(Op.WR_GB, ch_mask=self.all_ch, gb_col=0, ncols=size // COL, src=q + start)
            for i in range(n_tok_local):
                mask = self._mask(npos - i * S)
                for a, k_, lo, hi in parts:
                    for row, col, ncols, gb_col in kreg.segments(i, lo, hi):
                        b.emit(Op.MAC_ABK, ch_mask=mask, row=row, col=col, ncols=ncols,
                               gb_col=gb_col)
                    b.emit(Op.RD_MAC, ch_mask=mask, dst=self.score_addr[a][k_] + i * S)

    def _softmax(self, layer: int, a: int, npos: int, npad: int) -> None:
        b = self.b
        b.tag = f"L{layer}.attn.softmax"
        base = self.score_addr[a][0]
        for extra in self.score_addr[a][1:]:
            b.emit(Op.VADD, dst=base, a=base, b=extra, n=npos)
        b.emit(Op.VSCALE, dst=base, a=base, n=npos, scale_f32=self.scale)
        b.emit(Op.SOFTMAX, dst=base, src=base, n=npos)
        if npad > npos:
            b.emit(Op.VFILL, dst=base + npos, n=npad - npos, value_f32=0)

    def _av_head(self, layer: int, vreg: Region, a: int, vchunks: list) -> None:
        """``o[a*dh : (a+1)*dh] = p_a . V``: only the channels holding head ``a``'s dimensions."""
        b, S, B, dh = self.b, self.S, self.B, self.dh
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
                dst = (self.o + dim0 if nvc == 1 else
                       self.o_part + a * nvc * dh + t_idx * dh + dim0 - lo_dim)
                b.emit(Op.RD_MAC, ch_mask=chm, dst=dst)
        if nvc > 1:
            b.emit(Op.VREDUCE, dst=self.o + lo_dim, src=self.o_part + a * nvc * dh, n=dh, k=nvc)

    def attention_p(self, layer: int, pos: int) -> None:
        b, mm, d = self.b, self.mm, self.d
        kreg = mm.region(f"h.{layer}.k_cache")
        vreg = mm.region(f"h.{layer}.v_cache")
        k, v = self.qkv + d, self.qkv + 2 * d
        npos = pos + 1
        npad = round_up(npos, COL)
        b.tag = f"L{layer}.attn.kv"
        b.emit(Op.WR_VEC, src=k, n=d, vec=pos, **kreg.isa())
        b.emit(Op.WR_ELEM, src=v, n=d, vec=0, elem=pos, **vreg.isa())
        blocks = self._head_blocks()
        if not self.heads_fit_banks:
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

    def step_p(self, pos: int, token: int | None, logits: bool) -> None:
        b, mm, d, cfg = self.b, self.mm, self.d, self.cfg
        wte, wpe = mm.region("wte"), mm.region("wpe")
        b.tag = "embed"
        if token is not None:
            b.emit(Op.SETR, reg=TOKEN_REG, imm=token)
        b.emit(Op.RD_VEC, FLAG_VEC_FROM_REG, dst=self.x, n=d, vec=TOKEN_REG, **wte.isa())
        b.emit(Op.RD_VEC, dst=self.tmp, n=d, vec=pos, **wpe.isa())
        self._rd_vec("h.0.ln_1.weight", self.ln1w)
        self._rd_vec("h.0.ln_1.bias", self.ln1b)
        b.emit(Op.VADD, dst=self.x, a=self.x, b=self.tmp, n=d)
        eps = self.eps
        for layer in range(cfg.n_layer):
            p = f"h.{layer}."
            b.tag = f"L{layer}.ln1"
            b.emit(Op.LAYERNORM, dst=self.h, src=self.x, gamma=self.ln1w, beta=self.ln1b, n=d,
                   eps_f32=eps)
            b.tag = f"L{layer}.attn.qkv"
            self.linear_p(layer, "attn.c_attn", self.h, self.qkv, 3 * d, self.bqkv)
            self.attention_p(layer, pos)
            b.tag = f"L{layer}.attn.proj"
            self.linear_p(layer, "attn.c_proj", self.o, self.y, d, self.bproj,
                          ((p + "ln_2.weight", self.ln2w), (p + "ln_2.bias", self.ln2b)),
                          self._residual(f"L{layer}.attn.residual"))
            b.tag = f"L{layer}.ln2"
            b.emit(Op.LAYERNORM, dst=self.h, src=self.x, gamma=self.ln2w, beta=self.ln2b, n=d,
                   eps_f32=eps)
            b.tag = f"L{layer}.mlp.fc"
            self.linear_p(layer, "mlp.c_fc", self.h, self.u, cfg.d_ff, self.bfc,
                          post=self._gelu(f"L{layer}.mlp.gelu"), group_outer=True)
            b.tag = f"L{layer}.mlp.proj"
            if layer + 1 < cfg.n_layer:
                nxt = ((f"h.{layer + 1}.ln_1.weight", self.ln1w),
                       (f"h.{layer + 1}.ln_1.bias", self.ln1b))
            elif logits:
                nxt = (("ln_f.weight", self.lnfw), ("ln_f.bias", self.lnfb))
            else:
                nxt = ()
            self.linear_p(layer, "mlp.c_proj", self.g, self.y, d, self.bmproj, nxt,
                          self._residual(f"L{layer}.mlp.residual"))
        if logits:
            b.tag = "ln_f"
            b.emit(Op.LAYERNORM, dst=self.h, src=self.x, gamma=self.lnfw, beta=self.lnfb, n=d,
                   eps_f32=eps)
            b.tag = "lm_head"
            self.gemv_p(wte, self.h, self.logits, cfg.vocab, self.part_lm)
            b.tag = "argmax"
            b.emit(Op.ARGMAX, reg=TOKEN_REG, src=self.logits, n=cfg.vocab)
            b.emit(Op.OUT, reg=TOKEN_REG)

    # ---- driver ----------------------------------------------------------------------------
    def here(self) -> int:
        """Index in the final program at which the next step starts."""
        return len(self.out.program)

    def run_step(self, pos: int, token: int | None, logits: bool) -> None:
        if not self.pipelined:
            self.step(pos, token, logits)
            return
        self.step_p(pos, token, logits)
        rec, out = self.b, self.out
        intervals = _schedule(rec.program, rec.tags, self.B, self.cost,
                              self.hw.asic.scratchpad_words)
        prog, tags = out.program, out.tags
        for k, (pim, asic) in enumerate(intervals):
            first = [rec.program[u] for u in pim + asic]
            if k:
                prog.append(Instr(Op.SYNC))
                tags.append(tags[-1])
            elif prog and prog[-1].op is not Op.SYNC:
                # Between steps: a SYNC only if the step's first interval races with the end
                # of the previous step.
                tail = len(prog)
                while tail and prog[tail - 1].op is not Op.SYNC:
                    tail -= 1
                if hazards(prog[tail:] + first, self.B):
                    prog.append(Instr(Op.SYNC))
                    tags.append(rec.tags[(pim + asic)[0]])
            prog += first
            tags += [rec.tags[u] for u in pim + asic]
        rec.program, rec.tags = [], []

    def finish(self, steps: list[Step]) -> CompiledProgram:
        out = self.out
        out.tag = "end"
        out.sync()
        out.emit(Op.EOC)
        return CompiledProgram(program=out.program, memmap=self.mm, tags=out.tags,
                               scratchpad_words_used=self.sp.high, steps=steps,
                               schedule="pipelined" if self.pipelined else "serial")


def _check_memmap(cfg: ModelConfig, hw: HwConfig, memmap: MemoryMap | None) -> MemoryMap:
    if memmap is None:
        return map_model(cfg, hw)
    if memmap.cfg != cfg or memmap.hw.dram != hw.dram:
        raise CompileError("the memory map was made for another model or hardware; remap it")
    return memmap


def compile_generation(cfg: ModelConfig, hw: HwConfig, prompt, new_tokens: int,
                       memmap: MemoryMap | None = None,
                       schedule: str = "pipelined") -> CompiledProgram:
    """Prefill ``prompt`` one token per step, then decode ``new_tokens - 1`` more steps.

    The last prefill step and every decode step compute the LM head, ``ARGMAX`` into ``R0`` and
    ``OUT`` it; decode steps read the token embedding by register (``FLAG_VEC_FROM_REG``). The
    output stream of the program is the ``new_tokens`` generated tokens.

    Parameters
    ----------
    cfg, hw : ModelConfig, HwConfig
    prompt : sequence of int
        Token ids, at least one, each below ``cfg.vocab``.
    new_tokens : int
        Tokens to generate (>= 1).
    memmap : MemoryMap, optional
        Placement to use (default ``map_model(cfg, hw)``).
    schedule : {"pipelined", "serial"}
        ``"pipelined"`` (default) overlaps vector-unit work with PIM work (software pipelining,
        see the module notes); ``"serial"`` is the earlier schedule, kept for comparison. Both
        compute the same values bit for bit.

    Returns
    -------
    CompiledProgram
    """
    prompt = list(prompt)
    if not prompt:
        raise CompileError("the prompt is empty; give at least one token id")
    for tok in prompt:
        if isinstance(tok, bool) or not isinstance(tok, (int, np.integer)) or not (
            0 <= tok < cfg.vocab
        ):
            raise CompileError(
                f"prompt token {tok!r} is not an id in 0..{cfg.vocab - 1} of model {cfg.name}"
            )
    if isinstance(new_tokens, bool) or not isinstance(new_tokens, int) or new_tokens < 1:
        raise CompileError(f"new_tokens must be a positive integer, got {new_tokens!r}")
    mm = _check_memmap(cfg, hw, memmap)
    total = len(prompt) + new_tokens - 1
    if total > mm.context:
        raise CompileError(
            f"{len(prompt)} prompt tokens + {new_tokens} new tokens need {total} positions but "
            f"the KV cache holds {mm.context} (model {cfg.name}); shorten the prompt or generate "
            "fewer tokens"
        )
    comp = _Compiler(cfg, hw, mm, schedule)
    steps = []
    for pos, tok in enumerate(prompt):
        last = pos == len(prompt) - 1
        steps.append(Step(comp.here(), pos, int(tok), last))
        comp.run_step(pos, int(tok), last)
    for k in range(1, new_tokens):
        pos = len(prompt) - 1 + k
        steps.append(Step(comp.here(), pos, None, True))
        comp.run_step(pos, None, True)
    return comp.finish(steps)


def compile_decode_step(cfg: ModelConfig, hw: HwConfig, context: int | None = None,
                        memmap: MemoryMap | None = None,
                        schedule: str = "pipelined") -> CompiledProgram:
    """One decode step attending ``context`` tokens (position ``context - 1``).

    The KV cache is assumed to hold the earlier ``context - 1`` tokens. The step's token is set by
    ``SETR R0, 0`` and read by register, as in a generation step; the step computes the LM head.

    Parameters
    ----------
    cfg, hw : ModelConfig, HwConfig
    context : int, optional
        Tokens attended, 1..cfg.ctx (default ``cfg.ctx``).
    memmap : MemoryMap, optional
    schedule : {"pipelined", "serial"}
        See :func:`compile_generation`.

    Returns
    -------
    CompiledProgram
    """
    if context is None:
        context = cfg.ctx
    if isinstance(context, bool) or not isinstance(context, int) or not 1 <= context <= cfg.ctx:
        raise CompileError(f"context {context!r} is out of range for {cfg.name}; use 1..{cfg.ctx}")
    mm = _check_memmap(cfg, hw, memmap)
    if context > mm.context:
        raise CompileError(
            f"context {context} exceeds the memory map's KV-cache capacity {mm.context}; remap"
        )
    comp = _Compiler(cfg, hw, mm, schedule)
    steps = [Step(0, context - 1, 0, True)]
    comp.run_step(context - 1, 0, True)
    return comp.finish(steps)

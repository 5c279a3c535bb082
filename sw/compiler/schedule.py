"""Schedules: where the ``SYNC``\\ s of a recorded step go, and how finely the lowering splits work.

The lowering (:mod:`.lowering`) records a step in program order without any ``SYNC``; a
:class:`Schedule` decides

* how the lowering splits work: the output groups of a GEMV (a group's bias and post-processing
  are emitted as soon as its results are read) and the head groups of attention;
* how the recording becomes a program: ``serial`` appends it through a :class:`.Builder` (a
  ``SYNC`` at every race), ``pipelined`` cuts it into ``SYNC`` intervals with the list scheduler
  :func:`list_schedule`, which overlaps the two sides.

Both compute the same values bit for bit: the recording's order is a valid sequential order, and
every placement keeps each side's order and puts conflicting instructions of the two sides in
different intervals.
"""

from __future__ import annotations

import numpy as np

from pimgpt.core.config import HwConfig
from pimgpt.core.dram import derived_timing, mode_switching
from pimgpt.core.isa import REGISTER_OPS, Instr, Op
from pimgpt.core.vu.cost import VectorUnitModel
from pimgpt.sw.mapper import COL, element_address

from .program import Builder, effects, hazards


# ---------------------------------------------------------------------------------------------
# Cost model of the list scheduler
# ---------------------------------------------------------------------------------------------
class CostModel:
    """Rough duration (DRAM tCK) of instructions, only to choose where SYNC intervals end.

    ASIC: the vector unit's cost model (:mod:`pimgpt.core.vu.cost`, shared with the perf
    simulator). PIM, from the configured DRAM timing (:func:`pimgpt.core.dram.derived_timing`):
    MAC columns stream at ``nCCDL``; a MAC that needs another row pays ``nRTP + nRP +
    nRCDRDMAC``; transfers over the pins take ``nIO`` per 32-byte burst plus their latency
    (``nCWL`` into the device, ``nCL`` out of it); an access outside the MAC stream also opens
    a row; entering or leaving a register-mode visit costs ``nMODCH`` where the standard
    switches modes (:meth:`pim`). Estimates need not be exact: a wrong one costs some overlap or
    a slower choice, never correctness.
    """

    def __init__(self, hw: HwConfig):
        d = hw.dram
        t = derived_timing(hw)
        self.C, self.NB = d.channels, d.banks
        self.G, self.RE = d.gb_elems, d.row_elems
        self.ccd = max(t["nCCDL"], t["nCCDS"], 1)
        self.miss = t["nRTP"] + t["nRP"] + t["nRCDRDMAC"]
        self.rfc, self.refi = t["nRFC"], t["nREFI"]
        self.io = t["nIO"]
        self.rd_lat, self.wr_lat = t["nCL"], t["nCWL"]
        # fp32 accumulator values per 32-byte burst
        self.acc_per_burst = d.column_bytes // 4
        self.asic_tck = 1.0 / hw.asic.clock_ghz / d.tck_ns
        self.vu = VectorUnitModel(hw)
        # a channel switching between array and register-access mode (docs/paper.md)
        self.modch = t["nMODCH"] if mode_switching(hw) else 0

    def asic(self, ins: Instr) -> float:
        return self.vu.cost(ins).cycles * self.asic_tck

    def pim(self, ins: Instr, open_rows: list, modes: list | None = None) -> tuple[tuple, float]:
        """``(channels, duration)``; updates ``open_rows`` (the row each channel streams) and
        ``modes`` (per channel, whether its last instruction was a register one: ``WR_GB``,
        ``RD_MAC``, ``WR_BIAS``; ``None``: not tracked). Where the standard switches modes, an
        instruction that moves a channel into or out of a register-mode visit pays ``nMODCH``,
        and only the visit's first ``RD_MAC`` pays the read latency ``nCL``."""
        op, a = ins.op, ins.args
        mask = a.get("ch_mask")
        if mask is None:
            chans = (a["ch"],) if "ch" in a else tuple(range(self.C))
        else:
            chans = tuple(c for c in range(self.C) if mask >> c & 1)
        chans, t = self._pim(op, a, chans, open_rows)
        if modes is None or not self.modch:
            return chans, t
        reg = op in REGISTER_OPS
        switch = any(modes[c] != reg for c in chans)
        for c in chans:
            modes[c] = reg
        if op is Op.RD_MAC and not switch:
            t -= self.rd_lat  # a later read of the visit streams behind the first: nCL once
        return chans, t + (self.modch if switch else 0)

    def _pim(self, op: Op, a: dict, chans: tuple, open_rows: list) -> tuple[tuple, float]:
        if op in (Op.MAC_ABK, Op.MAC_SBK):
            row = a["row"]
            miss = any(open_rows[c] != row for c in chans)
            for c in chans:
                open_rows[c] = row
            return chans, a["ncols"] * self.ccd + (self.miss if miss else 0)
        if op in (Op.RD_MAC, Op.WR_BIAS):
            bursts = -(-a["nacc"] * self.NB // self.acc_per_burst)
            return chans, bursts * self.io + (self.rd_lat if op is Op.RD_MAC else self.wr_lat)
        if op is Op.WR_GB:
            return chans, a["ncols"] * self.io + self.wr_lat
        n = a.get("n", a.get("ncols", 1) * COL)
        if op is Op.WR_ELEM:
            return self._wr_elem(a, n, open_rows)
        for c in chans:
            open_rows[c] = None
        return chans, -(-n // COL) * self.io + self.miss + self.rd_lat

    def _wr_elem(self, a: dict, n: int, open_rows: list) -> tuple[tuple, float]:
        """One burst per element, each in the channel of its vector; a channel whose elements
        lie in the rows its last ``WR_ELEM`` wrote keeps them open (the V cache's append writes
        the same rows, instruction after instruction), else it opens them (the rows of
        :func:`~pimgpt.sw.mapper.element_address`, the region layout of ``docs/isa.md``)."""
        ch, bank, row, _ = element_address(
            a["region_row"], a["n_local"], a["vec_len"], np.arange(a["vec"], a["vec"] + n),
            a["elem"], channels=self.C, banks=self.NB, row_elems=self.RE, gb_elems=self.G)
        per: dict = {}  # channel -> [elements, {(bank, row) written}]
        for c, b, r in zip(ch.tolist(), bank.tolist(), row.tolist(), strict=True):
            cur = per.setdefault(c, [0, set()])
            cur[0] += 1
            cur[1].add((b, r))
        chans = sorted(per)
        t = 0.0
        for c in chans:
            count, rows = per[c]
            key = ("elem", frozenset(rows))
            t = max(t, count * self.io + (self.miss if open_rows[c] != key else 0))
            open_rows[c] = key
        return tuple(chans), t


# ---------------------------------------------------------------------------------------------
# The list scheduler
# ---------------------------------------------------------------------------------------------
def _side_queues(program: list, banks: int) -> tuple[dict, dict]:
    """Per side, its instruction indices in order and, for each, the position in the other
    side's queue of the last earlier instruction it conflicts with (-1 if none).

    The words are tracked per elementary segment (between consecutive range ends of the
    program), which every range covers whole: the same answers as per word, in arrays as long
    as the program has distinct range ends rather than as the scratchpad."""
    eff = [effects(ins, banks) for ins in program]
    ends = sorted({e for _, rs, ws in eff for r in rs + ws for e in r})
    seg = {e: k for k, e in enumerate(ends)}
    size = max(len(ends), 1)
    last_w = {True: np.full(size, -1, np.int64), False: np.full(size, -1, np.int64)}
    last_r = {True: np.full(size, -1, np.int64), False: np.full(size, -1, np.int64)}
    queues: dict = {True: [], False: []}
    deps: dict = {True: [], False: []}
    for u, (pim, rs, ws) in enumerate(eff):
        q = queues[pim]
        pos = len(q)
        ow, orr = last_w[not pim], last_r[not pim]
        rs = [(seg[lo], seg[hi]) for lo, hi in rs]
        ws = [(seg[lo], seg[hi]) for lo, hi in ws]
        dep = -1
        for lo, hi in rs:
            dep = max(dep, int(ow[lo:hi].max()))
        for lo, hi in ws:
            dep = max(dep, int(ow[lo:hi].max()), int(orr[lo:hi].max()))
        mw, mr = last_w[pim], last_r[pim]
        for lo, hi in rs:
            mr[lo:hi] = pos
        for lo, hi in ws:
            mw[lo:hi] = pos
        q.append(u)
        deps[pim].append(dep)
    return queues, deps


def list_schedule(program: list, banks: int, cost: CostModel) -> list[tuple[list, list]]:
    """Split a sequential instruction stream into SYNC intervals that overlap the two sides.

    Each side keeps its own program order; an instruction may join an interval only when every
    earlier (in ``program``) instruction of the other side that it conflicts with (scratchpad or
    register words: read-after-write, write-after-read, write-after-write) sits in an earlier
    interval. So no two instructions of one interval conflict across the sides, the golden
    simulator (program order) computes exactly what ``program`` computes, and :func:`hazards`
    finds nothing. Intervals are built greedily with :class:`CostModel` times: both sides run
    what is ready; when one side stalls on an instruction the other side has already executed,
    the interval ends at the other side's first instruction boundary after the stall (a SYNC
    there costs the busy side nothing).

    Returns
    -------
    list of (list of int, list of int)
        Per interval, the PIM and the ASIC instruction indices into ``program``.
    """
    return _list_schedule(program, banks, cost)[0]


def schedule_time(program: list, banks: int, cost: CostModel) -> float:
    """Estimated duration (tCK) of ``program`` placed by :func:`list_schedule`: per interval,
    the longer side by :class:`CostModel`, plus the refreshes of that time (``nRFC`` per
    ``nREFI``) that the intervals' idle PIM windows of at least ``nRFC / 2`` cannot hold."""
    return _list_schedule(program, banks, cost)[1]


def _list_schedule(program: list, banks: int, cost: CostModel) -> tuple[list, float]:
    queues, deps = _side_queues(program, banks)
    P, A = queues[True], queues[False]
    dP, dA = deps[True], deps[False]
    nP, nA = len(P), len(A)
    cP = [0.0] * nP
    pchans: list = [()] * nP
    open_rows: list = [None] * cost.C
    modes: list = [False] * cost.C
    for k, u in enumerate(P):
        pchans[k], cP[k] = cost.pim(program[u], open_rows, modes)
    cA = [cost.asic(program[u]) for u in A]
    out = []
    total = idle = 0.0
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
        total += max(tP, tA)
        if tA - tP >= cost.rfc / 2:
            idle += tA - tP
        p, a = i, j
    if cost.refi:
        # refresh: nRFC per nREFI of the piece's time, less what windows of an idle PIM side
        # (at least nRFC / 2 long, as the refresh policy takes them) can hold for free
        total += max(0.0, total * cost.rfc / cost.refi - idle)
    return out, total


# ---------------------------------------------------------------------------------------------
# Schedule strategies
# ---------------------------------------------------------------------------------------------
class Schedule:
    """How the lowering splits a step and how its recording becomes a program.

    Subclasses set the lowering knobs and implement :meth:`place`.
    """

    name = ""
    #: Where the value projection goes (:meth:`pimgpt.sw.compiler.lowering.Lowering.
    #: _qkv_attention`): ``None`` lets the cost model choose per step, ``True`` / ``False``
    #: force it late (under the first softmaxes) or in the QKV GEMV (the serial schedule's).
    v_late: bool | None = None
    #: The split value projection must be estimated this much faster (a fraction of the
    #: estimate) to be chosen: it loads the QKV input twice and adds a register-mode visit,
    #: which the cost model prices only roughly (llama-2-7b ctx 128: estimated 0.06 % faster,
    #: measured 0.5 % slower).
    v_late_margin = 0.01
    #: Late softmax normalisation (``SOFTMAXU``, :mod:`.attention`) where the configuration
    #: allows it: ``None`` lets the cost model choose per step, ``True`` / ``False`` force it on
    #: or off (no trial; off is the serial schedule's).
    late_norm: bool | None = None
    #: ... and must be estimated this much faster: its VMUL sits between p . V and the
    #: projection, and the idle window it shortens held refreshes the estimate does not see
    #: (gpt2-xl ctx 1024: estimated 0.01 % faster, measured 0.3 % slower; gpt2-large ctx 1024:
    #: estimated 1.4 % faster, measured 0.6 % slower; gpt3-medium ctx 2048: 2.6 %, the same).
    late_norm_margin = 0.02

    def gemv_groups(self, n_local: int, align: int | None = None,
                    tail: bool = True) -> list[tuple[int, int]]:
        """Output groups ``[(i0, i1), ...]`` of the local vectors of a GEMV: a group's results
        are read and post-processed (bias, GELU, residual) as soon as they are in; ``align``:
        local vectors per input chunk of the GEMV that consumes the outputs; ``tail``: without
        ``align``, whether a short tail group follows the bulk."""
        raise NotImplementedError

    def read_groups(self, n_local: int, batch: int) -> list[tuple[int, int]]:
        """Output groups of a GEMV whose results are only read and scanned (the LM head's
        ARGMAX), ``batch``: local vectors per batch of accumulators. Here: one group, scanned at
        the end."""
        return [(0, n_local)]

    def head_groups(self, n_head: int, group: int = 1,
                    align: int | None = None) -> list[list[list[int]]]:
        """Candidate partitions of the heads into *head groups* (whole groups of ``group`` query
        heads that share a K/V head), each a list of groups in order. The lowering computes the
        scores, softmax and ``p . V`` of attention group by group, software-pipelined (see
        :mod:`.attention`), with the candidate that :meth:`estimate` finds fastest."""
        raise NotImplementedError

    def estimate(self, program: list) -> float:
        """Estimated duration (tCK) of a recorded piece of a step (no SYNCs) once placed."""
        raise NotImplementedError

    def place(self, out: Builder, program: list, tags: list) -> None:
        """Append the recorded step ``program`` (no SYNCs) to ``out`` with SYNCs placed."""
        raise NotImplementedError


class SerialSchedule(Schedule):
    """One output group per GEMV, all heads' scores then all softmaxes then ``p . V``; a ``SYNC``
    at every race. The vector unit and the PIM rarely overlap: kept for comparison."""

    name = "serial"
    v_late = False  # the value projection stays in the QKV GEMV: no trial
    late_norm = False  # SOFTMAX's own product: no trial

    def gemv_groups(self, n_local, align=None, tail=True):
        return [(0, n_local)]

    def head_groups(self, n_head, group=1, align=None):
        return [[list(range(n_head))]]

    def place(self, out, program, tags):
        for ins, tag in zip(program, tags, strict=True):
            out.append(ins, tag)


class PipelinedSchedule(Schedule):
    """Software pipelining (the default): the same arithmetic split finer and recorded in an
    order that exposes overlap, then cut into SYNC intervals by :func:`list_schedule`.

    * GEMV outputs finish group by group (bias, then GELU or the residual add per group), so the
      vector unit works while the PIM streams later rows: groups aligned with the consuming
      GEMV's input chunks (fc -> GELU -> MLP projection), else a bulk and a short tail (where
      the lowering asks for it: not before a LayerNorm, ``Lowering.residual_tail``);
    * attention: head groups software-pipelined (the PIM computes ``p . V`` of group g and
      the scores of group g+2 while the vector unit computes the softmaxes of group g+1), the
      number of groups chosen per step by the cost model (:meth:`head_groups`).
    """

    name = "pipelined"
    av_after_each_block = True
    #: A GEMV whose consumer needs all its outputs (LayerNorm, attention) reads them in two
    #: groups: the bulk, post-processed while the PIM streams the last 1/tail_fraction, which
    #: then leaves a short post-processing on the critical path. Each group costs one
    #: register-mode visit.
    tail_fraction = 8
    #: Most head groups of attention tried (:meth:`head_groups`); more than 8 never won on the
    #: shipped models (their p . V reopens too many V rows).
    max_head_groups = 8
    #: Most head groups tried with one ``p . V`` of all heads after their softmaxes
    max_merged_groups = 4

    def __init__(self, hw: HwConfig):
        self.hw = hw
        self.cost = CostModel(hw)

    def gemv_groups(self, n_local, align=None, tail=True):
        if align:  # the consumer's chunk t can start once group t is post-processed
            return [(i0, min(n_local, i0 + align)) for i0 in range(0, n_local, align)]
        if not tail:
            return [(0, n_local)]
        tail = min(n_local - 1, -(-n_local // self.tail_fraction))
        return [(0, n_local - tail), (n_local - tail, n_local)] if tail > 0 else [(0, n_local)]

    def read_groups(self, n_local, batch):
        # The scan of a group runs while the PIM computes the groups after it; the last group's
        # is exposed. Last group: the last batch of accumulators (``batch`` local vectors, or
        # the remainder); before it one batch, whose PIM time hides the scan of all the rest
        # (scanning a local vector's outputs takes ~1/25 of computing them on gpt2-small); the
        # rest one group. Each boundary costs a SYNC (the PIM drains): three groups measured
        # best on gpt2-small (134.29 us/token against 134.81 with a group per batch).
        last = n_local - (n_local % batch or batch)
        cuts = sorted({0, max(0, last - batch), max(0, last), n_local})
        return list(zip(cuts[:-1], cuts[1:], strict=True))

    def head_groups(self, n_head, group=1, align=None):
        # p . V of group g runs on the PIM while the vector unit computes the softmaxes of
        # group g+1: more, smaller groups hide more of the softmaxes (and the per-row cost of a
        # SOFTMAX falls with its rows), but each group opens again the K rows of its scores and
        # the V rows it shares with other groups (a row holds a token block of several local
        # indices). Candidates: the K/V heads in 1..max_head_groups even parts, and (``align``:
        # K/V heads per K-vector chunk) one group per chunk, whose K rows no other group opens.
        units = n_head // group
        out = []
        for n in range(1, min(units, self.max_head_groups) + 1):
            cuts = [round(k * units / n) * group for k in range(n + 1)]
            out.append([list(range(cuts[k], cuts[k + 1])) for k in range(n)])
        if align and align < units:
            cuts = list(range(0, units, align)) + [units]
            chunked = [list(range(a * group, b * group))
                       for a, b in zip(cuts[:-1], cuts[1:], strict=True)]
            if chunked not in out:
                out.append(chunked)
        # The softmaxes of the first group run under the scores of the later groups only, those
        # of any other group also under the p . V of the group before it: with a short group
        # (a chunk's remainder) first, the long group's softmaxes get the short group's p . V
        # as well as the K/V appends to hide under.
        for groups in list(out):
            if len(groups[0]) > len(groups[-1]) and groups[::-1] not in out:
                out.append(groups[::-1])
        return out

    def estimate(self, program):
        return schedule_time(program, self.hw.dram.banks, self.cost)

    def place(self, out, program, tags):
        banks = self.hw.dram.banks
        intervals = list_schedule(program, banks, self.cost)
        prog, otags = out.program, out.tags
        for k, (pim, asic) in enumerate(intervals):
            members = pim + asic
            first = [program[u] for u in members]
            if k:
                out.sync(otags[-1])
            elif prog and prog[-1].op is not Op.SYNC:
                # Between steps: a SYNC only if the step's first interval races with the end
                # of the previous step.
                tail = len(prog)
                while tail and prog[tail - 1].op is not Op.SYNC:
                    tail -= 1
                if hazards(prog[tail:] + first, banks):
                    out.sync(tags[members[0]])
            prog += first
            otags += [tags[u] for u in members]


#: Schedules of :func:`pimgpt.sw.compiler.compile_generation`, by name.
SCHEDULES = ("pipelined", "serial")


def make_schedule(name: str, hw: HwConfig) -> Schedule:
    """The schedule called ``name`` for ``hw``."""
    if name == "serial":
        return SerialSchedule()
    return PipelinedSchedule(hw)

"""Event-driven, DRAM-command-accurate execution of a pimgpt program.

How a program runs
------------------
* Two in-order issue sides: PIM instructions go to the channels' command queues, ASIC
  instructions to the vector unit; the two overlap freely between ``SYNC``\\ s. ``SYNC`` (and
  ``EOC``) waits until every earlier instruction of both sides has completed. A PIM instruction
  that reads scratchpad words also waits for earlier PIM instructions (since the last ``SYNC``)
  that write any of them (the ISA's ``effects``): the compiler only places ``SYNC`` between the
  two sides.
* Each PIM instruction expands, per selected channel, into DRAM commands of the configured
  standard (:mod:`.expand`); every command issues at the earliest cycle the standard's timing
  table allows (:mod:`.device`: ready-time tables, closed-form trains, open-page rows, mode
  switches, refresh, lockstep channels). Nothing is ticked.
* ``dram.early_activate``: the controller looks ahead to the next ``MAC_ABK`` across register
  instructions (``WR_GB``, ``RD_MAC``, ``WR_BIAS``), ASIC instructions and single-bank vector
  accesses (``WR_VEC``, ``RD_VEC``) of that ``MAC_ABK``'s row. A register instruction that enters
  register mode first opens that row, so the precharge and activation run during the
  register-mode visit instead of after it; a vector access of that row (a K-cache append before
  the scores that stream it) opens it in every bank with one all-bank activation, not in its own
  bank alone (the others would then open one bank group at a time, each ``ACT4`` a whole
  ``nFAW`` window, after its last write).
* ``dram.act_overlap``: each bank gets a second row buffer (subarray group; row ``r`` uses buffer
  ``r % 2``). While a ``MAC_ABK`` streams row ``r``, the row of the next ``MAC_ABK`` on another row
  (a ``SYNC`` between does not stop it: opening a row changes no data) is precharged/activated in
  the other buffer, its commands placed between the MAC commands (the train is split around them).
* The PIM engine's pipeline (``asic.pim_dispatch_latency``): a PIM instruction's first command
  leaves that long after its dispatch; read data (RD, RDMAC16) complete ``asic.pim_return_latency``
  after the standard's ``done_after`` (in the scratchpad); ``WR_ELEM`` waves leave at the wave
  generator's pace (``asic.elem_scan_cycles``, ``asic.elem_wave_cycles``, :mod:`.expand`).
  PIM instructions are accepted in order, and a scratchpad writer (``RD_VEC``, ``RD_MAC``) only
  while fewer than ``asic.pim_read_entries`` earlier ones have reads in flight (the RTL's
  hazard tracker, ``hdl/pim_hazard.py``).
* ASIC: one vector unit (:mod:`.asic`, the shared cost model: the cycles of the instruction's
  microcode, :mod:`pimgpt.core.vu.cost`), at ``asic.clock_ghz``, rounded up to DRAM tCK, the
  common time base.

The modules: :mod:`.device` (channel state and command issue), :mod:`.memo` (replay of repeated
instruction bodies), :mod:`.expand` (instruction -> commands), :mod:`.asic` (vector unit), this
one (dispatch, barriers, hazards, the result).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np

from pimgpt.core import dram as S
from pimgpt.core.config import HwConfig
from pimgpt.core.isa import PIM_SP_READERS, PIM_SP_WRITERS, REGISTER_OPS, Op, effects
from pimgpt.sim.perf.asic import AsicModel
from pimgpt.sim.perf.device import Device
from pimgpt.sim.perf.expand import Expander

PIM_SIDE, ASIC_SIDE, BARRIER = 0, 1, 2
#: PIM instructions that write / read the scratchpad (from the ISA metadata).
SP_WRITERS, SP_READERS = PIM_SP_WRITERS, PIM_SP_READERS


def span_union(start: np.ndarray, end: np.ndarray) -> int:
    """Length of the union of the half-open intervals ``[start[i], end[i])``."""
    if not len(start):
        return 0
    order = np.argsort(start, kind="stable")
    s, e = start[order], end[order]
    reach = np.maximum.accumulate(e)
    # An interval starts a new merged run when it begins after everything before it ended.
    prev = np.concatenate(([s[0]], reach[:-1]))
    new = np.concatenate(([True], s[1:] > prev[1:]))
    run = np.cumsum(new) - 1
    lo = s[new]
    hi = np.zeros(len(lo), dtype=np.int64)
    np.maximum.at(hi, run, e)
    return int(np.maximum(hi - lo, 0).sum())


@dataclass
class PerfResult:
    """Timing, counts and per-instruction spans of one simulated program."""

    hw_name: str
    tck_ns: float
    cycles: int
    counts: dict  # command name -> commands issued (summed over channels)
    bank_col_accesses: int  # bank-column accesses by row commands (MAC16 counts one per bank)
    bank_acts: int  # bank activations (ACT16 counts one per bank)
    bank_pres: int  # banks precharged while open
    mac_bank_cols: int  # MAC columns x banks
    io_bytes_in: int  # bytes ASIC -> DRAM over the pins
    io_bytes_out: int  # bytes DRAM -> ASIC
    asic_ops: int
    asic_words: int
    asic_busy: int  # tCK the vector unit was busy
    slots: int
    nccdl: int
    n_instr: int
    ops: list = field(repr=False, default_factory=list)  # Op per instruction
    start: np.ndarray = field(repr=False, default=None)  # dispatch cycle of each instruction
    end: np.ndarray = field(repr=False, default=None)  # completion cycle of each instruction
    side: np.ndarray = field(repr=False, default=None)  # PIM_SIDE / ASIC_SIDE / BARRIER
    chmask: np.ndarray = field(repr=False, default=None)  # channels of PIM instructions
    busy: np.ndarray = field(repr=False, default=None)  # own time of each instruction (tCK)
    pins: np.ndarray = field(repr=False, default=None)  # bytes over the pins per instruction
    log: list | None = field(repr=False, default=None)
    wall_s: float = 0.0
    channels: int = 0
    cols_per_row: int = 64
    marks: dict = field(repr=False, default_factory=dict)  # instruction index -> counters

    @property
    def op_codes(self) -> np.ndarray:
        """The opcodes as integers (computed once)."""
        codes = getattr(self, "_codes", None)
        if codes is None:
            codes = self._codes = np.array(self.ops, dtype=np.int64)
        return codes

    def counters(self) -> dict:
        """The additive event counters of the whole run (see :meth:`PerfEngine.counters`)."""
        return {"counts": dict(self.counts), "bank_acts": self.bank_acts,
                "bank_pres": self.bank_pres, "mac_bank_cols": self.mac_bank_cols,
                "bank_col_accesses": self.bank_col_accesses, "io_bytes_in": self.io_bytes_in,
                "io_bytes_out": self.io_bytes_out, "asic_ops": self.asic_ops,
                "asic_words": self.asic_words}

    @property
    def latency_ns(self) -> float:
        return self.cycles * self.tck_ns

    @property
    def row_hit_rate(self) -> float:
        """Fraction of bank-column accesses that found their row already open."""
        if not self.bank_col_accesses:
            return 0.0
        return max(0.0, 1.0 - self.bank_acts / self.bank_col_accesses)

    @property
    def mac_bytes(self) -> int:
        return self.mac_bank_cols * 32

    @property
    def floor_cycles(self) -> float:
        """Bank-bandwidth floor: MAC bytes / (slots x 32 B per nCCDL)."""
        return self.mac_bank_cols / self.slots * self.nccdl

    @property
    def mac_utilization(self) -> float:
        """Achieved fraction of the bank-bandwidth floor."""
        return self.floor_cycles / self.cycles if self.cycles else 0.0

    def pim_busy(self, lo: int = 0, hi: int | None = None) -> int:
        """tCK during which at least one PIM instruction of ``[lo, hi)`` was in flight (the
        union of their spans, from dispatch to completion)."""
        hi = self.n_instr if hi is None else hi
        pim = self.side[lo:hi] == PIM_SIDE
        return span_union(self.start[lo:hi][pim], self.end[lo:hi][pim])

    @property
    def pim_busy_ns(self) -> float:
        return self.pim_busy() * self.tck_ns


class PerfEngine:
    """Simulator of one hardware configuration; reusable across programs.

    Parameters
    ----------
    hw : HwConfig
        Hardware configuration (DRAM organisation, timing and standard, ASIC,
        ``dram.act_overlap``).
    memo : bool
        Replay repeated instruction bodies from canonical channel states (:mod:`.memo`); the
        results are identical either way. False issues every command in full (the reference
        the memo is tested against, and for timing the simulator itself).
    """

    def __init__(self, hw: HwConfig, memo: bool = True):
        if not isinstance(hw, HwConfig):
            raise TypeError(f"hw must be a HwConfig, got {type(hw).__name__}")
        self.hw = hw
        self.regs = [0] * 16
        self.asic = AsicModel(hw, self.regs)
        self.dev = Device(hw, memo=memo)
        self.expand = Expander(self.dev, hw, self.regs)
        self.std = self.dev.std
        self.C, self.NB, self.NS = hw.dram.channels, hw.dram.banks, self.dev.NS
        # Instructions that may open the next MAC row ahead (``dram.early_activate``): register
        # instructions before their visit, single-bank vector accesses of that very row.
        ahead = hw.dram.early_activate
        self.early = frozenset(REGISTER_OPS) if self.std.modes and ahead else frozenset()
        self.vec_ahead = frozenset(VEC_AHEAD_OPS) if ahead else frozenset()

    @property
    def states(self) -> list:
        """Per channel its :class:`~.device.ChannelState` (channels in lockstep share one)."""
        return self.dev.states

    def _asic(self, ins) -> int:
        """Busy time (tCK) of one vector-unit instruction (from ``pimgpt.core.vu.cost``)."""
        return self.asic.run(ins)

    def counters(self) -> dict:
        """Snapshot of the additive event counters (for per-range energy)."""
        return {**self.dev.counters(), "io_bytes_in": self.expand.io_in,
                "io_bytes_out": self.expand.io_out, "asic_ops": self.asic.ops,
                "asic_words": self.asic.words}

    def run(self, program, log: bool = False, marks=()) -> PerfResult:
        """Simulate ``program`` (a list of :class:`pimgpt.core.isa.Instr`).

        Parameters
        ----------
        program : list of Instr
            The program; ``EOC`` (or the end of the list) ends it.
        log : bool
            Keep the command log (``result.log``) for the checker and the timeline.
        marks : iterable of int
            Instruction indices at which to snapshot the event counters (``result.marks``), e.g.
            the first instruction of each generation step.

        Returns
        -------
        PerfResult
        """
        try:
            return self._run(program, log, marks)
        except BaseException:
            if self.dev.memo is not None:
                self.dev.memo.discard()  # counters pending in shared transitions
            raise

    def _run(self, program, log: bool, marks) -> PerfResult:
        wall0 = time.perf_counter()
        n = len(program)
        dev, ex, asic = self.dev, self.expand, self.asic
        dev.reset()
        dev.log = [] if log else None
        ex.io_in = ex.io_out = 0
        asic.reset()
        self.regs[:] = [0] * len(self.regs)
        all_mask = (1 << self.C) - 1
        # The PIM engine's pipeline: its first DRAM command leaves this long after a barrier.
        dispatch = self.hw.asic.pim_dispatch_latency
        # Python lists while running (numpy item assignment costs more), arrays in the result.
        start, end, chm, busy, pins = ([0] * n for _ in range(5))
        side = [PIM_SIDE] * n
        ops = [ins.op for ins in program]
        next_mac = (_lookahead(program, self.NS > 1, self.early, self.vec_ahead,
                               self.expand.vec_rows)
                    if self.NS > 1 or self.early or self.vec_ahead else None)
        barrier = 0  # both sides dispatch at or after this cycle
        pim_done = 0  # completion of every PIM instruction so far
        # The PIM engine accepts instructions in order; a scratchpad writer takes one of
        # ``entries`` hazard-tracker entries until its reads have landed (completions below).
        accept = 0
        entries = self.hw.asic.pim_read_entries
        in_flight: list = []
        # [instruction, completion, (lo, hi) once a reader needed it] of the PIM scratchpad
        # writes since the last SYNC.
        sp_writes = []
        asic_free = 0
        handlers = ex.handlers
        marks = set(marks)
        snaps = {}
        sync, eoc = int(Op.SYNC), int(Op.EOC)
        for i, ins in enumerate(program):
            if marks and i in marks:
                snaps[i] = self.counters()
            op = ops[i]
            if op >= 0x20:
                t0 = asic_free if asic_free > barrier else barrier
                dur = self._asic(ins)
                start[i], end[i], side[i], busy[i] = t0, t0 + dur, ASIC_SIDE, dur
                asic_free = t0 + dur
                continue
            if op == sync or op == eoc:
                b = pim_done if pim_done > asic_free else asic_free
                if b < barrier:
                    b = barrier
                start[i], end[i], side[i] = barrier, b, BARRIER
                barrier = b
                sp_writes = []
                # The refreshes of the channels' idle windows (the policy's) are issued before
                # the merge: after it, every command is at or after the barrier.
                dev.refresh_all(barrier)
                dev.merge(barrier)
                if op == eoc:
                    n = i + 1
                    break
                continue
            t_min = barrier if barrier > accept else accept
            if sp_writes and op in SP_READERS:
                t_min = self._after_writes(ins, sp_writes, t_min)
            if op in SP_WRITERS:
                in_flight = [c for c in in_flight if c > t_min]
                if len(in_flight) >= entries:  # wait for the entry that frees first
                    in_flight.sort()
                    t_min = in_flight[len(in_flight) - entries]
                    in_flight = [c for c in in_flight if c > t_min]
            accept = t_min
            a = ins.args
            mask = a.get("ch_mask", None)
            if mask is None:
                mask = 1 << a["ch"] if "ch" in a else all_mask
            dev.own = 0
            io0 = ex.io_in + ex.io_out
            # Dispatched at t_min, its first command leaves the PIM engine's pipeline later.
            _, e0 = handlers[op](ins, t_min + dispatch, mask, next_mac[i] if next_mac else None)
            # The PIM side is busy with an instruction from its dispatch: a wait for a refresh
            # begun in an idle window, or for the bank timing of earlier commands, counts.
            start[i], end[i], chm[i], busy[i] = t_min, e0, mask, dev.own
            pins[i] = ex.io_in + ex.io_out - io0
            if e0 > pim_done:
                pim_done = e0
            if op in SP_WRITERS:
                sp_writes.append([ins, e0, None])
                in_flight.append(e0)
        start, end, chm, busy, pins = (np.array(x[:n], dtype=np.int64)
                                       for x in (start, end, chm, busy, pins))
        side = np.array(side[:n], dtype=np.int8)
        total = max(pim_done, asic_free, barrier)
        # Refreshes that fall due before the end still cost energy.
        dev.refresh_all(total, end=True)
        cnt = self.counters()
        d = self.hw.dram
        res = PerfResult(
            hw_name=self.hw.name, tck_ns=d.tck_ns, cycles=int(total), counts=cnt["counts"],
            bank_col_accesses=cnt["bank_col_accesses"], bank_acts=cnt["bank_acts"],
            bank_pres=cnt["bank_pres"], mac_bank_cols=cnt["mac_bank_cols"],
            io_bytes_in=cnt["io_bytes_in"], io_bytes_out=cnt["io_bytes_out"],
            asic_ops=cnt["asic_ops"], asic_words=cnt["asic_words"],
            asic_busy=int(busy[side == ASIC_SIDE].sum()), slots=d.slots,
            nccdl=self.std.timing["nCCDL"], n_instr=n, ops=ops[:n], start=start,
            end=end, side=side, chmask=chm, busy=busy, pins=pins,
            log=dev.log, channels=self.C, cols_per_row=d.cols_per_row, marks=snaps,
        )
        res.wall_s = time.perf_counter() - wall0
        return res

    def _after_writes(self, ins, sp_writes: list, t_min: int) -> int:
        """The later of ``t_min`` and the completion of every write in ``sp_writes`` (entries
        ``[instruction, completion, range or None]``) that overlaps what ``ins`` reads."""
        lo, hi = self._sp_range(ins)
        for w in sp_writes:
            rng = w[2]
            if rng is None:
                rng = w[2] = self._sp_range(w[0])
            if rng[0] < hi and lo < rng[1] and w[1] > t_min:
                t_min = w[1]
        return t_min

    def _sp_range(self, ins) -> tuple:
        """Scratchpad words ``[lo, hi)`` a PIM instruction reads or writes (ISA metadata)."""
        _, reads, writes = effects(ins, self.NB)
        for space, lo, hi in writes or reads:
            if space == "sp":
                return lo, hi
        return 0, 0


#: Single-bank vector accesses that open the next ``MAC_ABK``'s row in every bank when they
#: access that row (``dram.early_activate``; :meth:`.expand.Expander._vec`).
VEC_AHEAD_OPS = (Op.WR_VEC, Op.RD_VEC)
assert {S.CMD[c] for c in ("WRGB", "RDMAC16", "WRMAC16")} == {
    S.CMD[c] for c in S.STANDARDS["gddr6-aim"].register_mode}


def _lookahead(program, macs: bool, early: frozenset, vec: frozenset = frozenset(),
               vec_rows=None) -> list:
    """For each MAC_ABK (when ``macs``), the ``(row, ch_mask)`` of the next MAC_ABK on another row
    (or channels) before the next EOC, SYNCs included; for each instruction of ``early`` or
    ``vec``, that of the next MAC_ABK if only instructions of ``early``, ASIC instructions and
    instructions of ``vec`` that access that MAC_ABK's row alone lie between (no SYNC; else
    ``None``). ``vec_rows(ins)``: the ``(channel, rows)`` an instruction of ``vec`` accesses
    (``None``: not known before it runs). A vector access of another row ends the run of the
    instructions before it: it would close the row they open, in its bank."""
    out = [None] * len(program)
    nxt = None  # next MAC_ABK before the next barrier
    nxt_other = None  # the first MAC_ABK after ``nxt`` on another row (or channels)
    reg_only = True  # only early/ASIC instructions between here and ``nxt``
    eoc, mac = int(Op.EOC), int(Op.MAC_ABK)
    early = frozenset(int(op) for op in early)
    vec = frozenset(int(op) for op in vec)
    i = len(program)
    for ins in reversed(program):
        i -= 1
        op = ins.op
        if op == mac:
            a = ins.args
            here = (a["row"], a["ch_mask"])
            if macs:
                # The next MAC_ABK on another row (or channels): the next instructions may stream
                # more columns of this row first, and the row to open ahead is the one after.
                out[i] = nxt_other = nxt_other if nxt == here else nxt
            nxt, reg_only = here, True
        elif op in early or op in vec:
            if reg_only:
                out[i] = nxt
                if op in vec:  # the run goes on only across an access of nxt's row alone
                    acc = vec_rows(ins) if nxt is not None and vec_rows is not None else None
                    reg_only = (acc is not None and acc[1] == {nxt[0]}
                                and nxt[1] >> acc[0] & 1 == 1)
        elif op < 0x20:
            if op == eoc:
                nxt = nxt_other = None
                reg_only = True
            else:
                # Any other PIM instruction, SYNC included, ends a register-only run. ``nxt`` is
                # kept across a SYNC (it orders data, and opening a row changes none): a MAC_ABK's
                # second row buffer opens the row of one after it. A register visit does not: in
                # the idle window the barrier leaves, the refresh policy would close the row it
                # opened (an activation more, nothing saved).
                reg_only = False
    return out


def simulate(program, hw: HwConfig, log: bool = False) -> PerfResult:
    """Simulate ``program`` on ``hw``; see :class:`PerfEngine`."""
    return PerfEngine(hw).run(program, log=log)


__all__ = ["PerfEngine", "PerfResult", "simulate", "span_union", "PIM_SIDE", "ASIC_SIDE",
           "BARRIER"]

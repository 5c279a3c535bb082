"""DRAM command set and timing rules of the PIM channels, written as data.

The ASIC's channel scheduler (:mod:`pimgpt.hdl.controller`) issues every command at the earliest
cycle these rules allow; the cocotb DRAM-protocol monitor (``sim/cocotb_lib/dram_monitor.py``)
checks every channel's command bus against the same rules, and :func:`reference_schedule` is a
pure-Python model of the in-order scheduler used to test that issue cycles are the *earliest* legal
ones, not just legal. All latencies come from the ``timing`` section of the hardware config (tCK
cycles); one RTL clock cycle is one tCK.

A rule ``Rule(prev, nxt, scope, latency)`` says: a command in class ``nxt`` may issue no earlier
than ``latency`` cycles after a command in class ``prev``, where ``scope`` says which pairs it
relates:

* ``"bank"``: the same bank (an all-bank command touches every bank of its channel);
* ``"bg"`` / ``"other_bg"``: different banks of the same / of another bank group (an all-bank or
  channel-wide command counts as the same bank group as everything);
* ``"channel"``: any two commands of the channel.

Four-activate window: at most four ACTs in any ``nFAW`` window; an all-bank ``ACTAB`` needs an
empty window and fills it (AiM's ACT16 draws the power of four activations).

Refresh is not modelled (no REF commands are issued); see ``docs/rtl.md``.
"""

from __future__ import annotations

from dataclasses import dataclass

from amaranth.lib import enum

from pimgpt.config import HwConfig


class DramOp(enum.Enum, shape=4):
    """Commands on a channel's command bus (AiM names in brackets)."""

    NOP = 0
    ACT = 1  # activate one bank's row
    ACTAB = 2  # activate the same row in every bank of the channel [ACT16]
    PRE = 3  # precharge one bank
    PREA = 4  # precharge every bank
    RD = 5  # read one column to the data bus
    WR = 6  # write one column (element mask) from the data bus
    WRAB = 7  # write one column to every bank [WR_ABK]
    MAC = 8  # one bank: acc += column . GB column [MAC]
    MACAB = 9  # every bank: acc += column . GB column [MAC16]
    RDCP = 10  # copy a bank column into the global buffer [RDCP]
    WRCP = 11  # copy a global-buffer column into a bank [WRCP]
    WRGB = 12  # write a global-buffer column from the data bus [WRGB]
    RDMAC = 13  # read (and clear) every bank's accumulator [RDMAC16]
    WRMAC = 14  # write every bank's accumulator (bias) [WRMAC16]


#: Commands that need an open row in their bank(s).
ROW_OPS = frozenset({DramOp.RD, DramOp.WR, DramOp.WRAB, DramOp.MAC, DramOp.MACAB, DramOp.RDCP,
                     DramOp.WRCP})
#: Column commands (they occupy a column slot: nCCD applies between any two).
COLUMN_OPS = ROW_OPS | {DramOp.WRGB, DramOp.RDMAC, DramOp.WRMAC}
#: Commands that act on every bank of the channel.
ALL_BANK_OPS = frozenset({DramOp.ACTAB, DramOp.PREA, DramOp.WRAB, DramOp.MACAB, DramOp.WRGB,
                          DramOp.RDMAC, DramOp.WRMAC})
#: Commands whose data crosses the data bus towards the ASIC / from the ASIC.
BUS_READS = frozenset({DramOp.RD, DramOp.RDMAC})
BUS_WRITES = frozenset({DramOp.WR, DramOp.WRAB, DramOp.WRGB, DramOp.WRMAC})
#: Commands that read / write the DRAM array.
ARRAY_READS = frozenset({DramOp.RD, DramOp.MAC, DramOp.MACAB, DramOp.RDCP})
ARRAY_WRITES = frozenset({DramOp.WR, DramOp.WRAB, DramOp.WRCP})
#: Commands that read / write the global buffer.
GB_READS = frozenset({DramOp.MAC, DramOp.MACAB, DramOp.WRCP})
GB_WRITES = frozenset({DramOp.WRGB, DramOp.RDCP})
#: Commands that read / write the MAC accumulators.
ACC_READS = frozenset({DramOp.RDMAC})
ACC_WRITES = frozenset({DramOp.MAC, DramOp.MACAB, DramOp.WRMAC})

#: Timing classes tracked per bank by the scheduler (a command's class for bank-scope rules).
BANK_CLASSES = ("ACT", "PRE", "RD", "MAC", "RDCP", "WR", "WRCP")
_BANK_CLASS = {
    DramOp.ACT: "ACT", DramOp.ACTAB: "ACT", DramOp.PRE: "PRE", DramOp.PREA: "PRE",
    DramOp.RD: "RD", DramOp.MAC: "MAC", DramOp.MACAB: "MAC", DramOp.RDCP: "RDCP",
    DramOp.WR: "WR", DramOp.WRAB: "WR", DramOp.WRCP: "WRCP",
}


def bank_class(op: DramOp) -> str | None:
    """The per-bank timing class of ``op`` (``None`` for channel-wide commands)."""
    return _BANK_CLASS.get(op)


@dataclass(frozen=True)
class Rule:
    """``nxt`` may issue ``latency`` cycles after ``prev`` at the earliest, within ``scope``."""

    prev: frozenset
    nxt: frozenset
    scope: str
    latency: int
    name: str


def _s(*ops: DramOp) -> frozenset:
    return frozenset(ops)


def timing_rules(hw: HwConfig, mac_latency: int = 1) -> list[Rule]:
    """The timing rules of one channel, latencies from ``hw.timing`` (tCK).

    Parameters
    ----------
    hw : HwConfig
        Hardware configuration; its ``timing`` dict supplies every latency.
    mac_latency : int
        Cycles from a MAC command until its product has reached the accumulator (a property of the
        bank's MAC pipeline, not of the DRAM): ``RDMAC`` waits that long after the last MAC.

    Returns
    -------
    list of Rule
        Rules with a positive latency.
    """
    if not isinstance(mac_latency, int) or mac_latency < 1:
        raise ValueError(f"mac_latency must be a positive integer, got {mac_latency!r}")
    t = hw.timing
    wr_land = t["nCWL"] + t["nBL"]  # cycles until write data has reached the array / buffer
    act, pre = _s(DramOp.ACT, DramOp.ACTAB), _s(DramOp.PRE, DramOp.PREA)
    rules = [
        # Row cycle of one bank.
        Rule(act, act, "bank", t["nRC"], "nRC"),
        Rule(act, pre, "bank", t["nRAS"], "nRAS"),
        Rule(pre, act, "bank", t["nRP"], "nRP"),
        Rule(act, _s(DramOp.RD), "bank", t["nRCDRD"], "nRCDRD"),
        Rule(act, _s(DramOp.MAC, DramOp.MACAB), "bank", t["nRCDRDMAC"], "nRCDRDMAC"),
        Rule(act, _s(DramOp.RDCP), "bank", t["nRCDRDCP"], "nRCDRDCP"),
        Rule(act, _s(DramOp.WR, DramOp.WRAB), "bank", t["nRCDWR"], "nRCDWR"),
        Rule(act, _s(DramOp.WRCP), "bank", t["nRCDWRCP"], "nRCDWRCP"),
        Rule(ARRAY_READS, pre, "bank", t["nRTP"], "nRTP"),
        Rule(ARRAY_WRITES, pre, "bank", wr_land + t["nWR"], "nCWL+nBL+nWR"),
        Rule(ARRAY_WRITES, ARRAY_READS, "bank", wr_land + t["nWTRL"], "nCWL+nBL+nWTRL"),
        # Activations between banks.
        Rule(act, act, "bg", t["nRRDL"], "nRRDL"),
        Rule(act, act, "other_bg", t["nRRDS"], "nRRDS"),
        # Column slots and data-bus turnarounds.
        Rule(COLUMN_OPS, COLUMN_OPS, "bg", t["nCCDL"], "nCCDL"),
        Rule(COLUMN_OPS, COLUMN_OPS, "other_bg", t["nCCDS"], "nCCDS"),
        Rule(BUS_WRITES, BUS_READS, "bg", wr_land + t["nWTRL"], "nCWL+nBL+nWTRL"),
        Rule(BUS_WRITES, BUS_READS, "other_bg", wr_land + t["nWTRS"], "nCWL+nBL+nWTRS"),
        Rule(BUS_READS, BUS_WRITES, "channel", t["nCL"] + t["nBL"] - t["nCWL"], "nCL+nBL-nCWL"),
        # Global buffer and accumulators: data must have landed before it is used.
        Rule(GB_WRITES, GB_READS, "channel", wr_land, "nCWL+nBL"),
        Rule(ACC_WRITES - _s(DramOp.WRMAC), ACC_READS, "channel", mac_latency, "mac_latency"),
        Rule(_s(DramOp.WRMAC), _s(DramOp.MAC, DramOp.MACAB), "channel", wr_land, "nCWL+nBL"),
    ]
    return [r for r in rules if r.latency > 0]


def bank_group(hw: HwConfig, bank: int) -> int:
    """Bank group of ``bank``: groups are contiguous runs of ``banks // bank_groups`` banks."""
    return bank // (hw.dram.banks // hw.dram.bank_groups)


def read_latency(hw: HwConfig) -> int:
    """Cycles from a bus read (RD, RDMAC) until its data has been received: ``nCL + nBL``."""
    return hw.timing["nCL"] + hw.timing["nBL"]


# ---------------------------------------------------------------------------------------------
# Pure-Python timing model (used by the protocol monitor and to test the RTL scheduler)
# ---------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Command:
    """One command on a channel's bus: ``cycle``, ``op``, target ``bank`` and ``row`` (if any)."""

    cycle: int
    op: DramOp
    bank: int = 0
    row: int = 0
    col: int = 0


def touches_banks(op: DramOp) -> bool:
    """Whether ``op`` acts on bank state (rows, array) rather than only on channel-wide buffers."""
    return op not in (DramOp.NOP, DramOp.WRGB, DramOp.RDMAC, DramOp.WRMAC)


def op_banks(hw: HwConfig, op: DramOp, bank: int) -> list[int]:
    """Banks whose timing ``op`` on ``bank`` is subject to: every bank for all-bank commands, bank
    0 as the representative of channel-wide commands, else ``bank``."""
    if op in ALL_BANK_OPS:
        return list(range(hw.dram.banks)) if touches_banks(op) else [0]
    return [bank]


def relates(hw: HwConfig, scope: str, op_a: DramOp, bank_a: int, op_b: DramOp, bank_b: int) -> bool:
    """Whether a rule of ``scope`` relates ``op_a`` on ``bank_a`` to ``op_b`` on ``bank_b``."""
    if scope == "channel":
        return True
    if scope == "bank":
        return bank_a == bank_b and touches_banks(op_a) and touches_banks(op_b)
    same_bg = (op_a in ALL_BANK_OPS or op_b in ALL_BANK_OPS
               or bank_group(hw, bank_a) == bank_group(hw, bank_b))
    if scope == "bg":
        return same_bg
    if scope == "other_bg":
        return not same_bg
    raise ValueError(f"unknown rule scope {scope!r}")


def pair_latency(hw: HwConfig, rules: list[Rule], prev: DramOp, prev_bank: int, nxt: DramOp,
                 nxt_bank: int) -> int:
    """Minimum distance (cycles) from ``prev`` on ``prev_bank`` to ``nxt`` on ``nxt_bank``
    (one bank of ``op_banks(nxt)``); 0 when no rule relates them."""
    best = 0
    for rule in rules:
        if prev in rule.prev and nxt in rule.nxt:
            for pb in op_banks(hw, prev, prev_bank):
                if relates(hw, rule.scope, prev, pb, nxt, nxt_bank):
                    best = max(best, rule.latency)
    return best


class ChannelTiming:
    """Timing state of one channel: when could each command issue, and did one issue too early.

    Parameters
    ----------
    hw : HwConfig
        Hardware configuration.
    mac_latency : int
        See :func:`timing_rules`.
    """

    def __init__(self, hw: HwConfig, mac_latency: int = 1):
        self.hw = hw
        self.rules = timing_rules(hw, mac_latency)
        self.banks = hw.dram.banks
        self.faw = hw.timing["nFAW"]
        self.history: list[Command] = []
        self.acts: list[int] = []  # issue cycles of ACTs (ACTAB counts four)
        self.open_row: list[int | None] = [None] * self.banks
        # last[(op, bank)] = cycle of the latest command of that op on that bank
        self.last: dict[tuple[DramOp, int], int] = {}
        self._lat: dict[tuple, int] = {}

    def _pair(self, prev, prev_bank, nxt, nxt_bank) -> int:
        key = (prev, prev_bank, nxt, nxt_bank)
        if key not in self._lat:
            self._lat[key] = pair_latency(self.hw, self.rules, prev, prev_bank, nxt, nxt_bank)
        return self._lat[key]

    def earliest(self, op: DramOp, bank: int = 0) -> tuple[int, str]:
        """The earliest cycle ``op`` on ``bank`` may issue after the history, and why."""
        best, why = 0, "none"
        for (prev_op, prev_bank), cycle in self.last.items():
            for nb in op_banks(self.hw, op, bank):
                lat = self._pair(prev_op, prev_bank, op, nb)
                if lat and cycle + lat > best:
                    best, why = cycle + lat, f"{lat} after {prev_op.name}@{cycle}"
        if op in (DramOp.ACT, DramOp.ACTAB) and self.acts:
            need = 1 if op == DramOp.ACT else 4
            window = self.acts[-(5 - need):] if len(self.acts) >= 5 - need else []
            if window and window[0] + self.faw > best:
                best, why = window[0] + self.faw, "nFAW"
        if self.history and self.history[-1].cycle + 1 > best:
            best, why = self.history[-1].cycle + 1, "one command per cycle"
        return best, why

    def state_error(self, op: DramOp, bank: int, row: int) -> str | None:
        """A row-state error of ``op``: column access to a closed/other row, ACT to an open bank."""
        if not touches_banks(op):
            return None
        for b in op_banks(self.hw, op, bank):
            if op in (DramOp.ACT, DramOp.ACTAB) and self.open_row[b] is not None:
                return f"{op.name} to bank {b} whose row {self.open_row[b]} is still open"
            if op in ROW_OPS and self.open_row[b] != row:
                return f"{op.name} to bank {b} row {row} but the open row is {self.open_row[b]}"
        return None

    def issue(self, cmd: Command) -> str | None:
        """Record ``cmd``; return a one-line violation message, or ``None`` if it was legal."""
        error = self.state_error(cmd.op, cmd.bank, cmd.row)
        if error is None:
            earliest, why = self.earliest(cmd.op, cmd.bank)
            if cmd.cycle < earliest:
                error = (f"{cmd.op.name} bank {cmd.bank} at cycle {cmd.cycle}, earliest legal "
                         f"{earliest} ({why})")
        self.history.append(cmd)
        self.last[(cmd.op, 0 if cmd.op in ALL_BANK_OPS else cmd.bank)] = cmd.cycle
        if cmd.op == DramOp.ACT:
            self.acts.append(cmd.cycle)
        elif cmd.op == DramOp.ACTAB:
            self.acts.extend([cmd.cycle] * 4)
        if touches_banks(cmd.op):
            for b in op_banks(self.hw, cmd.op, cmd.bank):
                if cmd.op in (DramOp.ACT, DramOp.ACTAB):
                    self.open_row[b] = cmd.row
                elif cmd.op in (DramOp.PRE, DramOp.PREA):
                    self.open_row[b] = None
        return error


@dataclass(frozen=True)
class ColumnRequest:
    """A column command the scheduler is asked to perform (it adds the ACT/PRE it needs)."""

    op: DramOp
    bank: int = 0
    row: int = 0
    col: int = 0


def needed_command(open_row: list, req: ColumnRequest) -> DramOp:
    """The next command the in-order scheduler issues for ``req`` given the open rows.

    Open-page policy: a column command whose bank(s) hold its row issues directly; otherwise the
    bank (one-bank request) or every bank (all-bank request, ``PREA``) with an open row is
    precharged, then the row is activated (``ACT`` or ``ACTAB``).
    """
    if req.op not in ROW_OPS:
        return req.op
    if req.op in ALL_BANK_OPS:
        if all(r == req.row for r in open_row):
            return req.op
        return DramOp.PREA if any(r is not None for r in open_row) else DramOp.ACTAB
    r = open_row[req.bank]
    if r == req.row:
        return req.op
    return DramOp.PRE if r is not None else DramOp.ACT


def reference_schedule(hw: HwConfig, requests: list[ColumnRequest], mac_latency: int = 1,
                       start: int = 0) -> list[Command]:
    """Commands of the in-order scheduler for ``requests`` (all queued at ``start``), each at its
    earliest legal cycle."""
    state = ChannelTiming(hw, mac_latency)
    out = []
    for req in requests:
        while True:
            op = needed_command(state.open_row, req)
            cycle, _ = state.earliest(op, req.bank)
            cmd = Command(max(cycle, start), op, req.bank, req.row, req.col)
            error = state.issue(cmd)
            assert error is None, error
            out.append(cmd)
            if op == req.op:
                break
    return out

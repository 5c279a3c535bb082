"""DRAM-protocol monitor: checks every command on a channel's command bus against the standard.

:class:`ProtocolChecker` is pure Python and independent of the RTL scheduler's counters: it keeps
the issue cycle of the latest command of each kind on each bank and, for every new command,
evaluates each row of the configured standard (:func:`pimgpt.core.dram.build_standard`) directly
(scope = common channel / bank group / bank of the two commands' footprints), plus the activation
window, one command per cycle, the row state (no ``ACT`` to an open bank, no column command to a
closed bank, no ``REFab`` with a row open) and the channel mode (each command in the mode the
standard requires; ``MODREG``/``MODARR`` switch it). :class:`DramMonitor` feeds it from a running
simulation: it wakes up only when the system's ``mon{c}_count`` changes (once per command), so a
long run costs one Python call per DRAM command, not per cycle.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from pimgpt.core import dram as S
from pimgpt.core.config import HwConfig

__all__ = ["Violation", "ProtocolChecker", "DramMonitor"]


@dataclass(frozen=True)
class Violation:
    """One protocol error: where and what."""

    channel: int
    cycle: int
    command: str
    message: str

    def __str__(self) -> str:
        return f"ch{self.channel} cycle {self.cycle} {self.command}: {self.message}"


@dataclass
class ProtocolChecker:
    """Timing/state checker of one channel.

    Parameters
    ----------
    hw : HwConfig
        Hardware configuration (the standard is evaluated against it).
    channel : int
        Channel number (for messages).
    """

    hw: HwConfig
    channel: int = 0
    violations: list = field(default_factory=list)
    commands: list = field(default_factory=list)  # (cycle, name, fpi, row, col)

    def __post_init__(self):
        self.std = S.build_standard(self.hw)
        d = self.hw.dram
        self.nb, self.bpg = d.banks, d.banks // d.bank_groups
        self.rows = []
        self.window = None
        for row, lat in self.std.rows:
            if row.window:
                self.window = (lat, row.window)
            elif row.preceding == (S.ALL,) and row.following == (S.ALL,):
                continue  # checked as "one command per cycle"
            else:
                self.rows.append((row.scope, set(S.expand(row.preceding)),
                                  set(S.expand(row.following)), lat, row.note or row.latency))
        self.last: dict = {}  # (command, bank) -> latest issue cycle touching that bank
        self.acts: list = []  # window entries (cycles), weight-expanded
        self.open_row = [None] * self.nb
        self.prev_cycle = None
        self.mode = S.ARRAY_MODE
        self.enters = {S.COMMANDS[c]: m for m, c in enumerate(self.std.switch_to) if c >= 0}

    def banks_of(self, name: str, fpi: int) -> list:
        level = S.FOOTPRINT[name]
        if level == S.CHANNEL:
            return list(range(self.nb))
        if level == S.BANKGROUP:
            return list(range(fpi * self.bpg, (fpi + 1) * self.bpg))
        return [fpi]

    def _related_banks(self, scope: str, banks: list) -> list:
        if scope == "channel":
            return list(range(self.nb))
        if scope == "bankgroup":
            groups = {b // self.bpg for b in banks}
            return [b for b in range(self.nb) if b // self.bpg in groups]
        return banks  # bank / subarray (one row buffer per bank)

    def earliest(self, name: str, fpi: int = 0) -> int:
        """The earliest cycle at which ``name`` on ``fpi`` satisfies every timing row."""
        banks = self.banks_of(name, fpi)
        t = 0 if self.prev_cycle is None else self.prev_cycle + 1
        for scope, pre, fol, lat, _ in self.rows:
            if name not in fol or lat <= 0:
                continue
            for b in self._related_banks(scope, banks):
                for p in pre:
                    last = self.last.get((p, b))
                    if last is not None:
                        t = max(t, last + lat)
        if self.window and S.WINDOW_WEIGHT.get(name):
            lat, size = self.window
            need = size - S.WINDOW_WEIGHT[name] + 1
            if len(self.acts) >= need:
                t = max(t, self.acts[-need] + lat)
        return t

    def check(self, cycle: int, name: str, fpi: int = 0, row: int = 0, col: int = 0) -> list:
        """Check and record one command; returns the violations it caused (also kept)."""
        found = []

        def bad(msg):
            found.append(Violation(self.channel, cycle, name, msg))

        if name not in S.CMD:
            bad(f"unknown command code {name!r}")
            self.violations += found
            return found
        banks = self.banks_of(name, fpi)
        if any(b >= self.nb for b in banks):
            bad(f"footprint index {fpi} out of range")
            self.violations += found
            return found
        if self.prev_cycle is not None and cycle <= self.prev_cycle:
            bad(f"second command in cycle {cycle} (previous at {self.prev_cycle})")
        for scope, pre, fol, lat, why in self.rows:
            if name not in fol or lat <= 0:
                continue
            for b in self._related_banks(scope, banks):
                for p in pre:
                    t = self.last.get((p, b))
                    if t is not None and cycle < t + lat:
                        bad(f"{lat} tCK after {p} at {t} required ({why}), got {cycle - t}")
        if self.window and S.WINDOW_WEIGHT.get(name):
            lat, size = self.window
            need = size - S.WINDOW_WEIGHT[name] + 1
            if len(self.acts) >= need and cycle < self.acts[-need] + lat:
                bad(f"activation window: {need}th latest activation at {self.acts[-need]}, "
                    f"nFAW {lat}")
        # Row state.
        if name in S.OPENS:
            for b in banks:
                if self.open_row[b] is not None:
                    bad(f"bank {b} already has row {self.open_row[b]} open")
        if name in S.NEEDS_OPEN_ROW:
            for b in banks:
                if self.open_row[b] is None:
                    bad(f"bank {b} has no open row")
        if name == "REFab" and any(r is not None for r in self.open_row):
            bad("refresh with a row open")
        need = self.std.mode_of[S.CMD[name]]
        if need != S.ANY_MODE and need != self.mode:
            bad(f"needs {S.MODE_NAMES[need]} mode, the channel is in {S.MODE_NAMES[self.mode]} "
                "mode")
        self.mode = self.enters.get(name, self.mode)
        # Record.
        for b in banks:
            self.last[(name, b)] = cycle
            if name in S.OPENS:
                self.open_row[b] = row
            elif name in S.CLOSES:
                self.open_row[b] = None
        if S.WINDOW_WEIGHT.get(name):
            self.acts.extend([cycle] * S.WINDOW_WEIGHT[name])
            del self.acts[:-8]
        self.prev_cycle = cycle
        self.commands.append((cycle, name, fpi, row, col))
        self.violations += found
        return found


class DramMonitor:
    """Watch every channel's command bus of a running :class:`pimgpt.hdl.system.System`.

    Parameters
    ----------
    dut : cocotb handle
        The system top level (``mon{c}_count``, ``mon{c}_cycle``, ``mon{c}_cmd`` ...).
    hw : HwConfig
        Hardware configuration.
    fail_fast : bool
        Raise ``AssertionError`` at the first violation (the test fails there).
    """

    def __init__(self, dut, hw: HwConfig, fail_fast: bool = True):
        self.dut = dut
        self.hw = hw
        self.fail_fast = fail_fast
        self.checkers = [ProtocolChecker(hw, c) for c in range(hw.dram.channels)]
        self.dispatch: list = []  # (pc, cycle) of every dispatched instruction
        self._tasks = []

    def start(self) -> None:
        import cocotb

        for c in range(self.hw.dram.channels):
            self._tasks.append(cocotb.start_soon(self._watch(c)))
        for side in ("pc", "apc"):  # the front end's two pointers
            if hasattr(self.dut, f"mon_{side}_count"):
                self._tasks.append(cocotb.start_soon(self._watch_dispatch(side)))

    async def _watch_dispatch(self, side: str) -> None:
        from cocotb.triggers import ReadOnly, ValueChange

        dut = self.dut
        count, pc, cycle = (getattr(dut, f"mon_{side}{k}") for k in ("_count", "", "_cycle"))
        while True:
            await ValueChange(count)
            await ReadOnly()
            self.dispatch.append((int(pc.value), int(cycle.value)))

    def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        self._tasks = []

    async def _watch(self, c: int) -> None:
        from cocotb.triggers import ReadOnly, ValueChange

        dut = self.dut
        count = getattr(dut, f"mon{c}_count")
        seen = int(count.value)
        checker = self.checkers[c]
        while True:
            await ValueChange(count)
            await ReadOnly()  # every register of the monitor port has settled (Icarus updates
            now = int(count.value)  # them one by one within the time step)
            if now != seen + 1:
                raise AssertionError(f"ch{c}: monitor missed {now - seen - 1} commands")
            seen = now
            code = int(getattr(dut, f"mon{c}_cmd").value)
            name = S.COMMANDS[code] if code < len(S.COMMANDS) else f"code{code}"
            found = checker.check(int(getattr(dut, f"mon{c}_cycle").value), name,
                                  int(getattr(dut, f"mon{c}_fpi").value),
                                  int(getattr(dut, f"mon{c}_row").value),
                                  int(getattr(dut, f"mon{c}_col").value))
            if found and self.fail_fast:
                raise AssertionError(f"DRAM protocol violation: {found[0]}")

    @property
    def violations(self) -> list:
        return [v for ch in self.checkers for v in ch.violations]

    @property
    def commands(self) -> list:
        """Per channel: list of ``(cycle, command, fpi, row, col)``."""
        return [ch.commands for ch in self.checkers]

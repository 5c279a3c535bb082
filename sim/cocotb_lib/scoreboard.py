"""In-order, bit-exact scoreboard (after cocotb's ``Scoreboard`` and cocotbext's checkers)."""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterable

__all__ = ["Scoreboard"]


class Scoreboard:
    """Compare observed items with expected ones, in order, bit for bit.

    Parameters
    ----------
    name : str
        Name used in reports.
    fmt : callable
        Formats an item for messages (default: 8-digit hex).
    max_report : int
        How many mismatches to keep for the report.
    context : callable, optional
        ``context(index)`` returns a description of the stimulus of expected item ``index``
        (operands) for mismatch reports.
    """

    def __init__(self, name: str, fmt: Callable[[int], str] = lambda v: f"0x{v:08x}",
                 max_report: int = 10, context: Callable[[int], str] | None = None):
        self.name = name
        self.fmt = fmt
        self.max_report = max_report
        self.context = context
        self.expected: deque[tuple[int, int]] = deque()  # (index, value)
        self._next_index = 0
        self.matched = 0
        self.mismatched = 0
        self.unexpected = 0
        self.reports: list[str] = []

    def add_expected(self, items: Iterable[int]) -> None:
        """Append expected items (in the order the DUT will produce them)."""
        for v in items:
            self.expected.append((self._next_index, int(v)))
            self._next_index += 1

    def clear(self) -> int:
        """Drop the expected items not observed yet (their inputs were lost, e.g. to a reset);
        returns how many."""
        n = len(self.expected)
        self.expected.clear()
        return n

    def compare(self, got: int) -> None:
        """Check one observed item against the oldest pending expected item."""
        if not self.expected:
            self.unexpected += 1
            if len(self.reports) < self.max_report:
                self.reports.append(f"unexpected item {self.fmt(got)}")
            return
        index, want = self.expected.popleft()
        if got == want:
            self.matched += 1
            return
        self.mismatched += 1
        if len(self.reports) < self.max_report:
            ctx = f" ({self.context(index)})" if self.context else ""
            self.reports.append(
                f"item {index}: got {self.fmt(got)}, expected {self.fmt(want)}{ctx}")

    @property
    def pending(self) -> int:
        """Expected items not yet observed."""
        return len(self.expected)

    def summary(self) -> dict:
        """Counts (matched, mismatched, unexpected, pending) and the kept mismatch reports."""
        return {"name": self.name, "matched": self.matched, "mismatched": self.mismatched,
                "unexpected": self.unexpected, "pending": self.pending,
                "reports": list(self.reports)}

    def compare_all(self, items: Iterable[int]) -> None:
        """:meth:`compare` each of ``items`` in order."""
        for item in items:
            self.compare(item)

    def check(self) -> int:
        """Raise ``AssertionError`` unless every expected item was observed and matched.

        Returns
        -------
        int
            Number of matched items.
        """
        if self.mismatched or self.unexpected or self.pending:
            lines = "\n  ".join(self.reports)
            raise AssertionError(
                f"{self.name}: {self.matched} matched, {self.mismatched} mismatched, "
                f"{self.unexpected} unexpected, {self.pending} missing\n  {lines}")
        return self.matched

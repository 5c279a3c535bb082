"""Start/stop and reset handling shared by every driver and monitor (after cocotbext-axi's
``Reset`` mixin).

A component runs one coroutine (:meth:`BusComponent._run`) from :meth:`~BusComponent.start` to
:meth:`~BusComponent.stop`. Given a reset signal it also watches it: while reset is active the
coroutine is stopped and :meth:`~BusComponent._on_reset` drops whatever is in flight (a driver
its queue, a monitor nothing it has already reported); when reset ends a started component runs
again.
"""

from __future__ import annotations

import cocotb
from cocotb.triggers import ValueChange

__all__ = ["BusComponent"]


class BusComponent:
    """Base of drivers and monitors.

    Parameters
    ----------
    clock : cocotb handle
        Clock the component works on.
    reset : cocotb handle, optional
        Reset signal to follow (``None``: the component ignores reset).
    reset_active_level : bool
        Level at which ``reset`` is active.
    start : bool
        Start running at once.
    """

    def __init__(self, clock, reset=None, reset_active_level: bool = True, start: bool = True):
        self.clock = clock
        self.reset = reset
        self.reset_active_level = bool(reset_active_level)
        self._task = None
        self._wanted = False  # started by the user (resumes after a reset)
        self._in_reset = False
        self._reset_task = cocotb.start_soon(self._follow_reset()) if reset is not None else None
        if start:
            self.start()

    @property
    def running(self) -> bool:
        """Whether the component's coroutine runs now."""
        return self._task is not None

    def start(self) -> None:
        """Run (again); while reset is active, from the end of reset on."""
        self._wanted = True
        if self._task is None and not self._in_reset:
            self._task = cocotb.start_soon(self._run())

    def stop(self) -> None:
        """Stop running (nothing more is driven or observed until :meth:`start`)."""
        self._wanted = False
        self._halt()

    def _halt(self) -> None:
        if self._task is not None:
            self._task.cancel()
            self._task = None

    async def _follow_reset(self) -> None:
        while True:
            await ValueChange(self.reset)
            value = self.reset.value
            active = value.is_resolvable and bool(int(value)) == self.reset_active_level
            if active and not self._in_reset:
                self._in_reset = True
                self._halt()
                self._on_reset()
            elif not active and self._in_reset:
                self._in_reset = False
                if self._wanted:
                    self._task = cocotb.start_soon(self._run())

    def _on_reset(self) -> None:
        """Drop in-flight state when reset becomes active (subclasses override)."""

    async def _run(self) -> None:  # pragma: no cover - subclasses implement it
        raise NotImplementedError

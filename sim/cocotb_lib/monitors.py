"""Stream monitors for cocotb testbenches (after cocotbext-axi's ``AxiStreamMonitor``)."""

from __future__ import annotations

from collections import deque
from collections.abc import Callable

import cocotb
from cocotb.triggers import RisingEdge

__all__ = ["ValidStreamMonitor"]


class ValidStreamMonitor:
    """Observe a valid-only stream: ``<prefix>__payload`` and ``<prefix>__valid``.

    Every cycle whose ``valid`` is high at a rising clock edge yields one item (the payload as an
    unsigned integer), passed to ``callback`` if given, else queued in :attr:`queue`.

    Parameters
    ----------
    dut : cocotb handle
        Top-level handle.
    prefix : str
        Port name prefix (``o`` for ``o__payload``/``o__valid``).
    clock : cocotb handle
        Sampling clock.
    callback : callable, optional
        ``callback(item)`` for each observed item (e.g. :meth:`Scoreboard.compare`).
    """

    def __init__(self, dut, prefix: str, clock, callback: Callable[[int], None] | None = None):
        self.payload = getattr(dut, f"{prefix}__payload")
        self.valid = getattr(dut, f"{prefix}__valid")
        self.clock = clock
        self.callback = callback
        self.queue: deque[int] = deque()
        self.count = 0
        self._task = cocotb.start_soon(self._run())

    async def _run(self) -> None:
        edge = RisingEdge(self.clock)
        valid, payload = self.valid, self.payload
        while True:
            await edge
            # Valid and payload are read at the same instant, so each item is seen exactly once.
            if valid.value.is_resolvable and int(valid.value):
                item = payload.value.to_unsigned()
                self.count += 1
                if self.callback is not None:
                    self.callback(item)
                else:
                    self.queue.append(item)

"""Monitors for cocotb testbenches (after cocotbext-axi's ``AxiStreamMonitor``)."""

from __future__ import annotations

from collections import deque
from collections.abc import Callable

from cocotb.triggers import ReadOnly, RisingEdge

from .bus import Codec, StreamBus
from .component import BusComponent

__all__ = ["ValidMonitor"]


class ValidMonitor(BusComponent):
    """Observe a valid-qualified port: one item per rising clock edge at which it is valid.

    ``sample()`` reads the port and returns the item, or ``None`` when the port is not valid; the
    constructors :meth:`stream` and :meth:`struct` build it for the two port kinds of Amaranth
    exports. Each item goes to ``callback`` if given (e.g. :meth:`Scoreboard.compare`), else to
    :attr:`queue`.

    Parameters
    ----------
    sample : callable
        ``sample() -> item or None``.
    clock : cocotb handle
        Sampling clock.
    callback : callable, optional
        ``callback(item)`` for each observed item.
    settle : bool
        Read in the read-only phase after the edge (the values the edge produced) instead of at
        the edge (the values it samples). Either way each valid cycle is seen exactly once; the
        read-only phase is where every simulator has settled registered outputs.
    reset : cocotb handle, optional
        Reset to follow: nothing is observed while it is active.
    """

    def __init__(self, sample: Callable, clock, callback: Callable | None = None, *,
                 settle: bool = False, reset=None, **kwargs):
        self.sample = sample
        self.callback = callback
        self.settle = settle
        self.queue: deque = deque()
        self.count = 0
        super().__init__(clock, reset, **kwargs)

    @classmethod
    def stream(cls, bus: StreamBus, clock, callback=None, **kwargs) -> ValidMonitor:
        """Monitor of a stream port: the payload (an integer) of every valid cycle."""
        return cls(bus.sample, clock, callback, **kwargs)

    @classmethod
    def struct(cls, signal, codec: Codec, clock, callback=None, *, valid: str = "valid",
               item: str | None = "data", **kwargs) -> ValidMonitor:
        """Monitor of a flat struct port (``codec``'s layout) whose field ``valid`` qualifies it.

        Items are field ``item`` (an integer), or the dict of all fields when ``item`` is None.
        """
        def sample():
            raw = signal.value
            if not raw.is_resolvable:
                return None
            value = raw.to_unsigned()
            if not codec.get(value, valid):
                return None
            return codec.get(value, item) if item is not None else codec.unpack(value)

        return cls(sample, clock, callback, **kwargs)

    async def _run(self) -> None:
        edge = RisingEdge(self.clock)
        settle = ReadOnly() if self.settle else None
        while True:
            await edge
            if settle is not None:
                await settle
            item = self.sample()
            if item is None:
                continue
            self.count += 1
            if self.callback is not None:
                self.callback(item)
            else:
                self.queue.append(item)

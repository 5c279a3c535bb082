"""Stream drivers for cocotb testbenches (after cocotbext-axi's ``AxiStreamSource``)."""

from __future__ import annotations

import itertools
import random
from collections import deque
from collections.abc import Iterable, Iterator

from cocotb.triggers import Event, RisingEdge

from .bus import StreamBus
from .component import BusComponent

__all__ = ["ValidStreamDriver", "random_pauses", "burst_pauses"]


def random_pauses(p_idle: float, seed: int = 0) -> Iterator[bool]:
    """Endless pause pattern: each cycle idle with probability ``p_idle``."""
    if not 0.0 <= p_idle < 1.0:
        raise ValueError(f"p_idle must be in [0, 1), not {p_idle!r}")
    rng = random.Random(seed)
    while True:
        yield rng.random() < p_idle


def burst_pauses(seed: int = 0, max_burst: int = 64, max_gap: int = 4) -> Iterator[bool]:
    """Endless pattern of back-to-back bursts (1..``max_burst`` busy cycles) and idle gaps
    (0..``max_gap`` cycles): exercises full throughput and stalls in the same run."""
    rng = random.Random(seed)
    while True:
        yield from itertools.repeat(False, rng.randint(1, max_burst))
        yield from itertools.repeat(True, rng.randint(0, max_gap))


class ValidStreamDriver(BusComponent):
    """Drive a valid-only stream (:class:`~pimgpt.sim.cocotb_lib.bus.StreamBus` without ready).

    Items are integers (the packed payload); one is presented per cycle unless the pause
    generator says the cycle is idle. A reset drops the queued items.

    Parameters
    ----------
    bus : StreamBus
        The stream's signals.
    clock : cocotb handle
        Clock the inputs are launched on (after its rising edge).
    reset : cocotb handle, optional
        Reset to follow (see :class:`~pimgpt.sim.cocotb_lib.component.BusComponent`).
    """

    def __init__(self, bus: StreamBus, clock, reset=None, **kwargs):
        if bus.ready is not None:
            raise ValueError(f"stream {bus.name!r} has a ready signal; this driver is valid-only")
        self.bus = bus
        self.queue: deque[int] = deque()
        self.sent = 0
        self.cycles = 0
        self._pause: Iterator[bool] | None = None
        self._idle = Event()
        self._idle.set()
        self._not_empty = Event()
        self._driving = False
        bus.valid.value = 0
        super().__init__(clock, reset, **kwargs)

    def set_pause_generator(self, generator: Iterable[bool] | None) -> None:
        """Use ``generator`` (True = idle cycle) from now on; ``None`` drives every cycle."""
        self._pause = iter(generator) if generator is not None else None

    def send(self, item: int) -> None:
        """Queue one packed payload."""
        self.send_many((item,))

    def send_many(self, items: Iterable[int]) -> None:
        """Queue many packed payloads."""
        self.queue.extend(items)
        if self.queue:
            self._idle.clear()
            self._not_empty.set()

    async def wait(self) -> None:
        """Wait until every queued item has been presented."""
        await self._idle.wait()

    def _on_reset(self) -> None:
        self.queue.clear()
        self.bus.valid.value = 0
        self._driving = False
        self._idle.set()
        self._not_empty.clear()

    async def _run(self) -> None:
        edge = RisingEdge(self.clock)
        queue, valid, payload = self.queue, self.bus.valid, self.bus.payload
        while True:
            if not queue and not self._driving:
                self._idle.set()
                self._not_empty.clear()
                await self._not_empty.wait()
            # Items change right after a rising edge, like the output of a register.
            await edge
            self.cycles += 1
            if queue and not (self._pause is not None and next(self._pause)):
                payload.value = queue.popleft()
                self.sent += 1
                if not self._driving:
                    valid.value = 1
                    self._driving = True
            elif self._driving:
                valid.value = 0
                self._driving = False

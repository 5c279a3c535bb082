"""Stream drivers for cocotb testbenches (after cocotbext-axi's ``AxiStreamSource``)."""

from __future__ import annotations

import itertools
import random
from collections import deque
from collections.abc import Iterable, Iterator

import cocotb
from cocotb.triggers import Event, RisingEdge

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


class ValidStreamDriver:
    """Drive a valid-only stream: ``<prefix>__payload`` and ``<prefix>__valid``.

    Items are integers (the packed payload); one is presented per cycle unless the pause
    generator says the cycle is idle. There is no ``ready``: the pimgpt datapaths never stall.

    Parameters
    ----------
    dut : cocotb handle
        Top-level handle.
    prefix : str
        Port name prefix (``i`` for ``i__payload``/``i__valid``).
    clock : cocotb handle
        Clock the inputs are launched on (after its rising edge).
    """

    def __init__(self, dut, prefix: str, clock):
        self.payload = getattr(dut, f"{prefix}__payload")
        self.valid = getattr(dut, f"{prefix}__valid")
        self.clock = clock
        self.queue: deque[int] = deque()
        self.sent = 0
        self.cycles = 0
        self._pause: Iterator[bool] | None = None
        self._idle = Event()
        self._idle.set()
        self._not_empty = Event()
        self.valid.value = 0
        self._task = cocotb.start_soon(self._run())

    def set_pause_generator(self, generator: Iterable[bool] | None) -> None:
        """Use ``generator`` (True = idle cycle) from now on; ``None`` drives every cycle."""
        self._pause = iter(generator) if generator is not None else None

    def send(self, item: int) -> None:
        """Queue one packed payload."""
        self.queue.append(item)
        self._idle.clear()
        self._not_empty.set()

    def send_many(self, items: Iterable[int]) -> None:
        """Queue many packed payloads."""
        self.queue.extend(items)
        if self.queue:
            self._idle.clear()
            self._not_empty.set()

    async def wait(self) -> None:
        """Wait until every queued item has been presented."""
        await self._idle.wait()

    async def _run(self) -> None:
        edge = RisingEdge(self.clock)
        queue, valid, payload = self.queue, self.valid, self.payload
        driving = False
        while True:
            if not queue and not driving:
                self._idle.set()
                self._not_empty.clear()
                await self._not_empty.wait()
            # Items change right after a rising edge, like the output of a register.
            await edge
            self.cycles += 1
            if queue and not (self._pause is not None and next(self._pause)):
                payload.value = queue.popleft()
                self.sent += 1
                if not driving:
                    valid.value = 1
                    driving = True
            elif driving:
                valid.value = 0
                driving = False

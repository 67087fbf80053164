"""A fake cellular network: numbers, coverage, and SMS carried between them with delay and loss.

What attaches to a number is anything with `deliver(sender, text, sent_at)`: an emulated
modem (tools/sim/modem/emulator.py), a contact's phone (`Phone`), or an SMS gateway that
posts to a platform's HTTP callback (`gateway.HttpGateway`). A submitted SMS is accepted by
the service centre at once (the sender gets its `+CMGS`), then arrives after `delay_s`
(drawn from the range), or never, with probability `loss`, as real SMS can.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

log = logging.getLogger("safebox.sim.cellular")

SMSC = "+8613800100500"  # the service centre's number the SIMs carry (AT+CSCA?)


class Sink(Protocol):
    def deliver(self, sender: str, text: str | bytes, sent_at: float) -> None: ...


@dataclass
class Carried:
    sender: str
    dest: str
    text: str | bytes
    submitted_at: float
    delivered_at: float | None = None
    lost: bool = False


@dataclass
class Phone:
    """A contact's handset: it keeps what it receives, with the local time it came."""

    number: str
    clock: Callable[[], float] = time.time
    inbox: list[tuple[str, str | bytes, float]] = field(default_factory=list)
    arrived: asyncio.Event = field(default_factory=asyncio.Event)

    def deliver(self, sender: str, text: str | bytes, sent_at: float) -> None:
        self.inbox.append((sender, text, self.clock()))
        self.arrived.set()


class CellularNetwork:
    def __init__(self, *, delay_s: tuple[float, float] = (2.0, 6.0), loss: float = 0.0,
                 rng: random.Random | None = None, clock: Callable[[], float] = time.time) -> None:
        self.delay_s = delay_s
        self.loss = loss
        self.coverage = True  # False: every modem loses registration (searching)
        self._rng = rng or random.Random()
        self._clock = clock
        self._sinks: dict[str, Sink] = {}
        self._listeners: list[Callable[[], None]] = []
        self.log: list[Carried] = []
        self._tasks: set[asyncio.Task[None]] = set()

    def attach(self, number: str, sink: Sink) -> None:
        self._sinks[number] = sink

    def phone(self, number: str) -> Phone:
        phone = Phone(number, clock=self._clock)
        self.attach(number, phone)
        return phone

    def watch(self, callback: Callable[[], None]) -> None:
        """`callback()` when coverage changes (the modems re-judge their registration)."""
        self._listeners.append(callback)

    def set_coverage(self, on: bool) -> None:
        self.coverage = on
        for callback in self._listeners:
            callback()

    def submit(self, sender: str, dest: str, text: str | bytes) -> Carried:
        """The service centre takes an SMS; it is carried in the background."""
        carried = Carried(sender, dest, text, self._clock())
        self.log.append(carried)
        if self._rng.random() < self.loss:
            carried.lost = True
            log.info("SMS %s -> %s lost on the network", sender, dest)
            return carried
        delay = self._rng.uniform(*self.delay_s)
        task = asyncio.get_running_loop().create_task(self._carry(carried, delay))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return carried

    async def _carry(self, carried: Carried, delay: float) -> None:
        await asyncio.sleep(delay)
        sink = self._sinks.get(carried.dest)
        if sink is None:
            carried.lost = True
            log.info("SMS %s -> %s: no such number", carried.sender, carried.dest)
            return
        carried.delivered_at = self._clock()
        sink.deliver(carried.sender, carried.text, carried.submitted_at)

    async def close(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

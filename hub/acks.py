"""Acknowledgements back to devices, sent without holding up anything else.

A device advertises an event in a burst of repeats; every repeat asks for an ack.
One connection per device at a time is enough: while an ack for a (device, counter,
kind) is on its way, or was delivered in the last `quiet_s`, further requests for it
are dropped. If an ack is lost the device re-sends its frame and asks again.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable

from safebox.hub.devices import Device
from safebox.hub.radio import Radio
from safebox.protocol import bthome

log = logging.getLogger("safebox.hub.acks")


class Acks:
    def __init__(self, radio: Radio, *, clock: Callable[[], float] = time.time, quiet_s: float = 1.0) -> None:
        self._radio = radio
        self._clock = clock
        self._quiet_s = quiet_s
        self._busy: set[tuple[str, int, int]] = set()
        self._done: dict[tuple[str, int, int], float] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self.sent = 0

    def request(self, device: Device, counter: int, kind: int) -> None:
        """Ack `counter` of `device` with `kind` soon, unless that ack is already under way."""
        key = (device.address, counter, kind)
        now = self._clock()
        self._done = {k: t for k, t in self._done.items() if now - t < self._quiet_s}
        if key in self._busy or key in self._done:
            return
        self._busy.add(key)
        task = asyncio.get_running_loop().create_task(self._send(device, counter, kind, key))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _send(self, device: Device, counter: int, kind: int, key: tuple[str, int, int]) -> None:
        try:
            ack = bthome.seal_ack(device.key, device.mac, kind, counter, int(self._clock()))
            started = time.monotonic()
            if await self._radio.write_ack(device.address, ack):
                self._done[key] = self._clock()
                self.sent += 1
                log.info("%s: ack kind %d for counter %d written in %d ms", device.address, kind, counter,
                         (time.monotonic() - started) * 1000)
        finally:
            self._busy.discard(key)

    async def close(self) -> None:
        """Cancel acks under way; safe to call twice."""
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

"""Writing acks to devices over GATT, without holding up anything else: the mechanism.

Which kind to send, and when, is the policy's (hub/acks/policy.py); this module only gets an
ack onto a device. One connection per device at a time: while an ack for a (device, counter,
kind) is on its way, or was written in the last `quiet_s`, further requests for it are dropped;
an ack whose turn comes after one that said as much is not written; a lower kind never follows
a higher one for the same event ("help is coming" stays). The ack's bytes are made by `seal`
once the link is up, so they say the newest thing known by then.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from safebox.hub.clock import SYSTEM, Clock
from safebox.hub.devices import Device
from safebox.hub.radio import Radio
from safebox.protocol import bthome

Key = tuple[str, int, int]  # (address, counter, kind)
Seal = Callable[[Device, int, int], tuple[int, bytes]]  # (device, counter, kind) -> (kind sent, ack bytes)
Written = Callable[[Device, int, int, float], None]  # (device, counter, kind, ms) once the device has it


class AckWriter:
    def __init__(self, radio: Radio, *, seal: Seal, written: Written, clock: Clock = SYSTEM,
                 quiet_s: float = 1.0) -> None:
        self._radio = radio
        self._seal = seal
        self._written_cb = written
        self._clock = clock
        self._quiet_s = quiet_s
        self._busy: set[Key] = set()
        self._done: dict[Key, float] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._device_locks: dict[str, asyncio.Lock] = {}
        self._written: dict[tuple[str, int], int] = {}  # (address, counter) -> highest kind written
        self.sent = 0

    def heard_recently(self, device: Device, within_s: float) -> bool:
        return self._radio.heard_recently(device.address, within_s)

    def expect(self, device: Device, seconds: float) -> None:
        """`device` advertises for `seconds` from now (0: it has stopped)."""
        self._radio.expect(device.address, seconds)

    def request(self, device: Device, counter: int, kind: int) -> None:
        """Write ack `kind` for `counter` to `device` soon, unless that is already under way or said."""
        key = (device.address, counter, kind)
        now = self._clock.monotonic()
        self._done = {k: t for k, t in self._done.items() if now - t < self._quiet_s}
        if key in self._busy or key in self._done:
            return
        higher = [k for a, c, k in self._busy if a == device.address and c == counter]
        if kind < max(higher + [self._written.get((device.address, counter), 0)]):
            return
        self._busy.add(key)
        task = asyncio.get_running_loop().create_task(self._send(device, counter, kind, key))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _send(self, device: Device, counter: int, kind: int, key: Key) -> None:
        try:
            async with self._device_locks.setdefault(device.address, asyncio.Lock()):
                if self._written.get((device.address, counter), 0) >= kind:
                    return  # the ack before this one said as much
                sent = [kind]

                def payload() -> bytes:
                    sent[0], ack = self._seal(device, counter, kind)
                    return ack

                started = self._clock.monotonic()
                ok = await self._radio.write_ack(device.address, payload, quick=kind >= bthome.ACK_DELIVERED)
            if ok:
                self._record(device, counter, sent[0], (self._clock.monotonic() - started) * 1000)
        finally:
            self._busy.discard(key)

    def _record(self, device: Device, counter: int, kind: int, ms: float) -> None:
        self._done[(device.address, counter, kind)] = self._clock.monotonic()
        self.sent += 1
        if len(self._written) > 4096:
            self._written.clear()
        self._written[(device.address, counter)] = max(kind, self._written.get((device.address, counter), 0))
        self._written_cb(device, counter, kind, ms)

    async def close(self) -> None:
        """Cancel acks under way; safe to call twice."""
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

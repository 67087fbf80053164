"""Writing acks to devices over GATT, without holding up anything else: the mechanism.

Which kind to send, and when, is the policy's (hub/acks/policy.py); this module only gets an
ack onto a device. One connection per device at a time: while an ack for a (device, counter,
kind) is on its way, or was written in the last `quiet_s`, further requests for it are dropped;
an ack whose turn comes after one that said as much is not written; a lower kind never follows
a higher one for the same event ("help is coming" stays). "Said" is kind 1 written, or kind 2
or 3 CONFIRMED by the device (`confirmed`, from its receipt, SPEC 1.7): a kind 2 or 3 written
to whoever answered at the device's address may have reached a spoofer, so it can be written
again. The ack's bytes are made by `seal` once the link is up, so they say the newest thing
known by then, under a fresh ack number.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from safebox.hub.clock import SYSTEM, Clock
from safebox.hub.devices import Device
from safebox.hub.radio import Radio
from safebox.protocol import bthome

Key = tuple[str, int, int]  # (address, counter, kind)
Seal = Callable[[Device, int, int], tuple[int, int, bytes]]  # (device, counter, kind) -> (kind, ack number, bytes)
Written = Callable[[Device, int, int, int, float], None]  # (device, counter, kind, number, ms) once written

log = logging.getLogger("safebox.hub.acks")


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
        self._written: dict[tuple[str, int], int] = {}  # (address, counter) -> highest kind said (see above)
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
                done_at = self._done.get(key)
                if self._written.get((device.address, counter), 0) >= kind or (
                        done_at is not None and self._clock.monotonic() - done_at < self._quiet_s):
                    return  # the ack before this one said as much, or was just this one
                sent = [kind, 0]

                def payload() -> bytes:
                    sent[0], sent[1], ack = self._seal(device, counter, kind)
                    return ack

                started = self._clock.monotonic()
                try:
                    ok = await self._radio.write_ack(device.address, payload, quick=kind >= bthome.ACK_DELIVERED)
                except Exception as exc:  # noqa: BLE001 - no ack number (the store): nothing sealed, nothing sent
                    log.error("%s: ack kind %d for counter %d not sealed: %s", device.address, kind, counter, exc)
                    ok = False
            if ok:
                self._record(device, counter, sent[0], sent[1], (self._clock.monotonic() - started) * 1000)
        finally:
            self._busy.discard(key)

    def _record(self, device: Device, counter: int, kind: int, number: int, ms: float) -> None:
        self._done[(device.address, counter, kind)] = self._clock.monotonic()
        self.sent += 1
        if kind == bthome.ACK_HEARD:
            self.confirmed(device, counter, kind)
        self._written_cb(device, counter, kind, number, ms)

    def confirmed(self, device: Device, counter: int, kind: int) -> None:
        """`device` has said (or, for kind 1, been written) `kind` for `counter`: no lower kind follows."""
        if len(self._written) > 4096:
            self._written.clear()
        self._written[(device.address, counter)] = max(kind, self._written.get((device.address, counter), 0))

    async def close(self) -> None:
        """Cancel acks under way; safe to call twice."""
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

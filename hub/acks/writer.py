"""Writing acks to devices over GATT, without holding up anything else: the mechanism.

Which kind to send, and when, is the policy's (hub/acks/policy.py); this module only gets acks
onto a device. Every ack a device is due goes in ONE connection: requests for a device queue
while its link is being made and are all written in it, in order (a device leaves the air
soon after it is answered: on BlueZ a second connection for the next ack found it gone). While
an ack for a (device, counter, kind) is on its way, or was written in the last `quiet_s`,
further requests for it are dropped; an ack whose turn comes after one that said as much is
not written; a lower kind never follows a higher one for the same event ("help is coming"
stays). "Said" is kind 1 written, or kind 2 or 3 CONFIRMED by the device (`confirmed`, from
its receipt, SPEC 1.7): a kind 2 or 3 written to whoever answered at the device's address may
have reached a spoofer, so it can be written again. Each ack's bytes are made by `seal` once
the link is up, so they say the newest thing known by then, under a fresh ack number; the
acks of one connection are told to `written` with the number of its first ack (`link`), so a
receipt naming the last confirms them all.
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
# (device, counter, kind, number, link, ms) once written; link: the number of the connection's first ack
Written = Callable[[Device, int, int, int, int, float], None]

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
        self._queues: dict[str, list[Key]] = {}  # address -> acks waiting for its connection
        self._links: set[str] = set()  # addresses with a connection under way
        self._asked_again: set[str] = set()  # ... whose device was heard asking again meanwhile
        self._link_of: dict[tuple[str, int], int] = {}  # (address, ack number) -> its connection's first number
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
            if key in self._busy and device.address in self._links:
                self._asked_again.add(device.address)  # a frame heard while its link is made
            return
        higher = [k for a, c, k in self._busy if a == device.address and c == counter]
        if kind < max(higher + [self._written.get((device.address, counter), 0)]):
            return
        self._busy.add(key)
        self._queues.setdefault(device.address, []).append(key)
        if device.address in self._links:
            self._asked_again.add(device.address)
            return  # its connection is being made or is up: written in it
        self._links.add(device.address)
        task = asyncio.get_running_loop().create_task(self._send(device))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _send(self, device: Device) -> None:
        """One connection to `device` for everything queued for it (more may queue meanwhile)."""
        queue = self._queues[device.address]
        self._asked_again.discard(device.address)
        sent: list[tuple[int, int, int]] = []  # (counter, kind, number) sealed, in order written
        recorded = 0  # how many of `sent` are recorded as written
        link_kinds: dict[int, int] = {}  # counter -> highest kind sealed in this connection
        started = self._clock.monotonic()

        def record(upto: int) -> None:
            # At once, not when the link has ended: the device may advertise its receipt for an
            # ack as soon as it took it, and a receipt naming an ack not yet recorded confirms nothing.
            nonlocal recorded
            ms = (self._clock.monotonic() - started) * 1000
            for counter, kind, number in sent[recorded:upto]:
                self._record(device, counter, kind, number, sent[0][2], ms)
            recorded = max(recorded, upto)

        def next_ack() -> bytes | None:
            record(len(sent))  # the radio asks for the next ack once the last one is written
            while queue:
                _address, counter, kind = key = queue.pop(0)
                self._busy.discard(key)
                done_at = self._done.get(key)
                if max(self._written.get((device.address, counter), 0), link_kinds.get(counter, 0)) >= kind or (
                        done_at is not None and self._clock.monotonic() - done_at < self._quiet_s):
                    continue  # an ack before this one said as much, or was just this one
                kind, number, ack = self._seal(device, counter, kind)
                sent.append((counter, kind, number))
                link_kinds[counter] = max(kind, link_kinds.get(counter, 0))
                return ack
            return None

        try:
            quick = all(kind >= bthome.ACK_DELIVERED for _a, _c, kind in queue)
            written = await self._radio.write_acks(device.address, next_ack, quick=quick)
        except Exception as exc:  # noqa: BLE001 - no ack number (the store): nothing sealed, nothing sent
            log.error("%s: acks not sealed: %s", device.address, exc)
            written = 0
        finally:
            self._links.discard(device.address)
            late = list(queue)  # requested after the last write, or never written
            queue.clear()
            for key in late:
                self._busy.discard(key)
        record(written)
        # The device took what it was given: what came too late gets its own connection. Or the
        # link failed but the device was heard asking again meanwhile (a new frame, so it is on
        # the air now): try once more. Else owed acks stay owed (written with the next frame heard).
        if written or device.address in self._asked_again:
            self._asked_again.discard(device.address)
            unwritten = [] if written else [(device.address, counter, kind) for counter, kind, _n in sent]
            if not written:
                log.info("%s: asked for again while its link failed: another link (%s)", device.address,
                         [k for _a, _c, k in unwritten + late])
            for _address, counter, kind in unwritten + late:
                self.request(device, counter, kind)

    def link_of(self, device: Device, number: int) -> int | None:
        """The number of the first ack written in the connection that wrote ack `number` (None:
        not one this hub wrote since it started)."""
        return self._link_of.get((device.address, number))

    def _record(self, device: Device, counter: int, kind: int, number: int, link: int, ms: float) -> None:
        if len(self._link_of) > 4096:
            self._link_of.clear()
        self._link_of[(device.address, number)] = link
        self._done[(device.address, counter, kind)] = self._clock.monotonic()
        self.sent += 1
        if kind == bthome.ACK_HEARD:
            self.confirmed(device, counter, kind)
        self._written_cb(device, counter, kind, number, link, ms)

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

"""Acknowledgements back to devices, sent without holding up anything else (SPEC 1.7).

Kind 1 (heard) answers an event frame at once: a device advertises an event in a burst of
repeats and every repeat asks for it. The ack is sealed once the link is up (`_seal`): if
the platform has the event by then, it says kind 2, and one connection does for both.
Kinds 2 (the platform has it) and 3 (an operator took it up) come later, when the device
may be asleep, so they are OWED: kept in SQLite (`owed_acks`, device + counter + kind,
expiring after `relay.ack_ttl_s`) and written whenever the hub next hears ANY frame from
that device (events and heartbeats are connectable), or at once when the device was heard
in the last `advertising_s` (it is advertising right now: after kind 1 it lingers ~30 s
advertising its event frame, so kind 2 normally follows within a second). A higher kind replaces a lower one still owed; once
written, a kind is never owed again. An owed ack gets one connection attempt
(`Radio.write_ack(quick=True)`), not the retries a kind 1 deserves: the next frame heard
brings the next attempt. (The radio makes any attempt only while the device advertises.)

One connection per device at a time: while an ack for a (device, counter, kind) is on its
way, or was delivered in the last `quiet_s`, further requests for it are dropped, and an
ack whose turn comes after one that said as much is not written.
If an ack is lost the device re-sends its frame, or is heard again, and it is asked again.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable

from safebox.hub.devices import Device, Devices
from safebox.hub.radio import ADVERTISING_S, Radio
from safebox.hub.store import HubStore, StoreError
from safebox.protocol import bthome

log = logging.getLogger("safebox.hub.acks")


class Acks:
    def __init__(self, radio: Radio, *, clock: Callable[[], float] = time.time, quiet_s: float = 1.0,
                 store: HubStore | None = None, devices: Devices | None = None,
                 advertising_s: float = ADVERTISING_S) -> None:
        self._radio = radio
        self._clock = clock
        self._quiet_s = quiet_s
        self._store = store
        self._devices = devices
        self._advertising_s = advertising_s
        self._busy: set[tuple[str, int, int]] = set()
        self._done: dict[tuple[str, int, int], float] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._device_locks: dict[str, asyncio.Lock] = {}  # one ack at a time per device
        self._owed_devices: set[str] | None = None  # device ids with acks owed; loaded lazily
        self._written: dict[tuple[str, int], int] = {}  # (address, counter) -> highest kind written
        self.sent = 0

    def request(self, device: Device, counter: int, kind: int) -> None:
        """Ack `counter` of `device` with `kind` soon, unless that ack is already under way."""
        key = (device.address, counter, kind)
        now = self._clock()
        self._done = {k: t for k, t in self._done.items() if now - t < self._quiet_s}
        if key in self._busy or key in self._done:
            return
        # Never a lower kind after a higher one for the same event ("help is coming" stays).
        higher = [k for a, c, k in self._busy if a == device.address and c == counter]
        if kind < max(higher + [self._written.get((device.address, counter), 0)]):
            return
        self._busy.add(key)
        task = asyncio.get_running_loop().create_task(self._send(device, counter, kind, key))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # -- owed acks (kinds 2 and 3) ----------------------------------------------------------

    def heard(self, device: Device) -> None:
        """A frame from `device` was heard (any frame, new or repeat): write what it is owed."""
        if self._store is None or device.id not in self._owed():
            return
        owed = self._store.owed_acks(device.id, self._clock())
        if not owed:
            self._owed().discard(device.id)
        # Every kind 3, and kind 2 only for the newest counter: it settles those before it.
        delivered = [a for a in owed if a.kind == bthome.ACK_DELIVERED][-1:]
        for ack in [a for a in owed if a.kind == bthome.ACK_OPERATOR] + delivered:
            self.request(device, ack.counter, ack.kind)

    def owed(self, device_id: str) -> None:
        """`device_id` is newly owed an ack (the uplink settled its event, or an operator took it
        up): write it now if the device is likely still advertising, else when next heard."""
        self._owed().add(device_id)
        device = self._device(device_id)
        if device is not None and self._radio.heard_recently(device.address, self._advertising_s):
            self.heard(device)

    def _owed(self) -> set[str]:
        if self._owed_devices is None:
            self._owed_devices = set()
            if self._store is not None:
                try:
                    self._owed_devices = {a.device_id for a in self._store.owed_acks(None, self._clock())}
                except StoreError as exc:
                    log.error("owed acks not read: %s", exc)
        return self._owed_devices

    def _device(self, device_id: str) -> Device | None:
        if self._devices is None:
            return None
        return next((d for d in self._devices if d.id == device_id), None)

    async def _send(self, device: Device, counter: int, kind: int, key: tuple[str, int, int]) -> None:
        try:
            async with self._device_locks.setdefault(device.address, asyncio.Lock()):
                if self._written.get((device.address, counter), 0) >= kind:
                    return  # the ack before this one said as much (see `_seal`)
                written = [kind]
                started = time.monotonic()
                ok = await self._radio.write_ack(device.address, lambda: self._seal(device, counter, written),
                                                 quick=kind >= bthome.ACK_DELIVERED)
            if ok:
                self._record(device, counter, written[0], started)
        finally:
            self._busy.discard(key)

    def _seal(self, device: Device, counter: int, kind: list[int]) -> bytes:
        """The ack, made once the link is up: by then the platform may have the event (the uplink
        takes milliseconds, a connection hundreds), and then kind 2 says it, in this connection."""
        if kind[0] == bthome.ACK_HEARD and self._store is not None:
            try:
                owed = self._store.owed_acks(device.id, self._clock())
            except StoreError as exc:
                log.error("owed acks not read: %s", exc)
                owed = []
            kind[0] = max([kind[0]] + [a.kind for a in owed if a.counter == counter])
        return bthome.seal_ack(device.key, device.mac, kind[0], counter, int(self._clock()))

    def _record(self, device: Device, counter: int, kind: int, started: float) -> None:
        self._done[(device.address, counter, kind)] = self._clock()
        self.sent += 1
        if len(self._written) > 4096:
            self._written.clear()
        self._written[(device.address, counter)] = max(kind, self._written.get((device.address, counter), 0))
        if kind >= bthome.ACK_DELIVERED and self._store is not None:
            try:
                self._store.ack_written(device.id, counter, kind)
            except StoreError as exc:  # owed still: written again next time, which is harmless
                log.error("%s: ack kind %d for counter %d written but not recorded: %s",
                          device.address, kind, counter, exc)
        log.info("%s: ack kind %d for counter %d written in %d ms", device.address, kind, counter,
                 (time.monotonic() - started) * 1000)

    async def close(self) -> None:
        """Cancel acks under way; safe to call twice."""
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

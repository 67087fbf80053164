"""Which ack a device gets, and when: the one place that decides (SPEC 1.7).

Kind 1 (heard) answers an event frame at once: a device advertises an event in a burst of
repeats and every repeat asks for it. A repeat of an event the platform already has is
answered kind 2 instead. Every ack is sealed once the link is up (`_seal`): if the platform
has the event by then, it says kind 2, and one connection does for both.

Kinds 2 (the platform has it) and 3 (an operator took it up) come later, when the device may
be asleep, so they are OWED: kept in the store (`owed_acks`, expiring after `ttl_s`) and
written whenever the hub next hears ANY frame from that device (events and heartbeats are
connectable), or at once when the device was heard in the last `advertising_s` (after kind 1
it lingers ~30 s advertising its event frame, so kind 2 normally follows within a second).
Only a pendant is owed kind 2 (it shows it; door sensors stop at kind 1), and only an urgent
press that is not a test waits for an operator. A higher kind replaces a lower one still owed.
A GATT write that succeeded proves only that SOMETHING at the device's address took it (a
spoofer replaying the device's last frame would): an owed ack stays owed until the device
confirms it in a receipt (a new frame, authentic, with a counter above the last accepted, whose
object 0x3E names the number of the ack it took; a repeat of the last frame proves nothing).
Once confirmed, a kind is never owed again, and kind 2 confirmed for one counter settles kind 2
for the device's earlier counters (one device's events reach the platform in order). An owed
ack gets one connection attempt (`Radio.write_acks(quick=True)`): the next frame heard brings
the next. Everything a device is due goes in one connection (the writer's), and a receipt
naming the last ack of a connection confirms the ones written before it in that connection. Every ack is sealed under a fresh ack number from the store (its nonce: a re-sent
ack never reuses one). The writing itself is hub/acks/writer.py's.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable

from safebox.hub.clock import SYSTEM, Clock
from safebox.hub.devices import Device, Devices
from safebox.hub.ingest import Outcome
from safebox.hub.radio import ADVERTISING_S, Radio
from safebox.hub.store import HubStore, OutboxItem, Owe, StoreError
from safebox.hub.acks.writer import AckWriter
from safebox.protocol import bthome

log = logging.getLogger("safebox.hub.acks")

ACK_TTL_S = 900.0


class AckPolicy:
    def __init__(self, store: HubStore, devices: Devices, *, clock: Callable[[], float] = time.time,
                 ttl_s: float = ACK_TTL_S, advertising_s: float = ADVERTISING_S) -> None:
        self._store = store
        self._devices = devices
        self._clock = clock
        self._ttl_s = ttl_s
        self._advertising_s = advertising_s
        self._owed_devices: set[str] | None = None  # device ids with acks owed; loaded lazily
        self._early: dict[str, int] = {}  # device id -> the ack number its last receipt named, not yet recorded
        self.writer: AckWriter | None = None

    def attach(self, radio: Radio, clock: Clock = SYSTEM) -> AckWriter:
        """Start writing acks through `radio` (until `writer.close()`)."""
        self.writer = AckWriter(radio, seal=self._seal, written=self._record, clock=clock)
        return self.writer

    @property
    def sent(self) -> int:
        return self.writer.sent if self.writer is not None else 0

    # -- what a frame earns ------------------------------------------------------------------

    def frame(self, outcome: Outcome) -> None:
        """A frame went through ingest: ack it if its device waits, and write what it is owed."""
        device = outcome.device
        if device is None or self.writer is None or outcome.kind == "refused":
            return
        # On the air for a while from now, reported again or not (SPEC 1.7).
        window = bthome.HEARTBEAT_WINDOW_MS if outcome.kind == "heartbeat" else bthome.BURST_MS
        self.writer.expect(device, window / 1000)
        if outcome.ack_seen is not None and outcome.kind in ("event", "heartbeat"):
            self.receipt(device, outcome.ack_seen)
        if outcome.ack_needed and outcome.counter is not None:
            self.writer.request(device, outcome.counter, self._first_kind(outcome))
        self.heard(device)

    def _first_kind(self, outcome: Outcome) -> int:
        """A repeat of an event the platform already has is answered "delivered"."""
        if outcome.kind == "repeat" and outcome.event_id and not self._store.pending(outcome.event_id) \
                and not self._store.is_dead(outcome.event_id):
            return bthome.ACK_DELIVERED
        return bthome.ACK_HEARD

    # -- what delivery and operators earn ----------------------------------------------------

    def delivered(self, items: list[OutboxItem]) -> list[Owe]:
        """What the platform having `items` makes owed: kind 2 to a pendant, an operator's wait
        for an urgent press that is not a test."""
        now = self._clock()
        owes = []
        for item in items:
            event = json.loads(item.body)
            device = event.get("device")
            if not device or device.get("role") != "pendant":
                continue
            test = event.get("data", {}).get("test") is True  # SPEC 2, "Test events"
            owes.append(Owe(item.event_id, device["id"], event["counter"], bthome.ACK_DELIVERED, now + self._ttl_s,
                            now + self._ttl_s if item.urgent and not test else None))
        return owes

    def settle(self, items: list[OutboxItem]) -> list[str]:
        """The platform has `items`: out of the outbox and acks owed, in one transaction; the
        devices owed are written to at once if still advertising. Returns the ids settled."""
        settled = self._store.settle_delivered([i.event_id for i in items], self.delivered(items))
        for device_id in settled.owed_devices:
            self.owed(device_id)
        return settled.event_ids

    def operator_took_up(self, event_id: str) -> bool:
        """An operator took up `event_id`: its pendant is owed kind 3 ("help is coming")."""
        awaited = self._store.operator_acked(event_id, self._clock() + self._ttl_s)
        if awaited is None:
            return False
        log.info("event %s: taken up by an operator; ack kind 3 owed to %s", event_id, awaited.device_id)
        self.owed(awaited.device_id)
        return True

    # -- owed acks ---------------------------------------------------------------------------

    def heard(self, device: Device) -> None:
        """A frame from `device` was heard (any frame, new or repeat): write what it is owed."""
        if self.writer is None or device.id not in self._owed():
            return
        owed = self._store.owed_acks(device.id, self._clock())
        if not owed:
            self._owed().discard(device.id)
        # Every kind 3, and kind 2 only for the newest counter: it settles those before it.
        delivered = [a for a in owed if a.kind == bthome.ACK_DELIVERED][-1:]
        for ack in [a for a in owed if a.kind == bthome.ACK_OPERATOR] + delivered:
            self.writer.request(device, ack.counter, ack.kind)

    def receipt(self, device: Device, number: int) -> None:
        """`device` says, in a new authentic frame, that ack `number` is the last it took."""
        link = self.writer.link_of(device, number) if self.writer is not None else None
        try:
            confirmed = self._store.ack_confirmed(device.id, number, link)
        except StoreError as exc:
            log.error("%s: receipt of ack %d not recorded: %s", device.address, number, exc)
            return
        if not confirmed:
            # Perhaps not yet recorded as written: the device advertises its receipt as soon as
            # it took the ack, and the hub may hear that before its write's response is handled.
            self._early[device.id] = number
            log.debug("%s: receipt of ack %d: nothing awaited it (yet)", device.address, number)
            return
        self._early.pop(device.id, None)
        for counter, kind in confirmed:
            if self.writer is not None:
                self.writer.confirmed(device, counter, kind)
            log.info("%s: the device confirmed ack %d (kind %d for counter %d)%s", device.address, number, kind,
                     counter, "" if len(confirmed) == 1 else f"; {len(confirmed)} acks of one connection")

    def owed(self, device_id: str) -> None:
        """`device_id` is newly owed an ack: write it now if the device is likely still
        advertising, else when next heard."""
        self._owed().add(device_id)
        device = self._devices.by_id(device_id)
        if device is not None and self.writer is not None and self.writer.heard_recently(device, self._advertising_s):
            self.heard(device)

    def _owed(self) -> set[str]:
        if self._owed_devices is None:
            self._owed_devices = set()
            try:
                self._owed_devices = {a.device_id for a in self._store.owed_acks(None, self._clock())}
            except StoreError as exc:
                log.error("owed acks not read: %s", exc)
        return self._owed_devices

    def _seal(self, device: Device, counter: int, kind: int) -> tuple[int, int, bytes]:
        """The ack, made once the link is up: by then the platform may have the event (the relay
        takes milliseconds, a connection hundreds), and then kind 2 says it, in this connection."""
        if kind == bthome.ACK_HEARD:
            try:
                owed = self._store.owed_acks(device.id, self._clock())
            except StoreError as exc:
                log.error("owed acks not read: %s", exc)
                owed = []
            kind = max([kind] + [a.kind for a in owed if a.counter == counter])
        number = self._store.next_ack_number()  # StoreError: nothing sealed (the writer logs it)
        return kind, number, bthome.seal_ack(device.key, device.mac, kind, counter, int(self._clock()), number)

    def _record(self, device: Device, counter: int, kind: int, number: int, link: int, ms: float) -> None:
        if self.writer is not None:
            # After kind 1 the device lingers on the air for its kind 2; kind 2 or 3 ends that.
            linger = bthome.LINGER_MS.get(device.role, 0) if kind == bthome.ACK_HEARD else 0
            self.writer.expect(device, linger / 1000)
        if kind >= bthome.ACK_DELIVERED:
            try:
                self._store.ack_sent(device.id, counter, kind, number, link)
            except StoreError as exc:  # owed still: written again next time, which is harmless
                log.error("%s: ack kind %d for counter %d written but not recorded: %s",
                          device.address, kind, counter, exc)
        log.info("%s: ack kind %d for counter %d written in %d ms (ack %d%s)", device.address, kind, counter, ms,
                 number, "; owed until the device confirms it" if kind >= bthome.ACK_DELIVERED else "")
        if self._early.get(device.id) == number:  # any kind: a receipt names the last ack taken
            self.receipt(device, number)  # its receipt came before the write's response was handled

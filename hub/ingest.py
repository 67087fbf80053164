"""From a received advertisement to a stored event: the hub's one door for device frames.

The radio hands over (address, service data, RSSI) for every frame it hears, repeats and
strangers included. `Ingest.handle` decides, in this order: is it a paired device, does
the MIC verify (`bthome.unseal`), what does the frame say for the device's role, and
what does the store's replay guard make of its counter (`HubStore.accept`, which also
stores the event in the same transaction). The answer is an `Outcome` the caller acts on:
`ack_needed` means "write an ack of kind 1 (heard) for `counter` to this device".

Anything unusable is refused with a reason, logged as a line on "safebox.hub.ingest" with
the address (hub/refusals.py: a few per device and interval, then counted, so a flood cannot
fill the log); a frame never raises. The one exception that does
escape is `StoreError`: that is the hub's own disk failing, not bad input, and the device
keeps its event and sends it again, so the caller should report it as ill health.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

from safebox.hub.devices import Device, Devices, DevicesError
from safebox.hub import key_watch
from safebox.hub.key_watch import KeyWatch
from safebox.hub.privacy import Privacy
from safebox.hub.refusals import RefusalLog
from safebox.hub.store import HubStore
from safebox.protocol import bthome, events, frames

log = logging.getLogger("safebox.hub.ingest")

OutcomeKind = Literal["event", "repeat", "heartbeat", "refused"]



@dataclass(frozen=True)
class Outcome:
    """What became of one frame.

    kind: "event" (new event stored), "repeat" (same counter as the last accepted frame:
    nothing stored), "heartbeat" (new heartbeat: counter and last-heard updated),
    "refused" (`reason` says why; nothing stored).
    event_id: the event's id for "event" and a repeated event, else None.
    counter: the frame's counter once it is known to be authentic.
    ack_needed: the device waits for an ack (kind 1, heard) of `counter`: true for a new
    event and for a repeated one (the device may have missed the first ack).
    """

    kind: OutcomeKind
    event_id: str | None = None
    counter: int | None = None
    reason: str | None = None
    ack_needed: bool = False
    device: Device | None = None
    raised: str | None = None  # a hub event this frame made the hub raise (key_compromised)
    ack_seen: int | None = None  # a NEW frame's receipt: the number of the last ack the device took (SPEC 1.7)
    body: bytes | None = None  # a new event's bytes (for the rules: a door move kept at the hub is in no outbox)
    kept_at_hub: bool = False  # a new event hub/privacy.py keeps from the platform (the rules may still send it)


class Ingest:
    def __init__(self, store: HubStore, devices: Devices, hub_id: str, home_id: str,
                 clock: Callable[[], float] = time.time,
                 is_test: Callable[[str, float], bool] | None = None,
                 time_check: Callable[[], tuple[float | None, bool]] | None = None,
                 privacy: Privacy = Privacy()) -> None:
        """`is_test(device_id, heard_at)`: the walk-test window (hub/walk_test.py), whose
        device events are marked `data.test = true`; the frame itself never says so.
        `time_check()` -> (offset, trusted): how far the hub clock is off the platform's when
        that is more than its tolerance (None otherwise), and whether the hub clock is trusted
        (SPEC 2, "Time"): an event's time is corrected by the offset and says so, or is
        marked untrusted when nothing better is known.
        `privacy` (hub/privacy.py): which events go to the platform and whether they carry the
        RSSI; an event kept at the hub still advances the counter and reaches the rules."""
        self._store = store
        self._privacy = privacy
        self._is_test = is_test
        self._time_check = time_check
        self._devices = devices
        self._hub_id = hub_id
        self._home_id = home_id
        self._clock = clock
        self._refusals = RefusalLog(log, clock=clock)
        self._keys = KeyWatch(store, hub_id=hub_id, home_id=home_id, clock=clock)
        self._registry_broken = False

    def handle(self, address: str, service_data: bytes, rssi: int | None) -> Outcome:
        """Judge one frame and store what it carries; see the module doc."""
        device = self._device(address)
        if device is None:
            return self._refuse_stranger(address)
        try:
            info, counter, objects = bthome.unseal(device.key, device.mac, service_data)
        except bthome.FrameError as exc:
            return self._refuse(address, str(exc), device=device)
        is_event = bool(info & bthome.INFO_EVENT)
        heard_at = self._clock()
        body = None
        event_id = type_ = None
        send = True
        if is_event:
            event_id = events.device_event_id(device.mac, counter)
            try:
                type_, body, test = self._body(device, counter, objects, rssi, heard_at, event_id)
            except (frames.MeaningError, events.EventError) as exc:
                return self._refuse(address, str(exc), device=device, counter=counter)
            send = test or self._privacy.sends(device.role, type_)  # a walk test shows the installer everything
        verdict = self._store.accept(device.id, counter, body, heard_at=heard_at, send=send,
                                     battery=_battery(objects), rssi=rssi, max_jump=key_watch.max_jump)
        if verdict.kind in ("replay", "jump"):
            why = (f"replayed counter {counter} (last accepted {verdict.last_counter})" if verdict.kind == "replay"
                   else f"counter {counter} jumps {counter - (verdict.last_counter or 0)} above the last accepted "
                        f"{verdict.last_counter}, {verdict.elapsed_s or 0:.0f} s after it")
            raised = self._keys.refused(device, counter, verdict.last_counter, why)
            return self._refuse(address, why, device=device, counter=counter, raised=raised)
        if verdict.kind == "repeat" and is_event and not verdict.last_was_event:
            # Same counter as a heartbeat we accepted: a device bug. Acking it would tell the
            # resident "heard" for an event that was never stored.
            return self._refuse(address, f"event frame reuses counter {counter} of a heartbeat; not stored",
                                device=device, counter=counter)
        if verdict.kind == "repeat":
            log.debug("%s: repeat of counter %d", address, counter)
            return Outcome("repeat", event_id=event_id, counter=counter, ack_needed=is_event, device=device)
        if is_event:
            if send:
                log.info("%s: event %s stored (%s)", address, event_id, type_)
            else:
                log.info("%s: event %s (%s) read by the rules, kept at the hub (privacy.send_door_moves)",
                         address, event_id, type_)
            return Outcome("event", event_id=event_id, counter=counter, ack_needed=True, device=device,
                           ack_seen=bthome.ack_seen(objects), body=body, kept_at_hub=not send)
        boot = bthome.boot_info(objects)  # SPEC 1.8: a heartbeat that says the device (re)started
        if boot is not None:
            log.info("%s: boot frame, counter %d: reset cause %s, firmware %s", address, counter, boot[0], boot[1])
        else:
            log.debug("%s: heartbeat, counter %d", address, counter)
        return Outcome("heartbeat", counter=counter, device=device, ack_seen=bthome.ack_seen(objects))

    def _device(self, address: str) -> Device | None:
        # Pairing is done by another process (the installer): one stat per frame notices a
        # re-paired key or an unpaired device at once, not at the hub's next restart.
        try:
            self._devices.reload_if_changed()
            self._registry_broken = False
        except DevicesError as exc:
            if not self._registry_broken:
                log.error("devices registry not reloaded, keeping the old one: %s", exc)
            self._registry_broken = True
        return self._devices.get(address)

    def _body(self, device: Device, counter: int, objects: list[tuple[int, int]], rssi: int | None,
              heard_at: float, event_id: str) -> tuple[str, bytes, bool]:
        """The type of the event an event frame reports, its exact bytes to store and send, and
        whether a walk test covers it."""
        reading = frames.read(device.role, objects)
        if reading.note:
            log.warning("%s: frame %d: %s", device.address, counter, reading.note)
        data: dict[str, object] = dict(reading.data)
        test = self._is_test is not None and self._is_test(device.id, heard_at)
        rssi = self._privacy.rssi(rssi, walk_test=test)
        if rssi is not None:
            data["rssi"] = rssi
        if test:
            data["test"] = True
        occurred_at = reading.timestamp
        offset, trusted = self._time_check() if self._time_check is not None else (None, True)
        if occurred_at is None:
            occurred_at = heard_at
            if offset is not None:
                occurred_at += offset
                data["hub_clock_offset_s"] = round(offset, 1)
            elif not trusted:
                data["time_untrusted"] = True
        data["hub_stored_at"] = events.timestamp(heard_at + (offset or 0.0))  # SPEC 2: the timeline's step
        body = events.make(event_id=event_id, type=reading.type, hub_id=self._hub_id, home_id=self._home_id,
                           occurred_at=occurred_at,
                           device=device.event_device(), counter=counter, data=data)
        return reading.type, events.encode(body), test

    def _refuse_stranger(self, address: str) -> Outcome:
        reason = f"unpaired device {address}"
        self._refusals.refused(address, reason, paired=False)
        return Outcome("refused", reason=reason)

    def _refuse(self, address: str, reason: str, *, device: Device | None = None,
                counter: int | None = None, raised: str | None = None) -> Outcome:
        self._refusals.refused(address, reason, paired=True)
        return Outcome("refused", counter=counter, reason=reason, device=device, raised=raised)


def _battery(objects: list[tuple[int, int]]) -> int | None:
    return next((value for obj_id, value in objects if obj_id == bthome.OBJ_BATTERY), None)

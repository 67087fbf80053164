"""From a received advertisement to a stored event: the hub's one door for device frames.

The radio hands over (address, service data, RSSI) for every frame it hears, repeats and
strangers included. `Ingest.handle` decides, in this order: is it a paired device, does
the MIC verify (`bthome.unseal`), what does the frame say for the device's role, and
what does the store's replay guard make of its counter (`HubStore.accept`, which also
stores the event in the same transaction). The answer is an `Outcome` the caller acts on:
`ack_needed` means "write an ack of kind 1 (heard) for `counter` to this device".

Anything unusable is refused with a reason, logged as one WARNING line on
"safebox.hub.ingest" with the address; a frame never raises. The one exception that does
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
from safebox.hub.store import HubStore
from safebox.protocol import bthome, events

log = logging.getLogger("safebox.hub.ingest")

STRANGER_LOG_S = 3600
_STRANGERS_MAX = 1024  # addresses remembered for log rate-limiting; forgotten all at once beyond
OutcomeKind = Literal["event", "repeat", "heartbeat", "refused"]

_BUTTON_ACTIONS = {bthome.BUTTON_PRESS: "press", bthome.BUTTON_LONG_PRESS: "long_press"}
_DOOR_EVENTS = {0: events.DOOR_CLOSED, 1: events.DOOR_OPENED}


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


class _Refused(Exception):
    """A frame that is authentic but does not say anything this protocol understands."""


class Ingest:
    def __init__(self, store: HubStore, devices: Devices, hub_id: str, home_id: str,
                 clock: Callable[[], float] = time.time,
                 is_test: Callable[[str, float], bool] | None = None) -> None:
        """`is_test(device_id, heard_at)`: the walk-test window (hub/walk_test.py), whose
        device events are marked `data.test = true`; the frame itself never says so."""
        self._store = store
        self._is_test = is_test
        self._devices = devices
        self._hub_id = hub_id
        self._home_id = home_id
        self._clock = clock
        self._strangers_logged: dict[str, float] = {}
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
        values = _values(objects)
        is_event = bool(info & bthome.INFO_EVENT)
        heard_at = self._clock()
        body = None
        event_id = type_ = None
        if is_event:
            event_id = events.device_event_id(device.mac, counter)
            try:
                type_, body = self._body(device, counter, values, rssi, heard_at, event_id)
            except (_Refused, events.EventError) as exc:
                return self._refuse(address, str(exc), device=device, counter=counter)
        verdict = self._store.accept(device.id, counter, body, heard_at=heard_at,
                                     battery=_first(values, bthome.OBJ_BATTERY), rssi=rssi)
        if verdict.kind == "replay":
            return self._refuse(address, f"replayed counter {counter} (last accepted {verdict.last_counter})",
                                device=device, counter=counter)
        if verdict.kind == "repeat" and is_event and not verdict.last_was_event:
            # Same counter as a heartbeat we accepted: a device bug. Acking it would tell the
            # resident "heard" for an event that was never stored.
            return self._refuse(address, f"event frame reuses counter {counter} of a heartbeat; not stored",
                                device=device, counter=counter)
        if verdict.kind == "repeat":
            log.debug("%s: repeat of counter %d", address, counter)
            return Outcome("repeat", event_id=event_id, counter=counter, ack_needed=is_event, device=device)
        if is_event:
            log.info("%s: event %s stored (%s)", address, event_id, type_)
            return Outcome("event", event_id=event_id, counter=counter, ack_needed=True, device=device)
        boot = bthome.boot_info(objects)  # SPEC 1.8: a heartbeat that says the device (re)started
        if boot is not None:
            log.info("%s: boot frame, counter %d: reset cause %s, firmware %s", address, counter, boot[0], boot[1])
        else:
            log.debug("%s: heartbeat, counter %d", address, counter)
        return Outcome("heartbeat", counter=counter, device=device)

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

    def _body(self, device: Device, counter: int, values: dict[int, list[int]], rssi: int | None,
              heard_at: float, event_id: str) -> tuple[str, bytes]:
        """The type of the event an event frame reports, and its exact bytes to store and send."""
        data: dict[str, object] = {}
        battery = _first(values, bthome.OBJ_BATTERY)
        if battery is not None:
            data["battery"] = battery
        if rssi is not None:
            data["rssi"] = rssi
        if self._is_test is not None and self._is_test(device.id, heard_at):
            data["test"] = True
        if device.role == "pendant":
            pressed = _pressed(values)
            if len(pressed) > 1:
                # A faulty frame: the first in protocol order wins (emergency before the
                # service calls), as an authentic emergency press must never be dropped.
                log.warning("%s: frame %d shows %d buttons pressed; taking %s",
                            device.address, counter, len(pressed), pressed[0][0])
            type_, data["action"] = pressed[0]
        else:
            door = _first(values, bthome.OBJ_DOOR)
            if door is None:
                raise _Refused("door event frame without a door object")
            if door not in _DOOR_EVENTS:
                raise _Refused(f"door object has unknown value {door}")
            type_ = _DOOR_EVENTS[door]
            occupancy = _first(values, bthome.OBJ_OCCUPANCY)
            if occupancy is not None:
                data["occupancy"] = bool(occupancy)
        timestamp = _first(values, bthome.OBJ_TIMESTAMP)
        body = events.make(event_id=event_id, type=type_, hub_id=self._hub_id, home_id=self._home_id,
                           occurred_at=heard_at if timestamp is None else timestamp,
                           device=device.event_device(), counter=counter, data=data)
        return type_, events.encode(body)

    def _refuse_stranger(self, address: str) -> Outcome:
        """Neighbours' BTHome sensors share our UUID: say so once per address per
        STRANGER_LOG_S, not for every advertisement, or the log fills the SD card."""
        reason = f"unpaired device {address}"
        now = self._clock()
        if now - self._strangers_logged.get(address, -STRANGER_LOG_S) >= STRANGER_LOG_S:
            if len(self._strangers_logged) >= _STRANGERS_MAX:
                self._strangers_logged.clear()
            self._strangers_logged[address] = now
            log.warning("refused frame from %s: %s (not logged again for %d s)", address, reason, STRANGER_LOG_S)
        return Outcome("refused", reason=reason)

    def _refuse(self, address: str, reason: str, *, device: Device | None = None,
                counter: int | None = None) -> Outcome:
        log.warning("refused frame from %s: %s", address, reason)
        return Outcome("refused", counter=counter, reason=reason, device=device)


def _values(objects: list[tuple[int, int]]) -> dict[int, list[int]]:
    """Object id -> its values in frame order (buttons repeat; the others appear once)."""
    values: dict[int, list[int]] = {}
    for obj_id, value in objects:
        values.setdefault(obj_id, []).append(value)
    return values


def _first(values: dict[int, list[int]], obj_id: int) -> int | None:
    found = values.get(obj_id)
    return found[0] if found else None


def _pressed(values: dict[int, list[int]]) -> list[tuple[str, str]]:
    """[(event type, action), ...] of the pressed buttons of a pendant's event frame, in protocol order."""
    buttons = values.get(bthome.OBJ_BUTTON, [])
    if len(buttons) != len(bthome.PENDANT_BUTTONS):
        raise _Refused(f"pendant frame has {len(buttons)} button objects, expected {len(bthome.PENDANT_BUTTONS)}")
    for name, value in zip(bthome.PENDANT_BUTTONS, buttons):
        if value != bthome.BUTTON_NONE and value not in _BUTTON_ACTIONS:
            raise _Refused(f"button {name} has unknown value 0x{value:02x}")
    pressed = [(name, _BUTTON_ACTIONS[value]) for name, value in zip(bthome.PENDANT_BUTTONS, buttons)
               if value != bthome.BUTTON_NONE]
    if not pressed:
        raise _Refused("pendant event frame with no button pressed")
    return pressed

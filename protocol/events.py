"""Event types and the JSON body of protocol v1 (SPEC.md section 2). CPython only."""

from __future__ import annotations

import json
import re
from datetime import datetime, timezone
from typing import Any

# What devices report is named with the frames that carry it (protocol/frames.py).
from safebox.protocol.frames import COMMUNITY_SERVICE, DOOR_CLOSED, DOOR_OPENED, EMERGENCY, LIFE_SERVICE

TOILET_OCCUPIED = "toilet_occupied"
TOILET_VACATED = "toilet_vacated"
TOILET_OVERDUE = "toilet_overdue"
DOOR_INACTIVE = "door_inactive"
DEVICE_OFFLINE = "device_offline"
DEVICE_ONLINE = "device_online"
BATTERY_LOW = "battery_low"
HUB_HEARTBEAT = "hub_heartbeat"
# An installer's end-to-end test (`safebox-hub test-alarm`): travels as an emergency would,
# and says plainly that it is a test, so no operator sends anyone.
TEST_ALARM = "test_alarm"
# A device's frames are refused as replays or counter jumps: its key may be in other hands (SPEC 1.4).
KEY_COMPROMISED = "key_compromised"
# Urgent events the platform had refused were held and are now delivered late (SPEC 3.2).
URGENT_REFUSED = "urgent_refused"

TYPES = frozenset({
    EMERGENCY, COMMUNITY_SERVICE, LIFE_SERVICE, DOOR_OPENED, DOOR_CLOSED,
    TOILET_OCCUPIED, TOILET_VACATED, TOILET_OVERDUE, DOOR_INACTIVE,
    DEVICE_OFFLINE, DEVICE_ONLINE, BATTERY_LOW, HUB_HEARTBEAT, TEST_ALARM, URGENT_REFUSED,
    KEY_COMPROMISED,
})
# Sent at once, ahead of everything else waiting.
URGENT = frozenset({EMERGENCY, COMMUNITY_SERVICE, LIFE_SERVICE, TOILET_OVERDUE, DOOR_INACTIVE, TEST_ALARM})

ROLES = frozenset({"pendant", "front_door", "toilet_door"})
MAX_BODY = 16 * 1024

_ID = re.compile(r"^[a-z0-9][a-z0-9-]{1,62}[a-z0-9]$")
_EVENT_ID = re.compile(r"^[a-z0-9][a-z0-9-]{1,62}-[0-9]{1,10}$")
_DEVICE_ID = re.compile(r"^[0-9a-f]{12}$")


class EventError(ValueError):
    """An event body that does not follow the protocol; the message names the field."""


def device_id(mac: bytes) -> str:
    """The device id: its public MAC as 12 lower-case hex digits."""
    return bytes(mac).hex()


def device_event_id(mac: bytes, counter: int) -> str:
    return f"{device_id(mac)}-{counter}"


def hub_event_id(hub_id: str, seq: int) -> str:
    return f"{hub_id}-{seq}"


def timestamp(t: float) -> str:
    """Unix seconds -> RFC 3339 UTC with milliseconds, e.g. 2026-11-26T06:59:01.123Z."""
    return datetime.fromtimestamp(t, timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def make(*, event_id: str, type: str, hub_id: str, home_id: str, occurred_at: float,
         device: dict | None = None, counter: int | None = None,
         data: dict | None = None) -> dict[str, Any]:
    """Build an event body; raises EventError when it would not validate."""
    body = {
        "event_id": event_id,
        "type": type,
        "hub_id": hub_id,
        "home_id": home_id,
        "device": device,
        "counter": counter,
        "occurred_at": timestamp(occurred_at),
        "data": data or {},
    }
    validate(body)
    return body


def encode(body: dict) -> bytes:
    """The exact bytes that are signed and sent: compact, key-sorted UTF-8 JSON."""
    return json.dumps(body, separators=(",", ":"), sort_keys=True, ensure_ascii=False).encode()


def decode(raw: bytes) -> dict[str, Any]:
    """Bytes from the wire -> a validated body; EventError says what is wrong."""
    if len(raw) > MAX_BODY:
        raise EventError(f"body of {len(raw)} bytes exceeds {MAX_BODY}")
    try:
        body = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise EventError(f"body is not UTF-8 JSON: {exc}") from None
    except RecursionError:
        raise EventError("body is nested too deeply") from None
    except ValueError as exc:  # an integer of thousands of digits
        raise EventError(f"body has an unreadable number: {str(exc)[:80]}") from None
    validate(body)
    return body


def _need(cond: bool, field: str, why: str) -> None:
    if not cond:
        raise EventError(f"{field}: {why}")


def validate(body: Any) -> None:
    _need(isinstance(body, dict), "body", "must be a JSON object")
    allowed = {"event_id", "type", "hub_id", "home_id", "device", "counter", "occurred_at", "data"}
    extra = sorted(set(body) - allowed)
    _need(not extra, "body", "unknown field %s" % ", ".join(repr(k)[:40] for k in extra[:3]))
    for field in ("event_id", "type", "hub_id", "home_id", "occurred_at"):
        _need(isinstance(body.get(field), str), field, "required string")
    _need(bool(_EVENT_ID.match(body["event_id"])), "event_id", "must be <source>-<number>")
    _need(body["type"] in TYPES, "type", f"unknown event type {body['type']!r}")
    _need(bool(_ID.match(body["hub_id"])), "hub_id", "lower-case letters, digits and '-', 3-64 long")
    _need(bool(_ID.match(body["home_id"])), "home_id", "lower-case letters, digits and '-', 3-64 long")
    try:
        when = datetime.fromisoformat(body["occurred_at"].replace("Z", "+00:00"))
    except ValueError:
        raise EventError("occurred_at: not an RFC 3339 time") from None
    _need(when.tzinfo is not None, "occurred_at", "must carry a time zone")
    device = body.get("device")
    counter = body.get("counter")
    if device is None:
        _need(counter is None, "counter", "only device events carry a counter")
        _need(body["event_id"].startswith(body["hub_id"] + "-"), "event_id", "a hub event's id starts with the hub id")
    else:
        _need(isinstance(device, dict), "device", "must be an object or null")
        _need(isinstance(device.get("id"), str) and bool(_DEVICE_ID.match(device["id"])),
              "device.id", "12 lower-case hex digits")
        role = device.get("role")
        _need(isinstance(role, str) and role in ROLES, "device.role", f"one of {sorted(ROLES)}")
        _need(set(device) <= {"id", "role", "room"}, "device", "unknown field")
        _need(isinstance(device.get("room", ""), str), "device.room", "must be a string")
        _need(type(counter) is int and 0 <= counter <= 0xFFFFFFFF, "counter", "0 .. 2^32-1")
        _need(body["event_id"] == f"{device['id']}-{counter}", "event_id", "must be <device id>-<counter>")
    _need(isinstance(body.get("data"), dict), "data", "must be an object")

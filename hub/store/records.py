"""What the hub database hands out: frozen records, no behaviour."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal


@dataclass(frozen=True)
class Verdict:
    """What `accept` made of a counter.

    kind: "new" (stored), "repeat" (equal to the last accepted: not stored again),
    "replay" (below it: refused), "jump" (further above it than the caller's bound allows for
    the time since: refused). last_counter: the highest counter accepted before this call,
    None if the device was never heard. last_was_event: whether the frame accepted with
    last_counter carried an event (a repeat may only be acknowledged if so). elapsed_s: the
    seconds since last_counter was accepted (None if never).
    """

    kind: Literal["new", "repeat", "replay", "jump"]
    last_counter: int | None
    last_was_event: bool = False
    elapsed_s: float | None = field(default=None, compare=False)


@dataclass(frozen=True)
class OutboxItem:
    event_id: str
    type: str
    urgent: bool
    body: bytes
    source: str
    created_at: float
    attempts: int
    next_attempt_at: float
    last_error: str | None


@dataclass(frozen=True)
class DeadLetter:
    event_id: str
    type: str
    body: bytes
    created_at: float
    attempts: int
    died_at: float
    reason: str


@dataclass(frozen=True)
class OwedAck:
    """An ack a device is owed: `kind` for its `counter` (the event `event_id`)."""

    device_id: str
    counter: int
    kind: int
    event_id: str
    owed_since: float
    expires_at: float


@dataclass(frozen=True)
class Settled:
    """What `settle_delivered` did: the ids it took out of the outbox, the devices now owed an ack."""

    event_ids: list[str]
    owed_devices: list[str]


@dataclass(frozen=True)
class Awaiting:
    """An urgent pendant event the platform has, not yet taken up by an operator."""

    event_id: str
    device_id: str
    counter: int
    delivered_at: float
    until: float


@dataclass(frozen=True)
class Alarm:
    kind: str
    subject: str
    raised_at: float
    raised_event: str
    acknowledged_at: float | None
    cleared_at: float | None
    cleared_event: str | None


@dataclass(frozen=True)
class SeenDevice:
    device_id: str
    last_heard_at: float
    last_counter: int
    battery: int | None
    rssi: int | None



@dataclass(frozen=True)
class Owe:
    """What the ack policy decided a delivered event makes owed (hub/acks/policy.py): an ack of
    `kind` to `device_id` for `counter` until `until`, and, for an urgent press, a wait for an
    operator until `await_operator_until` (None: nobody is awaited)."""

    event_id: str
    device_id: str
    counter: int
    kind: int
    until: float
    await_operator_until: float | None = None

"""What the rules see and what they answer: plain values, no I/O.

An `Observation` is one authentic, new frame from a paired device, as the hub
stored it: a device event (door opened, button pressed, ...) or a heartbeat.
The rules answer with `Emit` (the hub makes an event and sends it to the
platform) and `Clear` (an alarm ends without an event of its own, e.g. the
front door's `door_inactive` is ended by the `door_opened` the device sent).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Union

HEARTBEAT = "heartbeat"  # the type of an Observation made from a heartbeat frame


@dataclass(frozen=True)
class Subject:
    """The device a rule is about (hub events name it in data.device)."""

    id: str
    role: str
    room: str = ""

    def as_data(self) -> dict[str, str]:
        return {"id": self.id, "role": self.role, "room": self.room}


@dataclass(frozen=True)
class Observation:
    """One new frame from `subject`.

    type: the device event's type (events.DOOR_OPENED, events.EMERGENCY, ...) or HEARTBEAT.
    at: when it happened (the event's occurred_at); heard_at: when the hub heard it.
    battery, occupancy: what the frame carried, None when it carried nothing.
    """

    subject: Subject
    type: str
    at: float
    heard_at: float
    event_id: str | None = None
    battery: int | None = None
    occupancy: bool | None = None


@dataclass(frozen=True)
class Emit:
    """Make a hub event of `type` about `subject`, occurred at `at`.

    raises: the alarm this event raises (its kind, e.g. "toilet_overdue"), or None.
    clears: the alarm this event ends (e.g. toilet_vacated ends "toilet_overdue"), or None.
    """

    type: str
    subject: Subject
    at: float
    data: dict[str, Any] = field(default_factory=dict)
    raises: str | None = None
    clears: str | None = None


@dataclass(frozen=True)
class Clear:
    """End the open alarm `kind` of `subject` without a hub event; `by_event` ended it (if an event did)."""

    kind: str
    subject: Subject
    at: float
    by_event: str | None = None


Action = Union[Emit, Clear]

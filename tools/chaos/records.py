"""What a chaos run counts with: its constants and the records of what happened."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

PENDING_CAP = 6  # events a device may have waiting for their ack before the residents wait
TOILET_LIMIT_S = 10.0  # rules.toilet.overdue_after_s for the run (the hub's minimum)
STARTUP_GRACE_S = 3.0  # rules.startup_grace_s for the run
PENDANT_TYPES = {"emergency", "community_service", "life_service"}
DEFAULT_MIX = "pendant:12,front_door:2,toilet_door:2"


@dataclass
class Created:
    device: str
    counter: int
    type: str
    at: float  # when the simulator saw the firmware's line


@dataclass
class Visit:
    """A toilet visit: the door closed at `closed_at`, opened at `opened_at`; the counters of
    the two door events the firmware made (None: not registered, the device was off)."""

    device: str
    closed_at: float
    opened_at: float = 0.0
    close_counter: int | None = None
    open_counter: int | None = None


@dataclass
class Fault:
    kind: str
    start: float
    end: float = 0.0
    detail: str = ""


@dataclass
class Result:
    seed: int
    devices: dict[str, int]
    target: int
    created: int = 0
    stored: int = 0
    lost: int = 0
    undelivered_on_devices: int = 0  # still in a device's flash, unacknowledged, at the end: late, not lost
    undelivered_at_hub: int = 0  # in the hub's outbox at the end: late, not lost
    stored_twice: int = 0
    wrong_content: int = 0
    phantom: int = 0
    dead_letters: int = 0
    dropped: int = 0
    left_in_outbox: int = 0
    presses_not_registered: int = 0
    hub_events_stored: int = 0
    faults: dict[str, int] = field(default_factory=dict)
    seconds_total: float = 0.0
    seconds_load: float = 0.0
    seconds_drain: float = 0.0
    delivery_ms: dict[str, float] = field(default_factory=dict)
    urgent_delivery_ms: dict[str, float] = field(default_factory=dict)
    alarms: dict[str, Any] = field(default_factory=dict)
    acks_per_event: float = 0.0
    pace_s: float = 0.0
    injectors: list[str] = field(default_factory=list)
    sms_to_platform: int = 0  # with the broadband injector: SMS the hub's modem sent to the platform
    channels: dict[str, int] = field(default_factory=dict)  # events stored by channel (https, sms+https, ...)
    lost_ids: list[str] = field(default_factory=list)
    phantom_ids: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    alarms_missed: int = 0  # toilet_overdue the hub should have raised by what it knew, and did not
    alarms_unexpected: int = 0  # toilet_overdue the hub raised though by what it knew the door had opened

    MUST_BE_ZERO = ("lost", "stored_twice", "wrong_content", "phantom", "dead_letters", "dropped",
                    "alarms_missed", "alarms_unexpected")

    @property
    def ok(self) -> bool:
        """Nothing lost or doubled, the target reached, and everything delivered by the end."""
        return all(getattr(self, name) == 0 for name in self.MUST_BE_ZERO) and self.created >= self.target \
            and self.undelivered_on_devices == 0 and self.undelivered_at_hub == 0

"""The rules' settings: the [rules] table of hub.toml (hub/config.py reads and checks it).

Defaults are the numbers in the seeds: 10 minutes in the toilet, 24 hours without
the front door opening; hourly heartbeats, offline after 3 missed (commercial
pendants use 1 to 9 hours and about 3 missed).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import tzinfo


@dataclass(frozen=True)
class QuietWindow:
    """A daily local-time window, minutes after midnight; `end` < `start` wraps past midnight."""

    start: int
    end: int

    def __str__(self) -> str:
        return f"{self.start // 60:02d}:{self.start % 60:02d}-{self.end // 60:02d}:{self.end % 60:02d}"


@dataclass(frozen=True)
class ToiletSettings:
    overdue_after_s: float = 600.0


@dataclass(frozen=True)
class FrontDoorSettings:
    inactive_after_s: float = 86400.0
    # door_inactive falling due inside one of these is held to the window's end.
    quiet_windows: tuple[QuietWindow, ...] = ()


@dataclass(frozen=True)
class SupervisionSettings:
    heartbeat_s: float = 3600.0
    missed_heartbeats: int = 3
    grace_s: float = 60.0  # radio jitter and the device's send burst, on top of the missed periods
    battery_low_pct: int = 20
    battery_ok_pct: int = 30  # the low-battery episode ends (battery changed) at or above this

    @property
    def offline_after_s(self) -> float:
        return self.heartbeat_s * self.missed_heartbeats + self.grace_s


@dataclass(frozen=True)
class RulesSettings:
    toilet: ToiletSettings = field(default_factory=ToiletSettings)
    front_door: FrontDoorSettings = field(default_factory=FrontDoorSettings)
    supervision: SupervisionSettings = field(default_factory=SupervisionSettings)
    # Quiet windows are local time here; None: the hub's own local time zone.
    timezone: tzinfo | None = None
    # After the hub starts, no timer alarm falls due for this long: frames the devices
    # kept while the hub was down (a door opened, the toilet left) arrive first.
    startup_grace_s: float = 120.0

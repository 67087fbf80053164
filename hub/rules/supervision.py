"""Supervision of every paired device: silent too long, and a battery running down.

Offline: a device sends a heartbeat every `heartbeat_s` (and each event counts as
being heard). Not heard for `missed_heartbeats` periods plus `grace_s` -> one
`device_offline`; the next frame heard from it -> `device_online`, which clears it.
The hub does not blame devices for its own absence: the silence is counted from the
later of the last frame heard and the moment this hub process began listening.

Battery: the first frame at or below `battery_low_pct` raises one `battery_low`;
later low readings add nothing (one alarm per episode, not one per heartbeat). The
episode ends, silently, when a reading reaches `battery_ok_pct` (the battery was
changed): the next fall starts a new episode. The gap between the two thresholds
keeps a reading that wobbles around the limit from raising alarms over and over.
"""

from __future__ import annotations

from typing import Any

from safebox.hub.rules.model import Action, Clear, Emit, Observation, Subject
from safebox.hub.rules.settings import SupervisionSettings
from safebox.protocol import events

OFFLINE = events.DEVICE_OFFLINE
BATTERY = events.BATTERY_LOW


class SupervisionMachine:
    rule = "supervision"

    def __init__(self, subject: Subject, settings: SupervisionSettings, state: dict[str, Any] | None,
                 *, watching_since: float) -> None:
        self.subject = subject
        self.settings = settings
        state = state or {}
        self.last_heard: float | None = state.get("last_heard")
        self.offline: bool = bool(state.get("offline", False))
        self.battery_low: bool = bool(state.get("battery_low", False))
        self.watching_since = watching_since

    def state(self) -> dict[str, Any]:
        return {"last_heard": self.last_heard, "offline": self.offline, "battery_low": self.battery_low}

    def observe(self, obs: Observation) -> list[Action]:
        actions: list[Action] = []
        previous = self.last_heard
        self.last_heard = obs.heard_at if previous is None else max(previous, obs.heard_at)
        if self.offline:
            self.offline = False
            data: dict[str, Any] = {"last_heard_before": None if previous is None else events.timestamp(previous)}
            if obs.battery is not None:
                data["battery"] = obs.battery
            actions.append(Emit(events.DEVICE_ONLINE, self.subject, obs.heard_at, data, clears=OFFLINE))
        if obs.battery is not None:
            s = self.settings
            if not self.battery_low and obs.battery <= s.battery_low_pct:
                self.battery_low = True
                actions.append(Emit(events.BATTERY_LOW, self.subject, obs.at,
                                    {"battery": obs.battery, "threshold": s.battery_low_pct}, raises=BATTERY))
            elif self.battery_low and obs.battery >= s.battery_ok_pct:
                self.battery_low = False
                actions.append(Clear(BATTERY, self.subject, obs.at, obs.event_id))
        return actions

    def deadline(self) -> float | None:
        if self.offline:
            return None
        start = self.watching_since if self.last_heard is None else max(self.last_heard, self.watching_since)
        return start + self.settings.offline_after_s

    def tick(self, now: float) -> list[Action]:
        due = self.deadline()
        if due is None or now < due:
            return []
        self.offline = True
        s = self.settings
        data = {"last_heard": None if self.last_heard is None else events.timestamp(self.last_heard),
                "missed_heartbeats": s.missed_heartbeats, "heartbeat_s": s.heartbeat_s}
        return [Emit(events.DEVICE_OFFLINE, self.subject, due, data, raises=OFFLINE)]

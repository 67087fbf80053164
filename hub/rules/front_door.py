"""The front-door rule: `door_inactive` when the door has not been opened for a day.

The clock runs from the last `door_opened` of the front-door sensor (or, before the
first one, from when the hub began watching the door). After `inactive_after_s`
(24 h by default) one `door_inactive` is raised; the next opening clears it (the
`door_opened` event is the news, so no second hub event is made). A closing does not
count as activity: the seeds ask whether the resident has opened the door.

Quiet windows (local time, e.g. "22:00-07:00"): an alarm falling due inside one is
held until the window ends, so the grid worker is not sent out at 3 am for a
resident who is asleep; it is raised then unless the door opened meanwhile.
"""

from __future__ import annotations

from datetime import datetime, timedelta, tzinfo
from typing import Any

from safebox.hub.rules.model import Action, Clear, Emit, Observation, Subject
from safebox.hub.rules.settings import FrontDoorSettings, QuietWindow
from safebox.protocol import events

ALARM = events.DOOR_INACTIVE


def _minute_of_day(local: datetime) -> float:
    return local.hour * 60 + local.minute + (local.second + local.microsecond / 1e6) / 60


def _inside(window: QuietWindow, minute: float) -> bool:
    if window.start <= window.end:
        return window.start <= minute < window.end
    return minute >= window.start or minute < window.end


def quiet_until(t: float, windows: tuple[QuietWindow, ...], tz: tzinfo | None) -> float:
    """`t` if it is outside every window, else the end of the window(s) it falls in."""
    for _ in range(len(windows) + 1):  # windows may overlap or touch: follow them through
        local = datetime.fromtimestamp(t, tz) if tz else datetime.fromtimestamp(t).astimezone()
        minute = _minute_of_day(local)
        window = next((w for w in windows if _inside(w, minute)), None)
        if window is None:
            return t
        end = local.replace(hour=window.end // 60, minute=window.end % 60, second=0, microsecond=0)
        if end <= local:
            end += timedelta(days=1)
        t = max(t, end.timestamp())
    return t


class FrontDoorMachine:
    rule = "front_door"

    def __init__(self, subject: Subject, settings: FrontDoorSettings, tz: tzinfo | None,
                 state: dict[str, Any] | None, *, now: float) -> None:
        self.subject = subject
        self.settings = settings
        self.tz = tz
        state = state or {}
        # When inactivity is counted from, and whether that was a real opening.
        self.since: float = float(state.get("since", now))
        self.opened_seen: bool = bool(state.get("opened_seen", False))
        self.inactive: bool = bool(state.get("inactive", False))

    def state(self) -> dict[str, Any]:
        return {"since": self.since, "opened_seen": self.opened_seen, "inactive": self.inactive}

    def observe(self, obs: Observation) -> list[Action]:
        if obs.type != events.DOOR_OPENED:
            return []
        actions: list[Action] = []
        if obs.at >= self.since or not self.opened_seen:
            self.since = obs.at
            self.opened_seen = True
        if self.inactive:
            self.inactive = False
            actions.append(Clear(ALARM, self.subject, obs.at, obs.event_id))
        return actions

    def deadline(self) -> float | None:
        if self.inactive:
            return None
        return quiet_until(self.since + self.settings.inactive_after_s, self.settings.quiet_windows, self.tz)

    def tick(self, now: float) -> list[Action]:
        due = self.deadline()
        if due is None or now < due:
            return []
        self.inactive = True
        data = {"since": events.timestamp(self.since), "last_opening_seen": self.opened_seen,
                "inactive_s": round(due - self.since, 3), "limit_s": self.settings.inactive_after_s}
        return [Emit(events.DOOR_INACTIVE, self.subject, due, data, raises=ALARM)]

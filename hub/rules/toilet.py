"""The toilet rule: occupied -> vacated, and `toilet_overdue` when occupied too long.

How a door contact alone decides in or out (no PIR):
  * the door CLOSES          -> occupied (someone went in and shut the door behind them);
  * the door OPENS, occupied -> vacated  (they are coming out);
  * the door opens while vacant, or closes while occupied -> nothing changes.
This assumes the household habit the seeds describe: the toilet door is shut while
someone is inside and left open otherwise. Its known blind spots:
  * someone inside with the door left open is never seen: no occupancy, no alarm;
  * a door shut from OUTSIDE after leaving reads as occupied: `toilet_overdue` follows
    after the limit (a false alarm: the operator calls and finds all is well);
  * two people (in, out, in) within one open/close cycle look like one visit;
  * a door event the hub misses (device out of range) shifts the start of the visit
    until the device's re-send arrives (the device keeps events until acknowledged).

With a PIR (the frame carries BTHome occupancy 0x23) the sensor decides instead:
a door frame with occupancy true means occupied, false means vacant, whatever the door did.

Events: `toilet_occupied` (data.since), `toilet_vacated` (data.since, duration_s;
clears the alarm), `toilet_overdue` (raised `overdue_after_s` after the visit began,
once per visit).
"""

from __future__ import annotations

from typing import Any

from safebox.hub.rules.model import Action, Emit, Observation, Subject
from safebox.hub.rules.settings import ToiletSettings
from safebox.protocol import events

ALARM = events.TOILET_OVERDUE


class ToiletMachine:
    rule = "toilet"

    def __init__(self, subject: Subject, settings: ToiletSettings, state: dict[str, Any] | None = None) -> None:
        self.subject = subject
        self.settings = settings
        state = state or {}
        self.occupied_since: float | None = state.get("occupied_since")
        self.overdue: bool = bool(state.get("overdue", False))

    def state(self) -> dict[str, Any]:
        return {"occupied_since": self.occupied_since, "overdue": self.overdue}

    @property
    def occupied(self) -> bool:
        return self.occupied_since is not None

    def observe(self, obs: Observation) -> list[Action]:
        if obs.type not in (events.DOOR_OPENED, events.DOOR_CLOSED):
            return []
        if obs.occupancy is not None:
            inside = obs.occupancy
        elif obs.type == events.DOOR_CLOSED:
            inside = True
        else:
            inside = False
        if inside and not self.occupied:
            self.occupied_since = obs.at
            self.overdue = False
            return [Emit(events.TOILET_OCCUPIED, self.subject, obs.at, {"since": events.timestamp(obs.at)})]
        if not inside and self.occupied:
            return [self._vacate(obs.at)]
        return []

    def _vacate(self, at: float) -> Emit:
        since = self.occupied_since
        assert since is not None
        data = {"since": events.timestamp(since), "duration_s": round(max(0.0, at - since), 3),
                "was_overdue": self.overdue}
        clears = ALARM if self.overdue else None
        self.occupied_since = None
        self.overdue = False
        return Emit(events.TOILET_VACATED, self.subject, at, data, clears=clears)

    def deadline(self) -> float | None:
        if self.occupied_since is None or self.overdue:
            return None
        return self.occupied_since + self.settings.overdue_after_s

    def tick(self, now: float) -> list[Action]:
        due = self.deadline()
        if due is None or now < due:
            return []
        self.overdue = True
        assert self.occupied_since is not None
        data = {"since": events.timestamp(self.occupied_since), "limit_s": self.settings.overdue_after_s}
        return [Emit(events.TOILET_OVERDUE, self.subject, due, data, raises=ALARM)]

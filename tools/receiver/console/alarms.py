"""Operators acting on alarms: take up, note, hand over, resolve; the queue, the timeline,
the committed deadlines and the home directory.

Taking an alarm up that came from an event records the platform's operator ack (the same
`Store.operator_ack` as `safebox-receiver operator-ack`), which the hub hears in its next
answer or poll and passes to the pendant as "help is coming" (SPEC 3.6, ack kind 3).

Deadlines (seconds to be taken up, to be resolved) are commitments per alarm type; an alarm
past one is flagged late on the screen. Test alarms and walk-test events are shown as tests,
after every real alarm, and page nobody.
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass
from typing import Any

from ..store import Store
from .board import HUB_SILENT

# type: (take up within, resolve within), in seconds; the order is the queue's urgency.
DEADLINES: dict[str, tuple[int, int]] = {
    "emergency": (60, 30 * 60),
    "toilet_overdue": (60, 30 * 60),
    "door_inactive": (10 * 60, 2 * 3600),
    HUB_SILENT: (10 * 60, 24 * 3600),
    "device_offline": (60 * 60, 24 * 3600),
    "community_service": (3 * 60, 24 * 3600),
    "life_service": (3 * 60, 24 * 3600),
    "battery_low": (4 * 3600, 7 * 24 * 3600),
    "test_alarm": (10 * 60, 60 * 60),
}
URGENCY = {kind: n for n, kind in enumerate(DEADLINES)}
_COLUMNS = ("id", "hub_id", "event_id", "kind", "home_id", "device_id", "role", "room", "test", "occurred_at",
            "stored_at", "hub_stored_at", "shown_at", "taken_at", "taken_by", "resolved_at", "resolved_by", "outcome", "cleared_at")
DIRECTORY_FIELDS = ("home_id", "name", "phone", "address", "contacts")
# The home's own toilet limit in minutes (the board highlights an occupancy past it); empty: the
# seeds' 10 minutes. A CSV may leave the column out.
LIMIT_FIELD = "toilet_limit_min"
DEFAULT_TOILET_LIMIT_MIN = 10
MAX_TOILET_LIMIT_MIN = 240
MAX_TEXT = 2000


class ActionError(ValueError):
    """An action that cannot be done (unknown alarm, already resolved); the message says why."""


@dataclass
class Alarm:
    id: int
    hub_id: str
    event_id: str | None
    kind: str
    home_id: str
    device_id: str | None
    role: str | None
    room: str | None
    test: bool
    occurred_at: float
    stored_at: float
    hub_stored_at: float | None  # when the hub stored the event, if its body says (SPEC 2, `data.hub_stored_at`)
    shown_at: float | None
    taken_at: float | None
    taken_by: str | None
    resolved_at: float | None
    resolved_by: str | None
    outcome: str | None
    cleared_at: float | None
    resident: dict[str, str] | None = None
    deadlines: tuple[int, int] = (600, 86400)  # this type's (take up within, resolve within)

    @property
    def take_by(self) -> float:
        return self.stored_at + self.deadlines[0]

    @property
    def resolve_by(self) -> float:
        return self.stored_at + self.deadlines[1]

    def late(self, now: float) -> bool:
        if self.resolved_at is not None:
            return self.resolved_at > self.resolve_by or (self.taken_at or self.resolved_at) > self.take_by
        return now > (self.resolve_by if self.taken_at else self.take_by)

    def rank(self) -> tuple[int, int, float]:
        return (int(self.test), URGENCY.get(self.kind, len(URGENCY)), self.stored_at)


def parse_deadline(text: str) -> tuple[str, tuple[int, int]]:
    """`TYPE=TAKE,RESOLVE` in seconds (e.g. `emergency=60,1800`) -> (type, (take, resolve))."""
    kind, _, values = text.partition("=")
    try:
        take, resolve = (int(v) for v in values.split(","))
    except ValueError:
        raise ValueError(f"a deadline is TYPE=TAKE,RESOLVE in seconds, e.g. emergency=60,1800; not {text!r}") from None
    if kind not in DEADLINES:
        raise ValueError(f"no alarm type {kind!r}; the types: {', '.join(DEADLINES)}")
    if not 0 < take <= resolve:
        raise ValueError(f"{kind}: 0 < TAKE <= RESOLVE, not {take}, {resolve}")
    return kind, (take, resolve)


class Alarms:
    def __init__(self, store: Store, deadlines: dict[str, tuple[int, int]] | None = None) -> None:
        self.store = store
        self.deadlines = {**DEADLINES, **(deadlines or {})}
        with store._transaction() as db:
            db.execute("CREATE TABLE IF NOT EXISTS residents (home_id TEXT PRIMARY KEY, name TEXT, phone TEXT, "
                       "address TEXT, contacts TEXT, toilet_limit_min INTEGER)")
            if LIMIT_FIELD not in {row[1] for row in db.execute("PRAGMA table_info(residents)")}:
                db.execute(f"ALTER TABLE residents ADD COLUMN {LIMIT_FIELD} INTEGER")  # a file from before it

    def _rows(self, where: str, params: tuple = ()) -> list[Alarm]:
        with self.store._transaction() as db:
            rows = db.execute(f"SELECT {', '.join(_COLUMNS)} FROM alarms WHERE {where}", params).fetchall()
        people = self.residents(sorted({r[4] for r in rows}))
        return [Alarm(*r[:8], bool(r[8]), *r[9:], resident=people.get(r[4]),
                      deadlines=self.deadlines.get(r[3], (600, 86400))) for r in rows]

    def queue(self) -> list[Alarm]:
        """Every alarm not resolved: real before test, then by urgency, then oldest first."""
        return sorted(self._rows("resolved_at IS NULL"), key=Alarm.rank)

    def get(self, alarm_id: int) -> Alarm:
        found = self._rows("id = ?", (alarm_id,))
        if not found:
            raise ActionError(f"no alarm {alarm_id}")
        return found[0]

    def mark_shown(self, alarm_ids: list[int], now: float) -> None:
        if alarm_ids:
            with self.store._transaction() as db:
                db.executemany("UPDATE alarms SET shown_at = ? WHERE id = ? AND shown_at IS NULL",
                               [(now, i) for i in alarm_ids])

    def take(self, alarm_id: int, operator: str, now: float) -> Alarm:
        alarm = self._open(alarm_id)
        if alarm.taken_at is not None:
            raise ActionError(f"alarm {alarm_id} was taken up by {alarm.taken_by}")
        with self.store._transaction() as db:
            db.execute("UPDATE alarms SET taken_at = ?, taken_by = ? WHERE id = ?", (now, operator, alarm_id))
            db.execute("INSERT INTO alarm_log (alarm_id, at, operator, what) VALUES (?, ?, ?, 'taken')",
                       (alarm_id, now, operator))
        if alarm.event_id is not None:  # the hub hears it; the pendant shows "help is coming"
            self.store.operator_ack(alarm.event_id, hub_id=alarm.hub_id, operator=operator, now=now)
        return self.get(alarm_id)

    def note(self, alarm_id: int, operator: str, text: str, now: float) -> None:
        text = text.strip()[:MAX_TEXT]
        if not text:
            raise ActionError("an empty note")
        self.get(alarm_id)
        self._log(alarm_id, now, operator, "note", text)

    def hand_over(self, alarm_id: int, operator: str, to: str, now: float) -> None:
        alarm = self._open(alarm_id)
        if alarm.taken_at is None:
            raise ActionError("take the alarm up before handing it over")
        with self.store._transaction() as db:
            db.execute("UPDATE alarms SET taken_by = ? WHERE id = ?", (to, alarm_id))
        self._log(alarm_id, now, operator, "handover", to)

    def resolve(self, alarm_id: int, operator: str, outcome: str, now: float) -> None:
        alarm = self._open(alarm_id)
        outcome = outcome.strip()[:MAX_TEXT]
        if not outcome:
            raise ActionError("say how it ended (the outcome)")
        if alarm.taken_at is None:
            self.take(alarm_id, operator, now)
        with self.store._transaction() as db:
            db.execute("UPDATE alarms SET resolved_at = ?, resolved_by = ?, outcome = ? WHERE id = ?",
                       (now, operator, outcome, alarm_id))
        self._log(alarm_id, now, operator, "resolved", outcome)

    def _open(self, alarm_id: int) -> Alarm:
        alarm = self.get(alarm_id)
        if alarm.resolved_at is not None:
            raise ActionError(f"alarm {alarm_id} is resolved")
        return alarm

    def _log(self, alarm_id: int, at: float, operator: str | None, what: str, text: str | None) -> None:
        with self.store._transaction() as db:
            db.execute("INSERT INTO alarm_log (alarm_id, at, operator, what, text) VALUES (?, ?, ?, ?, ?)",
                       (alarm_id, at, operator, what, text))

    def timeline(self, alarm_id: int) -> list[tuple[float, str, dict[str, Any]]]:
        """(time, step, values), in time order: occurred, stored at the hub (when the event
        says: hubs from before `data.hub_stored_at` do not, and a hub silent alarm has no event),
        stored at the platform, shown, then every action."""
        alarm = self.get(alarm_id)
        steps: list[tuple[float, str, dict[str, Any]]] = [(alarm.occurred_at, "t_occurred", {}),
                                                          (alarm.stored_at, "t_stored", {})]
        if alarm.hub_stored_at is not None:
            steps.append((alarm.hub_stored_at, "t_stored_hub", {}))
        if alarm.shown_at is not None:
            steps.append((alarm.shown_at, "t_shown", {}))
        with self.store._transaction() as db:
            log_rows = db.execute("SELECT at, operator, what, text FROM alarm_log WHERE alarm_id = ? ORDER BY rowid",
                                  (alarm_id,)).fetchall()
        for at, operator, what, text in log_rows:
            values = {"who": operator or "-", "text": text or "", "to": text or ""}
            steps.append((at, f"t_{what}", values))
        return sorted(steps, key=lambda s: s[0])

    # -- the home directory (kept only at the platform) --------------------------------
    def resident(self, home_id: str) -> dict[str, Any] | None:
        """The entry of `home_id` (its `toilet_limit_min` an int, or None for the default), or None."""
        return self.residents([home_id]).get(home_id)

    def residents(self, home_ids: list[str]) -> dict[str, dict[str, Any]]:
        marks = ",".join("?" * len(home_ids))
        columns = (*DIRECTORY_FIELDS, LIMIT_FIELD)
        with self.store._transaction() as db:
            rows = db.execute(f"SELECT {', '.join(columns)} FROM residents WHERE home_id IN ({marks})",
                              home_ids).fetchall()
        return {r[0]: dict(zip(columns, r)) for r in rows}

    def toilet_limits(self, home_ids: list[str]) -> dict[str, int]:
        """Each home's toilet limit in seconds: its own, else the default."""
        people = self.residents(home_ids)
        return {h: 60 * ((people.get(h) or {}).get(LIMIT_FIELD) or DEFAULT_TOILET_LIMIT_MIN) for h in home_ids}

    def set_resident(self, entry: dict[str, str]) -> None:
        """Save a directory entry; its `toilet_limit_min` kept as it was when `entry` has none."""
        values = [str(entry.get(f) or "").strip()[:500] for f in DIRECTORY_FIELDS]
        if not values[0]:
            raise ActionError("a home_id is needed")
        limit = _limit(entry[LIMIT_FIELD]) if LIMIT_FIELD in entry else None
        keep = "coalesce(excluded.toilet_limit_min, toilet_limit_min)" if LIMIT_FIELD not in entry \
            else "excluded.toilet_limit_min"
        with self.store._transaction() as db:
            db.execute("INSERT INTO residents (home_id, name, phone, address, contacts, toilet_limit_min) "
                       "VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (home_id) DO UPDATE SET name = excluded.name, "
                       "phone = excluded.phone, address = excluded.address, contacts = excluded.contacts, "
                       f"toilet_limit_min = {keep}", (*values, limit))

    def import_csv(self, text: str) -> int:
        """Rows with a header naming home_id, name, phone, address, contacts (and, if wanted,
        toilet_limit_min); the count imported, all or none."""
        reader = csv.DictReader(io.StringIO(text))
        missing = [f for f in DIRECTORY_FIELDS if f not in (reader.fieldnames or [])]
        if missing:
            raise ActionError(f"the CSV header lacks {', '.join(missing)}")
        rows = list(reader)
        for n, row in enumerate(rows, start=2):
            if not (row.get("home_id") or "").strip():
                raise ActionError(f"line {n}: no home_id")
            try:
                _limit(row.get(LIMIT_FIELD) or "")
            except ActionError as exc:
                raise ActionError(f"line {n}: {exc}") from None
        for row in rows:
            self.set_resident(row)
        return len(rows)


def _limit(text: str | int | None) -> int | None:
    """A toilet limit as typed (minutes) -> int, or None (empty: the default)."""
    text = str(text if text is not None else "").strip()
    if not text:
        return None
    if not (text.isascii() and text.isdigit()) or not 1 <= int(text) <= MAX_TOILET_LIMIT_MIN:
        raise ActionError(f"{LIMIT_FIELD}: whole minutes, 1 to {MAX_TOILET_LIMIT_MIN} (empty: "
                          f"{DEFAULT_TOILET_LIMIT_MIN}), not {text[:20]!r}")
    return int(text)

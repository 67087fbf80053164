"""What the call centre's screen is made of, kept up to date from the stored events.

`Board.project()` reads the events stored since its cursor (a row id kept in the file, so a
restart neither misses nor repeats one) and turns them into: alarms (one per alarm event;
`device_online` clears an open `device_offline`), the toilet board (a `toilet_occupied`
puts a home on it, `toilet_vacated` takes it off), and what each home's hub and devices
last said. `Board.check_silence()` raises "hub silent" for a hub unheard for three of its
heartbeat intervals and clears it when the hub is heard again. One owner: nothing else
writes these tables (operators' actions are alarms.py).
"""

from __future__ import annotations

import json
import logging
from datetime import datetime
from typing import Any

from safebox.protocol import events as ev

from ..store import Store

log = logging.getLogger("safebox.receiver.console")

ALARM_TYPES = frozenset({ev.EMERGENCY, ev.COMMUNITY_SERVICE, ev.LIFE_SERVICE, ev.TOILET_OVERDUE,
                         ev.DOOR_INACTIVE, ev.DEVICE_OFFLINE, ev.BATTERY_LOW, ev.TEST_ALARM})
HUB_SILENT = "hub_silent"
DEFAULT_HEARTBEAT_S = 300
SILENT_AFTER_INTERVALS = 3
_PAGE = 500

_SCHEMA = """
CREATE TABLE IF NOT EXISTS alarms (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    hub_id      TEXT NOT NULL,
    event_id    TEXT,
    kind        TEXT NOT NULL,
    home_id     TEXT NOT NULL,
    device_id   TEXT,
    role        TEXT,
    room        TEXT,
    test        INTEGER NOT NULL DEFAULT 0,
    occurred_at REAL NOT NULL,
    stored_at   REAL NOT NULL,
    hub_stored_at REAL,
    shown_at    REAL,
    taken_at    REAL,
    taken_by    TEXT,
    resolved_at REAL,
    resolved_by TEXT,
    outcome     TEXT,
    cleared_at  REAL,
    UNIQUE (hub_id, event_id)
);
CREATE INDEX IF NOT EXISTS alarms_open ON alarms (resolved_at);
CREATE TABLE IF NOT EXISTS alarm_log (
    alarm_id INTEGER NOT NULL,
    at       REAL NOT NULL,
    operator TEXT,
    what     TEXT NOT NULL,
    text     TEXT
);
CREATE TABLE IF NOT EXISTS toilet_now (
    hub_id    TEXT NOT NULL,
    device_id TEXT NOT NULL,
    home_id   TEXT NOT NULL,
    room      TEXT,
    since     REAL NOT NULL,
    PRIMARY KEY (hub_id, device_id)
);
CREATE TABLE IF NOT EXISTS hubs_seen (
    hub_id     TEXT PRIMARY KEY,
    home_id    TEXT NOT NULL,
    last_heard REAL NOT NULL,
    interval_s INTEGER,
    health     TEXT
);
CREATE TABLE IF NOT EXISTS devices_seen (
    hub_id     TEXT NOT NULL,
    device_id  TEXT NOT NULL,
    home_id    TEXT NOT NULL,
    role       TEXT,
    room       TEXT,
    last_heard REAL NOT NULL,
    battery    INTEGER,
    PRIMARY KEY (hub_id, device_id)
);
CREATE TABLE IF NOT EXISTS console_state (
    name  TEXT PRIMARY KEY,
    value INTEGER NOT NULL
);
"""


def seconds(stamp: str) -> float:
    return datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp()


_URGENT_TYPES = ALARM_TYPES | {ev.TOILET_OCCUPIED, ev.TOILET_VACATED}


def _hub_stored_at(data: dict[str, Any]) -> float | None:
    """When the hub stored the event in its outbox (`data.hub_stored_at`, SPEC 2), if it says."""
    stamp = data.get("hub_stored_at")
    try:
        return seconds(stamp) if isinstance(stamp, str) else None
    except ValueError:
        return None


class _Seen:
    """What one page of events says of hubs and devices, kept to one row each and written at
    once: a burst of a hub's batch is one upsert, not one per event."""

    def __init__(self) -> None:
        self.hubs: dict[str, list[Any]] = {}
        self.devices: dict[tuple[str, str], list[Any]] = {}

    def hub(self, hub_id: str, home: str, stored: float, heartbeat: dict[str, Any] | None) -> None:
        row = self.hubs.setdefault(hub_id, [home, stored, None, None, stored])
        row[0], row[1] = home, max(row[1], stored)
        if heartbeat is not None:
            row[2], row[3] = heartbeat.get("interval_s"), json.dumps(heartbeat)

    def device(self, hub_id: str, device: dict[str, Any], home: str, stored: float, battery: int | None) -> None:
        row = self.devices.setdefault((hub_id, device["id"]), [home, None, None, stored, None])
        row[:3] = home, device.get("role"), device.get("room")
        row[3] = max(row[3], stored)
        if battery is not None:
            row[4] = battery

    def write(self, db: Any, board: Board) -> None:
        db.executemany("INSERT INTO hubs_seen (hub_id, home_id, last_heard, interval_s, health) VALUES (?, ?, ?, ?, ?) "
                       "ON CONFLICT (hub_id) DO UPDATE SET home_id = excluded.home_id, "
                       "last_heard = max(last_heard, excluded.last_heard), "
                       "interval_s = coalesce(excluded.interval_s, interval_s), "
                       "health = coalesce(excluded.health, health)",
                       [(hub_id, *row[:4]) for hub_id, row in self.hubs.items()])
        db.executemany("INSERT INTO devices_seen (hub_id, device_id, home_id, role, room, last_heard, battery) "
                       "VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (hub_id, device_id) DO UPDATE SET "
                       "home_id = excluded.home_id, role = excluded.role, room = excluded.room, "
                       "last_heard = max(last_heard, excluded.last_heard), "
                       "battery = coalesce(excluded.battery, battery)",
                       [(*key, *row) for key, row in self.devices.items()])
        silent = {hub_id for (hub_id,) in db.execute(
            "SELECT hub_id FROM alarms WHERE kind = ? AND resolved_at IS NULL", (HUB_SILENT,))}
        for hub_id in silent & self.hubs.keys():  # heard again: its first event this page clears it
            board._clear(db, hub_id, None, HUB_SILENT, self.hubs[hub_id][4], "hub heard again")


class Board:
    def __init__(self, store: Store) -> None:
        self.store = store
        self.more = False  # the last project(once=True) left events waiting
        self.urgent = 0  # counts changes to the queue or the toilet board (what must be pushed at once)
        with store._transaction() as db:
            db.executescript(_SCHEMA)
            if "hub_stored_at" not in {row[1] for row in db.execute("PRAGMA table_info(alarms)")}:
                db.execute("ALTER TABLE alarms ADD COLUMN hub_stored_at REAL")  # a file from before it

    def cursor(self) -> int:
        with self.store._transaction() as db:
            return self._cursor(db)

    def _cursor(self, db: Any) -> int:
        row = db.execute("SELECT value FROM console_state WHERE name = 'cursor'").fetchone()
        return 0 if row is None else row[0]

    def project(self, page: int = _PAGE, *, once: bool = False) -> list[int]:
        """Take in every event stored since the last call (with `once`, only the next `page`;
        `more` then says whether others wait), `page` events to a transaction, short, so the
        hubs' writes to the same file never wait long; the ids of the alarms opened."""
        opened: list[int] = []
        while True:
            with self.store._transaction() as db:
                cursor = self._cursor(db)
                rows = db.execute("SELECT id, hub_id, event_id, body, received_at FROM events WHERE id > ? "
                                  "ORDER BY id LIMIT ?", (cursor, page)).fetchall()
                seen = _Seen()
                for row_id, hub_id, event_id, body, received_at in rows:
                    try:
                        opened += self._take_in(db, seen, hub_id, event_id, json.loads(body), seconds(received_at))
                    except (ValueError, KeyError, TypeError) as exc:  # stored, so valid; never stop the screen
                        log.error("console: cannot show event %s of %s: %s", event_id, hub_id, exc)
                if rows:
                    seen.write(db, self)
                    db.execute("INSERT INTO console_state (name, value) VALUES ('cursor', ?) ON CONFLICT (name) "
                               "DO UPDATE SET value = excluded.value", (rows[-1][0],))
            self.more = len(rows) == page
            if not self.more or once:
                return opened

    def _take_in(self, db: Any, seen: _Seen, hub_id: str, event_id: str, body: dict[str, Any],
                 stored: float) -> list[int]:
        kind, home, data = body["type"], body["home_id"], body.get("data") or {}
        if kind in _URGENT_TYPES:
            self.urgent += 1
        device = body.get("device") or data.get("device") or {}
        seen.hub(hub_id, home, stored, data if kind == ev.HUB_HEARTBEAT else None)
        if body.get("device"):
            battery = data.get("battery") if isinstance(data.get("battery"), int) else None
            seen.device(hub_id, device, home, stored, battery)
        occurred = seconds(body["occurred_at"])
        if kind == ev.TOILET_OCCUPIED and device:
            db.execute("INSERT INTO toilet_now (hub_id, device_id, home_id, room, since) VALUES (?, ?, ?, ?, ?) "
                       "ON CONFLICT (hub_id, device_id) DO UPDATE SET since = excluded.since",
                       (hub_id, device.get("id"), home, device.get("room"), occurred))
        elif kind == ev.TOILET_VACATED and device:
            db.execute("DELETE FROM toilet_now WHERE hub_id = ? AND device_id = ?", (hub_id, device.get("id")))
        elif kind == ev.DEVICE_ONLINE and device:
            self._clear(db, hub_id, device.get("id"), ev.DEVICE_OFFLINE, stored, "device heard again")
        if kind not in ALARM_TYPES:
            return []
        test = kind == ev.TEST_ALARM or data.get("test") is True
        cur = db.execute("INSERT INTO alarms (hub_id, event_id, kind, home_id, device_id, role, room, test, "
                         "occurred_at, stored_at, hub_stored_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) "
                         "ON CONFLICT DO NOTHING",
                         (hub_id, event_id, kind, home, device.get("id"), device.get("role"), device.get("room"),
                          int(test), occurred, stored, _hub_stored_at(data)))
        return [cur.lastrowid] if cur.rowcount == 1 else []

    def _clear(self, db: Any, hub_id: str, device_id: str | None, kind: str, at: float, why: str) -> None:
        rows = db.execute("SELECT id FROM alarms WHERE hub_id = ? AND kind = ? AND resolved_at IS NULL "
                          "AND (? IS NULL OR device_id = ?)", (hub_id, kind, device_id, device_id)).fetchall()
        self.urgent += bool(rows)
        for (alarm_id,) in rows:
            db.execute("UPDATE alarms SET cleared_at = ?, resolved_at = ?, resolved_by = NULL, outcome = ? "
                       "WHERE id = ?", (at, at, why, alarm_id))
            db.execute("INSERT INTO alarm_log (alarm_id, at, operator, what, text) VALUES (?, ?, NULL, 'cleared', ?)",
                       (alarm_id, at, why))

    def check_silence(self, now: float) -> list[int]:
        """Raise "hub silent" for each hub unheard for three of its intervals; the new alarms' ids."""
        opened: list[int] = []
        with self.store._transaction() as db:
            asked = dict(db.execute("SELECT hub_id, heartbeat_interval_s FROM hub_settings").fetchall())
            rows = db.execute("SELECT hub_id, home_id, last_heard, interval_s FROM hubs_seen").fetchall()
            for hub_id, home_id, last_heard, interval in rows:
                interval = asked.get(hub_id) or interval or DEFAULT_HEARTBEAT_S
                if now - last_heard <= SILENT_AFTER_INTERVALS * interval:
                    continue
                if db.execute("SELECT 1 FROM alarms WHERE hub_id = ? AND kind = ? AND resolved_at IS NULL",
                              (hub_id, HUB_SILENT)).fetchone():
                    continue
                cur = db.execute("INSERT INTO alarms (hub_id, event_id, kind, home_id, occurred_at, stored_at) "
                                 "VALUES (?, NULL, ?, ?, ?, ?)",
                                 (hub_id, HUB_SILENT, home_id, last_heard + SILENT_AFTER_INTERVALS * interval, now))
                log.warning("hub %s silent since %.0f s (interval %d s)", hub_id, now - last_heard, interval)
                opened.append(cur.lastrowid)
        self.urgent += len(opened)
        return opened

    # -- reading ------------------------------------------------------------------------
    def toilet(self) -> list[dict[str, Any]]:
        with self.store._transaction() as db:
            rows = db.execute("SELECT hub_id, device_id, home_id, room, since FROM toilet_now "
                              "ORDER BY since").fetchall()
        return [dict(zip(("hub_id", "device_id", "home_id", "room", "since"), r)) for r in rows]

    def homes(self, limit: int = 200) -> tuple[int, list[dict[str, Any]]]:
        """(how many homes, the first `limit`: silent hubs first, then by home id)."""
        with self.store._transaction() as db:
            (count,) = db.execute("SELECT COUNT(*) FROM hubs_seen").fetchone()
            silent = {r[0] for r in db.execute("SELECT hub_id FROM alarms WHERE kind = ? AND resolved_at IS NULL",
                                               (HUB_SILENT,))}
            hubs = db.execute("SELECT hub_id, home_id, last_heard, interval_s, health FROM hubs_seen "
                              "ORDER BY hub_id IN (SELECT hub_id FROM alarms WHERE kind = ? AND resolved_at IS NULL) "
                              "DESC, home_id LIMIT ?", (HUB_SILENT, limit)).fetchall()
            marks = ",".join("?" * len(hubs))
            devices = db.execute(f"SELECT hub_id, device_id, role, room, last_heard, battery FROM devices_seen "
                                 f"WHERE hub_id IN ({marks}) ORDER BY device_id", [h[0] for h in hubs]).fetchall()
        out = []
        for hub_id, home_id, last_heard, interval, health in hubs:
            out.append({"hub_id": hub_id, "home_id": home_id, "last_heard": last_heard,
                        "interval_s": interval or DEFAULT_HEARTBEAT_S, "health": json.loads(health or "{}"),
                        "silent": hub_id in silent,
                        "devices": [dict(zip(("device_id", "role", "room", "last_heard", "battery"), d[1:]))
                                    for d in devices if d[0] == hub_id]})
        return count, out

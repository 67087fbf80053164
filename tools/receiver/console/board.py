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
TOILET_LIMIT_S = 600
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


class Board:
    def __init__(self, store: Store) -> None:
        self.store = store
        self.urgent = 0  # counts changes to the queue or the toilet board (what must be pushed at once)
        with store._transaction() as db:
            db.executescript(_SCHEMA)

    def cursor(self) -> int:
        with self.store._transaction() as db:
            return self._cursor(db)

    def _cursor(self, db: Any) -> int:
        row = db.execute("SELECT value FROM console_state WHERE name = 'cursor'").fetchone()
        return 0 if row is None else row[0]

    def project(self) -> list[int]:
        """Take in every event stored since the last call; the ids of the alarms opened."""
        opened: list[int] = []
        while True:
            with self.store._transaction() as db:
                cursor = self._cursor(db)
                rows = db.execute("SELECT id, hub_id, event_id, body, received_at FROM events WHERE id > ? "
                                  "ORDER BY id LIMIT ?", (cursor, _PAGE)).fetchall()
                for row_id, hub_id, event_id, body, received_at in rows:
                    try:
                        opened += self._take_in(db, hub_id, event_id, json.loads(body), seconds(received_at))
                    except (ValueError, KeyError, TypeError) as exc:  # stored, so valid; never stop the screen
                        log.error("console: cannot show event %s of %s: %s", event_id, hub_id, exc)
                if rows:
                    db.execute("INSERT INTO console_state (name, value) VALUES ('cursor', ?) ON CONFLICT (name) "
                               "DO UPDATE SET value = excluded.value", (rows[-1][0],))
            if len(rows) < _PAGE:
                return opened

    def _take_in(self, db: Any, hub_id: str, event_id: str, body: dict[str, Any], stored: float) -> list[int]:
        kind, home, data = body["type"], body["home_id"], body.get("data") or {}
        if kind in _URGENT_TYPES:
            self.urgent += 1
        device = body.get("device") or data.get("device") or {}
        interval = data.get("interval_s") if kind == ev.HUB_HEARTBEAT else None
        health = json.dumps(data) if kind == ev.HUB_HEARTBEAT else None
        db.execute("INSERT INTO hubs_seen (hub_id, home_id, last_heard, interval_s, health) VALUES (?, ?, ?, ?, ?) "
                   "ON CONFLICT (hub_id) DO UPDATE SET home_id = excluded.home_id, "
                   "last_heard = max(last_heard, excluded.last_heard), "
                   "interval_s = coalesce(excluded.interval_s, interval_s), health = coalesce(excluded.health, health)",
                   (hub_id, home, stored, interval, health))
        self._clear(db, hub_id, None, HUB_SILENT, stored, "hub heard again")
        if body.get("device"):
            battery = data.get("battery") if isinstance(data.get("battery"), int) else None
            db.execute("INSERT INTO devices_seen (hub_id, device_id, home_id, role, room, last_heard, battery) "
                       "VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (hub_id, device_id) DO UPDATE SET "
                       "home_id = excluded.home_id, role = excluded.role, room = excluded.room, "
                       "last_heard = max(last_heard, excluded.last_heard), battery = coalesce(excluded.battery, battery)",
                       (hub_id, device["id"], home, device.get("role"), device.get("room"), stored, battery))
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
                         "occurred_at, stored_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING",
                         (hub_id, event_id, kind, home, device.get("id"), device.get("role"), device.get("room"),
                          int(test), occurred, stored))
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

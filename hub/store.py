"""The hub's durable state: one SQLite file (hub.db) in WAL mode with synchronous=FULL.

Everything that must survive a power cut lives here, and every change is one transaction:
  counters      per device, the highest counter accepted: the replay guard (SPEC 1.4)
  outbox        events waiting for the platform, body stored as the exact bytes to send
  dead_letter   events the platform refused for good, with its reason
  hub_seq       the sequence behind the ids of events the hub makes itself
  devices_seen  last heard time, battery and RSSI per device, for `status` and the rules
  alarms        (v2) the lifecycle of each alarm the rules raise: raised, acknowledged by
                the platform (its event delivered), cleared
  rule_state    (v2) each rule machine's state per device, so timers survive a restart
  owed_acks     (v3) acks of kind 2 (delivered) and 3 (operator) a device is owed, written
                when the hub next hears the device; they expire (SPEC 1.7)
  awaiting_operator (v3) urgent pendant events delivered but not yet taken up by an operator
  hub_settings  (v3) small values the relay keeps across restarts (heartbeat interval, cursors)

The core is `accept`: the counter check, the counter update and the outbox insert happen
in the same transaction, so an event is either stored with its counter or not at all;
acknowledge a device only after `accept` has returned.

Input is checked before any transaction begins, and any failure inside one rolls it back:
bad input or a full disk never leaves half an event or a counter without its event.
Calls block for a few milliseconds (an fsync per write); a lock makes them safe to call
from `asyncio.to_thread` as well as from the event loop.
"""

from __future__ import annotations

import json
import re
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from safebox.protocol import events

SCHEMA_VERSION = 3
BUSY_TIMEOUT_S = 5.0
COUNTER_MAX = 0xFFFFFFFF
_DEVICE_ID = re.compile(r"^[0-9a-f]{12}$")

_SCHEMA_V1 = """
CREATE TABLE counters (
    device_id    TEXT PRIMARY KEY,
    last_counter INTEGER NOT NULL CHECK (last_counter BETWEEN 0 AND 4294967295),
    last_event   INTEGER NOT NULL CHECK (last_event IN (0, 1)),  -- did that frame carry an event
    updated_at   REAL NOT NULL
);
CREATE TABLE outbox (
    seq             INTEGER PRIMARY KEY AUTOINCREMENT,  -- arrival order, never reused
    event_id        TEXT NOT NULL UNIQUE,
    source          TEXT NOT NULL,                      -- device id, or hub id for hub events
    type            TEXT NOT NULL,
    urgent          INTEGER NOT NULL CHECK (urgent IN (0, 1)),
    body            BLOB NOT NULL,
    created_at      REAL NOT NULL,
    attempts        INTEGER NOT NULL DEFAULT 0,
    next_attempt_at REAL NOT NULL DEFAULT 0,
    last_error      TEXT
);
CREATE INDEX outbox_by_source ON outbox (source, urgent, seq);
CREATE INDEX outbox_by_time ON outbox (next_attempt_at);
CREATE TABLE dead_letter (
    event_id   TEXT PRIMARY KEY,
    type       TEXT NOT NULL,
    body       BLOB NOT NULL,
    created_at REAL NOT NULL,
    attempts   INTEGER NOT NULL,
    died_at    REAL NOT NULL,
    reason     TEXT NOT NULL
);
CREATE TABLE hub_seq (
    id    INTEGER PRIMARY KEY CHECK (id = 1),
    value INTEGER NOT NULL
);
CREATE TABLE devices_seen (
    device_id     TEXT PRIMARY KEY,
    last_heard_at REAL NOT NULL,
    last_counter  INTEGER NOT NULL,
    battery       INTEGER,
    rssi          INTEGER
);
"""
# v2: the rules (hub/rules). An alarm is open while cleared_at is NULL; at most one
# open alarm per kind and device.
_SCHEMA_V2 = """
CREATE TABLE alarms (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    kind            TEXT NOT NULL,            -- toilet_overdue, door_inactive, device_offline, battery_low
    subject         TEXT NOT NULL,            -- the device id it is about
    raised_at       REAL NOT NULL,
    raised_event    TEXT NOT NULL UNIQUE,     -- the hub event that raised it
    acknowledged_at REAL,                     -- when the platform stored that event
    cleared_at      REAL,
    cleared_event   TEXT                      -- the event that ended it (hub or device event), if any
);
CREATE UNIQUE INDEX alarms_open ON alarms (kind, subject) WHERE cleared_at IS NULL;
CREATE TABLE rule_state (
    rule       TEXT NOT NULL,
    subject    TEXT NOT NULL,
    state      TEXT NOT NULL,                 -- JSON, as the rule machine gives it
    updated_at REAL NOT NULL,
    PRIMARY KEY (rule, subject)
);
"""
# v3: the relay and acks (hub/uplink.py, hub/acks.py). An ack is owed while kind > written
# and expires_at has not passed; a row is kept (written) until it expires, so a late
# lower kind can never be owed again after a higher one was written.
_SCHEMA_V3 = """
CREATE TABLE owed_acks (
    device_id  TEXT NOT NULL,
    counter    INTEGER NOT NULL,
    kind       INTEGER NOT NULL CHECK (kind IN (2, 3)),   -- the highest kind owed
    written    INTEGER NOT NULL DEFAULT 0,                -- the highest kind written to the device
    event_id   TEXT NOT NULL,
    owed_since REAL NOT NULL,
    expires_at REAL NOT NULL,
    PRIMARY KEY (device_id, counter)
);
CREATE TABLE awaiting_operator (
    event_id     TEXT PRIMARY KEY,
    device_id    TEXT NOT NULL,
    counter      INTEGER NOT NULL,
    delivered_at REAL NOT NULL,
    until        REAL NOT NULL
);
CREATE TABLE hub_settings (
    name  TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
-- due()'s "no older item of the source still waiting" check, without scanning a backlog
-- (3,000 waiting events: 40 ms a query without it, 1 ms with it).
CREATE INDEX outbox_waiting ON outbox (source, urgent, next_attempt_at, seq);
"""
# Version n of the schema is reached by running _MIGRATIONS[n] on version n-1.
_MIGRATIONS: dict[int, str] = {1: _SCHEMA_V1, 2: _SCHEMA_V2, 3: _SCHEMA_V3}

_OUTBOX_COLUMNS = "event_id, type, urgent, body, source, created_at, attempts, next_attempt_at, last_error"
# An item waits while an older item of the same source and urgency is still waiting, so
# one source's events reach the platform in the order they happened (door opened, closed).
_NO_OLDER_WAITING = """NOT EXISTS (SELECT 1 FROM outbox AS p WHERE p.source = o.source
                       AND p.urgent = o.urgent AND p.seq < o.seq AND p.next_attempt_at > :now)"""


class StoreError(Exception):
    """The hub database cannot be used or a write failed (and was rolled back)."""


@dataclass(frozen=True)
class Verdict:
    """What `accept` made of a counter.

    kind: "new" (stored), "repeat" (equal to the last accepted: not stored again),
    "replay" (below it: refused). last_counter: the highest counter accepted before
    this call, None if the device was never heard. last_was_event: whether the frame
    accepted with last_counter carried an event (a repeat may only be acknowledged if so).
    """

    kind: Literal["new", "repeat", "replay"]
    last_counter: int | None
    last_was_event: bool = False


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


class HubStore:
    """The hub database. Open with `HubStore.open(path)`; usable as a context manager."""

    def __init__(self, conn: sqlite3.Connection, path: Path, clock: Callable[[], float]) -> None:
        self._conn: sqlite3.Connection | None = conn
        self.path = path
        self._clock = clock
        self._lock = threading.RLock()

    @classmethod
    def open(cls, path: str | Path, *, clock: Callable[[], float] = time.time) -> HubStore:
        """Open (or create) the database and bring its schema up to date."""
        path = Path(path)
        try:
            path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            conn = sqlite3.connect(path, timeout=BUSY_TIMEOUT_S, isolation_level=None, check_same_thread=False)
        except (OSError, sqlite3.Error) as exc:
            raise StoreError(f"{path}: cannot open the hub database: {exc}") from None
        store = cls(conn, path, clock)
        try:
            conn.execute(f"PRAGMA busy_timeout = {int(BUSY_TIMEOUT_S * 1000)}")
            mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
            if mode.lower() != "wal":
                raise StoreError(f"{path}: cannot switch to WAL journaling (got {mode!r})")
            conn.execute("PRAGMA synchronous = FULL")
            store._migrate()
        except sqlite3.DatabaseError as exc:
            conn.close()
            raise StoreError(f"{path}: not a usable hub database ({exc}); move it aside to start afresh") from None
        except BaseException:
            conn.close()
            raise
        return store

    def close(self) -> None:
        """Close the database; safe to call twice."""
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None

    def __enter__(self) -> HubStore:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # -- transactions ---------------------------------------------------------------

    @contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        """One write transaction, taken at once (IMMEDIATE) so the check and the write see the same data."""
        with self._lock:
            if self._conn is None:
                raise StoreError(f"{self.path}: the hub database is closed")
            conn = self._conn
            try:
                conn.execute("BEGIN IMMEDIATE")
            except sqlite3.Error as exc:
                raise StoreError(f"{self.path}: cannot begin a transaction: {exc}") from None
            try:
                yield conn
                conn.execute("COMMIT")
            except BaseException as exc:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                if isinstance(exc, sqlite3.Error):
                    raise StoreError(f"{self.path}: write failed and was rolled back: {exc}") from exc
                raise

    def _read(self, sql: str, params: dict | tuple = ()) -> list[tuple]:
        with self._lock:
            if self._conn is None:
                raise StoreError(f"{self.path}: the hub database is closed")
            try:
                return self._conn.execute(sql, params).fetchall()
            except sqlite3.Error as exc:
                raise StoreError(f"{self.path}: read failed: {exc}") from None

    def _migrate(self) -> None:
        # One step per transaction, re-reading the version inside it: two processes
        # opening a fresh file at once must not both create the tables.
        while True:
            with self._tx() as db:
                version = db.execute("PRAGMA user_version").fetchone()[0]
                if version > SCHEMA_VERSION:
                    raise StoreError(f"{self.path}: schema version {version} was written by a newer hub "
                                     f"(this one knows up to {SCHEMA_VERSION}); upgrade the hub software")
                if version == SCHEMA_VERSION:
                    return
                target = version + 1
                for statement in _MIGRATIONS[target].split(";"):
                    if statement.strip():
                        db.execute(statement)
                if target == 1:
                    # Start hub sequences at the clock, not at 0: a hub whose database was
                    # lost and remade must not reuse event ids the platform already has.
                    db.execute("INSERT INTO hub_seq (id, value) VALUES (1, ?)", (int(self._clock()),))
                db.execute(f"PRAGMA user_version = {target}")

    # -- device frames ----------------------------------------------------------------

    def accept(self, device_id: str, counter: int, body: bytes | None = None, *,
               heard_at: float | None = None, battery: int | None = None, rssi: int | None = None) -> Verdict:
        """The replay guard and the outbox insert, in one transaction.

        `body` is the event's bytes from `events.encode` (None for a heartbeat: the counter
        still advances). With `heard_at`, a new frame also updates devices_seen (battery
        and RSSI keep their last known value when None).
        Raises ValueError/EventError on bad input before anything is written.
        """
        _check_device_id(device_id)
        _check_counter(counter)
        event = None
        if body is not None:
            event = events.decode(body)
            device = event["device"]
            if device is None or device["id"] != device_id or event["counter"] != counter:
                raise events.EventError(f"event_id: body is {event['event_id']!r}, "
                                        f"not an event of device {device_id} counter {counter}")
        with self._tx() as db:
            row = db.execute("SELECT last_counter, last_event FROM counters WHERE device_id = ?",
                             (device_id,)).fetchone()
            last, last_event = (row[0], bool(row[1])) if row else (None, False)
            if last is not None and counter <= last:
                return Verdict("repeat" if counter == last else "replay", last, last_event)
            now = self._clock()
            db.execute("""INSERT INTO counters (device_id, last_counter, last_event, updated_at) VALUES (?, ?, ?, ?)
                          ON CONFLICT (device_id) DO UPDATE SET last_counter = excluded.last_counter,
                              last_event = excluded.last_event, updated_at = excluded.updated_at""",
                       (device_id, counter, int(event is not None), now))
            if event is not None:
                self._insert(db, event, body, source=device_id, now=now)  # type: ignore[arg-type]
            if heard_at is not None:
                db.execute("""INSERT INTO devices_seen (device_id, last_heard_at, last_counter, battery, rssi)
                              VALUES (?, ?, ?, ?, ?)
                              ON CONFLICT (device_id) DO UPDATE SET
                                  last_heard_at = excluded.last_heard_at, last_counter = excluded.last_counter,
                                  battery = COALESCE(excluded.battery, battery),
                                  rssi = COALESCE(excluded.rssi, rssi)""",
                           (device_id, float(heard_at), counter, battery, rssi))
        return Verdict("new", last, last_event)

    def last_counter(self, device_id: str) -> int | None:
        rows = self._read("SELECT last_counter FROM counters WHERE device_id = ?", (device_id,))
        return rows[0][0] if rows else None

    def forget_device(self, device_id: str) -> None:
        """Drop a device's counter and last-heard record: only when it is re-paired with a NEW key
        (frames under the old key can then no longer verify, so the replay guard may start over)."""
        _check_device_id(device_id)
        with self._tx() as db:
            db.execute("DELETE FROM counters WHERE device_id = ?", (device_id,))
            db.execute("DELETE FROM devices_seen WHERE device_id = ?", (device_id,))

    def seen(self, device_id: str) -> SeenDevice | None:
        rows = self._read("SELECT device_id, last_heard_at, last_counter, battery, rssi FROM devices_seen "
                          "WHERE device_id = ?", (device_id,))
        return SeenDevice(*rows[0]) if rows else None

    def seen_devices(self) -> list[SeenDevice]:
        rows = self._read("SELECT device_id, last_heard_at, last_counter, battery, rssi FROM devices_seen "
                          "ORDER BY device_id")
        return [SeenDevice(*row) for row in rows]

    # -- hub events -------------------------------------------------------------------

    def next_hub_seq(self) -> int:
        """The next number for a hub event id (`events.hub_event_id`); persisted, never reused."""
        with self._tx() as db:
            return db.execute("UPDATE hub_seq SET value = value + 1 WHERE id = 1 RETURNING value").fetchone()[0]

    def enqueue(self, body: bytes) -> str:
        """Put an event the hub made itself (rules, heartbeats) in the outbox; returns its id."""
        event = events.decode(body)
        if event["device"] is not None:
            raise events.EventError("device: device events go through accept(), which guards their counter")
        with self._tx() as db:
            self._insert(db, event, body, source=event["hub_id"], now=self._clock())
        return event["event_id"]

    @staticmethod
    def _insert(db: sqlite3.Connection, event: dict, body: bytes, *, source: str, now: float) -> None:
        db.execute("INSERT INTO outbox (event_id, source, type, urgent, body, created_at) VALUES (?, ?, ?, ?, ?, ?)",
                   (event["event_id"], source, event["type"], int(event["type"] in events.URGENT), body, now))

    # -- the outbox, for the uplink ---------------------------------------------------

    def due(self, now: float, limit: int = 50) -> list[OutboxItem]:
        """Items to send now: urgent types first, then oldest first; one source's items in order."""
        rows = self._read(f"""SELECT {_OUTBOX_COLUMNS} FROM outbox AS o
                              WHERE o.next_attempt_at <= :now AND {_NO_OLDER_WAITING}
                              ORDER BY o.urgent DESC, o.seq LIMIT :limit""",
                          {"now": now, "limit": limit})
        return [_item(row) for row in rows]

    def next_due_at(self) -> float | None:
        """When the earliest item will be due (it may be in the past), None when the outbox is empty."""
        rows = self._read("""SELECT MIN(o.next_attempt_at) FROM outbox AS o WHERE NOT EXISTS
                             (SELECT 1 FROM outbox AS p WHERE p.source = o.source AND p.urgent = o.urgent
                              AND p.seq < o.seq)""")
        return rows[0][0]

    def pending(self, event_id: str) -> bool:
        """True while the event waits in the outbox (not yet delivered, not dead)."""
        return bool(self._read("SELECT 1 FROM outbox WHERE event_id = ?", (event_id,)))

    def get(self, event_id: str) -> OutboxItem | None:
        rows = self._read(f"SELECT {_OUTBOX_COLUMNS} FROM outbox WHERE event_id = ?", (event_id,))
        return _item(rows[0]) if rows else None

    def mark_delivered(self, event_id: str) -> bool:
        """The platform has it: remove it. False if it was not (or no longer) in the outbox."""
        with self._tx() as db:
            return self._delivered_in(db, event_id)

    def _delivered_in(self, db: sqlite3.Connection, event_id: str) -> bool:
        # An alarm's raising event delivered: the platform has acknowledged the alarm.
        db.execute("UPDATE alarms SET acknowledged_at = ? WHERE raised_event = ? AND acknowledged_at IS NULL",
                   (self._clock(), event_id))
        return db.execute("DELETE FROM outbox WHERE event_id = ?", (event_id,)).rowcount == 1

    def mark_retry(self, event_id: str, next_attempt_at: float, error: str) -> bool:
        """Count a failed attempt and hold the item until `next_attempt_at`."""
        with self._tx() as db:
            return db.execute("""UPDATE outbox SET attempts = attempts + 1, next_attempt_at = ?, last_error = ?
                                 WHERE event_id = ?""", (float(next_attempt_at), error, event_id)).rowcount == 1

    def mark_dead(self, event_id: str, reason: str) -> bool:
        """The platform will never take it as sent: move it to the dead letters with the reason."""
        with self._tx() as db:
            moved = db.execute("""INSERT OR REPLACE INTO dead_letter
                                      (event_id, type, body, created_at, attempts, died_at, reason)
                                  SELECT event_id, type, body, created_at, attempts + 1, ?, ?
                                  FROM outbox WHERE event_id = ?""", (self._clock(), reason, event_id)).rowcount
            db.execute("DELETE FROM outbox WHERE event_id = ?", (event_id,))
            return moved == 1

    def depth(self) -> int:
        return self._read("SELECT COUNT(*) FROM outbox")[0][0]

    def is_dead(self, event_id: str) -> bool:
        """True when the platform refused the event for good (it is in the dead-letter table)."""
        return bool(self._read("SELECT 1 FROM dead_letter WHERE event_id = ?", (event_id,)))

    def dead_letters(self, limit: int = 100) -> list[DeadLetter]:
        rows = self._read("""SELECT event_id, type, body, created_at, attempts, died_at, reason
                             FROM dead_letter ORDER BY died_at DESC LIMIT ?""", (limit,))
        return [DeadLetter(*row) for row in rows]

    def revive(self, event_id: str) -> bool:
        """Move a dead letter back into the outbox, due now (after the cause was fixed, e.g. the hub clock)."""
        with self._tx() as db:
            row = db.execute("SELECT body FROM dead_letter WHERE event_id = ?", (event_id,)).fetchone()
            if row is None:
                return False
            event = events.decode(row[0])
            source = event["device"]["id"] if event["device"] else event["hub_id"]
            self._insert(db, event, row[0], source=source, now=self._clock())
            db.execute("DELETE FROM dead_letter WHERE event_id = ?", (event_id,))
            return True

    # -- rules (hub/rules) ------------------------------------------------------------

    def rule_states(self) -> dict[tuple[str, str], dict]:
        """Every saved rule machine state: (rule, device id) -> state."""
        rows = self._read("SELECT rule, subject, state FROM rule_state")
        return {(rule, subject): json.loads(state) for rule, subject, state in rows}

    def commit_rules(self, *, bodies: list[bytes], raised: list[tuple[str, str, float, str]],
                     cleared: list[tuple[str, str, float, str | None]],
                     states: dict[tuple[str, str], dict]) -> None:
        """One step of the rules in one transaction: hub events into the outbox, alarms raised
        (kind, device id, at, raising event id) and cleared (kind, device id, at, ending event id
        or None), machine states saved."""
        decoded = [events.decode(body) for body in bodies]
        for event in decoded:
            if event["device"] is not None:
                raise events.EventError("device: rules make hub events, not device events")
        with self._tx() as db:
            now = self._clock()
            for event, body in zip(decoded, bodies):
                self._insert(db, event, body, source=event["hub_id"], now=now)
            for kind, subject, at, by_event in cleared:
                db.execute("UPDATE alarms SET cleared_at = ?, cleared_event = ? "
                           "WHERE kind = ? AND subject = ? AND cleared_at IS NULL", (at, by_event, kind, subject))
            for kind, subject, at, event_id in raised:
                db.execute("INSERT INTO alarms (kind, subject, raised_at, raised_event) VALUES (?, ?, ?, ?) "
                           "ON CONFLICT DO NOTHING", (kind, subject, at, event_id))
            for (rule, subject), state in states.items():
                db.execute("INSERT INTO rule_state (rule, subject, state, updated_at) VALUES (?, ?, ?, ?) "
                           "ON CONFLICT (rule, subject) DO UPDATE SET state = excluded.state, "
                           "updated_at = excluded.updated_at", (rule, subject, json.dumps(state), now))

    def alarms(self, *, open_only: bool = False) -> list[Alarm]:
        """Alarms oldest first (only those not cleared with open_only)."""
        where = "WHERE cleared_at IS NULL" if open_only else ""
        rows = self._read(f"""SELECT kind, subject, raised_at, raised_event, acknowledged_at, cleared_at,
                              cleared_event FROM alarms {where} ORDER BY id""")
        return [Alarm(*row) for row in rows]

    # -- relay and acks (hub/uplink.py, hub/acks.py) ------------------------------------

    def settle_delivered(self, event_ids: list[str], *, ack_until: float, operator_until: float) -> Settled:
        """The platform has these events (one answer): all settled in one transaction.

        Each leaves the outbox (as `mark_delivered`). A pendant's event makes an ack of kind 2
        owed to the pendant until `ack_until` (the device that shows it; door sensors have
        kind 1), and an urgent one waits for an operator until `operator_until`.
        """
        settled: list[str] = []
        owed: list[str] = []
        with self._tx() as db:
            now = self._clock()
            for event_id in event_ids:
                row = db.execute("SELECT urgent, body FROM outbox WHERE event_id = ?", (event_id,)).fetchone()
                if row is None or not self._delivered_in(db, event_id):
                    continue
                settled.append(event_id)
                device_id, role, counter = _device_of(bytes(row[1]))
                if device_id is None or role != "pendant":
                    continue
                self._owe_in(db, device_id, counter, 2, event_id, now, ack_until)
                if device_id not in owed:
                    owed.append(device_id)
                if row[0] and not _is_test(bytes(row[1])):  # a walk test's press waits for no operator
                    db.execute("""INSERT OR IGNORE INTO awaiting_operator (event_id, device_id, counter, delivered_at,
                                  until) VALUES (?, ?, ?, ?, ?)""", (event_id, device_id, counter, now, operator_until))
        return Settled(settled, owed)

    def mark_retry_many(self, event_ids: list[str], next_attempt_at: float, error: str) -> int:
        """`mark_retry` for several items in one transaction (a batch that failed as a whole)."""
        with self._tx() as db:
            return sum(db.execute("""UPDATE outbox SET attempts = attempts + 1, next_attempt_at = ?, last_error = ?
                                     WHERE event_id = ?""", (float(next_attempt_at), error, event_id)).rowcount
                       for event_id in event_ids)

    def replace_hub_heartbeat(self, body: bytes) -> int:
        """Put a hub_heartbeat in the outbox in place of any still waiting (heartbeats never pile
        up: only the newest says anything). Returns how many older ones it replaced."""
        event = events.decode(body)
        if event["type"] != events.HUB_HEARTBEAT or event["device"] is not None:
            raise events.EventError("type: replace_hub_heartbeat takes a hub_heartbeat hub event")
        with self._tx() as db:
            # The newest keeps the backoff of those it replaces: an outage is not retried faster for it.
            attempts, next_at, error = db.execute(
                "SELECT MAX(attempts), MAX(next_attempt_at), MAX(last_error) FROM outbox WHERE type = ?",
                (events.HUB_HEARTBEAT,)).fetchone()
            replaced = db.execute("DELETE FROM outbox WHERE type = ?", (events.HUB_HEARTBEAT,)).rowcount
            self._insert(db, event, body, source=event["hub_id"], now=self._clock())
            if replaced:
                db.execute("UPDATE outbox SET attempts = ?, next_attempt_at = ?, last_error = ? WHERE event_id = ?",
                           (attempts, next_at, error, event["event_id"]))
        return replaced

    def trim_backlog(self, max_items: int, routine: frozenset[str] | set[str]) -> list[str]:
        """Keep the outbox at `max_items` or fewer by dropping non-urgent events, oldest first:
        `routine` types first, then any other non-urgent type but the hub heartbeat. Urgent
        events are never dropped (the outbox exceeds the bound only by urgent events).
        Dropped events go to the dead letters with the reason; returns their ids."""
        dropped: list[str] = []
        with self._tx() as db:
            excess = db.execute("SELECT COUNT(*) FROM outbox").fetchone()[0] - max_items
            if excess <= 0:
                return dropped
            kinds = sorted(routine)
            marks = ", ".join("?" for _ in kinds) or "NULL"
            for where, params in ((f"type IN ({marks})", kinds), ("type != ?", [events.HUB_HEARTBEAT])):
                if excess <= 0:
                    break
                rows = db.execute(f"SELECT event_id FROM outbox WHERE urgent = 0 AND {where} ORDER BY seq LIMIT ?",
                                  (*params, excess)).fetchall()
                reason = f"dropped: outbox over its maximum backlog of {max_items} events"
                for (event_id,) in rows:
                    db.execute("""INSERT OR REPLACE INTO dead_letter (event_id, type, body, created_at, attempts,
                                  died_at, reason) SELECT event_id, type, body, created_at, attempts, ?, ?
                                  FROM outbox WHERE event_id = ?""", (self._clock(), reason, event_id))
                    db.execute("DELETE FROM outbox WHERE event_id = ?", (event_id,))
                    dropped.append(event_id)
                excess -= len(rows)
        return dropped

    def outbox_summary(self) -> dict[str, float | int | None]:
        """depth, urgent (how many of them), oldest_at (created_at of the oldest, or None)."""
        depth, urgent, oldest = self._read("SELECT COUNT(*), COALESCE(SUM(urgent), 0), MIN(created_at) FROM outbox")[0]
        return {"depth": depth, "urgent": urgent, "oldest_at": oldest}

    def owe_ack(self, device_id: str, counter: int, kind: int, event_id: str, until: float) -> None:
        """Owe `device_id` an ack of `kind` for `counter` until `until` (a higher kind replaces a lower)."""
        _check_device_id(device_id)
        _check_counter(counter)
        with self._tx() as db:
            self._owe_in(db, device_id, counter, kind, event_id, self._clock(), until)

    @staticmethod
    def _owe_in(db: sqlite3.Connection, device_id: str, counter: int, kind: int, event_id: str,
                now: float, until: float) -> None:
        db.execute("""INSERT INTO owed_acks (device_id, counter, kind, written, event_id, owed_since, expires_at)
                      VALUES (?, ?, ?, 0, ?, ?, ?)
                      ON CONFLICT (device_id, counter) DO UPDATE SET kind = MAX(kind, excluded.kind),
                          expires_at = MAX(expires_at, excluded.expires_at)""",
                   (device_id, counter, kind, event_id, now, until))

    def owed_acks(self, device_id: str | None, now: float) -> list[OwedAck]:
        """Acks owed and not expired, to one device (or to all with None), oldest counter first."""
        where, params = ("AND device_id = ?", (now, device_id)) if device_id is not None else ("", (now,))
        rows = self._read(f"""SELECT device_id, counter, kind, event_id, owed_since, expires_at FROM owed_acks
                              WHERE kind > written AND expires_at > ? {where} ORDER BY device_id, counter""", params)
        return [OwedAck(*row) for row in rows]

    def ack_written(self, device_id: str, counter: int, kind: int) -> None:
        """The device has the ack of `kind` for `counter`: no longer owed (a lower kind never again).
        A kind 2 also settles kind 2 owed for the device's earlier counters: one device's events
        reach the platform in order, so "delivered" for one means delivered for those before it."""
        with self._tx() as db:
            db.execute("UPDATE owed_acks SET written = MAX(written, ?) WHERE device_id = ? AND counter = ?",
                       (kind, device_id, counter))
            if kind == 2:
                db.execute("UPDATE owed_acks SET written = MAX(written, 2) WHERE device_id = ? AND counter < ?",
                           (device_id, counter))

    def awaiting_operator(self, now: float) -> list[Awaiting]:
        rows = self._read("""SELECT event_id, device_id, counter, delivered_at, until FROM awaiting_operator
                             WHERE until > ? ORDER BY delivered_at""", (now,))
        return [Awaiting(*row) for row in rows]

    def operator_acked(self, event_id: str, ack_until: float) -> Awaiting | None:
        """An operator took up `event_id`: if it was awaited, its device is owed an ack of kind 3
        until `ack_until`; returns what was awaited (None if nothing was)."""
        with self._tx() as db:
            row = db.execute("""SELECT event_id, device_id, counter, delivered_at, until FROM awaiting_operator
                                WHERE event_id = ?""", (event_id,)).fetchone()
            if row is None:
                return None
            awaited = Awaiting(*row)
            db.execute("DELETE FROM awaiting_operator WHERE event_id = ?", (event_id,))
            self._owe_in(db, awaited.device_id, awaited.counter, 3, event_id, self._clock(), ack_until)
        return awaited

    def purge_expired(self, now: float) -> int:
        """Forget owed acks and operator waits past their time; returns how many rows went."""
        with self._tx() as db:
            return (db.execute("DELETE FROM owed_acks WHERE expires_at <= ?", (now,)).rowcount
                    + db.execute("DELETE FROM awaiting_operator WHERE until <= ?", (now,)).rowcount)

    def setting(self, name: str) -> str | None:
        rows = self._read("SELECT value FROM hub_settings WHERE name = ?", (name,))
        return rows[0][0] if rows else None

    def set_setting(self, name: str, value: str) -> None:
        with self._tx() as db:
            db.execute("INSERT INTO hub_settings (name, value) VALUES (?, ?) "
                       "ON CONFLICT (name) DO UPDATE SET value = excluded.value", (name, str(value)))


def _device_of(body: bytes) -> tuple[str | None, str | None, int]:
    """(device id, role, counter) of a stored device event's body; (None, None, 0) for a hub event."""
    event = json.loads(body)
    device = event.get("device")
    return (device["id"], device.get("role"), event["counter"]) if device else (None, None, 0)


def _is_test(body: bytes) -> bool:
    """A test event (a walk test's, or test_alarm): `data.test` is true (SPEC 2, "Test events")."""
    return json.loads(body).get("data", {}).get("test") is True


def _item(row: tuple) -> OutboxItem:
    event_id, type_, urgent, body, source, created_at, attempts, next_attempt_at, last_error = row
    return OutboxItem(event_id, type_, bool(urgent), bytes(body), source, created_at, attempts,
                      next_attempt_at, last_error)


def _check_device_id(device_id: object) -> None:
    if not isinstance(device_id, str) or not _DEVICE_ID.match(device_id):
        raise ValueError(f"device_id: 12 lower-case hex digits, not {device_id!r}")


def _check_counter(counter: object) -> None:
    if type(counter) is not int or not 0 <= counter <= COUNTER_MAX:
        raise ValueError(f"counter: an integer 0 .. 2^32-1, not {counter!r}")

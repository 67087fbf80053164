"""The reference receiver's SQLite file: enrolled hubs, stored events, seen nonces.

The platform is the last hop of "stored before acknowledged", so every write is a
transaction with `synchronous=FULL` (an answered 201 survives a power cut), and
WAL lets `safebox-receiver events` read while the server writes. Nonces live here
too, so a request captured before a restart cannot be replayed after it.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from enum import Enum
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from safebox.protocol import events
from safebox.protocol.signing import public_key_from_text

_SCHEMA = """
CREATE TABLE IF NOT EXISTS hubs (
    hub_id     TEXT PRIMARY KEY,
    public_key TEXT NOT NULL,
    added_at   TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS events (
    id                   INTEGER PRIMARY KEY AUTOINCREMENT,
    hub_id               TEXT NOT NULL,
    event_id             TEXT NOT NULL,
    body                 BLOB NOT NULL,
    body_sha256          TEXT NOT NULL,
    type                 TEXT NOT NULL,
    device_id            TEXT,
    counter              INTEGER,
    occurred_at          TEXT NOT NULL,
    received_at          TEXT NOT NULL,
    signature_verified   INTEGER NOT NULL DEFAULT 1,
    acked_by_operator_at TEXT,
    UNIQUE (hub_id, event_id)
);
CREATE TABLE IF NOT EXISTS nonces (
    key_id     TEXT NOT NULL,
    nonce      TEXT NOT NULL,
    expires_at REAL NOT NULL,
    PRIMARY KEY (key_id, nonce)
);
CREATE INDEX IF NOT EXISTS nonces_by_expiry ON nonces (expires_at);
CREATE INDEX IF NOT EXISTS events_by_type_age ON events (type, received_at);  -- retention.py
"""

# Operators taking events up (simulated: `safebox-receiver operator-ack`), in the order they
# did, for hubs to learn (SPEC 3.6); per-hub settings the platform hands back in answers.
_RELAY_SCHEMA = """
CREATE TABLE IF NOT EXISTS operator_acks (
    seq      INTEGER PRIMARY KEY AUTOINCREMENT,
    hub_id   TEXT NOT NULL,
    event_id TEXT NOT NULL,
    acked_at REAL NOT NULL,
    operator TEXT,
    UNIQUE (hub_id, event_id)
);
CREATE TABLE IF NOT EXISTS hub_settings (
    hub_id               TEXT PRIMARY KEY,
    heartbeat_interval_s INTEGER
);
"""

_EVENT_COLUMNS = ("id, hub_id, event_id, type, device_id, counter, occurred_at, received_at, "
                  "signature_verified, acked_by_operator_at, body, channel")
# SPEC 5.2: which path brought the event: "https", "sms", or both in the order they came.
_CHANNEL_COLUMN = "ALTER TABLE events ADD COLUMN channel TEXT NOT NULL DEFAULT 'https'"


class StoreError(Exception):
    """The database cannot be opened or written; the message names the file and the cause."""


class Outcome(str, Enum):
    """What storing an event came to (SPEC.md section 3, Answers)."""

    ACCEPTED = "accepted"    # stored now
    DUPLICATE = "duplicate"  # same hub, same event id, same body: stored before
    CONFLICT = "conflict"    # same hub, same event id, different body: refused


@dataclass(frozen=True)
class StoredEvent:
    id: int
    hub_id: str
    event_id: str
    type: str
    device_id: str | None
    counter: int | None
    occurred_at: str
    received_at: str
    signature_verified: bool
    acked_by_operator_at: str | None
    body: bytes
    channel: str = "https"

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready view; the body is shown decoded (it was validated before it was stored)."""
        view = {name: getattr(self, name) for name in self.__dataclass_fields__ if name != "body"}
        view["body"] = json.loads(self.body)
        return view


class SqliteNonceStore:
    """The `signing.NonceStore` over the receiver's file, judging expiry on the verifier's clock."""

    def __init__(self, store: Store, clock: Callable[[], float]) -> None:
        self._store = store
        self._clock = clock

    def check_and_add(self, key_id: str, nonce: str, expires_at: float) -> bool:
        return self._store.add_nonce(key_id, nonce, expires_at, now=self._clock())


class Store:
    """One SQLite connection, used from the thread that made it (the server's event loop)."""

    def __init__(self, path: Path | str, *, create: bool = True) -> None:
        self.path = Path(path)
        self.watchers: list[Callable[[], None]] = []  # called after events are stored (the screen's feed)
        if not create and not self.path.is_file():
            raise StoreError(f"no database at {self.path}")
        try:
            self._db = sqlite3.connect(self.path)
        except sqlite3.Error as exc:
            raise StoreError(f"cannot open database {self.path}: {exc}") from None
        try:
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=FULL")
            with self._db:
                self._db.executescript(_SCHEMA)
                self._db.executescript(_RELAY_SCHEMA)
                columns = {row[1] for row in self._db.execute("PRAGMA table_info(events)")}
                if "channel" not in columns:
                    self._db.execute(_CHANNEL_COLUMN)
        except sqlite3.Error as exc:
            self._db.close()
            raise StoreError(f"cannot open database {self.path}: {exc}") from None

    def close(self) -> None:
        self._db.close()

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        try:
            with self._db:
                yield self._db
        except sqlite3.Error as exc:
            raise StoreError(f"database {self.path}: {exc}") from None

    @contextmanager
    def derived(self) -> Iterator[None]:
        """For writes of what can be rebuilt from the stored events (the screen's projection):
        each commit stays atomic, but is not synced to disk one by one (WAL, synchronous=NORMAL);
        a power cut may take the last few back, never half of one."""
        self._db.execute("PRAGMA synchronous=NORMAL")
        try:
            yield
        finally:
            self._db.execute("PRAGMA synchronous=FULL")

    def add_hub(self, hub_id: str, public_key_text: str, *, now: float) -> bool:
        """Enrol a hub's public key (ValueError if it is not one); True if it replaced a key."""
        public_key_from_text(public_key_text)
        with self._transaction() as db:
            replaced = db.execute("SELECT 1 FROM hubs WHERE hub_id = ?", (hub_id,)).fetchone() is not None
            db.execute("INSERT INTO hubs (hub_id, public_key, added_at) VALUES (?, ?, ?) "
                       "ON CONFLICT (hub_id) DO UPDATE SET public_key = excluded.public_key, "
                       "added_at = excluded.added_at",
                       (hub_id, public_key_text.strip(), events.timestamp(now)))
        return replaced

    def hub_key(self, hub_id: str) -> Ed25519PublicKey | None:
        """The enrolled key of `hub_id`, or None (the `signing.Verifier` key lookup)."""
        with self._transaction() as db:
            row = db.execute("SELECT public_key FROM hubs WHERE hub_id = ?", (hub_id,)).fetchone()
        return None if row is None else public_key_from_text(row[0])

    def nonce_store(self, clock: Callable[[], float]) -> SqliteNonceStore:
        return SqliteNonceStore(self, clock)

    def add_nonce(self, key_id: str, nonce: str, expires_at: float, *, now: float) -> bool:
        """Record a nonce, forgetting those past their expiry; False if it was seen."""
        with self._transaction() as db:
            db.execute("DELETE FROM nonces WHERE expires_at < ?", (now,))
            cursor = db.execute("INSERT INTO nonces (key_id, nonce, expires_at) VALUES (?, ?, ?) "
                                "ON CONFLICT DO NOTHING", (key_id, nonce, expires_at))
            return cursor.rowcount == 1

    def record_event(self, hub_id: str, body: bytes, event: dict[str, Any], *, now: float) -> Outcome:
        """Store a verified, validated event unless its (hub, event id) is already stored."""
        with self._transaction() as db:
            outcome = self._record_in(db, hub_id, body, event, now)
        self._stored()
        return outcome

    def record_events(self, hub_id: str, items: list[tuple[bytes, dict[str, Any]]], *, now: float) -> list[Outcome]:
        """`record_event` for the events of a batch, in order, in one transaction (all or none)."""
        with self._transaction() as db:
            outcomes = [self._record_in(db, hub_id, body, event, now) for body, event in items]
        self._stored()
        return outcomes

    def _stored(self) -> None:
        for watcher in self.watchers:
            watcher()

    @staticmethod
    def _record_in(db: sqlite3.Connection, hub_id: str, body: bytes, event: dict[str, Any], now: float) -> Outcome:
        digest = hashlib.sha256(body).hexdigest()
        device = event.get("device") or {}
        cursor = db.execute(
            "INSERT INTO events (hub_id, event_id, body, body_sha256, type, device_id, counter, "
            "occurred_at, received_at, signature_verified) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, 1) "
            "ON CONFLICT (hub_id, event_id) DO NOTHING",
            (hub_id, event["event_id"], body, digest, event["type"], device.get("id"),
             event.get("counter"), event["occurred_at"], events.timestamp(now)))
        if cursor.rowcount == 1:
            return Outcome.ACCEPTED
        stored, channel, old_body = db.execute(
            "SELECT body_sha256, channel, body FROM events WHERE hub_id = ? AND event_id = ?",
            (hub_id, event["event_id"])).fetchone()
        if stored == digest:
            return Outcome.DUPLICATE
        if channel == "sms" and _same_event(json.loads(old_body), event):
            # SPEC 5.2: the HTTPS copy of an event first carried by SMS: its full body replaces the rebuilt one
            db.execute("UPDATE events SET body = ?, body_sha256 = ?, channel = 'sms+https' "
                       "WHERE hub_id = ? AND event_id = ?", (body, digest, hub_id, event["event_id"]))
            return Outcome.DUPLICATE
        return Outcome.CONFLICT

    def events(self, *, since_id: int = 0, limit: int | None = None, hub_id: str | None = None) -> list[StoredEvent]:
        """Stored events with a row id above `since_id` (of `hub_id` only, when given), oldest first."""
        where, params = "id > ?", [since_id]
        if hub_id is not None:
            where, params = where + " AND hub_id = ?", [since_id, hub_id]
        with self._transaction() as db:
            rows = db.execute(f"SELECT {_EVENT_COLUMNS} FROM events WHERE {where} ORDER BY id LIMIT ?",
                              (*params, -1 if limit is None else limit)).fetchall()
        return [StoredEvent(*row[:8], bool(row[8]), row[9], bytes(row[10]), row[11]) for row in rows]

    def delete_events(self, types: frozenset[str], *, received_before: float, limit: int = 5000) -> int:
        """Retention (retention.py): delete up to `limit` stored events of `types` received before
        that time (a bounded transaction: the caller repeats while it returns `limit`)."""
        placeholders = ", ".join("?" for _ in types)
        with self._transaction() as db:
            cursor = db.execute(f"DELETE FROM events WHERE id IN (SELECT id FROM events WHERE type IN ({placeholders}) "
                                f"AND received_at < ? LIMIT ?)",
                                (*sorted(types), events.timestamp(received_before), limit))
        return cursor.rowcount

    def count_events(self) -> int:
        with self._transaction() as db:
            (count,) = db.execute("SELECT COUNT(*) FROM events").fetchone()
        return count

    # -- operator acks and hub settings (SPEC 3.6, 3.7) -----------------------------------

    def operator_ack(self, event_id: str, *, hub_id: str | None = None, operator: str | None = None,
                     now: float) -> tuple[str, dict[str, Any] | None]:
        """An operator takes up a stored event. Returns ("acknowledged" | "already" | "unknown" |
        "ambiguous", the ack as {seq, hub_id, event_id, acked_at} when there is one)."""
        with self._transaction() as db:
            sql, params = "SELECT hub_id FROM events WHERE event_id = ?", [event_id]
            if hub_id is not None:
                sql, params = sql + " AND hub_id = ?", [event_id, hub_id]
            hubs = [row[0] for row in db.execute(sql, params).fetchall()]
            if not hubs:
                return "unknown", None
            if len(hubs) > 1:
                return "ambiguous", None
            cursor = db.execute("INSERT INTO operator_acks (hub_id, event_id, acked_at, operator) VALUES (?, ?, ?, ?) "
                                "ON CONFLICT (hub_id, event_id) DO NOTHING", (hubs[0], event_id, now, operator))
            if cursor.rowcount == 1:
                db.execute("UPDATE events SET acked_by_operator_at = ? WHERE hub_id = ? AND event_id = ?",
                           (events.timestamp(now), hubs[0], event_id))
            row = db.execute("SELECT seq, hub_id, event_id, acked_at FROM operator_acks WHERE hub_id = ? "
                             "AND event_id = ?", (hubs[0], event_id)).fetchone()
        return ("acknowledged" if cursor.rowcount == 1 else "already"), _ack_json(row)

    def operator_acks(self, hub_id: str, *, since_seq: int = 0, since_time: float | None = None,
                      limit: int = 100) -> list[dict[str, Any]]:
        """A hub's operator acks after `since_seq` (and at or after `since_time`), oldest first."""
        with self._transaction() as db:
            rows = db.execute("SELECT seq, hub_id, event_id, acked_at FROM operator_acks WHERE hub_id = ? "
                              "AND seq > ? AND acked_at >= ? ORDER BY seq LIMIT ?",
                              (hub_id, since_seq, -1.0 if since_time is None else since_time, limit)).fetchall()
        return [_ack_json(row) for row in rows]

    def set_heartbeat_interval(self, hub_id: str, seconds: int | None) -> None:
        """What the platform asks a hub for in its answers (None: ask nothing, the hub keeps its own)."""
        with self._transaction() as db:
            db.execute("INSERT INTO hub_settings (hub_id, heartbeat_interval_s) VALUES (?, ?) "
                       "ON CONFLICT (hub_id) DO UPDATE SET heartbeat_interval_s = excluded.heartbeat_interval_s",
                       (hub_id, seconds))

    def heartbeat_interval(self, hub_id: str) -> int | None:
        with self._transaction() as db:
            row = db.execute("SELECT heartbeat_interval_s FROM hub_settings WHERE hub_id = ?", (hub_id,)).fetchone()
        return None if row is None else row[0]


def _same_event(rebuilt: dict[str, Any], event: dict[str, Any]) -> bool:
    """An SMS-rebuilt body and a full one describe the same event (SPEC 5.2)."""
    keys = ("event_id", "type", "hub_id", "home_id", "counter", "occurred_at")
    same_device = (rebuilt.get("device") or {}).get("id") == (event.get("device") or {}).get("id")
    return same_device and all(rebuilt.get(k) == event.get(k) for k in keys)


def _ack_json(row: tuple) -> dict[str, Any]:
    seq, hub_id, event_id, acked_at = row
    return {"seq": seq, "hub_id": hub_id, "event_id": event_id, "acked_at": events.timestamp(acked_at)}

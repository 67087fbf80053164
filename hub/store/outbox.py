"""The outbox and the dead letters: events waiting for the platform, and those it refused.

The body is stored as the exact bytes to send. An item waits while an older item of the same
source and urgency is still waiting, so one source's events reach the platform in the order
they happened (door opened, closed). Hub events (rules, heartbeats) have the hub as source.
"""

from __future__ import annotations

import sqlite3

from safebox.hub.store.database import Database
from safebox.hub.store.records import DeadLetter, OutboxItem
from safebox.protocol import events

_OUTBOX_COLUMNS = "event_id, type, urgent, body, source, created_at, attempts, next_attempt_at, last_error"
# An item waits while an older item of the same source is still waiting, whatever their
# urgency, so one source's events reach the platform in the order they happened (door opened,
# closed; toilet_occupied before its toilet_overdue).
_NO_OLDER_WAITING = """NOT EXISTS (SELECT 1 FROM outbox AS p WHERE p.source = o.source
                       AND p.seq < o.seq AND p.next_attempt_at > :now)"""
# A source with an urgent event waiting anywhere in its queue goes first, all of it in order.
_SOURCE_URGENT = "EXISTS (SELECT 1 FROM outbox AS u WHERE u.source = o.source AND u.urgent = 1)"



def insert_event(db: sqlite3.Connection, event: dict, body: bytes, *, source: str, now: float) -> None:
    """One event into the outbox, inside the caller's transaction."""
    db.execute("INSERT INTO outbox (event_id, source, type, urgent, body, created_at) VALUES (?, ?, ?, ?, ?, ?)",
               (event["event_id"], source, event["type"], int(event["type"] in events.URGENT), body, now))


class OutboxTable(Database):
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
            insert_event(db, event, body, source=event["hub_id"], now=self._clock())
        return event["event_id"]

    # -- the outbox, for the uplink ---------------------------------------------------

    def due(self, now: float, limit: int = 50) -> list[OutboxItem]:
        """Items to send now: the sources holding an urgent event first, then oldest first; one
        source's items always in the order they were stored."""
        rows = self._read(f"""SELECT {_OUTBOX_COLUMNS} FROM outbox AS o
                              WHERE o.next_attempt_at <= :now AND {_NO_OLDER_WAITING}
                              ORDER BY {_SOURCE_URGENT} DESC, o.seq LIMIT :limit""",
                          {"now": now, "limit": limit})
        return [_item(row) for row in rows]

    def next_due_at(self) -> float | None:
        """When the earliest item will be due (it may be in the past), None when the outbox is empty."""
        rows = self._read("""SELECT MIN(o.next_attempt_at) FROM outbox AS o WHERE NOT EXISTS
                             (SELECT 1 FROM outbox AS p WHERE p.source = o.source AND p.seq < o.seq)""")
        return rows[0][0]

    def urgent_sources(self) -> set[str]:
        """The sources with an urgent event waiting (their items retry on the short urgent backoff)."""
        return {row[0] for row in self._read("SELECT DISTINCT source FROM outbox WHERE urgent = 1")}

    def reset_waits(self, now: float) -> int:
        """The platform answers again: every item waiting for a later retry is due now (the relay's
        order then puts urgent first). Attempt counts are kept. Returns how many were waiting."""
        with self._tx() as db:
            return db.execute("UPDATE outbox SET next_attempt_at = ? WHERE next_attempt_at > ?",
                              (float(now), float(now))).rowcount

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
            insert_event(db, event, row[0], source=source, now=self._clock())
            db.execute("DELETE FROM dead_letter WHERE event_id = ?", (event_id,))
            return True

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
            insert_event(db, event, body, source=event["hub_id"], now=self._clock())
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


def _item(row: tuple) -> OutboxItem:
    event_id, type_, urgent, body, source, created_at, attempts, next_attempt_at, last_error = row
    return OutboxItem(event_id, type_, bool(urgent), bytes(body), source, created_at, attempts,
                      next_attempt_at, last_error)



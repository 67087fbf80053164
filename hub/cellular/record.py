"""What the cellular path sent, in its own SQLite file (state_dir/cellular.db).

One row per (event, number): sent with the network's message reference, or failed with the
reason and the count of attempts. It is what keeps the hub from sending one event twice to
one number across restarts, and what `status` shows of the SMS path.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

_SCHEMA = """
CREATE TABLE IF NOT EXISTS sms (
    event_id   TEXT NOT NULL,
    number     TEXT NOT NULL,
    purpose    TEXT NOT NULL CHECK (purpose IN ('platform', 'contact')),
    state      TEXT NOT NULL CHECK (state IN ('sent', 'failed')),
    reference  INTEGER,
    attempts   INTEGER NOT NULL DEFAULT 1,
    sends      INTEGER NOT NULL DEFAULT 0,  -- of the attempts, those the network took (+CMGS)
    last_error TEXT,
    at         REAL NOT NULL,
    PRIMARY KEY (event_id, number)
);
"""


_COLUMNS = "event_id, number, purpose, state, reference, attempts, sends, last_error, at"


@dataclass(frozen=True)
class Sent:
    event_id: str
    number: str
    purpose: str
    state: str
    reference: int | None
    attempts: int
    sends: int
    last_error: str | None
    at: float


class SmsRecord:
    def __init__(self, path: Path | str, *, clock: Callable[[], float] = time.time) -> None:
        self._db = sqlite3.connect(str(path))
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")  # a sent SMS must not be sent again after a power cut
        with self._db:
            self._db.executescript(_SCHEMA)
        self._clock = clock
        self._closed_counts: dict[str, int] | None = None

    def close(self) -> None:
        """Close the file; `counts()` keeps answering what it said last (status after a stop)."""
        if self._closed_counts is None:
            self._closed_counts = self.counts()
            self._db.close()

    def sent(self, event_id: str, number: str) -> bool:
        last = self.last(event_id, number)
        return last is not None and last.state == "sent"

    def last(self, event_id: str, number: str) -> Sent | None:
        row = self._db.execute(f"SELECT {_COLUMNS} FROM sms WHERE event_id = ? AND number = ?",
                               (event_id, number)).fetchone()
        return None if row is None else Sent(*row)

    def mark_sent(self, event_id: str, number: str, purpose: str, reference: int) -> None:
        with self._db:
            self._db.execute(
                "INSERT INTO sms (event_id, number, purpose, state, reference, sends, at) "
                "VALUES (?, ?, ?, 'sent', ?, 1, ?) "
                "ON CONFLICT (event_id, number) DO UPDATE SET state = 'sent', reference = excluded.reference, "
                "attempts = attempts + 1, sends = sends + 1, last_error = NULL, at = excluded.at",
                (event_id, number, purpose, reference, self._clock()))

    def mark_failed(self, event_id: str, number: str, purpose: str, error: str) -> None:
        with self._db:
            self._db.execute(
                "INSERT INTO sms (event_id, number, purpose, state, last_error, at) VALUES (?, ?, ?, 'failed', ?, ?) "
                "ON CONFLICT (event_id, number) DO UPDATE SET state = 'failed', attempts = attempts + 1, "
                "last_error = excluded.last_error, at = excluded.at",
                (event_id, number, purpose, error, self._clock()))

    def rows(self, limit: int = 50) -> list[Sent]:
        rows = self._db.execute(f"SELECT {_COLUMNS} FROM sms ORDER BY at DESC LIMIT ?", (limit,)).fetchall()
        return [Sent(*row) for row in rows]

    def counts(self) -> dict[str, int]:
        if self._closed_counts is not None:
            return dict(self._closed_counts)
        return dict(self._db.execute("SELECT state, COUNT(*) FROM sms GROUP BY state").fetchall())

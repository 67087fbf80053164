"""The hub database file: opening it, its transactions and reads, its migrations.

One SQLite file (hub.db) in WAL mode with synchronous=FULL. Every change is one transaction
taken at once (`_tx`); any failure inside one rolls it back, so bad input or a full disk
never leaves half a change. Calls block for a few milliseconds (an fsync per write); a lock
makes them safe to call from `asyncio.to_thread` as well as from the event loop. The tables
are offered by the mixins beside this module (counters, outbox, acks, rules); HubStore in
`__init__` puts them together.
"""

from __future__ import annotations

import re
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Self

from safebox.hub.store.schema import MIGRATIONS, SCHEMA_VERSION

BUSY_TIMEOUT_S = 5.0
COUNTER_MAX = 0xFFFFFFFF
_DEVICE_ID = re.compile(r"^[0-9a-f]{12}$")


class StoreError(Exception):
    """The hub database cannot be used or a write failed (and was rolled back)."""


class Database:
    """An open hub database. Open with `open(path)`; usable as a context manager."""

    def __init__(self, conn: sqlite3.Connection, path: Path, clock: Callable[[], float]) -> None:
        self._conn: sqlite3.Connection | None = conn
        self.path = path
        self._clock = clock
        self._lock = threading.RLock()

    @classmethod
    def open(cls, path: str | Path, *, clock: Callable[[], float] = time.time) -> Self:
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

    def __enter__(self) -> Self:
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
                for statement in MIGRATIONS[target].split(";"):
                    if statement.strip():
                        db.execute(statement)
                if target == 1:
                    # Start hub sequences at the clock, not at 0: a hub whose database was
                    # lost and remade must not reuse event ids the platform already has.
                    db.execute("INSERT INTO hub_seq (id, value) VALUES (1, ?)", (int(self._clock()),))
                if target == 5:
                    db.execute("INSERT INTO ack_number (id, value) VALUES (1, ?)", (int(self._clock()),))
                db.execute(f"PRAGMA user_version = {target}")


    # -- small values kept across restarts (hub_settings) ------------------------------

    def setting(self, name: str) -> str | None:
        rows = self._read("SELECT value FROM hub_settings WHERE name = ?", (name,))
        return rows[0][0] if rows else None

    def set_setting(self, name: str, value: str) -> None:
        with self._tx() as db:
            db.execute("INSERT INTO hub_settings (name, value) VALUES (?, ?) "
                       "ON CONFLICT (name) DO UPDATE SET value = excluded.value", (name, str(value)))


def check_device_id(device_id: object) -> None:
    if not isinstance(device_id, str) or not _DEVICE_ID.match(device_id):
        raise ValueError(f"device_id: 12 lower-case hex digits, not {device_id!r}")


def check_counter(counter: object) -> None:
    if type(counter) is not int or not 0 <= counter <= COUNTER_MAX:
        raise ValueError(f"counter: an integer 0 .. 2^32-1, not {counter!r}")

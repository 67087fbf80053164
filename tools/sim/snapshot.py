"""Read-only snapshots of the two databases a simulated home keeps, for the tools that judge it
(the chaos run, the attack table, the benchmarks): the hub's SQLite file (schema: hub/store/schema.py)
and the receiver's (tools/receiver/store.py), opened with `mode=ro` so a tool can never write
to them, and returned as typed records.

    hub(path)              -> HubSnapshot: replay counters, the outbox, the dead letters
    platform(path)         -> [PlatformEvent, ...]: every event the receiver stored
    stored_at(path, id)    -> when the receiver stored one event (seconds), or None

A receiver database not made yet reads as empty; a hub database that cannot be read (not there,
locked past the timeout, a table missing) gives a HubSnapshot with `error` set.
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

_HEX = frozenset("0123456789abcdef")


def _read_only(path: Path, timeout: float) -> sqlite3.Connection:
    return sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=timeout)


# -- the hub ------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Waiting:
    """An event in the hub's outbox: its id and its source (a device id, or the hub's id)."""

    event_id: str
    source: str

    @property
    def from_device(self) -> bool:
        """Made by a device (its source a device id: hex, no dash), not by the hub itself."""
        return self.source[:1] in _HEX and "-" not in self.source


@dataclass(frozen=True)
class HubSnapshot:
    counters: tuple[tuple[str, int], ...] = ()  # (device id, last accepted counter), sorted
    outbox: tuple[Waiting, ...] = ()
    dead_letters: tuple[str, ...] = ()  # event ids the hub gave up on
    error: str = ""  # why the file could not be read ("" when it was)

    @property
    def device_events_held(self) -> frozenset[str]:
        """Device events waiting in the outbox or dead: a frame accepted by mistake shows here."""
        return frozenset(w.event_id for w in self.outbox if w.from_device) | frozenset(self.dead_letters)


def hub(path: Path, timeout: float = 10.0) -> HubSnapshot:
    """The hub's replay counters, outbox and dead letters, read in one go (read-only)."""
    try:
        con = _read_only(path, timeout)
        try:
            counters = tuple(sorted((d, int(c)) for d, c in con.execute("SELECT device_id, last_counter FROM counters")))
            outbox = tuple(Waiting(e, s) for e, s in con.execute("SELECT event_id, source FROM outbox ORDER BY seq"))
            try:
                dead = tuple(row[0] for row in con.execute("SELECT event_id FROM dead_letter"))
            except sqlite3.Error:
                dead = ()
            return HubSnapshot(counters, outbox, dead)
        finally:
            con.close()
    except sqlite3.Error as exc:
        return HubSnapshot(error=str(exc))


# -- the receiver ----------------------------------------------------------------------------------

@dataclass(frozen=True)
class PlatformEvent:
    """One stored event at the receiver (device_id and counter are None for hub events)."""

    hub_id: str
    event_id: str
    type: str
    device_id: str | None
    counter: int | None
    received_at: str  # as stored: RFC 3339, UTC
    body: bytes


def platform(path: Path, timeout: float = 10.0) -> list[PlatformEvent]:
    """Every event the receiver stored, oldest first (read-only; [] when there is no file yet)."""
    if not Path(path).exists():
        return []
    con = _read_only(path, timeout)
    try:
        return [PlatformEvent(h, e, t, d, c, r, bytes(b)) for h, e, t, d, c, r, b in con.execute(
            "SELECT hub_id, event_id, type, device_id, counter, received_at, body FROM events ORDER BY id")]
    finally:
        con.close()


def platform_channels(path: Path, timeout: float = 10.0) -> dict[str, int]:
    """How many events the receiver stored by each channel (https, sms, sms+https, https+sms)."""
    if not Path(path).exists():
        return {}
    con = _read_only(path, timeout)
    try:
        return dict(con.execute("SELECT channel, COUNT(*) FROM events GROUP BY channel").fetchall())
    finally:
        con.close()


def stored_at(path: Path, event_id: str, timeout: float = 5.0) -> float | None:
    """When the receiver stored `event_id` (POSIX seconds), or None when it has not."""
    con = _read_only(path, timeout)
    try:
        row = con.execute("SELECT received_at FROM events WHERE event_id = ?", (event_id,)).fetchone()
    finally:
        con.close()
    return None if row is None else datetime.fromisoformat(row[0].replace("Z", "+00:00")).timestamp()

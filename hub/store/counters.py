"""The replay guard and what was last heard of each device (tables counters, devices_seen).

The core is `accept`: the counter check, the counter update and the outbox insert happen
in the same transaction, so an event is either stored with its counter or not at all;
acknowledge a device only after `accept` has returned (SPEC 1.4).
"""

from __future__ import annotations

from collections.abc import Callable

from safebox.hub.store.database import Database, check_counter, check_device_id
from safebox.hub.store.outbox import insert_event
from safebox.hub.store.records import SeenDevice, Verdict
from safebox.protocol import events


class CountersTable(Database):
    def accept(self, device_id: str, counter: int, body: bytes | None = None, *,
               heard_at: float | None = None, battery: int | None = None, rssi: int | None = None,
               max_jump: Callable[[float], int] | None = None, send: bool = True) -> Verdict:
        """The replay guard and the outbox insert, in one transaction.

        `body` is the event's bytes from `events.encode` (None for a heartbeat: the counter
        still advances). With `heard_at`, a new frame also updates devices_seen (battery
        and RSSI keep their last known value when None). `max_jump(elapsed_s)`: how far above
        the last accepted counter a frame may be, that long after it (the caller's bound).
        `send=False`: the event is checked and its counter taken, but it goes into no outbox
        (hub/privacy.py: kept at the hub).
        Raises ValueError/EventError on bad input before anything is written.
        """
        check_device_id(device_id)
        check_counter(counter)
        event = None
        if body is not None:
            event = events.decode(body)
            device = event["device"]
            if device is None or device["id"] != device_id or event["counter"] != counter:
                raise events.EventError(f"event_id: body is {event['event_id']!r}, "
                                        f"not an event of device {device_id} counter {counter}")
        with self._tx() as db:
            row = db.execute("SELECT last_counter, last_event, updated_at FROM counters WHERE device_id = ?",
                             (device_id,)).fetchone()
            last, last_event = (row[0], bool(row[1])) if row else (None, False)
            now = self._clock()
            elapsed = max(0.0, now - row[2]) if row else None
            if last is not None and counter <= last:
                return Verdict("repeat" if counter == last else "replay", last, last_event, elapsed)
            if last is not None and elapsed is not None and max_jump is not None and counter - last > max_jump(elapsed):
                return Verdict("jump", last, last_event, elapsed)
            db.execute("""INSERT INTO counters (device_id, last_counter, last_event, updated_at) VALUES (?, ?, ?, ?)
                          ON CONFLICT (device_id) DO UPDATE SET last_counter = excluded.last_counter,
                              last_event = excluded.last_event, updated_at = excluded.updated_at""",
                       (device_id, counter, int(event is not None), now))
            if event is not None and send:
                insert_event(db, event, body, source=device_id, now=now)  # type: ignore[arg-type]
            if heard_at is not None:
                db.execute("""INSERT INTO devices_seen (device_id, last_heard_at, last_counter, battery, rssi)
                              VALUES (?, ?, ?, ?, ?)
                              ON CONFLICT (device_id) DO UPDATE SET
                                  last_heard_at = excluded.last_heard_at, last_counter = excluded.last_counter,
                                  battery = COALESCE(excluded.battery, battery),
                                  rssi = COALESCE(excluded.rssi, rssi)""",
                           (device_id, float(heard_at), counter, battery, rssi))
        return Verdict("new", last, last_event, elapsed)

    def last_counter(self, device_id: str) -> int | None:
        rows = self._read("SELECT last_counter FROM counters WHERE device_id = ?", (device_id,))
        return rows[0][0] if rows else None

    def forget_device(self, device_id: str) -> None:
        """Drop a device's counter and last-heard record: only when it is re-paired with a NEW key
        (frames under the old key can then no longer verify, so the replay guard may start over)."""
        check_device_id(device_id)
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


"""What devices are owed and who is awaited (tables owed_acks, awaiting_operator, ack_number).

Tables only: which ack a delivered event earns, and for how long, is decided by the ack policy
(hub/acks/policy.py) and handed in as `Owe` records. An ack is owed while kind > written and
expires_at has not passed; `written` is the highest kind the DEVICE has confirmed (its receipt
names the number of the ack it took, SPEC 1.7), not what a GATT write reached: a write is only
noted (sent_number, sent_kind). A row is kept until it expires, so a late lower kind can never
be owed again after a higher one was confirmed.
"""

from __future__ import annotations

import sqlite3

from safebox.hub.store.database import StoreError, check_counter, check_device_id
from safebox.hub.store.outbox import OutboxTable
from safebox.hub.store.records import Awaiting, Owe, OwedAck, Settled


class AckTables(OutboxTable):
    def settle_delivered(self, event_ids: list[str], owes: list[Owe]) -> Settled:
        """The platform has these events (one answer): all settled in one transaction.

        Each leaves the outbox (as `mark_delivered`); each of `owes` whose event left it now
        is recorded (an ack owed, an operator awaited). Returns the ids settled and the devices
        newly owed an ack."""
        settled: list[str] = []
        owed: list[str] = []
        with self._tx() as db:
            now = self._clock()
            for event_id in event_ids:
                if self._delivered_in(db, event_id):
                    settled.append(event_id)
            for owe in owes:
                if owe.event_id not in settled:
                    continue
                _owe_in(db, owe.device_id, owe.counter, owe.kind, owe.event_id, now, owe.until)
                if owe.device_id not in owed:
                    owed.append(owe.device_id)
                if owe.await_operator_until is not None:
                    db.execute("""INSERT OR IGNORE INTO awaiting_operator (event_id, device_id, counter, delivered_at,
                                  until) VALUES (?, ?, ?, ?, ?)""",
                               (owe.event_id, owe.device_id, owe.counter, now, owe.await_operator_until))
        return Settled(settled, owed)

    def owe_ack(self, device_id: str, counter: int, kind: int, event_id: str, until: float) -> None:
        """Owe `device_id` an ack of `kind` for `counter` until `until` (a higher kind replaces a lower)."""
        check_device_id(device_id)
        check_counter(counter)
        with self._tx() as db:
            _owe_in(db, device_id, counter, kind, event_id, self._clock(), until)


    def owed_acks(self, device_id: str | None, now: float) -> list[OwedAck]:
        """Acks owed and not expired, to one device (or to all with None), oldest counter first."""
        where, params = ("AND device_id = ?", (now, device_id)) if device_id is not None else ("", (now,))
        rows = self._read(f"""SELECT device_id, counter, kind, event_id, owed_since, expires_at FROM owed_acks
                              WHERE kind > written AND expires_at > ? {where} ORDER BY device_id, counter""", params)
        return [OwedAck(*row) for row in rows]

    def next_ack_number(self) -> int:
        """A fresh ack number for one ack's nonce (SPEC 1.7): persisted before it is used, never reused."""
        with self._tx() as db:
            number = db.execute("UPDATE ack_number SET value = value + 1 WHERE id = 1 RETURNING value").fetchone()[0]
        if number > 0xFFFFFFFF:
            raise StoreError(f"{self.path}: ack numbers used up")
        return int(number)

    def ack_sent(self, device_id: str, counter: int, kind: int, number: int, link: int | None = None) -> None:
        """Ack `number` (of `kind`, for `counter`) reached a device at `device_id`'s address, in the
        connection whose first ack was `link`: still owed until the device confirms that number,
        or a later one of the same connection (a spoofer of its address can take writes)."""
        with self._tx() as db:
            db.execute("""UPDATE owed_acks SET sent_number = ?, sent_kind = ?, sent_link = ?
                          WHERE device_id = ? AND counter = ?""", (number, kind, link, device_id, counter))

    def ack_confirmed(self, device_id: str, number: int, link: int | None = None) -> list[tuple[int, int]]:
        """The device says (in a fresh, authentic frame) it took ack `number`, and so also those
        written before it in the same connection (`link`: its first ack's number, when the
        caller knows it; else as recorded for `number`): what they said is no longer owed; kind 2
        also stands for the device's earlier counters. Returns (counter, kind) of each ack
        confirmed, [] when none awaiting confirmation has that number or came before it then."""
        with self._tx() as db:
            row = db.execute("SELECT sent_link FROM owed_acks WHERE device_id = ? AND sent_number = ?",
                             (device_id, number)).fetchone()
            if link is None and row is not None:
                link = row[0]
            taken = db.execute("""SELECT counter, sent_kind FROM owed_acks WHERE device_id = ? AND sent_kind >= 2
                                  AND (sent_number = ? OR (sent_link = ? AND sent_number BETWEEN ? AND ?))
                                  ORDER BY sent_number""", (device_id, number, link, link, number)).fetchall()
            for counter, kind in taken:
                db.execute("UPDATE owed_acks SET written = MAX(written, ?) WHERE device_id = ? AND counter = ?",
                           (kind, device_id, counter))
                if kind == 2:
                    db.execute("UPDATE owed_acks SET written = MAX(written, 2) WHERE device_id = ? AND counter < ?",
                               (device_id, counter))
        return [(counter, kind) for counter, kind in taken]

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
            _owe_in(db, awaited.device_id, awaited.counter, 3, event_id, self._clock(), ack_until)
        return awaited

    def purge_expired(self, now: float) -> int:
        """Forget owed acks and operator waits past their time; returns how many rows went."""
        with self._tx() as db:
            return (db.execute("DELETE FROM owed_acks WHERE expires_at <= ?", (now,)).rowcount
                    + db.execute("DELETE FROM awaiting_operator WHERE until <= ?", (now,)).rowcount)


def _owe_in(db: sqlite3.Connection, device_id: str, counter: int, kind: int, event_id: str,
            now: float, until: float) -> None:
    db.execute("""INSERT INTO owed_acks (device_id, counter, kind, written, event_id, owed_since, expires_at)
                  VALUES (?, ?, ?, 0, ?, ?, ?)
                  ON CONFLICT (device_id, counter) DO UPDATE SET kind = MAX(kind, excluded.kind),
                      expires_at = MAX(expires_at, excluded.expires_at)""",
               (device_id, counter, kind, event_id, now, until))

"""SMS-borne events at the platform (SPEC 5.2): the hubs' SIM numbers, the checks, the store.

`SmsInbox.take(sender, text)` is the one way in, whatever brings the SMS: the reference
receiver serves an SMS gateway's HTTP callback (`POST /v1/sms`, bearer token); a platform
with its own modem would hand each `+CMT:` it reads to the same function. Events are stored
in the receiver's events table by (hub, event id), so an event that came by SMS and by
HTTPS is one row whose `channel` says both.
"""

from __future__ import annotations

import hmac
import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

from aiohttp import web

from safebox.protocol import events, sms

from . import guard
from .store import Outcome, Store, StoreError

log = logging.getLogger("safebox.receiver.sms")

MAX_AGE_S = 3600.0   # SMS can be late: an hour
MAX_FUTURE_S = 300.0
MAX_BODY = 4096

_SCHEMA = """
CREATE TABLE IF NOT EXISTS sms_numbers (
    number   TEXT PRIMARY KEY,
    hub_id   TEXT NOT NULL,
    added_at REAL NOT NULL
);
"""


@dataclass(frozen=True)
class Taken:
    status: str  # "accepted" | "rejected"
    event_id: str | None
    reason: str | None = None  # accepted: None; rejected: the SPEC 5.2 reason word and detail

    def as_json(self) -> dict:
        return {"status": self.status, "event_id": self.event_id, "reason": self.reason}


class SmsInbox:
    def __init__(self, store: Store, *, clock: Callable[[], float] = time.time, max_age_s: float = MAX_AGE_S,
                 max_future_s: float = MAX_FUTURE_S) -> None:
        self._store = store
        self._clock = clock
        self._max_age_s, self._max_future_s = max_age_s, max_future_s
        with store._transaction() as db:
            db.executescript(_SCHEMA)

    def add_number(self, hub_id: str, number: str) -> None:
        with self._store._transaction() as db:
            db.execute("INSERT INTO sms_numbers (number, hub_id, added_at) VALUES (?, ?, ?) "
                       "ON CONFLICT (number) DO UPDATE SET hub_id = excluded.hub_id", (number, hub_id, self._clock()))

    def hub_of(self, number: str) -> str | None:
        with self._store._transaction() as db:
            row = db.execute("SELECT hub_id FROM sms_numbers WHERE number = ?", (number,)).fetchone()
        return None if row is None else row[0]

    def take(self, sender: str, text: str) -> Taken:
        """Check and store one received SMS; StoreError when the database cannot be written."""
        hub_id = self.hub_of(sender)
        if hub_id is None:
            return self._refuse(sender, None, "unknown_number", f"{sender} is not a hub's number")
        try:
            msg = sms.parse(text)
        except sms.SmsError as exc:
            return self._refuse(sender, None, "malformed", str(exc))
        if msg.hub_id != hub_id:
            return self._refuse(sender, msg.event_id, "wrong_hub", f"{sender} belongs to {hub_id}, not {msg.hub_id}")
        key = self._store.hub_key(hub_id)
        if key is None or not msg.verify(key):
            return self._refuse(sender, msg.event_id, "bad_signature", "the signature does not verify")
        now = self._clock()
        age = now - msg.occurred_ms / 1000
        if age > self._max_age_s:
            return self._refuse(sender, msg.event_id, "stale", f"occurred {age:.0f} s ago")
        if age < -self._max_future_s:
            return self._refuse(sender, msg.event_id, "future", f"occurred {-age:.0f} s ahead of the platform")
        try:
            body = msg.body()
        except events.EventError as exc:
            return self._refuse(sender, msg.event_id, "malformed", str(exc))
        raw = events.encode(body)
        with self._store._transaction() as db:
            row = db.execute("SELECT channel FROM events WHERE hub_id = ? AND event_id = ?",
                             (hub_id, msg.event_id)).fetchone()
            if row is not None and "sms" in row[0]:
                return self._refuse(sender, msg.event_id, "replayed", "this event already came by SMS")
            if row is not None:
                db.execute("UPDATE events SET channel = channel || '+sms' WHERE hub_id = ? AND event_id = ?",
                           (hub_id, msg.event_id))
                log.info("duplicate event_id=%r by SMS from %s (already here by HTTPS)", msg.event_id, sender)
                return Taken("accepted", msg.event_id, "duplicate")
            outcome = self._store._record_in(db, hub_id, raw, body, now)
            db.execute("UPDATE events SET channel = 'sms' WHERE hub_id = ? AND event_id = ?", (hub_id, msg.event_id))
        assert outcome is Outcome.ACCEPTED
        log.info("accepted event_id=%r type=%s by SMS from %s (hub %s)", msg.event_id, msg.type, sender, hub_id)
        return Taken("accepted", msg.event_id)

    @staticmethod
    def _refuse(sender: str, event_id: str | None, word: str, detail: str) -> Taken:
        log.warning("refused SMS from %s event_id=%r: %s: %s", sender, event_id, word, detail)
        return Taken("rejected", event_id, f"{word}: {detail}")


def add_routes(app: web.Application, inbox: SmsInbox, token: str) -> None:
    """`POST /v1/sms`: an SMS gateway's callback, `{"from": ..., "text": ...}` with `Authorization: Bearer`."""
    expected = f"Bearer {token}".encode()

    async def post_sms(request: web.Request) -> web.Response:
        given = request.headers.get("Authorization", "").encode()
        if not hmac.compare_digest(given, expected):
            return web.json_response({"status": "rejected", "event_id": None, "reason": "bad token"}, status=401)
        raw = await guard.read_body(request, MAX_BODY)
        try:
            doc = None if raw is None else json.loads(raw)
        except (ValueError, RecursionError):
            doc = None
        if not isinstance(doc, dict) or not isinstance(doc.get("from"), str) or not isinstance(doc.get("text"), str):
            return web.json_response({"status": "rejected", "event_id": None,
                                      "reason": 'body must be {"from": "<number>", "text": "<message>"}'}, status=400)
        try:
            taken = inbox.take(doc["from"], doc["text"])
        except StoreError as exc:
            log.error("cannot store an SMS event: %s", exc)
            return web.json_response({"status": "retry_later", "event_id": None,
                                      "reason": "platform storage unavailable"}, status=503)
        new = taken.status == "accepted" and taken.reason is None
        return web.json_response(taken.as_json(), status=201 if new else 200)

    app.router.add_post("/v1/sms", post_sms)

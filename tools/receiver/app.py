"""The reference platform receiver: verify, de-duplicate, store, answer (SPEC.md section 3).

A development and pilot stand-in for the district platform, and the other end of the
hub's uplink in tests. This listener is the hubs': everything on it is signed by a hub
(`GET /v1/events` shows a hub its own stored events, for the installer's walk test) except
`GET /v1/health`. Operators use their own listener (console/, behind a login).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable
from typing import Any

from aiohttp import web

from safebox.protocol import events
from safebox.protocol.signing import Refusal, Verifier

from . import enrol, guard, relay, request_form, sms_inbound
from .store import Outcome, Store, StoreError

log = logging.getLogger("safebox.receiver")

STORE_TROUBLE_RETRY_S = 30
MAX_PAGE = 1000


def _answer(http_status: int, status: str, event_id: str | None, reason: str | None = None,
            *, retry_after: int | None = None, extra: dict[str, Any] | None = None) -> web.Response:
    """Every answer is the SPEC's JSON object; retry_later also carries Retry-After;
    `extra` adds the hub's directives (SPEC 3.7) to an answer that stored an event."""
    body: dict[str, Any] = {"status": status, "event_id": event_id, "reason": reason, **(extra or {})}
    headers = {}
    if retry_after is not None:
        body["retry_after"] = retry_after
        headers["Retry-After"] = str(retry_after)
    return web.json_response(body, status=http_status, headers=headers)


def _one_line(text: str) -> str:
    """Peer-supplied text can hold line breaks; a log record stays one line."""
    return text.encode("unicode_escape").decode("ascii")


class _Receiver:
    def __init__(self, store: Store, verifier: Verifier, clock: Callable[[], float]) -> None:
        self._store = store
        self._verifier = verifier
        self._clock = clock

    def _refuse(self, request: web.Request, http_status: int, reason: str, event_id: str | None,
                key_id: str | None = None) -> web.Response:
        log.warning("refused %d from %s keyid=%r event_id=%r: %s",
                    http_status, request.remote, key_id, event_id, _one_line(reason))
        return _answer(http_status, "rejected", event_id, reason)

    async def post_event(self, request: web.Request) -> web.Response:
        event_id = request.headers.get("Idempotency-Key")
        if why := request_form.problem(request):
            return self._refuse(request, 415, why, event_id)
        raw = await guard.read_body(request, events.MAX_BODY)
        if raw is None:
            return self._refuse(request, 413, f"body exceeds {events.MAX_BODY} bytes", event_id)
        try:
            return self._accept(request, raw, event_id)
        except StoreError as exc:
            log.error("cannot store event_id=%r: %s", event_id, exc)
            return _answer(503, "retry_later", event_id, "platform storage unavailable",
                           retry_after=STORE_TROUBLE_RETRY_S)

    def _accept(self, request: web.Request, raw: bytes, event_id: str | None) -> web.Response:
        # Synchronous from verification to storage: two copies of one event cannot interleave.
        try:
            key_id = self._verifier.verify(request.method, str(request.url), request.headers, raw)
        except Refusal as refusal:
            return self._refuse(request, refusal.status, refusal.reason, event_id, refusal.key_id)
        try:
            event = events.decode(raw)
        except events.EventError as exc:
            return self._refuse(request, 422, str(exc), event_id, key_id)
        if event["hub_id"] != key_id:
            return self._refuse(request, 401, f"body hub_id {event['hub_id']!r} is not the signing "
                                              f"keyid {key_id!r}", event_id, key_id)
        if event["event_id"] != event_id:
            return self._refuse(request, 400, f"body event_id {event['event_id']!r} differs from "
                                              f"Idempotency-Key {event_id!r}", event_id, key_id)
        outcome = self._store.record_event(key_id, raw, event, now=self._clock())
        if outcome is Outcome.CONFLICT:
            return self._refuse(request, 409, "idempotency key reused with a different body", event_id, key_id)
        log.info("%s event_id=%r type=%s from keyid=%r", outcome.value, event_id, event["type"], key_id)
        return _answer(201 if outcome is Outcome.ACCEPTED else 200, outcome.value, event_id,
                       extra=relay.directives(self._store, key_id, self._clock()))

    async def list_events(self, request: web.Request) -> web.Response:
        """A hub's own stored events, oldest first, for a signed GET (the GET profile, SPEC 3.6);
        page with ?since_id=<last id seen>&limit=N."""
        try:
            key_id = self._verifier.verify("GET", str(request.url), request.headers, b"")
        except Refusal as refusal:
            return self._refuse(request, refusal.status, refusal.reason, None, refusal.key_id)
        try:
            since_id = int(request.query.get("since_id", "0"))
            limit = int(request.query.get("limit", str(MAX_PAGE)))
        except ValueError:
            return _answer(400, "rejected", None, "since_id and limit must be integers")
        if since_id < 0 or not 1 <= limit <= MAX_PAGE:
            return _answer(400, "rejected", None, f"since_id must be >= 0 and limit 1..{MAX_PAGE}")
        stored = self._store.events(since_id=since_id, limit=limit, hub_id=key_id)
        return web.json_response({
            "events": [event.to_json() for event in stored],
            "next_since_id": stored[-1].id if stored else since_id,
        })

    async def health(self, request: web.Request) -> web.Response:
        return web.json_response({"status": "ok", "events": self._store.count_events()})


def make_app(store: Store, *, clock: Callable[[], float] = time.time, max_age: float = 300,
             max_future: float = 30, sms_token: str | None = None,
             middlewares: Iterable[Any] = ()) -> web.Application:
    """The receiver as an aiohttp application over `store`.

    `sms_token`: serve `POST /v1/sms`, an SMS gateway's callback with this bearer token (SPEC 5.2).

    `middlewares` run inside `guard.deadlines` (which is always first: every body is read
    through `guard.read_body`, within its deadline); the simulator adds its fault injection
    this way (tools/sim/receiver_faults.py), none of it in here.
    """
    verifier = Verifier(store.hub_key, store.nonce_store(clock), max_age=max_age,
                        max_future=max_future, clock=clock)
    receiver = _Receiver(store, verifier, clock)
    app = web.Application(client_max_size=events.MAX_BODY, middlewares=[guard.deadlines, *middlewares])
    app.add_routes([
        web.post("/v1/events", receiver.post_event),
        web.get("/v1/events", receiver.list_events),
        web.get("/v1/health", receiver.health),
    ])
    enrol.add_routes(app, store, clock=clock, max_age=max_age, max_future=max_future)  # POST /v1/enrol
    relay.Relay(receiver, store, verifier, clock).add_routes(app)  # batches, operator acks (SPEC 3.4-3.7)
    if sms_token is not None:
        sms_inbound.add_routes(app, sms_inbound.SmsInbox(store, clock=clock), sms_token)  # SPEC 5.2
    return app

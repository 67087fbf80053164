"""The receiver's side of the relay extensions (SPEC.md 3.4-3.7): batches, operator acks,
and what the platform tells a hub in every answer.

* `POST /v1/events:batch`: a signed JSON array of events (the event profile, the batch key as
  Idempotency-Key); each element is judged and stored on its own, exactly as if it had been
  POSTed alone, and the answer lists one result per element, in order.
  The events of a batch are stored in one transaction, before the answer.
* Operators take events up on their own listener, behind a login (console/), or with
  `safebox-receiver operator-ack` on the file; nothing on the hubs' listener does.
* `GET /v1/hubs/{hub_id}/operator-acks?since=N`: a hub asks for operator acks after its
  cursor; signed with the GET profile, and only a hub's own acks are shown to it.
* Answers to a hub (event, batch, poll) carry its directives: `heartbeat_interval_s` when the
  platform has set one, and `operator_acks` made in the last `PIGGYBACK_WINDOW_S`.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from aiohttp import web

from safebox.protocol import events
from safebox.protocol.signing import Refusal, Verifier

from . import guard, request_form
from .store import Outcome, Store, StoreError

if TYPE_CHECKING:
    from .app import _Receiver

log = logging.getLogger("safebox.receiver")

BATCH_PATH = "/v1/events:batch"
BATCH_MAX_EVENTS = 100
BATCH_MAX_BODY = 1024 * 1024
PIGGYBACK_WINDOW_S = 900  # as long as a hub keeps an ack owed to a device
PIGGYBACK_MAX = 50
POLL_MAX = 100
STORE_TROUBLE_RETRY_S = 30
_BATCH_KEY = re.compile(r"^batch-[0-9a-f]{32}$")
_JSON_WS = " \t\n\r"


def directives(store: Store, hub_id: str, now: float) -> dict[str, Any]:
    """What the platform tells `hub_id` in an answer (SPEC 3.7); {} when nothing."""
    out: dict[str, Any] = {}
    interval = store.heartbeat_interval(hub_id)
    if interval is not None:
        out["heartbeat_interval_s"] = interval
    acks = store.operator_acks(hub_id, since_time=now - PIGGYBACK_WINDOW_S, limit=PIGGYBACK_MAX)
    if acks:
        out["operator_acks"] = [{k: a[k] for k in ("seq", "event_id", "acked_at")} for a in acks]
    return out


def split_array(raw: bytes) -> list[bytes]:
    """The exact bytes of each element of a JSON array of objects; ValueError says what is wrong.

    The elements' bytes are kept as sent (not re-serialised), so an event stored from a batch
    has the same bytes, and the same duplicate check, as the event POSTed alone.
    """
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ValueError(f"batch body is not UTF-8: {exc}") from None
    decoder = json.JSONDecoder()
    i = _skip_ws(text, 0)
    if text[i:i + 1] != "[":
        raise ValueError("batch body must be a JSON array of events")
    i = _skip_ws(text, i + 1)
    elements: list[bytes] = []
    if text[i:i + 1] == "]":
        i += 1
    else:
        while True:
            if text[i:i + 1] != "{":
                raise ValueError(f"batch element {len(elements)} is not a JSON object")
            try:
                _, end = decoder.raw_decode(text, i)
            except (json.JSONDecodeError, RecursionError) as exc:
                raise ValueError(f"batch element {len(elements)} is not JSON: {str(exc)[:200]}") from None
            elements.append(text[i:end].encode("utf-8"))
            i = _skip_ws(text, end)
            if text[i:i + 1] == "]":
                i += 1
                break
            if text[i:i + 1] != ",":
                raise ValueError(f"batch body: expected ',' or ']' after element {len(elements) - 1}")
            i = _skip_ws(text, i + 1)
    if _skip_ws(text, i) != len(text):
        raise ValueError("batch body: data after the array")
    return elements


def _skip_ws(text: str, i: int) -> int:
    while i < len(text) and text[i] in _JSON_WS:
        i += 1
    return i


def _result(event_id: str | None, status: str, code: int, reason: str | None = None,
            retry_after: int | None = None) -> dict[str, Any]:
    result: dict[str, Any] = {"event_id": event_id, "status": status, "code": code, "reason": reason}
    if retry_after is not None:
        result["retry_after"] = retry_after
    return result


def _claimed_id(element: bytes) -> str | None:
    """The event_id an element claims, for its result even when it does not validate."""
    try:
        doc = json.loads(element)
    except (ValueError, RecursionError):
        return None
    value = doc.get("event_id") if isinstance(doc, dict) else None
    return value if isinstance(value, str) and len(value) <= 80 else None


class Relay:
    """The handlers; shares the receiver's store, verifier and clock."""

    def __init__(self, receiver: _Receiver, store: Store, verifier: Verifier, clock: Callable[[], float]) -> None:
        self._receiver = receiver
        self._store = store
        self._verifier = verifier
        self._clock = clock

    def add_routes(self, app: web.Application) -> None:
        app.add_routes([
            web.post(BATCH_PATH, self.post_batch),
            web.get("/v1/hubs/{hub_id}/operator-acks", self.get_operator_acks),
        ])

    async def post_batch(self, request: web.Request) -> web.Response:
        receiver = self._receiver
        batch_key = request.headers.get("Idempotency-Key")
        if why := request_form.problem(request):
            return receiver._refuse(request, 415, why, batch_key)
        raw = await guard.read_body(request, BATCH_MAX_BODY)
        if raw is None:
            return receiver._refuse(request, 413, f"batch body exceeds {BATCH_MAX_BODY} bytes", batch_key)
        try:
            key_id = self._verifier.verify(request.method, str(request.url), request.headers, raw)
        except Refusal as refusal:
            return receiver._refuse(request, refusal.status, refusal.reason, batch_key, refusal.key_id)
        if not _BATCH_KEY.match(batch_key or ""):
            return receiver._refuse(request, 400, "a batch's Idempotency-Key is batch-<32 hex digits>", batch_key,
                                    key_id)
        try:
            elements = split_array(raw)
        except ValueError as exc:
            return receiver._refuse(request, 422, str(exc), batch_key, key_id)
        if not 1 <= len(elements) <= BATCH_MAX_EVENTS:
            return receiver._refuse(request, 413 if elements else 422,
                                    f"a batch holds 1 to {BATCH_MAX_EVENTS} events, not {len(elements)}",
                                    batch_key, key_id)
        results = self._judge(key_id, elements)
        counts: dict[str, int] = {}
        for r in results:
            counts[r["status"]] = counts.get(r["status"], 0) + 1
        log.info("batch %s from keyid=%r: %d events, %s", batch_key, key_id, len(results),
                 ", ".join(f"{n} {status}" for status, n in sorted(counts.items())))
        doc = {"status": "batch", "event_id": None, "reason": None, "results": results,
               **directives(self._store, key_id, self._clock())}
        return web.json_response(doc, status=200)

    def _judge(self, key_id: str, elements: list[bytes]) -> list[dict[str, Any]]:
        """One result per element, in order. The valid ones are stored in one transaction (all
        or none: on storage trouble every one of them is retry_later, so one device's order
        holds); synchronous, so two copies of one event cannot interleave."""
        results: list[dict[str, Any] | None] = []
        to_store: list[tuple[int, bytes, dict[str, Any]]] = []
        for n, element in enumerate(elements):
            claimed = _claimed_id(element)
            try:
                event = events.decode(element)
            except (events.EventError, RecursionError, ValueError, TypeError) as exc:
                results.append(_result(claimed, "rejected", 422, str(exc)[:500]))
                continue
            if event["hub_id"] != key_id:
                results.append(_result(claimed, "rejected", 401,
                                       f"body hub_id {event['hub_id']!r} is not the signing keyid {key_id!r}"))
                continue
            results.append(None)
            to_store.append((n, element, event))
        try:
            outcomes = self._store.record_events(key_id, [(body, event) for _, body, event in to_store],
                                                 now=self._clock())
        except StoreError as exc:
            log.error("cannot store a batch from keyid=%r: %s", key_id, exc)
            outcomes = None
        for k, (n, _, event) in enumerate(to_store):
            if outcomes is None:
                results[n] = _result(event["event_id"], "retry_later", 503, "platform storage unavailable",
                                     STORE_TROUBLE_RETRY_S)
            elif outcomes[k] is Outcome.CONFLICT:
                results[n] = _result(event["event_id"], "rejected", 409, "idempotency key reused with a different body")
            else:
                code = 201 if outcomes[k] is Outcome.ACCEPTED else 200
                results[n] = _result(event["event_id"], outcomes[k].value, code)
        return [r for r in results if r is not None]

    async def get_operator_acks(self, request: web.Request) -> web.Response:
        """A hub's operator acks after `since` (signed GET; a hub sees only its own)."""
        receiver = self._receiver
        hub_id = request.match_info["hub_id"]
        try:
            key_id = self._verifier.verify("GET", str(request.url), request.headers, b"")
        except Refusal as refusal:
            return receiver._refuse(request, refusal.status, refusal.reason, None, refusal.key_id)
        if key_id != hub_id:
            return receiver._refuse(request, 401, f"keyid {key_id!r} may not read hub {hub_id!r}", None, key_id)
        try:
            since = int(request.query.get("since", "0"))
            if since < 0:
                raise ValueError
        except ValueError:
            return receiver._refuse(request, 400, "since must be an integer >= 0", None, key_id)
        acks = self._store.operator_acks(hub_id, since_seq=since, limit=POLL_MAX)
        found = [{k: a[k] for k in ("seq", "event_id", "acked_at")} for a in acks]
        doc: dict[str, Any] = {"status": "ok", "event_id": None, "reason": None,
                               **directives(self._store, hub_id, self._clock()),
                               "operator_acks": found, "next_since": found[-1]["seq"] if found else since}
        return web.json_response(doc)

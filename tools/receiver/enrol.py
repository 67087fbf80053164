"""The platform's side of hub enrolment: one-time codes, and `POST /v1/enrol` (SPEC.md section 4).

An operator issues a code for a hub id (`safebox-receiver enrol-code --hub-id ... --ttl ...`)
and gives it to the installer. The hub sends its id, home, public key and the code,
signed with the event profile (RFC 9421, Ed25519, Content-Digest, nonce, 300 s window)
under the key it is enrolling: the signature proves it holds the private half. A code
works once, for its hub id, until it expires. Only a code's sha256 is stored, so the
database never holds a code that still works; codes never appear in logs.

Answers: 201 `enrolled`; 200 `already_enrolled` (the same key sent again with its code,
e.g. after a lost answer); `rejected` with an `error`: 400 `bad_request`, 401
`bad_signature` / `code_unknown` / `code_expired`, 409 `code_used`, 422 `wrong_hub`,
429 `too_many_failures` (with Retry-After); 503 `retry_later` when storage fails.

Guessing is bounded: after `FAILURES_MAX` refused enrolments within `FAILURE_WINDOW_S` from
one address (an IPv6 /64), that address is answered 429 before anything is looked up, even
with a right code, until the oldest of those failures is `FAILURE_WINDOW_S` old. The count is
kept in memory (a restart forgets it; 60-bit codes leave guessing hopeless at any such rate)
for at most `FAILURE_PEERS_MAX` addresses.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import re
import secrets
import sqlite3
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from safebox.protocol import events
from safebox.protocol.signing import Refusal, Verifier, public_key_from_text

from . import guard, request_form
from .store import Store, StoreError

log = logging.getLogger("safebox.receiver.enrol")

ENROL_PATH = "/v1/enrol"
# Crockford's base32: no I, L, O, U, so what is read aloud or copied by hand survives.
ALPHABET = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
CODE_LEN = 12  # 60 bits
TTL_DEFAULT_S = 24 * 3600
TTL_MIN_S = 60
TTL_MAX_S = 7 * 24 * 3600
MAX_BODY = 4096
FAILURES_MAX = 10
FAILURE_WINDOW_S = 900.0
FAILURE_PEERS_MAX = 10_000
_HUB_ID = re.compile(r"^[a-z0-9][a-z0-9-]{1,62}[a-z0-9]$")
_SCHEMA = """
CREATE TABLE IF NOT EXISTS enrol_codes (
    code_sha256     TEXT PRIMARY KEY,
    hub_id          TEXT NOT NULL,
    issued_at       TEXT NOT NULL,
    expires_at      REAL NOT NULL,
    used_at         TEXT,
    used_public_key TEXT
);
"""


class EnrolRefused(Exception):
    def __init__(self, status: int, error: str, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.error = error
        self.reason = reason


def new_code() -> str:
    raw = "".join(secrets.choice(ALPHABET) for _ in range(CODE_LEN))
    return "-".join(raw[i:i + 4] for i in range(0, CODE_LEN, 4))


def normalise(text: str) -> str | None:
    """The code as issued, from what a person typed (case, dashes, spaces, O/0 and I/L/1 forgiven)."""
    raw = re.sub(r"[\s-]", "", text.upper()).replace("O", "0").replace("I", "1").replace("L", "1")
    if len(raw) != CODE_LEN or any(c not in ALPHABET for c in raw):
        return None
    return raw


def _digest(normalised: str) -> str:
    return hashlib.sha256(normalised.encode()).hexdigest()


@dataclass(frozen=True)
class Issued:
    code: str
    hub_id: str
    expires_at: float


class EnrolCodes:
    """The enrol_codes table of the receiver's database."""

    def __init__(self, store: Store) -> None:
        self._store = store
        with store._transaction() as db:
            db.executescript(_SCHEMA)

    def issue(self, hub_id: str, ttl_s: float, *, now: float) -> Issued:
        if not _HUB_ID.match(hub_id):
            raise ValueError("hub id: lower-case letters, digits and '-', 3-64 long")
        if not TTL_MIN_S <= ttl_s <= TTL_MAX_S:
            raise ValueError(f"ttl: {TTL_MIN_S}..{TTL_MAX_S} seconds")
        code = new_code()
        with self._store._transaction() as db:
            db.execute("DELETE FROM enrol_codes WHERE expires_at < ?", (now - TTL_MAX_S,))
            db.execute("INSERT INTO enrol_codes (code_sha256, hub_id, issued_at, expires_at) VALUES (?, ?, ?, ?)",
                       (_digest(normalise(code) or ""), hub_id, events.timestamp(now), now + ttl_s))
        return Issued(code, hub_id, now + ttl_s)

    def redeem(self, code: str, hub_id: str, public_key: str, *, now: float) -> tuple[bool, bool]:
        """Spend the code on (hub_id, public_key) and enrol the key; (already, replaced).

        EnrolRefused says why not. `already`: this code was spent on this very key before.
        """
        norm = normalise(code)
        if norm is None:
            raise EnrolRefused(401, "code_unknown", "no such enrolment code")
        digest = _digest(norm)
        with self._store._transaction() as db:
            row = db.execute("SELECT hub_id, expires_at, used_at, used_public_key FROM enrol_codes "
                             "WHERE code_sha256 = ?", (digest,)).fetchone()
            if row is None:
                raise EnrolRefused(401, "code_unknown", "no such enrolment code")
            code_hub, expires_at, used_at, used_key = row
            if code_hub != hub_id:
                raise EnrolRefused(422, "wrong_hub", f"this code was issued for hub {code_hub!r}, "
                                                     f"not {hub_id!r}")
            if used_at is not None:
                if used_key == public_key:
                    return True, False
                raise EnrolRefused(409, "code_used", f"this code was used at {used_at}; ask for a new one")
            if expires_at < now:
                raise EnrolRefused(401, "code_expired", f"this code expired at {events.timestamp(expires_at)}; "
                                                        "ask for a new one")
            db.execute("UPDATE enrol_codes SET used_at = ?, used_public_key = ? WHERE code_sha256 = ?",
                       (events.timestamp(now), public_key, digest))
        try:
            replaced = self._store.add_hub(hub_id, public_key, now=now)
        except StoreError:
            with self._store._transaction() as db:  # give the code back: nothing was enrolled
                db.execute("UPDATE enrol_codes SET used_at = NULL, used_public_key = NULL WHERE code_sha256 = ?",
                           (digest,))
            raise
        return False, replaced


def _answer(http_status: int, status: str, hub_id: str | None, *, error: str | None = None,
            reason: str | None = None, **extra: Any) -> web.Response:
    return web.json_response({"status": status, "hub_id": hub_id, "error": error, "reason": reason, **extra},
                             status=http_status)


def _parse(raw: bytes) -> dict[str, str]:
    try:
        doc = json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        raise EnrolRefused(400, "bad_request", "body is not JSON") from None
    if not isinstance(doc, dict):
        raise EnrolRefused(400, "bad_request", "body must be a JSON object")
    for name in ("hub_id", "public_key", "code"):
        if not isinstance(doc.get(name), str) or not doc[name]:
            raise EnrolRefused(400, "bad_request", f"{name}: required string")
    if not _HUB_ID.match(doc["hub_id"]):
        raise EnrolRefused(400, "bad_request", "hub_id: lower-case letters, digits and '-', 3-64 long")
    if "home_id" in doc and not (isinstance(doc["home_id"], str) and _HUB_ID.match(doc["home_id"])):
        raise EnrolRefused(400, "bad_request", "home_id: lower-case letters, digits and '-', 3-64 long")
    return doc


class FailedEnrolments:
    """Refused enrolments per address in the last FAILURE_WINDOW_S, to refuse guessing."""

    def __init__(self, clock: Callable[[], float]) -> None:
        self._clock = clock
        self._by_peer: dict[str, deque[float]] = {}

    def wait_s(self, peer: str) -> float:
        """0 when `peer` may try; else how long until it may."""
        times = self._recent(peer)
        if times is None or len(times) < FAILURES_MAX:
            return 0.0
        return times[0] + FAILURE_WINDOW_S - self._clock()

    def failed(self, peer: str) -> None:
        times = self._recent(peer)
        if times is None:
            if len(self._by_peer) >= FAILURE_PEERS_MAX:  # forget the address whose last failure is oldest
                del self._by_peer[min(self._by_peer, key=lambda p: self._by_peer[p][-1])]
            times = self._by_peer[peer] = deque(maxlen=FAILURES_MAX)
        times.append(self._clock())

    def _recent(self, peer: str) -> deque[float] | None:
        times = self._by_peer.get(peer)
        if times is not None:
            while times and times[0] <= self._clock() - FAILURE_WINDOW_S:
                times.popleft()
            if not times:
                del self._by_peer[peer]
                return None
        return times


class _EnrolEndpoint:
    def __init__(self, store: Store, clock: Callable[[], float], max_age: float, max_future: float) -> None:
        self._failures = FailedEnrolments(clock)
        self._codes = EnrolCodes(store)
        self._nonces = store.nonce_store(clock)
        self._clock = clock
        self._max_age = max_age
        self._max_future = max_future

    async def post(self, request: web.Request) -> web.Response:
        hub_id = None
        peer = guard.peer_key(request.remote or "")
        wait_s = self._failures.wait_s(peer)
        if wait_s > 0:
            log.warning("enrolment refused 429 from %s: %d failed enrolments in %.0f s", request.remote, FAILURES_MAX,
                        FAILURE_WINDOW_S)
            response = _answer(429, "rejected", None, error="too_many_failures",
                               reason=f"{FAILURES_MAX} failed enrolments from this address; try again in "
                                      f"{math.ceil(wait_s)} s", retry_after=math.ceil(wait_s))
            response.headers["Retry-After"] = str(math.ceil(wait_s))
            return response
        try:
            if why := request_form.problem(request):
                raise EnrolRefused(415, "bad_request", why)
            raw = await guard.read_body(request, MAX_BODY)
            if raw is None:
                raise EnrolRefused(413, "bad_request", f"body exceeds {MAX_BODY} bytes")
            doc = _parse(raw)
            hub_id = doc["hub_id"]
            try:
                key = public_key_from_text(doc["public_key"])
            except ValueError as exc:
                raise EnrolRefused(400, "bad_request", f"public_key: {exc}") from None
            verifier = Verifier(lambda kid: key if kid == hub_id else None, self._nonces,
                                max_age=self._max_age, max_future=self._max_future, clock=self._clock)
            try:
                verifier.verify(request.method, str(request.url), request.headers, raw)
            except Refusal as refusal:
                raise EnrolRefused(refusal.status, "bad_signature", refusal.reason) from None
            already, replaced = self._codes.redeem(doc["code"], hub_id, doc["public_key"].strip(), now=self._clock())
        except EnrolRefused as refused:
            self._failures.failed(peer)
            log.warning("enrolment refused %d from %s hub_id=%r: %s", refused.status, request.remote, hub_id,
                        refused.reason.encode("unicode_escape").decode("ascii"))
            return _answer(refused.status, "rejected", hub_id, error=refused.error, reason=refused.reason)
        except (StoreError, sqlite3.Error) as exc:
            log.error("enrolment of hub_id=%r not stored: %s", hub_id, exc)
            return _answer(503, "retry_later", hub_id, reason="platform storage unavailable", retry_after=30)
        if already:
            log.info("enrolment of hub_id=%r repeated with the same key", hub_id)
            return _answer(200, "already_enrolled", hub_id, replaced=False)
        log.info("enrolled hub_id=%r%s", hub_id, " (replaced its previous key)" if replaced else "")
        return _answer(201, "enrolled", hub_id, replaced=replaced)


def add_routes(app: web.Application, store: Store, *, clock: Callable[[], float] = time.time,
               max_age: float = 300, max_future: float = 30) -> None:
    """Serve POST /v1/enrol on `app` from `store`."""
    endpoint = _EnrolEndpoint(store, clock, max_age, max_future)
    app.add_routes([web.post(ENROL_PATH, endpoint.post)])

"""The platform as the hub sees it: sign a request, send it, a typed answer (SPEC section 3).

Each request is signed afresh (new `created`, new nonce) over the exact bytes sent. TLS is
always verified: a context that does not verify is refused. Redirects are not followed (the
signature covers the authority and path it was made for). An answer is read up to
ANSWER_MAX bytes and classified in one table, `classify`:
  200, 201                     delivered
  400 401 409 413 415 422      rejected for good
  429, 503                     busy (Retry-After)
  anything else                retry later
Transport trouble (timeouts, refused connections, TLS errors) raises `Unreachable`.
The client keeps `PlatformHealth` (reachable, the platform's clock offset from its Date
header) and, with `follow_platform_clock`, signs with the platform's time while the hub
clock is more than CLOCK_OFF_S off.
"""

from __future__ import annotations

import asyncio
import email.utils
import hashlib
import json
import logging
import math
import ssl
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from safebox import __version__
from safebox.hub.config import check_https_url
from safebox.hub.health import PlatformHealth
from safebox.hub.store import OutboxItem
from safebox.hub.uplink.https import HttpError, HttpsConnection
from safebox.protocol import signing

log = logging.getLogger("safebox.hub.uplink")

EVENTS_PATH = "/v1/events"
BATCH_PATH = "/v1/events:batch"
ANSWER_MAX = 1024 * 1024  # bytes of an answer body read (a batch answer lists 100 results)
REASON_MAX = 500  # characters of a platform's reason kept in logs and dead letters
RETRY_AFTER_MAX_S = 3600.0  # a bogus Retry-After must not silence the hub for days
CLOCK_OFF_S = 10.0  # the platform's Date differs more than this: say so, sign with its time
CLOCK_WARN_EVERY_S = 600.0

Answer = Literal["delivered", "rejected", "busy", "retry"]
_DELIVERED = frozenset({200, 201})
_REJECTED = frozenset({400, 401, 409, 413, 415, 422})
_BUSY = frozenset({429, 503})


def classify(status: int) -> Answer:
    if status in _DELIVERED:
        return "delivered"
    if status in _REJECTED:
        return "rejected"
    if status in _BUSY:
        return "busy"
    return "retry"


class Unreachable(Exception):
    """No HTTP answer: `what` says why (timeout, refused, TLS), after `ms`."""

    def __init__(self, what: str, ms: int) -> None:
        super().__init__(what)
        self.what = what
        self.ms = ms


@dataclass(frozen=True)
class Reply:
    status: int
    ms: int
    doc: dict[str, Any] = field(default_factory=dict)  # the JSON answer ({} when it is not JSON)
    retry_after_header: str | None = None

    @property
    def answer(self) -> Answer:
        return classify(self.status)

    @property
    def reason(self) -> str:
        reason = self.doc.get("reason")
        return reason[:REASON_MAX] if isinstance(reason, str) else "no reason given"


def batch_key(event_ids: list[str]) -> str:
    """A batch's Idempotency-Key (SPEC 3.4): the same events in the same order, the same key."""
    return "batch-" + hashlib.sha256("\n".join(event_ids).encode()).hexdigest()[:32]


_Raw = tuple[int, bytes, "str | None", "str | None"]  # status, body, Retry-After, Date


class PlatformClient:
    """Use as an async context manager (it holds one HTTP session)."""

    def __init__(self, url: str, *, hub_id: str, private_key: Ed25519PrivateKey, ssl_context: ssl.SSLContext,
                 timeout_s: float = 10.0, clock: Callable[[], float] = time.time,
                 health: PlatformHealth | None = None, on_change: Callable[[], None] | None = None,
                 follow_platform_clock: bool = False, on_offset: Callable[[float], None] | None = None) -> None:
        """`on_offset(s)` is told the platform's clock offset when it is a second or more from
        the one it was told last (the hub keeps it across restarts); the Date header has whole
        seconds, so answers from one clock differ by less."""
        url = check_https_url(url)
        if ssl_context.verify_mode != ssl.CERT_REQUIRED or not ssl_context.check_hostname:
            raise ValueError("ssl_context must verify the platform's certificate and host name "
                             "(TLS verification cannot be switched off; trust a private CA with platform.ca_file)")
        base = url.rstrip("/")
        self.events_url = base + EVENTS_PATH
        self.batch_url = base + BATCH_PATH
        self.acks_url = f"{base}/v1/hubs/{hub_id}/operator-acks"
        self._hub_id = hub_id
        self._key = private_key
        self._ssl = ssl_context
        self._timeout_s = timeout_s
        self._clock = clock
        self.health = health if health is not None else PlatformHealth()
        self._on_change = on_change
        self._follow = follow_platform_clock
        self._on_offset = on_offset
        self._offset_told: float | None = None
        self._clock_warned_at = -math.inf
        self._session: HttpsConnection | None = None
        self._inflight: asyncio.Future[_Raw] | None = None

    async def __aenter__(self) -> PlatformClient:
        self._session = HttpsConnection(self._ssl, user_agent=f"safebox-hub/{__version__}")
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    def abandon(self) -> None:
        """Cancel the request in flight (its caller sees CancelledError)."""
        if self._inflight is not None:
            self._inflight.cancel()

    # -- the requests ----------------------------------------------------------------------

    async def send_event(self, item: OutboxItem) -> Reply:
        headers = signing.signed_headers(self._key, self._hub_id, self.events_url, item.body, item.event_id,
                                         now=self.sign_time())
        return await self._request("POST", self.events_url, headers, item.body)

    async def send_batch(self, items: list[OutboxItem]) -> Reply:
        body = b"[" + b",".join(item.body for item in items) + b"]"
        key = batch_key([item.event_id for item in items])
        headers = signing.signed_headers(self._key, self._hub_id, self.batch_url, body, key, now=self.sign_time())
        return await self._request("POST", self.batch_url, headers, body)

    async def operator_acks(self, since: int) -> Reply:
        url = f"{self.acks_url}?since={since}"
        headers = signing.signed_get_headers(self._key, self._hub_id, url, now=self.sign_time())
        return await self._request("GET", url, headers, None)

    # -- what an answer says ---------------------------------------------------------------

    def retry_after(self, reply: Reply) -> float | None:
        """The longer of the Retry-After header (seconds or HTTP date) and the body's retry_after."""
        waits: list[float] = []
        header = reply.retry_after_header
        if header:
            try:
                waits.append(float(int(header.strip())))
            except ValueError:
                try:
                    waits.append(email.utils.parsedate_to_datetime(header).timestamp() - self._clock())
                except (TypeError, ValueError):
                    log.warning("ignoring unreadable Retry-After header %r", header[:100])
        value = reply.doc.get("retry_after")
        if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
            waits.append(float(value))
        if not waits:
            return None
        return min(max(max(waits), 0.0), RETRY_AFTER_MAX_S)

    def clock_refusal(self, reply: Reply) -> bool:
        """A 401 about the signature's time while the platform's clock differs from ours: not final."""
        offset = self.health.clock_offset_s
        reason = reply.doc.get("reason")
        return (self._follow and reply.status == 401 and isinstance(reason, str)
                and ("created" in reason or "expired" in reason)
                and offset is not None and abs(offset) > CLOCK_OFF_S)

    def offset_to_apply(self) -> float | None:
        """The platform's clock minus the hub's when they differ by more than CLOCK_OFF_S, else None."""
        offset = self.health.clock_offset_s
        return offset if offset is not None and abs(offset) > CLOCK_OFF_S else None

    def sign_time(self) -> float:
        offset = self.offset_to_apply()
        return self._clock() + (offset if self._follow and offset is not None else 0.0)

    # -- HTTP ------------------------------------------------------------------------------

    async def _request(self, method: str, url: str, headers: dict[str, str], body: bytes | None) -> Reply:
        if self._session is None:
            raise RuntimeError("PlatformClient is used outside `async with`")
        started = time.perf_counter()
        self._inflight = asyncio.ensure_future(self._exchange(self._session, method, url, headers, body))
        try:
            status, raw, retry_after, date = await self._inflight
        except (HttpError, asyncio.TimeoutError, OSError) as exc:
            what = describe(exc)
            self._reachable(False)
            self.health.last_error = what
            self.health.last_error_at = self._clock()
            raise Unreachable(what, _ms(started)) from None
        finally:
            self._inflight = None
        self._note_answer(date)
        return Reply(status, _ms(started), _json(raw), retry_after)

    async def _exchange(self, session: HttpsConnection, method: str, url: str, headers: dict[str, str],
                        body: bytes | None) -> _Raw:
        async with asyncio.timeout(self._timeout_s):  # the whole request: connect, send, answer
            answer = await session.request(method, url, headers, body, limit=ANSWER_MAX)
        return answer.status, answer.body, answer.headers.get("retry-after"), answer.headers.get("date")

    def _reachable(self, reachable: bool) -> None:
        changed = self.health.reachable is not reachable
        self.health.reachable = reachable
        if changed and self._on_change is not None:
            self._on_change()

    def _note_answer(self, date: str | None) -> None:
        now = self._clock()
        self._reachable(True)
        self.health.last_answer_at = now
        if not date:
            return
        try:
            offset = email.utils.parsedate_to_datetime(date).timestamp() - now
        except (TypeError, ValueError):
            return
        self.health.clock_offset_s = round(offset, 1)
        if self._on_offset is not None and (self._offset_told is None or abs(offset - self._offset_told) >= 1.0):
            self._offset_told = offset
            self._on_offset(self.health.clock_offset_s)
        if self._follow and abs(offset) > CLOCK_OFF_S and now - self._clock_warned_at >= CLOCK_WARN_EVERY_S:
            self._clock_warned_at = now
            log.warning("hub clock is %+.0f s off the platform's (its Date header): signing with the platform's "
                        "time; check time sync (safebox-hub status shows the clock)", -offset)


def describe(exc: BaseException) -> str:
    if isinstance(exc, asyncio.TimeoutError):
        return "timeout"
    text = str(exc)
    return f"{type(exc).__name__}: {text}"[:REASON_MAX] if text else type(exc).__name__


def _json(raw: bytes) -> dict[str, Any]:
    try:
        doc = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError):
        return {}
    return doc if isinstance(doc, dict) else {}


def _ms(started: float) -> int:
    return round((time.perf_counter() - started) * 1000)

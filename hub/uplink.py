"""The durable relay: hands the outbox to the platform, one signed POST per event (SPEC section 3).

The outbox in SQLite is the queue; this loop only reads it, so a crash or a restart loses
nothing and an event is sent again until the platform answers for it (the event id is the
Idempotency-Key, so a second copy is answered 200 "duplicate", never stored twice).
Each attempt is signed afresh (new `created`, new nonce) over the exact stored bytes.

What an answer means is decided in one table, `_classify`:
  200, 201                        delivered: delete from the outbox, call on_delivered
  400 401 409 413 415 422         rejected for good: dead letter with the platform's reason
  429, 503                        busy: pause all sending for Retry-After (header or body, the longer)
  anything else, timeouts,        transport trouble: this item waits a full-jitter exponential
  connection or TLS errors        backoff, persisted with its attempt count

TLS is always verified: the constructor refuses a context that does not verify.
"""

from __future__ import annotations

import asyncio
import email.utils
import inspect
import json
import logging
import math
import random
import ssl
import time
from collections.abc import Awaitable, Callable
from typing import Any, Literal

import aiohttp
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from safebox.hub.config import check_https_url
from safebox.hub.store import HubStore, OutboxItem
from safebox.protocol import signing

log = logging.getLogger("safebox.hub.uplink")

EVENTS_PATH = "/v1/events"
RETRY_AFTER_MAX_S = 3600.0  # a bogus Retry-After must not silence the hub for days
_REASON_MAX = 500  # characters of a platform's reason kept in logs and dead letters
_ANSWER_MAX = 64 * 1024  # bytes of an answer body read
_MIN_WAIT_S = 0.01

_DELIVERED = frozenset({200, 201})
_REJECTED = frozenset({400, 401, 409, 413, 415, 422})
_BUSY = frozenset({429, 503})

Answer = Literal["delivered", "rejected", "busy", "retry"]
OnDelivered = Callable[[str], "Awaitable[None] | None"]


class Uplink:
    """Relays the outbox to `<url>/v1/events`. Run `run()` as a task; call `notify()` after storing an event."""

    def __init__(self, store: HubStore, *, url: str, hub_id: str, private_key: Ed25519PrivateKey,
                 ssl_context: ssl.SSLContext, clock: Callable[[], float] = time.time,
                 sleep: Callable[[float], Awaitable[Any]] = asyncio.sleep,
                 on_delivered: OnDelivered | None = None, backoff_initial_s: float = 1.0,
                 backoff_max_s: float = 300.0, rng: random.Random | None = None,
                 timeout_s: float = 10.0) -> None:
        check_https_url(url)
        if ssl_context.verify_mode != ssl.CERT_REQUIRED or not ssl_context.check_hostname:
            raise ValueError("ssl_context must verify the platform's certificate and host name "
                             "(TLS verification cannot be switched off; trust a private CA with platform.ca_file)")
        self._store = store
        self.events_url = url.rstrip("/") + EVENTS_PATH
        self._hub_id = hub_id
        self._key = private_key
        self._ssl = ssl_context
        self._clock = clock
        self._sleep = sleep
        self._on_delivered = on_delivered
        self._backoff_initial_s = backoff_initial_s
        self._backoff_max_s = backoff_max_s
        self._rng = rng or random.Random()
        self._timeout = aiohttp.ClientTimeout(total=timeout_s)
        self._wake = asyncio.Event()
        self._stopped = asyncio.Event()
        self._closing = False
        self._running = False
        self._paused_until = 0.0
        self._inflight: asyncio.Future[tuple[int, str | None, bytes]] | None = None

    def notify(self) -> None:
        """Something new is in the outbox: look now instead of at the next retry time. Call from the loop."""
        self._wake.set()

    async def run(self) -> None:
        """Send until `close()`; returns then. Store failures (StoreError) propagate: the hub is unwell."""
        if self._closing:
            return
        if self._running:
            raise RuntimeError("Uplink.run() is already running")
        self._running = True
        self._stopped.clear()
        session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=self._ssl), timeout=self._timeout)
        try:
            while not self._closing:
                self._wake.clear()
                now = self._clock()
                if now < self._paused_until:
                    await self._wait(self._paused_until - now)
                    continue
                items = self._store.due(now, 1)  # one at a time: a new urgent event goes next
                if items:
                    await self._attempt(session, items[0])
                    continue
                next_at = self._store.next_due_at()
                await self._wait(None if next_at is None else max(next_at - now, _MIN_WAIT_S))
        finally:
            await session.close()
            self._running = False
            self._stopped.set()

    async def close(self) -> None:
        """Stop `run()` (an attempt in flight is abandoned: the event stays in the outbox). Safe to call twice."""
        self._closing = True
        self._wake.set()
        if self._inflight is not None:
            self._inflight.cancel()
        if self._running:
            await self._stopped.wait()

    async def _wait(self, timeout_s: float | None) -> None:
        """Until `notify()`/`close()`, or `timeout_s` on the injected sleep."""
        tasks: list[asyncio.Future[Any]] = [asyncio.ensure_future(self._wake.wait())]
        if timeout_s is not None:
            tasks.append(asyncio.ensure_future(self._sleep(timeout_s)))
        try:
            await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

    async def _attempt(self, session: aiohttp.ClientSession, item: OutboxItem) -> None:
        headers = signing.signed_headers(self._key, self._hub_id, self.events_url, item.body, item.event_id,
                                         now=self._clock())
        started = time.perf_counter()
        self._inflight = asyncio.ensure_future(self._post(session, headers, item.body))
        try:
            status, retry_after_header, raw = await self._inflight
        except asyncio.CancelledError:
            if self._closing and not asyncio.current_task().cancelling():  # type: ignore[union-attr]
                return  # abandoned by close(): still in the outbox, sent again next time
            raise
        except (aiohttp.ClientError, asyncio.TimeoutError, OSError) as exc:
            self._retry(item, _describe(exc), _ms(started))
            return
        finally:
            self._inflight = None
        ms = _ms(started)
        answer = _classify(status)
        reason = _body_field(raw, "reason")
        if answer == "delivered":
            self._store.mark_delivered(item.event_id)
            log.info("event %s: delivered, %d in %d ms", item.event_id, status, ms)
            await self._delivered(item.event_id)
        elif answer == "rejected":
            why = f"{status} rejected: {reason if isinstance(reason, str) else 'no reason given'}"[:_REASON_MAX]
            self._store.mark_dead(item.event_id, why)
            log.error("event %s: %s, in %d ms; moved to dead letters", item.event_id, why, ms)
        elif answer == "busy":
            wait = self._retry_after(retry_after_header, _body_field(raw, "retry_after"))
            if wait is None:
                self._retry(item, f"{status} busy, no Retry-After", ms)
                return
            self._paused_until = self._clock() + wait
            self._store.mark_retry(item.event_id, self._paused_until, f"{status} busy: retry after {wait:g} s")
            log.warning("event %s: %d busy in %d ms; pausing all sending for %g s", item.event_id, status, ms, wait)
        else:
            detail = f": {reason}" if isinstance(reason, str) else ""
            self._retry(item, f"HTTP {status}{detail}"[:_REASON_MAX], ms)

    async def _post(self, session: aiohttp.ClientSession, headers: dict[str, str],
                    body: bytes) -> tuple[int, str | None, bytes]:
        # Redirects are not followed: the signature covers the authority and path it was made for.
        async with session.post(self.events_url, data=body, headers=headers, allow_redirects=False) as resp:
            raw = await resp.content.read(_ANSWER_MAX)
            return resp.status, resp.headers.get("Retry-After"), raw

    def _retry(self, item: OutboxItem, error: str, ms: int) -> None:
        """Full-jitter exponential backoff: uniform(0, min(max, initial * 2^attempts))."""
        cap = min(self._backoff_max_s, self._backoff_initial_s * 2 ** min(item.attempts, 40))
        delay = self._rng.uniform(0, cap)
        self._store.mark_retry(item.event_id, self._clock() + delay, error)
        log.warning("event %s: %s, after %d ms; retry in %.1f s (attempt %d)",
                    item.event_id, error, ms, delay, item.attempts + 1)

    def _retry_after(self, header: str | None, body_value: object) -> float | None:
        """The longer of the Retry-After header (seconds or HTTP date) and the body's retry_after."""
        waits: list[float] = []
        if header:
            try:
                waits.append(float(int(header.strip())))
            except ValueError:
                try:
                    waits.append(email.utils.parsedate_to_datetime(header).timestamp() - self._clock())
                except (TypeError, ValueError):
                    log.warning("ignoring unreadable Retry-After header %r", header[:100])
        if isinstance(body_value, (int, float)) and not isinstance(body_value, bool) and math.isfinite(body_value):
            waits.append(float(body_value))
        if not waits:
            return None
        return min(max(max(waits), 0.0), RETRY_AFTER_MAX_S)

    async def _delivered(self, event_id: str) -> None:
        if self._on_delivered is None:
            return
        try:
            result = self._on_delivered(event_id)
            if inspect.isawaitable(result):
                await result
        except Exception:
            # The platform has the event whatever the callback does (e.g. a failed ack write).
            log.exception("on_delivered(%s) failed", event_id)


def _classify(status: int) -> Answer:
    if status in _DELIVERED:
        return "delivered"
    if status in _REJECTED:
        return "rejected"
    if status in _BUSY:
        return "busy"
    return "retry"


def _body_field(raw: bytes, name: str) -> object:
    """A field of the platform's JSON answer, or None when the answer is not such JSON."""
    try:
        doc = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError):
        return None
    return doc.get(name) if isinstance(doc, dict) else None


def _describe(exc: BaseException) -> str:
    if isinstance(exc, asyncio.TimeoutError):
        return "timeout"
    text = str(exc)
    return f"{type(exc).__name__}: {text}"[:_REASON_MAX] if text else type(exc).__name__


def _ms(started: float) -> int:
    return round((time.perf_counter() - started) * 1000)

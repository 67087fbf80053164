"""The durable relay: hands the outbox to the platform (SPEC section 3).

The outbox in SQLite is the queue; this loop only reads it, so a crash or a restart loses
nothing and an event is sent again until the platform answers for it (the event id is the
Idempotency-Key, so a second copy is answered "duplicate", never stored twice). Each attempt
is signed afresh (new `created`, new nonce) over the exact stored bytes.

What goes out, in this order of precedence:
  * urgent events (buttons, toilet_overdue, door_inactive, test_alarm), one POST each, at once;
  * with a backlog (two or more non-urgent events due), up to `batch_max` of them in one
    `POST /v1/events:batch`, oldest first, each judged on its own by the platform (SPEC 3.4);
  * otherwise one POST per event. One source's events always go in the order they happened.

What an answer means is decided in one table, `_classify`:
  200, 201                        delivered: leave the outbox, owe the device an ack of kind 2
  400 401 409 413 415 422         rejected for good: dead letter with the platform's reason
  429, 503                        busy: pause all sending for Retry-After (header or body, the longer)
  anything else, timeouts,        transport trouble: this item waits a full-jitter exponential
  connection or TLS errors        backoff, persisted with its attempt count
A 401 for the signature's time while the platform's Date says the hub clock is off is not
final: the hub signs with the platform's time from then on and tries again.

Bounds (SPEC 3.8): at most `max_backlog` events wait; beyond it the oldest routine events are
dropped to the dead letters with a note (urgent events never are). Hub heartbeats are made
every `heartbeat_s` (the platform may change it in any answer) and replace one another in the
outbox, so a long outage leaves one heartbeat waiting, not hundreds.

Operator acks (SPEC 3.6) come piggybacked on answers, and from a signed poll while an urgent
device event delivered in the last `ack_ttl_s` has not been taken up; each makes the device
owed an ack of kind 3, which hub/acks.py writes when the device is next heard.

TLS is always verified: the constructor refuses a context that does not verify.
"""

from __future__ import annotations

import asyncio
import email.utils
import hashlib
import inspect
import json
import logging
import math
import random
import ssl
import time
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass
from typing import Any, Literal

import aiohttp
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from safebox.hub.config import check_https_url
from safebox.hub.store import HubStore, OutboxItem
from safebox.protocol import events, signing

log = logging.getLogger("safebox.hub.uplink")

EVENTS_PATH = "/v1/events"
BATCH_PATH = "/v1/events:batch"
RETRY_AFTER_MAX_S = 3600.0  # a bogus Retry-After must not silence the hub for days
BATCH_OFF_S = 3600.0  # a platform without the batch endpoint is asked again after this long
BATCH_REFUSED_OFF_S = 300.0  # a batch refused as a whole: its events go one by one meanwhile
HEARTBEAT_MIN_S, HEARTBEAT_MAX_S = 60, 86400  # what a platform may ask for
CLOCK_OFF_S = 10.0  # the platform's Date differs more than this: say so, sign with its time
CLOCK_WARN_EVERY_S = 600.0
PURGE_EVERY_S = 600.0  # forget owed acks and operator waits past their time
# Dropped first when the outbox is over its bound: state changes a later one supersedes.
ROUTINE = frozenset({events.DOOR_OPENED, events.DOOR_CLOSED, events.TOILET_OCCUPIED, events.TOILET_VACATED,
                     events.DEVICE_ONLINE})
_REASON_MAX = 500  # characters of a platform's reason kept in logs and dead letters
_ANSWER_MAX = 1024 * 1024  # bytes of an answer body read (a batch answer lists 100 results)
_MIN_WAIT_S = 0.01
_CURSOR = "operator_ack_cursor"
_HEARTBEAT_LAST = "heartbeat_last_at"
_HEARTBEAT_PLATFORM = "heartbeat_interval_s"

_DELIVERED = frozenset({200, 201})
_REJECTED = frozenset({400, 401, 409, 413, 415, 422})
_BUSY = frozenset({429, 503})
_NO_BATCHES = frozenset({404, 405, 501})

Answer = Literal["delivered", "rejected", "busy", "retry"]
OnDelivered = Callable[[str], "Awaitable[None] | None"]


@dataclass
class PlatformHealth:
    """What the relay knows of the platform, for `status` and the hub heartbeat."""

    reachable: bool | None = None  # did the last request get an HTTP answer
    last_answer_at: float | None = None
    last_delivered_at: float | None = None
    last_error: str | None = None
    last_error_at: float | None = None
    paused_until: float | None = None
    clock_offset_s: float | None = None  # platform's Date minus the hub clock
    batching: bool = True
    heartbeat_interval_s: float | None = None
    dropped: int = 0  # events dropped over max_backlog since the hub started

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class _Reply:
    status: int
    retry_after: str | None
    raw: bytes
    date: str | None


class Uplink:
    """Relays the outbox to the platform. Run `run()` as a task; call `notify()` after storing an event.

    The heavier behaviours are off unless asked for, so a bare Uplink is the plain relay:
    `batch_max` > 1 batches backlogs, `heartbeat_s` makes hub heartbeats, `operator_poll_s`
    polls for operator acks, `idle_poll_s` looks at the outbox at least that often (events
    stored by another process), `clock_check` warns when the platform's Date header shows the
    hub clock off by more than CLOCK_OFF_S, and then signs with the platform's time.
    `on_owed(device_id)` is called when a device is newly owed an ack, `clock_problem()` says
    whether the hub clock is trusted (said with each delivery when not), `on_health_change()`
    when the platform becomes reachable or unreachable.
    """

    def __init__(self, store: HubStore, *, url: str, hub_id: str, private_key: Ed25519PrivateKey,
                 ssl_context: ssl.SSLContext, clock: Callable[[], float] = time.time,
                 sleep: Callable[[float], Awaitable[Any]] = asyncio.sleep,
                 on_delivered: OnDelivered | None = None, backoff_initial_s: float = 1.0,
                 backoff_max_s: float = 300.0, rng: random.Random | None = None,
                 timeout_s: float = 10.0, home_id: str | None = None, batch_max: int = 1,
                 max_backlog: int = 10_000, heartbeat_s: float | None = None,
                 heartbeat_data: Callable[[], dict[str, Any]] | None = None,
                 operator_poll_s: float | None = None, ack_ttl_s: float = 900.0,
                 idle_poll_s: float | None = None, clock_check: bool = False,
                 on_owed: Callable[[str], None] | None = None,
                 clock_problem: Callable[[], str | None] | None = None,
                 on_health_change: Callable[[], None] | None = None) -> None:
        check_https_url(url)
        if ssl_context.verify_mode != ssl.CERT_REQUIRED or not ssl_context.check_hostname:
            raise ValueError("ssl_context must verify the platform's certificate and host name "
                             "(TLS verification cannot be switched off; trust a private CA with platform.ca_file)")
        if heartbeat_s and home_id is None:
            raise ValueError("home_id is needed to make hub heartbeats")
        self._store = store
        base = url.rstrip("/")
        self.events_url = base + EVENTS_PATH
        self.batch_url = base + BATCH_PATH
        self._acks_url = f"{base}/v1/hubs/{hub_id}/operator-acks"
        self._hub_id = hub_id
        self._home_id = home_id
        self._key = private_key
        self._ssl = ssl_context
        self._clock = clock
        self._sleep = sleep
        self._on_delivered = on_delivered
        self._on_owed = on_owed
        self._backoff_initial_s = backoff_initial_s
        self._backoff_max_s = backoff_max_s
        self._rng = rng or random.Random()
        self._timeout = aiohttp.ClientTimeout(total=timeout_s)
        self._batch_max = max(1, min(int(batch_max), 100))
        self._max_backlog = max_backlog
        self._heartbeat_s = heartbeat_s or None
        self._heartbeat_data = heartbeat_data
        self._operator_poll_s = operator_poll_s
        self._ack_ttl_s = ack_ttl_s
        self._idle_poll_s = idle_poll_s
        self._clock_check = clock_check
        self._clock_problem = clock_problem
        self._on_health_change = on_health_change
        self.health = PlatformHealth(batching=self._batch_max > 1)
        self._wake = asyncio.Event()
        self._stopped = asyncio.Event()
        self._closing = False
        self._running = False
        self._paused_until = 0.0
        self._batch_off_until = 0.0
        self._heartbeat_next: float | None = None
        self._poll_next = 0.0
        self._purge_next = 0.0
        self._clock_warned_at = -math.inf
        self._inflight: asyncio.Future[_Reply] | None = None

    def notify(self) -> None:
        """Something new is in the outbox: look now instead of at the next retry time. Call from the loop."""
        self._wake.set()

    # -- the loop ---------------------------------------------------------------------

    async def run(self) -> None:
        """Send until `close()`; returns then. Store failures (StoreError) propagate: the hub is unwell."""
        if self._closing:
            return
        if self._running:
            raise RuntimeError("Uplink.run() is already running")
        self._running = True
        self._stopped.clear()
        self._start_heartbeats()
        session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=self._ssl), timeout=self._timeout)
        try:
            while not self._closing:
                self._wake.clear()
                now = self._clock()
                self._housekeeping(now)
                if now < self._paused_until:
                    await self._wait(self._paused_until - now)
                    continue
                self.health.paused_until = None
                items = self._store.due(now, self._batch_max)  # urgent first: a new urgent event goes next
                if items:
                    backlog = [i for i in items if not i.urgent]
                    if items[0].urgent or len(backlog) < 2 or now < self._batch_off_until:
                        await self._attempt(session, items[0])
                    else:
                        await self._attempt_batch(session, backlog)
                    continue
                if self._operator_poll_due(now):
                    await self._poll_operator_acks(session)
                    continue
                await self._wait(self._next_wake(now))
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

    def _next_wake(self, now: float) -> float | None:
        """Seconds until something is due: a retry, a heartbeat, a poll, the idle look."""
        times = [t for t in (self._store.next_due_at(), self._heartbeat_next,
                             self._poll_next if self._polling(now) else None) if t is not None]
        wait = max(min(times) - now, _MIN_WAIT_S) if times else None
        if self._idle_poll_s is not None:
            wait = self._idle_poll_s if wait is None else min(wait, self._idle_poll_s)
        return wait

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

    def _housekeeping(self, now: float) -> None:
        """Heartbeat due, backlog bound, expired acks: cheap checks before each send."""
        if self._heartbeat_next is not None and now >= self._heartbeat_next:
            self._make_heartbeat(now)
        if now >= self._purge_next:
            self._purge_next = now + PURGE_EVERY_S
            self._store.purge_expired(now)
        if self._store.depth() > self._max_backlog:
            dropped = self._store.trim_backlog(self._max_backlog, ROUTINE)
            if dropped:
                self.health.dropped += len(dropped)
                log.warning("outbox over its maximum backlog of %d events: dropped the %d oldest non-urgent "
                            "(%s .. %s) to dead letters; %d dropped since the hub started",
                            self._max_backlog, len(dropped), dropped[0], dropped[-1], self.health.dropped)

    # -- one event --------------------------------------------------------------------

    async def _attempt(self, session: aiohttp.ClientSession, item: OutboxItem) -> None:
        headers = signing.signed_headers(self._key, self._hub_id, self.events_url, item.body, item.event_id,
                                         now=self._sign_time())
        started = time.perf_counter()
        try:
            reply = await self._request(session, "POST", self.events_url, headers, item.body)
        except asyncio.CancelledError:
            if self._closing and not asyncio.current_task().cancelling():  # type: ignore[union-attr]
                return  # abandoned by close(): still in the outbox, sent again next time
            raise
        except (aiohttp.ClientError, asyncio.TimeoutError, OSError) as exc:
            self._retry([item], _describe(exc), _ms(started))
            return
        ms = _ms(started)
        status = reply.status
        answer = _classify(status)
        doc = _json(reply.raw)
        reason = doc.get("reason")
        if answer == "delivered":
            self._settle([item])
            log.info("event %s: delivered, %d in %d ms%s", item.event_id, status, ms, self._clock_note())
            self._directives(doc)
            await self._delivered(item.event_id)
        elif answer == "rejected":
            why = f"{status} rejected: {reason if isinstance(reason, str) else 'no reason given'}"[:_REASON_MAX]
            if self._clock_refusal(status, reason):
                self._retry([item], why + " (hub clock off: signing with the platform's time)", ms)
                return
            self._store.mark_dead(item.event_id, why)
            log.error("event %s: %s, in %d ms; moved to dead letters", item.event_id, why, ms)
        elif answer == "busy":
            wait = self._retry_after(reply.retry_after, doc.get("retry_after"))
            if wait is None:
                self._retry([item], f"{status} busy, no Retry-After", ms)
                return
            self._pause(wait)
            self._store.mark_retry(item.event_id, self._paused_until, f"{status} busy: retry after {wait:g} s")
            log.warning("event %s: %d busy in %d ms; pausing all sending for %g s", item.event_id, status, ms, wait)
        else:
            detail = f": {reason}" if isinstance(reason, str) else ""
            self._retry([item], f"HTTP {status}{detail}"[:_REASON_MAX], ms)

    # -- a batch of non-urgent events -----------------------------------------------------

    async def _attempt_batch(self, session: aiohttp.ClientSession, items: list[OutboxItem]) -> None:
        body = b"[" + b",".join(item.body for item in items) + b"]"
        key = batch_key([item.event_id for item in items])
        headers = signing.signed_headers(self._key, self._hub_id, self.batch_url, body, key, now=self._sign_time())
        started = time.perf_counter()
        try:
            reply = await self._request(session, "POST", self.batch_url, headers, body)
        except asyncio.CancelledError:
            if self._closing and not asyncio.current_task().cancelling():  # type: ignore[union-attr]
                return
            raise
        except (aiohttp.ClientError, asyncio.TimeoutError, OSError) as exc:
            self._retry(items, _describe(exc), _ms(started))
            return
        ms = _ms(started)
        status = reply.status
        doc = _json(reply.raw)
        reason = doc.get("reason")
        results = doc.get("results")
        if status == 200 and isinstance(results, list):
            self._directives(doc)
            await self._settle_batch(items, results, ms)
        elif status in _NO_BATCHES:
            self._batch_off_until = self._clock() + BATCH_OFF_S
            self.health.batching = False
            log.warning("platform has no batch endpoint (%d): sending one event per request for %d s",
                        status, BATCH_OFF_S)
        elif _classify(status) == "rejected":
            # The request as a whole: each event gets its own verdict when sent alone.
            self._batch_off_until = self._clock() + BATCH_REFUSED_OFF_S
            self.health.batching = False
            log.warning("batch of %d (%s .. %s) refused as a whole, %d: %s; sending them one by one for %d s",
                        len(items), items[0].event_id, items[-1].event_id, status,
                        str(reason)[:_REASON_MAX], BATCH_REFUSED_OFF_S)
        elif _classify(status) == "busy":
            wait = self._retry_after(reply.retry_after, doc.get("retry_after"))
            if wait is None:
                self._retry(items, f"{status} busy, no Retry-After", ms)
                return
            self._pause(wait)
            log.warning("batch of %d: %d busy in %d ms; pausing all sending for %g s", len(items), status, ms, wait)
        else:
            detail = f": {reason}" if isinstance(reason, str) else ""
            self._retry(items, f"HTTP {status}{detail}"[:_REASON_MAX], ms)

    async def _settle_batch(self, items: list[OutboxItem], results: list[Any], ms: int) -> None:
        """One result per item, in order (SPEC 3.4); an item without a readable result is retried."""
        delivered: list[OutboxItem] = []
        retry: list[OutboxItem] = []
        rejected = 0
        retry_after = 0.0
        for n, item in enumerate(items):
            result = results[n] if n < len(results) and isinstance(results[n], dict) else {}
            status = result.get("status") if result.get("event_id") == item.event_id else None
            if status in ("accepted", "duplicate"):
                delivered.append(item)
                log.debug("event %s: delivered in a batch, %s", item.event_id, status)
            elif status == "rejected":
                reason = result.get("reason")
                why = f"{result.get('code', '?')} rejected: {reason if isinstance(reason, str) else 'no reason given'}"
                self._store.mark_dead(item.event_id, why[:_REASON_MAX])
                log.error("event %s: %s (in a batch); moved to dead letters", item.event_id, why[:_REASON_MAX])
                rejected += 1
            else:
                value = result.get("retry_after")
                if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
                    retry_after = max(retry_after, min(float(value), RETRY_AFTER_MAX_S))
                retry.append(item)
        self._settle(delivered)
        if retry:
            self._retry(retry, "no result in the batch answer" if not retry_after else "retry_later in a batch",
                        ms, at_least=retry_after)
        log.info("batch of %d (%s .. %s): %d delivered, %d rejected, %d to retry, in %d ms%s",
                 len(items), items[0].event_id, items[-1].event_id, len(delivered), rejected, len(retry), ms,
                 self._clock_note())
        for item in delivered:
            await self._delivered(item.event_id)

    # -- what follows delivery ------------------------------------------------------------

    def _settle(self, items: list[OutboxItem]) -> None:
        if not items:
            return
        now = self._clock()
        settled = self._store.settle_delivered([i.event_id for i in items], ack_until=now + self._ack_ttl_s,
                                               operator_until=now + self._ack_ttl_s)
        self.health.last_delivered_at = now
        if self._on_owed is not None:
            for device_id in settled.owed_devices:
                self._owed(device_id)

    def _owed(self, device_id: str) -> None:
        try:
            self._on_owed(device_id)  # type: ignore[misc]
        except Exception:
            log.exception("on_owed(%s) failed", device_id)

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

    def _directives(self, doc: dict[str, Any]) -> None:
        """What the platform tells the hub in an answer (SPEC 3.7)."""
        interval = doc.get("heartbeat_interval_s")
        if isinstance(interval, int) and not isinstance(interval, bool):
            self._set_heartbeat_interval(interval)
        acks = doc.get("operator_acks")
        if isinstance(acks, list):
            self._operator_acks(acks)

    # -- operator acks ------------------------------------------------------------------

    def _polling(self, now: float) -> bool:
        return self._operator_poll_s is not None and bool(self._store.awaiting_operator(now))

    def _operator_poll_due(self, now: float) -> bool:
        return now >= self._poll_next and self._polling(now)

    async def _poll_operator_acks(self, session: aiohttp.ClientSession) -> None:
        self._poll_next = self._clock() + (self._operator_poll_s or 0)
        cursor = int(self._store.setting(_CURSOR) or 0)
        url = f"{self._acks_url}?since={cursor}"
        headers = signing.signed_get_headers(self._key, self._hub_id, url, now=self._sign_time())
        try:
            reply = await self._request(session, "GET", url, headers, None)
        except asyncio.CancelledError:
            if self._closing and not asyncio.current_task().cancelling():  # type: ignore[union-attr]
                return
            raise
        except (aiohttp.ClientError, asyncio.TimeoutError, OSError) as exc:
            log.warning("operator-ack poll: %s", _describe(exc))
            return
        doc = _json(reply.raw)
        if reply.status != 200:
            log.warning("operator-ack poll: HTTP %d: %s", reply.status, str(doc.get("reason"))[:_REASON_MAX])
            return
        self._directives(doc)

    def _operator_acks(self, acks: list[Any]) -> None:
        cursor = int(self._store.setting(_CURSOR) or 0)
        newest = cursor
        ttl_until = self._clock() + self._ack_ttl_s
        for ack in acks:
            if not isinstance(ack, dict) or not isinstance(ack.get("event_id"), str):
                continue
            seq = ack.get("seq")
            if isinstance(seq, int) and seq <= cursor:
                continue
            awaited = self._store.operator_acked(ack["event_id"], ttl_until)
            if awaited is not None:
                log.info("event %s: taken up by an operator; ack kind 3 owed to %s", awaited.event_id,
                         awaited.device_id)
                if self._on_owed is not None:
                    self._owed(awaited.device_id)
            if isinstance(seq, int):
                newest = max(newest, seq)
        if newest > cursor:
            self._store.set_setting(_CURSOR, str(newest))

    # -- hub heartbeats -----------------------------------------------------------------

    def _heartbeat_interval(self) -> float | None:
        if self._heartbeat_s is None:
            return None
        asked = self._store.setting(_HEARTBEAT_PLATFORM)
        return float(asked) if asked else self._heartbeat_s

    def _start_heartbeats(self) -> None:
        interval = self._heartbeat_interval()
        self.health.heartbeat_interval_s = interval
        if interval is None:
            return
        last = self._store.setting(_HEARTBEAT_LAST)
        now = self._clock()
        if last is None:
            self._store.set_setting(_HEARTBEAT_LAST, repr(now))
            last = repr(now)
        self._heartbeat_next = float(last) + interval

    def _set_heartbeat_interval(self, asked: int) -> None:
        if self._heartbeat_s is None:
            return
        interval = min(max(asked, HEARTBEAT_MIN_S), HEARTBEAT_MAX_S)
        if self._store.setting(_HEARTBEAT_PLATFORM) == str(interval):
            return
        self._store.set_setting(_HEARTBEAT_PLATFORM, str(interval))
        log.info("platform asks for a hub heartbeat every %d s%s", interval,
                 "" if interval == asked else f" (asked {asked}, kept within {HEARTBEAT_MIN_S}..{HEARTBEAT_MAX_S})")
        self.health.heartbeat_interval_s = interval
        last = float(self._store.setting(_HEARTBEAT_LAST) or self._clock())
        self._heartbeat_next = last + interval
        self._wake.set()

    def _make_heartbeat(self, now: float) -> None:
        interval = self._heartbeat_interval() or 0
        data = {"interval_s": interval}
        if self._heartbeat_data is not None:
            try:
                data.update(self._heartbeat_data())
            except Exception:
                log.exception("heartbeat data failed; sending a bare heartbeat")
        body = events.encode(events.make(
            event_id=events.hub_event_id(self._hub_id, self._store.next_hub_seq()), type=events.HUB_HEARTBEAT,
            hub_id=self._hub_id, home_id=self._home_id, occurred_at=now, data=data))  # type: ignore[arg-type]
        replaced = self._store.replace_hub_heartbeat(body)
        self._store.set_setting(_HEARTBEAT_LAST, repr(now))
        self._heartbeat_next = now + interval
        if replaced:
            log.info("hub heartbeat made; it replaces %d still waiting", replaced)
        else:
            log.debug("hub heartbeat made")

    # -- time, pauses, retries --------------------------------------------------------------

    def _clock_note(self) -> str:
        """Said with every delivery while the hub clock cannot be trusted (its times are in the events)."""
        problem = self._clock_problem() if self._clock_problem is not None else None
        return "; sent with a hub clock that is NOT trusted" if problem else ""

    def _sign_time(self) -> float:
        now = self._clock()
        offset = self.health.clock_offset_s
        if self._clock_check and offset is not None and abs(offset) > CLOCK_OFF_S:
            return now + offset
        return now

    def _clock_refusal(self, status: int, reason: object) -> bool:
        """A 401 about the signature's time while the platform's clock differs from ours."""
        offset = self.health.clock_offset_s
        return (self._clock_check and status == 401 and isinstance(reason, str)
                and ("created" in reason or "expired" in reason)
                and offset is not None and abs(offset) > CLOCK_OFF_S)

    def _reachable(self, reachable: bool) -> None:
        changed = self.health.reachable is not reachable
        self.health.reachable = reachable
        if changed and self._on_health_change is not None:
            self._on_health_change()

    def _note_answer(self, reply: _Reply) -> None:
        now = self._clock()
        self._reachable(True)
        self.health.last_answer_at = now
        if reply.date:
            try:
                offset = email.utils.parsedate_to_datetime(reply.date).timestamp() - now
            except (TypeError, ValueError):
                return
            self.health.clock_offset_s = round(offset, 1)
            if self._clock_check and abs(offset) > CLOCK_OFF_S and now - self._clock_warned_at >= CLOCK_WARN_EVERY_S:
                self._clock_warned_at = now
                log.warning("hub clock is %+.0f s off the platform's (its Date header)%s; check time sync "
                            "(safebox-hub status shows the clock)", -offset, ": signing with the platform's time")

    def _pause(self, wait: float) -> None:
        self._paused_until = self._clock() + wait
        self.health.paused_until = self._paused_until

    def _retry(self, items: list[OutboxItem], error: str, ms: int, *, at_least: float = 0.0) -> None:
        """Full-jitter exponential backoff: uniform(0, min(max, initial * 2^attempts)), shared by a batch."""
        attempts = max(item.attempts for item in items)
        cap = min(self._backoff_max_s, self._backoff_initial_s * 2 ** min(attempts, 40))
        delay = max(self._rng.uniform(0, cap), at_least)
        now = self._clock()
        if len(items) == 1:
            self._store.mark_retry(items[0].event_id, now + delay, error)
            log.warning("event %s: %s, after %d ms; retry in %.1f s (attempt %d)",
                        items[0].event_id, error, ms, delay, attempts + 1)
        else:
            self._store.mark_retry_many([i.event_id for i in items], now + delay, error)
            log.warning("batch of %d (%s .. %s): %s, after %d ms; retry in %.1f s (attempt %d)",
                        len(items), items[0].event_id, items[-1].event_id, error, ms, delay, attempts + 1)
        self.health.last_error = error
        self.health.last_error_at = now

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

    # -- HTTP ---------------------------------------------------------------------------

    async def _request(self, session: aiohttp.ClientSession, method: str, url: str,
                       headers: dict[str, str], body: bytes | None) -> _Reply:
        self._inflight = asyncio.ensure_future(self._exchange(session, method, url, headers, body))
        try:
            reply = await self._inflight
        except (aiohttp.ClientError, asyncio.TimeoutError, OSError) as exc:
            self._reachable(False)
            self.health.last_error = _describe(exc)
            self.health.last_error_at = self._clock()
            raise
        finally:
            self._inflight = None
        self._note_answer(reply)
        return reply

    @staticmethod
    async def _exchange(session: aiohttp.ClientSession, method: str, url: str, headers: dict[str, str],
                        body: bytes | None) -> _Reply:
        # Redirects are not followed: the signature covers the authority and path it was made for.
        async with session.request(method, url, data=body, headers=headers, allow_redirects=False) as resp:
            raw = await resp.content.read(_ANSWER_MAX)
            return _Reply(resp.status, resp.headers.get("Retry-After"), raw, resp.headers.get("Date"))


def batch_key(event_ids: list[str]) -> str:
    """A batch's Idempotency-Key (SPEC 3.4): the same events in the same order, the same key."""
    return "batch-" + hashlib.sha256("\n".join(event_ids).encode()).hexdigest()[:32]


def _classify(status: int) -> Answer:
    if status in _DELIVERED:
        return "delivered"
    if status in _REJECTED:
        return "rejected"
    if status in _BUSY:
        return "busy"
    return "retry"


def _json(raw: bytes) -> dict[str, Any]:
    """The platform's JSON answer as a dict ({} when the answer is not such JSON)."""
    try:
        doc = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError):
        return {}
    return doc if isinstance(doc, dict) else {}


def _describe(exc: BaseException) -> str:
    if isinstance(exc, asyncio.TimeoutError):
        return "timeout"
    text = str(exc)
    return f"{type(exc).__name__}: {text}"[:_REASON_MAX] if text else type(exc).__name__


def _ms(started: float) -> int:
    return round((time.perf_counter() - started) * 1000)

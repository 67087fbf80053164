"""The durable relay: hands the outbox to the platform (SPEC section 3).

The outbox in SQLite is the queue; this loop only reads it, so a crash or a restart loses
nothing and an event is sent again until the platform answers for it (the event id is the
Idempotency-Key, so a second copy is answered "duplicate", never stored twice).

What goes out, in this order of precedence:
  * urgent events (buttons, toilet_overdue, door_inactive, test_alarm), one POST each, at once;
  * with a backlog (two or more non-urgent events due), up to `batch_max` of them in one
    `POST /v1/events:batch`, oldest first, each judged on its own by the platform (SPEC 3.4);
  * otherwise one POST per event. One source's events always go in the order they happened.

What an answer means (hub/uplink/client.py `classify`) and what the relay does with it:
  delivered    leave the outbox through `settle` (the ack policy: devices owed kind 2)
  rejected     dead letter with the platform's reason; an urgent event is held and retried
               instead, loudly (hub/uplink/held.py)
  busy         pause all sending for Retry-After (header or body, the longer)
  retry, no answer at all   this item waits a full-jitter exponential backoff, persisted
                            with its attempt count
Urgent first after any outage: an item of a source with an urgent event waiting retries on a
backoff capped at URGENT_BACKOFF_MAX_S (it is also what notices that the platform is back),
and the first delivery after trouble makes every waiting item due at once (`reset_waits`):
the outbox's order then sends the sources holding urgent events first, each source's events
in the order they happened.
A 401 for the signature's time while the platform's Date says the hub clock is off is not
final: the client signs with the platform's time from then on and the relay tries again.

Bounds (SPEC 3.8): at most `max_backlog` events wait; beyond it the oldest routine events are
dropped to the dead letters with a note (urgent events never are). Heartbeats
(hub/uplink/heartbeats.py) and the operator-ack poll (hub/uplink/operator.py) are given from
outside and run in this loop, between sends.
"""

from __future__ import annotations

import asyncio
import logging
import math
import random
import time
from collections.abc import Awaitable, Callable
from typing import Any

from safebox.hub.store import HubStore, OutboxItem
from safebox.hub.uplink.client import REASON_MAX, RETRY_AFTER_MAX_S, PlatformClient, Reply, Unreachable
from safebox.hub.uplink.heartbeats import Heartbeats
from safebox.hub.uplink.held import HeldUrgent
from safebox.hub.uplink.operator import OperatorAcks
from safebox.protocol import events

log = logging.getLogger("safebox.hub.uplink")

BATCH_OFF_S = 3600.0  # a platform without the batch endpoint is asked again after this long
BATCH_REFUSED_OFF_S = 300.0  # a batch refused as a whole: its events go one by one meanwhile
URGENT_BACKOFF_MAX_S = 2.0  # an emergency waits at most this long after the platform is back
HELD_RETRY_MAX_S = 30.0  # an urgent event the platform refuses is tried again at least this often
PURGE_EVERY_S = 600.0  # forget owed acks and operator waits past their time
# Dropped first when the outbox is over its bound: state changes a later one supersedes.
ROUTINE = frozenset({events.DOOR_OPENED, events.DOOR_CLOSED, events.TOILET_OCCUPIED, events.TOILET_VACATED,
                     events.DEVICE_ONLINE})
_NO_BATCHES = frozenset({404, 405, 501})
_MIN_WAIT_S = 0.01

Settle = Callable[[list[OutboxItem]], object]


class Relay:
    """Run `run()` as a task; call `notify()` after storing an event; `close()` ends it.

    `settle(items)` takes delivered items out of the outbox (the ack policy's `settle`; by
    default only that). `idle_look_s` looks at the outbox at least that often (events stored
    by another process). `clock_problem()` says whether the hub clock is trusted (said with
    each delivery when not).
    """

    def __init__(self, store: HubStore, client: PlatformClient, *, settle: Settle | None = None,
                 heartbeats: Heartbeats | None = None, operator: OperatorAcks | None = None,
                 held: HeldUrgent | None = None,
                 clock: Callable[[], float] = time.time, sleep: Callable[[float], Awaitable[Any]] = asyncio.sleep,
                 rng: random.Random | None = None, backoff_initial_s: float = 1.0, backoff_max_s: float = 300.0,
                 batch_max: int = 1, max_backlog: int = 10_000, idle_look_s: float | None = None,
                 clock_problem: Callable[[], str | None] | None = None) -> None:
        self._store = store
        self._client = client
        self._settle_items = settle or (lambda items: store.settle_delivered([i.event_id for i in items], []))
        self._heartbeats = heartbeats
        self._operator = operator
        self._held = held
        self._clock = clock
        self._sleep = sleep
        self._rng = rng or random.Random()
        self._backoff_initial_s = backoff_initial_s
        self._backoff_max_s = backoff_max_s
        self._batch_max = max(1, min(int(batch_max), 100))
        self._max_backlog = max_backlog
        self._idle_look_s = idle_look_s
        self._clock_problem = clock_problem
        self.health = client.health
        self.health.batching = self._batch_max > 1
        self._wake = asyncio.Event()
        self._closing = False
        self._running = False
        self._paused_until = 0.0
        self._batch_off_until = 0.0
        self._purge_next = 0.0
        self._trouble = False  # an attempt failed since the last delivery: the next one resets all waits

    def notify(self) -> None:
        """Something new is in the outbox: look now instead of at the next retry time. Call from the loop."""
        self._wake.set()

    def close(self) -> None:
        """Stop `run()` (an attempt in flight is abandoned: the event stays in the outbox). Safe to call twice."""
        self._closing = True
        self._wake.set()
        self._client.abandon()

    # -- the loop ---------------------------------------------------------------------

    async def run(self) -> None:
        """Send until `close()`; returns then. Store failures (StoreError) propagate: the hub is unwell."""
        if self._running:
            raise RuntimeError("Relay.run() is already running")
        self._running = True
        if self._heartbeats is not None:
            self._heartbeats.start()
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
                        await self._abandonable(self._attempt(items[0]))
                    else:
                        await self._abandonable(self._attempt_batch(backlog))
                    continue
                if self._operator is not None and self._operator.poll_due(now):
                    doc = await self._abandonable(self._operator.poll(self._client))
                    if doc:
                        self._directives(doc)
                    continue
                await self._wait(self._next_wake(now))
        finally:
            self._running = False

    async def _abandonable(self, work: Awaitable[Any]) -> Any:
        """`work`, unless close() abandons it (then None; the outbox still holds everything)."""
        try:
            return await work
        except asyncio.CancelledError:
            if self._closing and not asyncio.current_task().cancelling():  # type: ignore[union-attr]
                return None
            raise

    def _next_wake(self, now: float) -> float | None:
        """Seconds until something is due: a retry, a heartbeat, a poll, the idle look."""
        polling = self._operator is not None and self._operator.polling(now)
        times = [t for t in (self._store.next_due_at(),
                             self._heartbeats.next_at if self._heartbeats is not None else None,
                             self._operator.next_poll_at if polling else None) if t is not None]  # type: ignore[union-attr]
        wait = max(min(times) - now, _MIN_WAIT_S) if times else None
        if self._idle_look_s is not None:
            wait = self._idle_look_s if wait is None else min(wait, self._idle_look_s)
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
        if self._heartbeats is not None:
            self._heartbeats.make_if_due(now)
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

    # -- one event, or a batch -------------------------------------------------------------

    async def _attempt(self, item: OutboxItem) -> None:
        try:
            reply = await self._client.send_event(item)
        except Unreachable as exc:
            self._retry([item], exc.what, exc.ms)
            return
        if reply.answer == "delivered":
            self._settle([item])
            log.info("event %s: delivered, %d in %d ms%s", item.event_id, reply.status, reply.ms, self._clock_note())
            self._directives(reply.doc)
        elif reply.answer == "rejected":
            why = f"{reply.status} rejected: {reply.reason}"[:REASON_MAX]
            if self._client.clock_refusal(reply):
                self._retry([item], why + " (hub clock off: signing with the platform's time)", reply.ms)
                return
            if item.urgent:
                if self._held is not None:
                    self._held.refused(item, why)
                self._retry([item], why, reply.ms, ceiling=HELD_RETRY_MAX_S)
                return
            self._store.mark_dead(item.event_id, why)
            log.error("event %s: %s, in %d ms; moved to dead letters", item.event_id, why, reply.ms)
        elif reply.answer == "busy":
            wait = self._busy([item], reply)
            if wait is not None:
                self._store.mark_retry(item.event_id, self._paused_until, f"{reply.status} busy: retry after {wait:g} s")
        else:
            self._retry([item], _http_error(reply), reply.ms)

    async def _attempt_batch(self, items: list[OutboxItem]) -> None:
        try:
            reply = await self._client.send_batch(items)
        except Unreachable as exc:
            self._retry(items, exc.what, exc.ms)
            return
        results = reply.doc.get("results")
        if reply.status == 200 and isinstance(results, list):
            self._directives(reply.doc)
            self._settle_batch(items, results, reply.ms)
        elif reply.status in _NO_BATCHES:
            self._batch_off_until = self._clock() + BATCH_OFF_S
            self.health.batching = False
            log.warning("platform has no batch endpoint (%d): sending one event per request for %d s",
                        reply.status, BATCH_OFF_S)
        elif reply.answer == "rejected":
            # The request as a whole: each event gets its own verdict when sent alone.
            self._batch_off_until = self._clock() + BATCH_REFUSED_OFF_S
            self.health.batching = False
            log.warning("batch of %d (%s .. %s) refused as a whole, %d: %s; sending them one by one for %d s",
                        len(items), items[0].event_id, items[-1].event_id, reply.status, reply.reason,
                        BATCH_REFUSED_OFF_S)
        elif reply.answer == "busy":
            self._busy(items, reply)
        else:
            self._retry(items, _http_error(reply), reply.ms)

    def _busy(self, items: list[OutboxItem], reply: Reply) -> float | None:
        """429/503: pause all sending for its Retry-After (returned), or back off when it gives none."""
        wait = self._client.retry_after(reply)
        if wait is None:
            self._retry(items, f"{reply.status} busy, no Retry-After", reply.ms)
            return None
        self._paused_until = self._clock() + wait
        self.health.paused_until = self._paused_until
        what = f"event {items[0].event_id}" if len(items) == 1 else f"batch of {len(items)}"
        log.warning("%s: %d busy in %d ms; pausing all sending for %g s", what, reply.status, reply.ms, wait)
        return wait

    def _settle_batch(self, items: list[OutboxItem], results: list[Any], ms: int) -> None:
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
                self._store.mark_dead(item.event_id, why[:REASON_MAX])
                log.error("event %s: %s (in a batch); moved to dead letters", item.event_id, why[:REASON_MAX])
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

    # -- what follows an answer ------------------------------------------------------------

    def _settle(self, items: list[OutboxItem]) -> None:
        if not items:
            return
        self._settle_items(items)
        if self._held is not None:
            self._held.delivered(items)
        now = self._clock()
        self.health.last_delivered_at = now
        if self._trouble:
            self._trouble = False
            waiting = self._store.reset_waits(now)
            if waiting:
                log.info("platform answers again: %d waiting events are due now, urgent first", waiting)

    def _directives(self, doc: dict[str, Any]) -> None:
        """What the platform tells the hub in an answer (SPEC 3.7)."""
        interval = doc.get("heartbeat_interval_s")
        if isinstance(interval, int) and not isinstance(interval, bool) and self._heartbeats is not None:
            if self._heartbeats.platform_asks(interval):
                self._wake.set()
        acks = doc.get("operator_acks")
        if isinstance(acks, list) and self._operator is not None:
            self._operator.apply(acks)

    def _clock_note(self) -> str:
        """Said with every delivery while the hub clock cannot be trusted (its times are in the events)."""
        problem = self._clock_problem() if self._clock_problem is not None else None
        return "; sent with a hub clock that is NOT trusted" if problem else ""

    def _retry(self, items: list[OutboxItem], error: str, ms: int, *, at_least: float = 0.0,
               ceiling: float | None = None) -> None:
        """Full-jitter exponential backoff: uniform(0, min(max, initial * 2^attempts)), shared by a batch."""
        attempts = max(item.attempts for item in items)
        urgent = any(i.urgent for i in items) or bool(self._store.urgent_sources() & {i.source for i in items})
        if ceiling is None:
            ceiling = URGENT_BACKOFF_MAX_S if urgent else self._backoff_max_s
        ceiling = min(ceiling, self._backoff_max_s)
        cap = min(ceiling, self._backoff_initial_s * 2 ** min(attempts, 40))
        self._trouble = True
        delay = max(self._rng.uniform(0, cap), at_least)
        now = self._clock()
        # An urgent event retries every ~2 s through an outage: said on its first attempts and
        # then on the 4th, 8th, 16th, ... (a day's outage is a couple of dozen lines, not 40,000).
        level = logging.WARNING if attempts < 3 or (attempts + 1) & attempts == 0 else logging.DEBUG
        if len(items) == 1:
            self._store.mark_retry(items[0].event_id, now + delay, error)
            log.log(level, "event %s: %s, after %d ms; retry in %.1f s (attempt %d)",
                    items[0].event_id, error, ms, delay, attempts + 1)
        else:
            self._store.mark_retry_many([i.event_id for i in items], now + delay, error)
            log.log(level, "batch of %d (%s .. %s): %s, after %d ms; retry in %.1f s (attempt %d)",
                    len(items), items[0].event_id, items[-1].event_id, error, ms, delay, attempts + 1)
        self.health.last_error = error
        self.health.last_error_at = now


def _http_error(reply: Reply) -> str:
    reason = reply.doc.get("reason")
    return (f"HTTP {reply.status}: {reason}" if isinstance(reason, str) else f"HTTP {reply.status}")[:REASON_MAX]

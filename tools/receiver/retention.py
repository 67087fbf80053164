"""How long the platform keeps what: routine events are deleted after N days; alarms are kept.

Routine events are the home's ordinary life and the machines' health: door moves (when a hub
sends them at all, docs/PRIVACY.md), toilet occupancy, a device back online, hub heartbeats.
They serve the screen now and a look back over recent weeks; kept for ever they become a
record of a person's every day. Everything else (the buttons, the hub's alarms, supervision
alarms, key and refusal warnings, test alarms) is kept: it is the record of what happened
when help was needed, and of how the service answered.

`safebox-receiver serve --keep-routine-days N` deletes once an hour (0 keeps everything);
`safebox-receiver purge --db FILE --keep-routine-days N` does it once (for cron).
Timelines and notes (the console's alarms tables) are not touched: they belong to alarms.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Callable

from aiohttp import web

from safebox.protocol import events

from .store import Store

log = logging.getLogger("safebox.receiver.retention")

ROUTINE = frozenset({events.DOOR_OPENED, events.DOOR_CLOSED, events.TOILET_OCCUPIED, events.TOILET_VACATED,
                     events.DEVICE_ONLINE, events.HUB_HEARTBEAT})
KEEP_ROUTINE_DAYS = 30  # the default: a month to look back on; docs/PRIVACY.md says why
EVERY_S = 3600.0
CHUNK = 5000  # rows per transaction: the hubs' requests wait for no more than one
DAY_S = 86400.0


def purge(store: Store, keep_days: float, *, now: float | None = None) -> int:
    """Delete routine events received more than `keep_days` ago; returns how many."""
    if keep_days <= 0:
        return 0
    cutoff = (time.time() if now is None else now) - keep_days * DAY_S
    deleted = 0
    while (n := store.delete_events(ROUTINE, received_before=cutoff, limit=CHUNK)) > 0:
        deleted += n
        if n < CHUNK:
            break
    if deleted:
        log.info("retention: deleted %d routine events received more than %g days ago", deleted, keep_days)
    return deleted


async def keep(store: Store, keep_days: float, *, every_s: float = EVERY_S,
               clock: Callable[[], float] = time.time) -> None:
    """Run `purge` now and then every `every_s` until cancelled."""
    while True:
        purge(store, keep_days, now=clock())
        await asyncio.sleep(every_s)


def running(store: Store, keep_days: float) -> Callable[[web.Application], AsyncIterator[None]]:
    """For `app.cleanup_ctx`: `keep` runs while the application serves (nothing when 0 days)."""
    async def ctx(app: web.Application) -> AsyncIterator[None]:
        task = asyncio.create_task(keep(store, keep_days), name="retention") if keep_days > 0 else None
        yield
        if task is not None:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
    return ctx

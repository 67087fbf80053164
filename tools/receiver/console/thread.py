"""The operators' listener in its own thread: its own event loop and its own SQLite connection.

On one event loop the hubs and the screens wait behind each other. Measured with 10,000 homes
(`python -m safebox.tools.bench.console`): while every hub's batch arrives after an outage the
loop's ready queue holds a hundred requests' work, and an alarm's way to the screen takes four
turns of that loop (the store wakes the feed, the feed tells the screens, a screen renders,
writes), so stored -> shown reached 1-2 s at p99; and the feed's projection of the burst's
70,000 events ran on the loop that answers the hubs. Apart, the hubs' thread only wakes the
feed (`Feed.wake` is thread-safe); SQLite's WAL lets the feed read what the hubs' thread has
committed without waiting for it, and the feed writes in short transactions.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import ssl
import threading
from pathlib import Path
from typing import Any

from aiohttp import web

from .. import guard
from ..store import Store
from . import FEED_KEY, make_console_app

START_TIMEOUT_S = 30.0


class ConsoleThread:
    """`start()` serves the console on (host, port) and returns the port; `stop()` ends it.
    `events_from` is the hubs' listener's store: storing an event there wakes the feed."""

    def __init__(self, db: Path, tls: ssl.SSLContext, host: str, port: int, *, events_from: Store,
                 per_peer: int = guard.PER_PEER_MAX, **options: Any) -> None:
        self._db, self._tls, self._host, self._port = db, tls, host, port
        self._per_peer = per_peer
        self._events_from = events_from
        self._options = options
        self._started: concurrent.futures.Future[int] = concurrent.futures.Future()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._thread = threading.Thread(target=self._main, name="console", daemon=True)

    def start(self) -> int:
        self._thread.start()
        return self._started.result(timeout=START_TIMEOUT_S)  # re-raises what the thread met (a taken port)

    def stop(self) -> None:
        if self._loop is not None and self._stop is not None:
            with contextlib.suppress(RuntimeError):  # its loop already ended
                self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(timeout=START_TIMEOUT_S)

    def _main(self) -> None:
        try:
            asyncio.run(self._serve())
        except BaseException as exc:  # noqa: BLE001 - handed to start(), which raises it
            if not self._started.done():
                self._started.set_exception(exc)

    async def _serve(self) -> None:
        self._loop, self._stop = asyncio.get_running_loop(), asyncio.Event()
        store = Store(self._db)
        try:
            app = make_console_app(store, events_from=self._events_from, **self._options)
            app.middlewares.insert(0, guard.deadlines)  # tells the guard when a request head is in
            runner = web.AppRunner(app, handle_signals=False)
            await runner.setup()
            try:
                await guard.GuardedSite(runner, self._host, self._port, self._tls,
                                        guard.Guard(per_peer=self._per_peer)).start()
                self._started.set_result(runner.addresses[0][1])
                await self._stop.wait()
            finally:
                with contextlib.suppress(ValueError):
                    self._events_from.watchers.remove(app[FEED_KEY].wake)
                await runner.cleanup()
        finally:
            store.close()

"""The call centre's screen: the operators' own listener on the reference platform.

`make_console_app(store)` is an aiohttp application served apart from the hubs' listener
(`safebox-receiver serve --operator-port`): operator accounts and sessions (accounts.py,
auth.py), the live screen (screen.py: alarm queue, toilet board, homes, over SSE), acting
on alarms (alarms.py) and what the screen is made of (board.py). Nothing here answers
without a session except the login form. `safebox-receiver serve` runs it in its own thread
(thread.py), so the screens and the hubs never wait on each other's event loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Callable

from aiohttp import web

from ..store import Store
from . import i18n, views
from .accounts import Accounts
from .alarms import Alarms
from .auth import Login, guard
from .board import Board
from .screen import Feed, Screen

FEED_KEY = web.AppKey("feed", Feed)


def make_console_app(store: Store, *, clock: Callable[[], float] = time.time, zone: str = i18n.DEFAULT_ZONE,
                     deadlines: dict[str, tuple[int, int]] | None = None,
                     events_from: Store | None = None) -> web.Application:
    """`deadlines`: per alarm type, (seconds to be taken up, to be resolved), over alarms.DEADLINES.
    `events_from`: the store the hubs' listener writes, when it is not `store` (its own thread's
    connection, thread.py); storing there wakes the feed."""
    views.ZONE[0] = i18n.zone(zone)
    accounts = Accounts(store)
    feed = Feed(Board(store), Alarms(store, deadlines), clock)
    (events_from or store).watchers.append(feed.wake)
    app = web.Application(middlewares=[guard(accounts, clock)], client_max_size=64 * 1024)
    app[FEED_KEY] = feed
    Login(accounts, clock).add_routes(app)
    Screen(feed, accounts, clock).add_routes(app)

    async def run_feed(app: web.Application) -> AsyncIterator[None]:
        task = asyncio.create_task(feed.run(), name="console-feed")
        yield
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task

    async def end_streams(app: web.Application) -> None:  # open screens would hold the shutdown up
        await feed.close()

    app.on_shutdown.append(end_streams)
    app.cleanup_ctx.append(run_feed)
    return app

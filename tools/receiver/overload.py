"""The hubs' listener under overload: backlogs are told to come back later, urgent events never.

When every hub of a district returns at once after an outage, each answer waits for all the
work queued before it; past the hubs' timeout (5 s) they give up, resend, and the platform
stores and answers the same events again. So while the event loop runs late (a tick that
should take `TICK_S` came back more than `LAG_LIMIT_S` late, in the last `HOLD_S`), a batch (`POST
/v1/events:batch`, only ever non-urgent events, SPEC 3.4) is answered 503 `retry_later` with
a jittered Retry-After before anything is verified or stored, and the hub keeps it in its
outbox (SPEC 3.2). A single POST is always served: urgent events travel alone (SPEC 3.3).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from collections.abc import AsyncIterator, Awaitable, Callable

from aiohttp import web

from .relay import BATCH_PATH

log = logging.getLogger("safebox.receiver")

TICK_S = 0.05
LAG_LIMIT_S = 2.0  # answers then wait several seconds: near the hubs' 5 s timeout
HOLD_S = 1.0  # busy for at least this long once late: not flapping from one tick to the next
RETRY_AFTER_S = (5, 20)  # spread: the hubs told to wait do not all come back in the same second


class Overload:
    def __init__(self, lag_limit_s: float = LAG_LIMIT_S, rng: random.Random | None = None) -> None:
        self.lag_limit_s = lag_limit_s
        self.lag_s = 0.0
        self.late_until = 0.0  # the loop's time until which batches are sent back
        self.shed = 0
        self._rng = rng or random.Random()

    async def _watch(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            started = loop.time()
            await asyncio.sleep(TICK_S)
            self.lag_s = loop.time() - started - TICK_S
            if self.lag_s > self.lag_limit_s:
                self.late_until = loop.time() + HOLD_S

    @web.middleware
    async def middleware(self, request: web.Request,
                         handler: Callable[[web.Request], Awaitable[web.StreamResponse]]) -> web.StreamResponse:
        busy = asyncio.get_running_loop().time() < self.late_until
        if busy and request.method == "POST" and request.path == BATCH_PATH:
            self.shed += 1
            if self.shed == 1 or self.shed % 100 == 0:
                log.warning("busy (the loop is %.1f s late): %d batches told to come back later", self.lag_s, self.shed)
            wait = self._rng.randint(*RETRY_AFTER_S)
            return web.json_response({"status": "retry_later", "event_id": request.headers.get("Idempotency-Key"),
                                      "reason": "platform busy", "retry_after": wait},
                                     status=503, headers={"Retry-After": str(wait)})
        return await handler(request)

    def install(self, app: web.Application) -> None:
        """Before the app is started (its middlewares are frozen then)."""
        app.middlewares.append(self.middleware)

        async def watching(app: web.Application) -> AsyncIterator[None]:
            task = asyncio.create_task(self._watch(), name="overload-watch")
            yield
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

        app.cleanup_ctx.append(watching)

"""An SMS gateway: what reaches a number is posted to a platform's HTTP callback (SPEC 5.2).

Real gateways do the same (an operator's SMSC hands SMS to an account's URL); this one posts
`{"from", "text"}` with a bearer token over the receiver's TLS, and retries while it gets
no 2xx, as they do.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
from collections.abc import Callable

import aiohttp

log = logging.getLogger("safebox.sim.gateway")


class HttpGateway:
    def __init__(self, url: str | Callable[[], str], token: str, *, ssl_context: ssl.SSLContext | None = None,
                 retry_s: float = 1.0, attempts: int = 5) -> None:
        """`url` may be a function: asked at each post (a platform restarted on a new port)."""
        self._url = url
        self._token = token
        self._ssl = ssl_context
        self._retry_s, self._attempts = retry_s, attempts
        self.answers: list[dict] = []
        self._tasks: set[asyncio.Task[None]] = set()

    @property
    def url(self) -> str:
        return self._url() if callable(self._url) else self._url

    def deliver(self, sender: str, text: str | bytes, sent_at: float) -> None:
        if isinstance(text, bytes):
            log.info("8-bit SMS from %s dropped: the callback carries text", sender)
            return
        task = asyncio.get_running_loop().create_task(self._post(sender, text))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _post(self, sender: str, text: str) -> None:
        headers = {"Authorization": f"Bearer {self._token}"}
        for _ in range(self._attempts):
            try:
                async with aiohttp.ClientSession() as session:
                    async with session.post(self.url, json={"from": sender, "text": text}, headers=headers,
                                            ssl=self._ssl if self._ssl is not None else True) as resp:
                        doc = await resp.json()
                        if 200 <= resp.status < 300:
                            self.answers.append(doc)
                            return
                        log.warning("gateway callback answered %d: %s", resp.status, doc)
            except (aiohttp.ClientError, OSError) as exc:
                log.warning("gateway callback failed: %s", exc)
            await asyncio.sleep(self._retry_s)

    async def close(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

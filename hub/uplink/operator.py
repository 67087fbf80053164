"""Operator acks (SPEC 3.6): an operator took an urgent press up, so its pendant is owed kind 3.

They come piggybacked on the platform's answers, and from a signed poll every `poll_s` while
an urgent press delivered in the last ack TTL has not been taken up. A cursor (the highest
`seq` seen, kept across restarts) makes each ack count once. What an ack earns is the ack
policy's (`took_up`).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

from safebox.hub.store import HubStore
from safebox.hub.uplink.client import PlatformClient, Unreachable

log = logging.getLogger("safebox.hub.uplink")

_CURSOR = "operator_ack_cursor"


class OperatorAcks:
    def __init__(self, store: HubStore, *, took_up: Callable[[str], object], poll_s: float | None,
                 clock: Callable[[], float] = time.time) -> None:
        self._store = store
        self._took_up = took_up
        self._poll_s = poll_s
        self._clock = clock
        self.next_poll_at = 0.0

    def polling(self, now: float) -> bool:
        """Someone waits for an operator, and polling is on."""
        return self._poll_s is not None and bool(self._store.awaiting_operator(now))

    def poll_due(self, now: float) -> bool:
        return now >= self.next_poll_at and self.polling(now)

    async def poll(self, client: PlatformClient) -> dict[str, Any] | None:
        """Ask the platform; returns its answer's document for the caller's directives (None on trouble)."""
        self.next_poll_at = self._clock() + (self._poll_s or 0)
        try:
            reply = await client.operator_acks(self.cursor())
        except Unreachable as exc:
            log.warning("operator-ack poll: %s", exc.what)
            return None
        if reply.status != 200:
            log.warning("operator-ack poll: HTTP %d: %s", reply.status, reply.reason)
            return None
        return reply.doc

    def cursor(self) -> int:
        return int(self._store.setting(_CURSOR) or 0)

    def apply(self, acks: list[Any]) -> None:
        """The acks in an answer: each new one is taken up once."""
        cursor = self.cursor()
        newest = cursor
        for ack in acks:
            if not isinstance(ack, dict) or not isinstance(ack.get("event_id"), str):
                continue
            seq = ack.get("seq")
            if isinstance(seq, int) and seq <= cursor:
                continue
            self._took_up(ack["event_id"])
            if isinstance(seq, int):
                newest = max(newest, seq)
        if newest > cursor:
            self._store.set_setting(_CURSOR, str(newest))

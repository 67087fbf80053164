"""Urgent events the platform refuses are held, never dead-lettered (SPEC 3.2).

A routine event the platform rejects for good goes to the dead letters with its reason. An
urgent one (an emergency, a service call, a toilet overdue) is never given up: the platform may
have lost the hub's key, or refuse for a reason an operator can fix, and a resident's press
must not vanish silently. So it is retried on the normal backoff, and while any is refused the
hub says so loudly: a CRITICAL log line per refusal, `safebox-hub status` and the systemd
status line show it (kept in the database, so also across restarts). When the platform takes
them again, an `urgent_refused` hub event tells the call centre which events were held, since
when, and why: their times are old, and somebody should know why.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from typing import Any

from safebox.hub.store import HubStore, OutboxItem
from safebox.protocol import events

log = logging.getLogger("safebox.hub.uplink")

SAY_AGAIN_S = 600.0  # the CRITICAL line again this often while the same events stay refused
SETTING = "urgent_refused"  # JSON {"event_ids": [...], "reason": str, "since": unix s}, while any is held


def held(store: HubStore) -> dict[str, Any] | None:
    """What is held now (from the database), or None."""
    text = store.setting(SETTING)
    return None if not text else json.loads(text)


class HeldUrgent:
    def __init__(self, store: HubStore, *, hub_id: str, home_id: str | None,
                 clock: Callable[[], float] = time.time, on_change: Callable[[], None] | None = None) -> None:
        self._store = store
        self._hub_id = hub_id
        self._home_id = home_id
        self._clock = clock
        self._on_change = on_change
        self._said: dict[str, float] = {}

    def refused(self, item: OutboxItem, why: str) -> None:
        """The platform rejected an urgent event for good: hold it (the caller retries it)."""
        now = self._clock()
        state = held(self._store) or {"event_ids": [], "since": now}
        if item.event_id not in state["event_ids"]:
            state["event_ids"].append(item.event_id)
        state["reason"] = why
        self._store.set_setting(SETTING, json.dumps(state))
        if now - self._said.get(item.event_id, -SAY_AGAIN_S) < SAY_AGAIN_S:
            log.warning("urgent event %s still refused: %s", item.event_id, why)
            return
        self._said[item.event_id] = now
        log.critical("URGENT event %s (%s) REFUSED by the platform: %s; held and retried, never dropped. "
                     "The platform must be told (safebox-hub status shows it)", item.event_id, item.type, why)
        if self._on_change is not None:
            self._on_change()

    def delivered(self, items: list[OutboxItem]) -> None:
        """Some events reached the platform: when held ones did, tell the call centre, and clear."""
        state = held(self._store)
        if state is None or not {i.event_id for i in items} & set(state["event_ids"]):
            return
        now = self._clock()
        data = {"event_ids": state["event_ids"][:50], "reason": state["reason"],
                "refused_since": events.timestamp(state["since"]), "held_s": round(now - state["since"])}
        if self._home_id is not None:
            body = events.encode(events.make(
                event_id=events.hub_event_id(self._hub_id, self._store.next_hub_seq()), type=events.URGENT_REFUSED,
                hub_id=self._hub_id, home_id=self._home_id, occurred_at=now, data=data))
            self._store.enqueue(body)
        self._store.set_setting(SETTING, "")
        self._said.clear()
        log.warning("held urgent events delivered after %d s (%d of them); the platform was refusing: %s",
                    data["held_s"], len(state["event_ids"]), state["reason"])
        if self._on_change is not None:
            self._on_change()

"""Hub heartbeats (SPEC 3.7): made every interval, one waiting at most.

The interval is the configured one until the platform asks for another in an answer (kept
within HEARTBEAT_MIN_S..HEARTBEAT_MAX_S and across restarts). A heartbeat replaces any still
waiting in the outbox, so a long outage leaves one heartbeat waiting, not hundreds. What it
carries comes from `data()` (the hub's health, nothing about the residents).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

from safebox.hub.health import PlatformHealth
from safebox.hub.store import HubStore
from safebox.protocol import events

log = logging.getLogger("safebox.hub.uplink")

HEARTBEAT_MIN_S, HEARTBEAT_MAX_S = 60, 86400  # what a platform may ask for
_LAST = "heartbeat_last_at"
_ASKED = "heartbeat_interval_s"


class Heartbeats:
    def __init__(self, store: HubStore, *, hub_id: str, home_id: str, every_s: float,
                 data: Callable[[], dict[str, Any]] | None = None, clock: Callable[[], float] = time.time,
                 health: PlatformHealth | None = None) -> None:
        self._store = store
        self._hub_id = hub_id
        self._home_id = home_id
        self._every_s = every_s
        self._data = data
        self._clock = clock
        self._health = health if health is not None else PlatformHealth()
        self.next_at: float | None = None

    def interval(self) -> float:
        asked = self._store.setting(_ASKED)
        return float(asked) if asked else self._every_s

    def start(self) -> None:
        """Schedule the next from the last one made (kept across restarts)."""
        interval = self.interval()
        self._health.heartbeat_interval_s = interval
        last = self._store.setting(_LAST)
        if last is None:
            last = repr(self._clock())
            self._store.set_setting(_LAST, last)
        self.next_at = float(last) + interval

    def make_if_due(self, now: float) -> None:
        if self.next_at is None or now < self.next_at:
            return
        interval = self.interval()
        data: dict[str, Any] = {"interval_s": interval}
        if self._data is not None:
            try:
                data.update(self._data())
            except Exception:
                log.exception("heartbeat data failed; sending a bare heartbeat")
        body = events.encode(events.make(
            event_id=events.hub_event_id(self._hub_id, self._store.next_hub_seq()), type=events.HUB_HEARTBEAT,
            hub_id=self._hub_id, home_id=self._home_id, occurred_at=now, data=data))
        replaced = self._store.replace_hub_heartbeat(body)
        self._store.set_setting(_LAST, repr(now))
        self.next_at = now + interval
        if replaced:
            log.info("hub heartbeat made; it replaces %d still waiting", replaced)
        else:
            log.debug("hub heartbeat made")

    def platform_asks(self, asked: int) -> bool:
        """The platform asks for a heartbeat every `asked` s; True when that changes the schedule."""
        interval = min(max(asked, HEARTBEAT_MIN_S), HEARTBEAT_MAX_S)
        if self._store.setting(_ASKED) == str(interval):
            return False
        self._store.set_setting(_ASKED, str(interval))
        log.info("platform asks for a hub heartbeat every %d s%s", interval,
                 "" if interval == asked else f" (asked {asked}, kept within {HEARTBEAT_MIN_S}..{HEARTBEAT_MAX_S})")
        self._health.heartbeat_interval_s = interval
        last = float(self._store.setting(_LAST) or self._clock())
        self.next_at = last + interval
        return True

"""Counters that cannot be stolen forward, and a loud sign when a device's key is in other hands.

Anyone holding a device's key (read from a board's flash, say) can seal frames the hub accepts.
Two limits keep that from silencing the real device (SPEC 1.4):
* a counter may jump at most `max_jump(elapsed_s)` above the last accepted: JUMP_SLACK (a
  device skips at most 63 per boot; this allows for many reboots) plus JUMP_PER_S a second
  since (far above what a device makes: a frame per press or heartbeat). One frame at
  2^32-1 can no longer lock the real device out forever.
* replays and jumps refused from one device, of THRESHOLD different counters within WINDOW_S,
  raise a `key_compromised` hub event (once a day per device at most): either someone replays
  its captured frames, or the real device is behind a counter someone else advanced with its
  key. Either way a person must look at it (re-key the device, SECURITY in HARDWARE.md).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from safebox.hub.devices import Device
from safebox.hub.store import HubStore
from safebox.protocol import events

log = logging.getLogger("safebox.hub.ingest")

JUMP_SLACK = 4096
JUMP_PER_S = 128
THRESHOLD = 3
WINDOW_S = 3600.0
RAISE_EVERY_S = 86400.0


def max_jump(elapsed_s: float) -> int:
    return JUMP_SLACK + int(JUMP_PER_S * elapsed_s)


class KeyWatch:
    def __init__(self, store: HubStore, *, hub_id: str, home_id: str, clock: Callable[[], float] = time.time) -> None:
        self._store = store
        self._hub_id = hub_id
        self._home_id = home_id
        self._clock = clock
        self._refused: dict[str, dict[int, float]] = {}  # device id -> counter -> when (paired devices only)
        self._raised: dict[str, float] = {}

    def refused(self, device: Device, counter: int, last_accepted: int | None, why: str) -> str | None:
        """A frame of `device` was refused as a replay or a jump; returns the id of a
        key_compromised event when this one raised it."""
        now = self._clock()
        seen = {c: t for c, t in self._refused.get(device.id, {}).items() if now - t < WINDOW_S}
        seen[counter] = now
        self._refused[device.id] = seen
        if len(seen) < THRESHOLD or now - self._raised.get(device.id, -RAISE_EVERY_S) < RAISE_EVERY_S:
            return None
        self._raised[device.id] = now
        body = events.encode(events.make(
            event_id=events.hub_event_id(self._hub_id, self._store.next_hub_seq()), type=events.KEY_COMPROMISED,
            hub_id=self._hub_id, home_id=self._home_id, occurred_at=now,
            data={"device": {"id": device.id, "role": device.role, "room": device.room},
                  "refused_counters": sorted(seen)[-10:], "last_accepted": last_accepted, "last_reason": why}))
        event_id = self._store.enqueue(body)
        log.critical("%s: %d frames refused as replays or jumps within %d s: its key may be in other hands; "
                     "%s raised (re-key the device)", device.address, len(seen), WINDOW_S, event_id)
        return event_id

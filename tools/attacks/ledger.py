"""What is stored, before and after an attempt: the platform's rows and the hub's replay state."""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

from safebox.tools.sim import snapshot
from safebox.tools.sim.snapshot import HubSnapshot


def platform_rows(db: Path) -> dict[tuple[str, str], str]:
    """(hub id, event id) -> sha256 of the stored body, for every event the platform holds."""
    return {(e.hub_id, e.event_id): hashlib.sha256(e.body).hexdigest() for e in snapshot.platform(db, timeout=5)}


class Ledger:
    """Before/after snapshots of the platform and the hub around one attempt."""

    def __init__(self, home: Any) -> None:
        self._platform_db = Path(home.receiver_db)
        self._hub_db = Path(home.hub_state) / "hub.db"

    def snapshot(self) -> tuple[dict[tuple[str, str], str], HubSnapshot]:
        return platform_rows(self._platform_db), snapshot.hub(self._hub_db, timeout=5)

    @staticmethod
    def judge(before: tuple[dict, HubSnapshot], after: tuple[dict, HubSnapshot], *,
              allowed_new: Callable[[tuple[str, str]], bool] = lambda key: False,
              check_hub: bool = True) -> tuple[bool, str]:
        """(intact, 'rows before -> after'): nothing changed or removed, nothing new but what is allowed.

        New rows the hub makes on its own (hub events: heartbeats, rules) are allowed; a new
        device event, or any change to a stored body, is not.
        """
        (p0, h0), (p1, h1) = before, after
        changed = [k for k, digest in p0.items() if p1.get(k) != digest]
        new = [k for k in p1.keys() - p0.keys() if not allowed_new(k) and not _hub_made(k)]
        intact = not changed and not new
        if check_hub:
            intact = intact and not h1.error and h0.counters == h1.counters \
                and h1.device_events_held <= h0.device_events_held
        return intact, f"{len(p0)} -> {len(p1)}"


def _hub_made(key: tuple[str, str]) -> bool:
    hub_id, event_id = key
    return event_id.startswith(hub_id + "-")

"""What the hub sends to the platform: the least that serves, by default (docs/PRIVACY.md).

    [privacy]
    send_door_moves = []        # roles whose every door_opened / door_closed goes up:
                                # "front_door", "toilet_door" (default: none)
    send_rssi = "walk_test"     # a device's signal strength in its events: "walk_test"
                                # (only while a walk test covers it), "always", "never"

Always sent, whatever the table says: the pendant's buttons, the hub's alarms (toilet_overdue,
door_inactive), supervision (device offline/online, battery low, hub heartbeats) and the toilet
occupancy the operators' screen shows (toilet_occupied with its time, toilet_vacated with its
time and duration), as the source documents describe the platform's side. A door's every
movement is read by the hub's rules (the toilet visit, the front door's inactivity) and then
forgotten: it is not stored in the outbox, so it never leaves the home, and a restart cannot
send it later.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from safebox.protocol import events

DOOR_ROLES = ("front_door", "toilet_door")
RSSI_CHOICES = ("walk_test", "always", "never")
_MOVES = frozenset({events.DOOR_OPENED, events.DOOR_CLOSED})
_KEYS = {"send_door_moves", "send_rssi"}


@dataclass(frozen=True)
class Privacy:
    send_door_moves: frozenset[str] = frozenset()
    send_rssi: str = "walk_test"

    def sends(self, role: str, type_: str) -> bool:
        """Does an event of this type from a device of this role go to the platform?"""
        return type_ not in _MOVES or role in self.send_door_moves

    def rssi(self, rssi: int | None, *, walk_test: bool) -> int | None:
        """The RSSI to put in an event's data, or None to leave it out."""
        if rssi is None or self.send_rssi == "never":
            return None
        return rssi if self.send_rssi == "always" or walk_test else None


EVERYTHING = Privacy(frozenset(DOOR_ROLES), "always")  # what the hub sent before [privacy] existed


def parse(table: Any) -> Privacy:
    """The `[privacy]` table (None: the defaults); ValueError names the field."""
    if table is None:
        return Privacy()
    if not isinstance(table, dict):
        raise ValueError("privacy: must be a table")
    for key in sorted(set(table) - _KEYS):
        raise ValueError(f"privacy.{key}: unknown key (known: {', '.join(sorted(_KEYS))})")
    moves = table.get("send_door_moves", [])
    if not isinstance(moves, list) or not all(m in DOOR_ROLES for m in moves):
        raise ValueError(f"privacy.send_door_moves: a list of roles from {list(DOOR_ROLES)}, not {moves!r}")
    rssi = table.get("send_rssi", "walk_test")
    if rssi not in RSSI_CHOICES:
        raise ValueError(f"privacy.send_rssi: one of {', '.join(RSSI_CHOICES)}, not {rssi!r}")
    return Privacy(frozenset(moves), rssi)

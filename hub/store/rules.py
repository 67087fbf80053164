"""What the rules keep (tables alarms, rule_state; hub/rules decides what they mean)."""

from __future__ import annotations

import json
from collections.abc import Sequence

from safebox.hub.store.outbox import OutboxTable, insert_event
from safebox.hub.store.records import Alarm
from safebox.protocol import events


class RulesTables(OutboxTable):
    def rule_states(self) -> dict[tuple[str, str], dict]:
        """Every saved rule machine state: (rule, device id) -> state."""
        rows = self._read("SELECT rule, subject, state FROM rule_state")
        return {(rule, subject): json.loads(state) for rule, subject, state in rows}

    def commit_rules(self, *, bodies: list[bytes], raised: list[tuple[str, str, float, str]],
                     cleared: list[tuple[str, str, float, str | None]],
                     states: dict[tuple[str, str], dict], news: Sequence[bytes] = ()) -> None:
        """One step of the rules in one transaction: hub events into the outbox, alarms raised
        (kind, device id, at, raising event id) and cleared (kind, device id, at, ending event id
        or None), machine states saved; `news`: device events the hub had kept from the platform
        (hub/privacy.py) that ended an alarm, into the outbox after all."""
        decoded = [events.decode(body) for body in bodies]
        for event in decoded:
            if event["device"] is not None:
                raise events.EventError("device: rules make hub events, not device events")
        with self._tx() as db:
            now = self._clock()
            for event, body in zip(decoded, bodies):
                insert_event(db, event, body, source=event["hub_id"], now=now)
            for body in news:
                event = events.decode(body)
                insert_event(db, event, body, source=event["device"]["id"], now=now)
            for kind, subject, at, by_event in cleared:
                db.execute("UPDATE alarms SET cleared_at = ?, cleared_event = ? "
                           "WHERE kind = ? AND subject = ? AND cleared_at IS NULL", (at, by_event, kind, subject))
            for kind, subject, at, event_id in raised:
                db.execute("INSERT INTO alarms (kind, subject, raised_at, raised_event) VALUES (?, ?, ?, ?) "
                           "ON CONFLICT DO NOTHING", (kind, subject, at, event_id))
            for (rule, subject), state in states.items():
                db.execute("INSERT INTO rule_state (rule, subject, state, updated_at) VALUES (?, ?, ?, ?) "
                           "ON CONFLICT (rule, subject) DO UPDATE SET state = excluded.state, "
                           "updated_at = excluded.updated_at", (rule, subject, json.dumps(state), now))

    def alarms(self, *, open_only: bool = False) -> list[Alarm]:
        """Alarms oldest first (only those not cleared with open_only)."""
        where = "WHERE cleared_at IS NULL" if open_only else ""
        rows = self._read(f"""SELECT kind, subject, raised_at, raised_event, acknowledged_at, cleared_at,
                              cleared_event FROM alarms {where} ORDER BY id""")
        return [Alarm(*row) for row in rows]

    # -- relay and acks (hub/uplink.py, hub/acks.py) ------------------------------------

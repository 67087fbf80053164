"""The counts at the end of a chaos run: created, stored, lost, twice, phantom, and the toilet alarms."""

from __future__ import annotations

import json
import time
from collections import Counter
from typing import Any

from safebox.tools.bench import percentile
from safebox.tools.chaos.records import PENDANT_TYPES, STARTUP_GRACE_S, TOILET_LIMIT_S, Result
from safebox.tools.sim import lines, snapshot


def count(run: Any, r: Result) -> None:
    """Fill `r` with the counts of `run` (a ChaosRun at its end)."""
    from safebox.tools.sim.home import parse_time
    run.ended_at = time.time()
    for d in run.devs:
        d.sync()
    created = {(d.sim.id, c): t for d in run.devs for c, t in d.created.items()}
    rows = run.platform()
    hub = run.hub()
    device_rows = [e for e in rows if e.device_id is not None]
    per_key = Counter((e.device_id, e.counter) for e in device_rows)
    stored = {(e.device_id, e.counter): e for e in device_rows}
    r.created = len(created)
    r.stored = len(stored)
    missing = created.keys() - stored.keys()
    on_devices = {(d.sim.id, c) for d in run.devs for c in d.held()}
    at_hub = {tuple(w.event_id.rsplit("-", 1)) for w in hub.outbox}
    at_hub = {(dev, int(c)) for dev, c in at_hub if c.isdigit()}
    r.undelivered_on_devices = len(missing & on_devices)
    r.undelivered_at_hub = len((missing - on_devices) & at_hub)
    r.lost_ids = sorted(f"{dev}-{c}" for dev, c in missing - on_devices - at_hub)
    r.lost = len(r.lost_ids)
    r.stored_twice = sum(n - 1 for n in per_key.values() if n > 1) + \
        sum(n - 1 for n in Counter(e.event_id for e in rows).values() if n > 1)
    r.phantom_ids = sorted(f"{dev}-{c}" for dev, c in stored.keys() - created.keys())
    r.phantom = len(r.phantom_ids)
    r.wrong_content = sum(1 for key, t in created.items() if key in stored and stored[key].type != t)
    r.hub_events_stored = len(rows) - len(device_rows)
    r.dead_letters = len(hub.dead_letters)
    r.left_in_outbox = -1 if hub.error else len(hub.outbox)
    r.dropped = sum(len(d.dropped) for d in run.devs)
    r.presses_not_registered = run.not_registered
    r.faults = dict(Counter(f.kind for f in run.faults))
    delays = {key: (parse_time(stored[key].received_at) - run.times[key]) * 1000
              for key in created.keys() & stored.keys() if key in run.times}
    r.delivery_ms = _stats(list(delays.values()))
    r.urgent_delivery_ms = _stats([v for k, v in delays.items() if created[k] in PENDANT_TYPES])
    acks = sum(1 for line in run.hub_lines + run.home.hub.lines if lines.AckWritten.read(line))
    r.acks_per_event = round(acks / max(1, r.created), 2)
    r.alarms = alarms(run, rows)
    r.alarms_missed, r.alarms_unexpected = r.alarms["missed"], r.alarms["unexpected"]
    if r.lost:
        r.notes.append(f"lost (first 20): {', '.join(r.lost_ids[:20])}")
    if r.phantom:
        r.notes.append(f"phantom (first 20): {', '.join(r.phantom_ids[:20])}")

def alarms(run: Any, rows: list[snapshot.PlatformEvent]) -> dict[str, Any]:
    """toilet_overdue at the platform, judged by what the hub heard: its door events, at the
    times it put on them (occurred_at: when it heard them), make its visits (closed -> in,
    opened -> out, the door-only rule). A visit it heard last `limit` or longer (or not end)
    must have its alarm; one it heard end sooner must not. Faults that delay door events
    change what the hub can know, so the residents' real visits are compared with what it
    heard and the differences counted apart, with their cause."""
    from safebox.tools.sim.home import parse_time
    toilets = {d.sim.id for d in run.devs if d.role == "toilet_door"} | {v.device for v in run.visits}
    heard: dict[tuple[str, int], float] = {}
    doors: dict[str, list[tuple[float, str]]] = {}
    raised = []
    for e in rows:
        doc = json.loads(e.body)
        if e.device_id is not None:
            heard[(e.device_id, e.counter)] = parse_time(doc["occurred_at"])
            if e.device_id in toilets and e.type in ("door_opened", "door_closed"):
                doors.setdefault(e.device_id, []).append((heard[(e.device_id, e.counter)], e.type))
        elif e.type == "toilet_overdue":
            data = doc.get("data", {})
            since = parse_time(data["since"])
            raised.append({"event_id": e.event_id, "device": (data.get("device") or {}).get("id"), "since": since,
                           "due": since + float(data.get("limit_s", TOILET_LIMIT_S)),
                           "received": parse_time(e.received_at)})
    # (device, start rounded to ms) of the hub's visits: alarm due, not due, either (within a
    # second of the limit: the tick and the frames race), excused (due while a restarted hub
    # waited its startup grace, and over before it ended: by design it waits for the frames
    # the devices kept, and here those said the person was out)
    due: set[tuple[str, float]] = set()
    not_due: set[tuple[str, float]] = set()
    either: set[tuple[str, float]] = set()
    excused: set[tuple[str, float]] = set()
    for device, moves in doors.items():
        start = None
        for at, type_ in sorted(moves) + [(run.ended_at, "door_opened")]:
            if type_ == "door_closed" and start is None:
                start = at
            elif type_ == "door_opened" and start is not None:
                key, limit_at = (device, round(start, 3)), start + TOILET_LIMIT_S
                if at - start >= TOILET_LIMIT_S + 1.0:
                    graced = any(k - 1.0 <= limit_at and at <= r + STARTUP_GRACE_S + 1.0 for k, r in run.hub_down)
                    (excused if graced else due).add(key)
                elif at - start <= TOILET_LIMIT_S - 1.0:
                    not_due.add(key)
                else:
                    either.add(key)
                start = None
    alarms = {(a["device"], round(a["since"], 3)): a for a in raised}
    missed = sorted(due - alarms.keys())
    unexpected = [a for key, a in alarms.items() if key not in due | either | excused]
    late = [alarms[key]["received"] - alarms[key]["due"] for key in due & alarms.keys()]
    hidden = looked_long = unregistered = 0
    for v in run.visits:
        start, end = heard.get((v.device, v.close_counter or -1)), heard.get((v.device, v.open_counter or -1))
        if start is None or end is None:
            unregistered += 1  # a door move the device did not register (it was off)
        elif v.opened_at - v.closed_at >= TOILET_LIMIT_S and end - start < TOILET_LIMIT_S - 1.0:
            hidden += 1
        elif v.opened_at - v.closed_at < TOILET_LIMIT_S and end - start >= TOILET_LIMIT_S + 1.0:
            looked_long += 1
    return {
        "limit_s": TOILET_LIMIT_S,
        "visits": len(run.visits),
        "long_visits": sum(1 for v in run.visits if v.opened_at - v.closed_at >= TOILET_LIMIT_S),
        "due": len(due),
        "raised": len(raised),
        "missed": len(missed),
        "unexpected": len(unexpected),
        "hidden_by_late_door_events": hidden,
        "short_visits_that_looked_long": looked_long,
        "door_moves_not_registered": unregistered,
        "due_within_a_restart_grace": len(excused),
        "late_s": _stats([x * 1000 for x in late], scale=0.001),
        "late_over_5s": sum(1 for x in late if x > 5),
        "missed_details": [f"{device} closed (heard) at {start:.3f}" for device, start in missed[:10]],
        "unexpected_details": [f"{a['event_id']} since {a['since']:.3f}" for a in unexpected[:10]],
    }


def _stats(values: list[float], scale: float = 1.0) -> dict[str, float]:
    if not values:
        return {}
    return {"n": len(values), "median": round(percentile(values, 50) * scale, 2),
            "p99": round(percentile(values, 99) * scale, 2), "max": round(max(values) * scale, 2)}

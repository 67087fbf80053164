"""The chaos run's tables (text and RESULTS.md)."""

from __future__ import annotations

from safebox.tools.bench import Table, machine_line
from safebox.tools.chaos.records import STARTUP_GRACE_S, Result


def tables(r: Result) -> list[Table]:
    def verdict(name: str) -> str:
        return "ok" if getattr(r, name) == 0 else "FAIL"

    counts = Table(
        f"Chaos run: {r.created:,} events from {sum(r.devices.values())} devices, seed {r.seed}",
        ["count", "value", "must be"],
        [["events created (firmware `event` lines)", r.created, f">= {r.target:,}"],
         ["stored at the platform (device events)", r.stored, "= created"],
         ["not at the platform yet: still in a device's flash, unacknowledged", r.undelivered_on_devices,
          "0 (late, not lost)"],
         ["not at the platform yet: in the hub's outbox", r.undelivered_at_hub, "0 (late, not lost)"],
         ["lost (neither at the platform, nor on a device, nor at the hub)", r.lost, f"0 ({verdict('lost')})"],
         ["stored twice", r.stored_twice, f"0 ({verdict('stored_twice')})"],
         ["stored with the wrong type", r.wrong_content, f"0 ({verdict('wrong_content')})"],
         ["phantom (stored, never created)", r.phantom, f"0 ({verdict('phantom')})"],
         ["dead letters at the hub", r.dead_letters, f"0 ({verdict('dead_letters')})"],
         ["dropped by a device (store full)", r.dropped, f"0 ({verdict('dropped')})"],
         ["toilet alarms missed (due by what the hub heard, not raised)", r.alarms_missed,
          f"0 ({verdict('alarms_missed')})"],
         ["toilet alarms unexpected (raised, not due by what the hub heard)", r.alarms_unexpected,
          f"0 ({verdict('alarms_unexpected')})"],
         ["left in the hub's outbox at the end", r.left_in_outbox, "-"],
         ["hub events stored (rules, heartbeats)", r.hub_events_stored, "-"],
         ["presses the firmware did not register (device off)", r.presses_not_registered, "-"]],
        [f"devices: {', '.join(f'{n} {k}' for k, n in r.devices.items())}; load {r.seconds_load:.0f} s "
         f"({r.created / max(r.seconds_load, 1e-6):.1f} events/s), drain {r.seconds_drain:.0f} s, "
         f"total {r.seconds_total:.0f} s (real time).",
         f"acks written per event: {r.acks_per_event}, one BLE connection each (kind 2 'delivered' "
         f"in place of kind 1 'heard' when the platform answered while the link was made); "
         f"fault injectors: {', '.join(r.injectors) or 'none'}; residents' pace: "
         + (f"a pause of {r.pace_s:g} s on average between one resident's actions." if r.pace_s else
            "as fast as each device takes them (up to 6 events waiting for their ack)."),
         *r.notes, f"machine: {machine_line()}"])
    faults = Table("Faults injected (seeded schedule)", ["fault", "times"],
                   [[k, n] for k, n in sorted(r.faults.items(), key=lambda kv: -kv[1])],
                   [f"{sum(r.faults.values())} faults in {r.seconds_load:.0f} s of load."])
    d, u, a = r.delivery_ms, r.urgent_delivery_ms, r.alarms
    late = a.get("late_s", {})
    timing = Table("Delivery under faults and alarms", ["measure", "n", "median", "p99", "worst"],
                   [["device event: line seen -> stored at the platform (ms)", d.get("n", 0), d.get("median", "-"),
                     d.get("p99", "-"), d.get("max", "-")],
                    ["pendant button events only (ms)", u.get("n", 0), u.get("median", "-"), u.get("p99", "-"),
                     u.get("max", "-")],
                    [f"toilet_overdue: due -> stored at the platform (s), limit {a.get('limit_s')} s",
                     late.get("n", 0), late.get("median", "-"), late.get("p99", "-"), late.get("max", "-")]],
                   [f"toilet visits {a.get('visits', 0)} ({a.get('long_visits', 0)} longer than the limit); "
                    f"alarms due by what the hub heard {a.get('due', 0)}: raised {a.get('raised', 0)}, missed {a.get('missed', 0)} "
                    f"(must be 0), unexpected {a.get('unexpected', 0)} (must be 0), more than 5 s late "
                    f"{a.get('late_over_5s', 0)}.",
                    f"faults that delay door events change what the hub can know: long visits it heard as short "
                    f"(\"closed\" reached it late) {a.get('hidden_by_late_door_events', 0)}; short visits it heard as "
                    f"long (\"open\" reached it late: an alarm the operator finds needless) "
                    f"{a.get('short_visits_that_looked_long', 0)}; door moves not registered (device off) "
                    f"{a.get('door_moves_not_registered', 0)}; visits that fell due while a restarted hub waited "
                    f"its startup grace ({STARTUP_GRACE_S:g} s, for the frames the devices kept) and ended within it "
                    f"{a.get('due_within_a_restart_grace', 0)} (no alarm, by design).",
                    "delays include the faults: an event made while the hub was down or the platform unreachable "
                    "waits for it; the worst delay is the price of the worst fault, not a steady state.",
                    *[f"missed: {m}" for m in a.get("missed_details", [])],
                    *[f"unexpected: {m}" for m in a.get("unexpected_details", [])]])
    return [counts, faults, timing]

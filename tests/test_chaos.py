"""A reduced chaos run (tools/chaos/): 300 events from 4 devices while a couple of faults of
every kind are injected from a fixed seed (hub SIGKILLed, the receiver failing or down,
adverts and acks lost, devices rebooted mid-send or their battery changed, broadband lost
while the hub has a cellular modem), and still every event at the platform exactly once. About a minute; the full run is `python -m safebox.tools.chaos`.
"""

from __future__ import annotations

import asyncio

from safebox.tools import chaos
from safebox.tools.sim.snapshot import PlatformEvent


async def test_reduced_chaos_run_loses_nothing_and_stores_nothing_twice(tmp_path):
    lines: list[str] = []
    async with asyncio.timeout(240):
        result = await chaos.run(seed=3, events=300, devices=4, mix="pendant:2,front_door:1,toilet_door:1",
                                 workdir=tmp_path, fault_scale=0.3, fault_limit=2, max_load_s=150,
                                 max_drain_s=150, log=lines.append,
                                 injectors=("platform", "air", "devices", "broadband"))
    report = "\n".join(t.text() for t in chaos.tables(result)) + "\n" + "\n".join(lines[-30:])
    assert result.created >= 300, report
    assert (result.lost, result.stored_twice, result.wrong_content, result.phantom) == (0, 0, 0, 0), report
    assert (result.dead_letters, result.dropped) == (0, 0), report
    assert result.stored == result.created and result.ok, report
    assert sum(result.faults.values()) >= 4 and len(result.faults) >= 3, f"too few faults injected:\n{report}"
    assert result.hub_events_stored > 0  # the rules ran on the toilet door's visits
    # broadband lost with the modem present: urgent events went by SMS, and every one of them
    # also came over HTTPS once the line healed (one event, two channels, stored once)
    assert result.faults.get("broadband lost, modem present", 0) >= 1, report
    assert result.sms_to_platform > 0 and result.channels.get("sms", 0) == 0, report
    assert result.channels.get("sms+https", 0) + result.channels.get("https+sms", 0) > 0, report


def test_the_mix_is_scaled_to_the_device_count():
    assert chaos.parse_mix("pendant:12,front_door:2,toilet_door:2", 16) == {
        "pendant": 12, "front_door": 2, "toilet_door": 2}
    scaled = chaos.parse_mix("pendant:12,front_door:2,toilet_door:2", 4)
    assert sum(scaled.values()) == 4 and scaled["pendant"] >= 2


def test_toilet_alarms_are_judged_by_what_the_hub_heard(tmp_path):
    """A visit the hub heard as long must have its alarm (else missed), and so must one it never
    heard end; a long visit whose door events reached the hub late (heard as short) is hidden, not
    missed; a short visit whose opening reached the hub late looks long, and its alarm is due, not
    unexpected; an alarm for a visit the hub heard as short is unexpected."""
    import json

    from safebox.protocol import events

    run = chaos.ChaosRun(seed=1, events=1, mix={"toilet_door": 1}, workdir=tmp_path)
    dev, base, limit = "240ac4000010", 1_800_000_000.0, chaos.TOILET_LIMIT_S
    rows: list[PlatformEvent] = []

    def heard(counter: int, at: float, type_: str) -> None:
        body = {"occurred_at": events.timestamp(at)}
        rows.append(PlatformEvent("hub-1", f"{dev}-{counter}", type_, dev, counter, events.timestamp(at + 0.01),
                                  json.dumps(body).encode()))

    def alarm(n: int, since: float, received: float) -> None:
        body = {"data": {"since": events.timestamp(since), "limit_s": limit, "device": {"id": dev}}}
        rows.append(PlatformEvent("hub-1", f"hub-1-{n}", "toilet_overdue", None, None, events.timestamp(received),
                                  json.dumps(body).encode()))

    # (real closed, real open, hub heard close, hub heard open)
    visits = {"long, heard long, alarm": (0, 15, 0.1, 15.1), "long, heard short": (20, 35, 40, 41),
              "short, heard long, alarm": (50, 53, 50.1, 66), "long, heard long, no alarm": (70, 85, 70.1, 85.1),
              "short, heard short": (90, 92, 90.1, 92.1)}
    for i, (closed, opened, heard_close, heard_open) in enumerate(visits.values()):
        run.visits.append(chaos.Visit(dev, base + closed, base + opened, close_counter=2 * i + 1,
                                      open_counter=2 * i + 2))
        heard(2 * i + 1, base + heard_close, "door_closed")
        heard(2 * i + 2, base + heard_open, "door_opened")
    alarm(1, base + 0.1, base + 0.1 + limit + 0.5)  # 0.5 s after it was due
    alarm(2, base + 50.1, base + 60.2)
    alarm(3, base + 40, base + 50)  # the hub heard that door open 1 s after it closed
    run.visits.append(chaos.Visit(dev, base + 95, base + 110, close_counter=None, open_counter=11))
    heard(12, base + 120, "door_closed")  # the hub never heard this door open again ...
    alarm(4, base + 120, base + 130.2)
    heard(13, base + 135, "door_opened")  # ... until later
    run.hub_down = [(base + 146, base + 148)]  # the hub was down when this visit fell due; it ended in the grace
    heard(14, base + 140, "door_closed")
    heard(15, base + 151.5, "door_opened")
    heard(16, base + 160, "door_closed")  # within a second of the limit: an alarm may or may not come
    heard(17, base + 170.5, "door_opened")
    alarm(5, base + 160, base + 170.1)
    run.ended_at = base + 200

    a = chaos.alarms(run, rows)
    assert (a["due"], a["raised"], a["missed"], a["unexpected"]) == (4, 5, 1, 1), a
    assert (a["hidden_by_late_door_events"], a["short_visits_that_looked_long"], a["door_moves_not_registered"]) == \
        (1, 1, 1), a
    assert a["late_s"]["max"] == 0.5 and a["missed_details"] == [f"{dev} closed (heard) at {base + 70.1:.3f}"]
    assert a["unexpected_details"] == [f"hub-1-3 since {base + 40:.3f}"]

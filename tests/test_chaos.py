"""A reduced chaos run (tools/chaos.py): 300 events from 4 devices while a couple of faults of
every kind are injected from a fixed seed (hub SIGKILLed, the receiver failing or down,
adverts and acks lost, devices rebooted mid-send or their battery changed), and still every
event at the platform exactly once. About a minute; the full run is `python -m safebox.tools.chaos`.
"""

from __future__ import annotations

import asyncio

from safebox.tools import chaos


async def test_reduced_chaos_run_loses_nothing_and_stores_nothing_twice(tmp_path):
    lines: list[str] = []
    async with asyncio.timeout(240):
        result = await chaos.run(seed=3, events=300, devices=4, mix="pendant:2,front_door:1,toilet_door:1",
                                 workdir=tmp_path, fault_scale=0.3, fault_limit=2, max_load_s=150,
                                 max_drain_s=150, log=lines.append)
    report = "\n".join(t.text() for t in chaos.tables(result)) + "\n" + "\n".join(lines[-30:])
    assert result.created >= 300, report
    assert (result.lost, result.stored_twice, result.wrong_content, result.phantom) == (0, 0, 0, 0), report
    assert (result.dead_letters, result.dropped) == (0, 0), report
    assert result.stored == result.created and result.ok, report
    assert sum(result.faults.values()) >= 4 and len(result.faults) >= 3, f"too few faults injected:\n{report}"
    assert result.hub_events_stored > 0  # the rules ran on the toilet door's visits


def test_the_mix_is_scaled_to_the_device_count():
    assert chaos.parse_mix("pendant:12,front_door:2,toilet_door:2", 16) == {
        "pendant": 12, "front_door": 2, "toilet_door": 2}
    scaled = chaos.parse_mix("pendant:12,front_door:2,toilet_door:2", 4)
    assert sum(scaled.values()) == 4 and scaled["pendant"] >= 2


def test_a_firmware_line_names_the_type_the_platform_must_store():
    assert chaos._type_of("pendant", "emergency press") == "emergency"
    assert chaos._type_of("pendant", "life_service long_press") == "life_service"
    assert chaos._type_of("front_door", "door open") == "door_opened"
    assert chaos._type_of("toilet_door", "door closed") == "door_closed"

"""Door sensors deep-sleep between events (firmware/power.py, firmware/door.py).

Real firmware on the `micropython` binary in the whole simulated home (tools/sim/home.py).
A door asleep is a process that has exited with machine.deepsleep(ms) and an EXT0 source on
its contact; the simulator boots it again at the timer (wake_reason TIMER_WAKE: the
heartbeat) or when the contact reaches the armed level (EXT0_WAKE: the door moved).
"""

from __future__ import annotations

import asyncio

from safebox.tools.sim.home import SimDevice, SimHome
from tests.test_firmware_home import device_events, events_before_a_later_one, exactly_once

EXT0_WAKE, TIMER_WAKE = 2, 4
SETTINGS = {"awake_after_event_ms": 1500, "heartbeat_s": 60}


async def deep_asleep(door: SimDevice, sleeps_before: int, timeout: float = 10.0) -> None:
    """Until the door has gone into a new deep sleep and its process is off."""
    fw = door.firmware
    async with asyncio.timeout(timeout):
        while len(fw.bridge.deep_sleeps) <= sleeps_before or fw.running:
            await asyncio.sleep(0.02)


def boots(door: SimDevice, reset_cause: int, wake: int) -> int:
    return sum(line == f"boot safebox 0.2.0 reset_cause {reset_cause} wake {wake}" for line in door.firmware.lines)


async def test_door_deep_sleeps_wakes_on_the_contact_and_every_change_arrives_once_in_order(tmp_path):
    async with SimHome(tmp_path, door_moves=True) as home:
        door = await home.add_device("front_door", "hall", settings=SETTINGS)
        fw = door.firmware
        await deep_asleep(door, 0)
        pin, level, _now = fw.bridge.deep_sleeps[-1][2]
        assert (pin, level) == (door.pin("contact"), 0)  # NC reed, door closed (1): wake when it opens
        assert 0 < fw.bridge.deep_sleeps[-1][1] <= 60_000  # and at the next heartbeat at the latest

        door.set_door(True)  # opened while the device is off
        events = await device_events(home, door, 1)
        assert [e["type"] for e in events] == ["door_opened"]
        assert boots(door, 4, EXT0_WAKE) == 1
        await deep_asleep(door, 1)
        assert fw.bridge.deep_sleeps[-1][2][:2] == [door.pin("contact"), 1]  # now: wake when it closes
        assert (fw.fs_dir / "door_state").read_text() == "0"  # open, as last reported

        # closed and opened again at once, the first edge while deep asleep: the boot
        # reads the contact against the saved state, the running firmware catches the second
        closed_at = len(fw.lines)
        door.set_door(False)
        # the boot must read it closed first (a slow boot reading it open again sees no change):
        # opened again once the woken firmware counted the close
        await fw.wait_for_line(r"^event \d+ door closed$", timeout=15, start=closed_at)
        door.set_door(True)
        moved = len(fw.lines)
        await device_events(home, door, 3)
        await deep_asleep(door, 2)
        assert boots(door, 4, EXT0_WAKE) == 2, "\n".join(fw.lines)  # the second edge seen by the running firmware
        # asleep: then closed once more; a wrong extra event came before this one
        events, _ = await events_before_a_later_one(home, door, lambda: door.set_door(False), "door closed",
                                                    idle_from=moved)
        assert [e["type"] for e in events] == ["door_opened", "door_closed", "door_opened"]
        assert events[0]["counter"] < events[1]["counter"] < events[2]["counter"]  # a higher mark each boot
        exactly_once(events)
        assert not any("watchdog" in line or "crash" in line or "self-test:" in line for line in fw.lines)
        # the hub owes a door nothing after kind 1 (SPEC 1.7): each change taken at kind 1 (the
        # last one's a moment after the hub stored it: the hub stores, then writes), no linger
        async with asyncio.timeout(10):
            while sum(line.startswith("acked ") and line.endswith(" kind 1") for line in fw.lines) < 4:
                await asyncio.sleep(0.05)
        assert not any(line.startswith("linger") for line in fw.lines), [x for x in fw.lines if "linger" in x]


async def test_door_heartbeat_after_a_timer_wake_from_deep_sleep(tmp_path):
    async with SimHome(tmp_path) as home:
        door = await home.add_device("toilet_door", "bathroom", settings={**SETTINGS, "heartbeat_s": 2})
        fw = door.firmware
        await deep_asleep(door, 0)
        assert 0 < fw.bridge.deep_sleeps[-1][1] <= 2000  # until the heartbeat is due
        await fw.wait_for_line(rf"^boot safebox 0.2.0 reset_cause 4 wake {TIMER_WAKE}$", timeout=6)
        mark = len(fw.lines) - 1
        beat = await fw.wait_for_line(r"^heartbeat \d+ ", timeout=5, start=mark)
        assert "(26, 0)" in beat  # door closed (BTHome 0x1A)
        await deep_asleep(door, 1)  # and back to sleep until the next one
        # a quick heartbeat (firmware/sender.py): owed nothing, the door sends its 10 advertisements
        # at the burst's 30 ms and is off the air 0.3 s later (0.9 allowed: a loaded machine), not
        # after the 1 s window; and the hub heard it (its status names the heartbeat's counter)
        on = [a for a in fw.bridge.advertising if a.interval_us]
        off = [a for a in fw.bridge.advertising if not a.interval_us and a.t > on[-1].t]
        assert on[-1].interval_us == 30_000 and off and off[0].t - on[-1].t < 0.9, (on[-1], off[:1])
        counter = int(beat.split()[1])
        async with asyncio.timeout(10):
            while (await home.hub_status())["devices"][0]["last_counter"] != counter:
                await asyncio.sleep(0.2)
        assert not any(line.startswith("event ") for line in fw.lines)
        assert not any("watchdog" in line for line in fw.lines)


async def test_a_door_moved_while_the_battery_was_out_is_an_event_when_it_is_back(tmp_path):
    """The hub's toilet rule follows door events: a visit that began while the sensor was off
    (a battery change, a reset) must not go unseen. Every boot compares the contact with the
    level last reported (door_state, written with each door event)."""
    async with SimHome(tmp_path, door_moves=True) as home:
        door = await home.add_device("toilet_door", "bathroom", settings={**SETTINGS, "deep_sleep": 0})
        fw = door.firmware
        door.set_door(True)
        assert [e["type"] for e in await device_events(home, door, 1)] == ["door_opened"]
        await fw.kill()  # the battery comes out ...
        door.set_door(False)  # ... someone goes in and shuts the door ...
        mark = len(fw.lines)
        await fw.restart()  # ... the battery goes back in
        await fw.wait_for_line(r"^ready ", timeout=15, start=mark)
        events = await device_events(home, door, 2)
        assert [e["type"] for e in events] == ["door_opened", "door_closed"]
        assert (fw.fs_dir / "door_state").read_text() == "1"  # closed, as last reported
        mark = len(fw.lines)
        await fw.restart()  # a reset with the door as reported: nothing new ...
        await fw.wait_for_line(r"^ready ", timeout=15, start=mark)
        # ... before the door is next opened
        events, _ = await events_before_a_later_one(home, door, lambda: door.set_door(True), "door open",
                                                    idle_from=mark)
        assert [e["type"] for e in events] == ["door_opened", "door_closed"]


def test_in_process_port_deep_sleeps_the_door_and_wakes_it_on_the_contact_and_the_timer():
    """The scenario runner's CPython port (tools/sim/cpython_port) runs the same firmware: a
    door opened an hour in wakes from deep sleep on EXT0; the heartbeats come from timer wakes."""
    from tests.test_scenarios import SCENARIOS, run_cli

    code, res = run_cli(str(SCENARIOS / "front_door_quiet_window.toml"), "--json")
    assert code == 0, res
    console = res["device_consoles"]["door"]
    assert console.count(f"boot safebox 0.2.0 reset_cause 4 wake {EXT0_WAKE}") == 1
    woke = console.index(f"boot safebox 0.2.0 reset_cause 4 wake {EXT0_WAKE}")
    assert console[woke - 1].startswith("deepsleep ") and "event 1 door open" in console[woke:woke + 5]
    assert console.count(f"boot safebox 0.2.0 reset_cause 4 wake {TIMER_WAKE}") >= 20
    assert sum(line.startswith("heartbeat ") for line in console) >= 20
    assert [e["type"] for e in res["events"] if e["device"] == "door"] == ["door_opened", "door_inactive"]

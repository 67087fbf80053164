"""The firmware in the whole simulated home: every event reaches the platform exactly once.

Real firmware on the `micropython` binary, bumble air, the hub process, signed HTTPS over
real TLS, the receiver process (tools/sim/home.py). Faults: contact bounce at the pins,
a power cut in the middle of sending (then a fresh battery), a full store, and lost
advertisements and acknowledgements (Air.drop_filter / drop_rate).
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Awaitable, Callable
from typing import Any

from safebox.tools.sim.home import SimDevice, SimHome


async def device_events(home: SimHome, device: SimDevice, count: int, timeout: float = 20.0) -> list[dict[str, Any]]:
    """The device's events at the platform, once there are `count`, in counter order."""
    async with asyncio.timeout(timeout):
        while True:
            mine = [e for e in await home.stored_events() if e["device_id"] == device.id]
            if len(mine) >= count:
                return sorted(mine, key=lambda e: e["counter"])
            await asyncio.sleep(0.05)


async def events_before_a_later_one(home: SimHome, device: SimDevice, make: Callable[[], Awaitable[Any] | None],
                                    what: str, *, idle_from: int, timeout: float = 40.0
                                    ) -> tuple[list[dict[str, Any]], int]:
    """The device's events at the platform made before a later one, and that one's counter.

    First the device goes idle after line `idle_from` (`sleep <ms> idle`: it sleeps so only
    with no input being judged, nothing to send, no receipt owed), so it has made and sent all
    it will of what came before. Then `make` has it make one more event (a press, a door
    move), the firmware's line for it ending in `what` ("life_service press", "door open");
    once the platform has that one, it has everything the device made before it: the device
    sends in counter order, the hub stores and relays one device's events in that order. So a
    wrong extra event cannot hide behind a pause that was too short, and the test waits only
    as long as the device takes."""
    fw = device.firmware
    await fw.wait_for_line(r"^(deep)?sleep \d+ idle$", timeout=timeout, start=idle_from)
    mark = len(fw.lines)
    made = make()
    if made is not None:
        await made
    line = await fw.wait_for_line(rf"^event \d+ {what}$", timeout=timeout, start=mark)
    counter = int(line.split()[1])
    async with asyncio.timeout(timeout):
        while True:
            mine = [e for e in await home.stored_events() if e["device_id"] == device.id]
            if any(e["counter"] == counter for e in mine):
                exactly_once(mine)
                return sorted((e for e in mine if e["counter"] < counter), key=lambda e: e["counter"]), counter
            await asyncio.sleep(0.05)


def event_lines(device: SimDevice, before: int) -> list[str]:
    """The firmware's `event <counter> ...` lines for counters below `before`."""
    return [line for line in device.firmware.lines if line.startswith("event ") and int(line.split()[1]) < before]


def exactly_once(events: list[dict[str, Any]]) -> None:
    ids = Counter(e["event_id"] for e in events)
    assert all(n == 1 for n in ids.values()), f"stored more than once: {ids}"


def deaf_to(home: SimHome, device: SimDevice) -> None:
    """The hub hears nothing from this device (out of range): no frame, so no ack."""
    home.air.drop_filter = lambda address, data: address == device.device.address


async def test_bounce_press_and_long_press_each_reach_the_platform_once(tmp_path):
    async with SimHome(tmp_path) as home:
        pendant = await home.add_device("pendant", "bedroom")
        bridge = pendant.firmware.bridge
        button = pendant.pin("community_service")
        # a worn button: 40 ms of bounce going down, 30 ms coming up (1: pressed)
        for level, hold in ((1, 0.006), (0, 0.008), (1, 0.01), (0, 0.005), (1, 0.15),
                            (0, 0.006), (1, 0.01), (0, 0.0)):
            bridge.set_pin(button, level)
            await asyncio.sleep(hold)
        await pendant.firmware.wait_for_line(r"^acked 1 kind [12]$", timeout=10)
        await home.press(pendant, "emergency", hold_s=2.3)
        released = len(pendant.firmware.lines)
        await device_events(home, pendant, 2)
        # idle after the release (the buttons judged), then another press: an extra event made
        # of a bounce came before it
        events, later = await events_before_a_later_one(home, pendant, lambda: home.press(pendant, "life_service"),
                                                        "life_service press", idle_from=released)
        assert [(e["type"], e["body"]["data"]["action"]) for e in events] == \
            [("community_service", "press"), ("emergency", "long_press")]
        assert len(event_lines(pendant, later)) == 2, pendant.firmware.lines


async def test_power_cut_while_sending_then_a_fresh_battery_the_event_arrives_once(tmp_path):
    async with SimHome(tmp_path) as home:
        # light sleep only (deep_sleep 0): the counters below are those of the boots the test makes
        pendant = await home.add_device("pendant", "living room", settings={"deep_sleep": 0})
        fw = pendant.firmware
        deaf_to(home, pendant)
        await home.press(pendant, "emergency")
        await fw.wait_for_line(r"^sending 1$", timeout=5)
        await fw.kill()  # the battery falls out mid-burst: RAM gone, flash kept
        assert (fw.fs_dir / "events.json").read_text().startswith("[[1, 1,")
        home.air.drop_filter = None
        mark = len(fw.lines)
        await fw.restart()  # a fresh battery
        await fw.wait_for_line(r"^ready pendant next counter 65 pending 1$", timeout=10, start=mark)
        await fw.wait_for_line(r"^acked 1 kind [12]$", timeout=10, start=mark)
        # then the boot frame (protocol/SPEC.md 1.8: power-on), once the waiting event is acknowledged
        await fw.wait_for_line(r"^boot frame 65 .*\(9, 1\)", timeout=40, start=mark)
        # a new press after the reboot: a higher counter, which the hub accepts (65 was the boot
        # frame; the receipt of "delivered" for 1 may come between, SPEC 1.7)
        mark = len(fw.lines)
        await home.press(pendant, "life_service")
        second = int((await fw.wait_for_line(r"^event \d+ life_service", timeout=5, start=mark)).split()[1])
        assert second in (66, 67)
        events = await device_events(home, pendant, 2)
        assert [(e["counter"], e["type"]) for e in events] == [(1, "emergency"), (second, "life_service")]
        exactly_once(events)

        # now a cut just after the hub stored an event, before (or as) its ack reaches the
        # pendant: after the reboot it sends it again if it has to, and the hub answers the
        # repeat without storing it twice
        mark, fw_mark = len(home.hub.lines), len(fw.lines)
        await home.press(pendant, "community_service")
        third = int((await fw.wait_for_line(r"^event \d+ community_service", timeout=5, start=fw_mark)).split()[1])
        await home.hub.wait_for_line(rf"event {pendant.id}-{third} stored", timeout=10, start=mark)
        await fw.kill()
        restarted = len(fw.lines)
        await fw.restart()
        await fw.wait_for_line(r"^ready pendant", timeout=10, start=restarted)
        await device_events(home, pendant, 3)
        # a press after the reboot: a second copy of the third, if stored, was stored before it
        events, _ = await events_before_a_later_one(home, pendant, lambda: home.press(pendant, "life_service"),
                                                    "life_service press", idle_from=restarted)
        assert [e["counter"] for e in events] == [1, second, third] and third > second


async def test_full_store_keeps_the_emergency_and_the_newest_and_each_arrives_once(tmp_path):
    async with SimHome(tmp_path) as home:
        pendant = await home.add_device("pendant", settings={"max_pending": 3, "failed_after_ms": 60000})
        fw = pendant.firmware
        deaf_to(home, pendant)
        await home.press(pendant, "emergency")
        for n in range(2, 6):
            await home.press(pendant, "community_service")
            # the next press once this one is counted: 100 ms apart, a loaded machine can run the
            # release debounce late enough to merge two presses into one (an edge restarts it)
            await fw.wait_for_line(rf"^event {n} community_service press$", timeout=10)
        # the firmware says what it dropped on the line after the event: wait for it as well
        await fw.wait_for_line(r"^store full: dropped \[3\]$", timeout=10)
        dropped = [line for line in fw.lines if line.startswith("store full: dropped")]
        assert dropped == ["store full: dropped [2]", "store full: dropped [3]"]
        home.air.drop_filter = None
        heard = len(fw.lines)
        await device_events(home, pendant, 3, timeout=40)
        # idle (the store empty: the next press drops nothing), then a later press: a dropped
        # event sent after all, or one sent twice, came before it
        events, _ = await events_before_a_later_one(home, pendant, lambda: home.press(pendant, "life_service"),
                                                    "life_service press", idle_from=heard)
        assert [(e["counter"], e["type"]) for e in events] == \
            [(1, "emergency"), (4, "community_service"), (5, "community_service")]


async def test_lossy_air_doors_and_pendant_every_event_once_and_in_order(tmp_path):
    async with SimHome(tmp_path, door_moves=True) as home:
        door = await home.add_device("front_door", "hall")
        pendant = await home.add_device("pendant", "bedroom")
        home.air.drop_rate = 0.6  # most advertisements lost on the way to the hub
        door.set_door(True)
        await asyncio.sleep(0.4)
        door.set_door(False)  # opened and closed within half a second
        await home.press(pendant, "life_service")
        marks = len(door.firmware.lines), len(pendant.firmware.lines)
        await device_events(home, door, 2, timeout=40)
        await device_events(home, pendant, 1, timeout=40)
        # then each device, once idle, makes one more: anything extra came before it
        door_events, _ = await events_before_a_later_one(home, door, lambda: door.set_door(True), "door open",
                                                         idle_from=marks[0])
        pendant_events, _ = await events_before_a_later_one(home, pendant, lambda: home.press(pendant, "emergency"),
                                                            "emergency press", idle_from=marks[1])
        assert [e["type"] for e in door_events] == ["door_opened", "door_closed"]
        assert door_events[0]["counter"] < door_events[1]["counter"]
        exactly_once(door_events + pendant_events)
        assert [e["type"] for e in pendant_events] == ["life_service"]

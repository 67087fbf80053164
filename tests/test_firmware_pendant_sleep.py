"""The pendant deep-sleeps and wakes on any of its three buttons (firmware/power.py, wake.py).

Real firmware on the `micropython` binary in the whole simulated home (tools/sim/home.py). A
pendant asleep is a process that has exited with machine.deepsleep(ms) and EXT1 armed ANY_HIGH on
the three button pins (the esp32 shim); the simulator boots it when a button pin goes high, after
the ROM and bootloader's 0.3 s (firmware_process.WAKE_BOOT_S): a short press is over by the time
the firmware runs, and machine.wake_pins() (or, on 1.28, the EXT1 status register) says which
button it was.
"""

from __future__ import annotations

import asyncio

import pytest

from safebox.tools.sim.home import SimDevice, SimHome
from tests.test_firmware_home import device_events, events_before_a_later_one, exactly_once

DEEPSLEEP_RESET, EXT1_WAKE, TIMER_WAKE, GPIO_WAKE = 4, 3, 4, 7
SETTINGS = {"linger_ms": 0}  # asleep again as soon as the hub heard (hourly heartbeats: an owed ack
# could not be shown by then, so the pendant deep-sleeps at once: sender.py _showable_by)


async def deep_asleep(dev: SimDevice, sleeps_before: int, timeout: float = 20.0) -> None:
    """Until the device has gone into a new deep sleep and its process is off."""
    fw = dev.firmware
    async with asyncio.timeout(timeout):
        while len(fw.bridge.deep_sleeps) <= sleeps_before or fw.running:
            await asyncio.sleep(0.02)


def wake_boots(dev: SimDevice, reason: int = EXT1_WAKE) -> int:
    return sum(line == f"boot safebox 0.2.0 reset_cause {DEEPSLEEP_RESET} wake {reason}" for line in dev.firmware.lines)


def kinds(events: list[dict]) -> list[tuple[str, str]]:
    return [(e["type"], e["body"]["data"]["action"]) for e in events]


def no_faults(dev: SimDevice) -> None:
    bad = [line for line in dev.firmware.lines if "crash" in line or "self-test:" in line or "Traceback" in line]
    assert not bad, "\n".join(dev.firmware.lines)


async def test_a_60ms_press_of_each_button_while_asleep_becomes_that_buttons_event(tmp_path):
    async with SimHome(tmp_path) as home:
        pendant = await home.add_device("pendant", "bedroom", settings=SETTINGS)
        bridge = pendant.firmware.bridge
        await deep_asleep(pendant, 0)
        armed = bridge.deep_sleeps[-1]
        assert 0 < armed[1] <= 3_600_000  # the timer: the next heartbeat
        assert bridge.last_sleep_wake1 == [[pendant.pin(b) for b in ("emergency", "community_service", "life_service")],
                                           1, EXT1_WAKE]
        buttons = ["life_service", "emergency", "community_service"]
        for n, button in enumerate(buttons, start=1):
            mark = len(pendant.firmware.lines)
            await pendant.press(button, 0.06)
            events = await device_events(home, pendant, n)
            assert kinds(events)[-1] == (button, "press")
            await deep_asleep(pendant, n)
        assert wake_boots(pendant) == 3
        # one more press: a wrong extra event came before it
        events, _ = await events_before_a_later_one(home, pendant, lambda: pendant.press("emergency", 0.06),
                                                    "emergency press", idle_from=mark)
        assert kinds(events) == [(b, "press") for b in buttons]
        exactly_once(events)
        for button in buttons:  # each boot knew which button: the pin was already low again
            assert f"input: {button} woke the device (released)" in pendant.firmware.lines
        no_faults(pendant)


async def test_two_buttons_pressed_together_while_asleep_are_two_events(tmp_path):
    async with SimHome(tmp_path) as home:
        pendant = await home.add_device("pendant", "bedroom", settings=SETTINGS)
        bridge = pendant.firmware.bridge
        await deep_asleep(pendant, 0)
        mark = len(pendant.firmware.lines)
        bridge.set_pin(pendant.pin("community_service"), 1)
        bridge.set_pin(pendant.pin("emergency"), 1)
        await asyncio.sleep(0.08)
        bridge.set_pin(pendant.pin("community_service"), 0)
        bridge.set_pin(pendant.pin("emergency"), 0)
        await device_events(home, pendant, 2)
        await deep_asleep(pendant, 1)
        assert wake_boots(pendant) == 1
        events, _ = await events_before_a_later_one(home, pendant, lambda: pendant.press("life_service", 0.06),
                                                    "life_service press", idle_from=mark)
        assert kinds(events) == [("emergency", "press"), ("community_service", "press")]  # emergency first
        exactly_once(events)
        no_faults(pendant)


async def test_bounce_on_the_press_that_wakes_it_is_one_event_and_a_hold_is_a_long_press(tmp_path):
    async with SimHome(tmp_path) as home:
        pendant = await home.add_device("pendant", "bedroom", settings=SETTINGS)
        bridge = pendant.firmware.bridge
        pin = pendant.pin("life_service")
        await deep_asleep(pendant, 0)
        # a worn button: 30 ms of bounce going down (the first edge wakes the chip), held 150 ms,
        # bouncing again on the way up while the firmware is already running
        for level, hold in ((1, 0.004), (0, 0.006), (1, 0.005), (0, 0.008), (1, 0.45),
                            (0, 0.006), (1, 0.01), (0, 0.0)):
            bridge.set_pin(pin, level)
            await asyncio.sleep(hold)
        events = await device_events(home, pendant, 1)
        await deep_asleep(pendant, 1)
        mark = len(pendant.firmware.lines)
        await pendant.press("emergency", 3.5)  # held through the boot and 2 s past the firmware's first look
        await device_events(home, pendant, 2)
        await deep_asleep(pendant, 2)
        assert wake_boots(pendant) == 2
        events, _ = await events_before_a_later_one(home, pendant, lambda: pendant.press("community_service", 0.06),
                                                    "community_service press", idle_from=mark)
        assert kinds(events) == [("life_service", "press"), ("emergency", "long_press")]
        exactly_once(events)
        no_faults(pendant)


async def test_a_press_during_the_boot_counts_too(tmp_path):
    """Woken by one button; another pressed while the chip boots (after the wake, so not among
    the wake pins) and still held when the firmware first looks: judged as any press."""
    async with SimHome(tmp_path) as home:
        pendant = await home.add_device("pendant", "bedroom", settings=SETTINGS)
        bridge = pendant.firmware.bridge
        await deep_asleep(pendant, 0)
        boots = len(pendant.firmware.exits)
        mark = len(pendant.firmware.lines)
        bridge.set_pin(pendant.pin("emergency"), 1)
        await asyncio.sleep(0.06)
        bridge.set_pin(pendant.pin("emergency"), 0)
        await asyncio.sleep(0.1)  # the chip is in its ROM and bootloader (0.3 s)
        bridge.set_pin(pendant.pin("life_service"), 1)
        async with asyncio.timeout(20):  # held until the firmware has read it
            await pendant.firmware.wait_for_line(r"^input: life_service held at boot$", timeout=20)
        await asyncio.sleep(0.12)
        bridge.set_pin(pendant.pin("life_service"), 0)
        await device_events(home, pendant, 2)
        await deep_asleep(pendant, 1)  # after its receipt (SPEC 1.7), back to sleep
        assert len(pendant.firmware.exits) == boots + 1  # one boot for both
        events, _ = await events_before_a_later_one(home, pendant, lambda: pendant.press("community_service", 0.06),
                                                    "community_service press", idle_from=mark)
        assert kinds(events) == [("emergency", "press"), ("life_service", "press")]
        exactly_once(events)
        no_faults(pendant)


async def test_without_wake_pins_the_ext1_status_register_says_which_button(tmp_path):
    """MicroPython 1.28 has no machine.wake_pins(): the firmware reads RTC_CNTL_EXT_WAKEUP1_STATUS_REG."""
    async with SimHome(tmp_path) as home:
        pendant = await home.add_device("pendant", "bedroom", settings=SETTINGS,
                                        env={"SAFEBOX_SIM_NO_WAKE_PINS": "1"})
        await deep_asleep(pendant, 0)
        await pendant.press("community_service", 0.06)
        events = await device_events(home, pendant, 1)
        assert kinds(events) == [("community_service", "press")]
        no_faults(pendant)


async def test_the_heartbeat_after_a_timer_wake_then_asleep_again(tmp_path):
    async with SimHome(tmp_path) as home:
        pendant = await home.add_device("pendant", "bedroom", settings={**SETTINGS, "heartbeat_s": 2})
        fw = pendant.firmware
        await deep_asleep(pendant, 0)
        await fw.wait_for_line(rf"^boot safebox 0.2.0 reset_cause 4 wake {TIMER_WAKE}$", timeout=10)
        mark = len(fw.lines) - 1
        await fw.wait_for_line(r"^heartbeat \d+ ", timeout=10, start=mark)
        await deep_asleep(pendant, 1)
        assert not any(line.startswith("event ") for line in fw.lines)
        no_faults(pendant)


@pytest.mark.parametrize("with_wake_pins", [True, False])
async def test_c3_pendant_deep_sleeps_on_gpio_wake_only_when_it_can_tell_the_buttons_apart(tmp_path, with_wake_pins):
    """ESP32-C3: esp32.wake_on_gpio (GPIO0-5). Deep sleep needs machine.wake_pins(); without it
    the pendant light-sleeps, woken by the same GPIO source."""
    env = {} if with_wake_pins else {"SAFEBOX_SIM_NO_WAKE_PINS": "1"}
    async with SimHome(tmp_path) as home:
        pendant = await home.add_device("pendant", "bedroom", settings=SETTINGS, board_name="esp32-c3-devkitm",
                                        env=env)
        fw = pendant.firmware
        if with_wake_pins:
            await deep_asleep(pendant, 0)
            assert fw.bridge.last_sleep_wake1 == [[2, 3, 4], 1, GPIO_WAKE]
        else:
            await fw.wait_for_line(r"^sleep \d+ idle$", timeout=20)
        await pendant.press("emergency", 0.08)
        events = await device_events(home, pendant, 1)
        assert kinds(events) == [("emergency", "press")]
        assert wake_boots(pendant, GPIO_WAKE) == (1 if with_wake_pins else 0)
        assert not fw.bridge.deep_sleeps if not with_wake_pins else True
        no_faults(pendant)

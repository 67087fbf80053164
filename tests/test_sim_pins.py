"""The machine shim against the simulator: pin presses reach Pin.irq handlers, output
writes are observed, ADC inputs are there at power-on, resets and the watchdog reboot
the process with the reset cause a board would report."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from safebox.tools.sim.air import Air
from safebox.tools.sim.shimlink import OutputEvent
from safebox.tools.sim.firmware_process import (
    DEEPSLEEP_RESET,
    EXT0_WAKE,
    HARD_RESET,
    PWRON_RESET,
    TIMER_WAKE,
    WDT_RESET,
    FirmwareProcess,
)

MP_DIR = Path(__file__).parent / "mp"
LED, BUZZER, BATTERY = 2, 25, 34
BUTTON, RESET_BUTTON, HANG_BUTTON, NAP_BUTTON, SLEEP_BUTTON = 13, 14, 15, 16, 17


@pytest.fixture
async def board() -> AsyncIterator[FirmwareProcess]:
    async with Air() as air:
        fw = FirmwareProcess(air, MP_DIR, entry="pins.py", mac="5C:CF:7F:00:00:02")
        fw.bridge.set_adc(BATTERY, 1_800_000)  # set before power-on: read at boot
        async with fw:
            await fw.wait_for_line("^boot ")
            yield fw


async def test_press_reaches_irq_handler_and_led_pulse_is_observed(board: FirmwareProcess) -> None:
    assert board.lines[0] == f"boot reset_cause {PWRON_RESET} wake 0 battery_uv 1800000"
    pressed_at = time.monotonic()
    await board.press(BUTTON, 0.05)
    await board.wait_for_line(rf"^pressed Pin\({BUTTON}\) 0$")  # the handler read the level
    off_at = await board.bridge.wait_output(LED, 0, after=pressed_at)
    (on_at, on), (off_at2, off) = board.bridge.output_levels(LED)[-2:]
    assert (on, off) == (1, 0) and off_at2 == off_at
    assert 0.045 <= off_at - on_at <= 0.08, "a 50 ms pulse"
    assert on_at - pressed_at < 0.03, "the press reached the firmware promptly"
    beeps = [e for e in board.bridge.outputs if e.kind == "pwm"]
    assert [(e.pin, e.freq, e.value) for e in beeps] == [(BUZZER, 2000, 32768), (BUZZER, 0, 0)]
    assert isinstance(beeps[0], OutputEvent) and on_at <= beeps[0].t <= beeps[1].t <= off_at


async def test_machine_reset_and_watchdog_reboot_with_their_causes(board: FirmwareProcess) -> None:
    await board.press(RESET_BUTTON, 0.02)
    await board.wait_for_line(f"^boot reset_cause {HARD_RESET} wake 0 battery_uv 1800000$")
    assert board.bridge.boots == 2

    await board.press(HANG_BUTTON, 0.02)  # the firmware spins without feeding its WDT(300 ms)
    started = time.monotonic()
    await board.wait_for_line(f"^boot reset_cause {WDT_RESET} ")
    assert 0.25 <= time.monotonic() - started <= 1.0
    assert [cause for _, cause in board.exits] == [HARD_RESET, WDT_RESET]


async def test_deep_sleep_powers_off_until_the_timer_or_a_pin(board: FirmwareProcess) -> None:
    await board.press(NAP_BUTTON, 0.02)
    asleep_at = time.monotonic()
    await board.wait_for_line(f"^boot reset_cause {DEEPSLEEP_RESET} wake {TIMER_WAKE} ")
    assert 0.2 <= time.monotonic() - asleep_at <= 0.5
    assert board.bridge.last_sleep is None  # cleared by the new boot

    await board.press(SLEEP_BUTTON, 0.02)
    async with asyncio.timeout(5):  # the link drops first, then the process is seen to end
        while board.bridge.linked or board.running:
            await asyncio.sleep(0.01)
    assert board.bridge.boots == 2
    # off with no timer armed (what the simulator was asked for, not a pause without a boot) ...
    assert board.bridge.deep_sleeps[-1][1] is None, board.bridge.deep_sleeps[-1]
    await board.press(BUTTON, 0.02)
    await board.wait_for_line(f"^boot reset_cause {DEEPSLEEP_RESET} wake {EXT0_WAKE} ")
    assert board.bridge.boots == 3  # ... so the pin's wake is the third boot, and the only one since

# What started this boot, read first thing (firmware/main.py imports this
# module before anything else of its own): the reset cause, the wake reason
# and, after a deep sleep ended by a button, which pins woke the chip.
#
# Which pins: machine.wake_pins() where MicroPython has it (1.29+, ESP32
# port, ESP32 and C3). Older ESP32 firmware: the EXT1 status register, which
# latches the RTC channels that woke the chip; ESP-IDF clears it when the next
# sleep is entered, not on wake, and MicroPython's start does not touch it, so
# it can be read at any time during this boot. The ESP32-C3 has no such
# fallback here: without wake_pins() its pendant light-sleeps (power.py).
#
# A button pressed for 60 ms while asleep is released again long before this
# code runs (the ROM and bootloader alone take about 300 ms unoptimised): the
# latched pins are the only record of which button it was.

import machine
from micropython import const

# ESP32: RTC_CNTL_EXT_WAKEUP1_STATUS_REG (DR_REG_RTCCNTL_BASE 0x3FF48000 + 0xD0),
# bits = RTC channels; the GPIO of each channel (esp-idf rtc_io_channel.h).
_EXT1_STATUS = const(0x3FF480D0)
_RTC_CHANNEL_GPIO = (36, 37, 38, 39, 34, 35, 25, 26, 33, 32, 4, 0, 2, 15, 13, 12, 14, 27)
GPIO_WAKE = const(7)  # ESP-IDF's ESP_SLEEP_WAKEUP_GPIO: the C3's GPIO wake


def pins_readable(kind):
    """True when this firmware can tell which pins woke it (kind: boards.BUTTONS_*)."""
    return hasattr(machine, "wake_pins") or kind == "ext1"


def _ext1_register_pins():
    bits = machine.mem32[_EXT1_STATUS]
    return tuple(gpio for channel, gpio in enumerate(_RTC_CHANNEL_GPIO) if bits >> channel & 1)


def read():
    """(reset_cause, wake_reason, pins): pins the GPIOs that ended a deep sleep, () if none."""
    cause = machine.reset_cause()
    reason = machine.wake_reason()
    pins = ()
    # Any pin wake (the C3's GPIO wake reason is GPIO_WAKE in ESP-IDF's numbering: not
    # among machine's constants, so not relied upon here).
    if cause == machine.DEEPSLEEP_RESET and reason not in (0, machine.TIMER_WAKE):
        get = getattr(machine, "wake_pins", None)
        if get is not None:
            pins = tuple(get())
        elif reason == machine.EXT1_WAKE:
            pins = _ext1_register_pins()
    return cause, reason, pins

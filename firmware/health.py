# The device's own health: the watchdog, the boot self-test's checks, and the
# fault path when a check fails.
#
# Self-test at every boot, in this order. All passed: one line "checks ok: ...";
# each problem: one line starting "self-test:" (FAIL or warning), and only then
# (the installer's pairing tool reads any "self-test:" line as a problem):
#   config   config.json present, valid, with a key          fatal
#   radio    the BLE stack comes up and gives a MAC address  fatal
#   crypto   AES-CCM gives the BTHome known answer           fatal
#   store    the counter file, if there is one, is readable  fatal (firmware/store.py: a
#            device that lost its counter must not send)
#   store    the event store file is readable                warning
#   battery  the reading is plausible (2.8-4.5 V)            warning
#   watchdog the last reset was not the watchdog's           warning
# Fatal: the fault pattern three times, then deep sleep for FAULT_RETRY_MS and
# a fresh boot (a radio that failed to start may start next time). The hub sees
# a device that has gone silent and raises device_offline.
# Warning: the device runs; the warning pattern plays once at power-on.

import asyncio
import time

import machine
from micropython import const

from safebox.protocol import bthome

from . import feedback

FAULT_RETRY_MS = const(3600000)
_FAULT_REPEAT = const(3)

# The BTHome v2 encryption example (bthome.io, checked against Home Assistant's
# parser): temperature 25.06 degC, humidity 50.55 %.
_KAT_KEY = b"\x23\x1d\x39\xc1\xd7\xcc\x1a\xb1\xae\xe2\x24\xcd\x09\x6d\xb9\x32"
_KAT_MAC = b"\x54\x48\xe6\x8f\x80\xa5"
_KAT_OBJECTS = ((bthome.OBJ_TEMPERATURE, 0x09CA), (bthome.OBJ_HUMIDITY, 0x13BF))
_KAT_FRAME = b"\x41\xe4\x45\xf3\xc9\x96\x2b\x33\x22\x11\x00\x6c\x7c\x45\x19"


class Watchdog:
    """machine.WDT: once started it cannot be stopped; a late feed resets the device."""

    def __init__(self, timeout_ms):
        self.timeout_ms = timeout_ms
        self._wdt = machine.WDT(timeout=timeout_ms)

    def feed(self):
        self._wdt.feed()

    async def run(self):
        while True:
            self._wdt.feed()
            await asyncio.sleep_ms(self.timeout_ms // 4)


def crypto_ok():
    try:
        return bthome.seal(_KAT_KEY, _KAT_MAC, 0x00112233, _KAT_OBJECTS, False) == _KAT_FRAME
    except Exception:
        return False


def fatal(what, why, pins, watchdog=None):
    """Report a failed self-test where a person can see it, then retry later."""
    print("self-test: FAIL %s: %s" % (what, why))
    print("self-test: retrying in %d s" % (FAULT_RETRY_MS // 1000))
    led = machine.Pin(pins["led"], machine.Pin.OUT, value=0)
    buzzer = machine.Pin(pins["buzzer"], machine.Pin.OUT, value=0)
    feed = watchdog.feed if watchdog is not None else None
    for _ in range(_FAULT_REPEAT):
        feedback.play_blocking(led, buzzer, feedback.pattern(feedback.FAULT), time.sleep_ms, feed)
    machine.deepsleep(FAULT_RETRY_MS)

# A debounced push button or contact on a GPIO interrupt.
#
# The filter, in ESPHome's terms (numbers in ms):
#   delayed_on  PRESS_MIN_MS  the input must stay active this long to count;
#                             a shorter press or a glitch is ignored
#   delayed_off RELEASE_MS    the input must stay inactive this long to end a press
#   settle      bounce inside either window restarts that window, so contact
#               bounce of up to BOUNCE_MAX_MS never makes two events
#   long press  LONG_MS       held this long: one long press, fired while still held;
#                             released earlier: one press, fired at release
# The interrupt only wakes the task; all timing is done by sampling the pin.

import asyncio
import time

from machine import Pin
from micropython import const

PRESS_MIN_MS = const(50)
RELEASE_MS = const(50)
BOUNCE_MAX_MS = const(50)
LONG_MS = const(2000)
_SAMPLE_MS = const(5)
_SETTLE_WINDOW_MS = const(PRESS_MIN_MS + BOUNCE_MAX_MS + 50)

PRESS = "press"
LONG_PRESS = "long_press"


class Button:
    def __init__(self, pin_no, name, on_event, active=0):
        self.name = name
        self._active = active
        self._on_event = on_event
        self._pin = Pin(pin_no, Pin.IN, Pin.PULL_UP if active == 0 else Pin.PULL_DOWN)
        self._flag = asyncio.ThreadSafeFlag()
        edge = Pin.IRQ_FALLING if active == 0 else Pin.IRQ_RISING
        self._pin.irq(lambda _p: self._flag.set(), edge)

    async def _hold(self, level, hold_ms, within_ms):
        """True once the pin has read `level` for hold_ms without a break,
        False if that has not happened within within_ms (None: wait forever)."""
        start = stable_since = time.ticks_ms()
        while True:
            now = time.ticks_ms()
            if self._pin.value() != level:
                stable_since = now
            elif time.ticks_diff(now, stable_since) >= hold_ms:
                return True
            if within_ms is not None and time.ticks_diff(now, start) >= within_ms:
                return False
            await asyncio.sleep_ms(_SAMPLE_MS)

    async def run(self):
        idle = 1 - self._active
        while True:
            await self._flag.wait()
            if not await self._hold(self._active, PRESS_MIN_MS, _SETTLE_WINDOW_MS):
                continue  # too short, or a glitch
            if await self._hold(idle, RELEASE_MS, LONG_MS):
                self._on_event(self.name, PRESS)
            else:
                self._on_event(self.name, LONG_PRESS)
                await self._hold(idle, RELEASE_MS, None)
            # Edges seen while we were timing the press belong to it.
            self._flag.clear()

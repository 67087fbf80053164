# Debounced inputs on GPIO interrupts: push buttons (pendant) and the reed
# contact (doors).
#
# The filters, in ESPHome's terms (numbers in ms; firmware/README.md has them
# for the installer):
#   button  delayed_on  PRESS_MIN_MS  the input must stay active this long to
#                                     count: a shorter press or a glitch is ignored
#           delayed_off RELEASE_MS    it must stay inactive this long to end a press
#           long press  LONG_MS       held this long: one long press, fired while
#                                     still held; released earlier: one press,
#                                     fired at release
#   contact delayed_on_off SETTLE_MS  a new level counts once it has held this
#                                     long; every change that holds is reported,
#                                     in order (open then closed within a second:
#                                     two events)
#   settle  an edge restarts the window it falls in, so contact bounce of up to
#           BOUNCE_MAX_MS never makes two events, nor an event at all when the
#           level comes back to where it was.
# Each edge interrupt stamps its time and wakes the task; the task also samples
# the pin every _SAMPLE_MS, so a missed interrupt costs at most one sample.
# A window is timed from the edge that opened it, not from when the task ran.

import asyncio
import time

from machine import Pin
from micropython import const

PRESS_MIN_MS = const(50)
RELEASE_MS = const(50)
LONG_MS = const(2000)
SETTLE_MS = const(50)
BOUNCE_MAX_MS = const(50)
STUCK_MS = const(10000)  # a button held longer is stuck (a pendant lain on): not "busy" any more
_SAMPLE_MS = const(5)
_PRESS_WINDOW_MS = const(PRESS_MIN_MS + BOUNCE_MAX_MS + 50)

PRESS = "press"
LONG_PRESS = "long_press"


class _Input:
    """A pin with an edge interrupt that stamps its time; `busy` while a change is being judged."""

    def __init__(self, pin_no, pull):
        self._pull = pull
        self._pin = Pin(pin_no, Pin.IN, pull)
        self._flag = asyncio.ThreadSafeFlag()
        self._edge_ms = time.ticks_ms()
        self.busy = False
        self.rearm()

    @property
    def pin(self):
        return self._pin

    def _irq(self, _pin):
        self._edge_ms = time.ticks_ms()
        self._flag.set()

    def rearm(self):
        """(Re)install the edge interrupt. After a light sleep that used this pin
        as its wake source the pad is given back to the GPIO matrix first."""
        self._pin.init(Pin.IN, self._pull)
        self._pin.irq(self._irq, Pin.IRQ_FALLING | Pin.IRQ_RISING)

    def poke(self):
        """Look at the pin now (after a wake: an edge during sleep may not have interrupted)."""
        self._flag.set()

    async def _settle(self, hold_ms, want=None, within_ms=None):
        """The level once it has held hold_ms with no edge; with `want`, False when
        `want` has not held that long within within_ms (None: wait as long as it takes)."""
        start = time.ticks_ms()
        edge = self._edge_ms
        level = self._pin.value()
        # An edge that just woke us opened the window: time it from the edge.
        since = edge if time.ticks_diff(start, edge) < _PRESS_WINDOW_MS else start
        while True:
            now = time.ticks_ms()
            v = self._pin.value()
            if self._edge_ms != edge or v != level:
                if self._edge_ms != edge:
                    edge = self._edge_ms
                    since = edge
                else:
                    since = now
                level = v
            if time.ticks_diff(now, since) >= hold_ms and (want is None or level == want):
                return level if want is None else True
            # Out of time: a change already under way may still finish (a button
            # released at 1990 ms is a press, though its release settles at 2040).
            if within_ms is not None and time.ticks_diff(now, start) >= within_ms and level != want:
                return False
            await asyncio.sleep_ms(_SAMPLE_MS)


class Button(_Input):
    """A push button to VCC (active 1, the pendant's wiring) or to GND (active 0);
    on_event(name, PRESS|LONG_PRESS).

    woke=True: this button ended a deep sleep (its pin is in the wake pins). Its press
    began before this boot and held long enough to wake the chip; it is counted as
    pressed (delayed_on cannot be timed across a boot). Already released when the pin is
    first read here: `released_in_sleep` is True and the role counts the press at once
    (the edges still to come are release bounce: shorter than PRESS_MIN_MS, they make no
    press). Still held: judged from here on, PRESS once the release has held RELEASE_MS,
    LONG_PRESS when still held LONG_MS after the firmware first looked. A button found
    held at start without having woken the chip (pressed during the boot) is judged as
    any press."""

    def __init__(self, pin_no, name, on_event, active=0, woke=False):
        self.name = name
        self._active = active
        self._on_event = on_event
        self.stuck = False
        super().__init__(pin_no, Pin.PULL_UP if active == 0 else Pin.PULL_DOWN)
        self._done_ms = self._edge_ms
        held = self._pin.value() == active
        self.released_in_sleep = woke and not held
        self._woke = woke and held
        if held:
            self.busy = True  # nothing may put the device to sleep before the task has judged it
            self.poke()

    def wants_attention(self):
        if self.stuck:
            return self._pin.value() != self._active  # released at last
        return self._woke or self._pin.value() == self._active

    async def run(self):
        idle = 1 - self._active
        while True:
            await self._flag.wait()
            woke, self._woke = self._woke, False
            if not woke and self._pin.value() != self._active and time.ticks_diff(self._edge_ms, self._done_ms) <= 0:
                self.busy = False
                continue  # nothing pressed, no edge since the last press was judged
            self.busy = True
            try:
                if not woke and not await self._settle(PRESS_MIN_MS, self._active, _PRESS_WINDOW_MS):
                    continue  # too short, or a glitch
                if await self._settle(RELEASE_MS, idle, LONG_MS - PRESS_MIN_MS):
                    self._on_event(self.name, PRESS)
                    continue
                self._on_event(self.name, LONG_PRESS)
                if not await self._settle(RELEASE_MS, idle, STUCK_MS):
                    self.stuck = True
                    print("input:", self.name, "stuck: held over", STUCK_MS, "ms")
                    self.busy = False
                    await self._settle(RELEASE_MS, idle)
                    self.stuck = False
                    print("input:", self.name, "released")
            finally:
                self.busy = False
                self._done_ms = time.ticks_ms()


class Contact(_Input):
    """A door contact; on_change(is_open) for every change that holds SETTLE_MS, in order.

    `state` is the last level reported, or the one found at start (not reported:
    the heartbeat carries it)."""

    def __init__(self, pin_no, on_change, open_level=0):
        self._on_change = on_change
        self._open_level = open_level
        super().__init__(pin_no, Pin.PULL_UP)
        self.state = self._pin.value()

    @property
    def is_open(self):
        return self.state == self._open_level

    def wants_attention(self):
        return self._pin.value() != self.state

    def wake_level(self):
        """The level that must wake a sleeping device: the other one."""
        return 1 - self._pin.value()

    async def run(self):
        # `state` is the level found at start (the device may sleep before this task
        # first runs: a change meanwhile must still be reported, against that level).
        while True:
            await self._flag.wait()
            self.busy = True
            try:
                level = await self._settle(SETTLE_MS)
                if level != self.state:
                    self.state = level
                    self._on_change(level == self._open_level)
            finally:
                self.busy = False

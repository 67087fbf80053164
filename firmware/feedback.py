# What the resident (and the installer) sees and hears. The patterns are the
# installer's leaflet in firmware/README.md; keep the two in step.
#
# Pendant (LED + active buzzer):
#   pressed     a 40 ms click, LED on            the press was taken
#   long press  two clicks                        held 2 s: a long press was taken
#   sending     LED blinks 100 ms on / 100 ms off while the pendant calls the hub
#   heard       one 150 ms beep, LED on for 2 s   the hub has the call
#   delivered   two short beeps                   the call centre has it
#   operator    three beeps, LED on 1.5 s         an operator has taken it up: help is coming
#   failed      three long beeps (0.6 s)          nobody reached after 30 s; it keeps trying
#   retry       one short blink at each new try after "failed"
#   battery low two short chirps after any of the above, and at power-on
# Door sensors (LED only: a door sensor never beeps at the resident):
#   heard       one 50 ms blink; failed: three blinks; battery low: two blinks
# Any device:
#   power-on    one 100 ms blink: self-test passed
#   warning     two 0.5 s blinks at power-on: it works, but the self-test found
#               something (stored events unreadable, battery reading odd, last
#               reset by the watchdog); the serial console says what
#   fault       five fast blinks and a 1 s tone, three times: the self-test
#               failed (not paired, radio, crypto); it tries again every hour
# One pattern plays at a time: a new one replaces the old; `then` queues one
# after it (battery low after heard).

import asyncio

from machine import Pin

IDLE = "idle"
PRESSED = "pressed"
LONG = "long"
SENDING = "sending"
HEARD = "heard"
DELIVERED = "delivered"
OPERATOR = "operator"
FAILED = "failed"
RETRY = "retry"
BATTERY_LOW = "battery_low"
BOOT_OK = "boot_ok"
WARNING = "warning"
FAULT = "fault"

# (led, buzzer, ms) steps; the last step's levels stay after it.
_PENDANT = {
    IDLE: ((0, 0, 0),),
    PRESSED: ((1, 1, 40), (1, 0, 0)),
    LONG: ((1, 1, 40), (1, 0, 60), (1, 1, 40), (1, 0, 0)),
    SENDING: ((1, 0, 100), (0, 0, 100)),
    HEARD: ((1, 1, 150), (1, 0, 1850), (0, 0, 0)),
    DELIVERED: ((1, 1, 100), (0, 0, 100), (1, 1, 100), (0, 0, 0)),
    OPERATOR: ((1, 1, 200), (1, 0, 100), (1, 1, 200), (1, 0, 100), (1, 1, 200), (1, 0, 1500), (0, 0, 0)),
    FAILED: ((1, 1, 600), (0, 0, 300), (1, 1, 600), (0, 0, 300), (1, 1, 600), (0, 0, 0)),
    RETRY: ((1, 0, 50), (0, 0, 0)),
    BATTERY_LOW: ((0, 0, 200), (0, 1, 50), (0, 0, 100), (0, 1, 50), (0, 0, 0)),
    BOOT_OK: ((1, 0, 100), (0, 0, 0)),
    WARNING: ((1, 0, 500), (0, 0, 500), (1, 0, 500), (0, 0, 0)),
    FAULT: ((1, 0, 100), (0, 0, 100), (1, 0, 100), (0, 0, 100), (1, 0, 100), (0, 0, 100),
            (1, 0, 100), (0, 0, 100), (1, 0, 100), (0, 0, 100), (0, 1, 1000), (0, 0, 500)),
}
_DOOR = {
    IDLE: ((0, 0, 0),),
    HEARD: ((1, 0, 50), (0, 0, 0)),
    FAILED: ((1, 0, 100), (0, 0, 100), (1, 0, 100), (0, 0, 100), (1, 0, 100), (0, 0, 0)),
    BATTERY_LOW: ((0, 0, 200), (1, 0, 50), (0, 0, 100), (1, 0, 50), (0, 0, 0)),
    BOOT_OK: _PENDANT[BOOT_OK],
    WARNING: _PENDANT[WARNING],
    FAULT: _PENDANT[FAULT],
}
_REPEAT = (SENDING,)
_TAKEN = (PRESSED, LONG)


def pattern(state, door=False):
    """The steps of `state` for this kind of device, or None when it shows nothing."""
    return (_DOOR if door else _PENDANT).get(state)


def play_blocking(led, buzzer, steps, sleep_ms, feed=None):
    """Play steps without asyncio (the fault path, before or instead of the event loop)."""
    for on, buzz, ms in steps:
        led.value(on)
        buzzer.value(buzz)
        if feed is not None:
            feed()
        if ms:
            sleep_ms(ms)
    led.value(0)
    buzzer.value(0)


class Feedback:
    def __init__(self, led_pin, buzzer_pin, door=False):
        self._led = Pin(led_pin, Pin.OUT, value=0)
        self._buzzer = Pin(buzzer_pin, Pin.OUT, value=0)
        self._door = door
        self._task = None
        self._queue = []
        self.state = IDLE
        self.busy = False  # a pattern that ends by itself is still playing

    def show(self, state, then=None):
        """Play `state` now (replacing what plays), then `then` if given."""
        if state == self.state and state in _REPEAT and self._task is not None:
            return
        steps = pattern(state, self._door)
        if steps is None:
            if then is None:
                return
            state, steps, then = then, pattern(then, self._door), None
            if steps is None:
                return
        if self.busy and self.state in _TAKEN and state in _REPEAT:
            self._queue = [state]  # the click of a press is not cut short by "sending"
            return
        if self._task is not None:
            self._task.cancel()
        self.state = state
        self._queue = [] if then is None or pattern(then, self._door) is None else [then]
        self.busy = state not in _REPEAT and len(steps) > 1
        self._task = asyncio.create_task(self._play(steps, state in _REPEAT))

    def stop(self):
        """End a repeating pattern (the device is about to sleep)."""
        if self.state in _REPEAT:
            self.show(IDLE)

    async def _play(self, steps, repeat):
        # A cancelled pattern leaves the pins alone: the one replacing it sets them.
        while True:
            for led, buzz, ms in steps:
                self._led.value(led)
                self._buzzer.value(buzz)
                if ms:
                    await asyncio.sleep_ms(ms)
            if repeat:
                continue
            if not self._queue:
                break
            self.state = self._queue.pop(0)
            steps = pattern(self.state, self._door)
            repeat = self.state in _REPEAT
            self.busy = not repeat
        self.busy = False
        self._task = None

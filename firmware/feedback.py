# What the resident sees and hears. Patterns (for the installer's leaflet):
#   sending   LED blinks fast (100 ms on, 100 ms off) until the hub answers
#   heard     LED on for 2 s, one short beep: the hub has the call
#   delivered two short beeps: the call centre has it
#   failed    three long beeps, LED blinks slowly: nobody could be reached yet;
#             the device keeps trying by itself
# One pattern plays at a time; a new state replaces the old one.

import asyncio

from machine import Pin

SENDING = "sending"
HEARD = "heard"
DELIVERED = "delivered"
FAILED = "failed"
IDLE = "idle"

# (led, buzzer, ms) steps; a pattern whose name is in _REPEAT loops.
_PATTERNS = {
    SENDING: ((1, 0, 100), (0, 0, 100)),
    HEARD: ((1, 1, 150), (1, 0, 1850), (0, 0, 0)),
    DELIVERED: ((0, 1, 100), (0, 0, 100), (0, 1, 100), (0, 0, 0)),
    FAILED: ((1, 1, 600), (0, 0, 300), (1, 1, 600), (0, 0, 300), (1, 1, 600), (0, 0, 1000)),
    IDLE: ((0, 0, 0),),
}
_REPEAT = (SENDING, FAILED)


class Feedback:
    def __init__(self, led_pin, buzzer_pin):
        self._led = Pin(led_pin, Pin.OUT, value=0)
        self._buzzer = Pin(buzzer_pin, Pin.OUT, value=0)
        self._task = None
        self.state = IDLE

    def show(self, state):
        if state == self.state and state in _REPEAT:
            return
        self.state = state
        if self._task is not None:
            self._task.cancel()
        self._task = asyncio.create_task(self._play(_PATTERNS[state], state in _REPEAT))

    async def _play(self, steps, repeat):
        try:
            while True:
                for led, buzz, ms in steps:
                    self._led.value(led)
                    self._buzzer.value(buzz)
                    if ms:
                        await asyncio.sleep_ms(ms)
                if not repeat:
                    return
        finally:
            self._led.value(0)
            self._buzzer.value(0)

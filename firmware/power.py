# Battery level, and sleep between events: deep when idle, light while
# something is under way.
#
# Sleep: when nothing is to be sent, no input is being judged, no feedback is
# playing and no central is connected, the device switches the radio off and
# sleeps until the next heartbeat is due or an input wakes it. Light sleep keeps
# RAM, the asyncio tasks and the pins' state (used while an event is retried or
# lingers for its acks, and by doors for a while after each change):
#   ext0 boards (doors): machine.lightsleep(ms) in slices of at most _SLICE_MS,
#     with the contact armed at the level it does not have now.
#   pendant, ext1 (ESP32): the same slices, EXT1 armed ANY_HIGH on the three
#     buttons (esp32.wake_on_ext1); gpio (C3): esp32.wake_on_gpio likewise.
#   poll boards (C3 doors): slices of _POLL_MS, the inputs read after each one.
# Pendant deep sleep (set_buttons with deep=True): whenever it is idle, with
# the same wake source armed and the timer at the next heartbeat; the wake is a
# fresh boot and firmware/wake.py says which buttons ended it.
# The watchdog is fed between slices, whether or not it runs during sleep.
# Doors on ext0 boards deep-sleep when idle (set_deep): nothing pending, nothing
# being judged, and awake_after_event_ms since the last change. The state last
# reported goes to flash, EXT0 is armed on the contact at the other level and
# the timer at the next heartbeat; the wake is a fresh boot (firmware/door.py
# compares the pin with the saved state, firmware/main.py sends the heartbeat
# after a timer wake).
# Sleeping never cuts a radio exchange short: the sender only rests when it
# is not advertising, and the radio is off before the first slice.

import time

import esp32  # the ESP32 port's own module (wake_on_ext1, wake_on_gpio); the simulator has shims
import machine
from machine import ADC, Pin
from micropython import const

from .boards import BUTTONS_EXT1, BUTTONS_GPIO, WAKE_EXT0

_EMPTY_MV = const(3300)  # a Li-ion cell under load; below this the radio browns out
_FULL_MV = const(4150)
_SLICE_MS = const(4000)  # under half the shortest watchdog timeout allowed (config: wdt_ms >= 1000 -> capped below)
_POLL_MS = const(30)  # poll boards: a press of PRESS_MIN_MS + _POLL_MS is always seen
_STUCK_POLL_MS = const(100)  # a stuck button holds the wake line: poll the buttons instead
PLAUSIBLE_MV = (2800, 4500)


class Battery:
    def __init__(self, adc_pin):
        # 11 dB: the pin sees up to ~2.45 V (calibrated by read_uv); a full cell
        # behind the 1:2 divider gives 2.1 V.
        self._adc = ADC(Pin(adc_pin), atten=ADC.ATTN_11DB)
        self.last_mv = 0

    def millivolts(self):
        self.last_mv = self._adc.read_uv() * 2 // 1000
        return self.last_mv

    def percent(self):
        mv = self.millivolts()
        pct = (mv - _EMPTY_MV) * 100 // (_FULL_MV - _EMPTY_MV)
        return max(0, min(100, pct))


class Power:
    """Decides when the device may sleep, and sleeps."""

    def __init__(self, mode, radio, inputs, feedback, watchdog, wake=None, enabled=True):
        self._mode = mode
        self._radio = radio
        self._inputs = inputs  # each has busy, wants_attention(), poke(), rearm()
        self._fb = feedback
        self._wdt = watchdog
        self._wake = wake  # ext0: (Pin, level or None: ask the input `wake_from`)
        self._wake_from = None
        self.enabled = enabled
        self.slept_ms = 0
        self.sleeps = 0
        self._deep = None  # doors on ext0 boards: the Contact whose state a deep sleep keeps
        self._save_state = None  # and save_state(level) -> bool, which puts it on flash
        self._awake_after_ms = 0
        self._awake_until = time.ticks_ms()
        self._buttons = None  # the pendant: the button pins that wake it, when the chip can
        self._buttons_deep = False

    def set_buttons(self, pins, kind, deep):
        """The pendant: any of `pins` going high wakes it (kind: boards.BUTTONS_EXT1 or
        BUTTONS_GPIO); deep: deep-sleep whenever idle (else light sleep only)."""
        if kind not in (BUTTONS_EXT1, BUTTONS_GPIO) or not hasattr(esp32, "wake_on_" + kind):
            return  # e.g. a C3 on MicroPython before 1.27 (no wake_on_gpio): light sleep, polling
        self._mode = kind
        self._buttons = tuple(pins)
        self._buttons_deep = deep

    @property
    def wakes_on_buttons(self):
        return self._buttons is not None

    def _arm_buttons(self, on):
        # An empty tuple clears the source. Both sources serve light and deep sleep.
        pins = self._buttons if on else ()
        if self._mode == BUTTONS_EXT1:
            esp32.wake_on_ext1(pins, esp32.WAKEUP_ANY_HIGH)
        else:
            esp32.wake_on_gpio(pins, esp32.WAKEUP_ANY_HIGH)

    def set_wake(self, pin_no, level=None, wake_from=None):
        """ext0: wake on `pin_no` at `level`, or at wake_from.wake_level() when None."""
        self._wake = (Pin(pin_no, Pin.IN, Pin.PULL_UP) if wake_from is None else wake_from.pin, level)
        self._wake_from = wake_from

    def set_deep(self, contact, save_state, awake_after_ms):
        """Doors: deep sleep when idle, woken by `contact` leaving the state last reported
        (EXT0) or by the timer. save_state(level) puts that state on flash first (the next
        boot compares the pin with it); light sleep only for awake_after_ms after a change."""
        if self._mode == WAKE_EXT0:
            self._deep = contact
            self._save_state = save_state
            self._awake_after_ms = awake_after_ms

    def stay_awake(self):
        """A change was just reported: light sleep only, for awake_after_ms, so that the
        running firmware sees the door close again (no deep-sleep boot to miss it in)."""
        self._awake_until = time.ticks_add(time.ticks_ms(), self._awake_after_ms)

    def deep_in(self):
        """ms until deep sleep is allowed (0 or less: now); None: not now, nor later on its own."""
        if self._buttons is not None:
            # a stuck button would end a deep sleep at once: light sleep, polling, until released
            return 0 if self._buttons_deep and not self._stuck() else None
        if self._deep is None:
            return None
        return time.ticks_diff(self._awake_until, time.ticks_ms())

    def deep_sleep(self, ms, why=""):
        """Deep-sleep up to `ms`: a fresh boot follows (DEEPSLEEP_RESET, wake_reason TIMER_WAKE,
        EXT0_WAKE (a door) or a button's). Returns (without sleeping) only when a door's state
        could not be saved."""
        if self._buttons is not None:
            self._fb.stop()
            self._radio.off()
            self._arm_buttons(True)
            print("deepsleep", ms, why)
            self._wdt.feed()
            machine.deepsleep(max(1, ms))
            return
        contact = self._deep
        if contact is None or self._save_state is None or not self._save_state(contact.state):
            return
        self._fb.stop()
        self._radio.off()
        level = 1 - contact.state
        contact.pin.irq(trigger=Pin.WAKE_HIGH if level else Pin.WAKE_LOW, wake=machine.DEEPSLEEP)
        print("deepsleep", ms, why)
        self._wdt.feed()
        machine.deepsleep(max(1, ms))

    def quiet(self):
        """True when nothing would be cut short by sleeping now."""
        if self._radio.connections or self._fb.busy:
            return False
        for i in self._inputs:
            if i.busy or i.wants_attention():
                return False
        return not self._wake_line_active()

    def _wake_line_active(self):
        # The pendant's wake line is low while any button is down, even before
        # that button's own pin has been read (a stuck button excepted).
        if self._mode != WAKE_EXT0 or self._wake is None or self._wake[1] is None or self._stuck():
            return False
        return self._wake[0].value() == self._wake[1]

    def _attention(self):
        if self._wake_line_active():
            return True
        for i in self._inputs:
            if i.wants_attention():
                return True
        return False

    def _stuck(self):
        for i in self._inputs:
            if getattr(i, "stuck", False):
                return True
        return False

    def _arm(self):
        if self._buttons is not None:
            stuck = self._stuck()
            self._arm_buttons(not stuck)  # a stuck button would end every sleep at once
            return _STUCK_POLL_MS if stuck else _SLICE_MS
        if self._mode != WAKE_EXT0 or self._wake is None:
            return _POLL_MS
        pin, level = self._wake
        if self._stuck():
            # the wake line is held low: EXT0 would end every sleep at once
            pin.irq(None, Pin.IRQ_FALLING)  # an edge trigger disarms EXT0 on that pin
            return _STUCK_POLL_MS
        if level is None:
            level = self._wake_from.wake_level() if self._wake_from is not None else 0
        pin.irq(trigger=Pin.WAKE_HIGH if level else Pin.WAKE_LOW, wake=machine.SLEEP)
        return _SLICE_MS

    def sleep(self, ms, why=""):
        """Light-sleep up to `ms` (radio off); "pin" when an input woke us, else "timer"."""
        self._fb.stop()
        self._radio.off()
        slice_ms = min(self._arm(), self._wdt.timeout_ms // 2)
        start = time.ticks_ms()
        print("sleep", ms, why)
        woke = "timer"
        while True:
            left = ms - time.ticks_diff(time.ticks_ms(), start)
            if left <= 0:
                break
            if self._attention():
                woke = "pin"
                break
            self._wdt.feed()
            machine.lightsleep(min(left, slice_ms))
        self._wdt.feed()
        slept = time.ticks_diff(time.ticks_ms(), start)
        self.slept_ms += slept
        self.sleeps += 1
        if self._wake_from is not None:
            self._wake_from.rearm()
        if self._buttons is not None:
            # ESP-IDF routes EXT1's pads to the RTC domain for the sleep: give them back
            for i in self._inputs:
                i.rearm()
        for i in self._inputs:
            i.poke()
        print("woke", woke, slept)
        return woke

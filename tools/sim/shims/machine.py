# MicroPython's `machine` module for the simulator, with ESP32 constant values.
# MicroPython subset: runs on the `micropython` unix binary only (first on MICROPYPATH,
# it shadows the unix port's own minimal `machine`).
#
# The simulator drives inputs and watches outputs over the shared link (_simlink):
#   in:  {"op": "pin", "pin": N, "value": 0|1}   set an input level; a matching edge
#                                                 calls the Pin.irq handler
#        {"op": "adc", "pin": N, "uv": U}         what ADC(Pin(N)).read_uv() returns
#   out: {"op": "pin_out", "pin": N, "value": v}  every write to a pin
#        {"op": "pin_mode", ...}, {"op": "pwm", ...}, {"op": "wdt", ...},
#        {"op": "wdt_feed"}, {"op": "sleep", ...}, {"op": "reset", ...}
# Pin IRQ handlers run from the link's asyncio task, one at a time, as
# `micropython.schedule` would run a soft IRQ; an exception is printed, the program goes on.
#
# Resets end the process with a distinct exit code (_machineapi.EXIT_*) and the simulator
# starts it again with SAFEBOX_SIM_RESET_CAUSE set, which reset_cause() reports. They
# raise SystemExit: firmware with a bare `except:` around them would swallow a reset
# that nothing stops on a board.
# The watchdog is enforced by the simulator, not here: WDT() and feed() send notices
# and the simulator kills and restarts a process whose feed is late. An asyncio task
# or a check on each call could not fire while the firmware hangs, and catching a
# hang is what a watchdog is for.
# Wake sources, as on the ESP32 port: Pin.irq(trigger=Pin.WAKE_LOW or WAKE_HIGH,
# wake=SLEEP and/or DEEPSLEEP) arms EXT0 on that pin (one pin per device: another
# raises "no resources") and leaves the pin's edge handler as it was; Pin.irq with an
# edge trigger on that pin disarms it. lightsleep(ms) ends early, with wake_reason()
# EXT0_WAKE, when the armed pin is at its level (at once if it already is).
# deepsleep(ms) with EXT0 armed for DEEPSLEEP ends at ms or when the pin reaches its level
# (the simulator boots it with wake_reason TIMER_WAKE or EXT0_WAKE).
# EXT1 and the C3's GPIO wake (the esp32 shim's wake_on_ext1/wake_on_gpio, ANY_HIGH or
# ALL_LOW on several pins) end light sleep (wake_reason EXT1_WAKE / 7) and deep sleep; after a
# deep sleep they ended, wake_pins() gives the pins that were at the level at the moment of the
# wake (SAFEBOX_SIM_WAKE_PINS, set by the simulator), and so does the ESP32's EXT1 status
# register through mem32 (SAFEBOX_SIM_NO_WAKE_PINS=1 removes wake_pins(), as on 1.28).
# Not modelled: Timer, RTC, I2C/SPI/UART, disable_irq (a no-op returning 0).
import sys
import time
import _simlink

from _machineapi import (  # noqa: F401 (the module's public names)
    DEEPSLEEP,
    DEEPSLEEP_RESET,
    EXT0_WAKE,
    EXIT_DEEPSLEEP,
    EXIT_RESET,
    EXIT_SOFT_RESET,
    EXT1_WAKE,
    HARD_RESET,
    PIN_WAKE,
    PWRON_RESET,
    SLEEP,
    SOFT_RESET,
    TIMER_WAKE,
    TOUCHPAD_WAKE,
    ULP_WAKE,
    WDT_RESET,
    ADCBase,
    PinBase,
    PWMBase,
    pin_id,
)


_levels = {}  # input level per pin id, as last set by the simulator
_ext0 = [None, 0, 0]  # EXT0 wake source: pin id (None: unarmed), level, wake types
_ext1 = [(), 1, EXT1_WAKE]  # EXT1 / GPIO wake: pin ids, level (1 ANY_HIGH, 0 ALL_LOW), wake reason
_light_wake = [0]  # wake_reason() after a light sleep
_adc_uv = {}  # ADC input per pin id, microvolts
_freq = [160000000]


class Pin(PinBase):
    _table = {}

    def _configured(self, changed):
        if changed:
            _simlink.notify({"op": "pin_mode", "pin": self._id, "mode": self._mode, "pull": self._pull})
        if not self._is_output():
            _simlink.ensure_reader()  # so a polled input follows the simulator, too

    def _input(self, default):
        return _levels.get(self._id, default)

    def _drive(self, level):
        _simlink.notify({"op": "pin_out", "pin": self._id, "value": level})

    def _ext0(self):
        return None if _ext0[0] is None else tuple(_ext0)

    def _arm_ext0(self, source):
        if source is None:
            _ext0[0] = None
        else:
            _ext0[0], _ext0[1], _ext0[2] = source

    def _listen(self):
        _simlink.ensure_reader()


def _call(handler, pin):
    try:
        handler(pin)
    except Exception as e:
        print("Uncaught exception in IRQ callback handler")
        sys.print_exception(e)


def _on_pin(msg):
    pid = msg["pin"]
    pin = Pin._table.get(pid)
    old = pin._level() if pin is not None else None
    _levels[pid] = 1 if msg["value"] else 0
    if pin is not None and old != _levels[pid]:
        pin._edge(_levels[pid], _call)


def _on_adc(msg):
    _adc_uv[msg["pin"]] = msg["uv"]


_simlink.on("pin", _on_pin)
_simlink.on("adc", _on_adc)
for _pin, _value in _simlink.boot_state("pins"):
    _levels[_pin] = _value
for _pin, _value in _simlink.boot_state("adc"):
    _adc_uv[_pin] = _value


class PWM(PWMBase):
    def _output(self, freq, duty_u16):
        _simlink.notify({"op": "pwm", "pin": self._pin, "freq": freq, "duty_u16": duty_u16})


class ADC(ADCBase):
    def _input_uv(self):
        return _adc_uv.get(self._pin, 0)


class WDT:
    def __init__(self, id=0, timeout=5000):
        if timeout <= 0:
            raise ValueError("WDT timeout too short")
        self._timeout = timeout
        _simlink.notify({"op": "wdt", "timeout_ms": timeout})

    def feed(self):
        _simlink.notify({"op": "wdt_feed"})


def unique_id():
    return _simlink.mac_bytes()


def reset_cause():
    return int(_simlink.env("SAFEBOX_SIM_RESET_CAUSE", str(PWRON_RESET)))


def wake_reason():
    if _light_wake[0]:
        return _light_wake[0]
    return int(_simlink.env("SAFEBOX_SIM_WAKE_REASON", "0"))


def reset():
    _simlink.notify({"op": "reset", "cause": HARD_RESET})
    sys.exit(EXIT_RESET)


def soft_reset():
    _simlink.notify({"op": "reset", "cause": SOFT_RESET})
    sys.exit(EXIT_SOFT_RESET)


def _arm_ext1(pins, level, reason):
    # esp32.wake_on_ext1/wake_on_gpio: () or None clears the source.
    _ext1[0] = tuple(pin_id(p) for p in pins or ())
    _ext1[1] = 1 if level else 0
    _ext1[2] = reason


def _ext1_at_level():
    """The armed EXT1/GPIO pins at their level ((): the source would not fire now)."""
    if not _ext1[0]:
        return ()
    at = tuple(p for p in _ext1[0] if (Pin._table[p]._level() if p in Pin._table else _levels.get(p, 0)) == _ext1[1])
    if _ext1[1] == 0 and len(at) < len(_ext1[0]):  # ALL_LOW: every pin, or nothing
        return ()
    return at


def _wake_pins():
    text = _simlink.env("SAFEBOX_SIM_WAKE_PINS", "")
    return tuple(int(p) for p in text.split(",") if p)


_EXT1_STATUS = const(0x3FF480D0)  # ESP32 RTC_CNTL_EXT_WAKEUP1_STATUS_REG
_RTC_CHANNEL_GPIO = (36, 37, 38, 39, 34, 35, 25, 26, 33, 32, 4, 0, 2, 15, 13, 12, 14, 27)


class _Mem32:
    # Only the EXT1 status register: the RTC channels of the pins that ended the deep sleep.
    def __getitem__(self, addr):
        if addr != _EXT1_STATUS:
            raise ValueError("address not modelled by the simulator: 0x%x" % addr)
        bits = 0
        for p in _wake_pins():
            if p in _RTC_CHANNEL_GPIO:
                bits |= 1 << _RTC_CHANNEL_GPIO.index(p)
        return bits


mem32 = _Mem32()

if not _simlink.env("SAFEBOX_SIM_NO_WAKE_PINS"):  # else MicroPython 1.28: no wake_pins(), the register
    wake_pins = _wake_pins


def deepsleep(time_ms=None):
    # The device is off while it sleeps: the simulator holds the restart for time_ms
    # (or until a pin is driven, when no time is given) and boots it with DEEPSLEEP_RESET.
    # An EXT0 source armed for DEEPSLEEP ends it early (wake_reason EXT0_WAKE) when its pin
    # reaches its level; "wake" is [pin, level, already at it].
    msg = {"op": "sleep", "kind": "deep", "ms": time_ms}
    if _ext0[0] is not None and _ext0[2] & DEEPSLEEP:
        msg["wake"] = [_ext0[0], _ext0[1], 1 if _ext0_reached() else 0]
    if _ext1[0]:
        msg["wake1"] = [list(_ext1[0]), _ext1[1], _ext1[2]]
    _simlink.notify(msg)
    sys.exit(EXIT_DEEPSLEEP)


def _ext0_reached():
    pin = Pin._table.get(_ext0[0])
    return pin is not None and pin._level() == _ext0[1]


def lightsleep(time_ms=None):
    _simlink.notify({"op": "sleep", "kind": "light", "ms": time_ms})
    _light_wake[0] = TIMER_WAKE
    if _ext1[0]:
        start = time.ticks_ms()
        while not _ext1_at_level():
            if time_ms is None:
                _simlink.pump(-1)
                continue
            left = time_ms - time.ticks_diff(time.ticks_ms(), start)
            if left <= 0:
                return
            _simlink.pump(left)
        _light_wake[0] = _ext1[2]
        return
    if _ext0[0] is not None and _ext0[2] & SLEEP:
        # Events that arrive meanwhile are dispatched (edge handlers run, as their
        # interrupts would on waking); a wake pin at its level ends the sleep.
        start = time.ticks_ms()
        while not _ext0_reached():
            if time_ms is None:
                _simlink.pump(-1)
                continue
            left = time_ms - time.ticks_diff(time.ticks_ms(), start)
            if left <= 0:
                return
            _simlink.pump(left)
        _light_wake[0] = EXT0_WAKE
        return
    if time_ms is None:
        _simlink.pump(-1)
    else:
        time.sleep_ms(time_ms)
        _simlink.pump(0)


def idle():
    _simlink.pump(1)


def freq(hz=None):
    if hz is None:
        return _freq[0]
    _freq[0] = hz


def disable_irq():
    return 0


def enable_irq(state=0):
    pass

"""`machine` for one boot (see loader.py), ESP32 constant values.

Inputs (pin levels, ADC microvolts) belong to the board and are driven by the
scenario (`PortDevice.set_pin`/`set_adc`); an edge calls the Pin.irq handler from the
event loop, as micropython.schedule would. Outputs are recorded on the board.
Resets end the boot (`Reset`) and boot again: reset() at once with HARD_RESET, a late
watchdog with WDT_RESET, deepsleep(ms) after ms with DEEPSLEEP_RESET (without ms: at
the next input change, wake_reason EXT0_WAKE; deepsleep(ms) with an EXT0 pin armed: at ms or
when that pin reaches its level, whichever is first).
"""

from safebox.tools.sim.cpython_port import device as _dev

from safebox.tools.sim.shims._machineapi import (  # noqa: F401 (the module's public names)
    DEEPSLEEP,
    DEEPSLEEP_RESET,
    EXT0_WAKE,
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

_board = _boot.device  # noqa: F821 (set by the loader)


class Pin(PinBase):
    _table = {}

    def _alive(self):
        _boot.check_alive()  # noqa: F821

    def _input(self, default):
        return _board.pin_levels.get(self._id, default)

    def _drive(self, level):
        _board.output(self._id, level)

    def _ext0(self):
        return _board.ext0

    def _arm_ext0(self, source):
        _board.ext0 = source


_last = {}


def _on_input(pin_id, level):
    pin = Pin._table.get(pin_id)
    old = _last.get(pin_id)
    if old is None:
        old = 1 if pin is not None and pin._pull == Pin.PULL_UP else 0
    _last[pin_id] = level
    if pin is not None and old != level:
        pin._edge(level, _boot.call_soon)  # noqa: F821


_board.on_pin(_on_input)
_boot.closers.append(lambda: _board._pin_listeners.remove(_on_input))  # noqa: F821
for _pin, _level in _board.pin_levels.items():
    _last[_pin] = _level


class PWM(PWMBase):
    def _output(self, freq, duty_u16):
        _boot.check_alive()  # noqa: F821
        _board.output(self._pin, duty_u16, "pwm")


class ADC(ADCBase):
    def _input_uv(self):
        _boot.check_alive()  # noqa: F821
        return _board.adc_uv.get(self._pin, 0)


class WDT:
    def __init__(self, id=0, timeout=5000):
        if timeout <= 0:
            raise ValueError("WDT timeout too short")
        _boot.wdt_timeout_s = timeout / 1000  # noqa: F821
        _boot.feed_watchdog()  # noqa: F821

    def feed(self):
        _boot.check_alive()  # noqa: F821
        _boot.feed_watchdog()  # noqa: F821


def unique_id():
    return bytes(int(p, 16) for p in _board.mac.split(":"))


def reset_cause():
    return _boot.reset_cause  # noqa: F821


def wake_reason():
    return _boot.wake_reason  # noqa: F821


def wake_pins():
    return tuple(_boot.wake_pins)  # noqa: F821


def reset():
    _board.reset(HARD_RESET)
    raise _dev.Reset("machine.reset()")


def soft_reset():
    _board.reset(SOFT_RESET)
    raise _dev.Reset("machine.soft_reset()")


def deepsleep(time_ms=None):
    # An armed EXT0 source (Pin.irq(trigger=WAKE_LOW/WAKE_HIGH, wake=...)) ends a timed deep
    # sleep early, with wake_reason EXT0_WAKE, when its pin reaches its level.
    _board.reset(DEEPSLEEP_RESET, None if time_ms is None else time_ms / 1000, TIMER_WAKE,
                 wake_pins=_board.ext0_for(DEEPSLEEP), ext1=_board.ext1)
    raise _dev.Reset("machine.deepsleep()")


def lightsleep(time_ms=None):
    # The whole board stops until time_ms has passed or an armed wake pin reaches its level.
    _boot.pause(None if time_ms is None else time_ms / 1000, wake_pins=True)  # noqa: F821


def idle():
    _boot.check_alive()  # noqa: F821


def freq(hz=None):
    return 240_000_000 if hz is None else None


def disable_irq():
    return 0


def enable_irq(state=0):
    pass

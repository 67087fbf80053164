# MicroPython's `esp32` module for the simulator: the wake sources the firmware uses.
# MicroPython subset: runs on the `micropython` binary (first on MICROPYPATH).
#   wake_on_ext1(pins, level)  ESP32 EXT1: RTC pins only; WAKEUP_ANY_HIGH (any pin high) or
#                              WAKEUP_ALL_LOW (every pin low); ends light and deep sleep;
#                              wake_reason() EXT1_WAKE, machine.wake_pins() after a deep sleep
#   wake_on_gpio(pins, level)  ESP32-C3 GPIO wake: GPIO0-5 only; wake_reason() 7 (ESP-IDF's
#                              ESP_SLEEP_WAKEUP_GPIO)
# pins () or None clears the source. The pin levels and the sleeps are machine's (shims/machine.py).
import machine

WAKEUP_ALL_LOW = False
WAKEUP_ANY_HIGH = True

_RTC_GPIOS = (0, 2, 4, 12, 13, 14, 15, 25, 26, 27, 32, 33, 34, 35, 36, 37, 38, 39)
_GPIO_WAKE = 7


def _ids(pins):
    return [machine.pin_id(p) for p in pins or ()]


def wake_on_ext1(pins, level):
    for p in _ids(pins):
        if p not in _RTC_GPIOS:
            raise ValueError("invalid pin for wake")
    machine._arm_ext1(pins, level, machine.EXT1_WAKE)


def wake_on_gpio(pins, level):
    for p in _ids(pins):
        if not 0 <= p <= 5:
            raise ValueError("invalid pin for wake")
    machine._arm_ext1(pins, level, _GPIO_WAKE)


def wake_on_ext0(pin, level):
    if pin is None:
        return
    machine.Pin(machine.pin_id(pin)).irq(trigger=machine.Pin.WAKE_HIGH if level else machine.Pin.WAKE_LOW,
                                         wake=machine.SLEEP | machine.DEEPSLEEP)

"""`esp32` for one boot (see loader.py): the wake sources the firmware uses, as the
micropython-binary shim (tools/sim/shims/esp32.py) has them. wake_on_ext1 (RTC pins) and
wake_on_gpio (the C3: GPIO0-5) arm the board's EXT1/GPIO source: ANY_HIGH (any pin high) or
ALL_LOW (every pin low) ends light sleep and deep sleep; after a deep sleep, machine.wake_pins()
gives the pins that were at the level. () or None clears the source.
"""

_board = _boot.device  # noqa: F821 (set by the loader)

WAKEUP_ALL_LOW = False
WAKEUP_ANY_HIGH = True

_RTC_GPIOS = (0, 2, 4, 12, 13, 14, 15, 25, 26, 27, 32, 33, 34, 35, 36, 37, 38, 39)
_EXT1_WAKE = 3
_GPIO_WAKE = 7  # ESP-IDF's ESP_SLEEP_WAKEUP_GPIO


def _ids(pins):
    return tuple(p._id if hasattr(p, "_id") else p for p in pins or ())


def _arm(pins, level, reason):
    _boot.check_alive()  # noqa: F821
    ids = _ids(pins)
    _board.ext1 = (ids, 1 if level else 0, reason) if ids else None


def wake_on_ext1(pins, level):
    if any(p not in _RTC_GPIOS for p in _ids(pins)):
        raise ValueError("invalid pin for wake")
    _arm(pins, level, _EXT1_WAKE)


def wake_on_gpio(pins, level):
    if any(not 0 <= p <= 5 for p in _ids(pins)):
        raise ValueError("invalid pin for wake")
    _arm(pins, level, _GPIO_WAKE)

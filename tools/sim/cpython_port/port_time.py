"""`time` for one boot (see loader.py): MicroPython's ticks on the event loop's clock.

ticks_ms() counts from power-on and wraps at 2**30 as on the ESP32. time() is the
RTC: seconds since 2000-01-01 (MicroPython's ESP32 epoch), unset at power-on, so it
starts at 0, as on a board without a clock source. A blocking sleep cannot stop the
other simulated parts: outside a task it moves this board's clock ahead (nothing else
happens for it meanwhile, as on a board busy-waiting); inside a task the whole board
stops for that long instead while the world goes on (device.Boot.pause).
"""

_PERIOD = 1 << 30
_MASK = _PERIOD - 1
_HALF = _PERIOD // 2


def _uptime_s():
    _boot.check_alive()  # noqa: F821 (set by the loader)
    return _boot.uptime_s()  # noqa: F821


def ticks_ms():
    return int(_uptime_s() * 1000) & _MASK


def ticks_us():
    return int(_uptime_s() * 1_000_000) & _MASK


def ticks_cpu():
    return ticks_us()


def ticks_add(ticks, delta):
    return (ticks + delta) & _MASK


def ticks_diff(ticks1, ticks2):
    return ((ticks1 - ticks2 + _HALF) & _MASK) - _HALF


def time():
    return int(_uptime_s())


def time_ns():
    return int(_uptime_s() * 1_000_000_000)


def sleep(seconds):
    # The board blocks: it stops, the world goes on (see device.Boot.pause).
    _boot.pause(max(0.0, float(seconds)), wake_pins=False)  # noqa: F821


def sleep_ms(ms):
    sleep(ms / 1000)


def sleep_us(us):
    sleep(us / 1_000_000)

# The device's config.json, written at install time (pairing), never edited
# by hand: role, board, pins and the device key, and a few settings whose
# defaults are the production values (tests shorten some of them). A bad
# config stops the device with a reason, reported by the boot self-test.

import json

from safebox.protocol import bthome

from .boards import BOARDS, NOT_PINS, ROLE_PINS

ROLES = ("pendant", "front_door", "toilet_door")
PATH = "config.json"

# name: (default, lowest, highest). Times in ms unless the name says _s.
_SETTINGS = {
    "heartbeat_s": (3600, 1, 86400),  # supervision: the hub flags a device after 3 missed
    "battery_low_pct": (20, 1, 99),  # below this the resident is told (and the hub sees the %)
    "wdt_ms": (10000, 1000, 60000),  # watchdog timeout
    "max_pending": (32, 1, 64),  # events kept on flash until acknowledged
    "failed_after_ms": (30000, 1000, 600000),  # no "heard" this long: "could not reach anyone"
    "retry_max_ms": (60000, 1000, 3600000),  # cap of the re-send backoff
    "linger_ms": (None, 0, 120000),  # after "heard", wait this long for "delivered" (None: role default)
    "contact_open_level": (0, 0, 1),  # pin level of an open door: 0 for an NC reed (boards.py)
    "pir": (0, 0, 1),  # toilet door: a PIR module on pin "pir" gives the occupancy object
    "sleep": (1, 0, 1),  # light sleep between events (0 only for bench work on a USB supply)
    "deep_sleep": (1, 0, 1),  # deep sleep when idle: doors on ext0 boards, pendants (firmware/power.py)
    "awake_after_event_ms": (10000, 0, 600000),  # doors: light sleep only, this long after a change
}
# After "heard", a pendant waits up to 30 s for "the platform has it"; door
# sensors do not wait at all: the hub owes a door nothing after kind 1 (SPEC
# 1.7: kinds 2 and 3 are owed to pendants only, the devices that show them),
# so a door that lingered would keep its radio and CPU on for an ack that
# never comes (2 s a change: a fifth of the toilet door's battery).
_LINGER_MS = bthome.LINGER_MS  # the hub counts on these (SPEC 1.7)


class ConfigError(ValueError):
    pass


def _need(cond, field, why):
    if not cond:
        raise ConfigError("%s: %s" % (field, why))


def _key(text):
    _need(isinstance(text, str) and len(text) == 32, "key", "must be 32 hex digits")
    try:
        key = bytes(int(text[i:i + 2], 16) for i in range(0, 32, 2))
    except ValueError:
        raise ConfigError("key: must be 32 hex digits")
    _need(key != bytes(16), "key", "the all-zero key is refused")
    return key


def parse(doc):
    """A decoded config.json -> a validated dict with `key` as bytes and `pins` resolved."""
    _need(isinstance(doc, dict), "config", "must be a JSON object")
    role = doc.get("role")
    _need(role in ROLES, "role", "must be one of %s" % ", ".join(ROLES))
    board = doc.get("board")
    _need(board in BOARDS, "board", "unknown board %r" % (board,))
    key = _key(doc.get("key"))
    pins = dict(BOARDS[board])
    overrides = doc.get("pins", {})
    _need(isinstance(overrides, dict), "pins", "must be an object")
    for name, pin in overrides.items():
        _need(name in pins and name not in NOT_PINS, "pins." + name, "unknown pin name")
        _need(isinstance(pin, int) and 0 <= pin < 49, "pins." + name, "must be a GPIO number")
        pins[name] = pin
    needed = list(ROLE_PINS[role])
    if role == "toilet_door" and doc.get("pir"):
        needed.append("pir")
    for name in needed:
        _need(name in pins, "pins." + name, "this board has no such pin; give one")
    for name in [n for n in needed if n in overrides] + [n for n in needed if n not in overrides]:
        for other in needed:
            if other != name and pins[other] == pins[name]:
                raise ConfigError("pins.%s: GPIO %s is also pins.%s" % (name, pins[name], other))
    cfg = {"role": role, "board": board, "key": key, "pins": pins}
    for name, (default, low, high) in _SETTINGS.items():
        value = doc.get(name, default)
        if value is None:
            value = _LINGER_MS[role]
        if value is True or value is False:
            value = int(value)
        _need(isinstance(value, int) and low <= value <= high, name,
              "must be an integer from %s to %s" % (low, high))
        cfg[name] = value
    return cfg


def load(path=PATH):
    try:
        with open(path) as f:
            doc = json.load(f)
    except OSError:
        raise ConfigError("config: %s is missing (the device is not paired)" % path)
    except ValueError:
        raise ConfigError("config: %s is not valid JSON" % path)
    return parse(doc)


def fallback_pins(path=PATH):
    """The pins to show a fault on when the config cannot be used: its board's
    if that much can be read, else the first board's."""
    try:
        with open(path) as f:
            board = json.load(f).get("board")
    except Exception:
        board = None
    if board not in BOARDS:
        board = "esp32-devkitc"
    return BOARDS[board]

# The device's config.json, written at install time (pairing), never edited
# by hand: role, board, pins and the device key. A bad config stops the
# device with a reason, reported by the boot self-test.

import json

from .boards import BOARDS

ROLES = ("pendant", "front_door", "toilet_door")
PATH = "config.json"

# Defaults for what the installer may leave out.
_DEFAULTS = {
    "heartbeat_s": 3600,  # supervision: the hub flags a device after 3 missed
    "battery_low_pct": 20,
}


class ConfigError(ValueError):
    pass


def _need(cond, field, why):
    if not cond:
        raise ConfigError("%s: %s" % (field, why))


def parse(doc):
    """A decoded config.json -> a validated dict with `key` as bytes and `pins` resolved."""
    _need(isinstance(doc, dict), "config", "must be a JSON object")
    role = doc.get("role")
    _need(role in ROLES, "role", "must be one of %s" % ", ".join(ROLES))
    board = doc.get("board")
    _need(board in BOARDS, "board", "unknown board %r" % (board,))
    key = doc.get("key")
    _need(isinstance(key, str) and len(key) == 32, "key", "must be 32 hex digits")
    try:
        key_bytes = bytes(int(key[i:i + 2], 16) for i in range(0, 32, 2))
    except ValueError:
        raise ConfigError("key: must be 32 hex digits")
    _need(key_bytes != bytes(16), "key", "the all-zero key is refused")
    pins = dict(BOARDS[board])
    overrides = doc.get("pins", {})
    _need(isinstance(overrides, dict), "pins", "must be an object")
    for name, pin in overrides.items():
        _need(name in pins, "pins." + name, "unknown pin name")
        _need(isinstance(pin, int) and 0 <= pin < 49, "pins." + name, "must be a GPIO number")
        pins[name] = pin
    cfg = {"role": role, "board": board, "key": key_bytes, "pins": pins}
    for name, default in _DEFAULTS.items():
        value = doc.get(name, default)
        _need(isinstance(value, int) and value > 0, name, "must be a positive integer")
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

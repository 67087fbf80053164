"""The `[cellular]` table of hub.toml: the modem, the platform's SMS number, the contacts.

    [cellular]
    port = "/dev/serial/by-id/usb-Quectel_EC25-if02-port0"   # the modem's AT port
    platform_number = "+8610690000"     # where the SB1 message goes (SPEC 5.1)
    after_s = 60                        # an urgent event waiting this long, platform unreachable
    contacts = ["+8613900139000"]       # optional: the human message (SPEC 5.3)
    who = "王秀英（幸福里3号）"          # optional: who the contacts' message is about
    utc_offset_h = 8                    # the contacts' local time
    weak_below = 10                     # AT+CSQ rssi below this is a weak signal

Errors name the field, as the rest of the hub's config does (ValueError; hub/config.py
turns it into its ConfigError).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from safebox.protocol import sms

AFTER_S = 60.0
_NUMBER = re.compile(r"^\+?[0-9]{3,20}$")
_KEYS = {"port", "platform_number", "after_s", "contacts", "who", "utc_offset_h", "weak_below", "baudrate"}


@dataclass(frozen=True)
class CellularConfig:
    port: str
    platform_number: str
    after_s: float = AFTER_S
    contacts: tuple[str, ...] = ()
    who: str = ""
    utc_offset_h: float = 8.0
    weak_below: int = 10
    baudrate: int = 115200


def parse(table: Any, *, hub_id: str, home_id: str) -> CellularConfig | None:
    """None when there is no [cellular] table (no modem: the HTTPS path alone)."""
    if table is None:
        return None
    if not isinstance(table, dict):
        raise ValueError("cellular: must be a table")
    for key in sorted(set(table) - _KEYS):
        raise ValueError(f"cellular.{key}: unknown key")
    port = table.get("port")
    if not isinstance(port, str) or not port.strip():
        raise ValueError("cellular.port: required, the modem's AT serial port (e.g. /dev/ttyUSB2)")
    number = table.get("platform_number")
    if not isinstance(number, str) or not _NUMBER.match(number):
        raise ValueError("cellular.platform_number: required, a phone number like \"+8610690000\"")
    after = table.get("after_s", AFTER_S)
    if isinstance(after, bool) or not isinstance(after, (int, float)) or not 5 <= after <= 3600:
        raise ValueError(f"cellular.after_s: must be between 5 and 3600 seconds, not {after!r}")
    contacts = table.get("contacts", [])
    if not isinstance(contacts, list) or not all(isinstance(c, str) and _NUMBER.match(c) for c in contacts):
        raise ValueError("cellular.contacts: must be a list of phone numbers like [\"+8613900139000\"]")
    who = table.get("who", "")
    if not isinstance(who, str):
        raise ValueError("cellular.who: must be a string (the resident's name and address)")
    offset = table.get("utc_offset_h", 8)
    if isinstance(offset, bool) or not isinstance(offset, (int, float)) or not -12 <= offset <= 14:
        raise ValueError("cellular.utc_offset_h: hours from UTC, -12 .. 14")
    weak = table.get("weak_below", 10)
    if isinstance(weak, bool) or not isinstance(weak, int) or not 0 <= weak <= 31:
        raise ValueError("cellular.weak_below: an AT+CSQ rssi, 0 .. 31")
    baud = table.get("baudrate", 115200)
    if isinstance(baud, bool) or not isinstance(baud, int) or baud <= 0:
        raise ValueError("cellular.baudrate: a positive whole number")
    if not sms.fits(hub_id, home_id):
        raise ValueError(f"cellular: hub_id and home_id together are too long for one SMS (SPEC 5.1); "
                         f"{len(hub_id) + len(home_id)} characters")
    return CellularConfig(port.strip(), number, float(after), tuple(contacts), who, float(offset), weak, baud)

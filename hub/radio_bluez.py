"""What the radio needs to know of BlueZ on a Pi, apart from bleak: is the adapter there, and did
bluetoothd go away or come back.

The adapter: /sys/class/bluetooth/<adapter> exists and no rfkill blocks it (`sysfs_probe`).

bluetoothd: when it restarts (an upgrade, `systemctl restart bluetooth`, a crash and systemd's
Restart=), everything registered with it is gone: the advertisement monitor of passive
scanning, the discovery filter of active scanning. The adapter stays, so the probe sees
nothing wrong, and bleak does not restart a scanner, so the hub would hear nothing until it
was restarted itself (seen on the virtual Pi: issue 10). `BluezWatch` follows the owner of
the D-Bus name org.bluez (NameOwnerChanged, the bus daemon's own signal) and tells the radio
at once when it changes; its `probe` also compares the owner now with the one the scanner was
started on, so a change missed (the bus connection lost meanwhile) is found at the next check.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from bleak.exc import BleakError

log = logging.getLogger("safebox.hub.radio")

BLUEZ = "org.bluez"
_DBUS = dict(destination="org.freedesktop.DBus", path="/org/freedesktop/DBus", interface="org.freedesktop.DBus")
_MATCH = f"type='signal',sender='org.freedesktop.DBus',member='NameOwnerChanged',arg0='{BLUEZ}'"

Probe = Callable[[], Awaitable[None]]
# Passive scanning needs an advertisement-monitor pattern: service data (AD type 0x16)
# starting with our UUID, little-endian.
_PATTERN = (0, 0x16, b"\xd2\xfc")


def bluez_scanner_args(adapter: str | None, mode: str) -> dict[str, Any]:
    """bleak's BlueZ arguments: passive with our or-pattern, or active with every repeat."""
    from bleak.args.bluez import BlueZScannerArgs, OrPattern
    from bleak.assigned_numbers import AdvertisementDataType

    bluez = BlueZScannerArgs()
    if adapter:
        bluez["adapter"] = adapter
    if mode == "passive":
        bluez["or_patterns"] = [OrPattern(_PATTERN[0], AdvertisementDataType(_PATTERN[1]), _PATTERN[2])]
    else:
        bluez["filters"] = {"DuplicateData": True}  # every repeat (the radio handles each change once)
    return dict(bluez)


def sysfs_probe(adapter: str | None) -> Probe:
    """A BlueZ adapter is there and not soft- or hard-blocked (USB unplugged, rfkill on)."""
    name = adapter or "hci0"

    async def probe() -> None:
        folder = Path("/sys/class/bluetooth") / name
        if not folder.exists():
            raise BleakError(f"no Bluetooth adapter {name} (no {folder})")
        for state in folder.glob("rfkill*/state"):
            try:
                blocked = state.read_text().strip() != "1"
            except OSError:
                continue
            if blocked:
                raise BleakError(f"adapter {name} is blocked by rfkill")

    return probe


class BluezWatch:
    """Calls `changed(what)` when bluetoothd stops or starts (the owner of org.bluez changes).

    `bus_address`: a D-Bus address (tests run their own bus daemon); None is the system bus."""

    def __init__(self, changed: Callable[[str], None], *, bus_address: str | None = None) -> None:
        self._changed = changed
        self._bus_address = bus_address
        self._bus = None
        self.owner: str | None = None  # the unique name bluetoothd has on the bus ("" while it is not there)

    async def start(self) -> None:
        """Connect and subscribe; a bus that cannot be reached is logged, not raised (the hub
        still scans: the probe then finds a restarted bluetoothd at most a check later)."""
        from dbus_fast import BusType, Message
        from dbus_fast.aio import MessageBus

        try:
            bus = MessageBus(bus_address=self._bus_address, bus_type=BusType.SYSTEM)
            await bus.connect()
            bus.add_message_handler(self._message)
            await bus.call(Message(member="AddMatch", signature="s", body=[_MATCH], **_DBUS))
        except Exception as exc:  # noqa: BLE001 - any failure to reach the bus
            log.warning("radio: cannot follow bluetoothd on D-Bus (%s); restarts are found by the check", exc)
            return
        self._bus = bus
        self.owner = await self.current_owner()

    async def current_owner(self) -> str | None:
        """bluetoothd's unique name on the bus now: "" when it is not running, None if unknown."""
        from dbus_fast import Message, MessageType

        if self._bus is None:
            return None
        try:
            reply = await self._bus.call(Message(member="GetNameOwner", signature="s", body=[BLUEZ], **_DBUS))
        except Exception as exc:  # noqa: BLE001 - the bus went away
            log.debug("GetNameOwner: %s", exc)
            return None
        return str(reply.body[0]) if reply.message_type == MessageType.METHOD_RETURN else ""

    def _message(self, message) -> None:  # type: ignore[no-untyped-def] - dbus_fast's Message
        if message.member != "NameOwnerChanged" or not message.body or message.body[0] != BLUEZ:
            return
        _name, old, new = message.body
        self.owner = new
        self._changed("bluetoothd stopped" if not new else "bluetoothd restarted" if old else "bluetoothd started")

    async def probe(self) -> None:
        """Raises when bluetoothd is not the one the watch last saw (a change it missed)."""
        now = await self.current_owner()
        if now is None or now == self.owner:
            return
        seen, self.owner = self.owner, now
        raise BleakError("bluetoothd stopped" if not now else
                         f"bluetoothd restarted (was {seen or 'not running'}, now {now})")

    async def close(self) -> None:
        bus, self._bus = self._bus, None
        if bus is not None:
            bus.disconnect()

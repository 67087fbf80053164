"""The paired devices of this home and their BLE keys: `devices.json` in the state folder.

The file is a JSON list, one entry per device:
    {"mac": "24:0A:C4:12:34:56", "role": "pendant", "room": "bedroom", "key": "<32 hex digits>"}
It holds keys, so it is private (mode 0600, refused otherwise) and every change is an atomic
rewrite: a crash mid-pairing leaves the old list or the new one, never a torn file. Pairing
(a separate CLI process) and the running hub share it: changes are made under a lock on a
re-read copy, and the hub picks them up with `reload_if_changed`.

A device belongs to one home: a MAC appears once, and each device has its own key.
Keys never appear in repr or in any message this module makes.
"""

from __future__ import annotations

import fcntl
import json
import os
import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from safebox.hub.private_files import PrivateFileError, read_private, write_private
from safebox.protocol import bthome, events

KEY_LEN = 16  # AES-128
_MAC_TEXT = re.compile(r"^[0-9A-Fa-f]{2}(:[0-9A-Fa-f]{2}){5}$")
_KEY_TEXT = re.compile(r"^[0-9a-fA-F]{32}$")
_ROOM_MAX = 64
_FIELDS = {"mac", "role", "room", "key"}


class DevicesError(ValueError):
    """The registry or a device entry is not usable; the message names the entry and field."""


@dataclass(frozen=True)
class Device:
    """A paired device. `mac` is 6 bytes in display order (the BTHome nonce wants exactly that)."""

    mac: bytes
    role: str
    room: str
    key: bytes = field(repr=False)

    def __post_init__(self) -> None:
        _check(isinstance(self.mac, bytes) and len(self.mac) == 6, "mac", "must be 6 bytes")
        _check(self.role in events.ROLES, "role", f"must be one of {', '.join(sorted(events.ROLES))}")
        _check(isinstance(self.room, str) and len(self.room) <= _ROOM_MAX
               and all(c.isprintable() for c in self.room), "room", f"printable text up to {_ROOM_MAX} characters")
        _check(isinstance(self.key, bytes) and len(self.key) == KEY_LEN, "key", f"must be {KEY_LEN} bytes")
        _check(any(self.key), "key", "all zeros: pair the device again to give it a fresh key")

    @property
    def id(self) -> str:
        """The protocol's device id: 12 lower-case hex digits."""
        return events.device_id(self.mac)

    @property
    def address(self) -> str:
        """'24:0A:C4:12:34:56', as radios and people write it."""
        return bthome.mac_text(self.mac)

    def event_device(self) -> dict[str, str]:
        """The `device` object of an event body."""
        return {"id": self.id, "role": self.role, "room": self.room}

    def __repr__(self) -> str:
        return f"Device({self.address}, role={self.role!r}, room={self.room!r})"

    @classmethod
    def new(cls, mac: str | bytes, role: str, room: str = "", key: bytes | None = None) -> Device:
        """A device as pairing makes it: a fresh random key unless one is given."""
        return cls(mac=_mac(mac), role=role, room=room, key=os.urandom(KEY_LEN) if key is None else key)

    @classmethod
    def from_entry(cls, entry: Any) -> Device:
        _check(isinstance(entry, dict), "entry", "must be a JSON object")
        unknown = sorted(set(entry) - _FIELDS)
        _check(not unknown, ", ".join(unknown), "unknown field")
        for name in ("mac", "role", "key"):
            _check(isinstance(entry.get(name), str), name, "required string")
        _check(bool(_MAC_TEXT.match(entry["mac"])), "mac", "must look like 24:0A:C4:12:34:56")
        _check(bool(_KEY_TEXT.match(entry["key"])), "key", f"must be {2 * KEY_LEN} hex digits")
        return cls(mac=bthome.mac_bytes(entry["mac"]), role=entry["role"], room=entry.get("room", ""),
                   key=bytes.fromhex(entry["key"]))

    def to_entry(self) -> dict[str, str]:
        return {"mac": self.address, "role": self.role, "room": self.room, "key": self.key.hex()}


class Devices:
    """The registry: look-ups for the radio path, add/remove for pairing."""

    def __init__(self, path: Path, devices: list[Device], stamp: tuple[int, int, int] | None) -> None:
        self.path = path
        self._by_mac = {d.mac: d for d in devices}
        self._stamp = stamp

    @classmethod
    def load(cls, path: str | Path) -> Devices:
        """Read the registry; a file not made yet is an empty registry (nothing paired)."""
        path = Path(path)
        stamp = _stamp(path)
        return cls(path, _read(path) if stamp else [], stamp)

    def get(self, mac: bytes | str) -> Device | None:
        try:
            return self._by_mac.get(_mac(mac))
        except DevicesError:
            return None

    def by_id(self, device_id: str) -> Device | None:
        """The device whose id (its MAC as 12 hex digits) is `device_id`."""
        return next((d for d in self._by_mac.values() if d.id == device_id), None)

    def __iter__(self) -> Iterator[Device]:
        return iter(list(self._by_mac.values()))

    def __len__(self) -> int:
        return len(self._by_mac)

    def __repr__(self) -> str:
        return f"Devices({str(self.path)!r}, {len(self)} paired)"

    def reload_if_changed(self) -> bool:
        """Re-read the file if another process (pairing) replaced it; True when it did.

        A file that has become unreadable or invalid raises DevicesError and leaves the
        registry in memory as it was.
        """
        stamp = _stamp(self.path)
        if stamp == self._stamp:
            return False
        devices = _read(self.path) if stamp else []
        self._by_mac = {d.mac: d for d in devices}
        self._stamp = stamp
        return True

    def add(self, device: Device) -> None:
        """Pair `device`; refused if its MAC is already paired or its key is in use."""
        with self._locked():
            if device.mac in self._by_mac:
                raise DevicesError(f"{device.address}: already paired as {self._by_mac[device.mac].role}; "
                                   "remove it first to pair it again")
            if any(d.key == device.key for d in self._by_mac.values()):
                raise DevicesError(f"{device.address}: key: already used by another device; every device needs its own")
            self._save([*self._by_mac.values(), device])

    def remove(self, mac: bytes | str) -> Device:
        """Unpair a device and return it; DevicesError if it is not paired."""
        with self._locked():
            device = self.get(mac)
            if device is None:
                raise DevicesError(f"{mac if isinstance(mac, str) else bthome.mac_text(mac)}: not paired")
            self._save([d for d in self._by_mac.values() if d.mac != device.mac])
            return device

    @contextmanager
    def _locked(self) -> Iterator[None]:
        # Another process may have changed the file since we read it: hold the lock,
        # start from what is on disk, so neither process undoes the other's change.
        self.path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        fd = os.open(self.path.with_name(self.path.name + ".lock"), os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            self.reload_if_changed()
            yield
        finally:
            os.close(fd)

    def _save(self, devices: list[Device]) -> None:
        data = json.dumps([d.to_entry() for d in devices], indent=2).encode() + b"\n"
        write_private(self.path, data)
        self._by_mac = {d.mac: d for d in devices}
        self._stamp = _stamp(self.path)


def _check(cond: bool, name: str, why: str) -> None:
    if not cond:
        raise DevicesError(f"{name}: {why}")


def _mac(mac: bytes | str) -> bytes:
    if isinstance(mac, (bytes, bytearray)):
        _check(len(mac) == 6, "mac", "must be 6 bytes")
        return bytes(mac)
    _check(isinstance(mac, str) and bool(_MAC_TEXT.match(mac)), "mac", f"must look like 24:0A:C4:12:34:56, not {mac!r}")
    return bthome.mac_bytes(mac)


def _stamp(path: Path) -> tuple[int, int, int] | None:
    """What changes when the file is replaced (inode: every save is a rename)."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return None
    return st.st_ino, st.st_mtime_ns, st.st_size


def _read(path: Path) -> list[Device]:
    try:
        raw = read_private(path)
    except FileNotFoundError:
        return []
    except PrivateFileError as exc:
        raise DevicesError(str(exc)) from None
    try:
        entries = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise DevicesError(f"{path}: not UTF-8 JSON: {exc}") from None
    if not isinstance(entries, list):
        raise DevicesError(f"{path}: must hold a JSON list of devices")
    devices: list[Device] = []
    seen_mac: dict[bytes, int] = {}
    seen_key: dict[bytes, int] = {}
    for i, entry in enumerate(entries):
        where = f"{path} entry {i}"
        try:
            device = Device.from_entry(entry)
        except DevicesError as exc:
            raise DevicesError(f"{where}: {exc}") from None
        if device.mac in seen_mac:
            raise DevicesError(f"{where}: mac: {device.address} is already entry {seen_mac[device.mac]}; "
                               "a device belongs to one home, once")
        if device.key in seen_key:
            raise DevicesError(f"{where}: key: same key as entry {seen_key[device.key]}; every device needs its own")
        seen_mac[device.mac] = i
        seen_key[device.key] = i
        devices.append(device)
    return devices

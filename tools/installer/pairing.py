"""Pair a device with a home, and unpair it: one key, made here, written to both ends.

Pairing runs where the hub's state is (on the hub, the board on its USB port, the
installer in over SSH), so the key goes from this machine's random source straight to
the device and to the hub's registry, and is never shown, logged or written anywhere else.

The order makes every interruption recoverable by running the same command again:

1. check everything that can be checked before anything is written: the role, room,
   board and pins (with the firmware's own `config.parse`), the hub's registry, that the
   board holds a complete image, and who the board belongs to;
2. write the device's `config.json` (as `config.json.new`, checked by sha256 on the
   board, then renamed over the old one);
3. register it with the hub (`Devices.add`; on re-pairing the old entry goes first) and
   make the hub forget the old counter (`HubStore.forget_device`): frames under the old
   key can no longer verify, and a re-flashed device may count from 1 again;
4. reset the board and read what it prints: "ready <role>" or a self-test failure.
   If the firmware refuses its new config, steps 2-3 are undone.

If step 3 fails, step 2 is undone (the old config.json is put back, or removed).
A device belongs to one home: its config.json names the home and hub it was paired
with, and another home's installer is refused until it is unpaired there.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from safebox.firmware import config as fw_config
from safebox.firmware.boards import BOARDS
from safebox.hub.config import HubConfig
from safebox.hub.devices import Device, Devices, DevicesError
from safebox.hub.private_files import PrivateFileError, write_private
from safebox.hub.store import HubStore, StoreError
from safebox.protocol import events
from safebox.tools.installer.board import Board, boot_verdict
from safebox.tools.installer.flash import TMP, check_flashed
from safebox.tools.installer.messages import InstallerError

CONFIG = fw_config.PATH  # "config.json" on the board
DEFAULT_BOARD = "esp32-devkitc"
ROLES = tuple(r for r in fw_config.ROLES if r in events.ROLES)
BOOT_WAIT_S = 8.0
Say = Callable[..., None]


@dataclass
class PairResult:
    device: Device  # its repr never shows the key
    replaced: Device | None
    boot: str | None  # "ready", or None when the board's start could not be seen
    boot_lines: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)  # "self-test: warning: ..." lines: it runs, but look


def _quiet(key: str, **params: Any) -> None:
    pass


def _registry(hub: HubConfig) -> Devices:
    try:
        return Devices.load(hub.devices_path)
    except (DevicesError, PrivateFileError, OSError) as exc:
        raise InstallerError("hub_registry_unreadable", path=str(hub.devices_path), detail=str(exc)) from None


def device_config(device: Device, hub: HubConfig, board_name: str, pins: dict[str, int] | None) -> bytes:
    """The device's config.json, checked by the firmware's own parser before it goes anywhere."""
    doc: dict[str, Any] = {"role": device.role, "board": board_name, "key": device.key.hex(),
                           "home_id": hub.home_id, "hub_id": hub.hub_id}
    if pins:
        doc["pins"] = dict(pins)
    try:
        fw_config.parse(doc)
    except fw_config.ConfigError as exc:
        raise InstallerError("pair_bad_config", detail=str(exc)) from None
    return json.dumps(doc, sort_keys=True).encode()


def read_device_config(board: Board) -> tuple[bytes | None, dict[str, Any] | None]:
    """The board's config.json as bytes and as a JSON object (None for either when it is not one)."""
    raw = board.read(CONFIG)
    if raw is None:
        return None, None
    try:
        doc = json.loads(raw)
    except ValueError:
        return raw, None
    return raw, doc if isinstance(doc, dict) else None


def check_inputs(role: str, room: str, board_name: str, pins: dict[str, int] | None) -> None:
    """Everything about the request itself, before any board or file is touched."""
    if role not in ROLES:
        raise InstallerError("pair_unknown_role", role=role, roles=", ".join(ROLES))
    if board_name not in BOARDS:
        raise InstallerError("pair_unknown_board", board=board_name, boards=", ".join(sorted(BOARDS)))
    try:
        Device.new("24:0A:C4:00:00:01", role, room, key=b"\x01" * 16)
    except DevicesError as exc:
        raise InstallerError("pair_bad_room", room=room, detail=str(exc)) from None
    doc: dict[str, Any] = {"role": role, "board": board_name, "key": "01" * 16}
    if pins:
        doc["pins"] = dict(pins)
    try:
        fw_config.parse(doc)  # the firmware's own judgement of role, board and pins
    except fw_config.ConfigError as exc:
        raise InstallerError("pair_bad_config", detail=str(exc)) from None


def _write_config(board: Board, data: bytes) -> None:
    board.write(CONFIG + TMP, data)
    if board.hashes([CONFIG + TMP])[CONFIG + TMP] != hashlib.sha256(data).hexdigest():
        board.remove([CONFIG + TMP])
        raise InstallerError("flash_copy_corrupt", files=CONFIG)
    board.rename([(CONFIG + TMP, CONFIG)])


def _restore_config(board: Board, old_raw: bytes | None) -> None:
    if old_raw is None:
        board.remove([CONFIG, CONFIG + TMP])
    else:
        _write_config(board, old_raw)


def _register(hub: HubConfig, devices: Devices, new: Device, old: Device | None) -> None:
    """Hub side of pairing; on failure the registry file is put back as it was. InstallerError says why."""
    path = hub.devices_path
    try:
        before = path.read_bytes() if path.exists() else None
    except OSError as exc:
        raise InstallerError("pair_hub_failed", detail=str(exc)) from None
    try:
        if old is not None:
            devices.remove(old.mac)
        devices.add(new)
        with HubStore.open(hub.db_path) as store:
            store.forget_device(new.id)
    except (DevicesError, PrivateFileError, StoreError, OSError) as exc:
        _put_back(path, before)
        raise InstallerError("pair_hub_failed", detail=str(exc)) from None


def _put_back(path: Path, before: bytes | None) -> None:
    """The registry file as it was (an atomic private rewrite), or gone if there was none."""
    try:
        if before is None:
            path.unlink(missing_ok=True)
        else:
            write_private(path, before)
    except OSError:
        pass


def pair(board: Board, hub: HubConfig, role: str, room: str = "", *, board_name: str = DEFAULT_BOARD,
         pins: dict[str, int] | None = None, replace: bool = False, reset: bool = True,
         say: Say = _quiet, boot_wait_s: float = BOOT_WAIT_S,
         reconnect: Callable[[], Board] | None = None) -> PairResult:
    """Pair the device on `board` with the home of `hub` (see the module doc).

    `reconnect` gives a fresh connection to the same board after its reset, used only to
    undo the pairing when the firmware refuses it.
    """
    check_inputs(role, room, board_name, pins)
    devices = _registry(hub)
    check_flashed(board)
    mac = board.mac()
    old_raw, old_doc = read_device_config(board)
    owner = (old_doc or {}).get("home_id"), (old_doc or {}).get("hub_id")
    if old_doc is not None and owner != (None, None) and owner != (hub.home_id, hub.hub_id):
        raise InstallerError("pair_other_home", mac=mac, home=str(owner[0]), hub=str(owner[1]))
    registered = devices.get(mac)
    if registered is not None and not replace:
        raise InstallerError("pair_already_paired", mac=mac, role=registered.role, room=registered.room or "-")
    if registered is None and old_raw is not None and owner == (None, None) and not replace:
        # A key from somewhere we cannot tell: an older tool, or a home that did not say.
        raise InstallerError("pair_unknown_owner", mac=mac)

    new = Device.new(mac, role, room)  # a fresh key from os.urandom; never printed
    registry_before = hub.devices_path.read_bytes() if hub.devices_path.exists() else None
    data = device_config(new, hub, board_name, pins)
    say("pair_writing", mac=mac)
    _write_config(board, data)
    try:
        say("pair_registering", hub=hub.hub_id)
        _register(hub, devices, new, registered)
    except InstallerError:
        try:
            _restore_config(board, old_raw)
        except InstallerError:
            pass  # the board went too: a device key the hub does not know is harmless; pair again
        raise
    result = PairResult(new, registered, None)
    if not reset:
        return result

    say("pair_resetting")
    try:
        result.boot_lines = board.reset(boot_wait_s)
    except InstallerError as exc:
        if exc.key != "board_gone":
            raise
        return result  # paired on both sides; it starts with the new key when it next has power
    verdicts = [v for v in map(boot_verdict, result.boot_lines) if v]
    if "failed" in verdicts:
        problem = next(line for line in result.boot_lines if boot_verdict(line) == "failed")
        _put_back(hub.devices_path, registry_before)
        undone = False
        if reconnect is not None:
            board.close()  # a serial port has one user at a time
            try:
                with reconnect() as again:
                    _restore_config(again, old_raw)
                    again.reset()
                undone = True
            except InstallerError:
                pass
        raise InstallerError("pair_device_refused" if undone else "pair_device_refused_board_kept",
                             mac=mac, line=problem)
    result.boot = "ready" if "ready" in verdicts else None
    result.warnings = [line for line in result.boot_lines if boot_verdict(line) == "warning"]
    return result


@dataclass
class UnpairResult:
    mac: str
    hub_removed: Device | None
    board_wiped: bool


def unpair(hub: HubConfig, *, board: Board | None = None, mac: str | None = None, force: bool = False,
           say: Say = _quiet) -> UnpairResult:
    """Remove a device from the hub (and wipe its pairing if the board is here).

    With only `mac`, the hub side is removed (a lost or broken pendant). With a board
    that belongs to another home, `force` wipes it anyway (that home's hub keeps an entry
    that will never be heard again, and says so as a device offline).
    """
    devices = _registry(hub)
    old_doc = None
    if board is not None:
        mac = board.mac()
        _, old_doc = read_device_config(board)
        owner = (old_doc or {}).get("home_id"), (old_doc or {}).get("hub_id")
        if old_doc is not None and owner not in ((None, None), (hub.home_id, hub.hub_id)) and not force:
            raise InstallerError("unpair_other_home", mac=mac, home=str(owner[0]), hub=str(owner[1]))
    assert mac is not None
    try:
        registered = devices.get(mac)
    except DevicesError:
        registered = None
    if registered is None and board is None:
        raise InstallerError("unpair_not_paired", mac=mac)
    if registered is not None:
        try:
            devices.remove(registered.mac)
            with HubStore.open(hub.db_path) as store:
                store.forget_device(registered.id)
        except (DevicesError, PrivateFileError, StoreError, OSError) as exc:
            raise InstallerError("pair_hub_failed", detail=str(exc)) from None
        say("unpair_hub_done", mac=registered.address, hub=hub.hub_id)
    wiped = False
    if board is not None:
        if board.read(CONFIG) is not None:
            board.remove([CONFIG, CONFIG + TMP])
            wiped = True
            board.reset()
        say("unpair_board_done" if wiped else "unpair_board_clean", mac=mac)
    return UnpairResult(str(mac), registered, wiped)

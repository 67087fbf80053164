"""The walk-test window: while an installer walk-tests a home, its devices' events are tests.

The installer (`safebox-install walk-test`, on the hub, as the hub's user or root) opens a
window for the devices under test; until it closes or expires, the hub marks the events
those devices send with `data.test = true`, and the platform shows them as tests and sends
nobody (protocol/SPEC.md, "Test events"). Nothing in the BLE frame says "test": a stolen or
cloned device key cannot make a real alarm look like one. Only a process that can write
the hub's private state (where its signing key and the devices' keys already live) can
open a window, only for named devices, and for at most MAX_WINDOW_S: a window that says
more is ignored. Events the hub makes itself (the toilet, door and supervision rules) are
never marked: a walk test does not stand in for the home's rules.

The window is one small private file, `walk_test.json` in the state folder:
{"devices": ["240ac4000001", ...], "opened_at": <unix s>, "until": <unix s>}
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path

from safebox.hub.private_files import PrivateFileError, read_private, write_private

log = logging.getLogger("safebox.hub.walk_test")

FILE_NAME = "walk_test.json"
MAX_WINDOW_S = 30 * 60


@dataclass(frozen=True)
class Window:
    devices: frozenset[str]
    opened_at: float
    until: float

    def covers(self, device_id: str, at: float) -> bool:
        return device_id in self.devices and self.opened_at <= at < self.until


def path_in(state_dir: Path) -> Path:
    return Path(state_dir) / FILE_NAME


def open_window(state_dir: Path, device_ids: list[str], *, now: float, seconds: float) -> Window:
    """Write the window (atomically, private); `seconds` is capped at MAX_WINDOW_S."""
    window = Window(frozenset(device_ids), now, now + min(float(seconds), MAX_WINDOW_S))
    doc = {"devices": sorted(window.devices), "opened_at": window.opened_at, "until": window.until}
    write_private(path_in(state_dir), json.dumps(doc).encode())
    return window


def close_window(state_dir: Path) -> None:
    try:
        os.unlink(path_in(state_dir))
    except FileNotFoundError:
        pass


def read_window(state_dir: Path) -> Window | None:
    """The window as the file says, or None: no file, or one the hub must not believe."""
    path = path_in(state_dir)
    try:
        doc = json.loads(read_private(path))
        devices = frozenset(str(d) for d in doc["devices"])
        opened_at, until = float(doc["opened_at"]), float(doc["until"])
    except FileNotFoundError:
        return None
    except (OSError, PrivateFileError, ValueError, KeyError, TypeError) as exc:
        log.warning("walk-test window %s ignored: %s", path, exc)
        return None
    if not 0 < until - opened_at <= MAX_WINDOW_S:
        log.warning("walk-test window %s ignored: %.0f s long, more than %d s", path, until - opened_at,
                    MAX_WINDOW_S)
        return None
    return Window(devices, opened_at, until)


class WindowReader:
    """The hub's view of the window: the file read again only when it changed (one stat per event)."""

    def __init__(self, state_dir: Path) -> None:
        self._state_dir = Path(state_dir)
        self._stamp: tuple[int, int] | None = None
        self._window: Window | None = None

    def current(self) -> Window | None:
        try:
            st = os.stat(path_in(self._state_dir))
            stamp: tuple[int, int] | None = (st.st_mtime_ns, st.st_ino)
        except OSError:
            stamp = None
        if stamp != self._stamp:
            self._stamp = stamp
            self._window = None if stamp is None else read_window(self._state_dir)
        return self._window

    def covers(self, device_id: str, at: float) -> bool:
        window = self.current()
        return window is not None and window.covers(device_id, at)

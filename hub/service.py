"""The hub's life as a system service: systemd notifications, the status file, the clock check.

* READY=1 once the radio scans and the relay runs; STATUS= one line (outbox, radio,
  platform, clock) whenever it changes; WATCHDOG=1 at half the watchdog interval, and
  only while the hub is well (its database answers, the relay task is alive), so systemd
  restarts a hub that is stuck rather than one that is merely busy; STOPPING=1 on the way out.
* `status.json` in the state folder, rewritten every `status_every_s` (no fsync: it is a
  view, not a record): what `safebox-hub status` shows of the running hub (radio health,
  platform reachability, clock) next to what it reads from the database itself.
* The clock (hub/clock.py) at start and every `clock_every_s`: a clear warning when it
  cannot be trusted, again when that changes.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import safebox
from safebox.hub import clock as hub_clock
from safebox.hub.cellular import CellularPath
from safebox.hub.waiting import wait_set
from safebox.hub.devices import Devices
from safebox.hub.health import Health
from safebox.hub.notify import Notifier
from safebox.hub.store import HubStore
from safebox.hub.uplink.held import held

log = logging.getLogger("safebox.hub.service")

STATUS_FILE = "status.json"
STATUS_EVERY_S = 30.0  # and at once (within 0.2 s) when the platform becomes reachable or not
CLOCK_EVERY_S = 600.0


def version() -> str:
    return safebox.__version__


class Service:
    """Reads the hub's parts, never changes them: `alive()` says the relay runs, `acks_sent()`
    how many acks were written; `health` is what every part reports into (hub/health.py)."""

    def __init__(self, hub_id: str, state_dir: Path, *, store: HubStore, devices: Devices, health: Health,
                 alive: Callable[[], bool], acks_sent: Callable[[], int], clock: hub_clock.Clock = hub_clock.SYSTEM,
                 cellular: CellularPath | None = None,
                 notifier: Notifier | None = None, status_every_s: float = STATUS_EVERY_S,
                 clock_every_s: float = CLOCK_EVERY_S) -> None:
        self._hub_id = hub_id
        self._store = store
        self._devices = devices
        self._health = health
        self._alive = alive
        self._acks_sent = acks_sent
        self._cellular = cellular  # the SMS path (hub/cellular), when the hub has a modem
        self._time = clock
        self.notifier = notifier or Notifier()
        self._status_every_s = status_every_s
        self._clock_every_s = clock_every_s
        self._started_at = clock.time()
        self._started_mono = clock.monotonic()
        self._clock_checked_at = -float("inf")
        self._status_line = ""
        self.clock = hub_clock.ClockStatus(None, "none", None, None)
        self.status_path: Path = state_dir / STATUS_FILE
        self._changed = asyncio.Event()

    # -- what the hub is like -------------------------------------------------------------

    def check_clock(self, *, force: bool = False) -> hub_clock.ClockStatus:
        now = self._time.monotonic()
        if not force and now - self._clock_checked_at < self._clock_every_s:
            return self.clock
        self._clock_checked_at = now
        before = self.clock.problem
        self.clock = hub_clock.check(self._health.platform.clock_offset_s)
        if self.clock.problem != before:
            if self.clock.problem:
                log.warning("%s", self.clock.problem)
            elif before:
                log.info("clock trusted again (%s)", self.clock.source)
        return self.clock

    def clock_problem(self) -> str | None:
        return self.clock.problem

    def snapshot(self) -> dict[str, Any]:
        radio = self._health.radio
        return {
            "hub_id": self._hub_id, "pid": os.getpid(), "version": version(),
            "started_at": self._started_at, "written_at": self._time.time(),
            "status_every_s": self._status_every_s,
            "radio": radio.as_dict() if radio.state != "off" else None,
            "platform": self._health.platform.as_dict(), "clock": self.clock.as_dict(),
            "acks_written": self._acks_sent(),
            "cellular": self._cellular.health() if self._cellular is not None else None,
        }

    def status_line(self) -> str:
        platform = self._health.platform
        reach = {True: "reachable", False: "unreachable", None: "not yet contacted"}[platform.reachable]
        return (f"outbox {self._store.depth()}, radio {self._health.radio.state}, platform {reach}, "
                f"clock {'ok' if self.clock.problem is None else 'NOT TRUSTED'}"
                + (f", {self._cellular.status_line()}" if self._cellular is not None else "")
                + (", URGENT EVENTS REFUSED BY THE PLATFORM" if held(self._store) else ""))

    def heartbeat_data(self) -> dict[str, Any]:
        """What a hub_heartbeat carries: the hub's own health, nothing about the residents."""
        return {
            "uptime_s": round(self._time.monotonic() - self._started_mono),
            "version": version(),
            "outbox_depth": self._store.depth(),
            "devices_paired": len(self._devices),
            "radio": self._health.radio.state,
            "clock_synchronized": self.clock.synchronized,
            **({"cellular": self._cellular.modem.health.state} if self._cellular is not None else {}),
        }

    # -- telling systemd and the installer --------------------------------------------------

    def write_status(self) -> None:
        try:
            tmp = self.status_path.with_name(f".{STATUS_FILE}.{os.getpid()}.tmp")
            tmp.write_text(json.dumps(self.snapshot()))
            os.replace(tmp, self.status_path)
        except OSError as exc:
            log.warning("status file not written: %s", exc)

    def ready(self) -> None:
        self.check_clock(force=True)
        self._status_line = self.status_line()
        self.notifier.ready(self._status_line)
        self.write_status()

    def healthy(self) -> bool:
        """Well enough to pet the watchdog: the database answers and the relay runs."""
        try:
            self._store.depth()
        except Exception as exc:
            log.error("watchdog withheld: the hub database does not answer: %s", exc)
            return False
        return self._alive()

    def poke(self) -> None:
        """Something the status shows has changed (the platform became reachable, or not): say so soon."""
        self._changed.set()

    async def run(self) -> None:
        """Until cancelled: watchdog, STATUS= on change, the status file, the clock check."""
        watchdog_s = self.notifier.watchdog_s
        tick = self._status_every_s if watchdog_s is None else min(self._status_every_s, watchdog_s / 2)
        last_status = self._time.monotonic()
        while True:
            if await wait_set(self._changed, tick):
                await asyncio.sleep(0.2)  # a burst of changes makes one write
            poked = self._changed.is_set()
            self._changed.clear()
            if watchdog_s is not None and self.healthy():
                self.notifier.watchdog()
            self.check_clock()
            line = self.status_line()
            if line != self._status_line:
                self._status_line = line
                self.notifier.status(line)
            if poked or self._time.monotonic() - last_status >= self._status_every_s - 0.01:
                last_status = self._time.monotonic()
                self.write_status()

    def stopping(self) -> None:
        self.notifier.stopping()
        try:
            self.status_path.unlink(missing_ok=True)  # not running: status shows it at once
        except OSError:
            pass

"""The walk test: every button pressed and every door opened and closed, followed to the platform.

Before leaving a home the installer goes round it: each pendant button pressed once,
each door opened and closed. For every event this shows, live, when it reached the hub
(with the signal strength the hub measured and a verdict on the margin) and when the
platform stored it, and at the end writes the install report (report.py).

Signal verdict, on the RSSI the hub measured for the event's frame:
    RSSI >= -75 dBm            good
    -85 <= RSSI < -75 dBm      marginal: passes, but the report says to move the hub closer
    RSSI < -85 dBm             fail: the link will drop events when a door or a body is in the way
A device's verdict is that of its weakest event. A battery below 20 % fails too.

Where it looks: the hub's own database (read-only use of `HubStore`: the last frame heard
from each device, and the outbox, which holds an event until the platform has answered
for it) and the platform's event listing `GET /v1/events` (the reference receiver has
it), read over the same verified TLS as the uplink. An event the hub has stored and the
platform lists has passed; one the platform refused (the hub's dead letters) has failed.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import tzinfo
from typing import Any

from safebox.hub import keys
from safebox.hub.config import HubConfig
from safebox.hub.devices import Device, Devices, DevicesError
from safebox.hub.private_files import PrivateFileError
from safebox.hub import walk_test
from safebox.hub.store import HubStore, StoreError
from safebox.protocol import events
from safebox.tools.installer import localtime
from safebox.tools.installer.platform_listing import PlatformListing
from safebox.tools.installer.messages import InstallerError

RSSI_GOOD_DBM = -75
RSSI_MARGINAL_DBM = -85
BATTERY_LOW_PCT = 20
POLL_S = 0.1
_WINDOW_SLACK_S = 30.0  # the hub's test window outlives the walk test's own deadline by this much
# What the installer does to each role, and the event that proves it.
CHECKS: dict[str, tuple[str, ...]] = {
    "pendant": (events.EMERGENCY, events.COMMUNITY_SERVICE, events.LIFE_SERVICE),
    "front_door": (events.DOOR_OPENED, events.DOOR_CLOSED),
    "toilet_door": (events.DOOR_OPENED, events.DOOR_CLOSED),
}
Show = Callable[..., None]


def signal_verdict(rssi: int | None) -> str | None:
    """"good", "marginal" or "fail" for an RSSI in dBm (None when the hub did not measure one)."""
    if rssi is None:
        return None
    if rssi >= RSSI_GOOD_DBM:
        return "good"
    if rssi >= RSSI_MARGINAL_DBM:
        return "marginal"
    return "fail"


_ORDER = {None: 0, "good": 1, "marginal": 2, "fail": 3}


@dataclass
class Check:
    device: Device
    event: str
    status: str = "waiting"  # waiting, hub (stored at the hub, not yet at the platform), passed, refused
    event_id: str | None = None
    counter: int | None = None
    rssi: int | None = None
    battery: int | None = None
    hub_at: float | None = None
    platform_at: float | None = None
    reason: str | None = None
    test: bool | None = None  # whether the platform got it marked as a test (data.test)

    def to_json(self) -> dict[str, Any]:
        return {
            "device_id": self.device.id, "address": self.device.address, "role": self.device.role,
            "room": self.device.room, "event": self.event, "status": self.status, "event_id": self.event_id,
            "counter": self.counter, "rssi": self.rssi, "signal": signal_verdict(self.rssi),
            "battery": self.battery,
            "hub_at": None if self.hub_at is None else events.timestamp(self.hub_at),
            "platform_at": None if self.platform_at is None else events.timestamp(self.platform_at),
            "reason": self.reason, "test": self.test,
        }


@dataclass
class _Seen:
    """One device event as observed somewhere: enough to tick a check."""

    device_id: str
    event_id: str
    type: str
    counter: int
    rssi: int | None
    battery: int | None


def _seen_from_body(body: dict[str, Any]) -> _Seen | None:
    device = body.get("device")
    if not isinstance(device, dict) or body.get("counter") is None:
        return None
    data = body.get("data") or {}
    return _Seen(device["id"], body["event_id"], body["type"], body["counter"], data.get("rssi"), data.get("battery"))


@dataclass
class WalkTest:
    hub: HubConfig
    devices: list[Device]
    show: Show
    clock: Callable[[], float] = time.time
    zone: tzinfo | None = None  # for times on the screen (localtime.py); None: the system's
    checks: list[Check] = field(default_factory=list)
    started_at: float = 0.0
    finished_at: float | None = None
    platform: PlatformListing | None = None
    interrupted: bool = False
    _store: HubStore | None = None
    _last_counter: dict[str, int] = field(default_factory=dict)
    _pending: dict[str, Device] = field(default_factory=dict)  # event id -> device, not typed yet
    _done_ids: set[str] = field(default_factory=set)

    @classmethod
    def for_home(cls, hub: HubConfig, show: Show, *, only: list[str] | None = None,
                 clock: Callable[[], float] = time.time, zone: tzinfo | None = None) -> WalkTest:
        """Every paired device of the home (or those whose id or address is in `only`)."""
        try:
            found = list(Devices.load(hub.devices_path))
        except (DevicesError, PrivateFileError, OSError) as exc:
            raise InstallerError("hub_registry_unreadable", path=str(hub.devices_path), detail=str(exc)) from None
        if only:
            wanted = {w.lower().replace(":", "") for w in only}
            found = [d for d in found if d.id in wanted]
        found.sort(key=lambda d: (d.room, d.role, d.id))
        return cls(hub, found, show, clock=clock, zone=zone)

    # -- running ----------------------------------------------------------------------
    def start(self) -> None:
        self.started_at = self.clock()
        self.checks = [Check(d, e) for d in self.devices for e in CHECKS.get(d.role, ())]
        try:
            self._store = HubStore.open(self.hub.db_path)
        except StoreError as exc:
            raise InstallerError("walk_hub_db_error", path=str(self.hub.db_path), detail=str(exc)) from None
        for d in self.devices:
            seen = self._store.seen(d.id)
            self._last_counter[d.id] = seen.last_counter if seen else -1
        try:
            key = keys.load_or_create(self.hub.key_path)
        except keys.KeyFileError:
            key = None  # the listing then fails as unavailable, and the walk test says so
        self.platform = PlatformListing(self.hub.platform.url, self.hub.platform.ssl_context(), self.hub.hub_id, key)
        self.platform.start()
        self.show("walk_start", home=self.hub.home_id, hub=self.hub.hub_id, devices=len(self.devices),
                  checks=len(self.checks), good=RSSI_GOOD_DBM, marginal=RSSI_MARGINAL_DBM,
                  time=localtime.show(self.started_at, self.zone or localtime.zone()))
        self.show("walk_window_open")
        if not self.platform.available:
            self.show("walk_platform_unreadable", url=self.hub.platform.url, detail=self.platform.error or "?")
        for d in self.devices:
            heard = self._store.seen(d.id)
            quiet = "walk_device_not_heard_" + ("pendant" if d.role == "pendant" else "door")
            self.show("walk_device_heard" if heard is not None else quiet, device=d)
            for c in self.checks:
                if c.device is d:
                    self.show("walk_todo", device=d, event=c.event)

    def close(self) -> None:
        if self._store is not None:
            self._store.close()
            self._store = None

    @property
    def done(self) -> bool:
        return all(c.status in ("passed", "refused") for c in self.checks)

    def run(self, timeout_s: float, poll_s: float = POLL_S, sleep: Callable[[float], None] = time.sleep) -> bool:
        """Watch until every check is decided or `timeout_s` passes (Ctrl-C stops early); True if passed.

        Meanwhile the hub marks these devices' events as tests (hub/walk_test.py): the window
        opens before the first check is shown and closes as soon as the walk test ends.
        """
        try:
            walk_test.open_window(self.hub.state_dir, [d.id for d in self.devices], now=self.clock(),
                                  seconds=timeout_s + _WINDOW_SLACK_S)
        except OSError as exc:
            raise InstallerError("walk_window_failed", path=str(walk_test.path_in(self.hub.state_dir)),
                                 detail=exc.strerror or str(exc)) from None
        try:
            return self._run(timeout_s, poll_s, sleep)
        finally:
            walk_test.close_window(self.hub.state_dir)

    def _run(self, timeout_s: float, poll_s: float, sleep: Callable[[float], None]) -> bool:
        self.start()
        deadline = self.started_at + timeout_s
        try:
            while not self.done and self.clock() < deadline:
                self.poll()
                if not self.done:
                    sleep(poll_s)
            self.poll()
        except KeyboardInterrupt:
            self.interrupted = True
        finally:
            self.close()
        self.finished_at = self.clock()
        return self.passed

    def poll(self) -> None:
        """Look at the hub, then the platform; show what is new."""
        assert self._store is not None and self.platform is not None
        for d in self.devices:
            seen = self._store.seen(d.id)
            if seen is None or seen.last_counter <= self._last_counter[d.id]:
                continue
            self._last_counter[d.id] = seen.last_counter
            event_id = events.device_event_id(d.mac, seen.last_counter)
            item = self._store.get(event_id)
            if item is not None:
                self._observe_hub(json.loads(item.body), seen.last_heard_at)
            elif self._store.is_dead(event_id):
                for dead in self._store.dead_letters():
                    if dead.event_id == event_id:
                        self._observe_hub(json.loads(dead.body), seen.last_heard_at)
                        self._observe_refused(event_id, dead.reason)
            else:
                self._pending[event_id] = d  # a heartbeat, or an event already delivered: the platform will say
        for c in self.checks:
            if c.status != "hub" or c.event_id is None:
                continue
            if self._store.is_dead(c.event_id):
                reason = next((x.reason for x in self._store.dead_letters() if x.event_id == c.event_id), "?")
                self._observe_refused(c.event_id, reason)
            elif not self.platform.available and not self._store.pending(c.event_id):
                # No listing to read: the hub's outbox lets an event go only on the platform's 200/201.
                self._observe_platform({"event_id": c.event_id, "device": {"id": c.device.id},
                                        "counter": c.counter, "type": c.event}, None)
        for stored in self.platform.new():
            body = stored.get("body") or {}
            seen_at = _parse_time(stored.get("received_at"))
            if body.get("event_id") not in self._done_ids:
                # Delivered before the hub's outbox was looked at: the hub first heard it at occurred_at
                # (the device's own timestamp when it has one, which is close enough for a latency).
                self._observe_hub(body, _parse_time(body.get("occurred_at")))
            self._observe_platform(body, seen_at)

    # -- what was seen ----------------------------------------------------------------
    def _check_for(self, s: _Seen) -> Check | None:
        for c in self.checks:
            if c.event_id == s.event_id:
                return c
        for c in self.checks:
            if c.device.id == s.device_id and c.event == s.type and c.status == "waiting":
                return c
        return None

    def _device(self, device_id: str) -> Device | None:
        return next((d for d in self.devices if d.id == device_id), None)

    def _observe_hub(self, body: dict[str, Any], heard_at: float | None) -> None:
        s = _seen_from_body(body)
        if s is None or self._device(s.device_id) is None or s.event_id in self._done_ids:
            return
        self._done_ids.add(s.event_id)
        self._pending.pop(s.event_id, None)
        check = self._check_for(s)
        device = self._device(s.device_id)
        self.show("walk_hub" if check is not None else "walk_hub_again", device=device, event=s.type,
                  rssi="?" if s.rssi is None else s.rssi, signal=signal_verdict(s.rssi),
                  battery="?" if s.battery is None else s.battery)
        if check is None:
            return
        check.status, check.event_id, check.counter = "hub", s.event_id, s.counter
        check.rssi, check.battery = s.rssi, s.battery
        check.hub_at = heard_at if heard_at is not None else self.clock()

    def _observe_platform(self, body: dict[str, Any], stored_at: float | None) -> None:
        s = _seen_from_body(body)
        if s is None:
            return
        check = next((c for c in self.checks if c.event_id == s.event_id), None)
        if check is None or check.status == "passed":
            return
        check.status = "passed"
        check.test = (body.get("data") or {}).get("test") is True if "data" in body else None
        check.platform_at = stored_at if stored_at is not None else self.clock()
        latency = None if check.hub_at is None else round((check.platform_at - check.hub_at) * 1000)
        self.show("walk_platform", device=check.device, event=check.event, event_id=s.event_id,
                  latency_ms=latency)
        if self.done:
            return
        left = [c for c in self.checks if c.status == "waiting"]
        if left:
            self.show("walk_next", device=left[0].device, event=left[0].event, left=len(left))

    def _observe_refused(self, event_id: str, reason: str) -> None:
        check = next((c for c in self.checks if c.event_id == event_id), None)
        if check is not None:
            check.status, check.reason = "refused", reason
            self.show("walk_refused", device=check.device, event=check.event, event_id=event_id, reason=reason)

    # -- the verdict ------------------------------------------------------------------
    def device_summary(self, d: Device) -> dict[str, Any]:
        mine = [c for c in self.checks if c.device is d]
        rssis = [c.rssi for c in mine if c.rssi is not None]
        batteries = [c.battery for c in mine if c.battery is not None]
        signal = max((signal_verdict(r) for r in rssis), key=_ORDER.get, default=None)
        battery = batteries[-1] if batteries else None
        problems = []
        if any(c.status != "passed" for c in mine):
            problems.append("checks")
        if signal == "fail":
            problems.append("signal")
        if battery is not None and battery < BATTERY_LOW_PCT:
            problems.append("battery")
        return {
            "id": d.id, "address": d.address, "role": d.role, "room": d.room,
            "battery": battery, "rssi_min": min(rssis, default=None), "rssi_max": max(rssis, default=None),
            "signal": signal, "checks_passed": sum(c.status == "passed" for c in mine),
            "checks_total": len(mine), "problems": problems, "passed": not problems,
        }

    @property
    def passed(self) -> bool:
        return bool(self.devices) and not self.interrupted and all(
            self.device_summary(d)["passed"] for d in self.devices)

    def result(self, installer: str | None = None) -> dict[str, Any]:
        """The install report as JSON (report.py renders it for people)."""
        return {
            "format": 1,
            "home_id": self.hub.home_id,
            "hub_id": self.hub.hub_id,
            "platform": self.hub.platform.url,
            "platform_listing": bool(self.platform and self.platform.available),
            "installer": installer,
            "started_at": events.timestamp(self.started_at),
            "finished_at": events.timestamp(self.finished_at or self.clock()),
            "interrupted": self.interrupted,
            "thresholds": {"rssi_good_dbm": RSSI_GOOD_DBM, "rssi_marginal_dbm": RSSI_MARGINAL_DBM,
                           "battery_low_pct": BATTERY_LOW_PCT},
            "passed": self.passed,
            "devices": [self.device_summary(d) for d in self.devices],
            "checks": [c.to_json() for c in self.checks],
        }


def _parse_time(text: Any) -> float | None:
    if not isinstance(text, str):
        return None
    from datetime import datetime
    try:
        return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None

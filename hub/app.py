"""The hub process: radio -> ingest -> outbox -> relay, and acks back to devices.

Every frame goes through `Ingest.handle`, which stores an event in SQLite before anything
else happens to it; only then is the device acknowledged (hub/acks) and the relay woken. The
relay reads only the outbox, so a killed hub resumes where it stopped.

The parts are made here and given what they need; none reaches into another. They run as
async context managers and tasks under one TaskGroup: if one fails the others are cancelled
and the error ends the hub (systemd restarts it); `stop` ends it cleanly. One clock (wall
and monotonic time) is given to every part, so a virtual clock moves them all.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import random
import signal
from collections.abc import AsyncIterator, Callable

from safebox.hub import keys
from safebox.hub.acks import AckPolicy
from safebox.hub.cellular import CellularPath
from safebox.hub.clock import SYSTEM, Clock
from safebox.hub.config import HubConfig
from safebox.hub.devices import Devices
from safebox.hub.health import Health
from safebox.hub.ingest import Ingest
from safebox.hub.radio import Backends, Radio
from safebox.hub.rules import RulesEngine
from safebox.hub.service import Service
from safebox.hub.store import HubStore
from safebox.hub.uplink import Heartbeats, HeldUrgent, OperatorAcks, PlatformClient, Relay
from safebox.hub.walk_test import WindowReader

log = logging.getLogger("safebox.hub")

OFFSET_SETTING = "platform_clock_offset_s"
IDLE_LOOK_S = 60.0  # the relay looks at the outbox at least this often (events stored by the CLI)
BleFactory = Callable[[HubConfig], contextlib.AbstractAsyncContextManager[Backends]]


@contextlib.asynccontextmanager
async def bluez(cfg: HubConfig) -> AsyncIterator[Backends]:
    """bleak's default backend: BlueZ over D-Bus, as on a Raspberry Pi."""
    yield Backends()


class _Stopped(Exception):
    """`stop` was set: the TaskGroup ends its tasks."""


class Hub:
    def __init__(self, cfg: HubConfig, *, clock: Clock = SYSTEM, ble: BleFactory = bluez,
                 rng: random.Random | None = None) -> None:
        """`ble` gives the bleak backends (a simulator gives its own air); `rng` draws the relay's
        backoff jitter (a seeded scenario repeats exactly)."""
        self.cfg = cfg
        self._ble = ble
        self._clock = clock
        wall = clock.time
        cfg.state_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        self.store = HubStore.open(cfg.db_path, clock=wall)
        self.devices = Devices.load(cfg.devices_path)
        key = keys.load_or_create(cfg.key_path)
        self.health = Health()
        offset = self.store.setting(OFFSET_SETTING)  # as last measured, until the platform answers
        self.health.platform.clock_offset_s = float(offset) if offset else None
        self.ingest = Ingest(self.store, self.devices, cfg.hub_id, cfg.home_id, clock=wall,
                             is_test=WindowReader(cfg.state_dir).covers, time_check=self._time_check,
                             privacy=cfg.privacy)
        self.acks = AckPolicy(self.store, self.devices, clock=wall, ttl_s=cfg.relay.ack_ttl_s)
        self.rules = RulesEngine(self.store, self.devices, cfg.rules, hub_id=cfg.hub_id, home_id=cfg.home_id,
                                 clock=wall)
        self.cellular = None if cfg.cellular is None else CellularPath(  # SMS when the platform is unreachable
            cfg.cellular, waiting=lambda: [i for i in self.store.due(math.inf, 500) if i.urgent],
            platform_reachable=lambda: self.health.platform.reachable, private_key=key,
            state_dir=cfg.state_dir, on_change=self.health.changed, clock=wall)
        self.service = Service(cfg.hub_id, cfg.state_dir, store=self.store, devices=self.devices, health=self.health,
                               alive=self.relay_alive, acks_sent=lambda: self.acks.sent, clock=clock,
                               cellular=self.cellular)
        self.health.on_change = self.service.poke
        self.client = PlatformClient(cfg.platform.url, hub_id=cfg.hub_id, private_key=key,
                                     ssl_context=cfg.platform.ssl_context(), timeout_s=cfg.platform.timeout_s,
                                     clock=wall, health=self.health.platform, on_change=self.health.changed,
                                     follow_platform_clock=True,
                                     on_offset=lambda s: self.store.set_setting(OFFSET_SETTING, repr(s)))
        heartbeats = None
        if cfg.relay.heartbeat_s:
            heartbeats = Heartbeats(self.store, hub_id=cfg.hub_id, home_id=cfg.home_id, every_s=cfg.relay.heartbeat_s,
                                    data=self.service.heartbeat_data, clock=wall, health=self.health.platform)
        operator = OperatorAcks(self.store, took_up=self.acks.operator_took_up, poll_s=cfg.relay.operator_poll_s,
                                clock=wall)
        held = HeldUrgent(self.store, hub_id=cfg.hub_id, home_id=cfg.home_id, clock=wall, on_change=self.health.changed)
        self.relay = Relay(self.store, self.client, settle=self.acks.settle, heartbeats=heartbeats, operator=operator,
                           held=held,
                           clock=wall, rng=rng, backoff_initial_s=cfg.relay.backoff_initial_s,
                           backoff_max_s=cfg.relay.backoff_max_s, batch_max=cfg.relay.batch_max,
                           max_backlog=cfg.relay.max_backlog, idle_look_s=IDLE_LOOK_S,
                           clock_problem=self.service.clock_problem)
        self.radio: Radio | None = None
        self._relay_task: asyncio.Task[None] | None = None

    def on_frame(self, address: str, service_data: bytes, rssi: int | None) -> None:
        outcome = self.ingest.handle(address, service_data, rssi)
        if outcome.kind == "event" or outcome.raised:
            self.relay.notify()
        if self.rules.observe_outcome(outcome):  # hub events the rules made of it (toilet occupied, ...)
            self.relay.notify()
        self.acks.frame(outcome)

    def _time_check(self) -> tuple[float | None, bool]:
        return self.client.offset_to_apply(), self.service.clock.problem is None

    def relay_alive(self) -> bool:
        return self._relay_task is not None and not self._relay_task.done()

    async def run(self, stop: asyncio.Event) -> None:
        """Run until `stop` is set; everything is closed on the way out, even on error."""
        try:
            self.rules.start()
            async with self._ble(self.cfg) as backends, self.client:
                self.radio = Radio(self.on_frame, backends=backends, connect_attempts=self.cfg.ble.connect_attempts,
                                   adapter=self.cfg.ble.adapter, clock=self._clock, health=self.health.radio,
                                   wanted=lambda address: self.devices.get(address) is not None)
                writer = self.acks.attach(self.radio, self._clock)
                try:
                    async with self.radio:
                        log.info("hub ready: %s, %d devices paired, outbox depth %d, platform %s",
                                 self.cfg.hub_id, len(self.devices), self.store.depth(), self.client.events_url)
                        self.service.ready()
                        await self._tasks(stop)
                finally:
                    self.service.stopping()
                    self.relay.close()
                    await writer.close()
        finally:
            self.store.close()

    async def _tasks(self, stop: asyncio.Event) -> None:
        try:
            async with asyncio.TaskGroup() as tasks:
                self._relay_task = tasks.create_task(self.relay.run(), name="relay")
                tasks.create_task(self.rules.run(self.relay.notify), name="rules")
                tasks.create_task(self.service.run(), name="service")
                if self.cellular is not None:
                    tasks.create_task(self.cellular.run(), name="cellular")
                await stop.wait()
                raise _Stopped
        except BaseExceptionGroup as group:
            _, rest = group.split(_Stopped)
            if rest is not None:
                raise _first(rest) from None  # the relay or the rules failed: that is the hub's error


def _first(group: BaseExceptionGroup) -> BaseException:
    exc: BaseException = group
    while isinstance(exc, BaseExceptionGroup):
        exc = exc.exceptions[0]
    return exc


async def serve(cfg: HubConfig, *, ble: BleFactory = bluez) -> None:
    """Run the hub until SIGTERM or SIGINT."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    hub = Hub(cfg, ble=ble)
    loop.add_signal_handler(signal.SIGUSR1, hub.relay.notify)  # `safebox-hub test-alarm`: look at the outbox now
    await hub.run(stop)
    log.info("hub stopped")

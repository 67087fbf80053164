"""The hub process: radio -> ingest -> outbox -> uplink, and acks back to devices.

Every frame goes through `Ingest.handle`, which stores an event in SQLite before
anything else happens to it; only then is the device acknowledged and the uplink
woken. The uplink reads only the outbox, so a killed hub resumes where it stopped.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import random
import signal
import time
from collections.abc import AsyncIterator, Callable

from safebox.hub import keys
from safebox.hub.acks import Acks
from safebox.hub.cellular import CellularPath
from safebox.hub.config import HubConfig
from safebox.hub.devices import Devices
from safebox.hub.ingest import Ingest, Outcome
from safebox.hub.radio import Backends, Radio
from safebox.hub.rules import RulesEngine
from safebox.hub.service import Service
from safebox.hub.store import HubStore
from safebox.hub.uplink import Uplink
from safebox.hub.walk_test import WindowReader
from safebox.protocol import bthome

log = logging.getLogger("safebox.hub")


@contextlib.asynccontextmanager
async def ble_backends(cfg: HubConfig) -> AsyncIterator[Backends]:
    """The bleak backends the config asks for: BlueZ (bleak's default) or the simulator's air."""
    if cfg.ble.backend == "sim":
        from safebox.tools.sim import bleak_backend  # only the simulated home needs bumble
        async with bleak_backend.attach_hci(cfg.ble.sim_hci):
            yield Backends(scanner=bleak_backend.BumbleScanner, client=bleak_backend.BumbleClient)
    else:
        yield Backends()


class Hub:
    def __init__(self, cfg: HubConfig, *, clock: Callable[[], float] = time.time,
                 ble: Callable[[HubConfig], contextlib.AbstractAsyncContextManager[Backends]] | None = None,
                 rng: random.Random | None = None) -> None:
        """`ble` replaces `ble_backends` (the in-process simulator injects its own air); `rng`
        draws the relay's backoff jitter (a seeded scenario repeats exactly)."""
        self.cfg = cfg
        self._ble = ble or ble_backends
        cfg.state_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        self._clock = clock
        self.store = HubStore.open(cfg.db_path, clock=clock)
        self.devices = Devices.load(cfg.devices_path)
        self._key = keys.load_or_create(cfg.key_path)
        self.ingest = Ingest(self.store, self.devices, cfg.hub_id, cfg.home_id, clock=clock,
                             is_test=WindowReader(cfg.state_dir).covers)
        self.uplink = Uplink(
            self.store, url=cfg.platform.url, hub_id=cfg.hub_id, private_key=self._key,
            ssl_context=cfg.platform.ssl_context(), clock=clock,
            backoff_initial_s=cfg.relay.backoff_initial_s, backoff_max_s=cfg.relay.backoff_max_s,
            timeout_s=cfg.platform.timeout_s, home_id=cfg.home_id, batch_max=cfg.relay.batch_max,
            max_backlog=cfg.relay.max_backlog, heartbeat_s=cfg.relay.heartbeat_s or None,
            heartbeat_data=lambda: self.service.heartbeat_data(), operator_poll_s=cfg.relay.operator_poll_s,
            ack_ttl_s=cfg.relay.ack_ttl_s, idle_poll_s=60.0, clock_check=True, on_owed=self._on_owed,
            clock_problem=lambda: self.service.clock_problem(), on_health_change=lambda: self.service.poke(),
            rng=rng,
        )
        self._acks: Acks | None = None
        self.radio: Radio | None = None
        self._relay: asyncio.Task[None] | None = None
        self.service = Service(self)  # sd_notify, status.json, the clock check (hub/service.py)
        self.cellular = None if cfg.cellular is None else CellularPath(  # SMS when the platform is unreachable
            cfg.cellular, waiting=lambda: [i for i in self.store.due(math.inf, 500) if i.urgent],
            platform_reachable=lambda: self.uplink.health.reachable, private_key=self._key,
            state_dir=cfg.state_dir, on_change=self.service.poke, clock=clock)
        self.rules = RulesEngine(self.store, self.devices, cfg.rules, hub_id=cfg.hub_id, home_id=cfg.home_id,
                                 clock=clock)

    def on_frame(self, address: str, service_data: bytes, rssi: int | None) -> None:
        outcome = self.ingest.handle(address, service_data, rssi)
        if outcome.kind == "event":
            self.uplink.notify()
        if self.rules.observe_outcome(outcome):  # hub events the rules made of it (toilet occupied, ...)
            self.uplink.notify()
        if outcome.ack_needed and self._acks is not None:
            self._acks.request(outcome.device, outcome.counter, self._ack_kind(outcome))
        if outcome.kind != "refused" and outcome.device is not None and self._acks is not None:
            self._acks.heard(outcome.device)  # acks of kind 2/3 it is owed (hub/acks.py)

    def _on_owed(self, device_id: str) -> None:
        if self._acks is not None:
            self._acks.owed(device_id)

    @property
    def acks(self) -> Acks | None:
        return self._acks

    def relay_alive(self) -> bool:
        return self._relay is not None and not self._relay.done()

    def _ack_kind(self, outcome: Outcome) -> int:
        """A repeat of an event the platform already has is answered "delivered"."""
        if outcome.kind == "repeat" and outcome.event_id and not self.store.pending(outcome.event_id) \
                and not self.store.is_dead(outcome.event_id):
            return bthome.ACK_DELIVERED
        return bthome.ACK_HEARD

    async def run(self, stop: asyncio.Event) -> None:
        """Run until `stop` is set; everything is closed on the way out, even on error."""
        self.rules.start()
        async with self._ble(self.cfg) as backends:
            radio = Radio(self.on_frame, backends=backends, connect_attempts=self.cfg.ble.connect_attempts,
                          adapter=self.cfg.ble.adapter)
            self.radio = radio
            self._acks = Acks(radio, clock=self._clock, store=self.store, devices=self.devices)
            relay = self._relay = asyncio.create_task(self.uplink.run(), name="uplink")
            service: asyncio.Task[None] | None = None
            rules = asyncio.create_task(self.rules.run(self.uplink.notify), name="rules")
            cellular = [asyncio.create_task(self.cellular.run(), name="cellular")] if self.cellular else []
            try:
                async with radio:
                    log.info("hub ready: %s, %d devices paired, outbox depth %d, platform %s",
                             self.cfg.hub_id, len(self.devices), self.store.depth(), self.uplink.events_url)
                    self.service.ready()
                    service = asyncio.create_task(self.service.run(), name="service")
                    stopping = asyncio.create_task(stop.wait(), name="stop")
                    done, _ = await asyncio.wait({relay, rules, stopping}, return_when=asyncio.FIRST_COMPLETED)
                    stopping.cancel()
                    for task in (relay, rules):
                        if task in done:
                            task.result()  # the relay and the rules only end by failing: raise it
            finally:
                self.service.stopping()
                if service is not None:
                    service.cancel()
                    await asyncio.gather(service, return_exceptions=True)
                await self._acks.close()
                await self.uplink.close()
                for task in (relay, rules, *cellular):
                    task.cancel()
                await asyncio.gather(relay, rules, *cellular, return_exceptions=True)
                self.store.close()


async def serve(cfg: HubConfig) -> None:
    """Run the hub until SIGTERM or SIGINT."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    hub = Hub(cfg)
    loop.add_signal_handler(signal.SIGUSR1, hub.uplink.notify)  # `safebox-hub test-alarm`: look at the outbox now
    await hub.run(stop)
    log.info("hub stopped")

"""The hub process: radio -> ingest -> outbox -> uplink, and acks back to devices.

Every frame goes through `Ingest.handle`, which stores an event in SQLite before
anything else happens to it; only then is the device acknowledged and the uplink
woken. The uplink reads only the outbox, so a killed hub resumes where it stopped.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import time
from collections.abc import AsyncIterator, Callable

from safebox.hub import keys
from safebox.hub.acks import Acks
from safebox.hub.config import HubConfig
from safebox.hub.devices import Devices
from safebox.hub.ingest import Ingest, Outcome
from safebox.hub.radio import Backends, Radio
from safebox.hub.store import HubStore
from safebox.hub.uplink import Uplink
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
    def __init__(self, cfg: HubConfig, *, clock: Callable[[], float] = time.time) -> None:
        self.cfg = cfg
        cfg.state_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        self._clock = clock
        self.store = HubStore.open(cfg.db_path, clock=clock)
        self.devices = Devices.load(cfg.devices_path)
        self._key = keys.load_or_create(cfg.key_path)
        self.ingest = Ingest(self.store, self.devices, cfg.hub_id, cfg.home_id, clock=clock)
        self.uplink = Uplink(
            self.store, url=cfg.platform.url, hub_id=cfg.hub_id, private_key=self._key,
            ssl_context=cfg.platform.ssl_context(), clock=clock,
            backoff_initial_s=cfg.relay.backoff_initial_s, backoff_max_s=cfg.relay.backoff_max_s,
            timeout_s=cfg.platform.timeout_s,
        )
        self._acks: Acks | None = None

    def on_frame(self, address: str, service_data: bytes, rssi: int | None) -> None:
        outcome = self.ingest.handle(address, service_data, rssi)
        if outcome.kind == "event":
            self.uplink.notify()
        if outcome.ack_needed and self._acks is not None:
            self._acks.request(outcome.device, outcome.counter, self._ack_kind(outcome))

    def _ack_kind(self, outcome: Outcome) -> int:
        """A repeat of an event the platform already has is answered "delivered"."""
        if outcome.kind == "repeat" and outcome.event_id and not self.store.pending(outcome.event_id) \
                and not self.store.is_dead(outcome.event_id):
            return bthome.ACK_DELIVERED
        return bthome.ACK_HEARD

    async def run(self, stop: asyncio.Event) -> None:
        """Run until `stop` is set; everything is closed on the way out, even on error."""
        async with ble_backends(self.cfg) as backends:
            radio = Radio(self.on_frame, backends=backends)
            self._acks = Acks(radio, clock=self._clock)
            relay = asyncio.create_task(self.uplink.run(), name="uplink")
            try:
                async with radio:
                    log.info("hub ready: %s, %d devices paired, outbox depth %d, platform %s",
                             self.cfg.hub_id, len(self.devices), self.store.depth(), self.uplink.events_url)
                    stopping = asyncio.create_task(stop.wait(), name="stop")
                    done, _ = await asyncio.wait({relay, stopping}, return_when=asyncio.FIRST_COMPLETED)
                    stopping.cancel()
                    if relay in done:
                        relay.result()  # the relay only ends by failing: raise it
            finally:
                await self._acks.close()
                await self.uplink.close()
                relay.cancel()
                await asyncio.gather(relay, return_exceptions=True)
                self.store.close()


async def serve(cfg: HubConfig) -> None:
    """Run the hub until SIGTERM or SIGINT."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await Hub(cfg).run(stop)
    log.info("hub stopped")

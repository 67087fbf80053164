"""The hub's relay as the tests drive it: the real parts (PlatformClient, Relay, Heartbeats,
OperatorAcks, AckPolicy) put together as hub/app.py does, behind one object with the
life the tests need (run until closed) and hooks to see what the ack policy decided."""

from __future__ import annotations

import asyncio
import random
import ssl
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from safebox.hub.acks import AckPolicy
from safebox.hub.devices import Devices
from safebox.hub.store import HubStore, OutboxItem
from safebox.hub.uplink import Heartbeats, HeldUrgent, OperatorAcks, PlatformClient, Relay


class _SeenPolicy(AckPolicy):
    """The real ack policy, also telling a test which devices it made owed."""

    def __init__(self, store: HubStore, owed: Callable[[str], None] | None, **kwargs: Any) -> None:
        super().__init__(store, Devices.load(Path("/nonexistent/devices.json")), **kwargs)
        self._seen = owed

    def owed(self, device_id: str) -> None:
        super().owed(device_id)
        if self._seen is not None:
            self._seen(device_id)


class RelayRig:
    def __init__(self, store: HubStore, *, url: str, hub_id: str, private_key: Ed25519PrivateKey,
                 ssl_context: ssl.SSLContext, clock: Callable[[], float] = time.time,
                 sleep: Callable[[float], Awaitable[Any]] = asyncio.sleep, rng: random.Random | None = None,
                 timeout_s: float = 10.0, home_id: str | None = None, heartbeat_s: float | None = None,
                 heartbeat_data: Callable[[], dict[str, Any]] | None = None, operator_poll_s: float | None = None,
                 ack_ttl_s: float = 900.0, clock_check: bool = False, on_owed: Callable[[str], None] | None = None,
                 on_delivered: Callable[[str], Any] | None = None, on_health_change: Callable[[], None] | None = None,
                 **relay_args: Any) -> None:
        self.client = PlatformClient(url, hub_id=hub_id, private_key=private_key, ssl_context=ssl_context,
                                     timeout_s=timeout_s, clock=clock, on_change=on_health_change,
                                     follow_platform_clock=clock_check)
        self.policy = _SeenPolicy(store, on_owed, clock=clock, ttl_s=ack_ttl_s)
        heartbeats = None
        if heartbeat_s:
            assert home_id is not None
            heartbeats = Heartbeats(store, hub_id=hub_id, home_id=home_id, every_s=heartbeat_s, data=heartbeat_data,
                                    clock=clock, health=self.client.health)
        operator = OperatorAcks(store, took_up=self.policy.operator_took_up, poll_s=operator_poll_s, clock=clock)
        self._delivered = on_delivered

        def settle(items: list[OutboxItem]) -> None:
            for event_id in self.policy.settle(items):
                if self._delivered is not None:
                    self._delivered(event_id)

        held = HeldUrgent(store, hub_id=hub_id, home_id=home_id, clock=clock)
        self.relay = Relay(store, self.client, settle=settle, heartbeats=heartbeats, operator=operator, held=held,
                           clock=clock,
                           sleep=sleep, rng=rng, **relay_args)
        self.health = self.client.health
        self.events_url = self.client.events_url
        self._closed = False
        self._done = asyncio.Event()

    def notify(self) -> None:
        self.relay.notify()

    async def run(self) -> None:
        if self._closed:
            return
        try:
            async with self.client:
                await self.relay.run()
        finally:
            self._done.set()

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self.relay.close()


async def run_until(rig: RelayRig, done: Callable[[], bool], timeout_s: float = 5.0) -> None:
    """Run the relay until `done()`, then close it; a crash of its loop is raised."""
    task = asyncio.create_task(rig.run())
    try:
        async with asyncio.timeout(timeout_s):
            while not done():
                if task.done():
                    task.result()
                await asyncio.sleep(0.005)
    finally:
        await rig.close()
        await task

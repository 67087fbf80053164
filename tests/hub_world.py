"""An in-process hub world for tests: the real `Hub` on a bumble air, scripted devices,
and the reference receiver's app over real TLS, all in the test's event loop, in real time.

    async with HubWorld(tmp_path) as world:
        pendant = await world.add_device("pendant")
        counter = await pendant.send_event("emergency")
        await pendant.wait_ack(counter, 2)
"""

from __future__ import annotations

import asyncio
import ssl
from pathlib import Path
from typing import Any

from aiohttp import web

from safebox.hub import keys
from safebox.hub.app import Hub
from safebox.hub.devices import Device, Devices
from safebox.tools import tlsca
from safebox.tools.receiver.app import make_app
from safebox.tools.sim.receiver_faults import fault_middleware
from safebox.tools.receiver.store import Store
from safebox.tools.sim.air import Air
from safebox.tools.sim import hub_toml
from safebox.tools.sim.hub_process import in_process_backends
from safebox.tools.sim.scripted import ScriptedDevice

HUB_ID = "hub-world-0001"
HOME_ID = "home-world-0001"


class HubWorld:
    def __init__(self, workdir: Path, *, relay: dict[str, Any] | None = None, answer_delay_s: float = 0.0,
                 fail_plan: list[int] | None = None) -> None:
        self.workdir = Path(workdir)
        self.relay = {"backoff_initial_s": 0.1, "backoff_max_s": 1, "heartbeat_s": 0, "operator_poll_s": 1,
                      **(relay or {})}
        self.answer_delay_s = answer_delay_s
        self.fail_plan = fail_plan or []
        self.air = Air()
        self.devices: list[ScriptedDevice] = []
        self.platform: Store | None = None
        self.hub: Hub | None = None
        self._runner: web.AppRunner | None = None
        self._stop = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    async def __aenter__(self) -> HubWorld:
        await self.air.__aenter__()
        try:
            tls = tlsca.make_ca(self.workdir / "tls")
            server = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            server.load_cert_chain(tls.server_cert_chain, tls.server_key)
            self.platform = Store(self.workdir / "platform.db")
            app = make_app(self.platform, middlewares=[fault_middleware(self.fail_plan, self.answer_delay_s)])
            self._runner = web.AppRunner(app, shutdown_timeout=0.5)
            await self._runner.setup()
            await web.TCPSite(self._runner, "127.0.0.1", 0, ssl_context=server).start()
            port = self._runner.addresses[0][1]
            self.cfg = hub_toml.parsed(self.workdir, hub_id=HUB_ID, home_id=HOME_ID, state_dir=self.workdir / "state",
                                       platform_url=f"https://127.0.0.1:{port}", ca_file=tls.ca_cert, timeout_s=5,
                                       relay=self.relay)
            self.cfg.state_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
            key = keys.load_or_create(self.cfg.key_path)
            self.platform.add_hub(HUB_ID, keys.public_key_text(key), now=0)
        except BaseException:
            await self.aclose()
            raise
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    async def start_hub(self) -> Hub:
        self.hub = Hub(self.cfg, ble=in_process_backends(self.air))
        self._stop = asyncio.Event()
        self._task = asyncio.create_task(self.hub.run(self._stop), name="hub")
        async with asyncio.timeout(5):
            while self.hub.radio is None or self.hub.radio.health.state != "scanning":
                if self._task.done():
                    self._task.result()
                await asyncio.sleep(0.01)
        return self.hub

    async def stop_hub(self) -> None:
        if self._task is not None:
            self._stop.set()
            await asyncio.wait_for(asyncio.gather(self._task, return_exceptions=True), 10)
            self._task = None

    async def add_device(self, role: str = "pendant", room: str = "hall") -> ScriptedDevice:
        n = len(self.devices) + 1
        device = Device.new(f"24:0A:C4:00:01:{n:02X}", role, room)
        Devices.load(self.cfg.devices_path).add(device)
        scripted = ScriptedDevice(self.air, device)
        await scripted.start()
        self.devices.append(scripted)
        return scripted

    def stored(self) -> list[dict[str, Any]]:
        assert self.platform is not None
        return [e.to_json() for e in self.platform.events()]

    async def wait_stored(self, count: int, timeout: float = 10.0) -> list[dict[str, Any]]:
        async with asyncio.timeout(timeout):
            while len(stored := self.stored()) < count:
                await asyncio.sleep(0.02)
        return stored

    async def aclose(self) -> None:
        await self.stop_hub()
        for device in self.devices:
            await device.stop()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
        if self.platform is not None:
            self.platform.close()
            self.platform = None
        await self.air.aclose()

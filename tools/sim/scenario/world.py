"""The simulated home in ONE process on the virtual clock: air, firmware, hub, platform.

  * the air: bumble's LocalLink (tools/sim/air.py), no HCI server;
  * each device: the real firmware under CPython (tools/sim/cpython_port), its flash a folder;
  * the hub: the real `hub.app.Hub`, its bleak backend on a bumble host on the same air
    (`hub_process.in_process_backends`), its clock the virtual wall clock, its state in real files;
  * the platform: the reference receiver's aiohttp app served over real TLS on 127.0.0.1
    (throwaway CA), storing in SQLite, judging signatures on the same virtual clock.

`kill_hub()` is a power cut: the hub's database connection is closed as it stands (a
transaction in flight would be rolled back, nothing is committed for it), its tasks
are cancelled and its radio leaves the air; `start_hub()` makes a new Hub on the same
state folder. `platform_down()` closes the receiver's port and every connection to it.
"""

from __future__ import annotations

import asyncio
import contextlib
import email.utils
import json
import logging
import os
import random
import ssl
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aiohttp import web

from safebox.firmware.boards import BOARDS
from safebox.hub import config as hub_config
from safebox.hub import keys
from safebox.hub.app import Hub
from safebox.hub.devices import Device, Devices
from safebox.tools import build, tlsca
from safebox.tools.receiver.app import make_app
from safebox.tools.receiver.sms_inbound import SmsInbox
from safebox.tools.receiver.store import Store
from safebox.tools.sim.air import Air
from safebox.tools.sim.cpython_port import PortDevice
from safebox.firmware import config as firmware_config
from safebox.tools.sim.cpython_port.device import HARD_RESET, PWRON_RESET, Boot, board_task_factory
from safebox.tools.sim.cpython_port.loader import FirmwareImporter
from safebox.tools.sim import hub_toml
from safebox.tools.sim.hub_process import in_process_backends
from safebox.tools.sim.scenario import spec
from safebox.tools.sim.scenario.cellular_home import HUB_SIM, SMS_TOKEN, CellularHome, HomeRouter, ModemSettings

log = logging.getLogger("safebox.sim.world")

BOARD = "esp32-devkitc"
_ESPRESSIF_OUI = "24:0A:C4"
PRESS_HOLD_S = 0.12
LONG_PRESS_HOLD_S = 2.5
_EMPTY_MV, _FULL_MV = 3300, 4150  # a Li-ion cell, as firmware/power.py reads it


@dataclass
class HomeDevice:
    name: str  # the scenario's id for it
    device: Device
    board: PortDevice
    firmware_cfg: dict[str, Any]  # config.json as the firmware's own config.parse reads it

    def pin(self, name: str) -> int:
        return int(self.firmware_cfg["pins"][name])

    def door_level(self, is_open: bool) -> int:
        """The contact pin's level for a door position (the reed type is the device's setting)."""
        open_level = int(self.firmware_cfg.get("contact_open_level", 0))
        return open_level if is_open else 1 - open_level

    async def press(self, button: str, hold_s: float) -> None:
        """Hold a button: it switches 3V3 onto its pin (pull-down: 0 at rest)."""
        self.board.set_pin(self.pin(button), 1)
        await asyncio.sleep(hold_s)
        self.board.set_pin(self.pin(button), 0)


class World:
    def __init__(self, workdir: Path, *, clock_offset: float, hub_id: str = "hub-sim-0001",
                 home_id: str = "home-sim-0001", hub_settings: dict[str, Any] | None = None,
                 heartbeat_s: int = 3600, seed: int | None = None, modem: ModemSettings | None = None,
                 router: bool = False) -> None:
        self.workdir = Path(workdir)
        self.clock_offset = clock_offset  # virtual unix time = loop.time() + offset
        self.hub_id = hub_id
        self.home_id = home_id
        self.hub_settings = hub_settings or {}
        self.heartbeat_s = heartbeat_s
        self.seed = seed
        self.air = Air(seed=seed or 0)
        self.hub_clock_offset_s = 0.0  # how far the hub's clock is off the true (virtual) time
        self.devices: dict[str, HomeDevice] = {}
        self.hub: Hub | None = None
        self.hub_starts = 0
        self._hub_task: asyncio.Task[None] | None = None
        self._hub_stop: asyncio.Event | None = None
        self._platform_store: Store | None = None
        self._runner: web.AppRunner | None = None
        self.platform_port = 0
        self.tls: tlsca.TlsFiles | None = None
        self.hub_failures: list[str] = []
        self._killed: list[Hub] = []
        # The broadband router and the modem (cellular_home.py): only when a scenario has them.
        self.router = HomeRouter(lambda: self.platform_port) if router or modem is not None else None
        self.cellular = CellularHome(modem, self.workdir, self.now, seed) if modem is not None else None

    def now(self) -> float:
        return asyncio.get_running_loop().time() + self.clock_offset

    def hub_now(self) -> float:
        """The hub's own clock: the true time, off by `hub_clock_offset_s` (a hub clock step sets it)."""
        return self.now() + self.hub_clock_offset_s

    @property
    def hub_state(self) -> Path:
        return self.workdir / "hub" / "state"

    # -- lifecycle ---------------------------------------------------------------------
    async def __aenter__(self) -> World:
        asyncio.get_running_loop().set_task_factory(board_task_factory)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.tls = tlsca.make_ca(self.workdir / "tls")
        (self.workdir / "platform").mkdir(exist_ok=True)
        self._platform_store = Store(self.workdir / "platform" / "events.db")
        await self.platform_up()
        if self.router is not None:
            await self.router.up()
        self.cfg = self._hub_config()
        self.cfg.state_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        public = keys.public_key_text(keys.load_or_create(self.cfg.key_path))
        self._platform_store.add_hub(self.hub_id, public, now=self.now())
        if self.cellular is not None:
            SmsInbox(self._platform_store).add_number(self.hub_id, HUB_SIM)
            self.cellular.start(f"https://127.0.0.1:{self.platform_port}", self.tls.ca_cert)
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        for d in self.devices.values():
            d.board.power_off()
        await self.stop_hub()
        if self.cellular is not None:
            await self.cellular.close()
        if self.router is not None:
            await self.router.down()
        await self.platform_down()
        if self._platform_store is not None:
            self._platform_store.close()
            self._platform_store = None

    # -- the platform --------------------------------------------------------------------
    async def platform_up(self) -> None:
        if self._runner is not None:
            return
        assert self.tls is not None and self._platform_store is not None
        tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        tls.load_cert_chain(self.tls.server_cert_chain, self.tls.server_key)
        app = make_app(self._platform_store, clock=self.now,
                       sms_token=SMS_TOKEN if self.cellular is not None else None)
        app.on_response_prepare.append(self._platform_date)
        runner = web.AppRunner(app, handle_signals=False, access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", self.platform_port, ssl_context=tls)
        await site.start()
        self.platform_port = runner.addresses[0][1]
        self._runner = runner

    async def _platform_date(self, request: web.Request, response: web.StreamResponse) -> None:
        # The platform's clock is the simulated one: its Date header too (the hub compares it with its own).
        response.headers["Date"] = email.utils.formatdate(self.now(), usegmt=True)

    async def platform_down(self) -> None:
        runner, self._runner = self._runner, None
        if runner is not None:
            await runner.cleanup()

    async def internet(self, up: bool) -> None:
        """The home's broadband (the hub's way to the platform), not the platform itself."""
        assert self.router is not None, "a scenario with internet steps has a router"
        await (self.router.up() if up else self.router.down())

    @property
    def platform_is_up(self) -> bool:
        return self._runner is not None

    def stored_events(self) -> list[dict[str, Any]]:
        assert self._platform_store is not None
        return [e.to_json() for e in self._platform_store.events()]

    # -- the hub -------------------------------------------------------------------------
    def _hub_config(self) -> hub_config.HubConfig:
        assert self.tls is not None
        port = self.platform_port if self.router is None else self.router.port
        return hub_toml.parsed(self.workdir, hub_id=self.hub_id, home_id=self.home_id, state_dir=self.hub_state,
                               platform_url=f"https://127.0.0.1:{port}", ca_file=self.tls.ca_cert, timeout_s=10,
                               cellular=None if self.cellular is None else self.cellular.table(),
                               **spec.hub_settings(self.hub_settings, self.heartbeat_s))

    def _hub_name(self) -> str:
        self.hub_starts += 1
        return f"hub-{self.hub_starts}"

    async def start_hub(self) -> None:
        if self.hub_running:
            return
        self.cfg = self._hub_config()
        # A seeded run repeats: the relay's backoff jitter is drawn from the seed, per hub start.
        rng = None if self.seed is None else random.Random(f"{self.seed}/hub/{self.hub_starts}")
        hub = Hub(self.cfg, clock=_VirtualClock(self), ble=in_process_backends(self.air, self._hub_name), rng=rng)
        self.hub = hub
        self._hub_stop = asyncio.Event()
        self._hub_task = asyncio.create_task(self._run_hub(hub, self._hub_stop), name="hub")
        await asyncio.sleep(0.05)  # scanning before anything else happens

    async def _run_hub(self, hub: Hub, stop: asyncio.Event) -> None:
        try:
            await hub.run(stop)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # a hub that dies is a finding of the scenario (unless it was killed)
            if hub in self._killed:
                log.info("killed hub ended with %s: %s", type(exc).__name__, exc)
                return
            log.exception("hub failed")
            self.hub_failures.append(f"{type(exc).__name__}: {exc}")

    @property
    def hub_running(self) -> bool:
        return self._hub_task is not None and not self._hub_task.done()

    async def kill_hub(self) -> None:
        """Power cut of the hub: see the module doc."""
        task, hub = self._hub_task, self.hub
        self._hub_task = None
        if task is None or hub is None:
            return
        self._killed.append(hub)
        hub.store.close()  # as it stands: nothing more reaches the disk from this hub
        task.cancel()
        with contextlib.suppress(TimeoutError, asyncio.CancelledError):
            async with asyncio.timeout(5):
                await asyncio.gather(task, return_exceptions=True)

    async def stop_hub(self) -> None:
        """A clean stop (SIGTERM)."""
        task, stop = self._hub_task, self._hub_stop
        self._hub_task = None
        if task is None or stop is None:
            return
        stop.set()
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(10):
                await asyncio.gather(task, return_exceptions=True)
        if not task.done():
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)

    # -- devices -------------------------------------------------------------------------
    def add_device(self, name: str, role: str, room: str = "", battery: int = 100,
                   heartbeat_s: int | None = None) -> HomeDevice:
        """Pair a device (fresh key, in the hub's registry and the device's config.json); not powered yet."""
        n = len(self.devices) + 1
        mac = f"{_ESPRESSIF_OUI}:{n >> 16 & 0xFF:02X}:{n >> 8 & 0xFF:02X}:{n & 0xFF:02X}"
        device = Device.new(mac, role, room)
        Devices.load(self.cfg.devices_path).add(device)
        flash = self.workdir / "devices" / name
        flash.mkdir(parents=True, exist_ok=True)
        (flash / "main.py").write_text(build.MAIN_PY)
        cfg = {"role": role, "board": BOARD, "key": device.key.hex(), "heartbeat_s": heartbeat_s or self.heartbeat_s}
        (flash / "config.json").write_text(json.dumps(cfg))
        os.chmod(flash / "config.json", 0o600)
        board = PortDevice(self.air, flash, mac=mac, name=name)
        home = HomeDevice(name, device, board, firmware_config.parse(cfg))
        # At rest: buttons released (pull-down, low), the door closed.
        for button in ("emergency", "community_service", "life_service"):
            board.pin_levels[home.pin(button)] = 0
        if role != "pendant":
            board.pin_levels[home.pin("contact")] = home.door_level(False)
        board.set_adc(home.pin("battery_adc"), self.battery_uv(board, battery))
        self.devices[name] = home
        return home

    def battery_uv(self, board: PortDevice, percent: int) -> int:
        """The ADC input at which this firmware reports `percent` (found by asking its own
        battery code; the cell voltage through the 1:2 divider if that cannot be done)."""
        pin = BOARDS[BOARD]["battery_adc"]
        try:
            return _calibrate(board, pin, percent)
        except Exception as exc:  # the firmware's power module changed shape: physics it is
            log.warning("battery calibration through the firmware failed (%s); using the cell model", exc)
            mv = _EMPTY_MV + (_FULL_MV - _EMPTY_MV) * percent / 100
            return int(mv * 1000 / 2)

    def power_on(self, name: str, cause: int = PWRON_RESET) -> None:
        self.devices[name].board.power_on(cause)

    def reboot(self, name: str) -> None:
        self.devices[name].board.power_on(HARD_RESET)


def _calibrate(board: PortDevice, pin: int, percent: int) -> int:
    boot = Boot(board, PWRON_RESET, 0)  # a probe: never the board's running boot
    saved = board.adc_uv.get(pin)
    try:
        power = FirmwareImporter(boot)._load("safebox.firmware.power")
        battery = power.Battery(pin)

        def reads(uv: int) -> int:
            board.adc_uv[pin] = uv
            return int(battery.percent())

        lo, hi = 0, 3_300_000
        if reads(hi) < percent:
            raise ValueError(f"the firmware never reports {percent}%")
        while lo < hi:  # the lowest input that reads `percent` or more
            mid = (lo + hi) // 2
            if reads(mid) >= percent:
                hi = mid
            else:
                lo = mid + 1
        if reads(lo) != percent:
            raise ValueError(f"the firmware skips {percent}%")
        return lo
    finally:
        boot.end()
        if saved is None:
            board.adc_uv.pop(pin, None)
        else:
            board.adc_uv[pin] = saved


class _VirtualClock:
    """The hub's clock in the scenario: its wall time is `hub_now` (the virtual time, off by a
    clock step when one is set), its monotonic time the event loop's (virtual too)."""

    def __init__(self, world: World) -> None:
        self._world = world

    def time(self) -> float:
        return self._world.hub_now()

    def monotonic(self) -> float:
        return asyncio.get_running_loop().time()

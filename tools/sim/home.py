"""A simulated home: every real part in its place, only the radio is virtual.

* the air: bumble's virtual link, in this process (`Air`);
* each device: the compiled firmware image on the real `micropython` binary, its
  `bluetooth` and `machine` shims bridged to a bumble device on the air;
* the hub: `safebox-hub run` as its own process, its bleak backend attached to the air
  over HCI-on-TCP, state in real files (SQLite, key, devices);
* the platform: `safebox-receiver serve` as its own process, over real TLS with a
  throwaway CA, storing in SQLite.

Devices are installed with the installer's own tools (tools/installer): the image is
flashed into the device's flash folder and pairing makes a fresh random key, written to
the device's config.json and to the hub's device registry.
"""

from __future__ import annotations

import asyncio
import json
import ssl
from collections.abc import Awaitable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import aiohttp

from safebox.firmware.boards import BOARDS
from safebox.hub import keys
from safebox.hub.devices import Device
from safebox.protocol import signing
from safebox.tools import build, tlsca
from safebox.tools.sim import hub_toml, lines
from safebox.tools.sim.air import Air
from safebox.tools.sim.firmware_process import FirmwareProcess
from safebox.tools.sim.processes import ChildProcess

BOARD = "esp32-devkitc"
_ESPRESSIF_OUI = "24:0A:C4"
FRESH_BATTERY_UV = 1_975_000  # 3.95 V behind the boards' 1:2 divider: a fresh cell, about 75 %


@dataclass
class SimDevice:
    device: Device
    firmware: FirmwareProcess
    board: str = BOARD

    @property
    def id(self) -> str:
        return self.device.id

    def pin(self, name: str) -> int:
        return BOARDS[self.board][name]

    async def press(self, button: str, hold_s: float = 0.12) -> None:
        """Hold a pendant button: it switches 3V3 onto its pin (firmware/boards.py)."""
        bridge = self.firmware.bridge
        bridge.set_pin(self.pin(button), 1)
        await asyncio.sleep(hold_s)
        bridge.set_pin(self.pin(button), 0)

    def set_door(self, is_open: bool, open_level: int = 0) -> None:
        """Open or close the door a contact sensor watches (an NC reed by default: open reads 0)."""
        self.firmware.bridge.set_pin(self.pin("contact"), open_level if is_open else 1 - open_level)


def parse_time(text: str) -> float:
    """An RFC 3339 time from the protocol -> unix seconds."""
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


class SimHome:
    """Use as `async with SimHome(workdir) as home:`; everything is stopped on the way out."""

    def __init__(self, workdir: Path, *, hub_id: str = "hub-sim-0001", home_id: str = "home-sim-0001",
                 receiver_args: tuple[str, ...] = (), enrol: bool = True, console: bool = False,
                 hub_log_level: str = "info", door_moves: bool = False) -> None:
        """`enrol=False` leaves the hub unknown to the platform (the installer's `enrol` does it);
        `door_moves=True` has the hub send every door movement (hub/privacy.py; by default, as
        in production, they stay at the hub), for tests that follow each one to the platform;
        `console=True` also serves the operators' screen (its address in `console_url`);
        `hub_log_level="debug"` shows every refused frame (the hub counts floods otherwise)."""
        self.workdir = Path(workdir)
        self.hub_id = hub_id
        self.home_id = home_id
        self.receiver_args = (*receiver_args, *(("--operator-port", "0") if console else ()))
        self.console_url = ""
        self.enrol = enrol
        self.hub_log_level = hub_log_level
        self.air = Air()
        self.devices: list[SimDevice] = []
        self.hub: ChildProcess | None = None
        self.hub_runs: list[list[str]] = []  # output lines of hub processes ended by kill_hub/restart_hub
        self.receiver: ChildProcess | None = None
        self.platform_url = ""
        # Where the hub is told the platform is, when not platform_url itself: the chaos run
        # (tools/chaos/proxy.py) puts a fault-injecting TCP proxy here, in front of the receiver.
        self.hub_platform_url: str | None = None
        # hub.toml tables over the simulated home's (tools/sim/hub_toml.py `document`'s keyword
        # arguments, e.g. {"rules": {...}} with short timers for the chaos run).
        self.hub_settings: dict[str, Any] = {}
        self.door_moves = door_moves
        self._ssl: ssl.SSLContext | None = None
        self.ca_file: Path | None = None  # the throwaway CA the platform's certificate is signed by
        self._image = self.workdir / "image"

    # -- paths ---------------------------------------------------------------------------
    @property
    def hub_config(self) -> Path:
        return self.workdir / "hub" / "hub.toml"

    @property
    def hub_state(self) -> Path:
        return self.workdir / "hub" / "state"

    @property
    def receiver_db(self) -> Path:
        return self.workdir / "platform" / "events.db"

    # -- lifecycle -----------------------------------------------------------------------
    async def __aenter__(self) -> SimHome:
        self.workdir.mkdir(parents=True, exist_ok=True)
        try:
            await self.air.__aenter__()
            tls = tlsca.make_ca(self.workdir / "tls")
            self.ca_file = tls.ca_cert
            self._ssl = ssl.create_default_context(cafile=str(tls.ca_cert))
            build.stage(self._image)
            await self._start_receiver(tls)
            self._write_hub_config(tls.ca_cert)
            if self.enrol:
                await self._enrol_hub()
            await self.start_hub()
        except BaseException:
            await self.aclose()
            raise
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        for d in self.devices:
            await d.firmware.aclose()
        for proc in (self.hub, self.receiver):
            if proc is not None:
                await proc.stop()
        await self.air.aclose()

    async def _start_receiver(self, tls: tlsca.TlsFiles) -> None:
        self.receiver_db.parent.mkdir(parents=True, exist_ok=True)
        self.receiver = ChildProcess(
            # the receiver, through the simulator's entry point that can add faults (receiver_faults.py)
            "receiver", "safebox.tools.sim.receiver_faults", "serve", "--db", str(self.receiver_db),
            "--host", "127.0.0.1", "--port", "0", "--cert", str(tls.server_cert_chain),
            "--key", str(tls.server_key), *self.receiver_args)
        m = await self.receiver.start(lines.Listening.pattern())
        self.platform_url = m["url"]
        if "--operator-port" in self.receiver_args:
            self.console_url = (await self.receiver.wait_for_line(r"operators on (https://\S+)")).group(1)

    async def add_operator(self, name: str, password: str, *, role: str = "operator") -> None:
        """An operator account on the platform, as `safebox-receiver operator add` makes it."""
        proc = await asyncio.create_subprocess_exec(
            *ChildProcess("cli", "safebox.tools.receiver.cli").argv, "operator", "add", "--db", str(self.receiver_db),
            name, "--role", role, stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE)
        _, err = await proc.communicate((password + "\n").encode())
        if proc.returncode != 0:
            raise RuntimeError(f"operator add {name} failed: {err.decode().strip()}")

    def _write_hub_config(self, ca_file: Path) -> None:
        extra = dict(self.hub_settings)
        relay = {"backoff_initial_s": 0.2, "backoff_max_s": 5, **extra.pop("relay", {})}
        hub_toml.write(self.hub_config, hub_id=self.hub_id, home_id=self.home_id,
                       platform_url=self.hub_platform_url or self.platform_url, ca_file=ca_file, timeout_s=5,
                       relay=relay, door_moves=self.door_moves, **extra)

    async def _run_cli(self, module: str, *args: str) -> str:
        proc = await asyncio.create_subprocess_exec(
            *ChildProcess("cli", module).argv, *args,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
        out, err = await proc.communicate()
        if proc.returncode != 0:
            raise RuntimeError(f"{module} {' '.join(args)} failed: {err.decode().strip()}")
        return out.decode()

    async def _enrol_hub(self) -> None:
        """The hub makes its key; the platform learns the public half."""
        ident = json.loads(await self._run_cli("safebox.hub.cli", "identity", "--config", str(self.hub_config),
                                               "--json"))
        await self._run_cli("safebox.tools.receiver.cli", "add-hub", "--db", str(self.receiver_db),
                            ident["hub_id"], ident["public_key"])

    async def add_sms_number(self, number: str) -> None:
        """The platform learns the hub's SIM number (SMS-borne events from it are the hub's)."""
        await self._run_cli("safebox.tools.receiver.cli", "add-sms-number", "--db", str(self.receiver_db),
                            self.hub_id, number)

    async def start_hub(self) -> None:
        self.hub = ChildProcess("hub", "safebox.tools.sim.hub_process", "--hci", self.air.hci_spec,
                                "--log-level", self.hub_log_level, "run", "--config", str(self.hub_config))
        await self.hub.start(r"hub ready")
        await self.air.wait_hubs(1)

    async def kill_hub(self) -> int | None:
        """SIGKILL the hub process: no clean-up of any kind, as in a power cut. Its output so
        far stays in `hub_runs`; returns its exit status."""
        if self.hub is None:
            return None
        code = await self.hub.kill()
        self.hub_runs.append(self.hub.lines)
        return code

    async def restart_hub(self) -> None:
        """Start the hub again on the same state folder (after `kill_hub` or a stop)."""
        if self.hub is not None and self.hub.running:
            await self.hub.stop()
            self.hub_runs.append(self.hub.lines)
        await self.start_hub()

    async def restart_receiver(self, extra: tuple[str, ...] = (), *, kill: bool = False, down_s: float = 0.0,
                               same_port: bool = False) -> None:
        """Stop the receiver (SIGTERM; SIGKILL with `kill`) and, `down_s` later, start it again on
        the same database: on a fresh port (`platform_url` follows), or with `same_port` on the
        one it had (retried while the port lingers). `extra` arguments replace the fault flags
        (--fail-first, --fail-status: tools/sim/receiver_faults.py) it was started with."""
        old = self.receiver
        assert old is not None
        args = list(old.argv[3:])  # after: python -m <module>
        for flag in ("--fail-first", "--fail-status"):
            if flag in args:
                i = args.index(flag)
                del args[i:i + 2]
        args[args.index("--port") + 1] = self.platform_url.rsplit(":", 1)[1] if same_port else "0"
        await (old.kill() if kill else old.stop())
        if down_s:
            await asyncio.sleep(down_s)
        for _ in range(50 if same_port else 1):
            new = ChildProcess("receiver", old.argv[2], *args, *extra)
            try:
                started = await new.start(lines.Listening.pattern())
                break
            except Exception:
                await new.stop()
                if not same_port:
                    raise
                await asyncio.sleep(0.1)  # the port may linger for a moment
        else:
            raise RuntimeError("receiver did not come back on its port")
        self.receiver = new
        self.platform_url = started["url"]

    async def hub_status(self) -> dict[str, Any]:
        """`safebox-hub status --json`, as an installer would ask over SSH."""
        return json.loads(await self._run_cli("safebox.hub.cli", "status", "--config", str(self.hub_config),
                                              "--json"))

    # -- devices -------------------------------------------------------------------------
    async def add_device(self, role: str, room: str = "", *, settings: dict[str, Any] | None = None,
                         board_name: str = BOARD, env: dict[str, str] | None = None) -> SimDevice:
        """Flash and pair a new device with the installer's tools, power it on; returns once
        its firmware says it is ready. Its flash is a folder: the image, then config.json.
        `settings` are added to its config.json (firmware/config.py: e.g. heartbeat_s);
        `env` to its process's environment (the shims' switches, e.g. SAFEBOX_SIM_NO_WAKE_PINS)."""
        from safebox.hub import config as hub_config
        from safebox.tools.installer.board import FolderBoard
        from safebox.tools.installer.flash import Image, flash
        from safebox.tools.installer.pairing import pair

        n = len(self.devices) + 1
        mac = f"{_ESPRESSIF_OUI}:{n >> 16 & 0xFF:02X}:{n >> 8 & 0xFF:02X}:{n & 0xFF:02X}"
        board = FolderBoard(self.workdir / "devices" / mac.replace(":", "").lower(), mac)

        def install() -> Device:
            flash(board, Image.from_dir(self._image))
            return pair(board, hub_config.load(self.hub_config), role, room, board_name=board_name, reset=False).device

        device = await asyncio.to_thread(install)
        if settings:
            config_file = board.folder / "config.json"
            config_file.write_text(json.dumps({**json.loads(config_file.read_text()), **settings}))
        firmware = FirmwareProcess(self.air, board.folder, mac=mac, lib_dir=board.folder / "lib", name=device.id,
                                   env=env)
        firmware.bridge.set_adc(BOARDS[board_name]["battery_adc"], FRESH_BATTERY_UV)
        await firmware.start()
        await firmware.wait_for_line(lines.Ready.pattern(), timeout=10)
        sim = SimDevice(device, firmware, board_name)
        self.devices.append(sim)
        return sim

    async def press(self, device: SimDevice, button: str, hold_s: float = 0.12) -> None:
        await device.press(button, hold_s)

    # -- the platform's view -------------------------------------------------------------
    async def stored_events(self) -> list[dict[str, Any]]:
        """What the receiver has stored from this home's hub, through its HTTPS listing
        (verified TLS), signed with the hub's key as the installer's walk test does."""
        key = keys.load_or_create(self.hub_state / "hub_key.pem")
        found: list[dict[str, Any]] = []
        async with aiohttp.ClientSession() as session:
            while True:
                url = f"{self.platform_url}/v1/events?since_id={found[-1]['id'] if found else 0}"
                headers = signing.signed_get_headers(key, self.hub_id, url)
                async with session.get(url, headers=headers, ssl=self._ssl) as resp:
                    resp.raise_for_status()
                    page = (await resp.json())["events"]
                if not page:
                    return found
                found += page

    async def wait_stored(self, count: int, timeout: float = 10.0, poll_s: float = 0.01) -> list[dict[str, Any]]:
        """Wait until the receiver holds at least `count` events."""
        async with asyncio.timeout(timeout):
            while len(stored := await self.stored_events()) < count:
                await asyncio.sleep(poll_s)
        return stored

    # -- someone else on the air ---------------------------------------------------------
    async def transmit(self, mac: str, adv_data: bytes, duration_s: float = 0.3, interval_ms: int = 30, *,
                       until: Awaitable[Any] | None = None) -> Any:
        """Advertise `adv_data` from a bumble device claiming address `mac` (an attacker,
        or a neighbour's device) for `duration_s`, then leave the air.

        With `until` (say, the hub's line refusing it), advertise until it is done, at most
        `duration_s` (TimeoutError then), and give its result: a hub on Linux hears nothing while
        it makes a connection (an ack to a device), so a short burst can pass a busy hub unheard."""
        from bumble.device import Device as BumbleDevice
        from bumble.hci import Address, OwnAddressType

        controller = self.air.plug_device(f"transmitter-{mac}", mac)
        radio = BumbleDevice.with_hci(f"transmitter-{mac}", Address(mac), controller, controller)
        try:
            await radio.power_on()
            radio.advertising_data = adv_data
            await radio.start_advertising(own_address_type=OwnAddressType.PUBLIC, advertising_interval_min=interval_ms,
                                          advertising_interval_max=interval_ms)
            if until is None:
                await asyncio.sleep(duration_s)
                return None
            async with asyncio.timeout(duration_s):
                return await until
        finally:
            if radio.is_advertising:
                await radio.stop_advertising()
            self.air.unplug(controller)

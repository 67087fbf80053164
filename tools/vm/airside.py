"""The host's side of a virtual-Pi run: the simulated air with real firmware on it.

`firmware_device(air, workdir, role)` flashes the device image into a board folder, pairs it
with the installer's own tools against a hub config written in `workdir/hub` (the hub itself
is not started: in a virtual-Pi run the radio side being tested is inside the VM), and powers
it on as `FirmwareProcess` on the real `micropython` binary. `AirLog` records every
advertising PDU the air hands to the hubs' controllers (the VM's among them), per service data.
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
from pathlib import Path
from typing import cast

from safebox.firmware.boards import BOARDS
from safebox.hub.devices import Device
from safebox.protocol import bthome
from safebox.tools import build
from safebox.tools.sim.air import Air
from safebox.tools.sim import hub_toml
from safebox.tools.sim.firmware_process import FirmwareProcess
from safebox.tools.sim.home import BOARD, FRESH_BATTERY_UV

_OUI = "24:0A:C4"


def _pin(name: str) -> int:
    return cast(int, BOARDS[BOARD][name])


@dataclasses.dataclass
class FirmwareDevice:
    device: Device
    firmware: FirmwareProcess

    async def press(self, button: str, hold_s: float = 0.12) -> float:
        """Hold a pendant button: it switches 3V3 onto its pin (firmware/boards.py); returns
        when it went down."""
        bridge = self.firmware.bridge
        down = time.monotonic()
        bridge.set_pin(_pin(button), 1)
        await asyncio.sleep(hold_s)
        bridge.set_pin(_pin(button), 0)
        return down

    def set_door(self, is_open: bool, open_level: int = 0) -> None:
        """Open or close the door a contact sensor watches (an NC reed: open reads 0)."""
        self.firmware.bridge.set_pin(_pin("contact"), open_level if is_open else 1 - open_level)

    def unseal(self, service_data: bytes) -> tuple[int, int, list[tuple[int, int]]]:
        return bthome.unseal(self.device.key, self.device.mac, service_data)

    def bursts(self, after: float = 0.0) -> list[tuple[float, float | None, bytes]]:
        """(start, end or None, service data) of each advertising period since `after`."""
        out: list[tuple[float, float | None, bytes]] = []
        for adv in self.firmware.bridge.advertising:
            if out and out[-1][1] is None:
                out[-1] = (out[-1][0], adv.t, out[-1][2])
            if adv.interval_us is not None and adv.t >= after:
                out.append((adv.t, None, bthome.service_data_in(adv.adv_data) or b""))
        return out


def _hub_config(folder: Path) -> Path:
    return hub_toml.write(folder / "hub.toml", hub_id="hub-vm-0001", home_id="home-vm-0001",
                          platform_url="https://10.0.2.2:8443")


async def firmware_device(air: Air, workdir: Path, role: str = "pendant", n: int = 1,
                          hub_config: Path | None = None) -> FirmwareDevice:
    """A paired device running the real firmware on the air (see the module doc); paired with
    `hub_config`'s home if given, else with a config made in workdir/hub."""
    from safebox.hub import config as hub_config_module
    from safebox.tools.installer.board import FolderBoard
    from safebox.tools.installer.flash import Image, flash
    from safebox.tools.installer.pairing import pair

    image = workdir / "image"
    if not image.exists():
        await asyncio.to_thread(build.stage, image)
    config = hub_config or _hub_config(workdir / "hub")
    mac = f"{_OUI}:{n >> 16 & 0xFF:02X}:{n >> 8 & 0xFF:02X}:{n & 0xFF:02X}"
    board = FolderBoard(workdir / "devices" / mac.replace(":", "").lower(), mac)

    def install() -> Device:
        flash(board, Image.from_dir(image))
        return pair(board, hub_config_module.load(config), role, "", board_name=BOARD, reset=False).device

    device = await asyncio.to_thread(install)
    firmware = FirmwareProcess(air, board.folder, mac=mac, lib_dir=board.folder / "lib", name=device.id)
    firmware.bridge.set_adc(_pin("battery_adc"), FRESH_BATTERY_UV)
    await firmware.start()
    await firmware.wait_for_line(r"^ready ", timeout=10)
    return FirmwareDevice(device, firmware)


class AirLog:
    """Every advertising PDU on its way to a hub controller: (host time, address, service data).

    Installed as the air's `drop_filter` (it drops nothing)."""

    def __init__(self, air: Air) -> None:
        self.sent: list[tuple[float, str, bytes | None]] = []
        air.drop_filter = self._see

    def _see(self, address: str, data: bytes) -> bool:
        self.sent.append((time.monotonic(), address, bthome.service_data_in(data)))
        return False

    def count(self, service_data: bytes, start: float, end: float) -> int:
        return sum(1 for t, _, sd in self.sent if sd == service_data and start <= t <= end)

"""The hub's radio: scan for our frames and write acknowledgements, through bleak's public API.

The backend is injected (`backend=` on BleakScanner and BleakClient): BlueZ on a
Raspberry Pi by default, the simulator's bumble backend in the simulated home.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from bleak import BleakClient, BleakScanner
from bleak.backends.device import BLEDevice
from bleak.backends.scanner import AdvertisementData
from bleak.exc import BleakError

from safebox.protocol import bthome

log = logging.getLogger("safebox.hub.radio")

ACK_CHAR_UUID = "5afe0002-8d3b-4c5e-9a4c-3b2f1e0d0c0b"
ACK_SERVICE_UUID = "5afe0001-8d3b-4c5e-9a4c-3b2f1e0d0c0b"
# BlueZ passive scanning needs an advertisement-monitor pattern: service data
# (AD type 0x16) starting with our UUID, little-endian.
_BLUEZ_PATTERN = (0, 0x16, b"\xd2\xfc")

FrameCallback = Callable[[str, bytes, "int | None"], None]


@dataclass(frozen=True)
class Backends:
    """The bleak backend classes to use; None means bleak's platform default."""

    scanner: type | None = None
    client: type | None = None


class Radio:
    """Scans passively for BTHome service data 0xFCD2 and hands each frame to `on_frame`.

    Use as an async context manager; `write_ack` connects to a device that is
    advertising and writes one acknowledgement.
    """

    def __init__(self, on_frame: FrameCallback, *, backends: Backends = Backends(),
                 connect_timeout_s: float = 10.0) -> None:
        self._on_frame = on_frame
        self._backends = backends
        self._connect_timeout_s = connect_timeout_s
        self._scanner: BleakScanner | None = None
        self._seen: dict[str, BLEDevice] = {}
        self._locks: dict[str, asyncio.Lock] = {}

    def _scanner_args(self) -> dict[str, Any]:
        args: dict[str, Any] = {"detection_callback": self._detected, "backend": self._backends.scanner,
                                "scanning_mode": "passive"}
        if self._backends.scanner is None:
            from bleak.args.bluez import BlueZScannerArgs, OrPattern
            args["bluez"] = BlueZScannerArgs(or_patterns=[OrPattern(*_BLUEZ_PATTERN)])
        return args

    async def __aenter__(self) -> Radio:
        try:
            self._scanner = BleakScanner(**self._scanner_args())
            await self._scanner.start()
        except (BleakError, ValueError) as exc:
            # Some adapters and kernels refuse passive scanning: fall back to active.
            log.warning("passive scanning unavailable (%s); scanning actively", exc)
            args = self._scanner_args()
            args.pop("bluez", None)
            args["scanning_mode"] = "active"
            self._scanner = BleakScanner(**args)
            await self._scanner.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    async def close(self) -> None:
        scanner, self._scanner = self._scanner, None
        if scanner is not None:
            await scanner.stop()

    def _detected(self, device: BLEDevice, adv: AdvertisementData) -> None:
        data = adv.service_data.get(bthome.SERVICE_UUID)
        if data is None:
            return
        self._seen[device.address.upper()] = device
        self._on_frame(device.address.upper(), bytes(data), adv.rssi)

    async def write_ack(self, address: str, ack: bytes) -> bool:
        """Connect to `address`, write `ack`, disconnect. False (logged) when it could
        not be done: the device re-sends its frame and the hub answers that repeat."""
        device = self._seen.get(address)
        if device is None:
            log.warning("ack to %s not sent: device not seen by the scanner", address)
            return False
        lock = self._locks.setdefault(address, asyncio.Lock())
        async with lock:
            try:
                async with BleakClient(device, timeout=self._connect_timeout_s,
                                       backend=self._backends.client) as client:
                    await client.write_gatt_char(ACK_CHAR_UUID, ack, response=True)
                return True
            except (BleakError, asyncio.TimeoutError, OSError) as exc:
                log.warning("ack to %s not delivered: %s", address, exc or type(exc).__name__)
                return False

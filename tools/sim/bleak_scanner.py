"""bleak's scanner backend over a bumble host (see bleak_backend.py): advertisements reported as BlueZ reports them."""

from __future__ import annotations

import asyncio
import contextlib
import struct
from typing import Any

from bleak.backends.scanner import AdvertisementData, AdvertisementDataCallback, BaseBleakScanner
from bleak.uuids import normalize_uuid_16, normalize_uuid_32
from bumble.device import Advertisement

from safebox.tools.sim.bumble_host import BumbleHost, _address_str, _uuid128, current_host



def parse_advertisement(data: bytes, rssi: int, platform: Any = None) -> AdvertisementData:
    """Advertising data bytes as bleak's AdvertisementData (BlueZ's conventions)."""
    local_name: str | None = None
    manufacturer: dict[int, bytes] = {}
    service_data: dict[str, bytes] = {}
    uuids: list[str] = []
    tx_power: int | None = None
    i = 0
    while i < len(data):
        length = data[i]
        if length == 0 or i + 1 + length > len(data):
            break
        kind, value = data[i + 1], bytes(data[i + 2 : i + 1 + length])
        i += 1 + length
        if kind in (0x08, 0x09) and (kind == 0x09 or local_name is None):
            local_name = value.decode(errors="replace")
        elif kind in (0x02, 0x03):
            uuids += [normalize_uuid_16(u) for (u,) in struct.iter_unpack("<H", value[: len(value) // 2 * 2])]
        elif kind in (0x04, 0x05):
            uuids += [normalize_uuid_32(u) for (u,) in struct.iter_unpack("<I", value[: len(value) // 4 * 4])]
        elif kind in (0x06, 0x07):
            uuids += [_uuid128(value[j : j + 16]) for j in range(0, len(value) - 15, 16)]
        elif kind == 0x16 and len(value) >= 2:
            service_data[normalize_uuid_16(struct.unpack_from("<H", value)[0])] = value[2:]
        elif kind == 0x20 and len(value) >= 4:
            service_data[normalize_uuid_32(struct.unpack_from("<I", value)[0])] = value[4:]
        elif kind == 0x21 and len(value) >= 16:
            service_data[_uuid128(value[:16])] = value[16:]
        elif kind == 0xFF and len(value) >= 2:
            manufacturer[struct.unpack_from("<H", value)[0]] = value[2:]
        elif kind == 0x0A and len(value) == 1:
            tx_power = struct.unpack("b", value)[0]
    return AdvertisementData(
        local_name=local_name,
        manufacturer_data=manufacturer,
        service_data=service_data,
        service_uuids=uuids,
        tx_power=tx_power,
        rssi=rssi,
        platform_data=(platform,),
    )


class BumbleScanner(BaseBleakScanner):
    """Scans with the current bumble host; passive when bleak asks for "passive".

    Reports as BlueZ does (checked on bluez 5.66 in a VM, see tools/vm/README.md): scanning
    actively, every advertisement; scanning passively (an advertisement monitor on BlueZ),
    only an advertisement whose data differs from the last one reported for that address:
    a device repeating the same bytes is reported once."""

    def __init__(
        self,
        detection_callback: AdvertisementDataCallback | None,
        service_uuids: list[str] | None,
        scanning_mode: str = "active",
        *,
        bumble_host: BumbleHost | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(detection_callback, service_uuids)
        self._active = scanning_mode != "passive"
        self._host = bumble_host or current_host()
        self._queue: asyncio.Queue[Advertisement] = asyncio.Queue()
        self._emitter: asyncio.Task[None] | None = None
        self._last_data: dict[str, bytes] = {}  # address -> data last reported (passive)

    def _listener(self, advertisement: Advertisement) -> None:
        self._queue.put_nowait(advertisement)

    async def start(self) -> None:
        self.seen_devices = {}
        self._last_data = {}
        self._queue = asyncio.Queue()
        # Detections come from a task, never from inside start(): find_device_by_*
        # registers its callback only once start() has returned.
        self._emitter = asyncio.create_task(self._emit())
        await self._host.add_listener(self._listener, self._active)

    async def stop(self) -> None:
        await self._host.remove_listener(self._listener)
        if self._emitter is not None:
            self._emitter.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._emitter
            self._emitter = None

    async def _emit(self) -> None:
        while True:
            advertisement = await self._queue.get()
            if advertisement.is_scan_response and not self._active:
                continue
            # .data holds the advertisement merged with its scan response (active scans).
            adv = parse_advertisement(bytes(advertisement.data), advertisement.rssi, advertisement)
            if not self.is_allowed_uuid(adv.service_uuids):
                continue
            address = _address_str(advertisement.address)
            if not self._active:
                data = bytes(advertisement.data)
                if self._last_data.get(address) == data:
                    continue  # BlueZ's advertisement monitor signals changes only
                self._last_data[address] = data
            device = self.create_or_update_device(address, address, adv.local_name, advertisement.address, adv)
            self.call_detection_callbacks(device, adv)

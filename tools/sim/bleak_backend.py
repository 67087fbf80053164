"""bleak 3.1 backends over a bumble host: the hub's adapter in the simulator.

The hub speaks only bleak's public API and takes its backend by injection:

    async with attach_hci(air.hci_spec):                  # or use_device(device)
        scanner = BleakScanner(on_adv, scanning_mode="passive", backend=BumbleScanner)
        async with BleakClient(ble_device, backend=BumbleClient) as client:
            await client.write_gatt_char(ACK_UUID, frame, response=True)

`attach_hci` opens a bumble HCI transport (the Air's TCP server, or any bumble spec),
powers on a bumble `Device` as the adapter and makes it the current host for backends
created inside the block (a ContextVar, so two hubs in one process stay apart; tasks
started before the block get the newest open host; a backend also accepts
`bumble_host=` through bleak's keyword pass-through).

Reported as BlueZ reports: service data keyed by the full 128-bit UUID string
('0000fcd2-0000-1000-8000-00805f9b34fb'), the local name, RSSI, one detection per
advertisement received (no de-duplication). Unlike BlueZ, a detection carries only that
advertisement's data, not fields merged from earlier ones. The client exchanges the MTU
right after connecting (BlueZ does), so the peripheral sees IRQ 21.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import struct
import uuid as uuidlib
from collections.abc import AsyncIterator, Callable
from contextvars import ContextVar
from typing import Any

from bleak.args import SizedBuffer
from bleak.assigned_numbers import gatt_char_props_to_strs
from bleak.backends.characteristic import BleakGATTCharacteristic
from bleak.backends.client import BaseBleakClient, NotifyCallback
from bleak.backends.descriptor import BleakGATTDescriptor
from bleak.backends.device import BLEDevice
from bleak.backends.scanner import AdvertisementData, AdvertisementDataCallback, BaseBleakScanner
from bleak.backends.service import BleakGATTService, BleakGATTServiceCollection
from bleak.exc import BleakError, BleakGATTProtocolError
from bleak.uuids import normalize_uuid_16, normalize_uuid_32
from bumble import att, core, hci
from bumble.device import Advertisement, Connection, Device, Peer
from bumble.gatt_client import CharacteristicProxy
from bumble.transport import open_transport

logger = logging.getLogger(__name__)

_BLUEZ_MTU = 517
_current: ContextVar[BumbleHost | None] = ContextVar("safebox_bumble_host", default=None)
_attached: list[BumbleHost] = []  # open hosts, newest last: for tasks started outside the block


class BumbleHost:
    """A powered-on bumble Device used as the hub's adapter, shared by scanners and clients."""

    def __init__(self, device: Device) -> None:
        self.device = device
        self.known: dict[str, hci.Address] = {}  # "AA:BB:..." -> typed address, from scans
        self._listeners: dict[Callable[[Advertisement], None], bool] = {}
        self._scan_mode: bool | None = None  # None: not scanning; else active?
        self._scan_lock = asyncio.Lock()
        self._connect_lock = asyncio.Lock()
        device.on(Device.EVENT_ADVERTISEMENT, self._on_advertisement)

    def _on_advertisement(self, advertisement: Advertisement) -> None:
        self.known[_address_str(advertisement.address)] = advertisement.address
        for listener in list(self._listeners):
            listener(advertisement)

    async def add_listener(self, listener: Callable[[Advertisement], None], active: bool) -> None:
        async with self._scan_lock:
            self._listeners[listener] = active
            await self._rescan()

    async def remove_listener(self, listener: Callable[[Advertisement], None]) -> None:
        async with self._scan_lock:
            self._listeners.pop(listener, None)
            await self._rescan()

    async def _rescan(self) -> None:
        # One scan serves every scanner: active if any of them wants active.
        wanted = any(self._listeners.values()) if self._listeners else None
        if wanted == self._scan_mode:
            return
        if self._scan_mode is not None:
            await self.device.stop_scanning()
        if wanted is not None:
            await self.device.start_scanning(active=wanted, filter_duplicates=False)
        self._scan_mode = wanted

    def address(self, text: str) -> hci.Address:
        """The typed address for "AA:BB:...": as last seen advertising, else public."""
        known = self.known.get(text.upper())
        return known if known is not None else hci.Address(text, hci.Address.PUBLIC_DEVICE_ADDRESS)

    async def connect(self, address: hci.Address, timeout: float) -> Connection:
        # The controller takes one connection attempt at a time; BlueZ queues them too.
        async with self._connect_lock:
            attempt = asyncio.ensure_future(self.device.connect(address, timeout=timeout))
            try:
                return await asyncio.shield(attempt)
            except asyncio.CancelledError:
                # Abandoned from outside (a caller's timeout shorter than `timeout`). bumble
                # cancels the attempt at the controller only on its own timeout; left pending,
                # the controller refuses every later connect (COMMAND_DISALLOWED), and an
                # attempt that completes after bumble stopped waiting trips an assertion in its
                # host and leaves a link nobody owns. So end it as BlueZ does: cancel at the
                # controller, wait for the attempt to end, and drop a link that won the race.
                if not attempt.done():
                    with contextlib.suppress(Exception):
                        await self.device.send_command(hci.HCI_LE_Create_Connection_Cancel_Command())
                    with contextlib.suppress(BaseException):
                        connection = await asyncio.wait_for(attempt, 5.0)
                        await connection.disconnect()
                raise

    async def close(self) -> None:
        self._listeners.clear()
        with contextlib.suppress(Exception):
            if self._scan_mode is not None:
                await self.device.stop_scanning()
        self._scan_mode = None
        with contextlib.suppress(Exception):
            await self.device.power_off()


def current_host() -> BumbleHost:
    """The host of the innermost attach_hci/use_device block (else the newest one open)."""
    host = _current.get() or (_attached[-1] if _attached else None)
    if host is None:
        raise BleakError("no bumble host: use `async with attach_hci(spec):` or `use_device(device)`")
    return host


@contextlib.asynccontextmanager
async def use_device(device: Device) -> AsyncIterator[BumbleHost]:
    """Make an existing bumble Device (e.g. on an in-process LocalLink) the current host."""
    if not device.powered_on:
        await device.power_on()
    host = BumbleHost(device)
    token = _current.set(host)
    _attached.append(host)
    try:
        yield host
    finally:
        _attached.remove(host)
        _current.reset(token)
        await host.close()


@contextlib.asynccontextmanager
async def attach_hci(spec: str, *, name: str = "safebox-hub") -> AsyncIterator[BumbleHost]:
    """Open a bumble HCI transport (e.g. Air.hci_spec) and use it as the hub's adapter."""
    transport = await open_transport(spec)
    try:
        address = hci.Address.generate_static_address()
        device = Device.with_hci(name, address, transport.source, transport.sink)
        async with use_device(device) as host:
            yield host
    finally:
        await transport.close()


def _address_str(address: hci.Address) -> str:
    return address.to_string(with_type_qualifier=False)


def _uuid128(raw_le: bytes) -> str:
    return str(uuidlib.UUID(bytes=bytes(reversed(raw_le))))


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

    Reports as BlueZ does (checked on bluez 5.66 in a VM, see the README's design notes):
    scanning actively, every advertisement; scanning passively (an advertisement monitor on
    BlueZ), only an advertisement whose data differs from the last one reported for that
    address: a device repeating the same bytes is reported once."""

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


class BumbleClient(BaseBleakClient):
    """A GATT client over a bumble connection from the current host."""

    def __init__(
        self,
        address_or_ble_device: BLEDevice | str,
        services: set[str] | None = None,
        *,
        bumble_host: BumbleHost | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(
            address_or_ble_device,
            disconnected_callback=kwargs.pop("disconnected_callback", None),
            timeout=kwargs.pop("timeout", 10.0),
        )
        self._host = bumble_host or current_host()
        details = address_or_ble_device.details if isinstance(address_or_ble_device, BLEDevice) else None
        self._peer_address = details if isinstance(details, hci.Address) else self._host.address(self.address)
        self._service_filter = services
        self._connection: Connection | None = None
        self._peer: Peer | None = None
        self._disconnecting = False
        self._disconnected = asyncio.Event()

    @property
    def name(self) -> str:
        return self.address

    @property
    def mtu_size(self) -> int:
        return self._connection.att_mtu if self._connection is not None else att.ATT_DEFAULT_MTU

    @property
    def is_connected(self) -> bool:
        return self._connection is not None

    async def connect(self, pair: bool, **kwargs: Any) -> None:
        if pair:
            logger.info("pairing is not modelled by the bumble backend; connecting without it")
        timeout = kwargs.get("timeout", self._timeout)
        try:
            connection = await self._host.connect(self._peer_address, timeout)
        except (TimeoutError, core.TimeoutError) as e:
            raise TimeoutError(f"{self.address} not connectable within {timeout} s") from e
        self._connection = connection
        self._disconnected.clear()
        connection.on(Connection.EVENT_DISCONNECTION, self._on_disconnection)
        try:
            async with asyncio.timeout(timeout):
                self._peer = Peer(connection)
                await self._peer.request_mtu(_BLUEZ_MTU)
                self.services = await self._discover(self._peer)
        except BaseException:
            await self.disconnect()
            raise

    async def _discover(self, peer: Peer) -> BleakGATTServiceCollection:
        collection = BleakGATTServiceCollection()
        for service in await peer.discover_services():
            uuid = _bleak_uuid(service.uuid)
            if self._service_filter and uuid not in self._service_filter:
                continue
            bleak_service = BleakGATTService(service, service.handle, uuid)
            collection.add_service(bleak_service)
            for characteristic in await service.discover_characteristics():
                bleak_char = BleakGATTCharacteristic(
                    characteristic,
                    characteristic.handle,
                    _bleak_uuid(characteristic.uuid),
                    sorted(gatt_char_props_to_strs(int(characteristic.properties))),
                    self._max_write_without_response,
                    bleak_service,
                )
                collection.add_characteristic(bleak_char)
                for descriptor in await characteristic.discover_descriptors():
                    bleak_desc = BleakGATTDescriptor(
                        descriptor, descriptor.handle, _bleak_uuid(descriptor.type), bleak_char
                    )
                    collection.add_descriptor(bleak_desc)
        return collection

    def _max_write_without_response(self) -> int:
        return self.mtu_size - 3

    def _on_disconnection(self, reason: int) -> None:
        self._connection = None
        self._peer = None
        self._disconnected.set()
        if not self._disconnecting and self._disconnected_callback is not None:
            self._disconnected_callback()

    async def disconnect(self) -> None:
        connection = self._connection
        if connection is None:
            return
        self._disconnecting = True
        try:
            with contextlib.suppress(core.BaseBumbleError, hci.HCI_Error):
                await connection.disconnect()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self._timeout):
                    await self._disconnected.wait()
        finally:
            self._disconnecting = False
            self._connection = None
            self._peer = None

    def _need_peer(self) -> Peer:
        if self._peer is None:
            raise BleakError("Not connected")
        return self._peer

    async def read_gatt_char(self, characteristic: BleakGATTCharacteristic, **kwargs: Any) -> bytearray:
        with _att_errors():
            return bytearray(await self._need_peer().read_value(characteristic.handle))

    async def read_gatt_descriptor(self, descriptor: BleakGATTDescriptor, **kwargs: Any) -> bytearray:
        with _att_errors():
            return bytearray(await self._need_peer().read_value(descriptor.handle))

    async def write_gatt_char(
        self, characteristic: BleakGATTCharacteristic, data: SizedBuffer, response: bool
    ) -> None:
        with _att_errors():
            await self._need_peer().write_value(characteristic.handle, bytes(data), with_response=response)

    async def write_gatt_descriptor(self, descriptor: BleakGATTDescriptor, data: SizedBuffer) -> None:
        with _att_errors():
            await self._need_peer().write_value(descriptor.handle, bytes(data), with_response=True)

    async def start_notify(
        self, characteristic: BleakGATTCharacteristic, callback: NotifyCallback, **kwargs: Any
    ) -> None:
        proxy: CharacteristicProxy[bytes] = characteristic.obj
        with _att_errors():
            await self._need_peer().subscribe(proxy, lambda value: callback(bytearray(value)), prefer_notify=True)

    async def stop_notify(self, characteristic: BleakGATTCharacteristic) -> None:
        with _att_errors():
            await self._need_peer().unsubscribe(characteristic.obj)

    async def pair(self, *args: Any, **kwargs: Any) -> None:
        raise NotImplementedError("pairing is not modelled by the bumble backend")

    async def unpair(self) -> None:
        raise NotImplementedError("pairing is not modelled by the bumble backend")


def _bleak_uuid(uuid: core.UUID) -> str:
    raw = bytes(uuid.uuid_bytes)
    if len(raw) == 2:
        return normalize_uuid_16(struct.unpack("<H", raw)[0])
    if len(raw) == 4:
        return normalize_uuid_32(struct.unpack("<I", raw)[0])
    return _uuid128(raw)


@contextlib.contextmanager
def _att_errors() -> Any:
    # ATT error responses become bleak's typed protocol error.
    try:
        yield
    except att.ATT_Error as e:
        raise BleakGATTProtocolError(e.error_code) from e

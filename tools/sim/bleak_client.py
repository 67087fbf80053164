"""bleak's client backend over a bumble connection (see bleak_backend.py): GATT as BlueZ gives it."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import struct
from collections.abc import Coroutine
from typing import Any, TypeVar

from bleak.args import SizedBuffer
from bleak.assigned_numbers import gatt_char_props_to_strs
from bleak.backends.characteristic import BleakGATTCharacteristic
from bleak.backends.client import BaseBleakClient, NotifyCallback
from bleak.backends.descriptor import BleakGATTDescriptor
from bleak.backends.device import BLEDevice
from bleak.backends.service import BleakGATTService, BleakGATTServiceCollection
from bleak.exc import BleakError, BleakGATTProtocolError
from bleak.uuids import normalize_uuid_16, normalize_uuid_32
from bumble import att, core, hci
from bumble.device import Connection, Peer
from bumble.gatt_client import CharacteristicProxy

from safebox.tools.sim.bumble_host import _BLUEZ_MTU, BumbleHost, _uuid128, current_host

logger = logging.getLogger(__name__)
T = TypeVar("T")


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
                self.services = await self._on_link(self._set_up(self._peer), "failed to discover services")
        except BaseException:
            await self.disconnect()
            raise

    async def _on_link(self, operation: Coroutine[Any, Any, T], what: str) -> T:
        """Run `operation` on the link; BleakError when the link drops first. BlueZ fails a
        pending GATT request as soon as its link is gone (a link that failed to be established,
        a supervision timeout); bumble's would wait out its 30 s ATT timeout."""
        if self._connection is None:
            operation.close()
            raise BleakError("Not connected")
        task = asyncio.ensure_future(operation)
        lost = asyncio.ensure_future(self._disconnected.wait())
        try:
            await asyncio.wait({task, lost}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            lost.cancel()
            if not task.done():
                task.cancel()
                with contextlib.suppress(BaseException):
                    await task
        if task.done() and not task.cancelled():
            return task.result()
        raise BleakError(f"{what}, device disconnected")

    async def _set_up(self, peer: Peer) -> BleakGATTServiceCollection:
        await peer.request_mtu(_BLUEZ_MTU)
        return await self._discover(peer)

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
            return bytearray(await self._on_link(self._need_peer().read_value(characteristic.handle), "read failed"))

    async def read_gatt_descriptor(self, descriptor: BleakGATTDescriptor, **kwargs: Any) -> bytearray:
        with _att_errors():
            return bytearray(await self._on_link(self._need_peer().read_value(descriptor.handle), "read failed"))

    async def write_gatt_char(
        self, characteristic: BleakGATTCharacteristic, data: SizedBuffer, response: bool
    ) -> None:
        with _att_errors():
            await self._on_link(self._need_peer().write_value(characteristic.handle, bytes(data), with_response=response),
                                "write failed")

    async def write_gatt_descriptor(self, descriptor: BleakGATTDescriptor, data: SizedBuffer) -> None:
        with _att_errors():
            await self._on_link(self._need_peer().write_value(descriptor.handle, bytes(data), with_response=True),
                                "write failed")

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

"""The bumble host behind the bleak backends (bleak_backend.py): the adapter a backend created
inside `attach_hci`/`use_device` uses, and helpers both backends share."""

from __future__ import annotations

import asyncio
import contextlib
import uuid as uuidlib
from collections.abc import AsyncIterator, Callable
from contextvars import ContextVar

from bleak.exc import BleakError
from bumble import hci
from bumble.device import Advertisement, Connection, Device
from bumble.transport import open_transport


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

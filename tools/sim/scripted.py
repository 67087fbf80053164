"""A paired device played by Python on the simulated air: for hub tests and benchmarks.

The real firmware (tools/sim/firmware_process.py) is the device the hub must serve; this is
the cheap stand-in when a test needs many devices, or exact control of what is on the air:
it advertises sealed BTHome frames (events and heartbeats, SPEC 1.1-1.5) from its public
address, connectably, and offers the ack characteristic (SPEC 1.7), recording every ack the
hub writes after checking it with the device key. Like a device it keeps advertising its
last frame (and starts again after the hub disconnects) until told otherwise.

    dev = ScriptedDevice(air, Device.new("24:0A:C4:00:00:01", "pendant"))
    await dev.start()
    counter = await dev.send_event("emergency")
    await dev.wait_ack(counter, kind=2)
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

from bumble import gatt
from bumble.core import UUID
from bumble.device import Connection
from bumble.device import Device as BumbleDevice
from bumble.hci import Address, OwnAddressType

from safebox.hub.devices import Device
from safebox.hub.radio import ACK_CHAR_UUID, ACK_SERVICE_UUID
from safebox.protocol import bthome
from safebox.tools.sim.air import Air

log = logging.getLogger("safebox.sim.scripted")
CENTRAL_MAX_S = 5.0  # the firmware's CENTRAL_MAX_MS


class ScriptedDevice:
    def __init__(self, air: Air, device: Device, *, interval_ms: int = 40, battery: int = 90,
                 counter: int = 0, receipts: bool = True, resend_s: float | None = None) -> None:
        """`resend_s`: re-send an event frame not yet acknowledged every `resend_s`, its re-send
        number changed (SPEC 1.2), as the firmware does: a hub on BlueZ scanning passively hears
        a repeat of the same bytes once, a re-send every time. None: the same bytes until told
        otherwise (a hub scanning actively, or the bumble backend, hears every repeat)."""
        self.air = air
        self.device = device
        self.interval_ms = interval_ms
        self.battery = battery
        self.counter = counter
        self.acks: list[tuple[int, int]] = []  # (kind, counter), in the order written
        self.refused_acks = 0
        self.connections = 0
        self.ack_number = 0  # the last ack number taken: a later ack must be above it (SPEC 1.7)
        self.resend_s = resend_s
        self.receipts = receipts  # as the firmware: a receipt (heartbeat + 0x3E) after kind 2 or 3
        self._receipt_due = False
        self._tasks: set[asyncio.Task[Any]] = set()
        self._radio: BumbleDevice | None = None
        self._controller: Any = None
        self._adv: bytes | None = None
        self._advertising = False
        self._ack_written = asyncio.Event()
        self._adv_lock = asyncio.Lock()

    @property
    def address(self) -> str:
        return self.device.address

    async def start(self) -> None:
        name = f"scripted-{self.device.id}"
        self._controller = self.air.plug_device(name, self.address)
        radio = BumbleDevice.with_hci(name, Address(self.address), self._controller, self._controller)
        ack: gatt.Characteristic[bytes] = gatt.Characteristic(UUID(ACK_CHAR_UUID), gatt.Characteristic.Properties.WRITE,
                                  gatt.Characteristic.WRITEABLE,
                                  gatt.CharacteristicValue(write=self._on_ack))  # type: ignore[arg-type]
        radio.add_service(gatt.Service(UUID(ACK_SERVICE_UUID), [ack]))
        radio.on("connection", self._on_connection)
        await radio.power_on()
        self._radio = radio

    def _on_connection(self, connection: Connection) -> None:
        self.connections += 1
        self._advertising = False  # a controller stops advertising when a central connects
        connection.on("disconnection", lambda reason: self._resume())
        # As the firmware (firmware/radio.py): no central stays longer than CENTRAL_MAX_MS, so a
        # link its central has lost track of cannot keep the device from being reached again.
        task = asyncio.get_running_loop().create_task(self._drop_after(connection, CENTRAL_MAX_S))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _drop_after(self, connection: Connection, seconds: float) -> None:
        await asyncio.sleep(seconds)
        radio = self._radio
        if radio is not None and radio.connections.get(connection.handle) is connection:
            with contextlib.suppress(Exception):
                await connection.disconnect()

    def _resume(self) -> None:
        if self._adv is not None and self._radio is not None:
            asyncio.get_running_loop().create_task(self._advertise(self._adv))

    def _on_ack(self, connection: Connection, value: bytes) -> None:
        try:
            kind, counter, _hub_time, number = bthome.unseal_ack(self.device.key, self.device.mac, bytes(value))
        except bthome.FrameError:
            self.refused_acks += 1
            return
        if number <= self.ack_number:
            self.refused_acks += 1
            return
        self.ack_number = number
        self.acks.append((kind, counter))
        self._ack_written.set()
        if kind >= bthome.ACK_DELIVERED:
            self._receipt_due = True
            if self.receipts:
                task = asyncio.get_running_loop().create_task(self.send_heartbeat())
                self._tasks.add(task)
                task.add_done_callback(self._tasks.discard)

    async def _advertise(self, adv: bytes) -> None:
        radio = self._radio
        assert radio is not None, "start() first"
        # One change of advertising at a time: a receipt is advertised as the hub's link ends,
        # and the link's end resumes advertising too; interleaved, the two could leave the
        # device silent (a stop landing after the other's start), and its receipt unheard.
        async with self._adv_lock:
            self._adv = adv
            if self._advertising:
                with contextlib.suppress(Exception):  # a central may have just stopped it
                    await radio.stop_advertising()
                self._advertising = False
            radio.advertising_data = adv
            await radio.start_advertising(own_address_type=OwnAddressType.PUBLIC,
                                          advertising_interval_min=self.interval_ms,
                                          advertising_interval_max=self.interval_ms)
            self._advertising = True

    def _objects(self, button: str | None, door_open: bool | None) -> list[tuple[int, int]]:
        if self.device.role == "pendant":
            return bthome.pendant_objects(self.battery, button)
        objects = [(bthome.OBJ_BATTERY, self.battery)]
        if door_open is not None:
            objects.append((bthome.OBJ_DOOR, int(door_open)))
        return objects

    async def send_event(self, button: str = "emergency", *, door_open: bool = True) -> int:
        """Advertise a new event frame (a press, or a door change); returns its counter."""
        self.counter += 1
        objects = self._objects(button, door_open)
        frame = bthome.seal(self.device.key, self.device.mac, self.counter, objects, event=True)
        await self._advertise(bthome.advertisement(frame))
        if self.resend_s is not None:
            task = asyncio.get_running_loop().create_task(self._resend(self.counter, objects))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        return self.counter

    async def _resend(self, counter: int, objects: list[tuple[int, int]]) -> None:
        assert self.resend_s is not None
        for resend in range(1, 1000):
            await asyncio.sleep(self.resend_s)
            if counter != self.counter or self._adv is None or any(c == counter for _, c in self.acks):
                return  # a newer frame, gone quiet, or acknowledged
            frame = bthome.seal(self.device.key, self.device.mac, counter, objects, event=True, resend=resend)
            await self._advertise(bthome.advertisement(frame))

    async def send_heartbeat(self) -> int:
        """A heartbeat; a receipt (SPEC 1.7) when an ack of kind 2 or 3 was taken since the last one."""
        self.counter += 1
        objects = self._objects(None, None)
        if self._receipt_due:
            self._receipt_due = False
            objects.append((bthome.OBJ_ACK_SEEN, self.ack_number))
        frame = bthome.seal(self.device.key, self.device.mac, self.counter, objects, event=False)
        await self._advertise(bthome.advertisement(frame))
        return self.counter

    async def go_quiet(self) -> None:
        """Stop advertising (asleep): acks owed wait until the next frame."""
        async with self._adv_lock:
            self._adv = None
            if self._advertising and self._radio is not None:
                await self._radio.stop_advertising()
            self._advertising = False

    def has_ack(self, counter: int, kind: int) -> bool:
        return (kind, counter) in self.acks

    async def wait_ack(self, counter: int, kind: int, timeout: float = 5.0) -> None:
        async with asyncio.timeout(timeout):
            while not self.has_ack(counter, kind):
                self._ack_written.clear()
                await self._ack_written.wait()

    async def stop(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self.go_quiet()
        if self._controller is not None:
            self.air.unplug(self._controller)
            self._controller = None
        if self._radio is not None:
            try:
                await self._radio.power_off()
            except Exception:  # already off the air
                pass
            self._radio = None

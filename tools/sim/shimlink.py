"""The simulator's end of one boot's link (tools/sim/shims/_simlink.py): what the firmware asks
through `machine` and `bluetooth.BLE`, carried out on a bumble Device on the air, and the IRQs
sent back. `Bridge` (bridge.py) makes one `BootLink` per TCP connection, that is per boot.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
import time
from typing import TYPE_CHECKING, Any

from bumble import gatt, hci
from bumble.att import Attribute
from bumble.core import UUID
from bumble.device import Connection, Device
from bumble.host import Host
from bumble.transport.common import AsyncPipeSink

from safebox.tools.sim.air import DeviceController
from safebox.tools.sim.peripheral import advertising_args, register_services, watch_connection
from safebox.tools.sim.shims._bleapi import IRQ_GATTS_INDICATE_DONE, IRQ_GATTS_WRITE

if TYPE_CHECKING:
    from safebox.tools.sim.bridge import Bridge

logger = logging.getLogger(__name__)

_DEFAULT_ATTR_LEN = 20
_EIO = 5
_ENODEV = 19
_EINVAL = 22
_ENOTCONN = 107


@dataclasses.dataclass(frozen=True)
class OutputEvent:
    """Something the firmware drove: a pin write ("pin") or a PWM setting ("pwm")."""

    t: float  # time.monotonic() when the simulator received it
    pin: int | str
    value: int  # pin level, or PWM duty_u16
    kind: str = "pin"
    freq: int = 0


@dataclasses.dataclass(frozen=True)
class Advertising:
    """The advertising the firmware asked for last (None interval: stopped)."""

    t: float
    interval_us: int | None
    adv_data: bytes = b""
    resp_data: bytes = b""
    connectable: bool = True


class _Attr:
    """The simulator's copy of one attribute buffer, kept the way NimBLE keeps it."""

    def __init__(self) -> None:
        self.data = b""
        self.alloc = _DEFAULT_ATTR_LEN
        self.append = False

    def central_wrote(self, data: bytes) -> None:
        self.data = ((self.data + data) if self.append else data)[: self.alloc]


class _AttrValue(gatt.CharacteristicValue[bytes]):
    """Reads and writes of one firmware attribute, served from the boot's db copy.

    The handle is set once the service is on the server (bumble numbers attributes then).
    """

    def __init__(self, boot: BootLink) -> None:
        super().__init__(read=self._read, write=self._write)
        self.boot = boot
        self.handle = 0

    def _read(self, connection: Connection) -> bytes:
        return self.boot.db[self.handle].data

    def _write(self, connection: Connection, value: bytes) -> None:
        self.boot.db[self.handle].central_wrote(bytes(value))
        self.boot.irq(IRQ_GATTS_WRITE, [connection.handle, self.handle], data=bytes(value).hex())


class BootLink:
    """One connection from the firmware process: one boot of the device."""

    def __init__(self, bridge: Bridge, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.bridge = bridge
        self.reader = reader
        self.writer = writer
        self.controller: DeviceController | None = None
        self.device: Device | None = None
        self.db: dict[int, _Attr] = {}
        self.attributes: dict[int, Attribute[Any]] = {}
        self.gap_name = b"MPY ESP32"
        self.mtu = 256
        self._wdt: asyncio.TimerHandle | None = None
        self._wdt_timeout_s = 0.0
        self._tasks: set[asyncio.Task[None]] = set()

    # -- the link -----------------------------------------------------------------------
    def send(self, msg: dict[str, Any]) -> None:
        if not self.writer.is_closing():
            self.writer.write(json.dumps(msg).encode() + b"\n")

    def irq(self, event: int, args: list[int], **extra: str) -> None:
        self.bridge.irq_log.append((time.monotonic(), event, tuple(args)))
        self.send({"op": "ble_irq", "event": event, "args": args, **extra})

    async def run(self) -> None:
        try:
            while line := await self.reader.readline():
                msg = json.loads(line)
                rid = msg.pop("id", None)
                try:
                    reply = {"result": await self.handle(msg)}
                except OSError as e:  # what the real stack would raise in the firmware
                    reply = {"errno": e.errno or _EIO}
                except Exception:  # a simulator bug: say so, and let the firmware see EIO
                    logger.exception("%s: %s failed", self.bridge.name, msg.get("op"))
                    reply = {"errno": _EIO}
                if rid is not None:
                    self.send({"re": rid, **reply})
        finally:
            self.close()

    def close(self) -> None:
        self.stop_watchdog()
        for task in list(self._tasks):
            task.cancel()
        self.power_off()
        self.writer.close()

    def spawn(self, coro: Any) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def handle(self, msg: dict[str, Any]) -> Any:
        op = msg["op"]
        handler = getattr(self, "op_" + op, None)
        if handler is None:
            logger.warning("%s: unknown op %r", self.bridge.name, op)
            return None
        return await handler(msg)

    # -- lifecycle, pins, watchdog ----------------------------------------------------
    async def op_hello(self, msg: dict[str, Any]) -> dict[str, list[list[Any]]]:
        # The reply is the state of the world at power-on: input levels, ADC inputs.
        self.bridge._booted(self)
        return {
            "pins": [[pin, value] for pin, value in self.bridge.pin_levels.items()],
            "adc": [[pin, uv] for pin, uv in self.bridge.adc_uv.items()],
        }

    async def op_pin_out(self, msg: dict[str, Any]) -> None:
        self.bridge._output(OutputEvent(time.monotonic(), msg["pin"], int(msg["value"])))

    async def op_pwm(self, msg: dict[str, Any]) -> None:
        event = OutputEvent(time.monotonic(), msg["pin"], int(msg["duty_u16"]), "pwm", int(msg["freq"]))
        self.bridge._output(event)

    async def op_pin_mode(self, msg: dict[str, Any]) -> None:
        self.bridge.pin_modes[msg["pin"]] = (msg.get("mode"), msg.get("pull"))

    async def op_sleep(self, msg: dict[str, Any]) -> None:
        self.bridge.last_sleep = (msg["kind"], msg.get("ms"))
        self.bridge.last_sleep_wake = msg.get("wake")
        self.bridge.last_sleep_wake1 = msg.get("wake1")
        if msg["kind"] == "deep" and msg.get("wake1"):
            self.bridge.arm_ext1(msg["wake1"])
        if msg["kind"] == "deep":
            self.bridge.deep_sleeps.append((time.monotonic(), msg.get("ms"), msg.get("wake")))

    async def op_reset(self, msg: dict[str, Any]) -> None:
        self.bridge.last_reset_cause = int(msg["cause"])

    async def op_wdt(self, msg: dict[str, Any]) -> None:
        self._wdt_timeout_s = msg["timeout_ms"] / 1000.0
        self.feed_watchdog()

    async def op_wdt_feed(self, msg: dict[str, Any]) -> None:
        if self._wdt_timeout_s:
            self.feed_watchdog()

    def feed_watchdog(self) -> None:
        self.stop_watchdog()
        self._wdt = asyncio.get_running_loop().call_later(self._wdt_timeout_s, self.bridge._watchdog_expired)

    def stop_watchdog(self) -> None:
        if self._wdt is not None:
            self._wdt.cancel()
            self._wdt = None

    # -- BLE: general -------------------------------------------------------------------
    async def op_ble_active(self, msg: dict[str, Any]) -> bool:
        if not msg["on"]:
            self.power_off()
            return False
        self.gap_name = bytes.fromhex(msg.get("gap_name", self.gap_name.hex()))
        if self.device is None:
            self.controller = self.bridge.air.plug_device(f"fw-{self.bridge.name}", self.bridge.mac)
            host = Host(self.controller, AsyncPipeSink(self.controller))
            self.device = Device(name=self.gap_name.decode(errors="replace"), host=host)
            self.device.gatt_server.max_mtu = self.mtu
            self.device.on(Device.EVENT_CONNECTION, self.on_connection)
            await self.device.power_on()
        return True

    def power_off(self) -> None:
        if self.controller is not None:
            self.bridge.air.unplug(self.controller)
        self.controller = None
        self.device = None
        self.db = {}
        self.attributes = {}

    def need_device(self) -> Device:
        if self.device is None:
            raise OSError(_ENODEV, "bluetooth not active")
        return self.device

    async def op_ble_config(self, msg: dict[str, Any]) -> None:
        device = self.need_device()
        if "gap_name" in msg:
            self.gap_name = bytes.fromhex(msg["gap_name"])
            device.name = self.gap_name.decode(errors="replace")
            for attribute in device.gatt_server.attributes:
                if attribute.type == gatt.GATT_DEVICE_NAME_CHARACTERISTIC:
                    attribute.value = self.gap_name
        if "mtu" in msg:
            self.mtu = int(msg["mtu"])
            device.gatt_server.max_mtu = self.mtu

    # -- BLE: GAP -------------------------------------------------------------------------
    async def op_ble_advertise(self, msg: dict[str, Any]) -> None:
        device = self.need_device()
        interval_us = msg["interval_us"]
        now = time.monotonic()
        if interval_us is None:
            self.bridge.advertising.append(Advertising(now, None))
            await device.stop_advertising()
            return
        adv = bytes.fromhex(msg["adv"])
        resp = bytes.fromhex(msg["resp"])
        connectable = bool(msg["connectable"])
        self.bridge.advertising.append(Advertising(now, interval_us, adv, resp, connectable))
        await device.start_advertising(**advertising_args(interval_us, adv, resp, connectable))

    async def op_ble_disconnect(self, msg: dict[str, Any]) -> bool:
        device = self.need_device()
        connection = device.lookup_connection(int(msg["conn"]))
        if connection is None:
            return False
        self.spawn(connection.disconnect(hci.HCI_REMOTE_USER_TERMINATED_CONNECTION_ERROR))
        return True

    def on_connection(self, connection: Connection) -> None:
        def irq(event: int, args: tuple[Any, ...], addr: bytes | None) -> None:
            self.irq(event, list(args), **({"addr": addr.hex()} if addr is not None else {}))

        watch_connection(connection, irq)

    # -- BLE: GATT server ---------------------------------------------------------------
    async def op_ble_register(self, msg: dict[str, Any]) -> list[list[int]]:
        handles, self.attributes = register_services(self.need_device(), msg["services"], lambda: _AttrValue(self),
                                                     UUID)
        self.db = {handle: _Attr() for handle in self.attributes}
        return handles

    def attribute(self, handle: int) -> Attribute[Any]:
        attribute = self.attributes.get(handle)
        if attribute is None:
            raise OSError(_EINVAL, "no such attribute")
        return attribute

    async def op_gatts_write(self, msg: dict[str, Any]) -> None:
        handle = int(msg["handle"])
        attr = self.db.get(handle)
        if attr is None:
            return
        data = bytes.fromhex(msg["data"])
        attr.alloc = max(attr.alloc, len(data))
        attr.data = data
        attribute = self.attribute(handle)
        if msg.get("update") and self.device is not None and isinstance(attribute, gatt.Characteristic):
            # As NimBLE's ble_gatts_chr_updated: each subscriber as its CCCD asks.
            self.spawn(self.device.notify_subscribers(attribute))
            for connection in list(self.device.connections.values()):
                cccd = self.device.gatt_server.read_cccd(connection, attribute)
                if cccd[0] & 0x02:
                    self.spawn(self.indicate(connection, handle, None))

    async def op_gatts_set_buffer(self, msg: dict[str, Any]) -> None:
        attr = self.db.get(int(msg["handle"]))
        if attr is not None:
            attr.alloc = int(msg["len"])
            attr.append = bool(msg["append"])
            attr.data = b""

    async def op_gatts_drained(self, msg: dict[str, Any]) -> None:
        attr = self.db.get(int(msg["handle"]))
        if attr is not None:
            attr.data = b""

    async def op_ble_notify(self, msg: dict[str, Any]) -> None:
        device = self.need_device()
        connection = device.lookup_connection(int(msg["conn"]))
        if connection is None:
            raise OSError(_ENOTCONN, "not connected")
        handle = int(msg["handle"])
        attribute = self.attribute(handle)
        value = bytes.fromhex(msg["data"]) if "data" in msg else None
        if msg["indicate"]:
            self.spawn(self.indicate(connection, handle, value))
        else:
            # NimBLE's notify_custom sends whether or not the central subscribed.
            await device.notify_subscriber(connection, attribute, value, force=True)

    async def indicate(self, connection: Connection, handle: int, value: bytes | None) -> None:
        assert self.device is not None
        status = 0
        try:
            await self.device.indicate_subscriber(connection, self.attribute(handle), value, force=True)
        except TimeoutError:
            status = 14  # BLE_HS_ETIMEOUT, what NimBLE reports for an unconfirmed indication
        self.irq(IRQ_GATTS_INDICATE_DONE, [connection.handle, handle, status])

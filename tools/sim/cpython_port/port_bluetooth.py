"""`bluetooth` for one boot (see loader.py): MicroPython's BLE API, peripheral role,
bound directly to a bumble Device on the simulator's air.

The API's semantics are tools/sim/shims/_bleapi.py's, shared with the micropython-binary
tier; this module carries the radio's part with bumble. IRQ handlers run from the event
loop, one at a time. Advertising stops when a central connects.

Calls that need the radio to do something (power on, advertise, disconnect) return at
once and are carried out in order by the boot's radio task; everything else is immediate.
Not modelled: central role, scanning, pairing/bonding, IRQ 4 read requests.
"""

import asyncio as _aio
import errno as _errno

from bumble import gatt as _gatt
from bumble import hci as _hci
from bumble.core import UUID as _BUUID
from bumble.device import Device as _Device
from bumble.host import Host as _Host
from bumble.transport.common import AsyncPipeSink as _AsyncPipeSink

from safebox.tools.sim.peripheral import advertising_args as _advertising_args
from safebox.tools.sim.peripheral import register_services as _register_services
from safebox.tools.sim.peripheral import watch_connection as _watch_connection
from safebox.tools.sim.shims._bleapi import (  # noqa: F401 (the module's public names)
    ADDR_PUBLIC,
    ADDR_RANDOM,
    FLAG_INDICATE,
    FLAG_NOTIFY,
    FLAG_READ,
    FLAG_WRITE,
    FLAG_WRITE_NO_RESPONSE,
    IRQ_GATTS_INDICATE_DONE,
    IRQ_GATTS_WRITE,
    UUID,
    BLEBase,
)

_board = _boot.device  # noqa: F821 (set by the loader)


class BLE(BLEBase):
    _instance = None

    def _setup(self):
        BLEBase._setup(self)
        self._controller = None
        self._device = None
        self._attributes = {}
        self._ops = None
        self._worker = None
        _boot.closers.append(self._power_off)  # noqa: F821

    def _check(self):
        _boot.check_alive()  # noqa: F821

    def _print_unhandled(self, e):
        _boot.print_exception(e, "Unhandled exception in IRQ callback handler")  # noqa: F821

    # -- the radio task: async bumble work, in call order ---------------------------
    def _do(self, coro_fn, *args):
        if self._ops is None:
            self._ops = _aio.Queue()
            # A plain task, not one of the board's: the radio is not the firmware, and
            # bumble's own tasks started from it must not freeze when the board sleeps.
            self._worker = _aio.Task(self._work(), loop=_boot.loop)  # noqa: F821 (ended by _power_off)
        self._ops.put_nowait((coro_fn, args))

    async def _work(self):
        while True:
            coro_fn, args = await self._ops.get()
            try:
                await coro_fn(*args)
            except _aio.CancelledError:
                raise
            except Exception:
                _board.log.exception("radio operation %s failed", getattr(coro_fn, "__name__", coro_fn))

    # -- the radio: a bumble Device ---------------------------------------------------
    def _radio_active(self, on):
        if on and self._device is None:
            self._controller = _board.air.plug_device("fw-" + _board.name, _board.mac)
            host = _Host(self._controller, _AsyncPipeSink(self._controller))
            self._device = _Device(name=self._name.decode(errors="replace"), host=host)
            self._device.gatt_server.max_mtu = self._mtu
            self._device.on(_Device.EVENT_CONNECTION, self._on_connection)
            self._do(self._device.power_on)
        elif not on:
            self._power_off()

    def _power_off(self):
        if self._worker is not None:
            self._worker.cancel()
            self._worker = None
            self._ops = None
        if self._controller is not None:
            _board.air.unplug(self._controller)
        self._controller = None
        self._device = None

    def _radio_config(self, key, value):
        if self._device is None:
            return
        if key == "gap_name":
            self._device.name = value.decode(errors="replace")
        elif key == "mtu":
            self._device.gatt_server.max_mtu = value

    def _radio_mac(self):
        return bytes(int(p, 16) for p in _board.mac.split(":"))

    def _radio_advertise(self, interval_us, connectable):
        if interval_us is None:
            self._do(self._stop_advertising)
            return
        self._do(self._start_advertising, _advertising_args(interval_us, self._adv, self._resp, connectable))

    async def _start_advertising(self, args):
        device = self._device
        if device is None:
            return
        if device.is_advertising:
            await device.stop_advertising()
        await device.start_advertising(**args)

    async def _stop_advertising(self):
        if self._device is not None and self._device.is_advertising:
            await self._device.stop_advertising()

    def _radio_disconnect(self, conn_handle):
        connection = self._device.lookup_connection(conn_handle) if self._device else None
        if connection is None:
            return False
        self._do(connection.disconnect, _hci.HCI_REMOTE_USER_TERMINATED_CONNECTION_ERROR)
        return True

    def _on_connection(self, connection):
        _watch_connection(connection, self._irq)

    # -- GATT server --------------------------------------------------------------
    def _radio_register(self, services):
        handles, self._attributes = _register_services(self._device, services, self._value, _bumble_uuid)
        return handles

    def _value(self):
        ble = self
        value = _gatt.CharacteristicValue(read=lambda connection: ble._db[value.handle].data,
                                          write=lambda connection, data: ble._wrote(connection, value, data))
        value.handle = 0
        return value

    def _wrote(self, connection, value, data):
        if self._central_wrote(value.handle, data):
            self._irq(IRQ_GATTS_WRITE, (connection.handle, value.handle))

    def _radio_attr(self, op, value_handle, *args):
        if op == "write" and args[1] and self._device is not None:
            characteristic = self._attributes.get(value_handle)
            if characteristic is not None:
                self._do(self._device.notify_subscribers, characteristic)

    def _radio_notify(self, conn_handle, value_handle, data, indicate):
        connection = self._device.lookup_connection(conn_handle)
        if connection is None:
            raise OSError(_errno.ENOTCONN)
        attribute = self._attributes.get(value_handle)
        if attribute is None:
            raise OSError(_errno.EINVAL)
        if indicate:
            self._do(self._indicate, connection, attribute, value_handle, data)
        else:
            self._do(self._device.notify_subscriber, connection, attribute, data, True)

    async def _indicate(self, connection, attribute, value_handle, value):
        status = 0
        try:
            await self._device.indicate_subscriber(connection, attribute, value, force=True)
        except TimeoutError:
            status = 14
        self._irq(IRQ_GATTS_INDICATE_DONE, (connection.handle, value_handle, status))

    # -- IRQs, from the event loop ------------------------------------------------------
    def _irq(self, event, args, addr=None):
        _boot.call_soon(self._dispatch, event, args, addr)  # noqa: F821


def _bumble_uuid(uuid):
    return _BUUID.from_bytes(uuid._data)

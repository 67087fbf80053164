"""`bluetooth` for one boot (see loader.py): MicroPython's BLE API, peripheral role,
bound directly to a bumble Device on the simulator's air.

Semantics follow tools/sim/shims/bluetooth.py (the micropython-binary tier) and the
ESP32/NimBLE port: BLE() is one object per boot; before active(True) every call but
active(), irq() and config(gap_name=) raises OSError(ENODEV); config('mac') is
(0, public address, display order); attribute buffers hold 20 bytes unless
gatts_set_buffer says otherwise; IRQ handlers run from the event loop, one at a time;
`addr` in IRQ data is a memoryview valid only during the call; an exception in the
handler is printed and the handler removed. Advertising stops when a central connects.

Calls that need the radio to do something (power on, advertise, disconnect) return at
once and are carried out in order by the boot's radio task; everything else is immediate.
Not modelled: central role, scanning, pairing/bonding, IRQ 4 read requests.
"""

import asyncio as _aio
import errno as _errno

from bumble import gatt as _gatt
from bumble import hci as _hci
from bumble.att import Attribute as _Attribute
from bumble.core import UUID as _BUUID
from bumble.device import AdvertisingType as _AdvType
from bumble.device import Connection as _Connection
from bumble.device import Device as _Device
from bumble.host import Host as _Host
from bumble.transport.common import AsyncPipeSink as _AsyncPipeSink

FLAG_READ = 0x0002
FLAG_WRITE_NO_RESPONSE = 0x0004
FLAG_WRITE = 0x0008
FLAG_NOTIFY = 0x0010
FLAG_INDICATE = 0x0020
ADDR_PUBLIC = 0x00
ADDR_RANDOM = 0x01

_DEFAULT_ATTR_LEN = 20
_ADV_MAX = 31
_GAP_NAME_MAX = 31
_NIMBLE_DEFAULT_ADV_MS = (30.0, 60.0)
_IRQ_CENTRAL_CONNECT = 1
_IRQ_CENTRAL_DISCONNECT = 2
_IRQ_GATTS_WRITE = 3
_IRQ_GATTS_INDICATE_DONE = 20
_IRQ_MTU_EXCHANGED = 21
_IRQ_CONNECTION_UPDATE = 27

_board = _boot.device  # noqa: F821 (set by the loader)


class UUID:
    """A 16-bit (int), 32/128-bit (raw little-endian bytes) or 128-bit (str) UUID."""

    def __init__(self, value):
        if isinstance(value, int):
            if value < 0 or value > 0xFFFF:
                raise ValueError("invalid UUID")
            self._data = bytes((value & 0xFF, value >> 8))
        elif isinstance(value, UUID):
            self._data = value._data
        elif isinstance(value, (bytes, bytearray, memoryview)) and len(value) in (2, 4, 16):
            self._data = bytes(value)
        else:
            digits = str(value).replace("-", "")
            if len(digits) != 32:
                raise ValueError("invalid UUID")
            self._data = bytes(reversed(bytes.fromhex(digits)))

    def __eq__(self, other):
        return isinstance(other, UUID) and self._data == other._data

    def __hash__(self):
        return hash(self._data)

    def __repr__(self):
        be = bytes(reversed(self._data)).hex()
        if len(self._data) <= 4:
            return "UUID(0x%s)" % be
        return "UUID('%s-%s-%s-%s-%s')" % (be[:8], be[8:12], be[12:16], be[16:20], be[20:])

    def _bumble(self):
        return _BUUID.from_bytes(self._data)


class _Attr:
    def __init__(self):
        self.data = b""
        self.alloc = _DEFAULT_ATTR_LEN
        self.append = False

    def central_wrote(self, data):
        self.data = ((self.data + data) if self.append else data)[: self.alloc]


def _buf(data):
    return data.encode() if isinstance(data, str) else bytes(data)


def _permissions(flags):
    permissions = _Attribute.Permissions(0)
    if flags & FLAG_READ:
        permissions |= _Attribute.READABLE
    if flags & (FLAG_WRITE | FLAG_WRITE_NO_RESPONSE):
        permissions |= _Attribute.WRITEABLE
    return permissions


class BLE:
    _instance = None

    def __new__(cls, *args):
        if BLE._instance is None:
            BLE._instance = object.__new__(cls)
            BLE._instance._setup()
        return BLE._instance

    def __init__(self, *args):
        pass

    def _setup(self):
        self._active = False
        self._handler = None
        self._db = {}
        self._adv = b""
        self._resp = b""
        self._mtu = 256
        self._name = b"MPY ESP32"
        self._addr = bytearray(6)
        self._controller = None
        self._device = None
        self._ops = None
        self._worker = None
        _boot.closers.append(self._power_off)  # noqa: F821

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

    # -- general ------------------------------------------------------------------
    def active(self, *args):
        _boot.check_alive()  # noqa: F821
        if args:
            on = bool(args[0])
            if on and self._device is None:
                self._controller = _board.air.plug_device("fw-" + _board.name, _board.mac)
                host = _Host(self._controller, _AsyncPipeSink(self._controller))
                self._device = _Device(name=self._name.decode(errors="replace"), host=host)
                self._device.gatt_server.max_mtu = self._mtu
                self._device.on(_Device.EVENT_CONNECTION, self._on_connection)
                self._do(self._device.power_on)
            elif not on:
                self._power_off()
            self._active = on
            if not on:
                self._db = {}
        return self._active

    def _power_off(self):
        if self._worker is not None:
            self._worker.cancel()
            self._worker = None
            self._ops = None
        if self._controller is not None:
            _board.air.unplug(self._controller)
        self._controller = None
        self._device = None

    def _need_active(self):
        _boot.check_alive()  # noqa: F821
        if not self._active:
            raise OSError(_errno.ENODEV)

    def config(self, *args, **kwargs):
        if kwargs:
            if args:
                raise TypeError("can't specify pos and kw args")
            for key, value in kwargs.items():
                if key == "gap_name":
                    name = _buf(value)
                    if len(name) > _GAP_NAME_MAX:
                        raise OSError(_errno.EINVAL)
                    self._name = name
                    if self._device is not None:
                        self._device.name = name.decode(errors="replace")
                elif key == "mtu":
                    if value < 23 or value > 517:
                        raise OSError(_errno.EINVAL)
                    self._mtu = value
                    if self._device is not None:
                        self._device.gatt_server.max_mtu = value
                elif key == "addr_mode":
                    self._need_active()
                    if value != ADDR_PUBLIC:
                        raise OSError(_errno.EINVAL)  # only the public address is simulated
                elif key in ("bond", "mitm", "io", "le_secure", "rxbuf"):
                    pass
                else:
                    raise ValueError("unknown config param")
            return None
        if len(args) != 1:
            raise TypeError("must query one param")
        key = args[0]
        if key == "gap_name":
            return self._name
        self._need_active()
        if key == "mac":
            return (ADDR_PUBLIC, bytes(int(p, 16) for p in _board.mac.split(":")))
        if key == "mtu":
            return self._mtu
        if key == "addr_mode":
            return ADDR_PUBLIC
        raise ValueError("unknown config param")

    def irq(self, handler):
        _boot.check_alive()  # noqa: F821
        self._handler = handler

    # -- GAP ----------------------------------------------------------------------
    def gap_advertise(self, interval_us, adv_data=None, *, resp_data=None, connectable=True):
        self._need_active()
        if interval_us is None:
            self._do(self._stop_advertising)
            return None
        if adv_data is not None:
            adv_data = _buf(adv_data)
            if len(adv_data) > _ADV_MAX:
                raise OSError(_errno.EINVAL)
            self._adv = adv_data
        if resp_data is not None:
            resp_data = _buf(resp_data)
            if len(resp_data) > _ADV_MAX:
                raise OSError(_errno.EINVAL)
            self._resp = resp_data
        units = interval_us // 625
        if units and (units < 0x20 or units > 0x4000):
            raise OSError(_errno.EINVAL)
        if units:
            min_ms = max_ms = units * 0.625
        else:
            min_ms, max_ms = _NIMBLE_DEFAULT_ADV_MS
        if connectable:
            kind = _AdvType.UNDIRECTED_CONNECTABLE_SCANNABLE
        else:
            kind = _AdvType.UNDIRECTED_SCANNABLE if self._resp else _AdvType.UNDIRECTED
        self._do(self._start_advertising, kind, self._adv, self._resp, min_ms, max_ms)
        return None

    async def _start_advertising(self, kind, adv, resp, min_ms, max_ms):
        device = self._device
        if device is None:
            return
        if device.is_advertising:
            await device.stop_advertising()
        await device.start_advertising(advertising_type=kind, own_address_type=_hci.OwnAddressType.PUBLIC,
                                       advertising_data=adv, scan_response_data=resp,
                                       advertising_interval_min=min_ms, advertising_interval_max=max_ms)

    async def _stop_advertising(self):
        if self._device is not None and self._device.is_advertising:
            await self._device.stop_advertising()

    def gap_disconnect(self, conn_handle):
        self._need_active()
        connection = self._device.lookup_connection(conn_handle) if self._device else None
        if connection is None:
            return False
        self._do(connection.disconnect, _hci.HCI_REMOTE_USER_TERMINATED_CONNECTION_ERROR)
        return True

    def _on_connection(self, connection):
        if connection.role != _hci.Role.PERIPHERAL:
            return
        handle = connection.handle
        peer = connection.peer_address
        addr = bytes(reversed(peer.address_bytes))
        addr_type = 0 if peer.is_public else 1
        self._irq(_IRQ_CENTRAL_CONNECT, (handle, addr_type), addr)

        def on_disconnection(reason):
            self._irq(_IRQ_CENTRAL_DISCONNECT, (handle, addr_type), addr)

        def on_mtu():
            self._irq(_IRQ_MTU_EXCHANGED, (handle, connection.att_mtu))

        def on_update():
            p = connection.parameters
            self._irq(_IRQ_CONNECTION_UPDATE, (handle, round(p.connection_interval / 1.25),
                                               p.peripheral_latency, round(p.supervision_timeout / 10), 0))

        connection.on(_Connection.EVENT_DISCONNECTION, on_disconnection)
        connection.on(_Connection.EVENT_CONNECTION_ATT_MTU_UPDATE, on_mtu)
        connection.on(_Connection.EVENT_CONNECTION_PARAMETERS_UPDATE, on_update)

    # -- GATT server --------------------------------------------------------------
    def gatts_register_services(self, services_definition):
        self._need_active()
        server = self._device.gatt_server
        server.attributes.clear()
        server.attributes_by_handle.clear()
        server.services.clear()
        self._device.add_default_services()
        self._db = {}
        result = []
        for service in services_definition:
            uuid, characteristics = service
            if not isinstance(uuid, UUID):
                raise ValueError("invalid service UUID")
            made = []
            for characteristic in characteristics:
                if len(characteristic) < 2 or len(characteristic) > 3:
                    raise ValueError("invalid characteristic tuple")
                c_uuid, flags = characteristic[0], characteristic[1]
                if not isinstance(c_uuid, UUID):
                    raise ValueError("invalid characteristic UUID")
                descriptors = [_gatt.Descriptor(d_uuid._bumble(), _permissions(d_flags), self._value())
                               for d_uuid, d_flags in (characteristic[2] if len(characteristic) == 3 else ())]
                made.append(_gatt.Characteristic(c_uuid._bumble(), _gatt.Characteristic.Properties(flags & 0xFF),
                                                 _permissions(flags), self._value(), descriptors))
            server.add_service(_gatt.Service(uuid._bumble(), made))
            handles = []
            for characteristic in made:
                for attribute in [characteristic, *characteristic.descriptors]:
                    if attribute.type == _gatt.GATT_CLIENT_CHARACTERISTIC_CONFIGURATION_DESCRIPTOR:
                        continue  # the stack's CCCD: MicroPython does not return its handle
                    attribute.value.handle = attribute.handle
                    self._db[attribute.handle] = _Attr()
                    handles.append(attribute.handle)
            result.append(tuple(handles))
        self._attributes = {a.handle: a for c in made for a in [c, *c.descriptors]}
        return tuple(result)

    def _value(self):
        ble = self
        value = _gatt.CharacteristicValue(read=lambda connection: ble._db[value.handle].data,
                                          write=lambda connection, data: ble._central_wrote(connection, value, data))
        value.handle = 0
        return value

    def _central_wrote(self, connection, value, data):
        attr = self._db.get(value.handle)
        if attr is None:
            return
        attr.central_wrote(bytes(data))
        self._irq(_IRQ_GATTS_WRITE, (connection.handle, value.handle))

    def _attr(self, value_handle):
        self._need_active()
        attr = self._db.get(value_handle)
        if attr is None:
            raise OSError(_errno.EINVAL)
        return attr

    def gatts_read(self, value_handle):
        attr = self._attr(value_handle)
        data = attr.data
        if attr.append:
            attr.data = b""
        return data

    def gatts_write(self, value_handle, data, send_update=False):
        attr = self._attr(value_handle)
        data = _buf(data)
        attr.alloc = max(attr.alloc, len(data))
        attr.data = data
        if send_update and self._device is not None:
            characteristic = self._attributes.get(value_handle)
            if characteristic is not None:
                self._do(self._device.notify_subscribers, characteristic)
        return len(data)

    def gatts_set_buffer(self, value_handle, length, append=False):
        attr = self._attr(value_handle)
        attr.alloc = length
        attr.append = bool(append)
        attr.data = b""

    def _notify_indicate(self, conn_handle, value_handle, data, indicate):
        self._need_active()
        connection = self._device.lookup_connection(conn_handle)
        if connection is None:
            raise OSError(_errno.ENOTCONN)
        attribute = self._attributes.get(value_handle)
        if attribute is None:
            raise OSError(_errno.EINVAL)
        value = None if data is None else _buf(data)
        if indicate:
            self._do(self._indicate, connection, attribute, value_handle, value)
        else:
            self._do(self._device.notify_subscriber, connection, attribute, value, True)

    async def _indicate(self, connection, attribute, value_handle, value):
        status = 0
        try:
            await self._device.indicate_subscriber(connection, attribute, value, force=True)
        except TimeoutError:
            status = 14
        self._irq(_IRQ_GATTS_INDICATE_DONE, (connection.handle, value_handle, status))

    def gatts_notify(self, conn_handle, value_handle, data=None):
        self._notify_indicate(conn_handle, value_handle, data, False)

    def gatts_indicate(self, conn_handle, value_handle, data=None):
        self._notify_indicate(conn_handle, value_handle, data, True)

    # -- IRQs -----------------------------------------------------------------------
    def _irq(self, event, args, addr=None):
        _boot.call_soon(self._deliver, event, args, addr)  # noqa: F821

    def _deliver(self, event, args, addr):
        if not self._active or self._handler is None:
            return
        if addr is not None:
            self._addr[:] = addr
            data = tuple(args) + (memoryview(self._addr),)
        else:
            data = tuple(args)
        try:
            self._handler(event, data)
        except Exception as e:
            _boot.print_exception(e, "Unhandled exception in IRQ callback handler")  # noqa: F821
            self._handler = None
        finally:
            for i in range(6):
                self._addr[i] = 0

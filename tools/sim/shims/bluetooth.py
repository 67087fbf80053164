# MicroPython's `bluetooth` module for the simulator: the documented BLE API
# (docs.micropython.org/en/latest/library/bluetooth.html), peripheral role, with the
# radio in the simulator (tools/sim/bridge.py maps each call onto a bumble Device).
# MicroPython subset: runs on the `micropython` unix binary only.
#
# Faithful where firmware can tell the difference (checked against extmod/modbluetooth.c
# and extmod/nimble/modbluetooth_nimble.c, the ESP32 port):
# - BLE() is a singleton; before active(True) every call but active(), irq() and
#   config gap_name raises OSError(ENODEV). config('mac') is (0, the public address
#   from SAFEBOX_SIM_MAC, display order); only addr_mode=0 (public) is accepted.
# - gatts_register_services returns a tuple (one per service) of tuples of value
#   handles, characteristics and their descriptors flattened in order; the CCCD the
#   stack adds for NOTIFY/INDICATE is not listed. Registering again replaces everything.
# - Attribute buffers hold 20 bytes: a longer write from a central is cut silently
#   unless gatts_set_buffer was called; gatts_set_buffer empties the buffer; in append
#   mode writes accumulate and gatts_read empties the buffer. gatts_write from the
#   firmware grows the buffer as needed (as NimBLE's db does).
# - gatts_read is local: the simulator sends the written bytes along with IRQ 3.
# - IRQ tuples: 1/2 (conn, addr_type, addr), 3 (conn, attr_handle), 20 (conn,
#   value_handle, status), 21 (conn, mtu), 27 (conn, interval, latency, timeout, status).
#   `addr` is a memoryview valid only during the call (the buffer is reused).
#   An exception in the handler is printed and the handler removed, as MicroPython does.
# - Advertising stops when a central connects (the controller does that in the sim).
# - gatts_notify sends whether or not the central subscribed (NimBLE's notify_custom);
#   gatts_write(..., send_update=True) notifies/indicates subscribed centrals only.
# Not modelled: central role, scanning, L2CAP, pairing/bonding, IRQ 4 read requests.
from micropython import const
import errno
import _simlink

FLAG_READ = const(0x0002)
FLAG_WRITE_NO_RESPONSE = const(0x0004)
FLAG_WRITE = const(0x0008)
FLAG_NOTIFY = const(0x0010)
FLAG_INDICATE = const(0x0020)

ADDR_PUBLIC = const(0x00)
ADDR_RANDOM = const(0x01)

_DEFAULT_ATTR_LEN = const(20)
_DEFAULT_MTU = const(256)  # ESP-IDF's CONFIG_BT_NIMBLE_ATT_PREFERRED_MTU
_ADV_MAX = const(31)
_GAP_NAME_MAX = const(31)  # ESP-IDF's CONFIG_BT_NIMBLE_GAP_DEVICE_NAME_MAX_LEN
_ADV_UNIT_US = const(625)


class UUID:
    """A 16-bit (int), 32/128-bit (raw little-endian bytes) or 128-bit (str) UUID."""

    def __init__(self, value):
        if isinstance(value, int):
            if value < 0 or value > 0xFFFF:
                raise ValueError("invalid UUID")
            self._data = bytes((value & 0xFF, value >> 8))
        elif isinstance(value, UUID):
            self._data = value._data
        elif len(value) in (2, 4, 16):
            self._data = bytes(value)
        else:
            digits = value.replace("-", "")
            if len(digits) < 32:
                raise ValueError("UUID too short")
            if len(digits) > 32:
                raise ValueError("UUID too long")
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

    def wire(self):
        """The form the simulator takes: 4/8 hex digits, or the dashed 128-bit string."""
        r = repr(self)
        return r[7:-1] if len(self._data) <= 4 else r[6:-2]


class _Attr:
    # One entry of the attribute db, as NimBLE's gatts_db keeps it.
    def __init__(self):
        self.data = b""
        self.alloc = _DEFAULT_ATTR_LEN
        self.append = False

    def central_wrote(self, data):
        if self.append:
            self.data = (self.data + data)[: self.alloc]
        else:
            self.data = data[: self.alloc]


def _buf(data):
    # Buffer-protocol arguments (bytes, bytearray, memoryview, str) as bytes.
    if isinstance(data, str):
        return data.encode()
    return bytes(data)


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
        self._mtu = _DEFAULT_MTU
        self._name = b"MPY ESP32"
        self._addr = bytearray(6)
        _simlink.on("ble_irq", self._on_irq)

    # -- general ------------------------------------------------------------------
    def active(self, *args):
        if args:
            on = bool(args[0])
            if _simlink.online():
                _simlink.request({"op": "ble_active", "on": on, "gap_name": self._name.hex()})
            self._active = on
            if on:
                _simlink.ensure_reader()
            else:
                self._db = {}
        return self._active

    def _need_active(self):
        if not self._active:
            raise OSError(errno.ENODEV)

    def config(self, *args, **kwargs):
        if kwargs:
            if args:
                raise TypeError("can't specify pos and kw args")
            for key, value in kwargs.items():
                if key == "gap_name":  # works before active(True), as on NimBLE
                    name = _buf(value)
                    if len(name) > _GAP_NAME_MAX:
                        raise OSError(errno.EINVAL)
                    self._name = name
                    if self._active:
                        self._request({"op": "ble_config", "gap_name": name.hex()})
                elif key == "mtu":
                    if value < 23 or value > 517:
                        raise OSError(errno.EINVAL)
                    self._mtu = value
                    self._request({"op": "ble_config", "mtu": value})
                elif key == "addr_mode":
                    self._need_active()
                    if value != ADDR_PUBLIC:
                        # Only the public address is simulated (a changing MAC would
                        # break BTHome decryption anyway).
                        raise OSError(errno.EINVAL)
                elif key in ("bond", "mitm", "io", "le_secure", "rxbuf"):
                    pass  # accepted, not modelled
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
            return (ADDR_PUBLIC, _simlink.mac_bytes())
        if key == "mtu":
            return self._mtu
        raise ValueError("unknown config param")

    def irq(self, handler):
        if handler is not None and not callable(handler):
            raise ValueError("invalid handler")
        self._handler = handler
        _simlink.ensure_reader()

    def _request(self, msg):
        self._need_active()
        if not _simlink.online():
            return None
        return _simlink.request(msg)

    # -- GAP ------------------------------------------------------------------------
    def gap_advertise(self, interval_us, adv_data=None, *, resp_data=None, connectable=True):
        self._need_active()
        if interval_us is None:
            self._request({"op": "ble_advertise", "interval_us": None})
            return None
        if adv_data is not None:
            adv_data = _buf(adv_data)
            if len(adv_data) > _ADV_MAX:
                raise OSError(errno.EINVAL)
            self._adv = adv_data
        if resp_data is not None:
            resp_data = _buf(resp_data)
            if len(resp_data) > _ADV_MAX:
                raise OSError(errno.EINVAL)
            self._resp = resp_data
        units = interval_us // _ADV_UNIT_US
        if units and (units < 0x20 or units > 0x4000):
            raise OSError(errno.EINVAL)
        self._request(
            {
                "op": "ble_advertise",
                "interval_us": interval_us,
                "adv": self._adv.hex(),
                "resp": self._resp.hex(),
                "connectable": bool(connectable),
            }
        )
        return None

    def gap_disconnect(self, conn_handle):
        self._need_active()
        if not _simlink.online():
            return False
        return bool(self._request({"op": "ble_disconnect", "conn": conn_handle}))

    # -- GATT server ----------------------------------------------------------------
    def gatts_register_services(self, services_definition):
        self._need_active()
        wire = []
        for service in services_definition:
            uuid, characteristics = service
            if not isinstance(uuid, UUID):
                raise ValueError("invalid service UUID")
            chars = []
            for characteristic in characteristics:
                if len(characteristic) < 2 or len(characteristic) > 3:
                    raise ValueError("invalid characteristic tuple")
                if not isinstance(characteristic[0], UUID):
                    raise ValueError("invalid characteristic UUID")
                descs = []
                if len(characteristic) == 3:
                    for d_uuid, d_flags in characteristic[2]:
                        if not isinstance(d_uuid, UUID):
                            raise ValueError("invalid descriptor UUID")
                        descs.append([d_uuid.wire(), d_flags])
                chars.append([characteristic[0].wire(), characteristic[1], descs])
            wire.append([uuid.wire(), chars])
        if _simlink.online():
            handles = _simlink.request({"op": "ble_register", "services": wire})
        else:
            handles = self._offline_handles(wire)
        self._db = {}
        result = []
        for service_handles in handles:
            for h in service_handles:
                self._db[h] = _Attr()
            result.append(tuple(service_handles))
        return tuple(result)

    def _offline_handles(self, wire):
        # Without a simulator: handles as bumble numbers them after its GAP (1-5)
        # and GATT (6-13) services, so offline and online agree.
        h = 13
        out = []
        for _uuid, chars in wire:
            h += 1  # service declaration
            service_handles = []
            for _c_uuid, flags, descs in chars:
                h += 2  # declaration, value
                service_handles.append(h)
                for _d in descs:
                    h += 1
                    service_handles.append(h)
                if flags & (FLAG_NOTIFY | FLAG_INDICATE):
                    h += 1  # CCCD
            out.append(service_handles)
        return out

    def _attr(self, value_handle):
        self._need_active()
        attr = self._db.get(value_handle)
        if attr is None:
            raise OSError(errno.EINVAL)
        return attr

    def gatts_read(self, value_handle):
        attr = self._attr(value_handle)
        data = attr.data
        if attr.append:
            attr.data = b""
            _simlink.notify({"op": "gatts_drained", "handle": value_handle})
        return data

    def gatts_write(self, value_handle, data, send_update=False):
        attr = self._attr(value_handle)
        data = _buf(data)
        if len(data) > attr.alloc:
            attr.alloc = len(data)
        attr.data = data
        _simlink.notify(
            {"op": "gatts_write", "handle": value_handle, "data": data.hex(), "update": bool(send_update)}
        )
        return len(data)

    def gatts_set_buffer(self, value_handle, length, append=False):
        attr = self._attr(value_handle)
        attr.alloc = length
        attr.append = bool(append)
        attr.data = b""
        _simlink.notify({"op": "gatts_set_buffer", "handle": value_handle, "len": length, "append": bool(append)})

    def _notify_indicate(self, conn_handle, value_handle, data, indicate):
        self._need_active()
        msg = {"op": "ble_notify", "conn": conn_handle, "handle": value_handle, "indicate": indicate}
        if data is not None:
            msg["data"] = _buf(data).hex()
        if _simlink.online():
            self._request(msg)
        else:
            raise OSError(errno.ENOTCONN)

    def gatts_notify(self, conn_handle, value_handle, data=None):
        self._notify_indicate(conn_handle, value_handle, data, False)

    def gatts_indicate(self, conn_handle, value_handle, data=None):
        self._notify_indicate(conn_handle, value_handle, data, True)

    # -- events from the simulator --------------------------------------------------
    def _on_irq(self, msg):
        if not self._active:
            return
        event = msg["event"]
        args = msg.get("args", [])
        if "data" in msg and event == 3:
            attr = self._db.get(args[1])
            if attr is not None:
                attr.central_wrote(bytes.fromhex(msg["data"]))
        handler = self._handler
        if handler is None:
            return
        if "addr" in msg:
            self._addr[:] = bytes.fromhex(msg["addr"])
            data = tuple(args) + (memoryview(self._addr),)
        else:
            data = tuple(args)
        try:
            handler(event, data)
        except Exception as e:
            print("Unhandled exception in IRQ callback handler")
            _print_exception(e)
            self._handler = None
        finally:
            # The memoryview was only valid during the call: make stale use visible.
            for i in range(6):
                self._addr[i] = 0


def _print_exception(e):
    import sys

    sys.print_exception(e)

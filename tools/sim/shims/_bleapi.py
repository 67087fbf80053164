# MicroPython's `bluetooth` API, peripheral role, without a radio: the semantics firmware
# can see, in one place for both tiers of the simulator. shims/bluetooth.py runs it on the
# `micropython` binary with the radio in the simulator process (over _simlink);
# cpython_port/port_bluetooth.py runs it under CPython with a bumble Device in-process.
# Each subclasses BLEBase and carries out the `_radio_*` hooks. Plain MicroPython subset
# (no `const`, so CPython imports it as it is).
#
# Faithful where firmware can tell the difference (checked against extmod/modbluetooth.c
# and extmod/nimble/modbluetooth_nimble.c, the ESP32 port):
# - BLE() is a singleton (per boot); before active(True) every call but active(), irq()
#   and config gap_name raises OSError(ENODEV). config('mac') is (0, the public address,
#   display order); only addr_mode=0 (public) is accepted.
# - gatts_register_services returns a tuple (one per service) of tuples of value handles,
#   characteristics and their descriptors flattened in order; the CCCD the stack adds for
#   NOTIFY/INDICATE is not listed. Registering again replaces everything.
# - Attribute buffers hold 20 bytes: a longer write from a central is cut silently unless
#   gatts_set_buffer was called; gatts_set_buffer empties the buffer; in append mode writes
#   accumulate and gatts_read empties the buffer. gatts_write from the firmware grows the
#   buffer as needed (as NimBLE's db does).
# - IRQ tuples: 1/2 (conn, addr_type, addr), 3 (conn, attr_handle), 20 (conn, value_handle,
#   status), 21 (conn, mtu), 27 (conn, interval, latency, timeout, status). `addr` is a
#   memoryview valid only during the call (the buffer is reused). An exception in the
#   handler is printed and the handler removed, as MicroPython does.
# Not modelled: central role, scanning, L2CAP, pairing/bonding, IRQ 4 read requests.
import errno

FLAG_READ = 0x0002
FLAG_WRITE_NO_RESPONSE = 0x0004
FLAG_WRITE = 0x0008
FLAG_NOTIFY = 0x0010
FLAG_INDICATE = 0x0020

ADDR_PUBLIC = 0x00
ADDR_RANDOM = 0x01

IRQ_CENTRAL_CONNECT = 1
IRQ_CENTRAL_DISCONNECT = 2
IRQ_GATTS_WRITE = 3
IRQ_GATTS_INDICATE_DONE = 20
IRQ_MTU_EXCHANGED = 21
IRQ_CONNECTION_UPDATE = 27

DEFAULT_ATTR_LEN = 20
DEFAULT_MTU = 256  # ESP-IDF's CONFIG_BT_NIMBLE_ATT_PREFERRED_MTU
ADV_MAX = 31
GAP_NAME_MAX = 31  # ESP-IDF's CONFIG_BT_NIMBLE_GAP_DEVICE_NAME_MAX_LEN
ADV_UNIT_US = 625


class UUID:
    """A 16-bit (int), 32/128-bit (raw little-endian bytes) or 128-bit (str) UUID."""

    def __init__(self, value):
        if isinstance(value, int):
            if value < 0 or value > 0xFFFF:
                raise ValueError("invalid UUID")
            self._data = bytes((value & 0xFF, value >> 8))
        elif isinstance(value, UUID):
            self._data = value._data
        elif isinstance(value, (bytes, bytearray, memoryview)):
            if len(value) not in (2, 4, 16):
                raise ValueError("invalid UUID")
            self._data = bytes(value)
        else:
            digits = str(value).replace("-", "")
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


class Attr:
    # One entry of the attribute db, as NimBLE's gatts_db keeps it.
    def __init__(self):
        self.data = b""
        self.alloc = DEFAULT_ATTR_LEN
        self.append = False

    def central_wrote(self, data):
        if self.append:
            self.data = (self.data + data)[: self.alloc]
        else:
            self.data = data[: self.alloc]


def buf(data):
    # Buffer-protocol arguments (bytes, bytearray, memoryview, str) as bytes.
    if isinstance(data, str):
        return data.encode()
    return bytes(data)


class BLEBase:
    _instance = None

    def __new__(cls, *args):
        if cls._instance is None:
            cls._instance = object.__new__(cls)
            cls._instance._setup()
        return cls._instance

    def __init__(self, *args):
        pass

    def _setup(self):
        self._active = False
        self._handler = None
        self._db = {}
        self._adv = b""
        self._resp = b""
        self._mtu = DEFAULT_MTU
        self._name = b"MPY ESP32"
        self._addr = bytearray(6)

    # -- hooks: the tier's radio (all but _radio_mac may do nothing) -----------------
    def _check(self):
        pass  # every call: the CPython tier stops a board that was switched off

    def _radio_active(self, on):
        pass

    def _radio_irq(self):
        pass

    def _radio_config(self, key, value):
        pass

    def _radio_mac(self):
        raise NotImplementedError

    def _radio_advertise(self, interval_us, connectable):
        pass  # interval_us None: stop; else self._adv and self._resp

    def _radio_disconnect(self, conn_handle):
        return False

    def _radio_register(self, services):
        # services: [(uuid, [(uuid, flags, [(uuid, flags), ...]), ...]), ...] -> value
        # handles per service, in the order gatts_register_services returns them
        raise NotImplementedError

    def _radio_attr(self, op, value_handle, *args):
        pass  # op: "write" (data, send_update), "set_buffer" (length, append), "drained" ()

    def _radio_notify(self, conn_handle, value_handle, data, indicate):
        raise OSError(errno.ENOTCONN)

    def _print_unhandled(self, e):
        raise NotImplementedError

    # -- general ------------------------------------------------------------------
    def active(self, *args):
        self._check()
        if args:
            on = bool(args[0])
            self._radio_active(on)
            self._active = on
            if not on:
                self._db = {}
        return self._active

    def _need_active(self):
        self._check()
        if not self._active:
            raise OSError(errno.ENODEV)

    def config(self, *args, **kwargs):
        self._check()
        if kwargs:
            if args:
                raise TypeError("can't specify pos and kw args")
            for key, value in kwargs.items():
                if key == "gap_name":  # works before active(True), as on NimBLE
                    name = buf(value)
                    if len(name) > GAP_NAME_MAX:
                        raise OSError(errno.EINVAL)
                    self._name = name
                    self._radio_config(key, name)
                elif key == "mtu":
                    self._need_active()
                    if value < 23 or value > 517:
                        raise OSError(errno.EINVAL)
                    self._mtu = value
                    self._radio_config(key, value)
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
            return (ADDR_PUBLIC, self._radio_mac())
        if key == "mtu":
            return self._mtu
        raise ValueError("unknown config param")

    def irq(self, handler):
        self._check()
        if handler is not None and not callable(handler):
            raise ValueError("invalid handler")
        self._handler = handler
        self._radio_irq()

    # -- GAP ------------------------------------------------------------------------
    def gap_advertise(self, interval_us, adv_data=None, *, resp_data=None, connectable=True):
        self._need_active()
        if interval_us is None:
            self._radio_advertise(None, connectable)
            return None
        if adv_data is not None:
            adv_data = buf(adv_data)
            if len(adv_data) > ADV_MAX:
                raise OSError(errno.EINVAL)
            self._adv = adv_data
        if resp_data is not None:
            resp_data = buf(resp_data)
            if len(resp_data) > ADV_MAX:
                raise OSError(errno.EINVAL)
            self._resp = resp_data
        units = interval_us // ADV_UNIT_US
        if units and (units < 0x20 or units > 0x4000):
            raise OSError(errno.EINVAL)
        self._radio_advertise(interval_us, bool(connectable))
        return None

    def gap_disconnect(self, conn_handle):
        self._need_active()
        return bool(self._radio_disconnect(conn_handle))

    # -- GATT server ----------------------------------------------------------------
    def gatts_register_services(self, services_definition):
        self._need_active()
        services = []
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
                        descs.append((d_uuid, d_flags))
                chars.append((characteristic[0], characteristic[1], descs))
            services.append((uuid, chars))
        handles = self._radio_register(services)
        self._db = {}
        result = []
        for service_handles in handles:
            for h in service_handles:
                self._db[h] = Attr()
            result.append(tuple(service_handles))
        return tuple(result)

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
            self._radio_attr("drained", value_handle)
        return data

    def gatts_write(self, value_handle, data, send_update=False):
        attr = self._attr(value_handle)
        data = buf(data)
        if len(data) > attr.alloc:
            attr.alloc = len(data)
        attr.data = data
        self._radio_attr("write", value_handle, data, bool(send_update))
        return len(data)

    def gatts_set_buffer(self, value_handle, length, append=False):
        attr = self._attr(value_handle)
        attr.alloc = length
        attr.append = bool(append)
        attr.data = b""
        self._radio_attr("set_buffer", value_handle, length, bool(append))

    def gatts_notify(self, conn_handle, value_handle, data=None):
        self._need_active()
        self._radio_notify(conn_handle, value_handle, None if data is None else buf(data), False)

    def gatts_indicate(self, conn_handle, value_handle, data=None):
        self._need_active()
        self._radio_notify(conn_handle, value_handle, None if data is None else buf(data), True)

    # -- IRQs -----------------------------------------------------------------------
    def _central_wrote(self, value_handle, data):
        # A central wrote an attribute: into its buffer (cut or appended), before IRQ 3.
        attr = self._db.get(value_handle)
        if attr is not None:
            attr.central_wrote(bytes(data))
        return attr is not None

    def _dispatch(self, event, args, addr=None):
        # Call the firmware's handler with (event, data): addr (6 bytes) as a memoryview
        # valid only during the call.
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
            self._print_unhandled(e)
            self._handler = None
        finally:
            # The memoryview was only valid during the call: make stale use visible.
            for i in range(6):
                self._addr[i] = 0

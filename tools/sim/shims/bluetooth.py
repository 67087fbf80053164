# MicroPython's `bluetooth` module for the simulator: the documented BLE API
# (docs.micropython.org/en/latest/library/bluetooth.html), peripheral role, with the
# radio in the simulator (tools/sim/shimlink.py maps each request onto a bumble Device).
# MicroPython subset: runs on the `micropython` unix binary only.
#
# The API's semantics are _bleapi.py's (shared with the CPython tier); this module carries
# the radio's part over _simlink. Here in particular:
# - config('mac') is the public address from SAFEBOX_SIM_MAC.
# - gatts_read is local: the simulator sends the bytes a central wrote along with IRQ 3,
#   and is told what the firmware writes, so the central reads what NimBLE would serve.
# - Advertising stops when a central connects (the controller does that in the sim).
# - gatts_notify sends whether or not the central subscribed (NimBLE's notify_custom);
#   gatts_write(..., send_update=True) notifies/indicates subscribed centrals only.
# - Without a simulator (no SAFEBOX_SIM_PORT) the API still answers, with handles numbered
#   as bumble numbers them, so offline and online agree.
import errno
import _simlink
from _bleapi import (  # noqa: F401 (the module's public names)
    ADDR_PUBLIC,
    ADDR_RANDOM,
    FLAG_INDICATE,
    FLAG_NOTIFY,
    FLAG_READ,
    FLAG_WRITE,
    FLAG_WRITE_NO_RESPONSE,
    IRQ_GATTS_WRITE,
    UUID,
    BLEBase,
)


def _wire(uuid):
    # The form the simulator takes: 4/8 hex digits, or the dashed 128-bit string.
    r = repr(uuid)
    return r[7:-1] if len(uuid._data) <= 4 else r[6:-2]


class BLE(BLEBase):
    _instance = None

    def _setup(self):
        BLEBase._setup(self)
        _simlink.on("ble_irq", self._on_irq)

    def _request(self, msg):
        if not _simlink.online():
            return None
        return _simlink.request(msg)

    # -- the radio, in the simulator ------------------------------------------------
    def _radio_active(self, on):
        self._request({"op": "ble_active", "on": on, "gap_name": self._name.hex()})
        if on:
            _simlink.ensure_reader()

    def _radio_irq(self):
        _simlink.ensure_reader()

    def _radio_config(self, key, value):
        if key == "gap_name":
            if self._active:
                self._request({"op": "ble_config", "gap_name": value.hex()})
        else:
            self._request({"op": "ble_config", key: value})

    def _radio_mac(self):
        return _simlink.mac_bytes()

    def _radio_advertise(self, interval_us, connectable):
        if interval_us is None:
            self._request({"op": "ble_advertise", "interval_us": None})
            return
        self._request({"op": "ble_advertise", "interval_us": interval_us, "adv": self._adv.hex(),
                       "resp": self._resp.hex(), "connectable": connectable})

    def _radio_disconnect(self, conn_handle):
        return self._request({"op": "ble_disconnect", "conn": conn_handle})

    def _radio_register(self, services):
        wire = [[_wire(uuid), [[_wire(c_uuid), flags, [[_wire(d), f] for d, f in descs]]
                               for c_uuid, flags, descs in chars]] for uuid, chars in services]
        if _simlink.online():
            return _simlink.request({"op": "ble_register", "services": wire})
        return _offline_handles(services)

    def _radio_attr(self, op, value_handle, *args):
        msg = {"op": "gatts_" + op, "handle": value_handle}
        if op == "write":
            msg["data"], msg["update"] = args[0].hex(), args[1]
        elif op == "set_buffer":
            msg["len"], msg["append"] = args
        _simlink.notify(msg)

    def _radio_notify(self, conn_handle, value_handle, data, indicate):
        if not _simlink.online():
            raise OSError(errno.ENOTCONN)
        msg = {"op": "ble_notify", "conn": conn_handle, "handle": value_handle, "indicate": indicate}
        if data is not None:
            msg["data"] = data.hex()
        _simlink.request(msg)

    def _print_unhandled(self, e):
        import sys

        print("Unhandled exception in IRQ callback handler")
        sys.print_exception(e)

    # -- events from the simulator --------------------------------------------------
    def _on_irq(self, msg):
        if not self._active:
            return
        event = msg["event"]
        args = msg.get("args", [])
        if "data" in msg and event == IRQ_GATTS_WRITE:
            self._central_wrote(args[1], bytes.fromhex(msg["data"]))
        self._dispatch(event, args, bytes.fromhex(msg["addr"]) if "addr" in msg else None)


def _offline_handles(services):
    # Without a simulator: handles as bumble numbers them after its GAP (1-5) and GATT
    # (6-13) services.
    h = 13
    out = []
    for _uuid, chars in services:
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

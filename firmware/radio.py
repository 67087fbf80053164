# The one module that owns bluetooth.BLE(): advertising and the GATT ack
# characteristic. Everything else asks this module; IRQs land here and are
# handed to the asyncio side through a ThreadSafeFlag.

import asyncio

import bluetooth
from micropython import const

_IRQ_CENTRAL_CONNECT = const(1)
_IRQ_CENTRAL_DISCONNECT = const(2)
_IRQ_GATTS_WRITE = const(3)

_SVC_UUID = bluetooth.UUID("5afe0001-8d3b-4c5e-9a4c-3b2f1e0d0c0b")
_ACK_UUID = bluetooth.UUID("5afe0002-8d3b-4c5e-9a4c-3b2f1e0d0c0b")
_ACK_BUFFER = const(32)  # acks are 13 bytes; the default 20-byte buffer would cut longer junk silently
_INBOX_MAX = const(4)


class Radio:
    def __init__(self):
        self._ble = bluetooth.BLE()
        self._ble.active(True)
        self._ble.irq(self._irq)
        ((self._ack_handle,),) = self._ble.gatts_register_services(
            ((_SVC_UUID, ((_ACK_UUID, bluetooth.FLAG_WRITE),)),)
        )
        self._ble.gatts_set_buffer(self._ack_handle, _ACK_BUFFER)
        self.mac = bytes(self._ble.config("mac")[1])
        self._adv = None  # (interval_us, data) while we want to be advertising
        self._connections = 0
        self._inbox = []
        self.written = asyncio.ThreadSafeFlag()

    def _irq(self, event, data):
        # Runs in the BLE stack's scheduler context: copy, note, signal; no waiting.
        if event == _IRQ_CENTRAL_CONNECT:
            self._connections += 1
        elif event == _IRQ_CENTRAL_DISCONNECT:
            self._connections = max(0, self._connections - 1)
            # The stack stops advertising when a central connects: resume.
            if self._adv is not None:
                self._ble.gap_advertise(self._adv[0], self._adv[1])
        elif event == _IRQ_GATTS_WRITE:
            _conn, handle = data
            if handle == self._ack_handle and len(self._inbox) < _INBOX_MAX:
                self._inbox.append(bytes(self._ble.gatts_read(handle)))
                self.written.set()

    def advertise(self, adv_data, interval_ms):
        self._adv = (interval_ms * 1000, adv_data)
        self._ble.gap_advertise(self._adv[0], adv_data)

    def stop(self):
        self._adv = None
        self._ble.gap_advertise(None)

    def take_writes(self):
        """What centrals wrote to the ack characteristic since the last call."""
        writes, self._inbox = self._inbox, []
        return writes

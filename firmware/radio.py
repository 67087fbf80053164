# The one module that owns bluetooth.BLE(): advertising and the GATT ack
# characteristic. Everything else asks this module; IRQs land here and are
# handed to the asyncio side through the `signal` callable.
#
# The radio is switched off before the device sleeps: on the ESP32 light sleep
# powers the radio down anyway (ESP-IDF: "Wi-Fi and Bluetooth connections are
# not maintained in light sleep"), and NimBLE has to be brought up again after
# it. `advertise` switches it on when needed; switching on registers the ack
# service again (a stopped NimBLE forgets it).

import bluetooth
from micropython import const

from safebox.protocol import bthome

_IRQ_CENTRAL_CONNECT = const(1)
_IRQ_CENTRAL_DISCONNECT = const(2)
_IRQ_GATTS_WRITE = const(3)

_SVC_UUID = bluetooth.UUID(bthome.ACK_SERVICE_UUID)
_ACK_UUID = bluetooth.UUID(bthome.ACK_CHAR_UUID)
_ACK_BUFFER = const(32)  # acks are 13 bytes; the default 20-byte buffer would cut longer junk silently
_INBOX_MAX = const(4)


class Radio:
    def __init__(self, signal=None):
        self._ble = bluetooth.BLE()
        self.signal = signal  # called (from the IRQ) when a central wrote or left
        self._adv = None  # (interval_us, data) while we want to be advertising
        self._inbox = []
        self._ack_handle = None
        self.connections = 0
        self.switched_on = 0  # how many times the stack was brought up (energy accounting)
        self.on()
        mac = bytes(self._ble.config("mac")[1])
        if len(mac) != 6 or mac == bytes(6):
            raise OSError(5, "radio gives no MAC address")
        self.mac = mac

    @property
    def is_on(self):
        return self._ack_handle is not None

    def on(self):
        if self._ack_handle is not None:
            return
        self._ble.active(True)
        self._ble.irq(self._irq)
        ((handle,),) = self._ble.gatts_register_services(
            ((_SVC_UUID, ((_ACK_UUID, bluetooth.FLAG_WRITE),)),)
        )
        self._ble.gatts_set_buffer(handle, _ACK_BUFFER)
        self._ack_handle = handle
        self.switched_on += 1

    def off(self):
        if self._ack_handle is None:
            return
        self._adv = None
        self._ack_handle = None
        self.connections = 0
        self._ble.active(False)

    def _irq(self, event, data):
        # Runs in the BLE stack's scheduler context: copy, note, signal; no waiting.
        if event == _IRQ_CENTRAL_CONNECT:
            self.connections += 1
        elif event == _IRQ_CENTRAL_DISCONNECT:
            self.connections = max(0, self.connections - 1)
            # The stack stops advertising when a central connects: resume.
            if self._adv is not None:
                self._ble.gap_advertise(self._adv[0], self._adv[1])
            if self.signal is not None:
                self.signal()
        elif event == _IRQ_GATTS_WRITE:
            _conn, handle = data
            if handle == self._ack_handle and len(self._inbox) < _INBOX_MAX:
                self._inbox.append(bytes(self._ble.gatts_read(handle)))
                if self.signal is not None:
                    self.signal()

    def advertise(self, adv_data, interval_ms):
        self.on()
        self._adv = (interval_ms * 1000, adv_data)
        self._ble.gap_advertise(self._adv[0], adv_data)

    def stop(self):
        if self._adv is None or self._ack_handle is None:
            return
        self._adv = None
        # Documented: "interval_us None stops advertising"; the stubs only allow an int.
        self._ble.gap_advertise(None)  # type: ignore[arg-type]

    def take_writes(self):
        """What centrals wrote to the ack characteristic since the last call."""
        writes, self._inbox = self._inbox, []
        return writes

# The one module that owns bluetooth.BLE(): advertising and the GATT ack
# characteristic. Everything else asks this module; IRQs land here and are
# handed to the asyncio side through the `signal` callable.
#
# The radio is switched off before the device sleeps: on the ESP32 light sleep
# powers the radio down anyway (ESP-IDF: "Wi-Fi and Bluetooth connections are
# not maintained in light sleep"), and NimBLE has to be brought up again after
# it. `advertise` switches it on when needed; switching on registers the ack
# service again (a stopped NimBLE forgets it).
#
# Holding its ground against other centrals (anyone in range can connect):
# * one central at a time (MAX_CENTRALS: the role needs the hub's one link;
#   the stack also stops advertising when a central connects): another that
#   gets in anyway is disconnected at once;
# * a central that has not written an authentic ack within TRUST_MS (the hub
#   connects, writes and leaves in well under a second) is disconnected, and
#   any central after CENTRAL_MAX_MS whatever it wrote (a replayed genuine ack
#   is authentic): police(), called by the sender while anyone is connected;
# * every write is checked as it arrives (`accept`, the sender's MIC check) and
#   only authentic acks are kept, newest first when the inbox is full: a flood
#   of junk writes cannot push out a genuine ack. The first refusal of each
#   connection is printed ("ack refused: <why>"), the rest only counted.

import time

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
MAX_CENTRALS = const(1)
TRUST_MS = const(1000)
CENTRAL_MAX_MS = const(5000)


class Radio:
    def __init__(self, signal=None):
        self._ble = bluetooth.BLE()
        self.signal = signal  # called (from the IRQ) when a central came, wrote or left
        self._adv = None  # (interval_us, data) while we want to be advertising
        self._inbox = []
        self._ack_handle = None
        self._centrals = {}  # conn handle -> [connected at ms, wrote an authentic ack, refused writes]
        self.accept = None  # data -> None when authentic, else why not (the sender's check)
        self.refused = 0  # writes refused, all connections
        self.dropped = 0  # centrals disconnected by police() or for being one too many
        self.switched_on = 0  # how many times the stack was brought up (energy accounting)
        self.on()
        mac = bytes(self._ble.config("mac")[1])
        if len(mac) != 6 or mac == bytes(6):
            raise OSError(5, "radio gives no MAC address")
        self.mac = mac

    @property
    def is_on(self):
        return self._ack_handle is not None

    @property
    def connections(self):
        return len(self._centrals)

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
        self._centrals = {}
        self._ble.active(False)

    def _irq(self, event, data):
        # Runs in the BLE stack's scheduler context: copy, note, signal; no waiting.
        if event == _IRQ_CENTRAL_CONNECT:
            conn = data[0]
            if len(self._centrals) >= MAX_CENTRALS:
                self.dropped += 1
                self._ble.gap_disconnect(conn)
                return
            self._centrals[conn] = [time.ticks_ms(), False, 0]
            if self.signal is not None:
                self.signal()  # the sender watches the clock while anyone is connected
        elif event == _IRQ_CENTRAL_DISCONNECT:
            self._centrals.pop(data[0], None)
            # The stack stops advertising when a central connects: resume.
            if self._adv is not None:
                self._ble.gap_advertise(self._adv[0], self._adv[1])
            if self.signal is not None:
                self.signal()
        elif event == _IRQ_GATTS_WRITE:
            conn, handle = data
            if handle != self._ack_handle:
                return
            written = bytes(self._ble.gatts_read(handle))
            central = self._centrals.get(conn)
            why = self.accept(written) if self.accept is not None else None
            if why is not None:
                self.refused += 1
                if central is not None:
                    central[2] += 1
                    if central[2] > 1:
                        return  # said once for this connection
                print("ack refused:", why)
                return
            if central is not None:
                central[1] = True
            if written in self._inbox:
                return  # the same ack again (the hub repeats acks; a replayer floods them)
            if len(self._inbox) >= _INBOX_MAX:
                self._inbox.pop(0)
            self._inbox.append(written)
            if self.signal is not None:
                self.signal()

    def police(self):
        """Disconnect centrals that overstay: no authentic ack within TRUST_MS, or connected
        longer than CENTRAL_MAX_MS. Returns how many were told to go."""
        now = time.ticks_ms()
        gone = 0
        for conn, (since, trusted, refused) in list(self._centrals.items()):
            age = time.ticks_diff(now, since)
            if age > CENTRAL_MAX_MS or (not trusted and age > TRUST_MS):
                print("central dropped: %s after %d ms, %d writes refused"
                      % ("no authentic ack" if not trusted else "connected too long", age, refused))
                del self._centrals[conn]  # its disconnect event finds it gone
                self.dropped += 1
                gone += 1
                try:
                    self._ble.gap_disconnect(conn)
                except OSError:
                    pass
        return gone  # advertising resumes at its disconnect event

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

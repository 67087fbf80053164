# A peripheral on the shim's documented API, the way the firmware uses it: registers the
# ack service (plus a buffered and a notifying characteristic), advertises, prints every
# IRQ it gets. Run by tests/test_sim_air.py on the real micropython binary.
#   a 13-byte ack write: answer on STATUS by notify, gatts_write(send_update) and indicate
#   b"bye" written to ack: gap_disconnect
import asyncio
import bluetooth
import os
from micropython import const

_IRQ_CENTRAL_CONNECT = const(1)
_IRQ_CENTRAL_DISCONNECT = const(2)
_IRQ_GATTS_WRITE = const(3)
_IRQ_GATTS_INDICATE_DONE = const(20)
_IRQ_MTU_EXCHANGED = const(21)

SVC = bluetooth.UUID("5afe0001-8d3b-4c5e-9a4c-3b2f1e0d0c0b")
ACK = bluetooth.UUID("5afe0002-8d3b-4c5e-9a4c-3b2f1e0d0c0b")
BIG = bluetooth.UUID("5afe00ff-8d3b-4c5e-9a4c-3b2f1e0d0c0b")
STATUS = bluetooth.UUID("5afe00fe-8d3b-4c5e-9a4c-3b2f1e0d0c0b")
# Flags, then 16-bit service data FCD2: info 0x45, 3 bytes ciphertext, counter, MIC.
ADV = bytes.fromhex("020106" + "0f16d2fc" + "45" + "a1b2c3" + "01000000" + "deadbeef")
INTERVAL_US = int(os.getenv("TEST_INTERVAL_US") or "100000")

ble = bluetooth.BLE()
ble.config(gap_name="safebox-test")  # allowed before active(True)
ble.active(True)
((ack, big, status),) = ble.gatts_register_services(
    (
        (
            SVC,
            (
                (ACK, bluetooth.FLAG_WRITE),
                (BIG, bluetooth.FLAG_WRITE | bluetooth.FLAG_READ),
                (STATUS, bluetooth.FLAG_READ | bluetooth.FLAG_NOTIFY | bluetooth.FLAG_INDICATE),
            ),
        ),
    )
)
ble.gatts_set_buffer(big, 64)
woke = asyncio.ThreadSafeFlag()
kept = []


def irq(event, data):
    if event == _IRQ_CENTRAL_CONNECT:
        conn, addr_type, addr = data
        kept.append(addr)  # only valid during the call: printed stale at the next write
        print("IRQ 1", conn, addr_type, bytes(addr).hex())
    elif event == _IRQ_CENTRAL_DISCONNECT:
        conn, addr_type, addr = data
        print("IRQ 2", conn, addr_type, bytes(addr).hex())
        ble.gap_advertise(INTERVAL_US, ADV)
        print("advertising again")
    elif event == _IRQ_GATTS_WRITE:
        conn, handle = data
        name = "ack" if handle == ack else "big"
        stale = bytes(kept[-1]).hex() if kept else "-"
        data = ble.gatts_read(handle)
        print("IRQ 3", conn, name, data.hex(), "stale", stale)
        if handle == ack and len(data) == 13:
            ble.gatts_notify(conn, status, b"heard")
            ble.gatts_write(status, b"state", True)
            ble.gatts_indicate(conn, status, b"indicated")
        elif data == b"bye":
            print("gap_disconnect", ble.gap_disconnect(conn))
    elif event == _IRQ_GATTS_INDICATE_DONE:
        print("IRQ 20", data[0], data[1] == status, data[2])
    elif event == _IRQ_MTU_EXCHANGED:
        print("IRQ 21", data[0], data[1])
    woke.set()


ble.irq(irq)
print("handles", ack, big, status, "mac", ble.config("mac")[1].hex())
ble.gap_advertise(INTERVAL_US, ADV)
print("advertising")


async def main():
    while True:  # timer-free: only IRQs wake it
        await woke.wait()


asyncio.run(main())

# The shims' API without a simulator (no SAFEBOX_SIM_PORT): shapes and errors that
# firmware can see. Run by tests/test_sim_shims.py; prints "ok" when every check holds.
import errno
import bluetooth
import machine

ble = bluetooth.BLE()
assert ble is bluetooth.BLE(), "BLE() is a singleton"
for call in (lambda: ble.gap_advertise(100_000, b"\x02\x01\x06"), lambda: ble.config("mac")):
    try:
        call()
        raise AssertionError("worked before active(True)")
    except OSError as e:
        assert e.errno == errno.ENODEV, e

assert ble.active(True) is True
assert ble.config("mac") == (0, bytes.fromhex("5ccf7f000009")), ble.config("mac")
u16 = bluetooth.UUID(0x2908)
u128 = bluetooth.UUID("6E400001-B5A3-F393-E0A9-E50E24DCCA9E")
assert repr(u16) == "UUID(0x2908)", repr(u16)
assert repr(u128) == "UUID('6e400001-b5a3-f393-e0a9-e50e24dcca9e')", repr(u128)
assert u128 == bluetooth.UUID("6e400001b5a3f393e0a9e50e24dcca9e") and u16 != u128
assert bluetooth.UUID(b"\x08\x29") == u16

SVC = bluetooth.UUID("5afe0001-8d3b-4c5e-9a4c-3b2f1e0d0c0b")
ACK = bluetooth.UUID("5afe0002-8d3b-4c5e-9a4c-3b2f1e0d0c0b")
handles = ble.gatts_register_services(
    (
        (SVC, ((ACK, bluetooth.FLAG_WRITE),)),
        (u128, ((u16, bluetooth.FLAG_NOTIFY, ((bluetooth.UUID(0x2901), bluetooth.FLAG_READ),)),)),
    )
)
assert isinstance(handles, tuple) and [len(h) for h in handles] == [1, 2], handles
print("handles", handles)
((ack,), (note, desc)) = handles

assert ble.gatts_read(ack) == b""
assert ble.gatts_write(ack, memoryview(b"x" * 30)) == 30
assert ble.gatts_read(ack) == b"x" * 30, "local writes grow the buffer"
ble.gatts_set_buffer(ack, 8, True)
assert ble.gatts_read(ack) == b"", "set_buffer empties"
try:
    ble.gatts_read(999)
    raise AssertionError("unknown handle")
except OSError as e:
    assert e.errno == errno.EINVAL, e
try:
    ble.gap_advertise(100_000, bytes(32))
    raise AssertionError("32 bytes of advertising data")
except OSError as e:
    assert e.errno == errno.EINVAL, e

assert machine.Pin(4) is machine.Pin(4)
assert machine.Pin(5, machine.Pin.IN, machine.Pin.PULL_UP).value() == 1
assert machine.Pin(6, machine.Pin.IN).value() == 0
out = machine.Pin(7, machine.Pin.OUT, value=1)
assert out() == 1
assert machine.reset_cause() == machine.PWRON_RESET
assert machine.unique_id() == ble.config("mac")[1]
assert machine.ADC(machine.Pin(34)).read_u16() == 0
print("ok")

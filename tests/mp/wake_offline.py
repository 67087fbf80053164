# The esp32 shim's wake sources and machine.wake_pins()/mem32, offline (no simulator): the pins
# each source accepts, ANY_HIGH and ALL_LOW, and the EXT1 status register built from the wake
# pins the simulator passes (SAFEBOX_SIM_WAKE_PINS). Run by tests/test_sim_shims.py.
import esp32
import machine
from machine import Pin

for bad in (6, 23):  # a flash pin, a pin outside the RTC domain
    try:
        esp32.wake_on_ext1((Pin(bad, Pin.IN),), esp32.WAKEUP_ANY_HIGH)
        print("ext1 took GPIO", bad)
    except ValueError:
        pass
try:
    esp32.wake_on_gpio((Pin(8, Pin.IN),), esp32.WAKEUP_ANY_HIGH)
    print("gpio wake took GPIO 8")
except ValueError:
    pass

buttons = [Pin(n, Pin.IN, Pin.PULL_DOWN) for n in (13, 14, 27)]
esp32.wake_on_ext1(buttons, esp32.WAKEUP_ANY_HIGH)
print("any_high idle", machine._ext1_at_level())
machine._on_pin({"pin": 14, "value": 1})
print("any_high one", machine._ext1_at_level())
machine.lightsleep(5000)  # a pin at its level: it returns at once
print("woke", machine.wake_reason() == machine.EXT1_WAKE)
esp32.wake_on_ext1(buttons, esp32.WAKEUP_ALL_LOW)
print("all_low one high", machine._ext1_at_level())
machine._on_pin({"pin": 14, "value": 0})
print("all_low all low", machine._ext1_at_level())
esp32.wake_on_ext1((), esp32.WAKEUP_ANY_HIGH)
print("cleared", machine._ext1_at_level())
print("wake_pins", machine.wake_pins(), "register", hex(machine.mem32[0x3FF480D0]))
print("ok")

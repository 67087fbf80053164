# Pin.irq() as the ESP32 port's machine_pin.c has it, the same on both tiers of the simulator
# (tests/test_sim_shims.py runs it on the micropython binary and on the CPython port).
import time
import machine

P = machine.Pin
a = P(25, P.IN, P.PULL_UP)
b = P(26, P.IN, P.PULL_UP)
a.irq(lambda p: print("edge"), P.IRQ_FALLING)
r = a.irq(trigger=P.WAKE_HIGH, wake=machine.DEEPSLEEP)  # arms EXT0; the edge handler stays
try:
    b.irq(trigger=P.WAKE_LOW, wake=machine.SLEEP)
    print("second armed")
except ValueError as e:
    print("second:", e)
try:
    a.irq(trigger=P.WAKE_HIGH, wake=1)
except ValueError as e:
    print("bad:", e)
print("flags", r.flags(), a.irq() is r)
t = time.ticks_ms()
machine.lightsleep(200)  # pin 25 is high, but EXT0 is armed for deep sleep only: the full 200 ms
print("slept", time.ticks_diff(time.ticks_ms(), t) >= 200)
a.irq(None, P.IRQ_FALLING)  # an edge trigger disarms EXT0 on that pin
b.irq(trigger=P.WAKE_LOW, wake=machine.SLEEP)
print("moved")

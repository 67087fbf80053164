# Pins, PWM, ADC, watchdog, resets and deep sleep through the machine shim.
# Run by tests/test_sim_pins.py. Buttons pull their pin to ground:
#   pin 13: blink the LED on pin 2 for 50 ms and beep the buzzer on pin 25
#   pin 14: machine.reset()      pin 15: hang without feeding the watchdog
#   pin 16: deep sleep 200 ms    pin 17: deep sleep until a pin wakes it
import asyncio
import machine

led = machine.Pin(2, machine.Pin.OUT, value=0)
presses = []
woke = asyncio.ThreadSafeFlag()


def on_button(pin):
    presses.append((pin, pin.value()))
    woke.set()


for n in (13, 14, 15, 16, 17):
    machine.Pin(n, machine.Pin.IN, machine.Pin.PULL_UP).irq(on_button, machine.Pin.IRQ_FALLING)

wdt = machine.WDT(timeout=300)
battery = machine.ADC(machine.Pin(34), atten=machine.ADC.ATTN_11DB)
print("boot reset_cause", machine.reset_cause(), "wake", machine.wake_reason(), "battery_uv", battery.read_uv())


async def feed():
    while True:
        wdt.feed()
        await asyncio.sleep_ms(100)


async def main():
    asyncio.create_task(feed())
    while True:
        await woke.wait()
        while presses:
            pin, level = presses.pop(0)
            print("pressed", pin, level)
            if pin is machine.Pin(13):
                led.value(1)
                buzzer = machine.PWM(machine.Pin(25), freq=2000, duty_u16=32768)
                await asyncio.sleep_ms(50)
                buzzer.deinit()
                led.value(0)
            elif pin is machine.Pin(14):
                machine.reset()
            elif pin is machine.Pin(16):
                machine.deepsleep(200)
            elif pin is machine.Pin(17):
                machine.deepsleep()
            else:
                while True:  # a hang: nothing feeds the watchdog any more
                    pass


asyncio.run(main())

# Parts of MicroPython's `machine` API (ESP32 port) that are the same in both tiers of the
# simulator: the reset and wake constants, Pin's state and levels, and PWM and ADC, whose
# arithmetic firmware can see. shims/machine.py (the `micropython` binary, over _simlink) and
# cpython_port/port_machine.py (in-process) subclass PinBase, PWMBase and ADCBase and say
# where an output goes and where an input comes from. Pin.irq() is written once, here, as the
# ESP32 port's machine_pin.c does it: with `wake` and a level trigger it arms EXT0 (one pin
# only: "no resources" for a second; the handler is left as it was), otherwise it sets the edge
# handler and disarms EXT0 on that pin; the tier only keeps the EXT0 source. Plain MicroPython
# subset (no `const`, so CPython imports it as it is).

# Exit codes of a simulated board's process: the simulator (firmware_process.py, the
# installer's fake board) reads them to choose the next boot's reset cause.
EXIT_RESET = 90  # machine.reset(): the next boot reports HARD_RESET
EXIT_DEEPSLEEP = 91  # machine.deepsleep(): the next boot reports DEEPSLEEP_RESET
EXIT_SOFT_RESET = 92  # machine.soft_reset(): the next boot reports SOFT_RESET

PWRON_RESET = 1
HARD_RESET = 2
WDT_RESET = 3
DEEPSLEEP_RESET = 4
SOFT_RESET = 5

SLEEP = 2
DEEPSLEEP = 4

PIN_WAKE = 2
EXT0_WAKE = 2
EXT1_WAKE = 3
TIMER_WAKE = 4
TOUCHPAD_WAKE = 5
ULP_WAKE = 6


_UNSET = object()  # an argument not given (pin.irq() alone changes nothing)


def pin_id(pin):
    # A Pin object or a pin number, as PWM() and ADC() take them.
    return pin._id if hasattr(pin, "_id") else pin


class PinIRQ:
    # What Pin.irq() returns: flags() since the last call, trigger() read or changed.
    def __init__(self, pin):
        self._pin = pin
        self._flags = 0

    def flags(self):
        f = self._flags
        self._flags = 0
        return f

    def trigger(self, trigger=None):
        if trigger is not None:
            self._pin._trigger = trigger
        return self._pin._trigger


class PinBase:
    IN = 1
    OUT = 3
    OPEN_DRAIN = 7
    PULL_DOWN = 1
    PULL_UP = 2
    IRQ_RISING = 1
    IRQ_FALLING = 2
    WAKE_LOW = 4
    WAKE_HIGH = 5
    DRIVE_0 = 0
    DRIVE_1 = 1
    DRIVE_2 = 2
    DRIVE_3 = 3

    # A tier's Pin class has its own `_table = {}` (one per boot: the CPython port loads
    # a fresh machine module at each boot, while this module is loaded once per process).

    def __new__(cls, id, *args, **kwargs):
        # As on the ESP32, Pin(n) is always the same object: an irq handler set through
        # one reference stays when another part of the firmware re-inits the pin.
        pin = cls._table.get(id)
        if pin is None:
            pin = object.__new__(cls)
            pin._id = id
            pin._mode = None
            pin._pull = None
            pin._out = 0
            pin._handler = None
            pin._trigger = 0
            pin._irq = None
            cls._table[id] = pin
        return pin

    def __init__(self, id, mode=-1, pull=-1, *, value=None, drive=None, hold=None):
        self.init(mode, pull, value=value, drive=drive, hold=hold)

    # The tier: is this boot still running, what a (re)configuration tells the simulator,
    # the level the simulator drives on an input, where a driven level goes.
    def _alive(self):
        pass

    def _configured(self, changed):
        pass

    def _input(self, default):
        raise NotImplementedError

    def _drive(self, level):
        raise NotImplementedError

    # The tier's EXT0 wake source: (pin id, level, wake types) or None; and what it needs to
    # do once an edge handler is set (the shim: read the simulator's messages).
    def _ext0(self):
        raise NotImplementedError

    def _arm_ext0(self, source):
        raise NotImplementedError

    def _listen(self):
        pass

    def irq(self, handler=_UNSET, trigger=_UNSET, *, priority=1, wake=None, hard=False):
        self._alive()
        if handler is _UNSET and trigger is _UNSET and wake is None:
            if self._irq is None:  # pin.irq(): the IRQ object, nothing changed
                self._irq = PinIRQ(self)
            return self._irq
        handler = None if handler is _UNSET else handler
        trigger = PinBase.IRQ_FALLING | PinBase.IRQ_RISING if trigger is _UNSET else trigger
        if wake is not None and trigger in (PinBase.WAKE_LOW, PinBase.WAKE_HIGH):
            if wake < 2 or wake > 7:
                raise ValueError("bad wake value")
            armed = self._ext0()
            if armed is not None and armed[0] != self._id:
                raise ValueError("no resources")
            self._arm_ext0((self._id, 1 if trigger == PinBase.WAKE_HIGH else 0, wake))
        else:
            armed = self._ext0()
            if armed is not None and armed[0] == self._id:
                self._arm_ext0(None)
            self._handler = handler
            self._trigger = trigger
            self._listen()
        if self._irq is None:
            self._irq = PinIRQ(self)
        return self._irq

    def _edge(self, level, call):
        # The simulator moved an input to `level`: the handler runs (through `call`, the
        # tier's way) when the pin's trigger has that edge.
        if self._handler is None or self._is_output():
            return
        edge = PinBase.IRQ_RISING if level else PinBase.IRQ_FALLING
        if self._trigger & edge:
            if self._irq is not None:
                self._irq._flags |= edge
            call(self._handler, self)

    def init(self, mode=-1, pull=-1, *, value=None, drive=None, hold=None):
        self._alive()
        if mode != -1:
            self._mode = mode
        if pull != -1:
            self._pull = pull
        self._configured(mode != -1 or pull != -1)
        if value is not None:
            self._write(value)

    def __repr__(self):
        return "Pin(%s)" % self._id

    def _is_output(self):
        return self._mode in (PinBase.OUT, PinBase.OPEN_DRAIN)

    def _level(self):
        if self._is_output():
            return self._out  # input_output mode reads back the driven level
        return self._input(1 if self._pull == PinBase.PULL_UP else 0)

    def _write(self, v):
        self._alive()
        self._out = 1 if v else 0
        self._drive(self._out)

    def value(self, *args):
        if args:
            self._write(args[0])
            return None
        self._alive()
        return self._level()

    def __call__(self, *args):
        return self.value(*args)

    def on(self):
        self._write(1)

    def off(self):
        self._write(0)


class PWMBase:
    # LEDC on the ESP32: duty kept as 16 bits; duty() is 10-bit, duty_ns() from the frequency.
    def __init__(self, dest, *, freq=None, duty=None, duty_u16=None, duty_ns=None, invert=False):
        self._pin = pin_id(dest)
        self._freq = 5000
        self._duty_u16 = 32768
        self.init(freq=freq, duty=duty, duty_u16=duty_u16, duty_ns=duty_ns)

    def _output(self, freq, duty_u16):
        raise NotImplementedError  # the tier: where the output goes

    def init(self, *, freq=None, duty=None, duty_u16=None, duty_ns=None, invert=False):
        if freq is not None:
            self._freq = freq
        if duty is not None:
            self._duty_u16 = duty * 65535 // 1023
        if duty_u16 is not None:
            self._duty_u16 = duty_u16
        if duty_ns is not None:
            self._duty_u16 = min(65535, duty_ns * self._freq * 65535 // 1000000000)
        self._output(self._freq, self._duty_u16)

    def freq(self, value=None):
        if value is None:
            return self._freq
        self.init(freq=value)

    def duty(self, value=None):
        if value is None:
            return self._duty_u16 * 1023 // 65535
        self.init(duty=value)

    def duty_u16(self, value=None):
        if value is None:
            return self._duty_u16
        self.init(duty_u16=value)

    def duty_ns(self, value=None):
        if value is None:
            return self._duty_u16 * 1000000000 // (65535 * self._freq)
        self.init(duty_ns=value)

    def deinit(self):
        self._duty_u16 = 0
        self._output(0, 0)


class ADCBase:
    ATTN_0DB = 0
    ATTN_2_5DB = 1
    ATTN_6DB = 2
    ATTN_11DB = 3
    WIDTH_9BIT = 9
    WIDTH_10BIT = 10
    WIDTH_11BIT = 11
    WIDTH_12BIT = 12

    # Upper end of the ESP32's calibrated range per attenuation, microvolts.
    _FULL_UV = (950000, 1250000, 1750000, 2450000)

    def __init__(self, pin, *, atten=0):
        self._pin = pin_id(pin)
        self._atten = atten
        self._width = 12

    def _input_uv(self):
        raise NotImplementedError  # the tier: the microvolts at the pin

    def atten(self, value):
        self._atten = value

    def width(self, value):
        self._width = value

    def read_uv(self):
        return min(self._input_uv(), ADCBase._FULL_UV[self._atten])

    def read_u16(self):
        return self.read_uv() * 65535 // ADCBase._FULL_UV[self._atten]

    def read(self):
        return self.read_u16() >> (16 - self._width)

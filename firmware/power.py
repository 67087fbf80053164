# Battery level from the ADC behind a 1:2 divider.

from machine import ADC, Pin
from micropython import const

_EMPTY_MV = const(3300)  # a Li-ion cell under load; below this the radio browns out
_FULL_MV = const(4150)


class Battery:
    def __init__(self, adc_pin):
        self._adc = ADC(Pin(adc_pin))

    def millivolts(self):
        # read_u16 spans 0..65535 for 0..3.3 V at the pin; the divider halves the cell.
        return self._adc.read_u16() * 3300 * 2 // 65535

    def percent(self):
        mv = self.millivolts()
        pct = (mv - _EMPTY_MV) * 100 // (_FULL_MV - _EMPTY_MV)
        return max(0, min(100, pct))

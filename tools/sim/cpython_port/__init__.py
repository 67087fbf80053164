"""The real device firmware in-process under CPython, on the simulator's virtual clock.

MicroPython's device modules, written for CPython and bound to one simulated board:

  micropython   const, schedule (runs on the event loop, as a soft IRQ)
  machine       Pin (inputs driven by the scenario, IRQs), ADC, PWM, WDT, reset,
                reset_cause, deepsleep, lightsleep, idle, unique_id, wake_reason
  bluetooth     BLE bound directly to a bumble Device on the simulator's air
  time          ticks_ms/ticks_diff/ticks_add/sleep_ms/time, from the event loop's clock
  asyncio       CPython's asyncio plus sleep_ms, wait_for_ms, ThreadSafeFlag; run()
  os, sys, gc   what the firmware may use of them; files live in the board's flash folder

`PortDevice` (device.py) is one board: power on runs the flash's main.py with these
modules; each boot gets fresh module instances (RAM is lost, flash is kept), so two
boards in one process share no state. See loader.py for how imports are resolved.
"""

from safebox.tools.sim.cpython_port.board import PortDevice
from safebox.tools.sim.cpython_port.device import Reset

__all__ = ["PortDevice", "Reset"]

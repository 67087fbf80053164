"""One simulated board running the real firmware in this process, on the loop's clock.

A `PortDevice` outlives its boots: it keeps the flash folder, the input levels the
scenario drives (pins, ADC), what the firmware printed and drove. Each power-on is a
`Boot`: fresh module instances (loader.py), its own tasks, timers and radio. Ending a
boot (power off, reset, watchdog, deep sleep) cancels all of that at once; anything
the old boot still tries is refused with `Reset`, so no stale callback touches the next.

Resets are `Reset` (a BaseException, like the SystemExit a board never returns from):
`except Exception` in the firmware does not catch it, and asyncio records it on the
task instead of stopping the event loop as SystemExit would.

Light sleep (and any blocking sleep) stops the whole board while the rest of the world
goes on: every step of a board's tasks runs in a greenlet (`BoardTask`), so a
`machine.lightsleep(ms)` deep inside a step parks that greenlet and hands the loop
back; the board's other tasks and IRQs wait too (they are deferred), and the step is
resumed after `ms` of loop time or when an armed wake pin reaches its level. Tasks a
board's task creates are the board's too (`board_task_factory`, installed on the loop).

The boot's machinery is in boot.py; this module re-exports its names.

`main.py` runs at power-on in a greenlet of its own: its `asyncio.run(main())` starts
`main()` as the board's main task and parks main.py until that task ends; then
asyncio.run returns its result or raises its exception in main.py, as on a board (so a
crash handler around asyncio.run, and code after it, run).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

from safebox.tools.sim.air import Air
from safebox.tools.sim.cpython_port.loader import FirmwareImporter

from safebox.tools.sim.shims._machineapi import (  # noqa: F401 (machine.reset_cause/wake_reason values)
    DEEPSLEEP_RESET,
    EXT0_WAKE,
    HARD_RESET,
    PWRON_RESET,
    SOFT_RESET,
    TIMER_WAKE,
    WDT_RESET,
)
from safebox.tools.sim.cpython_port.boot import BoardTask, Boot, Output, Reset, board_task_factory  # noqa: F401

BOOT_S = 0.3  # from a reset to main.py: the ROM bootloader and MicroPython's start on an ESP32

class PortDevice:
    """A board: flash folder, inputs, outputs, console; `power_on()` boots the firmware."""

    def __init__(self, air: Air, flash_dir: Path, *, mac: str, name: str | None = None) -> None:
        self.air = air
        self.flash_dir = Path(flash_dir).resolve()
        self.mac = mac.upper()
        self.name = name or self.mac.replace(":", "").lower()
        self.pin_levels: dict[int, int] = {}
        self.adc_uv: dict[int, int] = {}
        self.outputs: list[Output] = []
        self.lines: list[str] = []
        self.boots = 0
        self.resets: list[tuple[float, int]] = []  # (loop time, reset cause of the boot that followed)
        self.boot: Boot | None = None
        self.log = logging.getLogger(f"safebox.sim.port.{self.name}")
        self._pin_listeners: list[Callable[[int, int], None]] = []
        self.wake_levels: dict[int, int] = {}  # light-sleep wake sources armed by Pin.irq(wake=...)
        self._wake_on_pin = False
        self._deep_wake: dict[int, int] = {}  # a timed deep sleep's EXT0 source: pin -> level
        self._pending_boot: asyncio.TimerHandle | None = None

    # -- power -------------------------------------------------------------------------
    @property
    def running(self) -> bool:
        return self.boot is not None and self.boot.alive

    def power_on(self, reset_cause: int = PWRON_RESET, wake_reason: int = 0) -> None:
        """Boot: run main.py from the flash folder (synchronously, until its asyncio.run)."""
        self.power_off()
        boot = Boot(self, reset_cause, wake_reason)
        self.boot = boot
        self.wake_levels = {}
        self.boots += 1
        self.resets.append((boot.started_at, reset_cause))
        self.log.info("boot %d (reset cause %d)", self.boots, reset_cause)
        importer = FirmwareImporter(boot)

        def run_main_py() -> None:
            try:
                importer.run_main(self.flash_dir / "main.py")
                boot.console("main.py ended: the board sits at the REPL\n")
            except Reset:
                pass
            except Exception as exc:
                boot.print_exception(exc, "Traceback (most recent call last), main.py")

        boot.start_main(run_main_py)

    def power_off(self) -> None:
        """Power cut: the boot ends; flash and input levels stay."""
        if self._pending_boot is not None:
            self._pending_boot.cancel()
            self._pending_boot = None
        self._wake_on_pin = False
        self._deep_wake = {}
        if self.boot is not None:
            self.boot.end()

    def reset(self, cause: int, after_s: float | None = 0.0, wake_reason: int = 0,
              wake_pins: dict[int, int] | None = None) -> None:
        """End this boot and boot again with `cause` after `after_s` (None: at the next input
        change), plus the time a board takes to boot (a crashing firmware's reset loop still
        lets simulated time pass). With `wake_pins` (a timed deep sleep with EXT0 armed: pin ->
        level) a pin at its level boots it earlier, with EXT0_WAKE (at once if one already is)."""
        self.power_off()
        loop = asyncio.get_running_loop()
        if after_s is None and not wake_pins:
            self._wake_on_pin = True
            return
        if wake_pins:
            if any(self.pin_levels.get(pin) == level for pin, level in wake_pins.items()):
                after_s, wake_reason = 0.0, EXT0_WAKE
            else:
                self._deep_wake = dict(wake_pins)
        if after_s is not None:
            self._pending_boot = loop.call_later(after_s + BOOT_S, self._reboot, cause, wake_reason)

    def _reboot(self, cause: int, wake_reason: int) -> None:
        self._pending_boot = None
        self._deep_wake = {}
        self.power_on(cause, wake_reason)

    def _watchdog_expired(self, boot: Boot, feeds: int) -> None:
        if boot is self.boot and boot.alive and feeds == boot.wdt_feeds:
            self.log.warning("watchdog reset")
            boot.console("watchdog: not fed in time, resetting\n")
            self.reset(WDT_RESET)

    # -- flash -------------------------------------------------------------------------
    def flash_path(self, path: Any) -> Path:
        """A firmware path ("/counter", "events.json") as a file in this board's flash folder."""
        text = str(path)
        full = (self.flash_dir / text.lstrip("/")).resolve()
        if full != self.flash_dir and self.flash_dir not in full.parents:
            raise OSError(2, "no such file (outside the flash)", text)
        return full

    # -- inputs --------------------------------------------------------------------------
    def on_pin(self, listener: Callable[[int, int], None]) -> None:
        self._pin_listeners.append(listener)

    def wake_pin_active(self) -> bool:
        return any(self.pin_levels.get(pin) == level for pin, level in self.wake_levels.items())

    def set_pin(self, pin: int, level: int) -> None:
        level = 1 if level else 0
        self.pin_levels[pin] = level
        for listener in list(self._pin_listeners):
            listener(pin, level)
        if self.boot is not None and self.boot.alive:
            self.boot.pin_changed()
        if self._wake_on_pin:
            self._wake_on_pin = False
            self.power_on(DEEPSLEEP_RESET, EXT0_WAKE)
        elif self._deep_wake.get(pin) == level:  # EXT0 ends a timed deep sleep
            self._deep_wake = {}
            if self._pending_boot is not None:
                self._pending_boot.cancel()
            self._pending_boot = asyncio.get_running_loop().call_later(BOOT_S, self._reboot, DEEPSLEEP_RESET,
                                                                       EXT0_WAKE)

    async def press(self, pin: int, hold_s: float, *, active: int = 0) -> None:
        self.set_pin(pin, active)
        await asyncio.sleep(hold_s)
        self.set_pin(pin, 1 - active)

    def set_adc(self, pin: int, microvolts: int) -> None:
        self.adc_uv[pin] = int(microvolts)

    # -- outputs -------------------------------------------------------------------------
    def _line(self, line: str) -> None:
        self.lines.append(line)
        self.log.info("%s", line)

    def output(self, pin: int, value: int, kind: str = "pin") -> None:
        self.outputs.append(Output(asyncio.get_running_loop().time(), pin, value, kind))

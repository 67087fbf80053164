"""A simulated board (`PortDevice`) for the in-process CPython port: flash folder, inputs,
outputs, console, and its power: `power_on()` boots the firmware as a `Boot` (device.py), a
reset or a deep sleep ends that boot and schedules the next (BOOT_S later, or when a wake
source fires: EXT0 on one pin, EXT1 / the C3's GPIO wake on several).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

from safebox.tools.sim.air import Air
from safebox.tools.sim.cpython_port.device import (
    BOOT_S,
    DEEPSLEEP_RESET,
    EXT0_WAKE,
    PWRON_RESET,
    WDT_RESET,
    Boot,
    Output,
    Reset,
)
from safebox.tools.sim.cpython_port.loader import FirmwareImporter
from safebox.tools.sim.shims._machineapi import SLEEP


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
        # EXT0, armed by Pin.irq(trigger=WAKE_LOW/WAKE_HIGH, wake=...): (pin, level, wake types)
        self.ext0: tuple[int, int, int] | None = None
        self._wake_on_pin = False
        self._deep_wake: dict[int, int] = {}  # a timed deep sleep's EXT0 source: pin -> level
        # EXT1 / the C3's GPIO wake (port_esp32): (pins, level 1 ANY_HIGH or 0 ALL_LOW, wake reason)
        self.ext1: tuple[tuple[int, ...], int, int] | None = None
        self._deep_ext1: tuple[tuple[int, ...], int, int] | None = None  # armed for a deep sleep
        self._pending_boot: asyncio.TimerHandle | None = None

    # -- power -------------------------------------------------------------------------
    @property
    def running(self) -> bool:
        return self.boot is not None and self.boot.alive

    def power_on(self, reset_cause: int = PWRON_RESET, wake_reason: int = 0, wake_pins: tuple[int, ...] = ()) -> None:
        """Boot: run main.py from the flash folder (synchronously, until its asyncio.run)."""
        self.power_off()
        boot = Boot(self, reset_cause, wake_reason, wake_pins)
        self.boot = boot
        self.ext0 = None
        self.ext1 = None
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
        self._deep_ext1 = None
        if self.boot is not None:
            self.boot.end()

    def reset(self, cause: int, after_s: float | None = 0.0, wake_reason: int = 0,
              wake_pins: dict[int, int] | None = None,
              ext1: tuple[tuple[int, ...], int, int] | None = None) -> None:
        """End this boot and boot again with `cause` after `after_s` (None: at the next input
        change), plus the time a board takes to boot (a crashing firmware's reset loop still
        lets simulated time pass). With `wake_pins` (a timed deep sleep with EXT0 armed: pin ->
        level) a pin at its level boots it earlier, with EXT0_WAKE (at once if one already is);
        with `ext1` likewise when its pins reach their level, with its wake reason and pins."""
        self.power_off()
        loop = asyncio.get_running_loop()
        if ext1 is not None and ext1[0]:
            if at := self._ext1_at(ext1):
                self._pending_boot = loop.call_later(BOOT_S, self._reboot, cause, ext1[2], at)
                return
            self._deep_ext1 = ext1
            if after_s is None:
                return
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

    def _reboot(self, cause: int, wake_reason: int, wake_pins: tuple[int, ...] = ()) -> None:
        self._pending_boot = None
        self._deep_wake = {}
        self._deep_ext1 = None
        self.power_on(cause, wake_reason, wake_pins)

    def _ext1_at(self, ext1: tuple[tuple[int, ...], int, int] | None) -> tuple[int, ...]:
        """The pins of an EXT1/GPIO source at its level, () when it would not fire now."""
        if ext1 is None or not ext1[0]:
            return ()
        pins, level, _reason = ext1
        at = tuple(p for p in pins if self.pin_levels.get(p, 0) == level)
        return at if level or len(at) == len(pins) else ()  # ALL_LOW: every pin or none

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

    def ext0_for(self, sleep: int) -> dict[int, int]:
        """EXT0 as {pin: level} when it is armed for this kind of sleep (machine.SLEEP or DEEPSLEEP)."""
        return {self.ext0[0]: self.ext0[1]} if self.ext0 is not None and self.ext0[2] & sleep else {}

    def wake_pin_active(self) -> bool:
        return bool(self._ext1_at(self.ext1)) or any(
            self.pin_levels.get(pin) == level for pin, level in self.ext0_for(SLEEP).items())

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
        elif at := self._ext1_at(self._deep_ext1):  # EXT1 / GPIO wake ends a deep sleep
            reason = self._deep_ext1[2] if self._deep_ext1 is not None else 0
            self._deep_ext1 = None
            if self._pending_boot is not None:
                self._pending_boot.cancel()
            self._pending_boot = asyncio.get_running_loop().call_later(BOOT_S, self._reboot, DEEPSLEEP_RESET,
                                                                       reason, at)
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

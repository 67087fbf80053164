"""The simulator side of the MicroPython shims: one device's radio, pins and watchdog.

A `Bridge` listens on 127.0.0.1 for the firmware process's link (tools/sim/shims/
_simlink.py). Each TCP connection is one boot of the device: it gets a fresh bumble
`Device` on the air whose controller's public address is the device MAC, and it ends,
as a power cut would, with the device's links dropped and its advertising gone.

What the firmware asks through `bluetooth.BLE` becomes bumble calls (shimlink.BootLink, one per boot): advertising is
legacy ADV_IND (ADV_NONCONN_IND when not connectable) on the real interval, registered
services become bumble `Service`s whose value handles are the handles the firmware gets,
and central connects, disconnects, writes, MTU exchanges and connection updates come
back as IRQs 1, 2, 3, 21 and 27 (writes with the written bytes, so `gatts_read` stays
local in the shim); indications confirmed by the central as IRQ 20.

Pins: tests drive inputs with `set_pin`/`press`/`set_adc` (remembered across boots, and
sent again at each boot) and read what the firmware drove in `outputs`. The watchdog is
enforced here: `on_watchdog` is called when a feed is late, even if the firmware hangs.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Callable
from typing import Any

from safebox.tools.sim.air import Air
from safebox.tools.sim.shimlink import Advertising, BootLink, OutputEvent

__all__ = ["Advertising", "Bridge", "OutputEvent"]

logger = logging.getLogger(__name__)


class Bridge:
    """One simulated device's connection point: serve it, drive its pins, watch its radio."""

    def __init__(self, air: Air, mac: str, *, name: str | None = None) -> None:
        self.air = air
        self.mac = mac.upper()
        self.name = name or self.mac.replace(":", "").lower()
        self.pin_levels: dict[int | str, int] = {}
        self.pin_modes: dict[int | str, tuple[int | None, int | None]] = {}
        self.adc_uv: dict[int | str, int] = {}
        self.outputs: list[OutputEvent] = []
        self.advertising: list[Advertising] = []
        self.irq_log: list[tuple[float, int, tuple[int, ...]]] = []
        self.boots = 0
        self.last_sleep: tuple[str, int | None] | None = None
        self.last_sleep_wake: list[int] | None = None  # deep sleep's EXT0 source: [pin, level, already at it]
        self.last_sleep_wake1: list[Any] | None = None  # deep sleep's EXT1/GPIO source: [[pins], level, reason]
        # What the chip latches for it: the pins at the level at the moment it fired (the instant
        # of the set_pin, not when the simulator's loop gets round to it: a 60 ms press must not
        # be missed); pins set in the same instant are latched together
        self._ext1_armed: list[Any] | None = None
        self.ext1_latched: tuple[int, ...] = ()
        self.deep_sleeps: list[tuple[float, int | None, list[int] | None]] = []  # (monotonic, ms, wake), every one
        self.last_reset_cause: int | None = None
        self.on_watchdog: Callable[[], None] | None = None
        self.on_pin: Callable[[int | str, int], None] | None = None
        self._server: asyncio.Server | None = None
        self._boot: BootLink | None = None
        self._changed = asyncio.Condition()

    async def start(self) -> int:
        """Listen for the firmware process; returns the port for SAFEBOX_SIM_PORT."""
        if self._server is None:
            self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        return self.port

    @property
    def port(self) -> int:
        assert self._server is not None, "Bridge.start() first"
        return int(self._server.sockets[0].getsockname()[1])

    async def aclose(self) -> None:
        """Stop serving and take the device off the air; safe to call twice."""
        if self._server is not None:
            self._server.close()
            self._server = None
        if self._boot is not None:
            self._boot.close()
            self._boot = None

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        boot = BootLink(self, reader, writer)
        previous, self._boot = self._boot, boot
        if previous is not None:
            previous.close()
        try:
            await boot.run()
        except ConnectionError as e:
            logger.info("%s: link ended (device off or reset): %s", self.name, e)
        except json.JSONDecodeError as e:
            logger.warning("%s: link ended, unreadable message from the shim: %s", self.name, e)
        finally:
            if self._boot is boot:
                self._boot = None
            await self._notify()

    def _booted(self, boot: BootLink) -> None:
        self.boots += 1
        self.last_sleep = None
        self._ext1_armed = None
        self.last_reset_cause = None
        asyncio.get_running_loop().create_task(self._notify())

    def _output(self, event: OutputEvent) -> None:
        self.outputs.append(event)
        asyncio.get_running_loop().create_task(self._notify())

    def _watchdog_expired(self) -> None:
        logger.warning("%s: watchdog not fed in time", self.name)
        if self._boot is not None:
            self._boot.stop_watchdog()
        if self.on_watchdog is not None:
            self.on_watchdog()

    async def _notify(self) -> None:
        async with self._changed:
            self._changed.notify_all()

    async def wait_for(self, predicate: Callable[[], bool], timeout: float = 5.0) -> None:
        """Wait until predicate() holds; it is checked on boots, outputs and link ends."""
        async with asyncio.timeout(timeout), self._changed:
            await self._changed.wait_for(predicate)

    async def wait_booted(self, boots: int = 1, timeout: float = 5.0) -> None:
        await self.wait_for(lambda: self.boots >= boots, timeout)

    @property
    def linked(self) -> bool:
        """True while a firmware process is connected."""
        return self._boot is not None

    # -- pins ------------------------------------------------------------------------------
    def arm_ext1(self, wake1: list[Any]) -> None:
        """The firmware went to deep sleep with EXT1/GPIO armed: latch the pins when it fires."""
        self._ext1_armed, self.ext1_latched = wake1, ()
        self._fire_ext1()

    def _fire_ext1(self) -> None:
        armed = self._ext1_armed
        if armed is None:
            return
        pins, level = armed[0], armed[1]
        at = tuple(p for p in pins if self.pin_levels.get(p, 0) == level)
        if at and (level or len(at) == len(pins)):  # ANY_HIGH: any one; ALL_LOW: all of them
            self._ext1_armed, self.ext1_latched = None, at

    def set_pin(self, pin: int | str, value: int) -> None:
        """Set an input level; the firmware's Pin.irq handler sees the edge."""
        self.pin_levels[pin] = 1 if value else 0
        if self._ext1_armed is not None:
            # at the end of this instant: pins set together (no await between) fire together
            asyncio.get_running_loop().call_soon(self._fire_ext1)
        if self._boot is not None:
            self._boot.send({"op": "pin", "pin": pin, "value": self.pin_levels[pin]})
        if self.on_pin is not None:
            self.on_pin(pin, self.pin_levels[pin])

    async def press(self, pin: int | str, duration_s: float = 0.1, *, active: int = 0) -> None:
        """Hold a button: drive `pin` to `active` for duration_s, then release it."""
        self.set_pin(pin, active)
        await asyncio.sleep(duration_s)
        self.set_pin(pin, 1 - active)

    def set_adc(self, pin: int | str, microvolts: int) -> None:
        """What ADC(Pin(pin)).read_uv() returns from now on."""
        self.adc_uv[pin] = int(microvolts)
        if self._boot is not None:
            self._boot.send({"op": "adc", "pin": pin, "uv": int(microvolts)})

    def output_levels(self, pin: int | str) -> list[tuple[float, int]]:
        """The changes of an output pin as (time, level), repeated writes folded."""
        levels: list[tuple[float, int]] = []
        for event in self.outputs:
            if event.kind == "pin" and event.pin == pin and (not levels or levels[-1][1] != event.value):
                levels.append((event.t, event.value))
        return levels

    async def wait_output(self, pin: int | str, value: int, *, after: float = 0.0, timeout: float = 5.0) -> float:
        """Wait until the firmware writes `value` to `pin` (at or after `after`); returns when."""

        def found() -> bool:
            return any(e.kind == "pin" and e.pin == pin and e.value == value and e.t >= after for e in self.outputs)

        await self.wait_for(found, timeout)
        return next(e.t for e in self.outputs if e.kind == "pin" and e.pin == pin and e.value == value and e.t >= after)

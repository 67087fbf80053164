"""The fake board's processor: the real `micropython` binary, running what the host sends.

fakeboard.py speaks the REPL protocol on the serial line; what the code it receives does
happens here, in a `micropython` process whose working folder is the board's flash, with a
small "ROM" (below) that makes it look like the board it is configured to be: `sys.platform`,
`sys.implementation` (version, machine, .mpy format), `machine.reset()` and a `bluetooth`
that answers the board's MAC.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import tempfile
from pathlib import Path

from safebox.tools.sim.firmware_process import micropython_binary
from safebox.tools.sim.shims._machineapi import EXIT_RESET, EXIT_SOFT_RESET

CTRL_D = 4

# The board's "ROM": runs in the micropython binary, executes what the fake sends it.
# Framing from the fake: "<length>\n<code>"; after each piece of code it writes
# "\x04" + error text + "\x04" to stdout, exactly what the raw REPL sends after the output.
_BOARDCPU = r'''
import sys, os
_sys = sys
_out = sys.stdout.buffer
_in = sys.stdin.buffer
_v = tuple(int(x) for x in os.getenv("FAKEBOARD_VERSION").split("."))

class _Impl:
    name = "micropython"
    version = _v + ("",)
    _machine = os.getenv("FAKEBOARD_MACHINE")
    _mpy = int(os.getenv("FAKEBOARD_MPY"))

class _Sys:
    platform = os.getenv("FAKEBOARD_PLATFORM")
    implementation = _Impl()
    def __getattr__(self, name):
        return getattr(_sys, name)

sys.modules["sys"] = _Sys()

import machine as _rm

class _Machine:
    def reset(self):
        raise SystemExit(EXIT_RESET)
    def soft_reset(self):
        raise SystemExit(EXIT_SOFT_RESET)
    def unique_id(self):
        return bytes.fromhex(os.getenv("FAKEBOARD_MAC"))
    def __getattr__(self, name):
        return getattr(_rm, name)

sys.modules["machine"] = _Machine()
_g = {"__name__": "__main__"}
while True:
    _line = _in.readline()
    if not _line:
        break
    _n = int(_line)
    _code = b""
    while len(_code) < _n:
        _part = _in.read(_n - len(_code))
        if not _part:
            raise SystemExit(0)
        _code += _part
    try:
        exec(_code, _g)
        _out.write(b"\x04\x04")
    except SystemExit as _e:
        _sys.exit(_e.args[0] if _e.args else 0)
    except BaseException as _e:
        _out.write(b"\x04")
        _sys.print_exception(_e, _sys.stdout)
        _out.write(b"\x04")
'''.replace("EXIT_RESET", str(EXIT_RESET)).replace("EXIT_SOFT_RESET", str(EXIT_SOFT_RESET))

# Only what a board's `bluetooth` gives the installer: its MAC (the firmware's own radio
# is not simulated here; the practice lab runs the firmware on the simulator's shims).
_BLUETOOTH = r'''
import os
FLAG_READ = 0x0002
FLAG_WRITE = 0x0008

class UUID:
    def __init__(self, value):
        self.value = value

class BLE:
    _active = False
    def active(self, *on):
        if on:
            BLE._active = bool(on[0])
        return BLE._active
    def config(self, *names, **values):
        if names and names[0] == "mac":
            if not BLE._active:
                raise OSError(19)
            return (0, bytes.fromhex(os.getenv("FAKEBOARD_MAC")))
        raise ValueError("unknown config param")
    def irq(self, handler):
        pass
'''



class BoardCpu:
    """One interpreter at a time; `restart()` is a fresh one (a boot), `run()` executes code on it."""

    def __init__(self, flash_dir: Path, *, mac: str, version: tuple[int, int, int], platform: str,
                 machine: str, mpy: int | None, heapsize: str) -> None:
        self.flash_dir = flash_dir
        self.mac = mac
        self.version = version
        self.platform = platform
        self.machine = machine
        self.mpy = mpy
        self.heapsize = heapsize
        self._rom: Path | None = None
        self._proc: asyncio.subprocess.Process | None = None

    async def open(self) -> None:
        self._rom = Path(tempfile.mkdtemp(prefix="fakeboard-rom-"))
        (self._rom / "boardcpu.py").write_text(_BOARDCPU)
        (self._rom / "bluetooth.py").write_text(_BLUETOOTH)
        if self.mpy is None:
            proc = await asyncio.create_subprocess_exec(
                micropython_binary(), "-c", "import sys; print(sys.implementation._mpy)",
                stdout=asyncio.subprocess.PIPE)
            out, _ = await proc.communicate()
            self.mpy = int(out)

    async def close(self) -> None:
        await self.stop()
        if self._rom is not None:
            shutil.rmtree(self._rom, ignore_errors=True)
            self._rom = None

    async def stop(self) -> None:
        proc, self._proc = self._proc, None
        if proc is not None and proc.returncode is None:
            proc.kill()
            await proc.wait()

    async def restart(self) -> None:
        await self.stop()
        assert self._rom is not None, "open() first"
        env = dict(os.environ,
                   MICROPYPATH=os.pathsep.join([str(self._rom), ".frozen", "lib"]),
                   FAKEBOARD_VERSION=".".join(map(str, self.version)), FAKEBOARD_PLATFORM=self.platform,
                   FAKEBOARD_MACHINE=self.machine, FAKEBOARD_MPY=str(self.mpy),
                   FAKEBOARD_MAC=self.mac.replace(":", "").lower())
        self._proc = await asyncio.create_subprocess_exec(
            micropython_binary(), "-X", f"heapsize={self.heapsize}", str(self._rom / "boardcpu.py"),
            cwd=self.flash_dir, env=env, stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT)

    async def run(self, code: bytes) -> tuple[bytes, bytes, int | None]:
        """(output, error text, None), or (output so far, b"", exit code) when the code ended the
        interpreter: machine.reset() (EXIT_RESET), machine.soft_reset() (EXIT_SOFT_RESET) or a crash."""
        proc = self._proc
        if proc is None or proc.returncode is not None:
            await self.restart()
            proc = self._proc
        assert proc is not None and proc.stdin is not None and proc.stdout is not None
        proc.stdin.write(b"%d\n" % len(code) + code)
        with contextlib.suppress(ConnectionError):
            await proc.stdin.drain()
        out, err = bytearray(), bytearray()
        marks = 0
        while marks < 2:
            chunk = await proc.stdout.read(4096)
            if not chunk:
                break
            for b in chunk:
                if b == CTRL_D:
                    marks += 1
                elif marks == 0:
                    out.append(b)
                else:
                    err.append(b)
        if marks == 2:
            return bytes(out), bytes(err), None
        return bytes(out), b"", await proc.wait()

"""A MicroPython board on a virtual USB serial port, for tests and the practice lab.

The installer's tools talk to boards through mpremote's `SerialTransport`, which speaks
MicroPython's REPL protocol over pyserial. The `micropython` unix binary cannot stand in
for a board directly: its REPL has no raw mode. So this fake speaks the board side of the
protocol itself, on a TCP port that pyserial opens as `socket://127.0.0.1:<port>`, and has
the real `micropython` binary execute every piece of code it is sent, in the board's
flash folder:

* friendly REPL (banner, `>>> `, echo), Ctrl-A/B/C, Ctrl-D soft reboot, as pyexec.c does;
* raw REPL (code to Ctrl-D, "OK", output, `\\x04`, error, `\\x04`, `>`) and raw-paste mode
  (`\\x05A\\x01` -> `R\\x01` + window size, `\\x01` per window, `\\x04` to end), mpremote's default;
* `machine.reset()` reboots (a power-on boot; the serial line stays open, as a USB-UART
  bridge's does), `machine.soft_reset()` soft-reboots;
* `sys.platform`/`sys.implementation` say what the fake is configured to be (an ESP32 on
  MicroPython 1.24.1 unless told otherwise); `bluetooth.BLE().config('mac')` is the MAC;
* `unplug_after(n)` pulls the cable once the host has sent n more bytes (files written so far
  stay written); the next connection is the board plugged in again.

With `on_boot`, a boot that finds `main.py` runs the firmware (the practice lab starts
the real firmware on the simulated air there) and relays its output to the serial line;
Ctrl-C stops it and drops to the REPL, as on a board. Without it, a boot goes to the REPL.

The REPL's protocol is read in fakeboard_repl.py, the code run in fakeboard_cpu.py; this module
is the board: its serial port, its cable, its power and boots.
"""

from __future__ import annotations

import asyncio
import os
import socket
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Protocol

from safebox.tools.installer.fakeboard_cpu import EXIT_SOFT_RESET, BoardCpu
from safebox.tools.installer.fakeboard_repl import CTRL_C, RAW_BANNER, ReplSide, Unplugged, cook


class Running(Protocol):
    """What `on_boot` returns: firmware that is running; its output goes to `on_output`."""

    @property
    def running(self) -> bool: ...

    async def stop(self) -> None: ...


OnBoot = Callable[["FakeBoard", Callable[[bytes], None]], Awaitable["Running | None"]]


class FakeBoard(ReplSide):
    """One board: its flash (a folder), its REPL, its serial port. `async with` or start()/aclose()."""

    def __init__(self, flash_dir: str | os.PathLike[str], *, mac: str = "24:0A:C4:00:00:01",
                 version: tuple[int, int, int] = (1, 24, 1), platform: str = "esp32",
                 machine: str = "Generic ESP32 module with ESP32", mpy: int | None = None,
                 on_boot: OnBoot | None = None, port: int = 0, heapsize: str = "512k") -> None:
        self.flash_dir = Path(flash_dir)
        self.mac = mac.upper()
        self.version = version
        self.platform = platform
        self.machine = machine
        self.mpy = mpy
        self.on_boot = on_boot
        self.heapsize = heapsize
        self.received = 0  # bytes the host has sent, over all connections
        self.connections = 0
        self.boots = 0
        self.execs = 0
        self._port = port
        self._server: asyncio.Server | None = None
        self._cpu = BoardCpu(self.flash_dir, mac=self.mac, version=version, platform=platform, machine=machine,
                             mpy=mpy, heapsize=heapsize)
        self._writer: asyncio.StreamWriter | None = None
        self._firmware: Running | None = None
        self._mode = "off"  # off, friendly, raw, paste, firmware
        self._line = bytearray()
        self._paste_left = 0
        self._budget: int | None = None
        self._exec_budget: int | None = None
        self._powered = False
        self._lock = asyncio.Lock()
        self._port_lock = asyncio.Lock()

    # -- lifecycle ------------------------------------------------------------------------
    async def __aenter__(self) -> FakeBoard:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    async def start(self) -> str:
        self.flash_dir.mkdir(parents=True, exist_ok=True)
        await self._cpu.open()
        self.mpy = self._cpu.mpy
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", self._port)
        return self.url

    @property
    def port(self) -> int:
        assert self._server is not None, "start() first"
        return int(self._server.sockets[0].getsockname()[1])

    @property
    def url(self) -> str:
        """The serial port, as pyserial (and so mpremote and safebox-install) opens it."""
        return f"socket://127.0.0.1:{self.port}"

    async def aclose(self) -> None:
        """Unplug for good; safe to call twice."""
        if self._server is not None:
            self._server.close()
            self._server = None
        await self._power_off()
        if self._writer is not None:
            self._writer.close()
            self._writer = None
        await asyncio.sleep(0.01)  # let the transports close before the loop goes
        await self._cpu.close()

    def unplug_after(self, nbytes: int | None) -> None:
        """Pull the cable once the host has sent `nbytes` more bytes (None: never)."""
        self._budget = nbytes

    def unplug_at_exec(self, n: int | None) -> None:
        """Pull the cable when the n-th piece of code from now arrives, before it runs (None: never)."""
        self._exec_budget = n

    async def unplug(self) -> None:
        """Pull the cable now: the link drops and the board loses power."""
        self._budget = None
        await self._power_off()
        if self._writer is not None:
            self._writer.close()
            self._writer = None

    @property
    def mode(self) -> str:
        return self._mode

    @property
    def firmware(self) -> Running | None:
        return self._firmware

    # -- the serial line ------------------------------------------------------------------
    def _send(self, data: bytes) -> None:
        if self._writer is not None and not self._writer.is_closing():
            self._writer.write(data)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        # One host at a time, like a serial port: a new one waits until the last has closed.
        async with self._port_lock:
            await self._serve_one(reader, writer)

    async def _serve_one(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._writer = writer
        self.connections += 1
        sock = writer.get_extra_info("socket")
        if sock is not None:  # a serial line has no Nagle delay: answer byte by byte at once
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        try:
            if not self._powered:
                await self._boot(power_on=True)
            while data := await reader.read(4096):
                if self._budget is not None and len(data) >= self._budget:
                    data, self._budget = data[: self._budget], 0
                elif self._budget is not None:
                    self._budget -= len(data)
                self.received += len(data)
                try:
                    async with self._lock:
                        await self._feed_bytes(data)
                except Unplugged:
                    self._budget = 0
                if self._budget == 0:
                    await self.unplug()
                    return
                await writer.drain()
        except (ConnectionError, OSError):
            pass
        finally:
            if self._writer is writer:
                self._writer = None
            writer.close()

    # -- power, boot, reboot --------------------------------------------------------------
    async def _power_off(self) -> None:
        self._powered = False
        self._mode = "off"
        await self._stop_firmware()
        await self._stop_cpu()

    async def _stop_cpu(self) -> None:
        await self._cpu.stop()

    async def _start_cpu(self) -> None:
        await self._cpu.restart()

    async def _stop_firmware(self) -> None:
        fw, self._firmware = self._firmware, None
        if fw is not None:
            await fw.stop()

    def _banner(self) -> bytes:
        v = ".".join(map(str, self.version))
        return (f"MicroPython v{v} on 2024-11-29; {self.machine}\r\n"
                'Type "help()" for more information.\r\n').encode()

    async def _boot(self, *, power_on: bool) -> None:
        """A hard boot (power on, reset): firmware if there is main.py and on_boot, else the REPL."""
        self._powered = True
        self.boots += 1
        self._line.clear()
        await self._stop_firmware()
        await self._start_cpu()
        if not power_on:
            self._send(b"ets Jul 29 2019 12:21:46\r\n\r\nrst:0xc (SW_CPU_RESET),boot:0x13 (SPI_FAST_FLASH_BOOT)\r\n")
        await self._run_main_or_repl()

    async def _run_main_or_repl(self) -> None:
        if self.on_boot is not None and (self.flash_dir / "main.py").exists():
            self._mode = "firmware"
            self._firmware = await self.on_boot(self, lambda data: self._send(cook(data)))
            if self._firmware is not None:
                asyncio.get_running_loop().create_task(self._watch_firmware(self._firmware))
                return
        self._mode = "friendly"
        self._send(self._banner() + b">>> ")

    async def _watch_firmware(self, fw: Running) -> None:
        """Firmware that ends (a crash, a bad config) leaves the board at the REPL, as on an ESP32."""
        while self._firmware is fw and fw.running:
            await asyncio.sleep(0.1)
        if self._firmware is fw:
            self._firmware = None
            self._mode = "friendly"
            self._send(self._banner() + b">>> ")

    async def _soft_reboot(self, *, then_raw: bool) -> None:
        self._send(b"MPY: soft reboot\r\n")
        await self._start_cpu()
        self._line.clear()
        if then_raw:
            self._mode = "raw"
            self._send(RAW_BANNER + b">")
        else:
            await self._run_main_or_repl()

    # -- what the REPL asks of the board (fakeboard_repl.ReplSide) -------------------------
    async def _on_firmware_byte(self, c: int) -> None:
        """While the firmware runs, only Ctrl-C means something: it stops it, as on a board."""
        if c == CTRL_C:
            await self._stop_firmware()
            await self._start_cpu()
            self._mode = "friendly"
            self._send(b"Traceback (most recent call last):\r\n  File \"main.py\", line 2, in <module>\r\n"
                       b"KeyboardInterrupt: \r\n" + self._banner() + b">>> ")

    async def _exec(self, code: bytes) -> tuple[bytes | None, bytes]:
        """Run `code` on the board's interpreter: (output, error text), or (None, b"") if it reset the board."""
        if self._exec_budget is not None:
            self._exec_budget -= 1
            if self._exec_budget <= 0:
                self._exec_budget = None
                raise Unplugged
        self.execs += 1
        out, err, ended = await self._cpu.run(code)
        if ended is None:
            return out, err
        # The interpreter ended: machine.reset(), machine.soft_reset() or a crash.
        self._send(cook(out))
        if ended == EXIT_SOFT_RESET:
            await self._soft_reboot(then_raw=False)
        else:
            await self._boot(power_on=False)
        return None, b""

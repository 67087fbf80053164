"""The AT command line to a modem (3GPP TS 27.007 / 27.005) over pyserial-asyncio-fast.

One command at a time: `command()` writes it and collects the lines up to its final result
(`OK`, `ERROR`, `+CME ERROR: <n>`, `+CMS ERROR: <n>`); `send_with_prompt()` waits for the
`> ` prompt, writes the data and Ctrl-Z. Lines that are not the answer to the command in
flight (unsolicited result codes such as `+CREG:`, `+CMT:`, `+CMTI:`) go to `on_urc`, with
the line after a `+CMT:` (its PDU). A vanished device (USB unplugged) ends every wait with
`ModemGone`; a modem that answers nothing or garbage ends it with `AtTimeout`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable

import serial_asyncio_fast

from safebox.hub.waiting import wait_set

log = logging.getLogger("safebox.hub.cellular")

FINAL_OK = "OK"
_URC_PREFIXES = ("+CREG:", "+CMT:", "+CMTI:", "+CDS:", "+CBM:", "RING", "+CRING:", "+CLIP:", "NO CARRIER",
                 "+CPIN: NOT READY", "RDY", "+QIND:", "^")
_TWO_LINE_URCS = ("+CMT:", "+CDS:", "+CBM:")


class AtError(Exception):
    """The modem answered a final error. `kind`: "ERROR", "CME" or "CMS"; `code`: its number (or text)."""

    def __init__(self, command: str, kind: str, code: str | None) -> None:
        self.command, self.kind, self.code = command, kind, code
        what = kind if code is None else f"+{kind} ERROR: {code}"
        super().__init__(f"{command}: {what}")


class AtTimeout(Exception):
    """No final result in time (a modem that hangs or answers junk)."""


class ModemGone(Exception):
    """The serial device went away (unplugged, reset, powered off)."""


class AtPort:
    def __init__(self, path: str, *, baudrate: int = 115200,
                 on_urc: Callable[[str, str | None], None] | None = None) -> None:
        self.path = path
        self.baudrate = baudrate
        self.on_urc = on_urc or (lambda line, extra: None)
        self.junk_lines = 0
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None
        self._lines: asyncio.Queue[str | None] = asyncio.Queue()
        self._prompt = asyncio.Event()
        self._pump: asyncio.Task[None] | None = None
        self._lock = asyncio.Lock()
        self._pending: str | None = None  # the command in flight, whose answer lines we collect
        self.gone = False
        self._urc_head: str | None = None

    async def open(self) -> None:
        """Open the device; FileNotFoundError / OSError when it is not there."""
        try:
            self._reader, self._writer = await serial_asyncio_fast.open_serial_connection(
                url=self.path, baudrate=self.baudrate)
        except Exception as exc:  # serial.SerialException wraps the OSError
            raise ModemGone(f"{self.path}: {exc}") from None
        self.gone = False
        self._pump = asyncio.create_task(self._read_lines(), name=f"at-reader {self.path}")

    async def close(self) -> None:
        if self._pump is not None:
            self._pump.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._pump
            self._pump = None
        if self._writer is not None:
            with contextlib.suppress(Exception):
                self._writer.close()
            self._writer = None

    async def _read_lines(self) -> None:
        assert self._reader is not None
        buf = b""
        try:
            while True:
                chunk = await self._reader.read(512)
                if not chunk:
                    break
                buf += chunk
                while True:
                    if buf.lstrip(b"\r\n").startswith(b"> ") or buf.lstrip(b"\r\n") == b">":
                        buf = buf.lstrip(b"\r\n")[2:]
                        self._prompt.set()
                        continue
                    cut = buf.find(b"\r")
                    nl = buf.find(b"\n")
                    ends = [i for i in (cut, nl) if i >= 0]
                    if not ends:
                        break
                    end = min(ends)
                    raw, buf = buf[:end], buf[end + 1:]
                    self._line(raw)
        except Exception as exc:
            log.debug("modem %s read ended: %s", self.path, exc)
        self.gone = True
        self._lines.put_nowait(None)
        self._prompt.set()

    def _line(self, raw: bytes) -> None:
        try:
            line = raw.decode("ascii").strip()
        except UnicodeDecodeError:
            self.junk_lines += 1
            return
        if not line:
            return
        if self._is_urc(line):
            if line.startswith(_TWO_LINE_URCS):
                self._urc_head = line
                return
            self._urc(line, None)
            return
        head = self._urc_head
        if head is not None:
            self._urc_head = None
            self._urc(head, line)
            return
        if self._pending is None:
            self.junk_lines += 1
            return
        self._lines.put_nowait(line)

    def _urc(self, line: str, extra: str | None) -> None:
        try:
            self.on_urc(line, extra)
        except Exception:  # the line to the modem outlives a handler's bug
            log.exception("handling %r from the modem failed", line)

    def _is_urc(self, line: str) -> bool:
        if not line.startswith(_URC_PREFIXES):
            return False
        if self._pending is None:
            return True
        # "+CREG: 0,1" answers AT+CREG?; "+CREG: 1" alone is unsolicited
        name = line.split(":", 1)[0]
        return not (self._pending.upper().startswith("AT" + name) and line.count(",") >= 1)

    async def command(self, command: str, *, timeout_s: float = 5.0) -> list[str]:
        """Send `command` (no CR), return the answer's lines before OK; AtError, AtTimeout, ModemGone."""
        async with self._lock:
            return await self._exchange(command, None, timeout_s)

    async def send_with_prompt(self, command: str, data: str, *, timeout_s: float = 60.0) -> list[str]:
        """`AT+CMGS=...`, wait for `> `, then `data` + Ctrl-Z; TS 27.005 allows up to minutes for the network."""
        async with self._lock:
            return await self._exchange(command, data, timeout_s)

    async def _exchange(self, command: str, data: str | None, timeout_s: float) -> list[str]:
        if self.gone or self._writer is None:
            raise ModemGone(f"{self.path}: the modem is gone")
        while not self._lines.empty():  # leftovers of a command that timed out
            self._lines.get_nowait()
        self._prompt.clear()
        self._pending = command
        try:
            self._writer.write(command.encode("ascii") + b"\r")
            loop = asyncio.get_running_loop()
            deadline = loop.time() + timeout_s
            if data is not None:
                await self._wait_prompt(command, deadline)
                self._writer.write(data.encode("ascii") + b"\x1a")
            body: list[str] = []
            while True:
                remaining = deadline - loop.time()
                if remaining <= 0:
                    raise AtTimeout(f"{command}: no answer in {timeout_s:g} s")
                try:
                    async with asyncio.timeout(remaining):  # (not wait_for: hub/waiting.py)
                        line = await self._lines.get()
                except TimeoutError:
                    raise AtTimeout(f"{command}: no answer in {timeout_s:g} s") from None
                if line is None:
                    raise ModemGone(f"{self.path}: the modem went away during {command}")
                if line == FINAL_OK:
                    return body
                if line == "ERROR":
                    raise AtError(command, "ERROR", None)
                for kind in ("CME", "CMS"):
                    if line.startswith(f"+{kind} ERROR:"):
                        raise AtError(command, kind, line.split(":", 1)[1].strip())
                if line.upper() == command.upper() or line == command.split("=")[0]:
                    continue  # our own echo (before ATE0 took effect)
                body.append(line)
        finally:
            self._pending = None

    async def _wait_prompt(self, command: str, deadline: float) -> None:
        loop = asyncio.get_running_loop()
        while not self._prompt.is_set():
            if not self._lines.empty():
                line = self._lines.get_nowait()
                if line is None:
                    raise ModemGone(f"{self.path}: the modem went away during {command}")
                if line.startswith(("+CMS ERROR:", "+CME ERROR:", "ERROR")):
                    kind = "CMS" if line.startswith("+CMS") else "CME" if line.startswith("+CME") else "ERROR"
                    raise AtError(command, kind, line.split(":", 1)[1].strip() if ":" in line else None)
                continue
            remaining = deadline - loop.time()
            if remaining <= 0:
                raise AtTimeout(f"{command}: no '> ' prompt")
            await wait_set(self._prompt, min(remaining, 0.2))
        if self.gone:
            raise ModemGone(f"{self.path}: the modem went away during {command}")

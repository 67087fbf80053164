"""The board side of MicroPython's REPL protocol, as pyexec.c speaks it, for the fake board.

* friendly REPL (`>>> `, echo, backspace), Ctrl-A to raw mode, Ctrl-B banner, Ctrl-C, Ctrl-D
  soft reboot on an empty line; a line is compiled in "single" mode so expressions print;
* raw REPL (code to Ctrl-D, "OK", output, `\\x04`, error, `\\x04`, `>`); an empty Ctrl-D soft-reboots
  back into raw mode;
* raw-paste mode (`\\x05A\\x01` -> `R\\x01` + window size, `\\x01` per window, `\\x04` to end),
  mpremote's default.

`ReplSide` holds only the protocol's state (mode, the line, the paste window); the board that
uses it (fakeboard.FakeBoard) sends bytes, runs code, boots and reboots.
"""

from __future__ import annotations

import re

CTRL_A, CTRL_B, CTRL_C, CTRL_D, CTRL_E = 1, 2, 3, 4, 5
RAW_BANNER = b"raw REPL; CTRL-B to exit\r\n"
PASTE_WINDOW = 256  # what an ESP32 grants (MICROPY_REPL_STDIN_BUFFER_MAX)
# Bytes that mean something in each mode; everything between them is code.
_CONTROL = {"raw": re.compile(rb"[\x01-\x04]"), "paste": re.compile(rb"\x04")}


class Unplugged(Exception):
    """The cable is pulled at this very moment."""


def cook(data: bytes) -> bytes:
    """What a board's UART does to printed text: every newline goes out as CR LF."""
    return data.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")


class ReplSide:
    """Bytes from the host, read as the REPL in its current mode; the board provides the rest."""

    _mode: str  # off, friendly, raw, paste, firmware
    _line: bytearray
    _paste_left: int

    # -- what the board provides ------------------------------------------------------------
    def _send(self, data: bytes) -> None:
        raise NotImplementedError

    def _banner(self) -> bytes:
        raise NotImplementedError

    async def _exec(self, code: bytes) -> tuple[bytes | None, bytes]:
        raise NotImplementedError

    async def _soft_reboot(self, *, then_raw: bool) -> None:
        raise NotImplementedError

    async def _on_firmware_byte(self, c: int) -> None:
        raise NotImplementedError

    # -- the protocol -----------------------------------------------------------------------
    async def _feed_bytes(self, data: bytes) -> None:
        """Byte by byte, except runs of code in raw and raw-paste mode, which are taken whole."""
        i = 0
        while i < len(data):
            if self._mode in ("raw", "paste"):
                found = _CONTROL[self._mode].search(data, i)
                stop = len(data) if found is None else found.start()
                if stop > i:
                    self._take_code(data[i:stop])
                    i = stop
                    continue
            await self._feed(data[i])
            i += 1

    def _take_code(self, chunk: bytes) -> None:
        self._line += chunk
        if self._mode != "paste":
            return
        left = len(chunk)
        while left >= self._paste_left:  # one \x01 for every window of bytes taken
            left -= self._paste_left
            self._paste_left = PASTE_WINDOW
            self._send(b"\x01")
        self._paste_left -= left

    async def _feed(self, c: int) -> None:
        mode = self._mode
        if mode == "firmware":
            await self._on_firmware_byte(c)
            return
        if mode == "friendly":
            await self._feed_friendly(c)
        elif mode == "raw":
            await self._feed_raw(c)
        elif mode == "paste":
            await self._feed_paste(c)

    async def _feed_friendly(self, c: int) -> None:
        if c == CTRL_A:
            self._line.clear()
            self._mode = "raw"
            self._send(b"\r\n" + RAW_BANNER + b">")
        elif c == CTRL_B:
            self._line.clear()
            self._send(b"\r\n" + self._banner() + b">>> ")
        elif c == CTRL_C:
            self._line.clear()
            self._send(b"\r\n>>> ")
        elif c == CTRL_D:
            if not self._line:
                await self._soft_reboot(then_raw=False)
        elif c == 0x0D:
            line, self._line = bytes(self._line), bytearray()
            self._send(b"\r\n")
            if line.strip():  # the friendly REPL compiles in "single" mode: expressions print
                out, err = await self._exec(b"exec(compile(%r, '<stdin>', 'single'))" % line.decode(errors="replace"))
                if out is not None:
                    self._send(cook(out + err))
            if self._mode == "friendly":
                self._send(b">>> ")
        elif c == 0x08 or c == 0x7F:
            if self._line:
                self._line.pop()
                self._send(b"\x08 \x08")
        elif c >= 0x20 or c == 0x09:
            self._line.append(c)
            self._send(bytes([c]))

    async def _feed_raw(self, c: int) -> None:
        if c == CTRL_A:
            if bytes(self._line) == b"\x05A":
                self._line.clear()
                self._mode = "paste"
                self._paste_left = PASTE_WINDOW
                self._send(b"R\x01" + PASTE_WINDOW.to_bytes(2, "little"))
            else:
                self._line.clear()
                self._send(RAW_BANNER + b">")
        elif c == CTRL_B:
            self._line.clear()
            self._mode = "friendly"
            self._send(b"\r\n" + self._banner() + b">>> ")
        elif c == CTRL_C:
            self._line.clear()
        elif c == CTRL_D:
            self._send(b"OK")
            line, self._line = bytes(self._line), bytearray()
            if not line:
                self._send(b"\r\n")
                await self._soft_reboot(then_raw=True)
                return
            await self._exec_raw(line)
        else:
            self._line.append(c)

    async def _feed_paste(self, c: int) -> None:
        if c == CTRL_D:
            self._send(b"\x04")
            line, self._line = bytes(self._line), bytearray()
            self._mode = "raw"
            await self._exec_raw(line)
            return
        self._line.append(c)
        self._paste_left -= 1
        if self._paste_left == 0:
            self._paste_left = PASTE_WINDOW
            self._send(b"\x01")

    async def _exec_raw(self, code: bytes) -> None:
        out, err = await self._exec(code)
        if out is None:  # the code reset the board
            return
        self._send(cook(out) + b"\x04" + cook(err) + b"\x04>")

"""An emulated cellular modem on a pseudo-terminal, speaking AT commands (3GPP TS 27.007 / 27.005).

Whoever opens `link` (a symlink to the pty's slave, like /dev/serial/by-id/...) talks to it as
to a USB modem: echo on until `ATE0`, `OK` / `ERROR` / `+CME ERROR:` / `+CMS ERROR:` (numeric
after `AT+CMEE=1`, verbose after `=2`), the SMS prompt `> ` ended by Ctrl-Z (or cancelled by
ESC), unsolicited `+CREG:` and `+CMT:` / `+CMTI:` lines. The subset:

    AT ATE0/1 ATZ ATI AT+CGMI AT+CGMM AT+CGMR AT+CGSN AT+CIMI AT+CMEE AT+CFUN AT+CPIN? AT+CREG
    AT+CSQ AT+COPS AT+CMGF AT+CSCS AT+CSCA? AT+CSMP AT+CNMI AT+CPMS AT+CMGS AT+CMGL AT+CMGR
    AT+CMGD AT+CLIP AT+CRC AT+CVHU

Faults, set from outside: `sim = False` (no SIM), `registration` (0-5 as +CREG reports), the
network's coverage, `rssi`, `junk` (answers garbage), `refuse_sms` (a +CMS ERROR code for the
next sends), `unplug()` / `plug()` (the device vanishes; a new pty appears behind the link).
Timings scale with `time_scale` (1.0: as measured on common USB modems, a send 1-3 s).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import random
import tty
from pathlib import Path

from safebox.protocol import smspdu

from . import commands
from .network import SMSC, CellularNetwork

log = logging.getLogger("safebox.sim.modem")

CTRL_Z, ESC = 0x1A, 0x1B


class ModemEmulator:
    def __init__(self, network: CellularNetwork, number: str, link: str | Path, *, time_scale: float = 1.0,
                 send_s: tuple[float, float] = (1.0, 3.0), rng: random.Random | None = None,
                 imei: str = "866123045678901", model: str = "EC25") -> None:
        self.network = network
        self.number = number
        self.link = Path(link)
        self.time_scale = time_scale
        self.send_s = send_s
        self.imei, self.model = imei, model
        self.rng = rng or random.Random()
        self.sim = True
        self.registration_override: int | None = None
        self.rssi = 22
        self.junk = False
        self.refuse_sms: int | None = None
        self.sent: list[tuple[int, str, str | bytes]] = []  # (mr, number, text)
        self.stored: list[dict] = []  # received SMS kept on the "SIM" (+CMTI / AT+CMGL)
        self.cmd = commands.Settings()
        self._master: int | None = None
        self._slave: int | None = None
        self._buf = bytearray()
        self._prompt: commands.Prompt | None = None
        self._busy: asyncio.Task[None] | None = None
        self._queue: list[bytes] = []
        self._mr = 0
        self._last_creg = self.registration()
        network.attach(number, self)
        network.watch(self._coverage_changed)

    # -- the device appearing and vanishing ------------------------------------------------

    def plug(self) -> None:
        master, slave = os.openpty()
        tty.setraw(slave)
        os.set_blocking(master, False)
        self._master, self._slave = master, slave
        self._buf.clear()
        self._prompt = None
        self.cmd = commands.Settings()
        tmp = self.link.with_name(self.link.name + ".new")
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        tmp.symlink_to(os.ttyname(slave))
        os.replace(tmp, self.link)
        asyncio.get_running_loop().add_reader(master, self._readable)
        log.info("modem %s plugged in at %s -> %s", self.number, self.link, os.ttyname(slave))

    def unplug(self) -> None:
        if self._master is None:
            return
        asyncio.get_running_loop().remove_reader(self._master)
        if self._busy is not None:
            self._busy.cancel()
        os.close(self._master)
        os.close(self._slave)  # the reader's end now gets EIO, as a vanished USB device gives
        self._master = self._slave = None
        with contextlib.suppress(FileNotFoundError):
            self.link.unlink()
        log.info("modem %s unplugged", self.number)

    @property
    def plugged(self) -> bool:
        return self._master is not None

    def close(self) -> None:
        self.unplug()

    # -- state ---------------------------------------------------------------------------------

    def registration(self) -> int:
        """+CREG <stat>: 0 not searching, 1 home, 2 searching, 3 denied, 5 roaming."""
        if not self.sim:
            return 0
        if self.registration_override is not None:
            return self.registration_override
        return 1 if self.network.coverage else 2

    def registered(self) -> bool:
        return self.registration() in (1, 5)

    def _coverage_changed(self) -> None:
        self.note_registration()

    def note_registration(self) -> None:
        stat = self.registration()
        if stat != self._last_creg:
            self._last_creg = stat
            if self.cmd.creg >= 1:
                self.urc(f"+CREG: {stat}")

    def next_mr(self) -> int:
        self._mr = (self._mr + 1) % 256
        return self._mr

    # -- bytes in and out ----------------------------------------------------------------------

    def write(self, text: str | bytes) -> None:
        if self._master is None:
            return
        data = text.encode() if isinstance(text, str) else text
        if self.junk:
            data = bytes(self.rng.randrange(256) for _ in range(len(data)))
        with contextlib.suppress(BlockingIOError, OSError):
            os.write(self._master, data)

    def urc(self, line: str) -> None:
        """An unsolicited result code; held back while a command is being answered."""
        if self._busy is not None and not self._busy.done():
            self._queue.append(f"\r\n{line}\r\n".encode())
        else:
            self.write(f"\r\n{line}\r\n")

    def final(self, body: list[str], result: str) -> None:
        out = "".join(f"\r\n{line}" for line in body)
        if body:
            out += "\r\n"
        self.write(out + f"\r\n{result}\r\n")

    def _readable(self) -> None:
        try:
            data = os.read(self._master, 4096)
        except (BlockingIOError, OSError):
            return
        for byte in data:
            self._byte(byte)

    def _byte(self, byte: int) -> None:
        if self._prompt is not None:
            if byte == CTRL_Z:
                prompt, self._prompt = self._prompt, None
                if self.cmd.echo:
                    self.write(bytes(self._buf) + b"\x1a")
                payload = bytes(self._buf).decode("latin-1")
                self._buf.clear()
                self._start(commands.finish_send(self, prompt, payload))
            elif byte == ESC:
                self._prompt = None
                self._buf.clear()
                self.final([], "OK")  # TS 27.005 3.5.1: ESC quits without sending
            else:
                self._buf.append(byte)
            return
        if byte in (0x0D,):
            line = bytes(self._buf).decode("latin-1").strip()
            self._buf.clear()
            if self.cmd.echo:
                self.write(line + "\r")
            if line and not (self._busy is not None and not self._busy.done()):
                self._start(commands.run_line(self, line))
        elif byte == 0x0A:
            return
        elif byte in (0x08, 0x7F):
            del self._buf[-1:]
        else:
            self._buf.append(byte)

    def _start(self, coro: object) -> None:
        self._busy = asyncio.get_running_loop().create_task(self._answer(coro))

    async def _answer(self, coro: object) -> None:
        try:
            await coro  # type: ignore[misc]
        finally:
            queued, self._queue = self._queue, []
            for data in queued:
                self.write(data)

    def prompt(self, prompt: commands.Prompt) -> None:
        self._prompt = prompt
        self._buf.clear()
        self.write("\r\n> ")

    async def pause(self, seconds: float) -> None:
        await asyncio.sleep(seconds * self.time_scale)

    # -- the network's side ----------------------------------------------------------------

    def deliver(self, sender: str, text: str | bytes, sent_at: float) -> None:
        """An SMS for this number: shown at once (+CMT) or stored (+CMTI), per AT+CNMI."""
        if not self.plugged or not self.registered():
            self.stored.append({"sender": sender, "text": text, "sent_at": sent_at, "read": False})
            return
        hex_pdu, length = smspdu.encode_deliver(smspdu.Deliver(sender, text, sent_at), smsc=SMSC, tz_quarters=32)
        if self.cmd.cnmi_mt == 2:
            if self.cmd.pdu_mode:
                self.urc(f"+CMT: ,{length}\r\n{hex_pdu}")
            else:
                self.urc(f'+CMT: "{sender}",,"{commands.scts_text(sent_at)}"\r\n{commands.show(self, text)}')
            return
        self.stored.append({"sender": sender, "text": text, "sent_at": sent_at, "read": False})
        if self.cmd.cnmi_mt == 1:
            self.urc(f'+CMTI: "SM",{len(self.stored)}')

"""The modem as the hub sees it: opened, set up, supervised, and asked to send one SMS.

Its health is one state, judged in this order: `absent` (no device at the port), `not_responding`
(the device answers nothing or garbage), `no_sim`, `denied`, `searching`, then `registered` or
`roaming`; beside it the signal (AT+CSQ rssi 0-31, None when unknown) and whether it is weak,
and the last SMS refusal. `Modem.check()` re-reads it; anything raised means "reopen".
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass

from safebox.protocol import smspdu

from .at import AtError, AtPort, AtTimeout, ModemGone

log = logging.getLogger("safebox.hub.cellular")

REGISTRATION = {0: "searching", 1: "registered", 2: "searching", 3: "denied", 4: "searching", 5: "roaming"}
SEND_TIMEOUT_S = 60.0


@dataclass
class ModemHealth:
    state: str = "absent"
    signal: int | None = None  # AT+CSQ rssi, 0-31 (-113 .. -51 dBm)
    weak: bool = False
    model: str | None = None
    last_sms_error: str | None = None
    last_sms_error_at: float | None = None
    last_sent_at: float | None = None
    sent: int = 0
    opens: int = 0  # times the port was opened and the modem set up (1 + each time it came back)

    @property
    def can_send(self) -> bool:
        return self.state in ("registered", "roaming")

    def problem(self) -> str | None:
        """What the keeper must hear about, or None when the modem is ready to carry an SMS."""
        if not self.can_send:
            return {"absent": "no modem at the port", "not_responding": "the modem does not answer",
                    "no_sim": "no SIM card", "denied": "the network refuses the SIM",
                    "searching": "the modem is not registered on a network"}.get(self.state, self.state)
        if self.last_sms_error:
            return f"SMS refused ({self.last_sms_error})"
        if self.weak:
            return f"weak signal (rssi {self.signal})"
        return None

    def as_dict(self) -> dict:
        return {**asdict(self), "problem": self.problem()}


class SmsRefused(Exception):
    """The modem or network refused the SMS (+CMS ERROR); worth another try later."""


class Modem:
    def __init__(self, port: str, *, baudrate: int = 115200, weak_below: int = 10,
                 on_sms: Callable[[str, str | bytes], None] | None = None,
                 clock: Callable[[], float] = time.time) -> None:
        self.port = port
        self.baudrate = baudrate
        self.health = ModemHealth()
        self._weak_below = weak_below
        self._on_sms = on_sms
        self._clock = clock
        self._at: AtPort | None = None

    @property
    def open(self) -> bool:
        return self._at is not None and not self._at.gone

    async def start(self) -> None:
        """Open the port and set the modem up; ModemGone / AtTimeout / AtError when it cannot be."""
        await self.stop()
        at = AtPort(self.port, baudrate=self.baudrate, on_urc=self._urc)
        await at.open()
        self._at = at
        try:
            for _ in range(3):  # a modem just plugged in may drop the first command
                with contextlib.suppress(AtTimeout, AtError):
                    await at.command("AT", timeout_s=2.0)
                    break
            else:
                raise AtTimeout(f"{self.port}: no answer to AT")
            await at.command("ATE0")
            await at.command("AT+CMEE=1")
            with contextlib.suppress(AtError):
                self.health.model = " ".join((await at.command("AT+CGMM")) or []) or None
            self.health.opens += 1
        except BaseException:
            await self.stop()
            raise

    async def stop(self) -> None:
        if self._at is not None:
            await self._at.close()
            self._at = None

    async def check(self) -> ModemHealth:
        """Re-read SIM, registration and signal; sets up SMS (PDU mode, +CMT shown) when it can."""
        at = self._require()
        try:
            pin = " ".join(await at.command("AT+CPIN?"))
        except AtError as exc:
            if exc.code in ("10", "13", "SIM not inserted", "SIM failure"):
                self.health.state, self.health.signal = "no_sim", None
                return self.health
            raise
        if "READY" not in pin:
            self.health.state = "no_sim"
            return self.health
        creg = _field(await at.command("AT+CREG?"), "+CREG:")
        stat = int(creg.split(",")[-1]) if creg and creg.split(",")[-1].strip().isdigit() else 0
        self.health.state = REGISTRATION.get(stat, "searching")
        csq = _field(await at.command("AT+CSQ"), "+CSQ:")
        rssi = int(csq.split(",")[0]) if csq and csq.split(",")[0].strip().isdigit() else 99
        self.health.signal = None if rssi == 99 else rssi
        self.health.weak = self.health.signal is not None and self.health.signal < self._weak_below
        if self.health.can_send:
            await at.command("AT+CMGF=0")
            with contextlib.suppress(AtError):
                await at.command("AT+CNMI=2,2,0,0,0")
        return self.health

    async def send(self, number: str, text: str) -> int:
        """Send one SMS in PDU mode; its message reference. SmsRefused, ModemGone, AtTimeout."""
        at = self._require()
        hex_pdu, length = smspdu.encode_submit(smspdu.Submit(number, text))
        try:
            lines = await at.send_with_prompt(f"AT+CMGS={length}", hex_pdu, timeout_s=SEND_TIMEOUT_S)
        except AtError as exc:
            self.health.last_sms_error = str(exc)
            self.health.last_sms_error_at = self._clock()
            raise SmsRefused(str(exc)) from None
        ref = _field(lines, "+CMGS:")
        self.health.last_sent_at = self._clock()
        self.health.sent += 1
        self.health.last_sms_error = None
        return int(ref) if ref and ref.strip().isdigit() else -1

    async def stored(self) -> list[tuple[int, str, str | bytes]]:
        """SMS kept in the modem's storage (those that came before `AT+CNMI` or while no one read):
        (index, sender, text), read with `AT+CMGL=4` in PDU mode; unreadable ones are skipped."""
        lines = await self._require().command("AT+CMGL=4", timeout_s=20.0)
        out = []
        for head, pdu in zip(lines, lines[1:]):
            if not head.startswith("+CMGL:"):
                continue
            index = head[6:].split(",")[0].strip()
            try:
                msg = smspdu.decode_deliver(pdu)
            except smspdu.PduError as exc:
                log.warning("stored SMS %s unreadable: %s", index, exc)
                continue
            if index.isdigit():
                out.append((int(index), msg.sender, msg.text))
        return out

    async def delete(self, index: int) -> None:
        await self._require().command(f"AT+CMGD={index}")

    def _require(self) -> AtPort:
        if self._at is None or self._at.gone:
            raise ModemGone(f"{self.port}: not open")
        return self._at

    def _urc(self, line: str, extra: str | None) -> None:
        if line.startswith("+CREG:"):
            stat = line.split(":", 1)[1].strip().split(",")[0]
            if stat.isdigit():
                self.health.state = REGISTRATION.get(int(stat), "searching") if self.health.state not in (
                    "no_sim", "absent") else self.health.state
        elif line.startswith("+CMT:") and extra and self._on_sms is not None:
            try:
                msg = smspdu.decode_deliver(extra)
            except smspdu.PduError as exc:
                log.warning("unreadable SMS from the modem: %s", exc)
                return
            self._on_sms(msg.sender, msg.text)


def _field(lines: list[str], prefix: str) -> str | None:
    for line in lines:
        if line.startswith(prefix):
            return line[len(prefix):].strip()
    return None

"""The platform's own modem as the SMS way in (SPEC 5.2), instead of a gateway's callback.

`safebox-receiver sms-modem --db DB --port /dev/ttyUSB2` opens the modem with the hub's own AT
layer (hub/cellular/modem.py: PDU mode, `+CMT:` shown at once by `AT+CNMI=2,2`), and hands each
SMS it receives to `SmsInbox.take`, the same checks and store as `POST /v1/sms`; SMS the modem
kept while no one listened (`AT+CMGL=4`) are taken at every check, then deleted. A modem that
goes away is opened again; its state is logged once per change.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable

from safebox.hub.cellular.at import AtError, AtTimeout, ModemGone
from safebox.hub.cellular.modem import Modem

from .sms_inbound import SmsInbox, Taken
from .store import StoreError

log = logging.getLogger("safebox.receiver.sms")

CHECK_S = 30.0
REOPEN_S = 2.0


class ModemInbox:
    def __init__(self, inbox: SmsInbox, port: str, *, check_s: float = CHECK_S, reopen_s: float = REOPEN_S,
                 clock: Callable[[], float] = time.time) -> None:
        self._inbox = inbox
        self.modem = Modem(port, on_sms=self._shown, clock=clock)
        self._check_s, self._reopen_s = check_s, reopen_s
        self.taken: list[Taken] = []
        self._state = ""

    def _shown(self, sender: str, text: str | bytes) -> None:
        self._received(sender, text)  # +CMT: the modem keeps no copy, whatever the outcome

    def _received(self, sender: str, text: str | bytes) -> bool:
        """Judge and store one SMS; False when the platform could not store it (keep it on the modem)."""
        if isinstance(text, bytes):
            log.warning("8-bit SMS from %s set aside: SB1 messages are text", sender)
            return True
        try:
            self.taken.append(self._inbox.take(sender, text))
            return True
        except StoreError as exc:  # shown once (+CMT): nothing else holds it, so say so loudly
            log.error("SMS from %s NOT stored: %s: %r", sender, exc, text)
            return False

    async def _stored(self) -> None:
        """SMS the modem kept while no one listened: taken, then deleted from the modem."""
        for index, sender, text in await self.modem.stored():
            if self._received(sender, text):
                await self.modem.delete(index)

    async def run(self) -> None:
        """Until cancelled."""
        try:
            while True:
                try:
                    if not self.modem.open:
                        await self.modem.start()
                    await self.modem.check()
                    if self.modem.health.can_send:
                        await self._stored()
                except ModemGone:
                    self.modem.health.state = "absent"
                    await self.modem.stop()
                except (AtTimeout, AtError) as exc:
                    log.debug("platform modem: %s", exc)
                    self.modem.health.state = "not_responding"
                    await self.modem.stop()
                if self.modem.health.state != self._state:
                    self._state = self.modem.health.state
                    (log.info if self.modem.health.can_send else log.warning)(
                        "platform modem at %s: %s", self.modem.port, self._state)
                await asyncio.sleep(self._check_s if self.modem.open else self._reopen_s)
        finally:
            await self.modem.stop()

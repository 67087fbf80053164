"""The hub's cellular path: when an urgent event waits because the platform is unreachable,
send it by SMS (SPEC 5), and keep the keeper told about the modem.

Its whole interface to the rest of the hub is what it is given:

* `waiting()` -> the urgent events still in the outbox (objects with `event_id`, `body`,
  `created_at`): it only reads them; the outbox stays the uplink's, and an event sent by SMS
  still goes over HTTPS when the line heals (the platform answers it `duplicate`);
* `platform_reachable()` -> True, False (the last request got no HTTP answer) or None (not
  yet tried): only False sends anything, so an event the platform refused never goes by SMS;
* `on_change()`: called when the modem's health changes (the hub rewrites its status).

`health()` and `status_line()` are what `status` and the heartbeat show. Each episode of
trouble (no modem, no SIM, not registered, weak signal, SMS refused) is logged once when it
begins and once when it ends; a modem that vanishes is looked for again every `check_s`.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any, Protocol

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from safebox.protocol import events, sms
from safebox.hub.waiting import wait_set

from .at import AtError, AtTimeout, ModemGone
from .config import CellularConfig
from .modem import Modem, SmsRefused
from .record import SmsRecord

log = logging.getLogger("safebox.hub.cellular")

CHECK_S = 2.0       # how often the outbox is looked at and a missing modem looked for
SUPERVISE_S = 30.0  # how often SIM, registration and signal are read again
RETRY_S = 20.0      # a refused SMS is tried again after this
# An SMS the network took may still be lost on the way, and the hub asks for no delivery report:
# while the event waits and the platform stays unreachable, its SB1 message goes again after
# RESEND_S, PLATFORM_SENDS times at most (the platform keeps one event and refuses the copies as
# replayed). The contacts' message goes once: people would get it twice.
RESEND_S = 120.0
PLATFORM_SENDS = 3


class Waiting(Protocol):
    event_id: str
    body: bytes
    created_at: float


def due(waiting: Iterable[Waiting], *, now: float, after_s: float, platform_reachable: bool | None) -> list[Waiting]:
    """The policy: urgent events that have waited `after_s` while the platform is unreachable."""
    if platform_reachable is not False:
        return []
    return [item for item in waiting if now - item.created_at >= after_s]


class CellularPath:
    def __init__(self, cfg: CellularConfig, *, waiting: Callable[[], Iterable[Waiting]],
                 platform_reachable: Callable[[], bool | None], private_key: Ed25519PrivateKey,
                 state_dir: Path, on_change: Callable[[], None] | None = None,
                 clock: Callable[[], float] = time.time, check_s: float = CHECK_S,
                 supervise_s: float = SUPERVISE_S, retry_s: float = RETRY_S, resend_s: float = RESEND_S) -> None:
        self.cfg = cfg
        self._waiting = waiting
        self._reachable = platform_reachable
        self._key = private_key
        self._on_change = on_change or (lambda: None)
        self._clock = clock
        self._check_s, self._supervise_s, self._retry_s, self._resend_s = check_s, supervise_s, retry_s, resend_s
        self.modem = Modem(cfg.port, baudrate=cfg.baudrate, weak_below=cfg.weak_below, clock=clock)
        self.record = SmsRecord(state_dir / "cellular.db", clock=clock)
        self._problem: str | None = "not started"
        self._wake = asyncio.Event()

    # -- what status and the heartbeat show ----------------------------------------------------

    def health(self) -> dict[str, Any]:
        return {"port": self.cfg.port, **self.modem.health.as_dict(), "sms": self.record.counts()}

    def status_line(self) -> str:
        h = self.modem.health
        signal = f", signal {h.signal}" if h.signal is not None else ""
        return f"modem {h.state}{signal}" + (f" ({h.problem()})" if h.problem() and h.can_send else "")

    def poke(self) -> None:
        """Look at the outbox now (the hub calls it when an event arrives or the platform changes)."""
        self._wake.set()

    # -- the loop ------------------------------------------------------------------------------

    async def run(self) -> None:
        """Until cancelled; never raises for modem trouble (it is shown and logged instead)."""
        checked_at = -float("inf")
        try:
            while True:
                now = time.monotonic()
                if not self.modem.open:
                    await self._open()
                    checked_at = -float("inf")
                if self.modem.open and now - checked_at >= self._supervise_s:
                    await self._guard(self.modem.check())
                    checked_at = now
                self._judge()
                if self.modem.open and self.modem.health.can_send:
                    await self._send_due()
                await wait_set(self._wake, self._check_s)
                self._wake.clear()
        finally:
            await self.modem.stop()
            self.record.close()

    async def _open(self) -> None:
        try:
            await self.modem.start()
        except ModemGone:
            self.modem.health.state = "absent"
        except (AtTimeout, AtError, OSError):
            self.modem.health.state = "not_responding"
        else:
            log.info("modem at %s answers (%s)", self.cfg.port, self.modem.health.model or "model unknown")

    async def _guard(self, coro: Any) -> Any:
        """Run one exchange with the modem; trouble closes it (reopened on the next round)."""
        try:
            return await coro
        except ModemGone:
            self.modem.health.state = "absent"
        except (AtTimeout, AtError) as exc:
            log.debug("modem exchange failed: %s", exc)
            self.modem.health.state = "not_responding"
        await self.modem.stop()
        return None

    def _judge(self) -> None:
        problem = self.modem.health.problem()
        if problem == self._problem:
            return
        if problem is not None:
            log.warning("cellular path: %s (%s); urgent events cannot go by SMS", problem, self.cfg.port)
        elif self._problem is not None and self._problem != "not started":
            log.info("cellular path ready again: %s", self.status_line())
        self._problem = problem
        self._on_change()

    async def _send_due(self) -> None:
        now = self._clock()
        try:
            waiting = list(self._waiting())
        except Exception as exc:  # the outbox cannot be read now; the next round tries again
            log.warning("cellular path cannot read the outbox: %s", exc)
            return
        for item in due(waiting, now=now, after_s=self.cfg.after_s, platform_reachable=self._reachable()):
            body = events.decode(bytes(item.body))
            targets = [(self.cfg.platform_number, "platform")] + [(n, "contact") for n in self.cfg.contacts]
            for number, purpose in targets:
                if not self._worth_sending(item.event_id, number, purpose, now):
                    continue
                if purpose == "platform":
                    text = sms.compose(body, self._key)
                else:
                    text = sms.contact_text(body, self.cfg.who, utc_offset_s=round(self.cfg.utc_offset_h * 3600))
                if not await self._send_one(item.event_id, number, purpose, text):
                    return  # the modem is gone or refusing: the next round tries again

    def _worth_sending(self, event_id: str, number: str, purpose: str, now: float) -> bool:
        last = self.record.last(event_id, number)
        if last is None:
            return True
        if last.state == "failed":
            return now - last.at >= self._retry_s and (purpose == "platform" or last.sends == 0)
        return purpose == "platform" and last.sends < PLATFORM_SENDS and now - last.at >= self._resend_s

    async def _send_one(self, event_id: str, number: str, purpose: str, text: str) -> bool:
        try:
            reference = await self.modem.send(number, text)
        except SmsRefused as exc:
            self.record.mark_failed(event_id, number, purpose, str(exc))
            self._judge()  # "SMS refused" is an episode of its own, logged once
            return False
        except (ModemGone, AtTimeout, AtError) as exc:
            self.record.mark_failed(event_id, number, purpose, str(exc))
            await self._guard(_raise(exc))
            return False
        self.record.mark_sent(event_id, number, purpose, reference)
        self._judge()
        log.warning("%s sent by SMS to the %s (%s, reference %d): the platform is unreachable",
                    event_id, purpose, number, reference)
        self._on_change()
        return True


async def _raise(exc: BaseException) -> None:
    raise exc

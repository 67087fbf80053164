"""The home's two ways out in a scenario: its broadband router, and a cellular modem.

* `HomeRouter`: the hub's HTTPS goes through it (a TCP relay on 127.0.0.1) to the platform;
  `down()` is a broadband outage (connections refused, those open cut), while the platform
  itself stays up for everyone else, its SMS gateway included.
* `CellularHome`: a fake cellular network (tools/sim/modem/network.py), the hub's emulated
  modem on a pty, an SMS gateway posting to the platform's `POST /v1/sms` and the contacts'
  phones. The hub is given the modem as a Pi owner gives it one: a `[cellular]` table in its
  config (`table()`); the hub's own wiring runs its SMS path.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import ssl
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from safebox.tools.sim.modem.emulator import ModemEmulator
from safebox.tools.sim.modem.gateway import HttpGateway
from safebox.tools.sim.modem.network import CellularNetwork, Phone

log = logging.getLogger("safebox.sim.cellular_home")

HUB_SIM = "+8613800138000"
PLATFORM_NUMBER = "+8610690000"
SMS_TOKEN = "scenario-gateway-token-0001"


class HomeRouter:
    def __init__(self, target_port: Callable[[], int]) -> None:
        self._target = target_port
        self.port = 0
        self._server: asyncio.AbstractServer | None = None
        self._pipes: set[asyncio.StreamWriter] = set()

    @property
    def up_now(self) -> bool:
        return self._server is not None

    async def up(self) -> None:
        if self._server is None:
            self._server = await asyncio.start_server(self._relay, "127.0.0.1", self.port)
            self.port = self._server.sockets[0].getsockname()[1]

    async def down(self) -> None:
        server, self._server = self._server, None
        if server is not None:
            server.close()
            for writer in list(self._pipes):
                writer.close()
            self._pipes.clear()
            with contextlib.suppress(Exception):
                await server.wait_closed()

    async def _relay(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self._target())
        except OSError:
            writer.close()
            return
        self._pipes.update((writer, up_writer))

        async def pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
            try:
                while data := await src.read(65536):
                    dst.write(data)
                    await dst.drain()
            except (OSError, ConnectionError):
                pass
            finally:
                dst.close()

        await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer), return_exceptions=True)
        self._pipes.difference_update((writer, up_writer))


@dataclass(frozen=True)
class ModemSettings:
    """`[home.modem]` of a scenario."""

    after_s: float = 60.0
    sms_delay_s: tuple[float, float] = (3.0, 10.0)
    loss: float = 0.0
    contacts: tuple[str, ...] = ("+8613900139000",)
    who: str = "王秀英（幸福里3号）"


@dataclass
class CellularHome:
    settings: ModemSettings
    workdir: Path
    now: Callable[[], float]
    seed: int | None = None
    phones: dict[str, Phone] = field(default_factory=dict)

    def __post_init__(self) -> None:
        rng = random.Random(f"{self.seed}/cellular") if self.seed is not None else random.Random()
        self.network = CellularNetwork(delay_s=self.settings.sms_delay_s, loss=self.settings.loss, rng=rng,
                                       clock=self.now)
        (self.workdir / "modem").mkdir(parents=True, exist_ok=True)
        self.modem = ModemEmulator(self.network, HUB_SIM, self.workdir / "modem" / "ttyModem", rng=rng)
        for number in self.settings.contacts:
            self.phones[number] = self.network.phone(number)
        self.gateway: HttpGateway | None = None

    def start(self, platform_url: str, ca_file: Path) -> None:
        self.gateway = HttpGateway(platform_url + "/v1/sms", SMS_TOKEN,
                                   ssl_context=ssl.create_default_context(cafile=str(ca_file)))
        self.network.attach(PLATFORM_NUMBER, self.gateway)
        self.modem.plug()

    def table(self) -> dict[str, Any]:
        """The hub config's `[cellular]` table for this home's modem (hub/cellular/config.py)."""
        return {"port": str(self.modem.link), "platform_number": PLATFORM_NUMBER, "after_s": self.settings.after_s,
                "contacts": list(self.settings.contacts), "who": self.settings.who}

    async def close(self) -> None:
        self.modem.close()
        await self.network.close()
        if self.gateway is not None:
            await self.gateway.close()

    def report(self, start: float, modem_health: dict[str, Any] | None) -> dict[str, Any]:
        """What went over the cellular network, times relative to 0s, and the hub's view of its modem."""
        def rel(t: float | None) -> float | None:
            return None if t is None else round(t - start, 3)
        return {
            "sms": [{"to": c.dest, "submitted_s": rel(c.submitted_at), "delivered_s": rel(c.delivered_at),
                     "lost": c.lost, "text": c.text if isinstance(c.text, str) else c.text.hex()}
                    for c in self.network.log],
            "modem": modem_health,
        }

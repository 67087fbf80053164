"""Broadband lost with the modem present: the chaos run's cellular fault (`--faults ...,broadband`).

With this injector the home gets what a hub with a USB modem has (hub/cellular): an emulated
modem on a pty (tools/sim/modem) named in the hub's `[cellular]` table, a fake cellular
network, and the platform's SMS gateway callback (`POST /v1/sms`, a bearer token) with the
hub's SIM number known to it. The fault: the hub's HTTPS is refused at the proxy for a while,
as when the home's broadband goes down, while the platform stays up for the gateway. An urgent
event that waits the hub's `after_s` (here the least its config allows, so that short outages
already send) goes by SMS; when the line heals the hub still relays it over HTTPS and the
platform answers `duplicate`. The counts (0 lost, 0 stored twice, the right content) are made
over both channels; the run's notes say how many SMS went and how events were stored.
"""

from __future__ import annotations

import asyncio
import random
import secrets
import ssl
import time
from pathlib import Path
from typing import Any

from safebox.tools.chaos.proxy import FaultProxy
from safebox.tools.chaos.records import Fault, Result
from safebox.tools.sim import snapshot
from safebox.tools.sim.modem.emulator import ModemEmulator
from safebox.tools.sim.modem.gateway import HttpGateway
from safebox.tools.sim.modem.network import CellularNetwork

AFTER_S = 5  # the hub's cellular.after_s: the least hub/cellular/config.py accepts
HUB_SIM = "+8613800138000"
PLATFORM_NUMBER = "+8610690000"
OUTAGE_S = (8.0, 25.0)


class ChaosModem:
    """The home's modem, the cellular network and the platform's gateway, for one run."""

    def __init__(self, workdir: Path, rng: random.Random) -> None:
        self.network = CellularNetwork(delay_s=(2.0, 6.0), rng=rng)
        (workdir / "modem").mkdir(parents=True, exist_ok=True)
        self.modem = ModemEmulator(self.network, HUB_SIM, workdir / "modem" / "ttyModem", rng=rng)
        self.token_file = workdir / "sms-gateway-token"
        self.token_file.write_text(secrets.token_urlsafe(24))
        self.token_file.chmod(0o600)
        self.gateway: HttpGateway | None = None
        self.modem.plug()  # before the hub starts: it finds its modem at once

    def receiver_args(self) -> tuple[str, ...]:
        return ("--sms-token-file", str(self.token_file))

    def hub_table(self) -> dict[str, Any]:
        """The hub's `[cellular]` table."""
        return {"port": str(self.modem.link), "platform_number": PLATFORM_NUMBER, "after_s": AFTER_S}

    async def attach(self, home: Any) -> None:
        """Once the platform is up: it learns the hub's number, and the gateway posts to it
        (wherever it is: a receiver restarted by another fault listens on a new port)."""
        await home.add_sms_number(HUB_SIM)
        self.gateway = HttpGateway(lambda: home.platform_url + "/v1/sms", self.token_file.read_text(),
                                   ssl_context=ssl.create_default_context(cafile=str(home.ca_file)))
        self.network.attach(PLATFORM_NUMBER, self.gateway)

    def sms_to_platform(self) -> int:
        return sum(1 for c in self.network.log if c.dest == PLATFORM_NUMBER)

    async def close(self) -> None:
        self.modem.close()
        await self.network.close()
        if self.gateway is not None:
            await self.gateway.close()


class Broadband:
    """The injector (a part of ChaosRun, beside Injectors)."""

    proxy: FaultProxy | None
    modem: ChaosModem | None
    home: Any

    async def broadband_faults(self, rng: random.Random) -> None:
        assert self.proxy is not None and self.modem is not None
        while await self._gap(rng, 25.0):  # type: ignore[attr-defined]
            hold = rng.uniform(*OUTAGE_S)
            fault: Fault = self._record("broadband lost, modem present", f"for {hold:.1f} s")  # type: ignore[attr-defined]
            sent = self.modem.sms_to_platform()
            await self.proxy.set_mode("refuse")
            try:
                await asyncio.sleep(hold)
            finally:
                await self.proxy.set_mode("pass")
                fault.end = time.time()
            fault.detail += f": {self.modem.sms_to_platform() - sent} SMS to the platform"

    def count_channels(self, result: Result) -> None:
        """What went by SMS, and how the platform stored the events (by channel), into `result`."""
        assert self.modem is not None
        result.sms_to_platform = self.modem.sms_to_platform()
        result.channels = snapshot.platform_channels(Path(self.home.receiver_db))
        by = ", ".join(f"{n:,} {c}" for c, n in sorted(result.channels.items()))
        result.notes.append(f"cellular: {result.sms_to_platform} SMS sent to the platform while broadband was down "
                            f"(hub cellular.after_s = {AFTER_S} s); events stored by channel: {by}.")

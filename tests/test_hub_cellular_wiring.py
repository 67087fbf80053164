"""The cellular path wired into the hub: the [cellular] config table, the real Hub sending an
emergency by SMS when its platform is unreachable, and what status, the status file and the
heartbeat say of the modem."""

from __future__ import annotations

import asyncio
import dataclasses
import random
from pathlib import Path

import pytest

from safebox.hub import config as hub_config
from safebox.hub.cellular import CellularConfig
from safebox.hub import cli
from safebox.hub.cli import status_doc
from safebox.protocol import sms
from safebox.tools.sim import hub_toml
from safebox.tools.sim.modem.emulator import ModemEmulator
from safebox.tools.sim.modem.network import CellularNetwork

from .hub_world import HUB_ID, HubWorld

PLATFORM = "+8610690000"
BASE = {"hub_id": "hub-0001", "home_id": "home-0001", "state_dir": "state",
        "platform": {"url": "https://platform.example"}}


def test_cellular_table_is_read_and_checked_naming_the_field(tmp_path: Path) -> None:
    cfg = hub_config.parse({**BASE, "cellular": {"port": "/dev/ttyUSB2", "platform_number": PLATFORM,
                                                 "contacts": ["+8613900139000"], "who": "王秀英"}},
                           base_dir=tmp_path)
    assert cfg.cellular == CellularConfig("/dev/ttyUSB2", PLATFORM, 60.0, ("+8613900139000",), "王秀英")
    assert hub_config.parse(BASE, base_dir=tmp_path).cellular is None
    for table, message in [({"port": "/dev/ttyUSB2"}, "cellular.platform_number: required"),
                           ({"port": "/dev/ttyUSB2", "platform_number": PLATFORM, "after_s": 1}, "cellular.after_s"),
                           ({"port": "/dev/ttyUSB2", "platform_number": PLATFORM, "pin": "1234"},
                            "cellular.pin: unknown key")]:
        with pytest.raises(hub_config.ConfigError, match=message):
            hub_config.parse({**BASE, "cellular": table}, base_dir=tmp_path)
    with pytest.raises(hub_config.ConfigError, match="too long for one SMS"):
        hub_config.parse({**BASE, "hub_id": "hub-" + "x" * 20, "home_id": "home-" + "y" * 10,
                          "cellular": {"port": "/dev/ttyUSB2", "platform_number": PLATFORM}}, base_dir=tmp_path)


async def test_the_hub_sends_an_emergency_by_sms_when_its_platform_is_unreachable(tmp_path: Path, capsys) -> None:
    net = CellularNetwork(delay_s=(0.05, 0.2), rng=random.Random(5))
    modem = ModemEmulator(net, "+8613800138000", tmp_path / "ttyModem", time_scale=0.05)
    platform_phone = net.phone(PLATFORM)
    modem.plug()
    try:
        async with HubWorld(tmp_path / "world") as world:
            world.cfg = dataclasses.replace(
                world.cfg, platform=dataclasses.replace(world.cfg.platform, url="https://127.0.0.1:1"),
                cellular=CellularConfig(port=str(modem.link), platform_number=PLATFORM, after_s=0.5))
            hub = await world.start_hub()
            pendant = await world.add_device("pendant")
            await pendant.send_event("emergency")
            async with asyncio.timeout(30):
                while not platform_phone.inbox:
                    await asyncio.sleep(0.05)
            parsed = sms.parse(platform_phone.inbox[0][1])
            assert parsed.hub_id == HUB_ID and parsed.type == "emergency" and hub.store.pending(parsed.event_id)
            assert "modem registered, signal 22" in hub.service.status_line()
            assert hub.service.heartbeat_data()["cellular"] == "registered"
            hub.service.write_status()
            doc = status_doc(world.cfg)
            assert doc["cellular"]["state"] == "registered" and doc["cellular"]["sms"] == {"sent": 1}
            toml = hub_toml.write(tmp_path / "hub.toml", hub_id=HUB_ID, home_id="home-world-0001",
                                  state_dir=world.cfg.state_dir, platform_url="https://127.0.0.1:1",
                                  cellular={"port": str(modem.link), "platform_number": PLATFORM})
            assert cli.main(["status", "--config", str(toml)]) == 0
            assert f"  modem {modem.link}: registered, signal 22, SMS {{'sent': 1}}" in capsys.readouterr().out
            modem.unplug()
            async with asyncio.timeout(30):
                while hub.service.heartbeat_data()["cellular"] != "absent":
                    await asyncio.sleep(0.05)
    finally:
        modem.close()
        await net.close()


async def test_a_hub_whose_modem_is_missing_delivers_over_https_as_ever_and_says_so(tmp_path: Path) -> None:
    async with HubWorld(tmp_path / "world") as world:
        world.cfg = dataclasses.replace(world.cfg, cellular=CellularConfig(
            port=str(tmp_path / "no-such-modem"), platform_number=PLATFORM, after_s=0.5))
        hub = await world.start_hub()
        pendant = await world.add_device("pendant")
        counter = await pendant.send_event("emergency")
        (stored,) = await world.wait_stored(1, timeout=20)
        assert stored["counter"] == counter and stored["channel"] == "https"
        await pendant.wait_ack(counter, 2, timeout=20)  # "the platform has it", as without a modem
        async with asyncio.timeout(20):
            while hub.cellular.health()["problem"] != "no modem at the port":
                await asyncio.sleep(0.05)
        assert "modem absent" in hub.service.status_line()

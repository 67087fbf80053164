"""The hub's cellular path against the emulated modem on a real pty (tools/sim/modem), with the
hub's real SQLite outbox: when it sends, what, to whom, and what it says when the modem is in trouble."""

from __future__ import annotations

import asyncio
import logging
import math
import random

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from safebox.hub.cellular import CellularConfig, CellularPath
from safebox.hub.store import HubStore
from safebox.protocol import events, sms
from safebox.tools.sim.modem.emulator import ModemEmulator
from safebox.tools.sim.modem.network import CellularNetwork

HUB, HOME = "hub-test-0001", "home-0001"
PLATFORM, FAMILY, HUB_SIM = "+8610690000", "+8613900139000", "+8613800138000"
WAIT_S = 20.0  # generous: a loaded 2-core machine


async def until(cond, timeout_s: float = WAIT_S, what: str = "condition"):
    loop = asyncio.get_running_loop()
    end = loop.time() + timeout_s
    while not cond():
        if loop.time() > end:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.05)


class World:
    def __init__(self, tmp_path, *, after_s: float = 0.3, contacts=(FAMILY,)) -> None:
        self.net = CellularNetwork(delay_s=(0.05, 0.2), rng=random.Random(1))
        self.modem = ModemEmulator(self.net, HUB_SIM, tmp_path / "ttyModem", time_scale=0.05, rng=random.Random(2))
        self.platform = self.net.phone(PLATFORM)
        self.family = self.net.phone(FAMILY)
        self.store = HubStore.open(tmp_path / "hub.db")
        self.key = Ed25519PrivateKey.generate()
        self.reachable: bool | None = False
        self.changes = 0
        cfg = CellularConfig(port=str(tmp_path / "ttyModem"), platform_number=PLATFORM, after_s=after_s,
                             contacts=tuple(contacts), who="王秀英（幸福里3号）")
        self.path = CellularPath(cfg, waiting=lambda: [i for i in self.store.due(math.inf, 500) if i.urgent],
                                 platform_reachable=lambda: self.reachable, private_key=self.key,
                                 state_dir=tmp_path, on_change=self._changed, check_s=0.1, supervise_s=0.3,
                                 retry_s=0.5)

    def _changed(self) -> None:
        self.changes += 1

    def event(self, type_: str = events.TEST_ALARM) -> str:
        seq = self.store.next_hub_seq()
        body = events.make(event_id=events.hub_event_id(HUB, seq), type=type_, hub_id=HUB, home_id=HOME,
                           occurred_at=1764745441.0)
        return self.store.enqueue(events.encode(body))

    async def __aenter__(self):
        self.modem.plug()
        self.task = asyncio.create_task(self.path.run())
        return self

    async def __aexit__(self, *exc):
        self.task.cancel()
        await asyncio.gather(self.task, return_exceptions=True)
        self.modem.close()
        await self.net.close()
        self.store.close()


async def test_unreachable_platform_gets_the_event_by_sms_and_the_family_a_chinese_message(tmp_path):
    async with World(tmp_path) as w:
        event_id = w.event(events.TOILET_OVERDUE)
        await until(lambda: w.platform.inbox and w.family.inbox, what="both SMS")
        sender, text, _ = w.platform.inbox[0]
        assert sender == HUB_SIM
        parsed = sms.parse(text)
        assert parsed.verify(w.key.public_key()) and parsed.event_id == event_id
        assert parsed.body() == events.decode(w.store.get(event_id).body)  # the outbox keeps it for HTTPS
        assert w.family.inbox[0][1].startswith("【安全盒】王秀英（幸福里3号）在卫生间超时未出")
        await asyncio.sleep(1.0)  # more rounds: nothing is sent twice
        assert len(w.platform.inbox) == 1 and len(w.family.inbox) == 1 and len(w.modem.sent) == 2
        assert w.path.health()["sms"] == {"sent": 2}
        assert w.path.health()["state"] == "registered" and w.path.status_line() == "modem registered, signal 22"


@pytest.mark.parametrize("reachable", [True, None])
async def test_nothing_goes_by_sms_unless_the_platform_is_unreachable(tmp_path, reachable):
    async with World(tmp_path) as w:
        w.reachable = reachable
        w.event()
        await until(lambda: w.path.modem.health.state == "registered", what="registration")
        await asyncio.sleep(1.0)
        assert w.modem.sent == []
        w.reachable = False  # the line goes down: now it goes
        await until(lambda: len(w.platform.inbox) == 1, what="the SMS")


async def test_an_event_goes_only_after_waiting_the_bound(tmp_path):
    async with World(tmp_path, after_s=2.0, contacts=()) as w:
        w.event()
        await until(lambda: w.path.modem.health.state == "registered", what="registration")
        await asyncio.sleep(0.8)
        assert w.modem.sent == []
        await until(lambda: len(w.modem.sent) == 1, what="the SMS after the bound")


async def test_modem_unplugged_and_back_is_picked_up_and_sends(tmp_path, caplog):
    caplog.set_level(logging.INFO, "safebox.hub.cellular")
    async with World(tmp_path, contacts=()) as w:
        await until(lambda: w.path.modem.health.state == "registered", what="registration")
        w.modem.unplug()
        await until(lambda: w.path.modem.health.state == "absent", what="absent")
        w.event()
        await asyncio.sleep(1.0)
        assert w.path.health()["problem"] == "no modem at the port"
        assert sum("no modem at the port" in r.message for r in caplog.records) == 1  # once per episode
        w.modem.plug()
        await until(lambda: len(w.platform.inbox) == 1, what="the SMS after replugging")
        assert sum("ready again" in r.message for r in caplog.records) == 1


async def test_no_sim_not_registered_and_refused_sms_are_shown_and_nothing_is_lost(tmp_path):
    async with World(tmp_path, contacts=()) as w:
        w.modem.sim = False
        await until(lambda: w.path.modem.health.state == "no_sim", what="no_sim")
        w.event()
        await asyncio.sleep(0.5)
        w.modem.sim = True
        w.net.set_coverage(False)
        await until(lambda: w.path.modem.health.state == "searching", what="searching")
        assert w.path.health()["problem"] == "the modem is not registered on a network" and w.modem.sent == []
        w.modem.refuse_sms = 330  # SMSC address unknown
        w.net.set_coverage(True)
        await until(lambda: (w.path.health()["problem"] or "").startswith("SMS refused"), what="refusal shown")
        assert w.path.record.rows()[0].state == "failed" and "+CMS ERROR: 330" in w.path.record.rows()[0].last_error
        w.modem.refuse_sms = None
        await until(lambda: len(w.platform.inbox) == 1, what="the SMS after the refusal")
        assert w.path.health()["problem"] is None and w.store.depth() == 1


async def test_a_modem_answering_junk_is_not_responding_and_recovers(tmp_path):
    async with World(tmp_path, contacts=()) as w:
        await until(lambda: w.path.modem.health.state == "registered", what="registration")
        w.modem.junk = True
        await until(lambda: w.path.modem.health.state == "not_responding", timeout_s=40, what="not_responding")
        w.event()
        w.modem.junk = False
        await until(lambda: len(w.platform.inbox) == 1, timeout_s=40, what="the SMS once the modem is sane")


async def test_a_message_lost_on_the_network_goes_again_to_the_platform_not_to_the_family(tmp_path):
    async with World(tmp_path) as w:
        w.path._resend_s = 1.0
        w.net.loss = 1.0  # the first SMS of each number is lost
        w.event()
        await until(lambda: len(w.net.log) == 2, what="the first two SMS")
        w.net.loss = 0.0
        await until(lambda: len(w.platform.inbox) == 1, what="the platform's copy, sent again")
        await asyncio.sleep(3.0)
        assert w.family.inbox == []  # people get a message once, lost or not
        sent = {r.number: r for r in w.path.record.rows()}
        assert 2 <= sent[PLATFORM].sends <= 3 and sent[FAMILY].sends == 1
        await until(lambda: w.path.record.last(w.store.due(math.inf)[0].event_id, PLATFORM).sends == 3,
                    what="the third and last send")
        await asyncio.sleep(2.5)
        assert w.path.record.last(w.store.due(math.inf)[0].event_id, PLATFORM).sends == 3

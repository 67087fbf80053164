"""The relay against the reference receiver (in-process, real TLS, its real SQLite store):
batches with per-event answers, a lost answer, heartbeats, operator acks over signed GET.

Time is the uplink's injected FakeTime, shared with the receiver, so backoff, heartbeat
intervals and signature windows pass without waiting.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import socket
import ssl
import subprocess
import sys
from collections import Counter
from pathlib import Path

import aiohttp
import pytest
import trustme
from aiohttp import web
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from safebox.hub.config import PlatformConfig
from safebox.hub.store import HubStore
from safebox.hub.uplink import batch_key
from safebox.protocol import events, signing
from safebox.tools.receiver import relay as receiver_relay
from safebox.tools.receiver.app import make_app
from safebox.tools.sim.receiver_faults import fault_middleware
from safebox.tools.receiver.store import Store
from safebox.tools.sim.home import parse_time
from tests.relay_kit import RelayRig, run_until
from tests.uplink_platform import HUB, KEY, START, FakeTime, store_event

HOME = "home-0001"


class Receiver:
    def __init__(self, url: str, store: Store, client_ssl: ssl.SSLContext, ca_file: Path) -> None:
        self.url = url
        self.store = store
        self.client_ssl = client_ssl
        self.ca_file = ca_file

    def event_ids(self) -> list[str]:
        return [e.event_id for e in self.store.events()]


async def _serve(tmp_path: Path, fake_time: FakeTime, **kwargs) -> tuple[web.AppRunner, Receiver]:
    ca = trustme.CA()
    server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1").configure_cert(server_ctx)
    ca_file = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    store = Store(tmp_path / "platform.db")
    store.add_hub(HUB, signing.public_key_to_text(KEY.public_key()), now=START)
    runner = web.AppRunner(make_app(store, clock=fake_time.clock, **kwargs), shutdown_timeout=0.5)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0, ssl_context=server_ctx).start()
    client = ssl.create_default_context(cafile=str(ca_file))
    return runner, Receiver(f"https://127.0.0.1:{runner.addresses[0][1]}", store, client, ca_file)


@pytest.fixture
def fake_time() -> FakeTime:
    return FakeTime()


@pytest.fixture
async def receiver(tmp_path, fake_time):
    runner, rec = await _serve(tmp_path, fake_time)
    yield rec
    await runner.cleanup()
    rec.store.close()


@pytest.fixture
def hub_store(tmp_path):
    with HubStore.open(tmp_path / "hub.db", clock=lambda: START) as s:
        yield s


def uplink_for(store: HubStore, url: str, ca_file: Path, fake_time: FakeTime, **kwargs) -> RelayRig:
    args = dict(url=url, hub_id=HUB, private_key=KEY, home_id=HOME,
                ssl_context=PlatformConfig(url=url, ca_file=ca_file).ssl_context(),
                clock=fake_time.clock, sleep=fake_time.sleep, batch_max=100)
    args.update(kwargs)
    return RelayRig(store, **args)


def door_events(store: HubStore, devices: int, each: int) -> list[str]:
    ids = []
    for n in range(each):
        for d in range(devices):
            event_id, _ = store_event(store, f"240ac40000{d:02x}", n + 1,
                                      events.DOOR_OPENED if n % 2 == 0 else events.DOOR_CLOSED, "front_door")
            ids.append(event_id)
    return ids


async def test_a_backlog_goes_in_batches_urgent_first_each_event_judged(hub_store, receiver, fake_time,
                                                                       caplog) -> None:
    caplog.set_level(logging.INFO)
    doors = door_events(hub_store, devices=3, each=70)  # 210
    foreign = hub_store.enqueue(events.encode(events.make(  # another hub's event: refused, alone
        event_id="hub-other-0001-5", type=events.BATTERY_LOW, hub_id="hub-other-0001", home_id=HOME,
        occurred_at=START)))
    press, _ = store_event(hub_store, "240ac4009999", 1, events.EMERGENCY)
    uplink = uplink_for(hub_store, receiver.url, receiver.ca_file, fake_time)
    await run_until(uplink, lambda: hub_store.depth() == 0)

    stored = receiver.event_ids()
    assert stored[0] == press  # urgent first, on its own
    assert sorted(stored[1:]) == sorted(doors) and len(stored) == len(set(stored)) == 211
    for device in ("240ac4000000", "240ac4000001", "240ac4000002"):  # one device's events in order
        counters = [int(e.rsplit("-", 1)[1]) for e in stored if e.startswith(device)]
        assert counters == sorted(counters) == list(range(1, 71))
    [dead] = hub_store.dead_letters()
    assert dead.event_id == foreign and dead.reason.startswith("401 rejected: body hub_id 'hub-other-0001'")
    batches = [r.getMessage() for r in caplog.records if r.getMessage().startswith("batch of")]
    assert [re.match(r"batch of (\d+)", b).group(1) for b in batches] == ["100", "100", "11"]
    assert ["1 rejected" in b for b in batches] == [False, False, True]  # the foreign event, enqueued last
    singles = [r.getMessage() for r in caplog.records if re.match(r"event \S+: delivered", r.getMessage())]
    assert singles == [f"event {press}: delivered, 201 in " + singles[0].split(" in ")[1]]


async def test_a_lost_batch_answer_is_resent_and_nothing_is_stored_twice(tmp_path, hub_store, fake_time,
                                                                          caplog) -> None:
    caplog.set_level(logging.INFO)
    runner, rec = await _serve(tmp_path, fake_time, middlewares=[fault_middleware(answer_delay_s=2.0)])  # held back
    try:
        doors = door_events(hub_store, devices=2, each=20)
        first = uplink_for(hub_store, rec.url, rec.ca_file, fake_time)
        task = asyncio.create_task(first.run())
        async with asyncio.timeout(5):
            while len(rec.event_ids()) < len(doors):
                await asyncio.sleep(0.01)
        await first.close()  # the hub goes away before the answer: all 40 still in its outbox
        await task
        assert hub_store.depth() == 40
        # A second hub process on the same database: the batch goes again and is answered
        # "duplicate" for each event: delivered, and nothing is stored twice.
        caplog.clear()
        second = uplink_for(hub_store, rec.url, rec.ca_file, fake_time)
        await run_until(second, lambda: hub_store.depth() == 0, timeout_s=15)
        assert sorted(rec.event_ids()) == sorted(doors)
        assert any("batch of 40" in r.getMessage() and "40 delivered" in r.getMessage() for r in caplog.records)
        assert any("40 duplicate" in r.getMessage() for r in caplog.records if r.name == "safebox.receiver")
    finally:
        await runner.cleanup()
        rec.store.close()


async def test_heartbeats_replace_each_other_in_an_outage_and_follow_the_platforms_interval(
        hub_store, receiver, fake_time, caplog) -> None:
    caplog.set_level(logging.INFO)
    with socket.socket() as s:  # a port nobody listens on: the platform is down
        s.bind(("127.0.0.1", 0))
        down = f"https://127.0.0.1:{s.getsockname()[1]}"
    outage = uplink_for(hub_store, down, receiver.ca_file, fake_time, heartbeat_s=60,
                        heartbeat_data=lambda: {"outbox_depth": hub_store.depth()})
    await run_until(outage, lambda: fake_time.now >= START + 3600, timeout_s=20)
    waiting = [i for i in hub_store.due(fake_time.now + 10**6, 100) if i.type == events.HUB_HEARTBEAT]
    assert len(waiting) == 1  # an hour of heartbeats, one waiting: the newest
    made = sum("hub heartbeat made; it replaces 1 still waiting" in r.getMessage() for r in caplog.records)
    assert made >= 50
    # a replacement keeps the backoff it replaced: an outage is not retried faster for it
    assert waiting[0].attempts >= 8

    receiver.store.set_heartbeat_interval(HUB, 600)  # safebox-receiver heartbeat-interval HUB 600
    up = uplink_for(hub_store, receiver.url, receiver.ca_file, fake_time, heartbeat_s=60,
                    heartbeat_data=lambda: {"outbox_depth": hub_store.depth()})

    def beats() -> list[dict]:
        return [e.to_json()["body"] for e in receiver.store.events() if e.type == events.HUB_HEARTBEAT]

    await run_until(up, lambda: len(beats()) >= 3, timeout_s=10)
    assert hub_store.setting("heartbeat_interval_s") == "600"
    times = [b["occurred_at"] for b in beats()]
    gaps = {parse_time(b) - parse_time(a) for a, b in zip(times, times[1:])}
    assert gaps == {600.0}
    assert beats()[1]["data"] == {"interval_s": 600, "outbox_depth": 0} and beats()[1]["device"] is None


async def test_operator_acks_by_signed_poll_and_cursor(hub_store, receiver, fake_time) -> None:
    press, _ = store_event(hub_store, "240ac4000042", 9, events.EMERGENCY)
    owed: list[str] = []
    uplink = uplink_for(hub_store, receiver.url, receiver.ca_file, fake_time, operator_poll_s=2,
                        on_owed=owed.append)
    task = asyncio.create_task(uplink.run())
    try:
        async with asyncio.timeout(5):
            while hub_store.depth():
                await asyncio.sleep(0.01)
        assert owed == ["240ac4000042"]  # kind 2 owed
        receiver.store.operator_ack(press, now=fake_time.now)
        async with asyncio.timeout(5):
            while hub_store.awaiting_operator(fake_time.now):
                await asyncio.sleep(0.01)
    finally:
        await uplink.close()
        await task
    assert owed == ["240ac4000042", "240ac4000042"]
    [ack] = hub_store.owed_acks(None, fake_time.now)
    assert (ack.counter, ack.kind) == (9, 3)
    assert hub_store.setting("operator_ack_cursor") == "1"


async def test_the_operator_ack_poll_is_signed_and_a_hub_sees_only_its_own(receiver, fake_time) -> None:
    receiver.store.record_event(HUB, b"{}", {"event_id": "240ac4000001-1", "type": "emergency",
                                             "occurred_at": "2026-01-01T00:00:00Z", "counter": 1,
                                             "device": {"id": "240ac4000001"}}, now=START)
    receiver.store.operator_ack("240ac4000001-1", now=START)
    other = Ed25519PrivateKey.generate()
    receiver.store.add_hub("hub-other-0001", signing.public_key_to_text(other.public_key()), now=START)
    base = f"{receiver.url}/v1/hubs/{HUB}/operator-acks"

    async def get(url: str, headers: dict[str, str]) -> tuple[int, dict]:
        async with aiohttp.ClientSession() as s, s.get(url, headers=headers, ssl=receiver.client_ssl) as r:
            return r.status, await r.json()

    status, doc = await get(f"{base}?since=0", signing.signed_get_headers(KEY, HUB, f"{base}?since=0",
                                                                          now=fake_time.now))
    assert status == 200 and [a["event_id"] for a in doc["operator_acks"]] == ["240ac4000001-1"]
    assert doc["next_since"] == 1
    # the query is signed: a changed `since` does not verify
    status, doc = await get(f"{base}?since=1", signing.signed_get_headers(KEY, HUB, f"{base}?since=0",
                                                                          now=fake_time.now))
    assert (status, doc["status"]) == (401, "rejected") and "signature does not verify" in doc["reason"]
    # another enrolled hub may not read this hub's acks
    status, doc = await get(f"{base}?since=0", signing.signed_get_headers(other, "hub-other-0001",
                                                                          f"{base}?since=0", now=fake_time.now))
    assert status == 401 and "may not read hub" in doc["reason"]
    # the POST profile is not the GET profile
    post = signing.signed_headers(KEY, HUB, f"{base}?since=0", b"", "x-1", now=fake_time.now, method="GET")
    status, doc = await get(f"{base}?since=0", post)
    assert status == 400 and "@query" in doc["reason"]
    status, doc = await get(f"{base}?since=0", {})
    assert status == 400 and doc["reason"] == "missing header signature-input"


def test_batch_key_and_element_split() -> None:
    assert batch_key(["a-1", "b-2"]) == batch_key(["a-1", "b-2"]) != batch_key(["b-2", "a-1"])
    assert re.fullmatch(r"batch-[0-9a-f]{32}", batch_key(["a-1"]))
    raw = b' [ {"a": "\xc3\xa9]"} ,{"b":[1,{"c":2}]}\n] '
    assert receiver_relay.split_array(raw) == [b'{"a": "\xc3\xa9]"}', b'{"b":[1,{"c":2}]}']
    for bad in (b"{}", b"[1]", b"[{}", b"[{},]", b"[{}] x", b"[" * 5000):
        with pytest.raises(ValueError):
            receiver_relay.split_array(bad)
    assert receiver_relay.split_array(b"[]") == []
    assert Counter(receiver_relay.split_array(b'[{"x":1},{"x":1}]')) == Counter({b'{"x":1}': 2})


async def test_operators_take_events_up_on_the_command_line_and_never_on_the_hubs_listener(
        receiver, fake_time, tmp_path) -> None:
    for event_id in ("240ac4000001-1", "240ac4000001-2"):
        receiver.store.record_event(HUB, b"{}", {"event_id": event_id, "type": "emergency", "counter": 1,
                                                 "occurred_at": "2026-01-01T00:00:00Z",
                                                 "device": {"id": "240ac4000001"}}, now=START)
    # Operators act on their own listener, behind a login (test_console_auth.py); the hubs'
    # listener has no operator route any more.
    async with aiohttp.ClientSession() as s, s.post(f"{receiver.url}/v1/events/240ac4000001-1/operator-ack",
                                                    json={"operator": "op-7"}, ssl=receiver.client_ssl) as r:
        assert r.status in (404, 405)
    assert receiver.store.operator_acks(HUB) == []

    def cli(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "safebox.tools.receiver.cli", *args], capture_output=True,
                              text=True, timeout=60)

    db = str(receiver.store.path)
    done = cli("operator-ack", "--db", db, "240ac4000001-2", "--json")
    assert done.returncode == 0 and json.loads(done.stdout)["status"] == "acknowledged"
    done = cli("operator-ack", "--db", db, "240ac4000001-3")
    assert done.returncode == 2 and "no stored event '240ac4000001-3'" in done.stderr
    assert cli("heartbeat-interval", "--db", db, HUB, "600").returncode == 0
    assert receiver.store.heartbeat_interval(HUB) == 600
    done = cli("heartbeat-interval", "--db", db, HUB, "5")
    assert done.returncode == 2 and "60 .. 86400" in done.stderr
    assert [a["event_id"] for a in receiver.store.operator_acks(HUB)] == ["240ac4000001-2"]


async def test_a_url_written_unusually_is_signed_as_it_is_sent(hub_store, receiver, fake_time) -> None:
    """aiohttp sends the normal form of the URL (no zero-padded port, no /./, upper-case host
    lowered); the hub signs that form, so the receiver's verifier agrees (RFC 9421 2.2.3)."""
    host, port = receiver.url.removeprefix("https://").split(":")
    odd = f"https://{host}:0{port}/./"
    press, _ = store_event(hub_store, "240ac4000042", 3, events.EMERGENCY)
    uplink = uplink_for(hub_store, odd, receiver.ca_file, fake_time)
    assert uplink.events_url == f"https://{host}:{port}/v1/events"
    await run_until(uplink, lambda: hub_store.depth() == 0)
    assert receiver.event_ids() == [press] and hub_store.dead_letters() == []

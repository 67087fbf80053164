"""The platform's SMS inbound (SPEC 5.2) over real TLS and SQLite: the gateway callback, the checks,
and one stored event when it came by SMS and by HTTPS, in either order."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from safebox.protocol import events, sms
from safebox.tools.receiver.sms_inbound import SmsInbox
from safebox.tools.receiver.store import Store

from .test_receiver import BODY, HUB, NOW, _event, running, tls  # noqa: F401  (tls is a fixture)

TOKEN = "gateway-token-0123456789"
HUB_SIM = "+8613800138000"


@pytest.fixture
def keys_and_db(tmp_path: Path):
    from safebox.protocol.signing import public_key_to_text
    key = Ed25519PrivateKey.generate()
    path = tmp_path / "receiver.db"
    store = Store(path)
    store.add_hub(HUB, public_key_to_text(key.public_key()), now=NOW)
    store.add_hub("hub-other", public_key_to_text(Ed25519PrivateKey.generate().public_key()), now=NOW)
    SmsInbox(store).add_number(HUB, HUB_SIM)
    SmsInbox(store).add_number("hub-other", "+8613700137000")
    store.close()
    return key, path


async def _sms(p, sender: str, text: str, token: str = TOKEN):
    async with p.session.post(p.url + "/v1/sms", json={"from": sender, "text": text},
                              headers={"Authorization": f"Bearer {token}"}) as resp:
        return resp.status, await resp.json()


def _stored(p):
    return [e.to_json() for e in p.store.events()]


async def test_sms_first_then_https_is_one_event_with_the_full_body(tls, keys_and_db):  # noqa: F811
    key, db = keys_and_db
    async with running(tls, db, key, sms_token=TOKEN) as p:
        text = sms.compose(_event(), key)
        assert await _sms(p, HUB_SIM, text) == (201, {"status": "accepted", "event_id": _event()["event_id"],
                                                      "reason": None})
        (row,) = _stored(p)
        assert row["channel"] == "sms" and row["body"]["data"] == {} and row["type"] == "emergency"
        answer = await p.post()  # the HTTPS copy when the line heals
        assert (answer.status, answer.body["status"]) == (200, "duplicate")
        (row,) = _stored(p)
        assert row["channel"] == "sms+https" and row["body"] == json.loads(BODY)
        assert (await p.post()).status == 200 and len(_stored(p)) == 1


async def test_https_first_then_sms_is_one_event(tls, keys_and_db):  # noqa: F811
    key, db = keys_and_db
    async with running(tls, db, key, sms_token=TOKEN) as p:
        assert (await p.post()).status == 201
        status, doc = await _sms(p, HUB_SIM, sms.compose(_event(), key))
        assert (status, doc["status"], doc["reason"]) == (200, "accepted", "duplicate")
        (row,) = _stored(p)
        assert row["channel"] == "https+sms" and row["body"] == json.loads(BODY)


async def test_https_copy_that_disagrees_with_the_sms_is_a_conflict(tls, keys_and_db):  # noqa: F811
    key, db = keys_and_db
    async with running(tls, db, key, sms_token=TOKEN) as p:
        assert (await _sms(p, HUB_SIM, sms.compose(_event(occurred_at=NOW - 30), key)))[0] == 201
        answer = await p.post()
        assert answer.status == 409 and _stored(p)[0]["channel"] == "sms"


def _altered(text: str) -> str:
    head, sig = text.rsplit(" ", 1)
    return head.replace("EP", "CP") + " " + sig


@pytest.mark.parametrize("case, reason", [
    ("unknown number", "unknown_number"),
    ("forged", "bad_signature"),
    ("altered", "bad_signature"),
    ("replayed", "replayed"),
    ("stale", "stale"),
    ("future", "future"),
    ("wrong hub", "wrong_hub"),
    ("not sb1", "malformed"),
])
async def test_refused_sms_store_nothing_and_say_why(tls, keys_and_db, case, reason):  # noqa: F811
    key, db = keys_and_db
    async with running(tls, db, key, sms_token=TOKEN) as p:
        sender, text = HUB_SIM, sms.compose(_event(), key)
        if case == "unknown number":
            sender = "+8613311112222"
        elif case == "forged":
            text = sms.compose(_event(), Ed25519PrivateKey.generate())
        elif case == "altered":
            text = _altered(text)
        elif case == "replayed":
            assert (await _sms(p, sender, text))[0] == 201
        elif case == "stale":
            text = sms.compose(_event(occurred_at=NOW - 3601), key)
        elif case == "future":
            text = sms.compose(_event(occurred_at=NOW + 301), key)
        elif case == "wrong hub":
            sender = "+8613700137000"
        else:
            text = "您好，您的话费余额不足"
        before = len(_stored(p))
        status, doc = await _sms(p, sender, text)
        assert status == 200 and doc["status"] == "rejected" and doc["reason"].startswith(reason + ":"), doc
        assert len(_stored(p)) == before


async def test_gateway_callback_needs_the_token_and_a_body(tls, keys_and_db):  # noqa: F811
    key, db = keys_and_db
    async with running(tls, db, key, sms_token=TOKEN) as p:
        assert (await _sms(p, HUB_SIM, sms.compose(_event(), key), token="wrong-token-000000000"))[0] == 401
        async with p.session.post(p.url + "/v1/sms", data=b"nope",
                                  headers={"Authorization": f"Bearer {TOKEN}"}) as resp:
            assert resp.status == 400
        assert _stored(p) == []
    async with running(tls, db, key) as p:  # no token configured: no route
        async with p.session.post(p.url + "/v1/sms", json={"from": HUB_SIM, "text": "x"}) as resp:
            assert resp.status == 404


def test_a_receiver_database_from_before_sms_gains_the_channel_column(tmp_path: Path):
    import sqlite3
    path = tmp_path / "old.db"
    old = sqlite3.connect(path)
    old.executescript("""CREATE TABLE events (id INTEGER PRIMARY KEY AUTOINCREMENT, hub_id TEXT NOT NULL,
        event_id TEXT NOT NULL, body BLOB NOT NULL, body_sha256 TEXT NOT NULL, type TEXT NOT NULL, device_id TEXT,
        counter INTEGER, occurred_at TEXT NOT NULL, received_at TEXT NOT NULL,
        signature_verified INTEGER NOT NULL DEFAULT 1, acked_by_operator_at TEXT, UNIQUE (hub_id, event_id));""")
    old.execute("INSERT INTO events (hub_id, event_id, body, body_sha256, type, occurred_at, received_at) "
                "VALUES (?, ?, ?, 'x', 'emergency', 't', 't')", (HUB, "5448e68f80a5-1", BODY))
    old.commit()
    old.close()
    store = Store(path)
    assert [e.channel for e in store.events()] == ["https"]
    store.close()
    assert events.decode(BODY)["type"] == "emergency"


async def test_the_platforms_own_modem_feeds_the_same_inbox(tmp_path, keys_and_db):
    import asyncio
    import random

    from safebox.tools.receiver.sms_modem import ModemInbox
    from safebox.tools.sim.modem.emulator import ModemEmulator
    from safebox.tools.sim.modem.network import CellularNetwork

    key, db = keys_and_db
    net = CellularNetwork(delay_s=(0.05, 0.1), rng=random.Random(4))
    platform_modem = ModemEmulator(net, "+8610690000", tmp_path / "ttyPlatform", time_scale=0.05)
    platform_modem.plug()
    store = Store(db)
    clock = [NOW]
    reader = ModemInbox(SmsInbox(store, clock=lambda: clock[0]), str(platform_modem.link), check_s=0.2,
                        reopen_s=0.1)
    task = asyncio.create_task(reader.run())
    try:
        async with asyncio.timeout(20):
            while reader.modem.health.state != "registered":
                await asyncio.sleep(0.05)
        text = sms.compose(_event(), key)
        net.submit(HUB_SIM, "+8610690000", text)
        net.submit("+8613311112222", "+8610690000", text)  # the same text from a stranger's phone
        async with asyncio.timeout(20):
            while len(reader.taken) < 2:
                await asyncio.sleep(0.05)
        outcomes = sorted((t.status, (t.reason or "").split(":")[0]) for t in reader.taken)
        assert outcomes == [("accepted", ""), ("rejected", "unknown_number")]
        (row,) = [e.to_json() for e in store.events()]
        assert row["channel"] == "sms" and row["event_id"] == _event()["event_id"]
        platform_modem.unplug()  # the platform's modem goes away and comes back: picked up again
        async with asyncio.timeout(20):
            while reader.modem.health.state != "absent":
                await asyncio.sleep(0.05)
        platform_modem.plug()
        net.submit(HUB_SIM, "+8610690000", text)
        async with asyncio.timeout(20):
            while len(reader.taken) < 3:
                await asyncio.sleep(0.05)
        assert reader.taken[-1].reason.startswith("replayed")
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        platform_modem.close()
        await net.close()
        store.close()

"""The reference receiver over real TLS and a real SQLite file: SPEC.md section 3's answers."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import signal
import ssl
import stat
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from safebox.protocol import events
from safebox.protocol.signing import public_key_to_text, signed_get_headers, signed_headers
from safebox.tools.receiver import cli
from safebox.tools.receiver.app import make_app
from safebox.tools.receiver.store import Store
from safebox.tools.sim.receiver_faults import fault_middleware
from safebox.tools.tlsca import TlsFiles, make_ca

HUB = "hub-7f3a9c"
EVENT_ID = "5448e68f80a5-1122867"
NOW = 1_800_000_000.0
RECEIVER_CLI = Path(sys.executable).parent / "safebox-receiver"


def _event(**changes: Any) -> dict[str, Any]:
    fields: dict[str, Any] = {
        "event_id": EVENT_ID, "type": events.EMERGENCY, "hub_id": HUB, "home_id": "home-0001",
        "occurred_at": NOW - 2, "device": {"id": "5448e68f80a5", "role": "pendant", "room": "bedroom"},
        "counter": 1122867, "data": {"battery": 87, "action": "press"}, **changes}
    return events.make(**fields)


BODY = events.encode(_event())


@pytest.fixture(scope="module")
def tls(tmp_path_factory: pytest.TempPathFactory) -> TlsFiles:
    return make_ca(tmp_path_factory.mktemp("tls"))


@pytest.fixture
def hub_key() -> Ed25519PrivateKey:
    return Ed25519PrivateKey.generate()


@pytest.fixture
def db_path(tmp_path: Path, hub_key: Ed25519PrivateKey) -> Path:
    path = tmp_path / "receiver.db"
    store = Store(path)
    store.add_hub(HUB, public_key_to_text(hub_key.public_key()), now=NOW)
    store.close()
    return path


@dataclass
class Answer:
    status: int
    body: dict[str, Any]
    headers: Any


@dataclass
class Platform:
    """A running receiver and a hub-like client that trusts only the test CA."""

    url: str
    session: aiohttp.ClientSession
    store: Store
    key: Ed25519PrivateKey

    def sign(self, body: bytes = BODY, event_id: str = EVENT_ID, *, now: float = NOW,
             key_id: str = HUB, key: Ed25519PrivateKey | None = None) -> dict[str, str]:
        return signed_headers(key or self.key, key_id, self.url + "/v1/events", body, event_id, now=now)

    async def post(self, body: bytes = BODY, headers: dict[str, str] | None = None) -> Answer:
        async with self.session.post(self.url + "/v1/events", data=body,
                                     headers=self.sign(body) if headers is None else headers) as response:
            return Answer(response.status, await response.json(), response.headers)

    async def get(self, path: str, *, key_id: str | None = HUB, key: Ed25519PrivateKey | None = None) -> Answer:
        """GET `path`, signed with the GET profile as hub `key_id` (None: unsigned)."""
        headers = {} if key_id is None else signed_get_headers(key or self.key, key_id, self.url + path, now=NOW)
        async with self.session.get(self.url + path, headers=headers) as response:
            return Answer(response.status, await response.json(), response.headers)


@asynccontextmanager
async def running(tls: TlsFiles, db_path: Path, key: Ed25519PrivateKey, *, port: int = 0,
                  **options: Any) -> AsyncIterator[Platform]:
    store = Store(db_path)
    runner = web.AppRunner(make_app(store, clock=lambda: NOW, **options))
    await runner.setup()
    server_tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_tls.load_cert_chain(tls.server_cert_chain, tls.server_key)
    client_tls = ssl.create_default_context(cafile=str(tls.ca_cert))
    try:
        await web.TCPSite(runner, "127.0.0.1", port, ssl_context=server_tls).start()
        url = f"https://127.0.0.1:{runner.addresses[0][1]}"
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=client_tls)) as session:
            yield Platform(url, session, store, key)
    finally:
        await runner.cleanup()
        store.close()


@pytest.fixture
async def platform(tls: TlsFiles, db_path: Path, hub_key: Ed25519PrivateKey) -> AsyncIterator[Platform]:
    async with running(tls, db_path, hub_key) as started:
        yield started


def _refusals(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "safebox.receiver" and r.levelno == logging.WARNING]


async def test_signed_event_is_stored_once_and_a_resend_is_a_duplicate(platform: Platform) -> None:
    first = await platform.post()
    assert (first.status, first.body) == (201, {"status": "accepted", "event_id": EVENT_ID, "reason": None})
    again = await platform.post()  # re-sent as a hub does: signed afresh, same key and body
    assert (again.status, again.body) == (200, {"status": "duplicate", "event_id": EVENT_ID, "reason": None})
    [stored] = platform.store.events()
    assert (stored.hub_id, stored.event_id, stored.type, stored.device_id, stored.counter) == (
        HUB, EVENT_ID, "emergency", "5448e68f80a5", 1122867)
    assert stored.body == BODY
    assert stored.signature_verified is True
    assert stored.received_at == events.timestamp(NOW)
    assert stored.acked_by_operator_at is None


async def test_events_listing_pages_and_health_counts(platform: Platform) -> None:
    for counter in (1, 2, 3):
        body = events.encode(_event(event_id=f"5448e68f80a5-{counter}", counter=counter))
        assert (await platform.post(body, platform.sign(body, f"5448e68f80a5-{counter}"))).status == 201
    other = Ed25519PrivateKey.generate()
    platform.store.add_hub("hub-other-0002", public_key_to_text(other.public_key()), now=NOW)
    page = await platform.get("/v1/events?limit=2")
    assert [e["counter"] for e in page.body["events"]] == [1, 2]
    assert page.body["events"][0]["body"]["device"]["room"] == "bedroom"
    rest = await platform.get(f"/v1/events?since_id={page.body['next_since_id']}")
    assert [e["counter"] for e in rest.body["events"]] == [3]
    assert (await platform.get("/v1/events?since_id=x")).status == 400
    assert (await platform.get("/v1/health", key_id=None)).body == {"status": "ok", "events": 3}
    # The listing is a hub's own, for a signed GET: unsigned is refused, another hub sees nothing.
    unsigned = await platform.get("/v1/events", key_id=None)
    assert (unsigned.status, unsigned.body["reason"]) == (400, "missing header signature-input")
    assert (await platform.get("/v1/events", key_id="hub-other-0002", key=other)).body["events"] == []
    forged = await platform.get("/v1/events", key_id=HUB, key=other)
    assert forged.status == 401 and "signature does not verify" in forged.body["reason"]


# Each case: how the hub's request is spoiled, the answer, the start of the reason.
def _tampered(p: Platform) -> tuple[bytes, dict[str, str]]:
    return BODY.replace(b"emergency", b"door_opened"), p.sign()


def _without(header: str) -> Callable[[Platform], tuple[bytes, dict[str, str]]]:
    def spoil(p: Platform) -> tuple[bytes, dict[str, str]]:
        headers = p.sign()
        del headers[header]
        return BODY, headers
    return spoil


def _wrong_tag(p: Platform) -> tuple[bytes, dict[str, str]]:
    headers = p.sign()
    headers["Signature-Input"] = headers["Signature-Input"].replace('tag="safebox-v1"', 'tag="other-v1"')
    return BODY, headers


def _signed(body: bytes, event_id: str = EVENT_ID, **options: Any) -> Callable[[Platform], tuple[bytes, dict]]:
    return lambda p: (body, p.sign(body, event_id, **options))


def _plain_text(p: Platform) -> tuple[bytes, dict[str, str]]:
    return BODY, {**p.sign(), "Content-Type": "text/plain"}


_OTHER_KEY = Ed25519PrivateKey.generate()

REFUSALS = {
    "tampered body": (_tampered, 401, "content-digest mismatch: body was altered"),
    "stale created": (_signed(BODY, now=NOW - 412), 401, "created 412 s ago, older than 300 s"),
    "future created": (_signed(BODY, now=NOW + 45), 401, "created 45 s in the future"),
    "unknown keyid": (_signed(BODY, key_id="hub-unknown", key=_OTHER_KEY), 401, "unknown keyid 'hub-unknown'"),
    "wrong key": (_signed(BODY, key=_OTHER_KEY), 401, "signature does not verify"),
    "wrong tag": (_wrong_tag, 401, "wrong tag 'other-v1'"),
    "no idempotency-key": (_without("Idempotency-Key"), 400, "missing header idempotency-key"),
    "no signature": (_without("Signature"), 400, "missing header signature"),
    "event id differs from idempotency key": (_signed(BODY, "5448e68f80a5-1"), 400,
                                              f"body event_id '{EVENT_ID}' differs from Idempotency-Key"),
    "malformed json": (_signed(b'{"event_id": '), 422, "body is not UTF-8 JSON"),
    "invalid event": (_signed(events.encode({**json.loads(BODY), "type": "fire"})), 422,
                      "type: unknown event type 'fire'"),
    "hub_id is not the keyid": (_signed(events.encode(_event(hub_id="hub-other"))), 401,
                                "body hub_id 'hub-other' is not the signing keyid 'hub-7f3a9c'"),
    "not json": (_plain_text, 415, "Content-Type must be application/json, got 'text/plain'"),
    "oversized body": (_signed(b" " * (events.MAX_BODY + 1)), 413, "body exceeds 16384 bytes"),
}


@pytest.mark.parametrize("case", list(REFUSALS))
async def test_refusals_answer_log_and_store_nothing(platform: Platform, caplog: pytest.LogCaptureFixture,
                                                     case: str) -> None:
    spoil, status, reason = REFUSALS[case]
    caplog.set_level(logging.INFO, logger="safebox.receiver")
    body, headers = spoil(platform)
    answer = await platform.post(body, headers)
    assert answer.status == status
    assert answer.body["status"] == "rejected"
    assert answer.body["reason"].startswith(reason)
    assert platform.store.count_events() == 0
    [logged] = _refusals(caplog)
    assert f"refused {status} from 127.0.0.1" in logged
    assert reason in logged
    assert "bedroom" not in caplog.text  # bodies stay out of the log


async def test_same_event_id_with_another_body_is_a_conflict(platform: Platform,
                                                             caplog: pytest.LogCaptureFixture) -> None:
    assert (await platform.post()).status == 201
    other = events.encode(_event(data={"battery": 12, "action": "long_press"}))
    answer = await platform.post(other, platform.sign(other))
    assert (answer.status, answer.body["reason"]) == (409, "idempotency key reused with a different body")
    [stored] = platform.store.events()
    assert stored.body == BODY
    assert "idempotency key reused with a different body" in _refusals(caplog)[0]


async def test_replayed_request_is_refused_also_after_a_restart(tls: TlsFiles, db_path: Path,
                                                                hub_key: Ed25519PrivateKey,
                                                                caplog: pytest.LogCaptureFixture) -> None:
    async with running(tls, db_path, hub_key) as platform:
        headers = platform.sign()
        assert (await platform.post(BODY, headers)).status == 201
        replay = await platform.post(BODY, headers)
        assert (replay.status, replay.body["reason"]) == (401, "nonce already used")
    port = int(platform.url.rsplit(":", 1)[1])  # same authority, or the signature would not verify
    async with running(tls, db_path, hub_key, port=port) as platform:  # a new app on the same file
        replay = await platform.post(BODY, headers)
        assert (replay.status, replay.body["reason"]) == (401, "nonce already used")
        assert platform.store.count_events() == 1
    assert all("nonce already used" in line for line in _refusals(caplog))


async def test_retrying_through_failures_stores_exactly_one_event(tls: TlsFiles, db_path: Path,
                                                                  hub_key: Ed25519PrivateKey) -> None:
    async with running(tls, db_path, hub_key, middlewares=[fault_middleware([500, 500])]) as platform:
        statuses = []
        for _attempt in range(5):  # a hub's outbox: every attempt is signed afresh
            answer = await platform.post()
            statuses.append(answer.status)
            if answer.status in (200, 201):
                break
        assert statuses == [500, 500, 201]
        assert (await platform.post()).status == 200
        assert platform.store.count_events() == 1


async def test_injected_503_asks_to_retry_later(tls: TlsFiles, db_path: Path, hub_key: Ed25519PrivateKey) -> None:
    async with running(tls, db_path, hub_key, middlewares=[fault_middleware([503])]) as platform:
        answer = await platform.post()
        assert (answer.status, answer.headers["Retry-After"]) == (503, "1")
        assert answer.body == {"status": "retry_later", "event_id": EVENT_ID,
                               "reason": "injected fault (test fail plan)", "retry_after": 1}
        assert (await platform.post()).status == 201


def test_fail_plan_takes_only_server_errors() -> None:
    with pytest.raises(ValueError, match=r"\[500, 503\], got \[200\]"):
        fault_middleware([500, 200])


def test_tls_key_is_private(tls: TlsFiles) -> None:
    assert stat.S_IMODE(os.stat(tls.server_key).st_mode) == 0o600
    assert b"PRIVATE KEY" not in tls.ca_cert.read_bytes() + tls.server_cert_chain.read_bytes()


@pytest.mark.parametrize(("argv", "message"), [
    (["serve", "--db", "{tmp}/r.db"], "serve needs --cert CHAIN and --key KEY"),
    (["serve", "--db", "{tmp}/r.db", "--cert", "{tmp}/none.pem", "--key", "{tmp}/none.pem"],
     "cannot load TLS certificate"),
    (["events", "--db", "{tmp}/missing.db"], "no database at"),
    (["events", "--db", "{tmp}/garbage.db"], "file is not a database"),
    (["add-hub", "--db", "{tmp}/r.db", HUB, "bm90IGEga2V5"], "public key must be 32 raw Ed25519 bytes"),
])
def test_cli_user_errors_exit_2_with_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                              argv: list[str], message: str) -> None:
    (tmp_path / "garbage.db").write_bytes(b"this is not sqlite, just some bytes " * 10)
    assert cli.main([arg.format(tmp=tmp_path) for arg in argv]) == 2
    err = capsys.readouterr().err
    assert err.startswith("safebox-receiver: error: ") and message in err
    assert err.count("\n") == 1 and "Traceback" not in err


async def test_cli_serves_real_tls_as_a_subprocess(tmp_path: Path, tls: TlsFiles,
                                                   hub_key: Ed25519PrivateKey) -> None:
    db = tmp_path / "cli.db"
    enrolled = subprocess.run([RECEIVER_CLI, "add-hub", "--db", db, HUB, public_key_to_text(hub_key.public_key())],
                              capture_output=True, text=True, check=True)
    assert enrolled.stdout == f"enrolled hub {HUB}\n"
    server = await asyncio.create_subprocess_exec(
        RECEIVER_CLI, "serve", "--db", db, "--port", "0", "--cert", tls.server_cert_chain, "--key", tls.server_key,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    try:
        line = (await asyncio.wait_for(server.stdout.readline(), timeout=10)).decode()
        assert line.startswith("listening on https://127.0.0.1:")
        url = line.split()[-1]
        body = events.encode(_event(occurred_at=time.time()))
        headers = signed_headers(hub_key, HUB, url + "/v1/events", body, EVENT_ID)
        client_tls = ssl.create_default_context(cafile=str(tls.ca_cert))
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=client_tls)) as session:
            async with session.post(url + "/v1/events", data=body, headers=headers) as response:
                assert (response.status, (await response.json())["status"]) == (201, "accepted")
        listing = subprocess.run([RECEIVER_CLI, "events", "--db", db, "--json"],
                                 capture_output=True, text=True, check=True)
        [stored] = json.loads(listing.stdout)
        assert (stored["type"], stored["device_id"], stored["counter"], stored["signature_verified"]) == (
            "emergency", "5448e68f80a5", 1122867, True)
        table = subprocess.run([RECEIVER_CLI, "events", "--db", db], capture_output=True, text=True, check=True)
        assert table.stdout.splitlines()[1].split()[:3] == ["emergency", "5448e68f80a5", "1122867"]
    finally:
        server.send_signal(signal.SIGTERM)
        _, err = await asyncio.wait_for(server.communicate(), timeout=10)
    assert server.returncode == 0
    assert "accepted event_id='5448e68f80a5-1122867'" in err.decode()


def test_events_piped_into_head_end_quietly(tmp_path) -> None:
    """`safebox-receiver events --json | head` stops when head does, without a traceback."""
    store = Store(tmp_path / "events.db")
    for n in range(1, 600):
        store.record_event("hub-7f3a9c", b"{}", {"event_id": f"240ac4000001-{n}", "type": "door_opened",
                                                 "counter": n, "occurred_at": "2026-01-01T00:00:00Z",
                                                 "device": {"id": "240ac4000001"}}, now=1_790_000_000.0)
    store.close()
    listing = subprocess.Popen([sys.executable, "-m", "safebox.tools.receiver.cli", "events", "--json", "--db",
                                str(tmp_path / "events.db")], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    head = subprocess.run(["head", "-c", "100"], stdin=listing.stdout, capture_output=True)
    listing.stdout.close()
    err = listing.stderr.read().decode()
    assert listing.wait(timeout=30) == 141 and head.stdout.startswith(b"[")
    assert "Traceback" not in err and "BrokenPipe" not in err, err


def test_the_production_receiver_takes_no_fault_injection(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The faults are the simulator's (tools/sim/receiver_faults.py), not a flag of the real one."""
    for flag in ("--fail-first", "--answer-delay-ms"):
        with pytest.raises(SystemExit) as exit_:
            cli.main(["serve", "--db", str(tmp_path / "r.db"), flag, "1"])
        assert exit_.value.code == 2 and f"unrecognized arguments: {flag} 1" in capsys.readouterr().err


@pytest.mark.parametrize("later", [0, 1, 30, 59, 60])
def test_the_receivers_nonce_store_refuses_a_replay_anywhere_in_the_window(tmp_path, later: int) -> None:
    """tests/test_signing.py's replay-later check on the receiver's SQLite nonce store."""
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    from tests.test_signing import NOW, replay_later_is_refused

    now = [float(NOW)]
    store = Store(tmp_path / "r.db")
    try:
        replay_later_is_refused(Ed25519PrivateKey.generate(), store.nonce_store(lambda: now[0]), now, later)
    finally:
        store.close()

"""The receiver under abuse, as its own process over real TLS, held to the kernel's default 1,024
descriptors: half-sent requests do not keep a genuine emergency out, bodies in two TCP segments
are read whole, one address cannot hold more than its share of connections."""

from __future__ import annotations

import asyncio
import json
import resource
import ssl
import sys
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from safebox.protocol import events
from safebox.protocol.signing import public_key_to_text, signed_headers
from safebox.tools.attacks import wire
from safebox.tools.receiver import guard
from safebox.tools.receiver.enrol import EnrolCodes
from safebox.tools.receiver.store import Store
from safebox.tools.tlsca import TlsFiles, make_ca

HUB = "hub-abuse-0001"


@dataclass
class Receiver:
    url: str
    ca: ssl.SSLContext
    db: Path
    key: Ed25519PrivateKey
    proc: asyncio.subprocess.Process

    def event(self, counter: int, type_: str = events.EMERGENCY) -> tuple[str, bytes]:
        event_id = f"240ac4000001-{counter}"
        return event_id, events.encode(events.make(
            event_id=event_id, type=type_, hub_id=HUB, home_id="home-abuse", occurred_at=time.time(),
            device={"id": "240ac4000001", "role": "pendant", "room": "hall"}, counter=counter,
            data={"battery": 90, "action": "press"}))

    def stored(self) -> set[str]:
        store = Store(self.db, create=False)
        try:
            return {e.event_id for e in store.events()}
        finally:
            store.close()


@pytest.fixture(scope="module")
def tls(tmp_path_factory: pytest.TempPathFactory) -> TlsFiles:
    return make_ca(tmp_path_factory.mktemp("tls"))


async def _start(tmp_path: Path, tls: TlsFiles, *extra: str) -> AsyncIterator[Receiver]:
    key = Ed25519PrivateKey.generate()
    db = tmp_path / "receiver.db"
    store = Store(db)
    store.add_hub(HUB, public_key_to_text(key.public_key()), now=time.time())
    store.close()

    def default_limit() -> None:  # what a service without LimitNOFILE gets
        resource.setrlimit(resource.RLIMIT_NOFILE, (1024, resource.getrlimit(resource.RLIMIT_NOFILE)[1]))

    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "safebox.tools.receiver.cli", "serve", "--db", str(db), "--port", "0",
        "--cert", str(tls.server_cert_chain), "--key", str(tls.server_key), *extra,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.DEVNULL, preexec_fn=default_limit)
    try:
        line = (await asyncio.wait_for(proc.stdout.readline(), 20)).decode()
        assert line.startswith("listening on https://"), line
        yield Receiver(line.split()[-1], ssl.create_default_context(cafile=str(tls.ca_cert)), db, key, proc)
    finally:
        proc.terminate()
        await proc.wait()


@pytest.fixture
async def receiver(tmp_path: Path, tls: TlsFiles) -> AsyncIterator[Receiver]:
    async for r in _start(tmp_path, tls):
        yield r


async def test_half_sent_requests_do_not_keep_a_genuine_emergency_out(receiver: Receiver) -> None:
    """1,100 TLS connections from 22 addresses, each with half a request head, against a receiver
    with 1,024 descriptors: without the guard the listener meets EMFILE and the emergency waits
    (aiohttp closes a half-sent head only after its keep-alive timeout, 75 s)."""
    wire.raise_fd_limit(4096)
    loris = wire.Slowloris(receiver.url, receiver.ca, 1100, [f"127.0.1.{n}" for n in range(1, 23)])
    started = time.monotonic()
    await loris.open()
    assert len(loris.writers) >= 1014  # the attack holds as many as the review's
    event_id, body = receiver.event(1)
    t0 = time.monotonic()
    url = receiver.url + "/v1/events"
    status, answer = await wire.send_split(url, receiver.ca, signed_headers(receiver.key, HUB, url, body, event_id),
                                           body, pause_s=0)
    took = time.monotonic() - t0
    assert status == 201 and answer["status"] == "accepted", (status, answer, loris.failed)
    assert took < 5.0 and event_id in receiver.stored()
    # the half-sent heads are closed by their deadline (some sooner, evicted to make room)
    async with asyncio.timeout(guard.HEAD_TIMEOUT_S + 10):
        while loris.still_open():
            await asyncio.sleep(0.2)
    assert time.monotonic() - started >= guard.HEAD_TIMEOUT_S - 1  # not closed at once: a deadline
    loris.close()


async def test_a_head_and_a_body_that_never_finish_are_closed_by_their_deadlines(receiver: Receiver) -> None:
    reader, writer = await wire.connect(receiver.url, receiver.ca, source="127.0.2.1")
    writer.write(b"POST /v1/events HTTP/1.1\r\nHost: x\r\n")
    head_closed = asyncio.create_task(wire.closed_after(reader, guard.HEAD_TIMEOUT_S + 5))
    event_id, body = receiver.event(2)
    headers = signed_headers(receiver.key, HUB, receiver.url + "/v1/events", body, event_id)
    reader2, writer2 = await wire.connect(receiver.url, receiver.ca, source="127.0.2.2")
    writer2.write(wire.head("POST", receiver.url + "/v1/events", headers, len(body)) + body[:5])
    status, answer = await wire.read_answer(reader2, timeout=guard.body_deadline_s(len(body)) + 5)
    assert status == 408 and answer["status"] == "rejected" and "body not received within" in answer["reason"]
    took = await head_closed
    assert took is not None and guard.HEAD_TIMEOUT_S - 1 <= took <= guard.HEAD_TIMEOUT_S + 3
    assert event_id not in receiver.stored()
    writer.close()
    writer2.close()


async def test_bodies_in_two_tcp_segments_are_read_whole(receiver: Receiver) -> None:
    """`content.read(n)` returns what has arrived: the batch's digest failed (401) before."""
    ids, parts = zip(*(receiver.event(n, events.DOOR_OPENED) for n in (3, 4)))
    body = b"[" + b",".join(parts) + b"]"
    batch_key = "batch-" + "ab" * 16
    url = receiver.url + "/v1/events:batch"
    status, answer = await wire.send_split(url, receiver.ca, signed_headers(receiver.key, HUB, url, body, batch_key),
                                           body)
    assert status == 200, answer
    assert [r["status"] for r in answer["results"]] == ["accepted", "accepted"]
    assert set(ids) <= receiver.stored()

    event_id, body = receiver.event(5)
    url = receiver.url + "/v1/events"
    status, answer = await wire.send_split(url, receiver.ca, signed_headers(receiver.key, HUB, url, body, event_id),
                                           body, cut=10)
    assert (status, answer["status"]) == (201, "accepted")

    store = Store(receiver.db, create=False)
    code = EnrolCodes(store).issue("hub-abuse-0002", 600, now=time.time()).code
    store.close()
    new_key = Ed25519PrivateKey.generate()
    doc = json.dumps({"hub_id": "hub-abuse-0002", "home_id": "home-abuse", "code": code,
                      "public_key": public_key_to_text(new_key.public_key())}).encode()
    url = receiver.url + "/v1/enrol"
    status, answer = await wire.send_split(
        url, receiver.ca, signed_headers(new_key, "hub-abuse-0002", url, doc, "hub-abuse-0002-enrol"), doc)
    assert (status, answer["status"]) == (201, "enrolled"), answer


async def test_one_address_holds_at_most_its_share_of_connections(tmp_path: Path, tls: TlsFiles) -> None:
    async for receiver in _start(tmp_path, tls, "--max-per-peer", "4"):
        held = [await wire.connect(receiver.url, receiver.ca, source="127.0.3.1") for _ in range(4)]
        with pytest.raises((ConnectionError, ssl.SSLError, OSError)):
            await wire.connect(receiver.url, receiver.ca, source="127.0.3.1")  # the fifth: closed unread
        event_id, body = receiver.event(6)
        url = receiver.url + "/v1/events"
        status, answer = await wire.send_split(url, receiver.ca, signed_headers(receiver.key, HUB, url, body,
                                                                                event_id), body, source="127.0.3.2")
        assert status == 201  # another address is served meanwhile
        held[0][1].transport.abort()
        await asyncio.sleep(0.3)
        _, writer = await wire.connect(receiver.url, receiver.ca, source="127.0.3.1")  # room again
        writer.close()
        for _, w in held[1:]:
            w.close()


def test_peers_are_addresses_and_ipv6_prefixes() -> None:
    assert guard.peer_key("192.0.2.7") == "192.0.2.7"
    assert guard.peer_key("::ffff:192.0.2.7") == "192.0.2.7"
    assert guard.peer_key("2001:db8:1:2:aaaa::1") == guard.peer_key("2001:db8:1:2:bbbb::9") == "2001:db8:1:2::/64"
    assert guard.peer_key("2001:db8:1:3::1") != guard.peer_key("2001:db8:1:2::1")

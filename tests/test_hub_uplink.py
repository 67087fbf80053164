"""The relay and its platform client against a stand-in platform: a real aiohttp server on 127.0.0.1 with real TLS.

The stand-in checks every request with the protocol's own `signing.Verifier`, records it and
answers from a script. Time is injected: backoff and Retry-After waits advance a fake clock
instead of passing, so the only real waiting is the one timeout test (0.3 s).
"""

from __future__ import annotations

import asyncio
import json
import time
import logging
import random
import re
import ssl
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
import trustme
from aiohttp import web
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from safebox.hub.config import PlatformConfig
from safebox.hub.store import HubStore
from safebox.hub.uplink import PlatformClient
from safebox.hub.uplink.held import held
from safebox.protocol import events, signing
from tests.relay_kit import RelayRig, run_until

HUB = "hub-7f3a9c"
START = 1_790_000_000.0
KEY = Ed25519PrivateKey.generate()


class FakeTime:
    """The uplink's clock and sleep: sleeping advances the clock at once and is recorded."""

    def __init__(self) -> None:
        self.now = START
        self.sleeps: list[float] = []

    def clock(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds
        await asyncio.sleep(0)


@dataclass
class Received:
    event_id: str
    nonce: str
    signature: str
    body: bytes
    at: float
    verified: str  # the keyid the Verifier accepted, or the refusal


Answer = Any  # int status | (status, json body, headers) | "hang"


class Platform:
    """The district platform's stand-in: verifies, records, answers from `answers` (then 201)."""

    def __init__(self, clock: Callable[[], float]) -> None:
        self.clock = clock
        self.answers: list[Answer] = []
        self.received: list[Received] = []
        self.release = asyncio.Event()
        self.batch: Callable[[web.Request], Any] | None = None
        self.down_until = -float("inf")  # answers 500 to everything before this time (an outage)
        self.verifier = signing.Verifier(lambda kid: KEY.public_key() if kid == HUB else None,
                                         signing.MemoryNonceStore(clock), clock=clock)

    async def handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        try:
            verified = self.verifier.verify(request.method, str(request.url), request.headers, body)
        except signing.Refusal as refusal:
            verified = f"refused: {refusal.reason}"
        event_id = request.headers["Idempotency-Key"]
        nonce = re.search(r'nonce="([^"]+)"', request.headers["Signature-Input"]).group(1)
        self.received.append(Received(event_id, nonce, request.headers["Signature"], body, self.clock(), verified))
        if self.clock() < self.down_until:
            return web.json_response({"status": "error"}, status=500)
        answer = self.answers.pop(0) if self.answers else 201
        if answer == "hang":
            try:
                await asyncio.wait_for(self.release.wait(), 5)
            except asyncio.TimeoutError:
                pass
            answer = 201
        status, doc, headers = answer if isinstance(answer, tuple) else (answer, None, {})
        if doc is None:
            doc = {"status": {201: "accepted", 200: "duplicate"}.get(status, "error"), "event_id": event_id}
        return web.json_response(doc, status=status, headers=headers)

    @property
    def event_ids(self) -> list[str]:
        return [r.event_id for r in self.received]


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture
def ca_file(tmp_path: Path, ca: trustme.CA) -> Path:
    path = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(path))
    return path


@pytest.fixture
def fake_time() -> FakeTime:
    return FakeTime()


@pytest.fixture
async def platform(ca: trustme.CA, fake_time: FakeTime):
    server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1", "localhost").configure_cert(server_ctx)
    platform = Platform(fake_time.clock)
    app = web.Application()
    app.router.add_post("/v1/events", platform.handle)

    async def batch(request: web.Request) -> web.Response:
        if platform.batch is None:
            raise web.HTTPNotFound()  # the stand-in has no batch endpoint unless a test gives it one
        return await platform.batch(request)

    app.router.add_post("/v1/events:batch", batch)
    runner = web.AppRunner(app, shutdown_timeout=1.0)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=server_ctx)
    await site.start()
    platform.url = f"https://127.0.0.1:{runner.addresses[0][1]}"
    yield platform
    platform.release.set()
    await runner.cleanup()


@pytest.fixture
def store(tmp_path: Path):
    with HubStore.open(tmp_path / "hub.db", clock=lambda: START) as s:
        yield s


def make_uplink(store: HubStore, platform: Platform, ca_file: Path, fake_time: FakeTime,
                delivered: list[str] | None = None, **kwargs: Any) -> RelayRig:
    args: dict[str, Any] = dict(
        url=platform.url, hub_id=HUB, private_key=KEY,
        ssl_context=PlatformConfig(url=platform.url, ca_file=ca_file).ssl_context(),
        clock=fake_time.clock, sleep=fake_time.sleep, rng=random.Random(7),
        on_delivered=None if delivered is None else delivered.append)
    args.update(kwargs)
    return RelayRig(store, **args)


def store_event(store: HubStore, device_id: str = "240ac4123456", counter: int = 10,
                type_: str = events.EMERGENCY, role: str = "pendant") -> tuple[str, bytes]:
    body = events.encode(events.make(
        event_id=f"{device_id}-{counter}", type=type_, hub_id=HUB, home_id="home-0001", occurred_at=START,
        device={"id": device_id, "role": role, "room": "hall"}, counter=counter, data={"battery": 80}))
    assert store.accept(device_id, counter, body).kind == "new"
    return f"{device_id}-{counter}", body


async def test_retries_after_500s_then_delivers_exactly_once(store, platform, ca_file, fake_time) -> None:
    event_id, body = store_event(store)
    platform.answers = [500, 500, 201]
    delivered: list[str] = []
    uplink = make_uplink(store, platform, ca_file, fake_time, delivered)
    await run_until(uplink, lambda: store.depth() == 0)
    assert delivered == [event_id]
    assert platform.event_ids == [event_id] * 3
    assert all(r.body == body for r in platform.received)  # the stored bytes, exactly
    assert [r.verified for r in platform.received] == [HUB] * 3
    assert len({r.nonce for r in platform.received}) == 3  # signed afresh each time
    assert len({r.signature for r in platform.received}) == 3
    jitter = random.Random(7)  # full jitter: uniform(0, min(max, initial * 2^attempts))
    expected = [jitter.uniform(0, 1.0), jitter.uniform(0, 2.0)]
    assert fake_time.sleeps == pytest.approx(expected)
    assert platform.received[1].at - platform.received[0].at == pytest.approx(expected[0])
    assert store.dead_letters() == []


@pytest.mark.parametrize("status, header, retry_after, wait", [
    (503, "120", 30, 120.0),   # the longer of header and body
    (503, "10", 60, 60.0),
    (429, None, 45, 45.0),     # body only
    (429, "7", None, 7.0),     # header only
])
async def test_busy_platform_is_waited_for(store, platform, ca_file, fake_time, status, header,
                                           retry_after, wait) -> None:
    event_id, _ = store_event(store)
    doc = {"status": "retry_later", "event_id": event_id}
    if retry_after is not None:
        doc["retry_after"] = retry_after
    platform.answers = [(status, doc, {"Retry-After": header} if header else {}), 201]
    uplink = make_uplink(store, platform, ca_file, fake_time)
    await run_until(uplink, lambda: store.depth() == 0)
    assert platform.event_ids == [event_id, event_id]
    assert platform.received[1].at - platform.received[0].at == pytest.approx(wait)
    assert fake_time.sleeps == pytest.approx([wait])


async def test_rejection_goes_to_dead_letters_with_reason(store, platform, ca_file, fake_time) -> None:
    event_id, body = store_event(store, "240ac4000002", 8, events.DOOR_CLOSED, "front_door")
    store_event(store, "240ac4000001", 3, events.DOOR_OPENED, "front_door")
    platform.answers = [(400, {"status": "rejected", "event_id": event_id, "reason": "home_id: unknown home"}, {})]
    delivered: list[str] = []
    uplink = make_uplink(store, platform, ca_file, fake_time, delivered)
    await run_until(uplink, lambda: store.depth() == 0)
    [dead] = store.dead_letters()
    assert (dead.event_id, dead.reason, dead.body, dead.attempts) == (
        event_id, "400 rejected: home_id: unknown home", body, 1)
    assert delivered == ["240ac4000001-3"]  # the next event is not held up
    assert platform.event_ids == [event_id, "240ac4000001-3"] and fake_time.sleeps == []


async def test_timeout_is_retried(store, platform, ca_file, fake_time, caplog) -> None:
    caplog.set_level(logging.INFO, logger="safebox.hub.uplink")
    event_id, _ = store_event(store)
    platform.answers = ["hang", 201]
    delivered: list[str] = []
    uplink = make_uplink(store, platform, ca_file, fake_time, delivered, timeout_s=0.3)
    await run_until(uplink, lambda: store.depth() == 0)
    assert delivered == [event_id] and platform.event_ids == [event_id, event_id]
    lines = [r.getMessage() for r in caplog.records if r.name == "safebox.hub.uplink"]
    assert re.fullmatch(rf"event {event_id}: timeout, after \d+ ms; retry in \d+\.\d s \(attempt 1\)", lines[0])
    assert re.fullmatch(rf"event {event_id}: delivered, 201 in \d+ ms", lines[1])
    assert KEY.public_key().public_bytes_raw().hex() not in caplog.text


async def test_urgent_first_then_the_rest_in_order(store, platform, ca_file, fake_time) -> None:
    store_event(store, "240ac4000001", 3, events.DOOR_OPENED, "front_door")
    hub_event = events.encode(events.make(event_id=events.hub_event_id(HUB, store.next_hub_seq()),
                                          type=events.BATTERY_LOW, hub_id=HUB, home_id="home-0001",
                                          occurred_at=START))
    hub_id = store.enqueue(hub_event)
    store_event(store, "240ac4123456", 10, events.EMERGENCY)
    calls: list[str] = []

    uplink = make_uplink(store, platform, ca_file, fake_time, on_delivered=calls.append)
    await run_until(uplink, lambda: store.depth() == 0)
    assert platform.event_ids == ["240ac4123456-10", "240ac4000001-3", hub_id]
    assert calls == platform.event_ids


async def test_notify_wakes_the_idle_loop(store, platform, ca_file, fake_time) -> None:
    uplink = make_uplink(store, platform, ca_file, fake_time)
    task = asyncio.create_task(uplink.run())
    await asyncio.sleep(0.05)
    event_id, _ = store_event(store)
    await asyncio.sleep(0.1)
    assert platform.received == []  # stored but not announced: the loop sleeps
    uplink.notify()
    async with asyncio.timeout(5):
        while store.depth():
            await asyncio.sleep(0.005)
    assert platform.event_ids == [event_id]
    await uplink.close()
    await task


async def test_untrusted_certificate_is_refused(store, platform, fake_time, tmp_path) -> None:
    other_ca = tmp_path / "other-ca.pem"
    trustme.CA().cert_pem.write_to_path(str(other_ca))
    event_id, _ = store_event(store)
    uplink = make_uplink(store, platform, other_ca, fake_time)
    await run_until(uplink, lambda: store.get(event_id).attempts >= 2)
    assert "CERTIFICATE_VERIFY_FAILED" in store.get(event_id).last_error
    assert platform.received == [] and store.pending(event_id)


def test_tls_verification_cannot_be_switched_off(store, ca_file) -> None:
    off = ssl.create_default_context()
    off.check_hostname = False
    off.verify_mode = ssl.CERT_NONE
    no_host = ssl.create_default_context()
    no_host.check_hostname = False
    for ctx in (off, no_host):
        with pytest.raises(ValueError, match="TLS verification cannot be switched off"):
            PlatformClient("https://127.0.0.1:1", hub_id=HUB, private_key=KEY, ssl_context=ctx)
    with pytest.raises(ValueError, match="must be https://"):
        PlatformClient("http://127.0.0.1:1", hub_id=HUB, private_key=KEY, ssl_context=ssl.create_default_context())


async def test_close_abandons_the_attempt_in_flight_and_is_safe_twice(store, platform, ca_file, fake_time) -> None:
    event_id, _ = store_event(store)
    platform.answers = ["hang"]
    uplink = make_uplink(store, platform, ca_file, fake_time)
    task = asyncio.create_task(uplink.run())
    async with asyncio.timeout(5):
        while not platform.received:
            await asyncio.sleep(0.005)
    async with asyncio.timeout(1):  # well before the 10 s timeout or the 5 s hang
        await uplink.close()
        await uplink.close()
        await task
    item = store.get(event_id)
    assert (item.attempts, item.last_error) == (0, None)  # not counted as a failure: it simply waits
    await uplink.run()  # after close: returns at once


async def test_close_before_run(store, platform, ca_file, fake_time) -> None:
    uplink = make_uplink(store, platform, ca_file, fake_time)
    await uplink.close()
    await uplink.close()
    async with asyncio.timeout(1):
        await uplink.run()
    assert platform.received == []


# -- batches, the backlog bound, the clock (issue 4) ------------------------------------------

def door_backlog(store: HubStore, count: int, device_id: str = "240ac4000001") -> list[str]:
    return [store_event(store, device_id, n + 1, events.DOOR_OPENED if n % 2 == 0 else events.DOOR_CLOSED,
                        "front_door")[0] for n in range(count)]


async def test_a_platform_without_batches_gets_one_request_per_event(store, platform, ca_file, fake_time,
                                                                    caplog) -> None:
    caplog.set_level(logging.INFO, logger="safebox.hub.uplink")
    ids = door_backlog(store, 5)
    uplink = make_uplink(store, platform, ca_file, fake_time, batch_max=100)
    await run_until(uplink, lambda: store.depth() == 0)
    assert platform.event_ids == ids  # the stand-in has no /v1/events:batch (404): one by one, in order
    assert not uplink.health.batching
    assert any("platform has no batch endpoint (404)" in r.getMessage() for r in caplog.records)


async def test_a_batch_refused_as_a_whole_is_sent_one_by_one(store, platform, ca_file, fake_time) -> None:
    ids = door_backlog(store, 3)

    async def refuse(request: web.Request) -> web.Response:
        return web.json_response({"status": "rejected", "event_id": None, "reason": "nonce already used"},
                                 status=401)

    platform.batch = refuse
    uplink = make_uplink(store, platform, ca_file, fake_time, batch_max=100)
    await run_until(uplink, lambda: store.depth() == 0)
    assert platform.event_ids == ids and store.dead_letters() == []


async def test_a_busy_answer_to_a_batch_pauses_all_sending(store, platform, ca_file, fake_time) -> None:
    ids = door_backlog(store, 3)
    calls: list[float] = []

    async def busy_once(request: web.Request) -> web.Response:
        calls.append(fake_time.now)
        if len(calls) == 1:
            return web.json_response({"status": "retry_later", "event_id": None, "reason": "busy",
                                      "retry_after": 90}, status=503, headers={"Retry-After": "90"})
        return web.json_response({"status": "batch", "event_id": None, "reason": None, "results": [
            {"event_id": i, "status": "accepted", "code": 201, "reason": None} for i in ids]})

    platform.batch = busy_once
    uplink = make_uplink(store, platform, ca_file, fake_time, batch_max=100)
    await run_until(uplink, lambda: store.depth() == 0)
    assert calls[1] - calls[0] == pytest.approx(90) and platform.received == []


async def test_an_answer_in_two_tcp_segments_is_read_whole(store, platform, ca_file, fake_time) -> None:
    """A read returns what has arrived so far: the hub must read the answer to its end, or a
    batch answer split across segments is unreadable and all its events are sent again."""
    ids = door_backlog(store, 40)
    calls: list[int] = []

    async def slow(request: web.Request) -> web.StreamResponse:
        calls.append(1)
        doc = json.dumps({"status": "batch", "event_id": None, "reason": None, "results": [
            {"event_id": i, "status": "accepted", "code": 201, "reason": None} for i in ids]}).encode()
        response = web.StreamResponse(status=200, headers={"Content-Type": "application/json"})
        response.content_length = len(doc)
        await response.prepare(request)
        await response.write(doc[:100])
        await asyncio.sleep(0.2)  # the rest arrives later, in its own segment
        await response.write(doc[100:])
        return response

    platform.batch = slow
    uplink = make_uplink(store, platform, ca_file, fake_time, batch_max=100)
    await run_until(uplink, lambda: store.depth() == 0)
    assert len(calls) == 1 and platform.received == []


async def test_over_the_backlog_bound_routine_events_go_first_and_urgent_never(store, platform, ca_file,
                                                                              fake_time, caplog) -> None:
    caplog.set_level(logging.WARNING, logger="safebox.hub.uplink")
    doors = door_backlog(store, 120)
    low = [store.enqueue(events.encode(events.make(
        event_id=events.hub_event_id(HUB, store.next_hub_seq()), type=events.BATTERY_LOW, hub_id=HUB,
        home_id="home-0001", occurred_at=START))) for _ in range(10)]
    presses = [store_event(store, "240ac4000099", n, events.EMERGENCY)[0] for n in range(1, 6)]
    platform.answers = [(503, {"status": "retry_later", "event_id": None, "retry_after": 3600},
                         {"Retry-After": "3600"})] * 100  # down for good
    uplink = make_uplink(store, platform, ca_file, fake_time, max_backlog=100)
    await run_until(uplink, lambda: len(platform.received) >= 1)
    assert store.depth() == 100
    dropped = {d.event_id for d in store.dead_letters(limit=1000)}
    assert dropped == set(doors[:35])  # the oldest routine events, nothing else
    assert all(d.reason == "dropped: outbox over its maximum backlog of 100 events"
               for d in store.dead_letters(limit=1000))
    assert all(store.pending(e) for e in low + presses)
    [line] = [r.getMessage() for r in caplog.records if "maximum backlog" in r.getMessage()]
    assert f"dropped the 35 oldest non-urgent ({doors[0]} .. {doors[34]})" in line and "35 dropped since" in line

    # with no routine events left, the oldest other non-urgent ones; urgent ones never
    assert store.trim_backlog(10, {events.DOOR_OPENED, events.DOOR_CLOSED}) == doors[35:] + low[:5]
    assert store.trim_backlog(1, set()) == low[5:]
    assert store.depth() == 5 and all(store.pending(e) for e in presses)


async def test_a_hub_clock_far_off_is_said_and_signed_with_the_platforms_time(store, platform, ca_file,
                                                                              fake_time, caplog) -> None:
    import time as real_time
    caplog.set_level(logging.INFO, logger="safebox.hub.uplink")
    fake_time.now = real_time.time() - 400  # the hub booted with an old clock; the platform's is right
    platform.verifier = signing.Verifier(lambda kid: KEY.public_key() if kid == HUB else None,
                                         signing.MemoryNonceStore(real_time.time), clock=real_time.time)
    event_id, _ = store_event(store)
    platform.answers = [(401, {"status": "rejected", "event_id": event_id,
                               "reason": "created 400 s ago, older than 300 s"}, {})]
    uplink = make_uplink(store, platform, ca_file, fake_time, clock_check=True,
                         clock_problem=lambda: "clock not synchronised")
    await run_until(uplink, lambda: store.depth() == 0 or store.dead_letters() != [])
    assert store.dead_letters() == []
    first, second = [r.verified for r in platform.received]
    assert re.fullmatch(r"refused: created 40\d s ago, older than 300 s", first) and second == HUB
    lines = [r.getMessage() for r in caplog.records]
    assert any(re.match(r"hub clock is -\d+ s off the platform's .*signing with the platform's time", m)
               for m in lines)
    assert any(m.startswith(f"event {event_id}: delivered") and "NOT trusted" in m for m in lines)


async def test_after_an_outage_the_emergency_is_stored_within_2_s_then_the_backlog_at_once(
        store, platform, ca_file, fake_time) -> None:
    """Routine events pile up during a 10-minute outage (their backoff grows to minutes) and a
    press is made in it; the platform comes back: the press is stored within 2 s, and the rest
    is reconsidered at once instead of each waiting out its own backoff."""
    doors = [store_event(store, f"240ac40000{d:02x}", n, events.DOOR_OPENED, "front_door")[0]
             for n in range(1, 6) for d in range(3)]
    press, _ = store_event(store, "240ac4123456", 7, events.EMERGENCY)
    platform.down_until = START + 600
    uplink = make_uplink(store, platform, ca_file, fake_time, backoff_max_s=300)
    await run_until(uplink, lambda: store.depth() == 0, timeout_s=30)
    stored = {r.event_id: r.at for r in platform.received if r.at >= platform.down_until}
    assert stored[press] - platform.down_until <= 2.0
    assert max(stored[d] for d in doors) - platform.down_until <= 3.0
    assert min(stored, key=stored.get) == press  # urgent first


async def test_an_urgent_event_refused_is_held_loudly_never_dead_lettered(store, platform, ca_file, fake_time,
                                                                        caplog) -> None:
    """The platform lost the hub's key: the emergency is refused (401) again and again. It is
    retried, said at CRITICAL and kept in the database for `status`; once the platform takes it,
    an urgent_refused event tells the call centre it came late and why."""
    caplog.set_level(logging.INFO, logger="safebox.hub.uplink")
    event_id, _ = store_event(store)
    refusal = (401, {"status": "rejected", "event_id": event_id, "reason": "unknown keyid"}, {})
    platform.answers = [refusal] * 10  # more than are asked for: the relay may retry while it is being closed
    uplink = make_uplink(store, platform, ca_file, fake_time, home_id="home-0001")
    await run_until(uplink, lambda: len(platform.received) >= 3)
    assert store.dead_letters() == [] and store.pending(event_id)
    assert held(store) == {"event_ids": [event_id], "reason": "401 rejected: unknown keyid", "since": START}
    critical = [r for r in caplog.records if r.levelno == logging.CRITICAL]
    assert len(critical) == 1 and event_id in critical[0].getMessage()  # said once, not per retry

    platform.answers = []  # the platform has the hub's key again
    uplink = make_uplink(store, platform, ca_file, fake_time, home_id="home-0001")
    await run_until(uplink, lambda: store.depth() == 0)
    assert held(store) is None
    [late, told] = [events.decode(r.body) for r in platform.received[-2:]]
    assert late["event_id"] == event_id
    assert told["type"] == events.URGENT_REFUSED and told["data"]["event_ids"] == [event_id]
    assert told["data"]["reason"] == "401 rejected: unknown keyid"
    # held from the first refusal (START, the fake clock) to the news itself, in seconds
    assert told["data"]["refused_since"] == events.timestamp(START)
    held_for = datetime.fromisoformat(told["occurred_at"]).timestamp() - START
    assert held_for > 0 and told["data"]["held_s"] == round(held_for), (told, held_for)


async def test_the_platforms_clock_offset_is_reported_for_keeping(store, platform, ca_file, fake_time) -> None:
    """The platform's Date minus the hub clock: handed over when it changes by a second or more,
    so the hub keeps it across restarts (its events' times are corrected by it)."""
    kept: list[float] = []
    event_id, _ = store_event(store)
    ctx = PlatformConfig(url=platform.url, ca_file=ca_file).ssl_context()
    async with PlatformClient(platform.url, hub_id=HUB, private_key=KEY, ssl_context=ctx, clock=fake_time.clock,
                              on_offset=kept.append) as client:
        for _ in range(2):
            assert (await client.send_event(store.get(event_id))).status in (200, 201)
    assert len(kept) == 1  # the second answer said the same
    assert abs(kept[0] - (time.time() - START)) < 5  # the stand-in's Date is real time; the hub's clock is START
    assert client.offset_to_apply() == kept[0]

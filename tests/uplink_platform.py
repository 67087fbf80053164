"""The district platform's stand-in for the uplink's tests: a real aiohttp server on 127.0.0.1 with real TLS.

The stand-in checks every request with the protocol's own `signing.Verifier`, records it and
answers from a script. Time is injected (`FakeTime`): backoff and Retry-After waits advance a
fake clock instead of passing. The fixtures (`ca`, `ca_file`, `fake_time`, `platform`, `store`)
are imported by the test modules that use them.
"""

from __future__ import annotations

import asyncio
import random
import re
import ssl
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import trustme
from aiohttp import web
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from safebox.hub.config import PlatformConfig
from safebox.hub.store import HubStore
from safebox.protocol import events, signing
from tests.relay_kit import RelayRig

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

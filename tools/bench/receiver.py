"""Receiver throughput: verified, stored requests per second over real TLS.

The reference receiver's aiohttp application (`tools/receiver/app.make_app`, SQLite store
with synchronous=FULL, the RFC 9421 verifier with its persisted nonce store) is served over
TLS (a throwaway CA) in this process; a client with N connections posts pre-signed events
(each a new event with a fresh nonce, signed by an enrolled hub key before the clock starts).
Every answer must be 201.

Baseline, side by side under the same conditions: an aiohttp application on the same TLS
set-up that reads the body and answers 201 with a small JSON object: no verification, no
storage. The ratio (ours / baseline) is the share of the HTTP+TLS ceiling that survives
verifying and storing.

Server and client share one event loop (one core): the figures are for the pair.

    python -m safebox.tools.bench.receiver [--quick]
"""

from __future__ import annotations

import asyncio
import ssl
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from safebox.protocol import events, signing
from safebox.tools import tlsca
from safebox.tools.bench import Table, machine_line, quick_main
from safebox.tools.receiver.app import make_app
from safebox.tools.receiver.store import Store

HUB_ID = "hub-bench-0001"


def _requests(url: str, key: Ed25519PrivateKey, count: int, tag: str) -> list[tuple[bytes, dict[str, str]]]:
    out = []
    now = time.time()
    for n in range(count):
        dev = f"240ac4{n % 16:06x}"
        counter = 1 + n // 16
        body = events.encode(events.make(
            event_id=f"{dev}-{counter}", type=events.EMERGENCY, hub_id=HUB_ID, home_id="home-bench-0001",
            occurred_at=now, device={"id": dev, "role": "pendant", "room": tag}, counter=counter,
            data={"battery": 80, "action": "press"}))
        out.append((body, signing.signed_headers(key, HUB_ID, url + "/v1/events", body, f"{dev}-{counter}", now=now)))
    return out


async def _serve(app: web.Application, tls: ssl.SSLContext) -> tuple[web.AppRunner, str]:
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=tls)
    await site.start()
    port = runner.addresses[0][1]
    return runner, f"https://127.0.0.1:{port}"


async def _load(url: str, requests: list[tuple[bytes, dict[str, str]]], concurrency: int,
                client_tls: ssl.SSLContext) -> tuple[float, dict[int, int]]:
    statuses: dict[int, int] = {}
    queue = list(reversed(requests))
    connector = aiohttp.TCPConnector(ssl=client_tls, limit=concurrency)
    async with aiohttp.ClientSession(connector=connector) as session:
        # One request per connection first, so the TLS handshakes are not timed.
        async def warm() -> None:
            async with session.get(url + "/v1/health") as resp:
                await resp.read()
        await asyncio.gather(*(warm() for _ in range(concurrency)))

        async def worker() -> None:
            while queue:
                body, headers = queue.pop()
                async with session.post(url + "/v1/events", data=body, headers=headers) as resp:
                    await resp.read()
                    statuses[resp.status] = statuses.get(resp.status, 0) + 1

        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        elapsed = time.perf_counter() - started
    return len(requests) / elapsed, statuses


def _baseline_app() -> web.Application:
    async def post(request: web.Request) -> web.Response:
        await request.read()
        return web.json_response({"status": "accepted", "event_id": request.headers.get("Idempotency-Key"),
                                  "reason": None}, status=201)

    async def health(request: web.Request) -> web.Response:
        return web.json_response({"status": "ok"})

    app = web.Application(client_max_size=events.MAX_BODY)
    app.add_routes([web.post("/v1/events", post), web.get("/v1/health", health)])
    return app


async def _measure(make: Callable[[Path], tuple[web.Application, Callable[[], None]]], tmp: Path, tls_files: Any,
                   key: Ed25519PrivateKey, count: int, concurrency: int, tag: str) -> tuple[float, dict[int, int]]:
    server_tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_tls.load_cert_chain(tls_files.server_cert_chain, tls_files.server_key)
    client_tls = ssl.create_default_context(cafile=str(tls_files.ca_cert))
    app, close = make(tmp)
    runner, url = await _serve(app, server_tls)
    try:
        requests = _requests(url, key, count, tag)
        return await _load(url, requests, concurrency, client_tls)
    finally:
        await runner.cleanup()
        close()


async def _run(quick: bool) -> list[Table]:
    count = 60 if quick else 1500
    levels = (1, 8) if quick else (1, 8, 32)
    key = Ed25519PrivateKey.generate()
    rows: list[list[Any]] = []
    with tempfile.TemporaryDirectory(prefix="safebox-bench-receiver-") as tmp_text:
        tmp = Path(tmp_text)
        tls_files = tlsca.make_ca(tmp / "tls")
        for concurrency in levels:
            db_path = tmp / f"events-{concurrency}.db"

            def ours(_: Path, db_path: Path = db_path) -> tuple[web.Application, Callable[[], None]]:
                store = Store(db_path)
                store.add_hub(HUB_ID, signing.public_key_to_text(key.public_key()), now=time.time())
                return make_app(store), store.close

            def baseline(_: Path) -> tuple[web.Application, Callable[[], None]]:
                return _baseline_app(), lambda: None

            rate, statuses = await _measure(ours, tmp, tls_files, key, count, concurrency, f"c{concurrency}")
            if statuses != {201: count}:
                raise AssertionError(f"receiver answered {statuses}, expected {count} x 201")
            base, base_statuses = await _measure(baseline, tmp, tls_files, key, count, concurrency, "base")
            if base_statuses != {201: count}:
                raise AssertionError(f"baseline answered {base_statuses}")
            rows.append([concurrency, f"{rate:,.0f}", f"{1000 / rate:.2f}", f"{base:,.0f}", f"{rate / base:.2f}x"])
    notes = [f"{count:,} POST /v1/events per run, each a new event (201), Ed25519-signed with a fresh nonce "
             "before the clock starts; TLS handshakes done before timing (keep-alive connections).",
             "receiver: verify signature, digest, time window and nonce (nonce persisted), validate the body, "
             "store it (SQLite WAL, synchronous=FULL), answer.",
             "baseline: same server and TLS, handler reads the body and answers 201 JSON (no verify, no store).",
             "server and client share one event loop in one process (one core for both).",
             f"machine: {machine_line()}"]
    return [Table("Receiver: verified and stored requests per second (real TLS)",
                  ["connections", "verified req/s", "ms/req", "baseline req/s", "ratio"], rows, notes)]


def run(quick: bool = False) -> list[Table]:
    return asyncio.run(_run(quick))


def main(argv: list[str] | None = None) -> int:
    return quick_main("receiver", __doc__, run, argv)


if __name__ == "__main__":
    raise SystemExit(main())

"""The hubs' listener under overload (tools/receiver/overload.py): while its loop runs late a
batch is answered 503 + Retry-After before anything is stored; a single event (urgent events
travel alone) is stored and answered as always; on time, batches are served again."""

from __future__ import annotations

import asyncio
import random
import time

import aiohttp
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from safebox.hub.uplink import batch_key
from safebox.protocol import events, signing
from safebox.tools.receiver.app import make_app
from safebox.tools.receiver.overload import HOLD_S, RETRY_AFTER_S, Overload
from safebox.tools.receiver.store import Store

from .tls_site import serving

HUB = "hub-busy-0001"


def _body(counter: int, type_: str) -> dict:
    return events.make(event_id=f"240ac4000001-{counter}", type=type_, hub_id=HUB, home_id="home-0001",
                       occurred_at=time.time(), device={"id": "240ac4000001", "role": "front_door", "room": "hall"},
                       counter=counter, data={})


async def test_a_late_loop_sends_batches_back_later_and_still_stores_an_emergency(tmp_path) -> None:
    key = Ed25519PrivateKey.generate()
    store = Store(tmp_path / "events.db")
    store.add_hub(HUB, signing.public_key_to_text(key.public_key()), now=time.time())
    app = make_app(store)
    overload = Overload(lag_limit_s=0.5, rng=random.Random(3))  # a lower limit than serve's, for a short test
    overload.install(app)
    try:
        async with serving(app, tmp_path / "tls") as site, \
                aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=site.client_ssl)) as http:
            base = site.url

            async def batch(counters: list[int]) -> aiohttp.ClientResponse:
                bodies = [_body(n, events.DOOR_OPENED) for n in counters]
                raw = b"[" + b",".join(events.encode(b) for b in bodies) + b"]"
                url = base + "/v1/events:batch"
                headers = signing.signed_headers(key, HUB, url, raw, batch_key([b["event_id"] for b in bodies]))
                async with http.post(url, data=raw, headers=headers) as r:
                    await r.read()
                    return r

            async def single(counter: int, type_: str) -> int:
                body = _body(counter, type_)
                raw, url = events.encode(body), base + "/v1/events"
                async with http.post(url, data=raw, headers=signing.signed_headers(
                        key, HUB, url, raw, body["event_id"])) as r:
                    return r.status

            overload.late_until = float("inf")  # as if the loop ran late
            r = await batch([1, 2])
            assert r.status == 503 and RETRY_AFTER_S[0] <= int(r.headers["Retry-After"]) <= RETRY_AFTER_S[1]
            assert (await r.json())["status"] == "retry_later" and store.count_events() == 0
            assert await single(3, events.EMERGENCY) == 201  # an urgent event is never sent back
            # the loop really late: a callback holding it up for 0.8 s, seen by the watcher
            overload.late_until = 0.0
            asyncio.get_running_loop().call_soon(time.sleep, 0.8)
            await asyncio.sleep(0.1)
            assert overload.lag_s > 0.5
            assert (await batch([1, 2])).status == 503  # busy for HOLD_S after the late tick
            await asyncio.sleep(HOLD_S + 0.2)  # on time again
            assert (await batch([1, 2])).status == 200
            assert store.count_events() == 3 and overload.shed == 2
    finally:
        store.close()

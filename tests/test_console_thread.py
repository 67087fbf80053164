"""`safebox-receiver serve --operator-port`: the operators' listener in its own thread, as deployed.
An event a hub stores on the hubs' listener reaches a screen open on the operators' listener
(the other thread's feed is woken), and stopping the receiver ends the open screens' streams
at once instead of waiting out aiohttp's shutdown timeout."""

from __future__ import annotations

import asyncio
import re
import ssl
import subprocess
import sys
import time

import aiohttp
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from safebox.protocol import events, signing
from safebox.tools.receiver.console.accounts import Accounts
from safebox.tools.receiver.store import Store
from safebox.tools.tlsca import make_ca

from .console_world import PASSWORD
from .test_console_screen import _next_panels

HUB = "hub-thread-0001"


async def test_a_hubs_event_reaches_the_screen_across_threads_and_a_stop_ends_open_screens(tmp_path) -> None:
    tls = make_ca(tmp_path / "tls")
    key = Ed25519PrivateKey.generate()
    store = Store(tmp_path / "events.db")
    store.add_hub(HUB, signing.public_key_to_text(key.public_key()), now=time.time())
    Accounts(store).add("li", PASSWORD, now=time.time())
    store.close()
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "safebox.tools.receiver.cli", "serve", "--db", str(tmp_path / "events.db"),
        "--host", "127.0.0.1", "--port", "0", "--operator-host", "127.0.0.1", "--operator-port", "0",
        "--cert", str(tls.server_cert_chain), "--key", str(tls.server_key),
        stdout=asyncio.subprocess.PIPE, stderr=subprocess.DEVNULL)
    try:
        urls: dict[str, str] = {}
        async with asyncio.timeout(30):
            while "listening on" not in urls:
                line = (await proc.stdout.readline()).decode()
                assert line, "the receiver ended before it listened"
                if m := re.match(r"(operators on|listening on) (https://\S+)", line):
                    urls[m.group(1)] = m.group(2)
        client_tls = ssl.create_default_context(cafile=str(tls.ca_cert))
        async with aiohttp.ClientSession(urls["operators on"], cookie_jar=aiohttp.CookieJar(unsafe=True),
                                         connector=aiohttp.TCPConnector(ssl=client_tls)) as http:
            async with http.get("/login") as page:
                token = re.search(r'name="csrf" value="([^"]+)"', await page.text()).group(1)
            async with http.post("/login", data={"csrf": token, "name": "li", "password": PASSWORD},
                                 allow_redirects=False) as r:
                assert r.status == 303
            async with http.get("/live") as live:
                assert "Nothing waiting." in await _next_panels(live)
                body = events.make(event_id="240ac4000001-7", type=events.EMERGENCY, hub_id=HUB, home_id="home-0001",
                                   occurred_at=time.time(), device={"id": "240ac4000001", "role": "pendant",
                                                                    "room": "bedroom"}, counter=7, data={})
                raw, url = events.encode(body), urls["listening on"] + "/v1/events"
                async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=client_tls)) as hub:
                    async with hub.post(url, data=raw, headers=signing.signed_headers(
                            key, HUB, url, raw, body["event_id"])) as r:
                        assert r.status == 201
                assert 'data-event="240ac4000001-7"' in await _next_panels(live)
                proc.terminate()
                async with asyncio.timeout(10):  # not aiohttp's 60 s wait for open handlers
                    assert await proc.wait() == 0
                    assert b"event:" not in await live.content.read()  # the stream ended, nothing after
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()

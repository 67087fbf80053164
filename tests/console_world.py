"""A receiver with its operators' listener, in-process over real TLS, for the console's tests."""

from __future__ import annotations

import re
import ssl
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

import aiohttp
from aiohttp import web

from safebox.tools.receiver.console import make_console_app
from safebox.tools.receiver.console.accounts import Accounts
from safebox.tools.receiver.store import Store

from .tls_site import serving

PASSWORD = "correct horse battery"


@dataclass
class Console:
    url: str
    store: Store
    app: web.Application
    client_ssl: ssl.SSLContext

    def session(self) -> aiohttp.ClientSession:
        # unsafe=True: keep cookies from an IP address (127.0.0.1)
        return aiohttp.ClientSession(self.url, cookie_jar=aiohttp.CookieJar(unsafe=True),
                                     connector=aiohttp.TCPConnector(ssl=self.client_ssl))

    async def login(self, http: aiohttp.ClientSession, name: str = "li", password: str = PASSWORD) -> aiohttp.ClientResponse:
        async with http.get("/login") as page:
            token = re.search(r'name="csrf" value="([^"]+)"', await page.text()).group(1)
        return await http.post("/login", data={"csrf": token, "name": name, "password": password},
                               allow_redirects=False)

    async def csrf(self, http: aiohttp.ClientSession) -> str:
        async with http.get("/", headers={"Accept": "text/html"}) as page:
            return re.search(r'name="csrf" value="([^"]+)"', await page.text()).group(1)


@asynccontextmanager
async def console_running(tmp_path: Path, **options) -> AsyncIterator[Console]:
    store = Store(tmp_path / "events.db")
    accounts = Accounts(store)
    accounts.add("li", PASSWORD, display="李明", now=0)
    accounts.add("wang", PASSWORD, role="supervisor", now=0)
    accounts.add("zhou", PASSWORD, now=0)
    app = make_console_app(store, **options)
    try:
        async with serving(app, tmp_path / "tls") as site:
            yield Console(site.url, store, app, site.client_ssl)
    finally:
        store.close()

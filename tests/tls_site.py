"""An aiohttp app served in-process on 127.0.0.1 over real TLS (a throwaway CA), for tests."""

from __future__ import annotations

import ssl
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

from aiohttp import web

from safebox.tools.tlsca import make_ca


@dataclass(frozen=True)
class Site:
    url: str  # https://127.0.0.1:<port>
    client_ssl: ssl.SSLContext  # trusts the site's CA only


@asynccontextmanager
async def serving(app: web.Application, tls_dir: Path) -> AsyncIterator[Site]:
    """`app` on a free port with a server certificate from a new CA in `tls_dir`; stopped after."""
    tls = make_ca(tls_dir)
    runner = web.AppRunner(app)
    await runner.setup()
    server_tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_tls.load_cert_chain(tls.server_cert_chain, tls.server_key)
    try:
        await web.TCPSite(runner, "127.0.0.1", 0, ssl_context=server_tls).start()
        yield Site(f"https://127.0.0.1:{runner.addresses[0][1]}", ssl.create_default_context(cafile=str(tls.ca_cert)))
    finally:
        await runner.cleanup()

"""Requests written byte by byte on a TLS socket: half-sent heads, trickled bodies, a body in two
TCP segments, many connections from chosen loopback addresses (Linux answers all of 127/8).

Shared by the receiver-abuse rows (abuse.py) and their tests (tests/test_receiver_abuse.py).
"""

from __future__ import annotations

import asyncio
import json
import resource
import ssl
import time
from typing import Any
from urllib.parse import urlsplit

CONNECT_TIMEOUT_S = 10.0


def raise_fd_limit(want: int) -> int:
    """This process's soft descriptor limit, raised towards `want` (up to the hard limit)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and soft < want:
        soft = want if hard == resource.RLIM_INFINITY else min(want, hard)
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
    return soft


def hold_fd_limit(pid: int, soft: int = 1024) -> tuple[int, int]:
    """Give process `pid` the kernel's default soft limit (what a unit without LimitNOFILE gets);
    returns the limits it had, to give back."""
    old = resource.prlimit(pid, resource.RLIMIT_NOFILE)
    resource.prlimit(pid, resource.RLIMIT_NOFILE, (soft, old[1]))
    return old


async def connect(url: str, ca: ssl.SSLContext, *, source: str | None = None, tls: bool = True
                  ) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """A connection to the receiver at `url` from the loopback address `source`."""
    parts = urlsplit(url)
    return await asyncio.wait_for(asyncio.open_connection(
        parts.hostname, parts.port, ssl=ca if tls else None, server_hostname=parts.hostname if tls else None,
        local_addr=(source, 0) if source else None), CONNECT_TIMEOUT_S)


def head(method: str, url: str, headers: dict[str, str], length: int | None) -> bytes:
    parts = urlsplit(url)
    lines = [f"{method} {parts.path or '/'} HTTP/1.1", f"Host: {parts.netloc}",
             *(f"{k}: {v}" for k, v in headers.items())]
    if length is not None:
        lines.append(f"Content-Length: {length}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


async def read_answer(reader: asyncio.StreamReader, timeout: float = 15.0) -> tuple[int, Any]:
    """(status, JSON answer or the text) of one HTTP/1.1 answer; (0, why) when the connection ends first."""
    try:
        async with asyncio.timeout(timeout):
            status_line = await reader.readline()
            if not status_line:
                return 0, "connection closed without an answer"
            length = 0
            while (line := await reader.readline()) not in (b"\r\n", b""):
                name, _, value = line.decode("latin-1").partition(":")
                if name.strip().lower() == "content-length":
                    length = int(value)
            raw = await reader.readexactly(length)
    except (asyncio.IncompleteReadError, ConnectionError, ssl.SSLError) as exc:
        return 0, f"connection ended: {type(exc).__name__}"
    except TimeoutError:
        return 0, f"no answer within {timeout:.0f} s"
    status = int(status_line.split()[1])
    try:
        return status, json.loads(raw)
    except ValueError:
        return status, raw.decode("utf-8", "replace")


async def send_split(url: str, ca: ssl.SSLContext, headers: dict[str, str], body: bytes, *, cut: int | None = None,
                     pause_s: float = 0.3, source: str | None = None) -> tuple[int, Any]:
    """POST `body` with its head and first `cut` bytes in one TCP segment, the rest `pause_s` later."""
    cut = len(body) // 2 if cut is None else cut
    reader, writer = await connect(url, ca, source=source)
    try:
        writer.write(head("POST", url, headers, len(body)) + body[:cut])
        await writer.drain()
        await asyncio.sleep(pause_s)  # the receiver has read the first part by now
        writer.write(body[cut:])
        await writer.drain()
        return await read_answer(reader)
    finally:
        writer.close()


async def closed_after(reader: asyncio.StreamReader, limit_s: float) -> float | None:
    """Seconds until the receiver ends this connection (reading whatever it says), None past `limit_s`."""
    started = time.monotonic()
    try:
        async with asyncio.timeout(limit_s):
            while await reader.read(4096):
                pass
    except TimeoutError:
        return None
    except (ConnectionError, ssl.SSLError, OSError):
        pass
    return time.monotonic() - started


class Slowloris:
    """`count` TLS connections spread over loopback `sources`, each holding a half-sent request head."""

    def __init__(self, url: str, ca: ssl.SSLContext, count: int, sources: list[str]) -> None:
        self.url, self.ca, self.count, self.sources = url, ca, count, sources
        self.writers: list[asyncio.StreamWriter] = []
        self.readers: list[asyncio.StreamReader] = []
        self.failed = 0

    async def open(self, parallel: int = 50) -> None:
        gate = asyncio.Semaphore(parallel)
        partial = head("POST", self.url + "/v1/events", {"Content-Type": "application/json"}, None)[:-4] + b"\r\nX-"

        async def one(n: int) -> None:
            async with gate:
                try:
                    reader, writer = await connect(self.url, self.ca, source=self.sources[n % len(self.sources)])
                    writer.write(partial)
                    await writer.drain()
                except (OSError, ssl.SSLError, TimeoutError):
                    self.failed += 1
                    return
                self.readers.append(reader)
                self.writers.append(writer)

        await asyncio.gather(*(one(n) for n in range(self.count)))

    def still_open(self) -> int:
        return sum(not w.transport.is_closing() for w in self.writers)

    def close(self) -> None:
        for w in self.writers:
            w.transport.abort()

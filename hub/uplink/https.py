"""One HTTPS/1.1 connection to the platform: what the hub's uplink sends, and nothing more.

The hub sends small signed requests to one host and reads short answers. A general-purpose
client is more than that needs (with this module instead of aiohttp, the hub's memory on the
virtual Pi went from 55.3 to 45.7 MiB: RESULTS.md, `python -m safebox.tools.bench.pi`);
this is h11 (the HTTP/1.1 state machine, no I/O of its own) over an asyncio TLS stream.
What it does:

* TLS with the caller's context (the client refuses one that does not verify), SNI and the
  certificate checked against the URL's host.
* The request goes out exactly as signed: the request target is the URL's path and query as
  given (hub/config.check_https_url puts the platform URL in its normal form first), Host is
  its authority, Content-Length is the body's.
* The answer is read whole, chunked or not, up to `limit` bytes: more is cut there and the
  connection closed (never read to its end).
* One connection is kept between requests. A request on a kept connection that the server
  had closed meanwhile (an idle timeout) fails before any byte of an answer comes back; it is
  sent once more on a new connection. Every hub request may be repeated: an event carries
  its Idempotency-Key (SPEC 3.2), the operator-ack poll is a GET.
* Anything unexpected (a malformed answer, a connection closed mid-answer, a cancel or a
  timeout from the caller) closes the connection: the next request starts clean.

Errors: `HttpError` for what the server said badly or not at all; OSError (ssl.SSLError,
ConnectionRefusedError, ...) from the socket as it comes. Timeouts are the caller's.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from dataclasses import dataclass
from urllib.parse import urlsplit

import h11

READ_SIZE = 64 * 1024
HEADERS_MAX = 64 * 1024  # bytes of an answer's status line and headers


class HttpError(Exception):
    """The server's answer was not HTTP/1.1 as it should be, or did not come."""


@dataclass(frozen=True)
class Answer:
    status: int
    headers: dict[str, str]  # lower-case names; the first value of a repeated header
    body: bytes  # at most the request's `limit` bytes


class _Closed(Exception):
    """The connection ended before any byte of an answer: a kept one the server had closed."""


class HttpsConnection:
    """Requests to one https origin, one at a time, over a kept connection. `close()` when done."""

    def __init__(self, ssl_context: ssl.SSLContext, *, user_agent: str) -> None:
        self._ssl = ssl_context
        self._user_agent = user_agent
        self._origin: tuple[str, int] | None = None
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None
        self._h11: h11.Connection | None = None
        self._lock = asyncio.Lock()
        self.opened = 0  # connections made (tests read it)

    async def request(self, method: str, url: str, headers: dict[str, str], body: bytes | None,
                      *, limit: int) -> Answer:
        parts = urlsplit(url)
        if parts.scheme != "https" or not parts.hostname:
            raise ValueError(f"not an https URL: {url!r}")
        origin = (parts.hostname, parts.port or 443)
        target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        sent = [("Host", parts.netloc), ("User-Agent", self._user_agent), ("Accept", "application/json")]
        sent += [(name, value) for name, value in headers.items()]
        if body is not None:
            sent.append(("Content-Length", str(len(body))))
        async with self._lock:
            if self._origin != origin:
                await self._drop()
            for _ in range(2):
                kept = self._h11 is not None
                if not kept:
                    await self._open(origin)
                try:
                    return await self._exchange(h11.Request(method=method, target=target, headers=sent), body, limit)
                except _Closed:
                    await self._drop()
                    if not kept:
                        raise HttpError("the server closed the connection without an answer") from None
                except BaseException:
                    await self._drop()
                    raise
            raise AssertionError("unreachable")

    async def close(self) -> None:
        async with self._lock:
            await self._drop()

    async def _open(self, origin: tuple[str, int]) -> None:
        host, port = origin
        self._reader, self._writer = await asyncio.open_connection(
            host, port, ssl=self._ssl, server_hostname=host, limit=READ_SIZE)
        self._h11 = h11.Connection(h11.CLIENT, max_incomplete_event_size=HEADERS_MAX)
        self._origin = origin
        self.opened += 1

    async def _drop(self) -> None:
        writer, self._writer, self._reader, self._h11, self._origin = self._writer, None, None, None, None
        if writer is None:
            return
        writer.close()
        with contextlib.suppress(Exception):
            async with asyncio.timeout(2.0):  # a TLS close_notify to a peer that went away
                await writer.wait_closed()

    async def _exchange(self, request: h11.Request, body: bytes | None, limit: int) -> Answer:
        conn, reader, writer = self._h11, self._reader, self._writer
        assert conn is not None and reader is not None and writer is not None
        answered = False
        try:
            out = conn.send(request) or b""
            if body:
                out += conn.send(h11.Data(data=body)) or b""
            out += conn.send(h11.EndOfMessage()) or b""
            writer.write(out)
            await writer.drain()
            response: h11.Response | None = None
            chunks: list[bytes] = []
            size = 0
            while True:
                event = conn.next_event()
                if event is h11.NEED_DATA:
                    data = await reader.read(READ_SIZE)
                    if not data and not answered:
                        raise _Closed
                    answered = True
                    conn.receive_data(data)  # b"": the end of the stream, which h11 judges
                elif isinstance(event, h11.Response):
                    response = event
                elif isinstance(event, h11.Data):
                    take = bytes(event.data)[:limit - size]
                    chunks.append(take)
                    size += len(take)
                    if size >= limit:
                        break  # cut at the limit; the rest is never read
                elif isinstance(event, h11.EndOfMessage):
                    break
                elif isinstance(event, h11.ConnectionClosed):
                    raise HttpError("the server closed the connection mid-answer")
                # InformationalResponse (100 Continue): wait for the real answer
        except h11.LocalProtocolError as exc:  # ours: a header h11 will not send
            raise HttpError(f"request not sent: {exc}") from None
        except h11.RemoteProtocolError as exc:
            raise HttpError(f"malformed answer: {exc}") from None
        except (ConnectionResetError, BrokenPipeError, ssl.SSLEOFError, asyncio.IncompleteReadError):
            if answered:
                raise
            raise _Closed from None
        assert response is not None
        if conn.our_state is h11.DONE and conn.their_state is h11.DONE:
            conn.start_next_cycle()  # kept for the next request
        else:
            await self._drop()  # Connection: close, an answer cut at the limit, ...
        headers: dict[str, str] = {}
        for name, value in response.headers:
            headers.setdefault(name.decode("latin-1"), value.decode("latin-1"))
        return Answer(response.status_code, headers, b"".join(chunks))

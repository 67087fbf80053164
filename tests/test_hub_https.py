"""The uplink's HTTPS/1.1 connection (hub/uplink/https.py) against servers that misbehave.

Each test runs a real TLS server on 127.0.0.1 (a throwaway CA, trustme) whose every connection is
handled by a script of the test's own: it reads the hub's request bytes as they arrive and
answers as a platform, a proxy or a broken server might.
"""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

import pytest
import trustme

from safebox.hub.uplink.https import Answer, HttpError, HttpsConnection

Script = Callable[["Server", asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]
OK = b"HTTP/1.1 201 Created\r\nContent-Type: application/json\r\nContent-Length: 11\r\n\r\n{\"ok\":true}"


class Server:
    def __init__(self, url: str, client_ssl: ssl.SSLContext) -> None:
        self.url = url
        self.client_ssl = client_ssl
        self.requests: list[bytes] = []  # each request's head and body, as received
        self.connections = 0


@asynccontextmanager
async def serving(script: Script) -> AsyncIterator[Server]:
    ca = trustme.CA()
    server_tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1").configure_cert(server_tls)
    client_ssl = ssl.create_default_context()
    ca.configure_trust(client_ssl)
    handlers: set[asyncio.Task[None]] = set()
    site = Server("", client_ssl)

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        site.connections += 1
        handlers.add(asyncio.current_task())  # type: ignore[arg-type]
        try:
            await script(site, reader, writer)
        except (ConnectionError, asyncio.IncompleteReadError, ssl.SSLError):
            pass
        finally:
            writer.close()

    listener = await asyncio.start_server(handle, "127.0.0.1", 0, ssl=server_tls)
    site.url = f"https://127.0.0.1:{listener.sockets[0].getsockname()[1]}"
    try:
        yield site
    finally:
        listener.close()
        for task in handlers:
            task.cancel()
        await asyncio.gather(*handlers, return_exceptions=True)


async def read_request(reader: asyncio.StreamReader, server: Server) -> bytes:
    head = await reader.readuntil(b"\r\n\r\n")
    length = next((int(line.split(b":")[1]) for line in head.split(b"\r\n")
                   if line.lower().startswith(b"content-length:")), 0)
    body = await reader.readexactly(length)
    server.requests.append(head + body)
    return head + body


async def post(conn: HttpsConnection, server: Server, path: str = "/v1/events", limit: int = 1024) -> Answer:
    return await conn.request("POST", server.url + path, {"Content-Type": "application/json"}, b'{"a":1}',
                              limit=limit)


@pytest.fixture
async def conn_for() -> AsyncIterator[Callable[[Server], HttpsConnection]]:
    made: list[HttpsConnection] = []

    def make(server: Server) -> HttpsConnection:
        made.append(HttpsConnection(server.client_ssl, user_agent="safebox-hub/test"))
        return made[-1]

    yield make
    for conn in made:
        await conn.close()


async def test_the_request_goes_out_as_signed_and_the_connection_is_kept(conn_for) -> None:
    async def platform(server: Server, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while True:
            await read_request(reader, server)
            writer.write(OK)
            await writer.drain()

    async with serving(platform) as server:
        conn = conn_for(server)
        answers = [await post(conn, server) for _ in range(3)]
        got = await conn.request("GET", server.url + "/v1/hubs/h/operator-acks?since=7", {}, None, limit=1024)
    assert [a.status for a in answers] == [201] * 3 and answers[0].body == b'{"ok":true}'
    assert answers[0].headers["content-type"] == "application/json"
    assert got.status == 201
    assert server.connections == 1 and conn.opened == 1  # one TLS handshake for all four
    port = server.url.rsplit(":", 1)[1]
    assert server.requests[0] == (
        f"POST /v1/events HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUser-Agent: safebox-hub/test\r\n"
        "Accept: application/json\r\nContent-Type: application/json\r\nContent-Length: 7\r\n\r\n"
        '{"a":1}').encode()
    assert server.requests[3].startswith(b"GET /v1/hubs/h/operator-acks?since=7 HTTP/1.1\r\n")
    assert b"content-length" not in server.requests[3].lower()


async def test_a_kept_connection_the_server_closed_is_replaced_and_the_request_sent_once(conn_for) -> None:
    """The platform's idle timeout closed the kept connection; the next request finds it dead
    before any answer, and goes once on a new connection."""
    async def one_then_close(server: Server, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader, server)
        writer.write(OK)
        await writer.drain()

    async with serving(one_then_close) as server:
        conn = conn_for(server)
        assert (await post(conn, server)).status == 201
        await asyncio.sleep(0.2)  # the server's close reaches the hub's socket
        assert (await post(conn, server)).status == 201
    assert server.connections == 2 and len(server.requests) == 2


async def test_a_chunked_answer_is_read_whole_and_a_long_one_is_cut_at_the_limit(conn_for) -> None:
    big = b"x" * 5000

    async def chunked_then_long(server: Server, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader, server)
        writer.write(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nRetry-After: 5\r\n\r\n")
        for part in (b'{"results":', b"[1,2,3]", b"}"):
            writer.write(b"%x\r\n%s\r\n" % (len(part), part))
            await writer.drain()
            await asyncio.sleep(0.01)  # arrives in several TLS records
        writer.write(b"0\r\n\r\n")
        await read_request(reader, server)
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(big), big))
        await writer.drain()
        await reader.read()  # until the hub hangs up

    async with serving(chunked_then_long) as server:
        conn = conn_for(server)
        first = await post(conn, server)
        cut = await post(conn, server, limit=1000)
        assert (first.body, first.headers["retry-after"]) == (b'{"results":[1,2,3]}', "5")
        assert cut.body == big[:1000]
    assert conn.opened == 1 and len(server.requests) == 2


async def test_malformed_and_cut_answers_are_errors_and_the_next_request_starts_clean(conn_for) -> None:
    answers = [b"HTP/1.1 200 OK\r\n\r\n",  # not HTTP
               b"HTTP/1.1 201 Created\r\nContent-Length: 50\r\n\r\n{\"ok\"",  # closed mid-body
               b"HTTP/1.1 201 Created\r\nContent-Length: 11\r\nContent-Length: 12\r\n\r\n{\"ok\":true}",  # ambiguous
               OK]

    async def broken(server: Server, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader, server)
        writer.write(answers[server.connections - 1])
        await writer.drain()
        await asyncio.sleep(0.05)

    async with serving(broken) as server:
        conn = conn_for(server)
        errors = []
        for _ in range(3):
            with pytest.raises(HttpError) as caught:
                await post(conn, server)
            errors.append(str(caught.value))
        assert (await post(conn, server)).body == b'{"ok":true}'
    assert all(e.startswith("malformed answer: ") for e in errors), errors
    assert ["illegal status line" in errors[0], "expected 50" in errors[1], "conflicting" in errors[2]] == [True] * 3
    assert conn.opened == 4  # each failure closed its connection


async def test_a_server_that_closes_without_answering_a_new_connection_is_an_error(conn_for) -> None:
    async def mute(server: Server, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader, server)

    async with serving(mute) as server:
        conn = conn_for(server)
        with pytest.raises(HttpError, match="without an answer"):
            await post(conn, server)
    assert server.connections == 1  # a new connection is not tried again: the outbox retries later


async def test_a_cancelled_request_closes_its_connection(conn_for) -> None:
    """The caller's timeout (or the relay abandoning an attempt at shutdown): the answer that
    may still come must not be read as the next request's."""
    async def slow_first(server: Server, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while True:
            await read_request(reader, server)
            if len(server.requests) == 1:
                await asyncio.sleep(1.0)
                writer.write(b"HTTP/1.1 500 Late\r\nContent-Length: 0\r\n\r\n")
            else:
                writer.write(OK)
            await writer.drain()

    async with serving(slow_first) as server:
        conn = conn_for(server)
        with pytest.raises(TimeoutError):
            async with asyncio.timeout(0.3):
                await post(conn, server)
        assert (await post(conn, server)).status == 201
    assert conn.opened == 2


async def test_a_certificate_for_another_authority_is_refused(conn_for) -> None:
    async def never(server: Server, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read()

    async with serving(never) as server:
        other = ssl.create_default_context()
        trustme.CA().configure_trust(other)
        conn = HttpsConnection(other, user_agent="t")
        with pytest.raises(ssl.SSLCertVerificationError, match="CERTIFICATE_VERIFY_FAILED"):
            await post(conn, server)
        await conn.close()
        named = conn_for(server)
        with pytest.raises(ssl.SSLCertVerificationError, match="mismatch"):  # a name its certificate lacks
            await named.request("POST", server.url.replace("127.0.0.1", "localhost"), {}, b"", limit=10)

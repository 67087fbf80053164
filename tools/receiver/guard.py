"""The hubs' listener under abuse: deadlines and connection caps, so half-sent requests cannot
keep a genuine one out.

Measured before this module: 1,014 TLS connections that each sent half a request head used up
the receiver's 1,024 file descriptors (the kernel's default soft limit), and a genuine emergency
waited 40 s to be accepted. Now:

* The listener accepts connections itself (`GuardedSite`) and admits each before its TLS
  handshake: at most `per_peer` open connections per peer (an IPv4 address, an IPv6 /64); the
  next one is closed at once, unread (`refused`).
* In all, at most the soft RLIMIT_NOFILE minus `FD_RESERVE` connections (read at every accept,
  so a raised limit applies at once); the listener therefore never meets EMFILE. When full, the
  connection that has waited longest without a request in hand (a TLS handshake, a request head
  not yet complete, an idle keep-alive) is closed to make room (`evicted`); connections whose
  request is being handled are never evicted.
* Deadlines: the TLS handshake within `HANDSHAKE_TIMEOUT_S`; a request head within
  `HEAD_TIMEOUT_S` of the connection (or of its first byte after an answer on a kept-alive one);
  the body within `BODY_BASE_S` plus its length at `BODY_MIN_RATE` bytes per second (a 1 MiB
  batch on a slow 2G link still fits). Past a deadline the connection is closed (`timed_out`).
* Counts, not lines: what was refused, evicted or timed out is logged as counts at most once
  every `LOG_EVERY_S`, so a flood cannot fill the log.

`read_body(request, limit)` is the one way a handler reads a body: whole (however many TCP
segments carried it), at most `limit` bytes, within the body deadline; `BodyTimeout` becomes a
408 answer through `deadlines`, the middleware `make_app` always adds.

The service file (tools/receiver/safebox-receiver.service) sets LimitNOFILE; see there why.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import resource
import socket
import ssl
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web
from aiohttp.web_runner import BaseRunner, BaseSite

from safebox.protocol.bodies import read_whole

log = logging.getLogger("safebox.receiver.guard")

HANDSHAKE_TIMEOUT_S = 10.0
HEAD_TIMEOUT_S = 10.0
BODY_BASE_S = 10.0
BODY_MIN_RATE = 16 * 1024  # bytes per second a body must at least arrive at, past BODY_BASE_S
PER_PEER_MAX = 64  # hubs behind one carrier NAT share an address; each holds one or two connections
FD_RESERVE = 64  # descriptors kept for the database, the log, the listeners, the operators' screen
LOG_EVERY_S = 10.0

_HANDSHAKE, _HEAD, _REQUEST, _IDLE = "handshake", "head", "request", "idle"


class BodyTimeout(Exception):
    """The body did not arrive within its deadline."""


def peer_key(host: str) -> str:
    """Whose connection this is, for the per-peer cap: the IPv4 address, or the IPv6 /64."""
    try:
        addr = ipaddress.ip_address(host.split("%", 1)[0])
    except ValueError:
        return host
    if isinstance(addr, ipaddress.IPv6Address):
        if addr.ipv4_mapped is not None:
            return str(addr.ipv4_mapped)
        return str(ipaddress.IPv6Network((addr, 64), strict=False))
    return str(addr)


def body_deadline_s(content_length: int | None) -> float:
    return BODY_BASE_S + (content_length or 0) / BODY_MIN_RATE


def connection_cap() -> int:
    """How many connections may be open at once: the soft descriptor limit minus the reserve."""
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY:
        return 1 << 20
    return max(16, soft - FD_RESERVE)


class Guard:
    """The open connections of one listener, by peer; admits, evicts, counts."""

    def __init__(self, *, per_peer: int = PER_PEER_MAX, cap: Callable[[], int] = connection_cap,
                 handshake_s: float = HANDSHAKE_TIMEOUT_S, head_s: float = HEAD_TIMEOUT_S) -> None:
        self.per_peer = per_peer
        self._cap = cap
        self.handshake_s = handshake_s
        self.head_s = head_s
        self.by_peer: dict[str, int] = {}
        self.open: set[_Connection] = set()
        self.counts = {"refused": 0, "evicted": 0, "timed_out": 0}
        self._logged = dict(self.counts)
        self._log_handle: asyncio.TimerHandle | None = None

    def admit(self, peer: str) -> _Connection | None:
        """A record for a new connection from `peer`, or None: refuse it."""
        if self.by_peer.get(peer, 0) >= self.per_peer:
            self.count("refused")
            return None
        if len(self.open) >= self._cap():
            waiting = [c for c in self.open if c.state != _REQUEST]
            if not waiting:
                self.count("refused")
                return None
            min(waiting, key=lambda c: c.since).close("evicted")
        conn = _Connection(self, peer)
        self.open.add(conn)
        self.by_peer[peer] = self.by_peer.get(peer, 0) + 1
        return conn

    def release(self, conn: _Connection) -> None:
        if conn in self.open:
            self.open.discard(conn)
            left = self.by_peer[conn.peer] - 1
            if left:
                self.by_peer[conn.peer] = left
            else:
                del self.by_peer[conn.peer]

    def count(self, what: str) -> None:
        self.counts[what] += 1
        if self._log_handle is None:
            self._log_handle = asyncio.get_running_loop().call_later(LOG_EVERY_S, self._log_counts)

    def _log_counts(self) -> None:
        self._log_handle = None
        new = {k: v - self._logged[k] for k, v in self.counts.items()}
        self._logged = dict(self.counts)
        log.warning("connections in the last %.0f s: %d refused (over %d per peer, or all busy), %d evicted "
                    "(listener full), %d timed out (handshake, head or body too slow); %d open",
                    LOG_EVERY_S, new["refused"], self.per_peer, new["evicted"], new["timed_out"], len(self.open))


class _Connection(asyncio.Protocol):
    """One admitted connection, from accept to close: wraps aiohttp's protocol, keeps its deadline."""

    def __init__(self, guard: Guard, peer: str) -> None:
        self.guard = guard
        self.peer = peer
        self.state = _HANDSHAKE
        self.since = asyncio.get_running_loop().time()
        self.inner: asyncio.Protocol | None = None
        self.transport: asyncio.Transport | None = None
        self.task: asyncio.Task[Any] | None = None  # the handshake
        self._timer: asyncio.TimerHandle | None = None
        self._request: web.BaseRequest | None = None

    # -- deadlines ---------------------------------------------------------------------------
    def _wait(self, state: str, seconds: float | None) -> None:
        self.state = state
        self.since = asyncio.get_running_loop().time()
        if self._timer is not None:
            self._timer.cancel()
        self._timer = None if seconds is None else asyncio.get_running_loop().call_later(seconds, self._late)

    def _late(self) -> None:
        self._timer = None
        if self.state == _REQUEST and (self._request is None or self._request.content.is_eof()):
            return  # the body is in; the handler may take its time
        self.close("timed_out")

    def close(self, why: str) -> None:
        self.guard.count(why)
        if self.transport is not None:
            self.transport.abort()  # frees the descriptor now; connection_lost follows
        elif self.task is not None:
            self.task.cancel()
        self.guard.release(self)

    def head_received(self, request: web.BaseRequest) -> None:
        self._request = request
        # A handler reading through read_body answers 408 at the deadline; this closes the
        # connection a little later for one that does not (the operators' forms).
        self._wait(_REQUEST, None if request.content.is_eof() else body_deadline_s(request.content_length) + 2)

    def answered(self) -> None:
        self._request = None
        self._wait(_IDLE, None)  # aiohttp's keep-alive timeout closes an idle connection

    # -- asyncio.Protocol, passed on to aiohttp's -----------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        self._wait(_HEAD, self.guard.head_s)
        assert self.inner is not None
        self.inner.connection_made(transport)

    def data_received(self, data: bytes) -> None:
        if self.state == _IDLE:
            self._wait(_HEAD, self.guard.head_s)
        assert self.inner is not None
        self.inner.data_received(data)

    def eof_received(self) -> bool | None:
        assert self.inner is not None
        return self.inner.eof_received()

    def connection_lost(self, exc: Exception | None) -> None:
        if self._timer is not None:
            self._timer.cancel()
        self.guard.release(self)
        assert self.inner is not None
        self.inner.connection_lost(exc)

    def pause_writing(self) -> None:
        assert self.inner is not None
        self.inner.pause_writing()

    def resume_writing(self) -> None:
        assert self.inner is not None
        self.inner.resume_writing()


class _Listener:
    """What aiohttp's runner expects of a site's server: its sockets, and close()."""

    def __init__(self, sock: socket.socket, task: asyncio.Task[None], guard: Guard) -> None:
        self.sockets = [sock]
        self._task = task
        self._guard = guard

    def close(self) -> None:
        self._task.cancel()
        self.sockets[0].close()
        for conn in list(self._guard.open):
            if conn.task is not None:  # still shaking hands: aiohttp's shutdown does not know it
                conn.task.cancel()


class GuardedSite(BaseSite):
    """A TLS listener for an aiohttp runner that admits every connection through a `Guard`."""

    def __init__(self, runner: BaseRunner, host: str, port: int, ssl_context: ssl.SSLContext, guard: Guard,
                 *, backlog: int = 1024) -> None:
        super().__init__(runner, ssl_context=ssl_context, backlog=backlog)
        self._host, self._port = host, port
        self.guard = guard

    @property
    def name(self) -> str:
        return f"https://{self._host}:{self._port}"

    async def start(self) -> None:
        await super().start()
        family = socket.AF_INET6 if ":" in self._host else socket.AF_INET
        sock = socket.create_server((self._host, self._port), family=family, backlog=self._backlog)
        sock.setblocking(False)
        self._server = _Listener(sock, asyncio.create_task(self._accept(sock)), self.guard)  # type: ignore[assignment]

    async def _accept(self, sock: socket.socket) -> None:
        loop = asyncio.get_running_loop()
        while True:
            try:
                conn, addr = await loop.sock_accept(sock)
            except OSError as exc:  # EMFILE and the like: should not happen below the cap; wait, go on
                log.error("accept failed: %s", exc)
                await asyncio.sleep(0.1)
                continue
            record = self.guard.admit(peer_key(addr[0]))
            if record is None:
                conn.close()
                continue
            record.task = asyncio.create_task(self._handshake(conn, record))

    async def _handshake(self, conn: socket.socket, record: _Connection) -> None:
        server = self._runner.server
        assert server is not None
        record.inner = server()

        def factory() -> asyncio.Protocol:
            return record

        try:
            await asyncio.get_running_loop().connect_accepted_socket(
                factory, conn, ssl=self._ssl_context, ssl_handshake_timeout=self.guard.handshake_s)
        except asyncio.CancelledError:
            conn.close()  # evicted while shaking hands
        except Exception as exc:  # noqa: BLE001 - a failed handshake (reset, bad TLS, timeout) ends it, whatever it was
            if isinstance(exc, TimeoutError):
                self.guard.count("timed_out")
            conn.close()
            self.guard.release(record)
        finally:
            record.task = None


def _connection(request: web.BaseRequest) -> _Connection | None:
    transport = request.transport
    protocol = transport.get_protocol() if transport is not None else None
    return protocol if isinstance(protocol, _Connection) else None


@web.middleware
async def deadlines(request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
                    ) -> web.StreamResponse:
    """Tell the connection its request head is in (the body deadline starts), and when it is
    answered; a body that missed its deadline is answered 408 and the connection closed."""
    conn = _connection(request)
    if conn is not None:
        conn.head_received(request)
    try:
        return await handler(request)
    except BodyTimeout:
        seconds = body_deadline_s(request.content_length)
        response = web.json_response({"status": "rejected", "event_id": request.headers.get("Idempotency-Key"),
                                      "reason": f"body not received within {seconds:.0f} s"}, status=408)
        response.force_close()
        return response
    finally:
        if conn is not None:
            conn.answered()


async def read_body(request: web.BaseRequest, limit: int) -> bytes | None:
    """The whole body, or None when it is longer than `limit` bytes; BodyTimeout past its deadline."""
    if request.content_length is not None and request.content_length > limit:
        return None
    try:
        async with asyncio.timeout(body_deadline_s(request.content_length)):
            raw = await read_whole(request.content, limit + 1)
    except TimeoutError:
        raise BodyTimeout() from None
    return None if len(raw) > limit else raw

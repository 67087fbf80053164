"""A virtual-time asyncio event loop: a 25-hour scenario runs in seconds.

`VirtualTimeLoop.time()` is a virtual clock. Whenever the loop has nothing to run now
and nothing arrives on its sockets, the clock jumps straight to the next timer
instead of sleeping. Real I/O still happens (aiohttp over real TLS on loopback, in
this same loop), so a jump must never overtake bytes still on their way: before each
jump the loop checks every socket it watches with SIOCOUTQ (bytes sent but not yet
taken by the peer) and waits in real time while any are in flight, and it waits in
real time while an executor job (`to_thread`, getaddrinfo) is running.

Why not `looptime`: the same idea, but it decides "no I/O is coming" by counting idle
loop cycles, which a busy 2-core machine can outrun; SIOCOUTQ asks the kernel.
"""

from __future__ import annotations

import asyncio
import fcntl
import os
import selectors
import socket
import struct
import termios
import time
import weakref
from typing import Any

_SIOCOUTQ = termios.TIOCOUTQ  # same number for sockets: bytes not yet acknowledged by the peer
_REAL_WAIT_S = 0.0005
_SETTLE_POLLS = 2  # zero-timeout polls before a jump: a loopback write lands within them
_TTY_WAIT_S = 0.002  # the real wait before a jump while a pty (an emulated modem) is watched,
_TTY_WAITS = 10      # up to this many times while the pty spoke in the last _TTY_TALK_S
_TTY_TALK_S = 0.2


class VirtualTimeLoop(asyncio.SelectorEventLoop):
    def __init__(self, start: float = 0.0) -> None:
        super().__init__(selectors.DefaultSelector())
        self._vnow = float(start)
        self._jobs: weakref.WeakSet[asyncio.Future[Any]] = weakref.WeakSet()
        self.jumps = 0
        self._tty_heard_at = -float("inf")
        real_select = self._selector.select

        def select(timeout: float | None = None) -> list[tuple[Any, int]]:
            ready = real_select(0)
            if ready or timeout == 0:
                self._note_tty(ready)
                return ready
            for _ in range(_SETTLE_POLLS):
                ready = real_select(0)
                if ready:
                    self._note_tty(ready)
                    return ready
            if any(not job.done() for job in self._jobs) or self._bytes_in_flight():
                ready = real_select(_REAL_WAIT_S if timeout is None else min(timeout, _REAL_WAIT_S))
                return ready
            if self._watches_a_tty():
                # A pty hands bytes over in a kernel work item (later than a loopback socket, and
                # much later on a loaded machine) and shows no count of bytes in flight: wait a real
                # moment before any jump, longer while a conversation on it is going on.
                talking = time.monotonic() - self._tty_heard_at < _TTY_TALK_S
                for _ in range(_TTY_WAITS if talking else 1):
                    ready = real_select(_TTY_WAIT_S)
                    if ready:
                        self._note_tty(ready)
                        return ready
            if timeout is None:
                # Nothing scheduled, nothing in flight: only the outside world could wake us.
                return real_select(None)
            self._vnow += timeout
            self.jumps += 1
            return []

        self._selector.select = select  # type: ignore[method-assign]

    def time(self) -> float:
        return self._vnow

    def run_in_executor(self, executor: Any, func: Any, *args: Any) -> asyncio.Future[Any]:
        future = super().run_in_executor(executor, func, *args)
        self._jobs.add(future)
        return future

    def _note_tty(self, ready: list[tuple[Any, int]]) -> None:
        if any(not isinstance(key.fileobj, socket.socket) and _isatty(key.fd) for key, _ in ready):
            self._tty_heard_at = time.monotonic()

    def _watches_a_tty(self) -> bool:
        for key in list(self._selector.get_map().values()):
            fd = key.fd
            if isinstance(key.fileobj, socket.socket):
                continue
            try:
                if os.isatty(fd):
                    return True
            except OSError:
                continue
        return False

    def _bytes_in_flight(self) -> bool:
        for key in list(self._selector.get_map().values()):
            sock = key.fileobj
            if not isinstance(sock, socket.socket) or sock.type != socket.SOCK_STREAM:
                continue
            try:
                raw = fcntl.ioctl(sock.fileno(), _SIOCOUTQ, b"\0\0\0\0")
            except OSError:
                continue
            if struct.unpack("i", raw)[0] > 0:
                return True
        return False


def _isatty(fd: int) -> bool:
    try:
        return os.isatty(fd)
    except OSError:
        return False


def run(coro: Any, *, start: float = 0.0) -> Any:
    """`asyncio.run` on a fresh VirtualTimeLoop whose clock starts at `start`."""
    loop = VirtualTimeLoop(start)
    try:
        asyncio.set_event_loop(loop)
        return loop.run_until_complete(coro)
    finally:
        try:
            _cancel_all(loop)
            loop.run_until_complete(loop.shutdown_asyncgens())
            loop.run_until_complete(loop.shutdown_default_executor())
        finally:
            asyncio.set_event_loop(None)
            loop.close()


def _cancel_all(loop: asyncio.AbstractEventLoop) -> None:
    tasks = [t for t in asyncio.all_tasks(loop) if not t.done()]
    for task in tasks:
        task.cancel()
    if tasks:
        loop.run_until_complete(asyncio.gather(*tasks, return_exceptions=True))

# The one connection between the shimmed `bluetooth` and `machine` modules and the
# simulator. MicroPython subset: runs on the `micropython` unix binary only.
#
# Wire: TCP to 127.0.0.1:$SAFEBOX_SIM_PORT, newline-delimited JSON, bytes as hex.
#   request  {"id": n, "op": ...}        -> reply {"re": n, "result": ..} or {"re": n, "errno": e}
#   notice   {"op": ...}                 (shim -> simulator, no reply: pin outputs, db updates)
#   event    {"op": ...}                 (simulator -> shim: BLE IRQs, pin levels, ADC values)
#
# How events reach the firmware (checked on this binary, v1.29 preview):
#   An asyncio task owned by this module waits on the socket with
#   `asyncio.StreamReader(sock).read()`, so a timer-free asyncio main loop still wakes
#   up when the simulator sends something. The task dispatches each event by calling the
#   handler registered for its op, one at a time and never re-entrantly: a handler that
#   makes a synchronous call (say `gap_advertise` from the disconnect IRQ) has the
#   events that arrive meanwhile queued and dispatched after it returns. That is the
#   `micropython.schedule` contract the firmware is written against.
#   `asyncio.create_task` before `asyncio.run` works on this binary, so the task is
#   started from the first `ensure_reader()` (BLE.irq, Pin.irq, any request) wherever
#   that happens; if the firmware replaces the event loop (`asyncio.new_event_loop`)
#   the next shim call starts a fresh task on the new loop.
#   Firmware that never runs asyncio can call `pump(timeout_ms)` (machine.idle and
#   machine.lightsleep do) to receive events.
#
# Without SAFEBOX_SIM_PORT the link is offline: notices are dropped and requests raise
# OSError(ENODEV), so code that only needs Pin/ADC state can still run.
import os
import sys
import json
import socket
import select
import errno
import time

try:
    import asyncio
except ImportError:  # a build without asyncio can still pump()
    asyncio = None

_REQUEST_TIMEOUT_MS = 10000

_sock = None
_poll = None
_rx = b""
_replies = {}
_events = []
_handlers = {}
_next_id = 1
_dispatching = False
_drain_queued = False
_reader_task = None
_reader_queue = None
_boot_state = {}


def env(name, default=None):
    v = os.getenv(name)
    return default if v is None else v


def online():
    return env("SAFEBOX_SIM_PORT") is not None


def mac_bytes():
    """The device MAC from SAFEBOX_SIM_MAC, 6 bytes in display order."""
    text = env("SAFEBOX_SIM_MAC", "02:00:00:00:00:01")
    return bytes(int(p, 16) for p in text.split(":"))


def _connect():
    global _sock, _poll
    if _sock is not None:
        return _sock
    port = env("SAFEBOX_SIM_PORT")
    if port is None:
        raise OSError(errno.ENODEV)
    s = socket.socket()
    # TCP_NODELAY (IPPROTO_TCP=6, TCP_NODELAY=1; the unix port has no names for them):
    # without it Nagle holds a notice back ~40 ms behind an unacknowledged one.
    s.setsockopt(6, 1, 1)
    s.connect(socket.getaddrinfo("127.0.0.1", int(port))[0][-1])
    s.setblocking(False)
    _sock = s
    _poll = select.poll()
    _poll.register(s, select.POLLIN)
    # The reply carries the input levels the device finds at power-on.
    _boot_state.update(_call({"op": "hello", "mac": env("SAFEBOX_SIM_MAC", "")}) or {})
    return s


def boot_state(key):
    """What the simulator set before this boot: e.g. "pins" -> [[pin, level], ...]."""
    if online():
        _connect()
    return _boot_state.get(key, ())


def _write(msg):
    data = (json.dumps(msg) + "\n").encode()
    out = select.poll()
    out.register(_sock, select.POLLOUT)
    while data:
        try:
            n = _sock.send(data)
        except OSError as e:
            if e.errno != errno.EAGAIN:
                raise
            n = 0
        if n:
            data = data[n:]
        else:
            out.poll(100)


def notify(msg):
    """Send a notice (no reply). Offline: dropped."""
    if not online():
        return
    _connect()
    _write(msg)


def on(op, handler):
    """Route events whose "op" is `op` to handler(msg)."""
    _handlers[op] = handler


def _feed(data):
    global _rx
    _rx += data
    while True:
        i = _rx.find(b"\n")
        if i < 0:
            return
        line = _rx[:i]
        _rx = _rx[i + 1 :]
        if not line:
            continue
        msg = json.loads(line)
        if "re" in msg:
            _replies[msg["re"]] = msg
        else:
            _events.append(msg)


def _lost():
    # The simulator went away: a device without its world has nothing left to do.
    print("simlink: simulator closed the connection")
    sys.exit(0)


def _recv_ready(timeout_ms):
    """Wait up to timeout_ms for bytes from the simulator and buffer them."""
    if not _poll.poll(timeout_ms):
        return False
    try:
        data = _sock.recv(4096)
    except OSError as e:
        if e.errno == errno.EAGAIN:
            return False
        raise
    if not data:
        _lost()
    _feed(data)
    return True


def request(msg):
    """Send a request and return its "result"; events meanwhile are queued."""
    _connect()
    result = _call(msg)
    if _events:
        _queue_drain()
    ensure_reader()
    return result


def _call(msg):
    global _next_id
    rid = _next_id
    _next_id += 1
    msg["id"] = rid
    _write(msg)
    deadline = time.ticks_add(time.ticks_ms(), _REQUEST_TIMEOUT_MS)
    while rid not in _replies:
        left = time.ticks_diff(deadline, time.ticks_ms())
        if left <= 0:
            raise OSError(errno.ETIMEDOUT)
        _recv_ready(left)
    reply = _replies.pop(rid)
    if "errno" in reply:
        raise OSError(reply["errno"])
    return reply.get("result")


def dispatch():
    """Run the handlers of queued events, in order, never nested."""
    global _dispatching
    if _dispatching:
        return
    _dispatching = True
    try:
        while _events:
            msg = _events.pop(0)
            handler = _handlers.get(msg.get("op"))
            if handler is not None:
                handler(msg)
    finally:
        _dispatching = False


def pump(timeout_ms=0):
    """For code without asyncio: wait up to timeout_ms for events and dispatch them."""
    if online():
        _connect()
        while _recv_ready(timeout_ms):
            timeout_ms = 0
    dispatch()


def _current_queue():
    try:
        return asyncio.core._task_queue
    except AttributeError:
        return None


async def _reader():
    stream = asyncio.StreamReader(_sock)
    while True:
        dispatch()
        data = await stream.read(4096)
        if data is None:
            continue
        if not data:
            _lost()
        _feed(data)


async def _drain():
    global _drain_queued
    _drain_queued = False
    dispatch()


def _queue_drain():
    # Events that arrived during a synchronous call sit in the queue while the reader
    # task waits on an idle socket; a one-shot task hands them to the firmware.
    global _drain_queued
    if asyncio is None or _drain_queued or _dispatching:
        return
    _drain_queued = True
    asyncio.create_task(_drain())


def ensure_reader():
    """Start (or restart, after a new event loop) the task that delivers events."""
    global _reader_task, _reader_queue
    if asyncio is None or not online():
        return
    _connect()
    queue = _current_queue()
    if _reader_task is not None and queue is _reader_queue and not _reader_task.done():
        return
    _reader_queue = queue
    _reader_task = asyncio.create_task(_reader())

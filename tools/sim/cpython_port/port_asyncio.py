"""`asyncio` for one boot (see loader.py): CPython's asyncio on the simulator's loop,
with MicroPython's additions. Tasks belong to the boot and end with it.

run(main) runs main() as the board's main task; main.py waits for it (see device.py).
"""

import asyncio as _aio

CancelledError = _aio.CancelledError
TimeoutError = _aio.TimeoutError
Event = _aio.Event
Lock = _aio.Lock
Task = _aio.Task
sleep = _aio.sleep
gather = _aio.gather
wait_for = _aio.wait_for
current_task = _aio.current_task


def create_task(coro):
    return _boot.spawn(coro)  # noqa: F821 (set by the loader)


def sleep_ms(ms):
    _boot.check_alive()  # noqa: F821
    return _aio.sleep(ms / 1000)


def wait_for_ms(awaitable, timeout_ms):
    _boot.check_alive()  # noqa: F821
    return _aio.wait_for(awaitable, timeout_ms / 1000)


def run(main):
    return _boot.run_main_task(main)  # noqa: F821


class ThreadSafeFlag:
    """Set from an IRQ, awaited by one task; wait() clears it as it returns."""

    def __init__(self):
        self._event = _aio.Event()

    def set(self):
        self._event.set()

    def clear(self):
        self._event.clear()

    def is_set(self):
        return self._event.is_set()

    async def wait(self):
        await self._event.wait()
        self._event.clear()

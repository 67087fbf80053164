"""Waiting for an event with a time limit, without losing a cancellation.

Python 3.11's `asyncio.wait_for` (the Python of Raspberry Pi OS Bookworm) returns the inner
result when the task is cancelled at the moment the awaited thing completes: the cancellation
is swallowed, and a loop around it runs on forever. The hub's stop (systemd's SIGTERM) cancels
its tasks; one that swallowed that went on until systemd killed it, and a test's teardown hung
(the cellular path, seen in the suite). `asyncio.timeout` (3.11+) counts cancellations and
does not lose one; every timed wait in the hub goes through it.
"""

from __future__ import annotations

import asyncio


async def wait_set(event: asyncio.Event, timeout_s: float) -> bool:
    """Wait until `event` is set or `timeout_s` has passed; True when it is set."""
    try:
        async with asyncio.timeout(timeout_s):
            await event.wait()
    except TimeoutError:
        return False
    return True

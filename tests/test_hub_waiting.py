"""A task cancelled at the moment its timed wait's event is set still ends (hub/waiting.py).

Python 3.11's asyncio.wait_for swallowed that cancellation: the hub's cellular path then ran
on after its stop, and a test's teardown hung for good. The hub's timed waits now go through
`wait_set`; with the old wait_for in it this test fails (the task is still running)."""

from __future__ import annotations

import asyncio

import pytest

from safebox.hub.waiting import wait_set


async def test_a_cancel_as_the_event_is_set_is_not_lost() -> None:
    event = asyncio.Event()
    rounds = 0

    async def supervise() -> None:  # the shape of every hub loop: wait, then look again
        nonlocal rounds
        while True:
            await wait_set(event, 10)
            event.clear()
            rounds += 1

    task = asyncio.create_task(supervise())
    await asyncio.sleep(0)  # waiting now
    event.set()  # something to look at...
    task.cancel()  # ...and the hub stops, in the same turn of the loop
    done, _ = await asyncio.wait({task}, timeout=2)
    assert done == {task} and task.cancelled(), f"the task ran on after its cancel ({rounds} more rounds)"


async def test_it_says_whether_the_event_came() -> None:
    event = asyncio.Event()
    assert await wait_set(event, 0.01) is False
    asyncio.get_running_loop().call_later(0.01, event.set)
    assert await wait_set(event, 5) is True

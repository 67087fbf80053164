"""The relay against the stand-in platform (`tests/uplink_platform.py`): batches, the backlog
bound, the hub's clock and the platform's, urgent events held.
"""

from __future__ import annotations

import asyncio
import json
import time
import logging
import re
from datetime import datetime

import pytest
from aiohttp import web

from safebox.hub.config import PlatformConfig
from safebox.hub.store import HubStore
from safebox.hub.uplink import PlatformClient
from safebox.hub.uplink.held import held
from safebox.protocol import events, signing
from tests.relay_kit import run_until
from tests.uplink_platform import HUB, KEY, START, make_uplink, store_event
from tests.uplink_platform import ca, ca_file, fake_time, platform, store  # noqa: F401 (fixtures)


def door_backlog(store: HubStore, count: int, device_id: str = "240ac4000001") -> list[str]:
    return [store_event(store, device_id, n + 1, events.DOOR_OPENED if n % 2 == 0 else events.DOOR_CLOSED,
                        "front_door")[0] for n in range(count)]


async def test_a_platform_without_batches_gets_one_request_per_event(store, platform, ca_file, fake_time,
                                                                    caplog) -> None:
    caplog.set_level(logging.INFO, logger="safebox.hub.uplink")
    ids = door_backlog(store, 5)
    uplink = make_uplink(store, platform, ca_file, fake_time, batch_max=100)
    await run_until(uplink, lambda: store.depth() == 0)
    assert platform.event_ids == ids  # the stand-in has no /v1/events:batch (404): one by one, in order
    assert not uplink.health.batching
    assert any("platform has no batch endpoint (404)" in r.getMessage() for r in caplog.records)


async def test_a_batch_refused_as_a_whole_is_sent_one_by_one(store, platform, ca_file, fake_time) -> None:
    ids = door_backlog(store, 3)

    async def refuse(request: web.Request) -> web.Response:
        return web.json_response({"status": "rejected", "event_id": None, "reason": "nonce already used"},
                                 status=401)

    platform.batch = refuse
    uplink = make_uplink(store, platform, ca_file, fake_time, batch_max=100)
    await run_until(uplink, lambda: store.depth() == 0)
    assert platform.event_ids == ids and store.dead_letters() == []


async def test_a_busy_answer_to_a_batch_pauses_all_sending(store, platform, ca_file, fake_time) -> None:
    ids = door_backlog(store, 3)
    calls: list[float] = []

    async def busy_once(request: web.Request) -> web.Response:
        calls.append(fake_time.now)
        if len(calls) == 1:
            return web.json_response({"status": "retry_later", "event_id": None, "reason": "busy",
                                      "retry_after": 90}, status=503, headers={"Retry-After": "90"})
        return web.json_response({"status": "batch", "event_id": None, "reason": None, "results": [
            {"event_id": i, "status": "accepted", "code": 201, "reason": None} for i in ids]})

    platform.batch = busy_once
    uplink = make_uplink(store, platform, ca_file, fake_time, batch_max=100)
    await run_until(uplink, lambda: store.depth() == 0)
    assert calls[1] - calls[0] == pytest.approx(90) and platform.received == []


async def test_an_answer_in_two_tcp_segments_is_read_whole(store, platform, ca_file, fake_time) -> None:
    """A read returns what has arrived so far: the hub must read the answer to its end, or a
    batch answer split across segments is unreadable and all its events are sent again."""
    ids = door_backlog(store, 40)
    calls: list[int] = []

    async def slow(request: web.Request) -> web.StreamResponse:
        calls.append(1)
        doc = json.dumps({"status": "batch", "event_id": None, "reason": None, "results": [
            {"event_id": i, "status": "accepted", "code": 201, "reason": None} for i in ids]}).encode()
        response = web.StreamResponse(status=200, headers={"Content-Type": "application/json"})
        response.content_length = len(doc)
        await response.prepare(request)
        await response.write(doc[:100])
        await asyncio.sleep(0.2)  # the rest arrives later, in its own segment
        await response.write(doc[100:])
        return response

    platform.batch = slow
    uplink = make_uplink(store, platform, ca_file, fake_time, batch_max=100)
    await run_until(uplink, lambda: store.depth() == 0)
    assert len(calls) == 1 and platform.received == []


async def test_over_the_backlog_bound_routine_events_go_first_and_urgent_never(store, platform, ca_file,
                                                                              fake_time, caplog) -> None:
    caplog.set_level(logging.WARNING, logger="safebox.hub.uplink")
    doors = door_backlog(store, 120)
    low = [store.enqueue(events.encode(events.make(
        event_id=events.hub_event_id(HUB, store.next_hub_seq()), type=events.BATTERY_LOW, hub_id=HUB,
        home_id="home-0001", occurred_at=START))) for _ in range(10)]
    presses = [store_event(store, "240ac4000099", n, events.EMERGENCY)[0] for n in range(1, 6)]
    platform.answers = [(503, {"status": "retry_later", "event_id": None, "retry_after": 3600},
                         {"Retry-After": "3600"})] * 100  # down for good
    uplink = make_uplink(store, platform, ca_file, fake_time, max_backlog=100)
    await run_until(uplink, lambda: len(platform.received) >= 1)
    assert store.depth() == 100
    dropped = {d.event_id for d in store.dead_letters(limit=1000)}
    assert dropped == set(doors[:35])  # the oldest routine events, nothing else
    assert all(d.reason == "dropped: outbox over its maximum backlog of 100 events"
               for d in store.dead_letters(limit=1000))
    assert all(store.pending(e) for e in low + presses)
    [line] = [r.getMessage() for r in caplog.records if "maximum backlog" in r.getMessage()]
    assert f"dropped the 35 oldest non-urgent ({doors[0]} .. {doors[34]})" in line and "35 dropped since" in line

    # with no routine events left, the oldest other non-urgent ones; urgent ones never
    assert store.trim_backlog(10, {events.DOOR_OPENED, events.DOOR_CLOSED}) == doors[35:] + low[:5]
    assert store.trim_backlog(1, set()) == low[5:]
    assert store.depth() == 5 and all(store.pending(e) for e in presses)


async def test_a_hub_clock_far_off_is_said_and_signed_with_the_platforms_time(store, platform, ca_file,
                                                                              fake_time, caplog) -> None:
    import time as real_time
    caplog.set_level(logging.INFO, logger="safebox.hub.uplink")
    fake_time.now = real_time.time() - 400  # the hub booted with an old clock; the platform's is right
    platform.verifier = signing.Verifier(lambda kid: KEY.public_key() if kid == HUB else None,
                                         signing.MemoryNonceStore(real_time.time), clock=real_time.time)
    event_id, _ = store_event(store)
    platform.answers = [(401, {"status": "rejected", "event_id": event_id,
                               "reason": "created 400 s ago, older than 300 s"}, {})]
    uplink = make_uplink(store, platform, ca_file, fake_time, clock_check=True,
                         clock_problem=lambda: "clock not synchronised")
    await run_until(uplink, lambda: store.depth() == 0 or store.dead_letters() != [])
    assert store.dead_letters() == []
    first, second = [r.verified for r in platform.received]
    assert re.fullmatch(r"refused: created 40\d s ago, older than 300 s", first) and second == HUB
    lines = [r.getMessage() for r in caplog.records]
    assert any(re.match(r"hub clock is -\d+ s off the platform's .*signing with the platform's time", m)
               for m in lines)
    assert any(m.startswith(f"event {event_id}: delivered") and "NOT trusted" in m for m in lines)


async def test_after_an_outage_the_emergency_is_stored_within_2_s_then_the_backlog_at_once(
        store, platform, ca_file, fake_time) -> None:
    """Routine events pile up during a 10-minute outage (their backoff grows to minutes) and a
    press is made in it; the platform comes back: the press is stored within 2 s, and the rest
    is reconsidered at once instead of each waiting out its own backoff."""
    doors = [store_event(store, f"240ac40000{d:02x}", n, events.DOOR_OPENED, "front_door")[0]
             for n in range(1, 6) for d in range(3)]
    press, _ = store_event(store, "240ac4123456", 7, events.EMERGENCY)
    platform.down_until = START + 600
    uplink = make_uplink(store, platform, ca_file, fake_time, backoff_max_s=300)
    await run_until(uplink, lambda: store.depth() == 0, timeout_s=30)
    stored = {r.event_id: r.at for r in platform.received if r.at >= platform.down_until}
    assert stored[press] - platform.down_until <= 2.0
    assert max(stored[d] for d in doors) - platform.down_until <= 3.0
    assert min(stored, key=stored.get) == press  # urgent first


async def test_an_urgent_event_refused_is_held_loudly_never_dead_lettered(store, platform, ca_file, fake_time,
                                                                        caplog) -> None:
    """The platform lost the hub's key: the emergency is refused (401) again and again. It is
    retried, said at CRITICAL and kept in the database for `status`; once the platform takes it,
    an urgent_refused event tells the call centre it came late and why."""
    caplog.set_level(logging.INFO, logger="safebox.hub.uplink")
    event_id, _ = store_event(store)
    refusal = (401, {"status": "rejected", "event_id": event_id, "reason": "unknown keyid"}, {})
    platform.answers = [refusal] * 10  # more than are asked for: the relay may retry while it is being closed
    uplink = make_uplink(store, platform, ca_file, fake_time, home_id="home-0001")
    await run_until(uplink, lambda: len(platform.received) >= 3)
    assert store.dead_letters() == [] and store.pending(event_id)
    assert held(store) == {"event_ids": [event_id], "reason": "401 rejected: unknown keyid", "since": START}
    critical = [r for r in caplog.records if r.levelno == logging.CRITICAL]
    assert len(critical) == 1 and event_id in critical[0].getMessage()  # said once, not per retry

    platform.answers = []  # the platform has the hub's key again
    uplink = make_uplink(store, platform, ca_file, fake_time, home_id="home-0001")
    await run_until(uplink, lambda: store.depth() == 0)
    assert held(store) is None
    [late, told] = [events.decode(r.body) for r in platform.received[-2:]]
    assert late["event_id"] == event_id
    assert told["type"] == events.URGENT_REFUSED and told["data"]["event_ids"] == [event_id]
    assert told["data"]["reason"] == "401 rejected: unknown keyid"
    # held from the first refusal (START, the fake clock) to the news itself, in seconds
    assert told["data"]["refused_since"] == events.timestamp(START)
    held_for = datetime.fromisoformat(told["occurred_at"]).timestamp() - START
    assert held_for > 0 and told["data"]["held_s"] == round(held_for), (told, held_for)


async def test_the_platforms_clock_offset_is_reported_for_keeping(store, platform, ca_file) -> None:
    """The platform's Date minus the hub clock: handed over when it changes by a second or more,
    so the hub keeps it across restarts (its events' times are corrected by it). The Date has
    whole seconds: answers a second apart from one clock must not count as a change."""
    kept: list[float] = []
    behind = [3600.0]  # the hub's clock, an hour behind the stand-in's (real time) and running

    def hub_clock() -> float:
        return time.time() - behind[0]

    event_id, _ = store_event(store)
    ctx = PlatformConfig(url=platform.url, ca_file=ca_file).ssl_context()
    async with PlatformClient(platform.url, hub_id=HUB, private_key=KEY, ssl_context=ctx, clock=hub_clock,
                              on_offset=kept.append) as client:
        for n in range(3):
            if n:
                await asyncio.sleep(0.6)  # the answers' Dates a second apart at least once
            assert (await client.send_event(store.get(event_id))).status in (200, 201)
        assert len(kept) == 1 and abs(kept[0] - 3600) < 2  # the later answers said the same
        behind[0] = 600.0  # the hub's clock is set (time sync came): a new offset to keep
        assert (await client.send_event(store.get(event_id))).status in (200, 201)
    assert len(kept) == 2 and abs(kept[1] - 600) < 2
    assert client.offset_to_apply() == kept[1]

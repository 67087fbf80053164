"""The relay and its platform client against a stand-in platform (`tests/uplink_platform.py`):
retries, busy answers, rejections, timeouts, order, TLS, closing.

Time is injected, so the only real waiting is the one timeout test (0.3 s).
"""

from __future__ import annotations

import asyncio
import logging
import random
import re
import ssl

import pytest
import trustme

from safebox.hub.uplink import PlatformClient
from safebox.protocol import events
from tests.relay_kit import run_until
from tests.uplink_platform import HUB, KEY, START, make_uplink, store_event
from tests.uplink_platform import ca, ca_file, fake_time, platform, store  # noqa: F401 (fixtures)


async def test_retries_after_500s_then_delivers_exactly_once(store, platform, ca_file, fake_time) -> None:
    event_id, body = store_event(store)
    platform.answers = [500, 500, 201]
    delivered: list[str] = []
    uplink = make_uplink(store, platform, ca_file, fake_time, delivered)
    await run_until(uplink, lambda: store.depth() == 0)
    assert delivered == [event_id]
    assert platform.event_ids == [event_id] * 3
    assert all(r.body == body for r in platform.received)  # the stored bytes, exactly
    assert [r.verified for r in platform.received] == [HUB] * 3
    assert len({r.nonce for r in platform.received}) == 3  # signed afresh each time
    assert len({r.signature for r in platform.received}) == 3
    jitter = random.Random(7)  # full jitter: uniform(0, min(max, initial * 2^attempts))
    expected = [jitter.uniform(0, 1.0), jitter.uniform(0, 2.0)]
    assert fake_time.sleeps == pytest.approx(expected)
    assert platform.received[1].at - platform.received[0].at == pytest.approx(expected[0])
    assert store.dead_letters() == []


@pytest.mark.parametrize("status, header, retry_after, wait", [
    (503, "120", 30, 120.0),   # the longer of header and body
    (503, "10", 60, 60.0),
    (429, None, 45, 45.0),     # body only
    (429, "7", None, 7.0),     # header only
])
async def test_busy_platform_is_waited_for(store, platform, ca_file, fake_time, status, header,
                                           retry_after, wait) -> None:
    event_id, _ = store_event(store)
    doc = {"status": "retry_later", "event_id": event_id}
    if retry_after is not None:
        doc["retry_after"] = retry_after
    platform.answers = [(status, doc, {"Retry-After": header} if header else {}), 201]
    uplink = make_uplink(store, platform, ca_file, fake_time)
    await run_until(uplink, lambda: store.depth() == 0)
    assert platform.event_ids == [event_id, event_id]
    assert platform.received[1].at - platform.received[0].at == pytest.approx(wait)
    assert fake_time.sleeps == pytest.approx([wait])


async def test_rejection_goes_to_dead_letters_with_reason(store, platform, ca_file, fake_time) -> None:
    event_id, body = store_event(store, "240ac4000002", 8, events.DOOR_CLOSED, "front_door")
    store_event(store, "240ac4000001", 3, events.DOOR_OPENED, "front_door")
    platform.answers = [(400, {"status": "rejected", "event_id": event_id, "reason": "home_id: unknown home"}, {})]
    delivered: list[str] = []
    uplink = make_uplink(store, platform, ca_file, fake_time, delivered)
    await run_until(uplink, lambda: store.depth() == 0)
    [dead] = store.dead_letters()
    assert (dead.event_id, dead.reason, dead.body, dead.attempts) == (
        event_id, "400 rejected: home_id: unknown home", body, 1)
    assert delivered == ["240ac4000001-3"]  # the next event is not held up
    assert platform.event_ids == [event_id, "240ac4000001-3"] and fake_time.sleeps == []


async def test_timeout_is_retried(store, platform, ca_file, fake_time, caplog) -> None:
    caplog.set_level(logging.INFO, logger="safebox.hub.uplink")
    event_id, _ = store_event(store)
    platform.answers = ["hang", 201]
    delivered: list[str] = []
    uplink = make_uplink(store, platform, ca_file, fake_time, delivered, timeout_s=0.3)
    await run_until(uplink, lambda: store.depth() == 0)
    assert delivered == [event_id] and platform.event_ids == [event_id, event_id]
    lines = [r.getMessage() for r in caplog.records if r.name == "safebox.hub.uplink"]
    assert re.fullmatch(rf"event {event_id}: timeout, after \d+ ms; retry in \d+\.\d s \(attempt 1\)", lines[0])
    assert re.fullmatch(rf"event {event_id}: delivered, 201 in \d+ ms", lines[1])
    assert KEY.public_key().public_bytes_raw().hex() not in caplog.text


async def test_urgent_first_then_the_rest_in_order(store, platform, ca_file, fake_time) -> None:
    store_event(store, "240ac4000001", 3, events.DOOR_OPENED, "front_door")
    hub_event = events.encode(events.make(event_id=events.hub_event_id(HUB, store.next_hub_seq()),
                                          type=events.BATTERY_LOW, hub_id=HUB, home_id="home-0001",
                                          occurred_at=START))
    hub_id = store.enqueue(hub_event)
    store_event(store, "240ac4123456", 10, events.EMERGENCY)
    calls: list[str] = []

    uplink = make_uplink(store, platform, ca_file, fake_time, on_delivered=calls.append)
    await run_until(uplink, lambda: store.depth() == 0)
    assert platform.event_ids == ["240ac4123456-10", "240ac4000001-3", hub_id]
    assert calls == platform.event_ids


async def test_notify_wakes_the_idle_loop(store, platform, ca_file, fake_time) -> None:
    uplink = make_uplink(store, platform, ca_file, fake_time)
    task = asyncio.create_task(uplink.run())
    await asyncio.sleep(0.05)
    event_id, _ = store_event(store)
    await asyncio.sleep(0.1)
    assert platform.received == []  # stored but not announced: the loop sleeps
    uplink.notify()
    async with asyncio.timeout(5):
        while store.depth():
            await asyncio.sleep(0.005)
    assert platform.event_ids == [event_id]
    await uplink.close()
    await task


async def test_untrusted_certificate_is_refused(store, platform, fake_time, tmp_path) -> None:
    other_ca = tmp_path / "other-ca.pem"
    trustme.CA().cert_pem.write_to_path(str(other_ca))
    event_id, _ = store_event(store)
    uplink = make_uplink(store, platform, other_ca, fake_time)
    await run_until(uplink, lambda: store.get(event_id).attempts >= 2)
    assert "CERTIFICATE_VERIFY_FAILED" in store.get(event_id).last_error
    assert platform.received == [] and store.pending(event_id)


def test_tls_verification_cannot_be_switched_off(store, ca_file) -> None:
    off = ssl.create_default_context()
    off.check_hostname = False
    off.verify_mode = ssl.CERT_NONE
    no_host = ssl.create_default_context()
    no_host.check_hostname = False
    for ctx in (off, no_host):
        with pytest.raises(ValueError, match="TLS verification cannot be switched off"):
            PlatformClient("https://127.0.0.1:1", hub_id=HUB, private_key=KEY, ssl_context=ctx)
    with pytest.raises(ValueError, match="must be https://"):
        PlatformClient("http://127.0.0.1:1", hub_id=HUB, private_key=KEY, ssl_context=ssl.create_default_context())


async def test_close_abandons_the_attempt_in_flight_and_is_safe_twice(store, platform, ca_file, fake_time) -> None:
    event_id, _ = store_event(store)
    platform.answers = ["hang"]
    uplink = make_uplink(store, platform, ca_file, fake_time)
    task = asyncio.create_task(uplink.run())
    async with asyncio.timeout(5):
        while not platform.received:
            await asyncio.sleep(0.005)
    async with asyncio.timeout(1):  # well before the 10 s timeout or the 5 s hang
        await uplink.close()
        await uplink.close()
        await task
    item = store.get(event_id)
    assert (item.attempts, item.last_error) == (0, None)  # not counted as a failure: it simply waits
    await uplink.run()  # after close: returns at once


async def test_close_before_run(store, platform, ca_file, fake_time) -> None:
    uplink = make_uplink(store, platform, ca_file, fake_time)
    await uplink.close()
    await uplink.close()
    async with asyncio.timeout(1):
        await uplink.run()
    assert platform.received == []

"""tools/sim/snapshot.py: the tools' read-only view of the hub's and the receiver's SQLite files,
read from files the real stores wrote (safebox.hub.store, the receiver's store)."""

from __future__ import annotations

import sqlite3

import pytest

from safebox.hub.store import HubStore
from safebox.protocol import events
from safebox.tools.receiver.store import Store
from safebox.tools.sim import snapshot

T0 = 1_800_000_000.0
DEV = "240ac4000001"


def _body(event_id: str, counter: int | None, hub_id: str = "hub-test-0001", type_: str = events.EMERGENCY) -> bytes:
    device = {"id": DEV, "role": "pendant", "room": "hall"} if counter is not None else None
    return events.encode(events.make(event_id=event_id, type=type_, hub_id=hub_id, home_id="home-test-0001",
                                     occurred_at=T0, device=device, counter=counter,
                                     data={"battery": 90, "action": "press"} if device else {"interval_s": 60}))


def test_the_hub_snapshot_holds_counters_outbox_and_dead_letters(tmp_path):
    db = tmp_path / "hub.db"
    assert snapshot.hub(db).error  # no file: said, not raised
    with HubStore.open(db, clock=lambda: T0) as store:
        store.accept(DEV, 1, _body(f"{DEV}-1", 1))
        store.accept(DEV, 2, _body(f"{DEV}-2", 2))
        store.accept("240ac4000002", 7, None)  # a heartbeat: the counter advances, nothing queued
        hub_event = store.enqueue(_body("hub-test-0001-1", None, type_=events.HUB_HEARTBEAT))
        store.mark_dead(f"{DEV}-2", "refused")
    got = snapshot.hub(db)
    assert got.error == ""
    assert got.counters == ((DEV, 2), ("240ac4000002", 7))
    assert [w.event_id for w in got.outbox] == [f"{DEV}-1", hub_event]
    assert [w.from_device for w in got.outbox] == [True, False]
    assert got.dead_letters == (f"{DEV}-2",)
    assert got.device_events_held == {f"{DEV}-1", f"{DEV}-2"}


def test_snapshots_cannot_write(tmp_path):
    db = tmp_path / "hub.db"
    HubStore.open(db).close()
    con = sqlite3.connect(f"file:{db}?mode=ro", uri=True)  # the way snapshot opens it
    with pytest.raises(sqlite3.OperationalError, match="readonly"):
        con.execute("DELETE FROM outbox")
    con.close()


def test_the_platform_snapshot_reads_what_the_receiver_stored(tmp_path):
    db = tmp_path / "platform.db"
    assert snapshot.platform(db) == []
    store = Store(db)
    try:
        body = _body(f"{DEV}-1", 1)
        store.record_event("hub-test-0001", body, events.decode(body), now=T0 + 1)
    finally:
        store.close()
    [got] = snapshot.platform(db)
    assert (got.hub_id, got.event_id, got.type, got.device_id, got.counter) == \
        ("hub-test-0001", f"{DEV}-1", "emergency", DEV, 1)
    assert got.body == body
    assert snapshot.stored_at(db, f"{DEV}-1") == pytest.approx(T0 + 1, abs=0.001)
    assert snapshot.stored_at(db, f"{DEV}-2") is None

"""The hub database, on real SQLite files: replay guard, outbox order, dead letters, crash safety."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from safebox.hub.store import SCHEMA_VERSION, HubStore, OutboxItem, SeenDevice, StoreError, Verdict
from safebox.protocol import events

PENDANT = "240ac4123456"
DOOR = "240ac4000001"
HUB = "hub-7f3a9c"
T0 = 1_790_000_000.0


def device_body(device_id: str, counter: int, type_: str, role: str = "pendant") -> bytes:
    return events.encode(events.make(
        event_id=f"{device_id}-{counter}", type=type_, hub_id=HUB, home_id="home-0001",
        occurred_at=T0, device={"id": device_id, "role": role, "room": "hall"}, counter=counter,
        data={"battery": 90}))


def hub_body(seq: int, type_: str = events.BATTERY_LOW) -> bytes:
    return events.encode(events.make(event_id=events.hub_event_id(HUB, seq), type=type_, hub_id=HUB,
                                     home_id="home-0001", occurred_at=T0))


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "state" / "hub.db"


@pytest.fixture
def store(db_path: Path):
    with HubStore.open(db_path, clock=lambda: T0) as s:
        yield s


def test_accept_new_repeat_replay(store: HubStore) -> None:
    body = device_body(PENDANT, 10, events.EMERGENCY)
    assert store.accept(PENDANT, 10, body) == Verdict("new", None, False)
    assert store.accept(PENDANT, 10, body) == Verdict("repeat", 10, True)
    assert store.accept(PENDANT, 9, device_body(PENDANT, 9, events.EMERGENCY)) == Verdict("replay", 10, True)
    assert store.accept(PENDANT, 11, None) == Verdict("new", 10, True)
    assert store.accept(PENDANT, 11, None) == Verdict("repeat", 11, False)
    assert store.last_counter(PENDANT) == 11
    assert store.last_counter(DOOR) is None
    assert [i.event_id for i in store.due(T0, 10)] == [f"{PENDANT}-10"]  # stored once, heartbeat not at all
    assert store.get(f"{PENDANT}-10") == OutboxItem(
        event_id=f"{PENDANT}-10", type="emergency", urgent=True, body=body, source=PENDANT, created_at=T0,
        attempts=0, next_attempt_at=0.0, last_error=None)


def test_counters_and_outbox_persist_and_a_second_connection_sees_them(db_path: Path) -> None:
    first = HubStore.open(db_path)
    first.accept(PENDANT, 10, device_body(PENDANT, 10, events.EMERGENCY))
    second = HubStore.open(db_path)  # while the first is still open
    assert second.last_counter(PENDANT) == 10 and second.depth() == 1
    first.close()
    first.close()  # twice is fine
    second.close()
    with HubStore.open(db_path) as again:
        assert again.accept(PENDANT, 10, None).kind == "repeat"
        assert again.accept(PENDANT, 3, None) == Verdict("replay", 10, True)
        assert again.depth() == 1


def test_wal_and_full_sync(store: HubStore, db_path: Path) -> None:
    assert store._conn.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL
    with sqlite3.connect(db_path) as other:
        assert other.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert other.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION


def test_sources_holding_an_urgent_event_first_then_oldest_first(store: HubStore) -> None:
    """The hub's own source holds toilet_overdue, so its older battery_low goes first too (in
    order), then the pendant's presses; the door sensor's events after them."""
    store.accept(DOOR, 1, device_body(DOOR, 1, events.DOOR_OPENED, "front_door"))
    store.enqueue(hub_body(store.next_hub_seq(), events.BATTERY_LOW))
    store.accept(PENDANT, 5, device_body(PENDANT, 5, events.LIFE_SERVICE))
    store.accept(DOOR, 2, device_body(DOOR, 2, events.DOOR_CLOSED, "front_door"))
    seq = store.next_hub_seq()
    store.enqueue(hub_body(seq, events.TOILET_OVERDUE))
    store.accept(PENDANT, 6, device_body(PENDANT, 6, events.EMERGENCY))
    order = [(i.type, i.urgent) for i in store.due(T0, 10)]
    assert order == [("battery_low", False), ("life_service", True), ("toilet_overdue", True), ("emergency", True),
                     ("door_opened", False), ("door_closed", False)]
    assert [i.type for i in store.due(T0, 2)] == ["battery_low", "life_service"]
    assert store.urgent_sources() == {PENDANT, HUB}
    assert store.depth() == 6


def test_one_sources_events_stay_in_order_while_one_waits(store: HubStore) -> None:
    store.accept(DOOR, 1, device_body(DOOR, 1, events.DOOR_OPENED, "front_door"))
    store.accept(DOOR, 2, device_body(DOOR, 2, events.DOOR_CLOSED, "front_door"))
    store.accept(PENDANT, 5, device_body(PENDANT, 5, events.EMERGENCY))
    assert store.mark_retry(f"{DOOR}-1", T0 + 30, "HTTP 500")
    # door_closed must not overtake door_opened; the pendant is not held up by the door.
    assert [i.event_id for i in store.due(T0, 10)] == [f"{PENDANT}-5"]
    store.mark_delivered(f"{PENDANT}-5")
    assert store.next_due_at() == T0 + 30
    assert [i.event_id for i in store.due(T0 + 30, 10)] == [f"{DOOR}-1", f"{DOOR}-2"]
    item = store.get(f"{DOOR}-1")
    assert (item.attempts, item.last_error) == (1, "HTTP 500")


def test_a_sources_urgent_event_never_overtakes_its_older_routine_one(store: HubStore) -> None:
    occupied = store.enqueue(hub_body(store.next_hub_seq(), events.TOILET_OCCUPIED))
    overdue = store.enqueue(hub_body(store.next_hub_seq(), events.TOILET_OVERDUE))
    assert store.mark_retry(occupied, T0 + 300, "HTTP 500")
    assert store.due(T0, 10) == []  # the overdue waits for its occupied
    assert store.next_due_at() == T0 + 300
    assert store.reset_waits(T0 + 5) == 1  # the platform answers again: all due now, in order
    assert [i.event_id for i in store.due(T0 + 5, 10)] == [occupied, overdue]
    assert store.get(occupied).attempts == 1


def test_delivered_dead_and_revived(store: HubStore) -> None:
    store.accept(PENDANT, 5, device_body(PENDANT, 5, events.EMERGENCY))
    store.accept(PENDANT, 6, device_body(PENDANT, 6, events.COMMUNITY_SERVICE))
    assert store.pending(f"{PENDANT}-5")
    assert store.mark_delivered(f"{PENDANT}-5") is True
    assert store.mark_delivered(f"{PENDANT}-5") is False
    assert not store.pending(f"{PENDANT}-5")
    assert store.mark_dead(f"{PENDANT}-6", "400 rejected: unknown home") is True
    assert store.depth() == 0 and store.next_due_at() is None
    [dead] = store.dead_letters()
    assert (dead.event_id, dead.type, dead.attempts, dead.reason) == (
        f"{PENDANT}-6", "community_service", 1, "400 rejected: unknown home")
    assert dead.body == device_body(PENDANT, 6, events.COMMUNITY_SERVICE)
    assert store.revive(f"{PENDANT}-6") is True and store.revive(f"{PENDANT}-6") is False
    assert store.dead_letters() == [] and [i.event_id for i in store.due(T0, 5)] == [f"{PENDANT}-6"]
    assert store.mark_retry("nothing-1", T0, "x") is False and store.mark_dead("nothing-1", "x") is False


def test_hub_sequence_persists_and_starts_at_the_clock(db_path: Path) -> None:
    with HubStore.open(db_path, clock=lambda: T0) as s:
        first = s.next_hub_seq()
        assert first == int(T0) + 1 and s.next_hub_seq() == first + 1
        assert s.enqueue(hub_body(first)) == f"{HUB}-{first}"
    with HubStore.open(db_path, clock=lambda: T0 + 999) as s:
        assert s.next_hub_seq() == first + 2  # persisted, not restarted from the new clock


def test_devices_seen(store: HubStore) -> None:
    store.accept(PENDANT, 1, None, heard_at=T0, battery=80, rssi=-70)
    store.accept(PENDANT, 2, None, heard_at=T0 + 60, battery=None, rssi=-65)
    store.accept(PENDANT, 2, None, heard_at=T0 + 99, battery=1, rssi=-1)  # a repeat changes nothing
    store.accept(DOOR, 7, None)  # no heard_at: not recorded
    assert store.seen(PENDANT) == SeenDevice(PENDANT, T0 + 60, 2, 80, -65)
    assert store.seen_devices() == [SeenDevice(PENDANT, T0 + 60, 2, 80, -65)]
    store.forget_device(PENDANT)
    assert store.seen(PENDANT) is None and store.last_counter(PENDANT) is None


@pytest.mark.parametrize("args, error", [
    ((PENDANT, -1, None), "counter: an integer"),
    ((PENDANT, 2**32, None), "counter: an integer"),
    ((PENDANT, True, None), "counter: an integer"),
    ((PENDANT, "11", None), "counter: an integer"),
    (("240AC4123456", 11, None), "device_id: 12 lower-case hex"),
    ((PENDANT, 11, b"{not json"), "body is not UTF-8 JSON"),
    ((PENDANT, 11, device_body(PENDANT, 12, events.EMERGENCY)), "event_id: body is"),
    ((PENDANT, 11, device_body(DOOR, 11, events.DOOR_OPENED, "front_door")), "event_id: body is"),
    ((PENDANT, 11, hub_body(1)), "event_id: body is"),
    ((PENDANT, 11, b'{"type": "emergency"}'), "required string"),
])
def test_bad_input_is_refused_and_harms_nothing(store: HubStore, args: tuple, error: str) -> None:
    store.accept(PENDANT, 10, device_body(PENDANT, 10, events.EMERGENCY))
    with pytest.raises(ValueError, match=error):
        store.accept(*args)
    assert store.last_counter(PENDANT) == 10 and store.depth() == 1
    assert store.accept(PENDANT, 11, None).kind == "new"


def test_enqueue_refuses_device_events(store: HubStore) -> None:
    with pytest.raises(events.EventError, match="device events go through accept"):
        store.enqueue(device_body(PENDANT, 5, events.EMERGENCY))
    assert store.depth() == 0 and store.last_counter(PENDANT) is None


def test_failed_write_rolls_back_counter_and_event(store: HubStore, db_path: Path) -> None:
    store.accept(PENDANT, 10, device_body(PENDANT, 10, events.EMERGENCY))
    with sqlite3.connect(db_path) as other:  # make the outbox insert fail after the counter update
        other.execute("CREATE TRIGGER fail BEFORE INSERT ON outbox BEGIN SELECT RAISE(ABORT, 'disk full'); END")
    with pytest.raises(StoreError, match="write failed and was rolled back: disk full"):
        store.accept(PENDANT, 11, device_body(PENDANT, 11, events.EMERGENCY))
    with HubStore.open(db_path) as second:
        assert second.last_counter(PENDANT) == 10 and second.depth() == 1
    with sqlite3.connect(db_path) as other:
        other.execute("DROP TRIGGER fail")
    assert store.accept(PENDANT, 11, device_body(PENDANT, 11, events.EMERGENCY)).kind == "new"


_CHILD = """
import os, sys
sys.path[:0] = {path!r}
from safebox.hub.store import HubStore
from safebox.protocol import events
def body(c):
    return events.encode(events.make(event_id=f"240ac4123456-{{c}}", type="emergency", hub_id="hub-7f3a9c",
        home_id="home-0001", occurred_at=0, device={{"id": "240ac4123456", "role": "pendant"}}, counter=c))
store = HubStore.open({db!r})
store.accept("240ac4123456", 7, body(7))
# Die in the middle of the next accept: counter updated and event inserted, not committed.
store._conn.create_function("crash", 0, lambda: os._exit(3))
store._conn.execute("CREATE TEMP TRIGGER crash AFTER INSERT ON main.outbox BEGIN SELECT crash(); END")
store.accept("240ac4123456", 8, body(8))
os._exit(0)
"""


def test_process_killed_mid_transaction_leaves_only_whole_events(db_path: Path) -> None:
    HubStore.open(db_path).close()
    code = textwrap.dedent(_CHILD.format(path=sys.path, db=str(db_path)))
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=20)
    assert result.returncode == 3, result.stderr  # died inside the second accept, never closed
    with HubStore.open(db_path) as s:
        assert s.last_counter("240ac4123456") == 7
        assert [i.event_id for i in s.due(0, 10)] == ["240ac4123456-7"]
        assert s._conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"


def test_newer_schema_is_refused_clearly(db_path: Path) -> None:
    HubStore.open(db_path).close()
    with sqlite3.connect(db_path) as other:
        other.execute("PRAGMA user_version = 7")
    with pytest.raises(StoreError, match=rf"schema version 7 was written by a newer hub .*knows up to {SCHEMA_VERSION}.*upgrade"):
        HubStore.open(db_path)


def test_not_a_database_is_refused_and_left_alone(tmp_path: Path) -> None:
    path = tmp_path / "hub.db"
    path.write_bytes(b"this is not sqlite" * 100)
    with pytest.raises(StoreError, match=rf"^{path}: not a usable hub database"):
        HubStore.open(path)
    assert path.read_bytes() == b"this is not sqlite" * 100


def test_closed_store_says_so(store: HubStore) -> None:
    store.close()
    with pytest.raises(StoreError, match="closed"):
        store.depth()
    with pytest.raises(StoreError, match="closed"):
        store.accept(PENDANT, 1, None)

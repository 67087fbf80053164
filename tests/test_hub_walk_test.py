"""The walk-test window: the hub marks the events of the devices under test, for a bounded
time, from a private file only the hub's user can write; nothing a device sends can do it."""

from __future__ import annotations

import json
import os
from pathlib import Path

from safebox.hub import walk_test
from safebox.hub.devices import Devices
from safebox.hub.ingest import Ingest
from safebox.hub.store import HubStore
from safebox.hub.walk_test import MAX_WINDOW_S, WindowReader
from safebox.protocol import bthome, events
from tests.test_hub_ingest import FRONT, NOW, PENDANT, TOILET, frame, press


def _ingest(state: Path, clock: list[float]) -> tuple[Ingest, HubStore]:
    devices = Devices.load(state / "devices.json")
    for d in (PENDANT, FRONT, TOILET):
        devices.add(d)
    store = HubStore.open(state / "hub.db", clock=lambda: clock[0])
    return Ingest(store, devices, "hub-7f3a9c", "home-0001", clock=lambda: clock[0],
                  is_test=WindowReader(state).covers), store


def _data(store: HubStore, event_id: str | None) -> dict:
    assert event_id is not None
    item = store.get(event_id)
    assert item is not None
    return json.loads(item.body)["data"]


def test_events_of_the_devices_under_test_are_marked_while_the_window_is_open(tmp_path: Path) -> None:
    clock = [NOW]
    ingest, store = _ingest(tmp_path, clock)
    before = ingest.handle(PENDANT.address, press(1), -60)
    walk_test.open_window(tmp_path, [PENDANT.id], now=NOW + 1, seconds=120)
    clock[0] = NOW + 2
    during = ingest.handle(PENDANT.address, press(2), -60)
    door = ingest.handle(FRONT.address, frame(FRONT, 1, [(bthome.OBJ_BATTERY, 90), (bthome.OBJ_DOOR, 1)]), -60)
    clock[0] = NOW + 200  # past the window's end: real again, though the file is still there
    after = ingest.handle(PENDANT.address, press(3), -60)
    walk_test.close_window(tmp_path)
    clock[0] = NOW + 3
    closed = ingest.handle(PENDANT.address, press(4), -60)
    assert "test" not in _data(store, before.event_id) and "rssi" not in _data(store, before.event_id)
    assert _data(store, during.event_id)["test"] is True
    assert _data(store, during.event_id)["rssi"] == -60  # the installer sees the signal during a walk test
    assert door.kind == "event" and store.get(door.event_id) is None  # not under test: a door move stays home
    assert "test" not in _data(store, after.event_id) and "test" not in _data(store, closed.event_id)
    store.close()


def test_a_walk_test_sends_the_door_moves_it_covers(tmp_path: Path) -> None:
    clock = [NOW]
    ingest, store = _ingest(tmp_path, clock)
    walk_test.open_window(tmp_path, [FRONT.id], now=NOW, seconds=120)
    door = ingest.handle(FRONT.address, frame(FRONT, 1, [(bthome.OBJ_DOOR, 1)]), -58)
    assert _data(store, door.event_id) == {"test": True, "rssi": -58, "hub_stored_at": events.timestamp(NOW)}  # in the outbox, marked, with its signal
    store.close()


def test_a_window_the_hub_must_not_believe_marks_nothing(tmp_path: Path) -> None:
    path = walk_test.path_in(tmp_path)
    walk_test.open_window(tmp_path, [PENDANT.id], now=NOW, seconds=10 * MAX_WINDOW_S)  # capped when written
    assert walk_test.read_window(tmp_path).until == NOW + MAX_WINDOW_S  # type: ignore[union-attr]
    path.write_text(json.dumps({"devices": [PENDANT.id], "opened_at": NOW, "until": NOW + MAX_WINDOW_S + 1}))
    os.chmod(path, 0o600)
    assert walk_test.read_window(tmp_path) is None  # too long: written by hand, not by the installer
    path.write_text(json.dumps({"devices": [PENDANT.id], "opened_at": NOW, "until": NOW + 60}))
    os.chmod(path, 0o644)
    assert walk_test.read_window(tmp_path) is None  # readable by others: not the hub's own file
    os.chmod(path, 0o600)
    assert WindowReader(tmp_path).covers(PENDANT.id, NOW + 1)
    path.write_text("not json")
    assert walk_test.read_window(tmp_path) is None

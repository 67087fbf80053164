"""Frames to events: real frames from bthome.seal, a real SQLite store, whole outcomes asserted."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest

from safebox.hub.devices import Device, Devices
from safebox.hub.ingest import Ingest, Outcome
from safebox.hub.privacy import EVERYTHING, Privacy
from safebox.hub.store import HubStore, SeenDevice
from safebox.protocol import bthome, events

NOW = 1_790_000_000.0
PENDANT = Device.new("24:0A:C4:12:34:56", "pendant", "bedroom", key=bytes.fromhex("231d39c1d7cc1ab1aee224cd096db932"))
FRONT = Device.new("24:0A:C4:00:00:01", "front_door", "hall", key=bytes.fromhex("11" * 16))
TOILET = Device.new("24:0A:C4:00:00:02", "toilet_door", "toilet", key=bytes.fromhex("22" * 16))
STRANGER = "11:22:33:44:55:66"


def frame(device: Device, counter: int, objects: list, event: bool = True) -> bytes:
    return bthome.seal(device.key, device.mac, counter, objects, event=event)


def press(counter: int, button: str = "emergency", action: int = bthome.BUTTON_PRESS, battery: int = 87) -> bytes:
    return frame(PENDANT, counter, bthome.pendant_objects(battery, button, action))


def heartbeat(device: Device, counter: int, battery: int = 80) -> bytes:
    return frame(device, counter, [(bthome.OBJ_BATTERY, battery)], event=False)


@pytest.fixture
def state(tmp_path: Path) -> Path:
    devices = Devices.load(tmp_path / "devices.json")
    for d in (PENDANT, FRONT, TOILET):
        devices.add(d)
    return tmp_path


def make_ingest(state: Path, privacy: Privacy = EVERYTHING) -> tuple[Ingest, HubStore]:
    """Most tests here read what a frame means: everything sent, RSSI included (the defaults,
    which keep door moves and RSSI at the hub, have their own tests below)."""
    store = HubStore.open(state / "hub.db", clock=lambda: NOW)
    return Ingest(store, Devices.load(state / "devices.json"), "hub-7f3a9c", "home-0001", clock=lambda: NOW,
                  privacy=privacy), store


@pytest.fixture
def ingest(state: Path):
    ing, store = make_ingest(state)
    yield ing
    store.close()


@pytest.fixture
def store(ingest: Ingest) -> HubStore:
    return ingest._store


STORED = events.timestamp(NOW)  # data.hub_stored_at (SPEC 2): when the hub stored it, by its clock


def body_of(store: HubStore, event_id: str) -> dict:
    return json.loads(store.get(event_id).body)


def refusals(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "safebox.hub.ingest" and r.levelno == logging.WARNING]


def test_new_emergency_event(ingest: Ingest, store: HubStore) -> None:
    out = ingest.handle("24:0A:C4:12:34:56", press(10), -61)
    assert out == Outcome(kind="event", event_id="240ac4123456-10", counter=10, reason=None,
                          ack_needed=True, device=PENDANT, body=store.get("240ac4123456-10").body)
    assert body_of(store, "240ac4123456-10") == {
        "event_id": "240ac4123456-10", "type": "emergency", "hub_id": "hub-7f3a9c", "home_id": "home-0001",
        "device": {"id": "240ac4123456", "role": "pendant", "room": "bedroom"}, "counter": 10,
        "occurred_at": events.timestamp(NOW), "data": {"battery": 87, "action": "press", "rssi": -61, "hub_stored_at": STORED}}
    assert store.seen(PENDANT.id) == SeenDevice(PENDANT.id, NOW, 10, 87, -61)


@pytest.mark.parametrize("button, action, type_, word", [
    ("community_service", bthome.BUTTON_LONG_PRESS, "community_service", "long_press"),
    ("life_service", bthome.BUTTON_PRESS, "life_service", "press"),
])
def test_other_buttons(ingest: Ingest, store: HubStore, button: str, action: int, type_: str, word: str) -> None:
    out = ingest.handle("24:0a:c4:12:34:56", press(3, button, action), None)  # lower-case address too
    assert (out.kind, out.event_id) == ("event", "240ac4123456-3")
    body = body_of(store, "240ac4123456-3")
    assert (body["type"], body["data"]) == (type_, {"battery": 87, "action": word, "hub_stored_at": STORED})


def test_device_timestamp_is_occurred_at(ingest: Ingest, store: HubStore) -> None:
    objects = bthome.pendant_objects(50, "emergency") + [(bthome.OBJ_TIMESTAMP, 1_789_999_000)]
    ingest.handle(PENDANT.address, frame(PENDANT, 4, objects), -50)
    assert body_of(store, "240ac4123456-4")["occurred_at"] == events.timestamp(1_789_999_000)


def test_repeat_is_acked_again_not_stored_again(ingest: Ingest, store: HubStore) -> None:
    data = press(10)
    ingest.handle(PENDANT.address, data, -61)
    out = ingest.handle(PENDANT.address, data, -70)
    assert out == Outcome(kind="repeat", event_id="240ac4123456-10", counter=10, reason=None,
                          ack_needed=True, device=PENDANT)
    assert store.depth() == 1
    assert store.seen(PENDANT.id).rssi == -61  # a repeat is not a new sighting


def test_replay_refused_with_reason_and_logged(ingest: Ingest, store: HubStore,
                                               caplog: pytest.LogCaptureFixture) -> None:
    old = press(9)
    ingest.handle(PENDANT.address, press(10), -61)
    caplog.set_level(logging.DEBUG)
    out = ingest.handle(PENDANT.address, old, -61)
    assert out == Outcome(kind="refused", event_id=None, counter=9,
                          reason="replayed counter 9 (last accepted 10)", ack_needed=False, device=PENDANT)
    assert refusals(caplog) == ["refused frame from 24:0A:C4:12:34:56: replayed counter 9 (last accepted 10)"]
    assert store.depth() == 1 and store.last_counter(PENDANT.id) == 10


def test_counters_survive_reopening_the_database(state: Path) -> None:
    ingest, store = make_ingest(state)
    old, last = press(9), press(10)
    assert ingest.handle(PENDANT.address, old, -60).kind == "event"
    assert ingest.handle(PENDANT.address, last, -60).kind == "event"
    store.close()
    ingest, store = make_ingest(state)  # a hub restart
    try:
        assert ingest.handle(PENDANT.address, old, -60).reason == "replayed counter 9 (last accepted 10)"
        assert ingest.handle(PENDANT.address, last, -60).kind == "repeat"
        assert store.depth() == 2
    finally:
        store.close()


def test_forged_frames_refused(ingest: Ingest, store: HubStore, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    tampered = bytearray(press(10))
    tampered[2] ^= 0x01
    wrong_key = bthome.seal(bytes(range(1, 17)), PENDANT.mac, 11, bthome.pendant_objects(87, "emergency"))
    for data in (bytes(tampered), wrong_key):
        out = ingest.handle(PENDANT.address, data, -61)
        assert out == Outcome(kind="refused", reason="MIC mismatch: forged frame or wrong key", device=PENDANT)
    assert store.last_counter(PENDANT.id) is None and store.depth() == 0
    assert len(refusals(caplog)) == 2
    assert PENDANT.key.hex() not in caplog.text.lower()


def test_unreadable_and_unpaired(ingest: Ingest, store: HubStore, caplog: pytest.LogCaptureFixture) -> None:
    assert ingest.handle(PENDANT.address, b"\x45\x01\x02", None) == Outcome(
        kind="refused", reason="frame of 3 bytes is too short", device=PENDANT)
    assert ingest.handle(STRANGER, press(10), -40) == Outcome(kind="refused", reason=f"unpaired device {STRANGER}")
    assert ingest.handle("not-a-mac", press(10), -40).reason == "unpaired device not-a-mac"
    assert refusals(caplog) == [
        "refused frame from 24:0A:C4:12:34:56: frame of 3 bytes is too short",
        f"refused frame from {STRANGER}: unpaired device {STRANGER} (not logged again for 3600 s)",
        "refused frame from not-a-mac: unpaired device not-a-mac (not logged again for 3600 s)"]
    assert store.depth() == 0


def test_heartbeat_advances_counter_without_outbox_row(ingest: Ingest, store: HubStore) -> None:
    ingest.handle(PENDANT.address, press(10), -61)
    out = ingest.handle(PENDANT.address, heartbeat(PENDANT, 11, battery=86), -64)
    assert out == Outcome(kind="heartbeat", event_id=None, counter=11, reason=None, ack_needed=False, device=PENDANT)
    assert store.last_counter(PENDANT.id) == 11 and store.depth() == 1
    assert store.seen(PENDANT.id) == SeenDevice(PENDANT.id, NOW, 11, 86, -64)
    # Same heartbeat again: a repeat that wants no ack; the older event is now a replay.
    assert ingest.handle(PENDANT.address, heartbeat(PENDANT, 11, battery=86), -64) == Outcome(
        kind="repeat", counter=11, ack_needed=False, device=PENDANT)
    assert ingest.handle(PENDANT.address, press(10), -61).reason == "replayed counter 10 (last accepted 11)"


def test_event_with_the_counter_of_a_heartbeat_is_not_acked(ingest: Ingest, store: HubStore) -> None:
    ingest.handle(PENDANT.address, heartbeat(PENDANT, 11), -64)
    out = ingest.handle(PENDANT.address, press(11), -61)
    assert out == Outcome(kind="refused", counter=11, device=PENDANT,
                          reason="event frame reuses counter 11 of a heartbeat; not stored")
    assert store.depth() == 0


@pytest.mark.parametrize("objects, reason", [
    (bthome.pendant_objects(87), "pendant event frame with no button pressed"),
    ([(bthome.OBJ_BATTERY, 87), (bthome.OBJ_BUTTON, 1)], "pendant frame has 1 button objects, expected 3"),
    ([(bthome.OBJ_BUTTON, 0), (bthome.OBJ_BUTTON, 2), (bthome.OBJ_BUTTON, 0)],
     "button community_service has unknown value 0x02"),
])
def test_pendant_event_without_a_usable_button_is_refused(ingest: Ingest, store: HubStore,
                                                         objects: list, reason: str) -> None:
    assert ingest.handle(PENDANT.address, frame(PENDANT, 10, objects), -61) == Outcome(
        kind="refused", counter=10, reason=reason, device=PENDANT)
    assert store.last_counter(PENDANT.id) is None and store.depth() == 0


def test_two_buttons_pressed_emergency_wins(ingest: Ingest, store: HubStore) -> None:
    objects = [(bthome.OBJ_BATTERY, 40), (bthome.OBJ_BUTTON, 0), (bthome.OBJ_BUTTON, 1), (bthome.OBJ_BUTTON, 4)]
    assert ingest.handle(PENDANT.address, frame(PENDANT, 1, objects), None).kind == "event"
    objects = [(bthome.OBJ_BATTERY, 40), (bthome.OBJ_BUTTON, 4), (bthome.OBJ_BUTTON, 1), (bthome.OBJ_BUTTON, 0)]
    ingest.handle(PENDANT.address, frame(PENDANT, 2, objects), None)
    assert body_of(store, "240ac4123456-1")["type"] == "community_service"
    assert (body_of(store, "240ac4123456-2")["type"], body_of(store, "240ac4123456-2")["data"]["action"]) == (
        "emergency", "long_press")


def test_door_events(ingest: Ingest, store: HubStore) -> None:
    opened = frame(FRONT, 20, [(bthome.OBJ_BATTERY, 99), (bthome.OBJ_DOOR, 1)])
    closed = frame(TOILET, 5, [(bthome.OBJ_DOOR, 0), (bthome.OBJ_OCCUPANCY, 1)])
    out = ingest.handle(FRONT.address, opened, -55)
    assert out == Outcome(kind="event", event_id="240ac4000001-20", counter=20, ack_needed=True, device=FRONT,
                          body=store.get("240ac4000001-20").body)
    assert ingest.handle(TOILET.address, closed, -75).event_id == "240ac4000002-5"
    front, toilet = body_of(store, "240ac4000001-20"), body_of(store, "240ac4000002-5")
    assert (front["type"], front["device"], front["data"]) == (
        "door_opened", {"id": "240ac4000001", "role": "front_door", "room": "hall"}, {"battery": 99, "rssi": -55, "hub_stored_at": STORED})
    assert (toilet["type"], toilet["device"]["role"], toilet["data"]) == (
        "door_closed", "toilet_door", {"rssi": -75, "occupancy": True, "hub_stored_at": STORED})
    assert [i.type for i in store.due(NOW, 5)] == ["door_opened", "door_closed"]


def test_by_default_door_moves_and_rssi_stay_at_the_hub(state: Path) -> None:
    """docs/PRIVACY.md: a door's every movement is read (its counter taken, the rules given its
    bytes) but goes into no outbox; the RSSI is recorded for `status`, not sent."""
    ingest, store = make_ingest(state, Privacy())
    try:
        out = ingest.handle(FRONT.address, frame(FRONT, 20, [(bthome.OBJ_DOOR, 1)]), -55)
        assert (out.kind, out.event_id, out.ack_needed) == ("event", "240ac4000001-20", True)
        assert json.loads(out.body)["type"] == "door_opened"  # what the rules read
        assert store.get("240ac4000001-20") is None and store.depth() == 0
        assert ingest.handle(FRONT.address, frame(FRONT, 20, [(bthome.OBJ_DOOR, 1)]), -55).kind == "repeat"
        assert ingest.handle(TOILET.address, frame(TOILET, 5, [(bthome.OBJ_DOOR, 0)]), -70).kind == "event"
        assert store.depth() == 0
        ingest.handle(PENDANT.address, press(10), -61)
        assert body_of(store, "240ac4123456-10")["data"] == {"battery": 87, "action": "press", "hub_stored_at": STORED}  # no rssi
        assert store.seen(PENDANT.id).rssi == -61 and store.seen(FRONT.id).rssi == -55
    finally:
        store.close()


def test_door_moves_of_a_listed_role_go_up(state: Path) -> None:
    ingest, store = make_ingest(state, Privacy(send_door_moves=frozenset({"toilet_door"}), send_rssi="never"))
    try:
        ingest.handle(FRONT.address, frame(FRONT, 20, [(bthome.OBJ_DOOR, 1)]), -55)
        ingest.handle(TOILET.address, frame(TOILET, 5, [(bthome.OBJ_DOOR, 0)]), -70)
        assert [(i.event_id, i.type) for i in store.due(NOW, 5)] == [("240ac4000002-5", "door_closed")]
        assert "rssi" not in body_of(store, "240ac4000002-5")["data"]
    finally:
        store.close()


@pytest.mark.parametrize("objects, reason", [
    ([(bthome.OBJ_BATTERY, 99)], "door event frame without a door object"),
    ([(bthome.OBJ_DOOR, 2)], "door object has unknown value 2"),
])
def test_bad_door_event_refused(ingest: Ingest, store: HubStore, objects: list, reason: str) -> None:
    assert ingest.handle(FRONT.address, frame(FRONT, 20, objects), -55) == Outcome(
        kind="refused", counter=20, reason=reason, device=FRONT)
    assert store.depth() == 0


def test_device_paired_while_running_is_picked_up(state: Path, ingest: Ingest) -> None:
    newcomer = Device.new("24:0A:C4:00:00:03", "pendant", "kitchen")
    assert ingest.handle(newcomer.address, heartbeat(newcomer, 1), -50).reason == "unpaired device 24:0A:C4:00:00:03"
    Devices.load(state / "devices.json").add(newcomer)  # the pairing CLI, another process
    assert ingest.handle(newcomer.address, heartbeat(newcomer, 1), -50).kind == "heartbeat"


def test_repaired_and_unpaired_devices_are_noticed_while_running(state: Path, ingest: Ingest) -> None:
    registry = Devices.load(state / "devices.json")  # the installer's process
    assert ingest.handle(PENDANT.address, press(10), -50).kind == "event"
    registry.remove(PENDANT.mac)
    repaired = Device.new(PENDANT.address, "pendant", "bedroom")  # a fresh key
    registry.add(repaired)
    old_key_frame = press(11)
    assert ingest.handle(PENDANT.address, old_key_frame, -50).reason == "MIC mismatch: forged frame or wrong key"
    assert ingest.handle(PENDANT.address, frame(repaired, 12, bthome.pendant_objects(80, "emergency")),
                         -50).kind == "event"
    registry.remove(PENDANT.mac)
    assert ingest.handle(PENDANT.address, frame(repaired, 13, bthome.pendant_objects(80, "emergency")),
                         -50).reason == f"unpaired device {PENDANT.address}"


def test_a_neighbours_sensor_is_logged_once_an_hour_not_per_advertisement(
        state: Path, caplog: pytest.LogCaptureFixture) -> None:
    now = [NOW]
    store = HubStore.open(state / "hub.db", clock=lambda: now[0])
    ingest = Ingest(store, Devices.load(state / "devices.json"), "hub-7f3a9c", "home-0001", clock=lambda: now[0])
    for _ in range(100):
        assert ingest.handle(STRANGER, press(10), -70).kind == "refused"
    now[0] += 3599
    ingest.handle(STRANGER, press(10), -70)
    assert len(refusals(caplog)) == 1
    now[0] += 1
    ingest.handle(STRANGER, press(10), -70)
    assert len(refusals(caplog)) == 2
    store.close()


@pytest.mark.parametrize(("check", "occurred", "marks"), [
    ((None, True), NOW, {}),
    ((125.0, False), NOW + 125.0, {"hub_clock_offset_s": 125.0}),  # the platform's clock says 2 min later
    ((None, False), NOW, {"time_untrusted": True}),  # no NTP, no platform answer yet: say so
])
def test_an_events_time_is_corrected_by_the_platforms_clock_or_marked(state: Path, check, occurred, marks) -> None:
    store = HubStore.open(state / "hub.db", clock=lambda: NOW)
    try:
        ing = Ingest(store, Devices.load(state / "devices.json"), "hub-7f3a9c", "home-0001", clock=lambda: NOW,
                     time_check=lambda: check)
        outcome = ing.handle(PENDANT.address, press(1), -60)
        body = body_of(store, outcome.event_id)
        assert body["occurred_at"] == events.timestamp(occurred)
        assert {k: v for k, v in body["data"].items() if k in ("hub_clock_offset_s", "time_untrusted")} == marks
    finally:
        store.close()


def test_a_flood_is_counted_not_logged_line_by_line_and_the_genuine_device_gets_through(
        state: Path, caplog: pytest.LogCaptureFixture) -> None:
    """20,000 made-up addresses and 2,000 forged frames from the pendant's own address in a
    minute: a handful of lines each, then one count per kind; the pendant's press is stored."""
    caplog.set_level(logging.INFO, logger="safebox.hub.ingest")
    now = [NOW]
    store = HubStore.open(state / "hub.db", clock=lambda: now[0])
    try:
        ing = Ingest(store, Devices.load(state / "devices.json"), "hub-7f3a9c", "home-0001", clock=lambda: now[0])
        forged = press(50)[:-1] + b"\x00"
        for n in range(20_000):
            ing.handle(f"{n >> 16 & 0xFF:02X}:{n >> 8 & 0xFF:02X}:{n & 0xFF:02X}:00:00:01", press(10), -90)
            if n % 10 == 0:
                ing.handle(PENDANT.address, forged, -50)
        assert ing.handle(PENDANT.address, press(7), -55).kind == "event"  # heard through the flood
        now[0] += 61
        ing.handle("AA:AA:AA:AA:AA:AA", press(10), -90)  # the next minute: the counts are said
        lines = refusals(caplog)
        assert len(lines) == 5 + 5 + 2 + 1  # five strangers, five forged, the two counts, the next minute's stranger
        assert "refused 19995 more frames from 4096+ unpaired addresses in the last 61 s (not logged one by one)" \
            in lines
        assert f"refused 1995 more frames from {PENDANT.address}: MIC mismatch... in the last 61 s (not logged one by one)" \
            in lines
    finally:
        store.close()


def test_a_stolen_key_cannot_push_the_counter_to_the_end_and_lock_the_device_out(state: Path,
                                                                                caplog) -> None:
    """One authentic frame at 2^32-1 (a key read off a board) is refused as a jump; the real
    device goes on being heard. Repeated refusals raise key_compromised, once."""
    now = [NOW]
    store = HubStore.open(state / "hub.db", clock=lambda: now[0])
    try:
        ing = Ingest(store, Devices.load(state / "devices.json"), "hub-7f3a9c", "home-0001", clock=lambda: now[0])
        assert ing.handle(PENDANT.address, press(10), -60).kind == "event"
        now[0] += 60
        stolen = ing.handle(PENDANT.address, press(0xFFFFFFFF), -60)
        assert stolen.kind == "refused" and "jumps" in stolen.reason and stolen.raised is None
        assert ing.handle(PENDANT.address, heartbeat(PENDANT, 11), -60).kind == "heartbeat"  # still heard
        # After a day away a device may be far ahead (many reboots skip 63 each): within the bound.
        now[0] += 86400
        assert ing.handle(PENDANT.address, press(11 + 4096 + 128 * 86400), -60).kind == "event"
        assert store.outbox_summary()["depth"] == 2
        # Replays of old counters and jumps, three different ones within the hour: raised once.
        outcomes = [ing.handle(PENDANT.address, press(c), -60) for c in (10, 12, 0xFFFFFFF0, 12, 13)]
        raised = [o.raised for o in outcomes if o.raised]
        assert len(raised) == 1 and outcomes[2].raised == raised[0]
        body = body_of(store, raised[0])
        assert body["type"] == events.KEY_COMPROMISED and body["device"] is None
        assert body["data"]["device"]["id"] == PENDANT.id and body["data"]["refused_counters"] == [10, 12, 0xFFFFFFF0]
    finally:
        store.close()

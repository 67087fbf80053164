"""The rules engine over a real SQLite store: hub events, the alarm lifecycle across
restarts, the startup grace, real frames through ingest, and the [rules] config."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from safebox.hub import config
from safebox.hub.devices import Device, Devices
from safebox.hub.ingest import Ingest
from safebox.hub.rules import RulesEngine, RulesSettings, SupervisionSettings, ToiletSettings
from safebox.hub.store import HubStore
from safebox.protocol import bthome, events

T0 = 1_800_000_000.0
HUB, HOME = "hub-7f3a9c", "home-0001"
TOILET = Device.new("24:0A:C4:00:00:02", "toilet_door", "bathroom", key=bytes.fromhex("22" * 16))
PENDANT = Device.new("24:0A:C4:00:00:01", "pendant", "bedroom", key=bytes.fromhex("11" * 16))
SETTINGS = RulesSettings(toilet=ToiletSettings(600), startup_grace_s=60,
                         supervision=SupervisionSettings(heartbeat_s=3600, missed_heartbeats=3, grace_s=60))


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> float:
        return self.now


class Home:
    """A hub's state folder; `start()` is one hub process (store + devices + ingest + engine)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.clock = Clock()
        devices = Devices.load(path / "devices.json")
        for d in (TOILET, PENDANT):
            devices.add(d)
        self.store: HubStore | None = None
        self.counter = 0

    def start(self) -> RulesEngine:
        if self.store is not None:
            self.store.close()
        self.store = HubStore.open(self.path / "hub.db", clock=self.clock)
        devices = Devices.load(self.path / "devices.json")
        self.ingest = Ingest(self.store, devices, HUB, HOME, clock=self.clock)
        self.engine = RulesEngine(self.store, devices, SETTINGS, hub_id=HUB, home_id=HOME, clock=self.clock)
        self.engine.start()
        return self.engine

    def frame(self, device: Device, objects: list, event: bool = True) -> bool:
        self.counter += 1
        sealed = bthome.seal(device.key, device.mac, self.counter, objects, event=event)
        return self.engine.observe_outcome(self.ingest.handle(device.address, sealed, -60))

    def door(self, is_open: bool) -> bool:
        return self.frame(TOILET, [(bthome.OBJ_BATTERY, 90), (bthome.OBJ_DOOR, int(is_open))])

    def hub_events(self) -> list[dict]:
        assert self.store is not None
        rows = self.store._read("SELECT body FROM outbox WHERE source = ? ORDER BY seq", (HUB,))
        return [events.decode(body) for (body,) in rows]  # in the order they were made

    def at(self, seconds: float) -> None:
        self.clock.now = T0 + seconds


@pytest.fixture
def home(tmp_path: Path):
    h = Home(tmp_path)
    yield h
    if h.store is not None:
        h.store.close()


def test_toilet_visit_makes_hub_events_naming_the_device(home: Home) -> None:
    home.start()
    home.at(100)
    assert home.door(False) is True
    (occupied,) = home.hub_events()
    assert occupied["type"] == "toilet_occupied" and occupied["device"] is None and occupied["counter"] is None
    assert occupied["data"]["device"] == {"id": TOILET.id, "role": "toilet_door", "room": "bathroom"}
    assert occupied["event_id"].startswith(HUB + "-") and occupied["occurred_at"] == events.timestamp(T0 + 100)
    assert home.engine.next_deadline() == T0 + 700


def test_alarm_raised_acknowledged_and_cleared_across_a_restart(home: Home) -> None:
    home.start()
    home.at(100)
    home.door(False)
    home.at(699)
    assert home.engine.tick() is False
    home.at(701)
    assert home.engine.tick() is True
    overdue = home.hub_events()[-1]
    assert overdue["type"] == "toilet_overdue" and overdue["occurred_at"] == events.timestamp(T0 + 700)
    (alarm,) = home.store.alarms(open_only=True)
    assert (alarm.kind, alarm.subject, alarm.raised_event, alarm.acknowledged_at) == \
        ("toilet_overdue", TOILET.id, overdue["event_id"], None)
    home.at(720)
    home.store.mark_delivered(overdue["event_id"])  # the platform stored it
    assert home.store.alarms()[0].acknowledged_at == T0 + 720

    home.at(800)
    home.start()  # the hub restarts in the middle: the alarm is still open, not raised again
    home.at(2000)
    assert home.engine.tick() is False
    assert [a.kind for a in home.store.alarms(open_only=True)] == ["toilet_overdue"]
    home.door(True)
    vacated = home.hub_events()[-1]
    assert vacated["type"] == "toilet_vacated" and vacated["data"]["was_overdue"] is True
    (alarm,) = home.store.alarms()
    assert (alarm.cleared_at, alarm.cleared_event) == (T0 + 2000, vacated["event_id"])
    assert home.store.alarms(open_only=True) == []


def test_timer_survives_a_restart_in_the_middle_of_a_visit(home: Home) -> None:
    home.start()
    home.door(False)
    home.at(300)
    home.start()  # killed and restarted 5 minutes into the visit
    assert home.engine.next_deadline() == T0 + 600
    home.at(601)
    assert home.engine.tick() is True
    assert home.hub_events()[-1]["type"] == "toilet_overdue"


def test_no_timer_alarm_inside_the_startup_grace(home: Home) -> None:
    home.start()
    home.door(False)
    home.at(5000)
    home.start()  # back after a long outage: the device may still hold a "door opened"
    assert home.engine.next_deadline() == T0 + 5060
    assert home.engine.tick() is False
    home.at(5030)
    home.door(True)  # it did: vacated, no overdue ever raised
    assert [e["type"] for e in home.hub_events()] == ["toilet_occupied", "toilet_vacated"]
    assert home.store.alarms() == []


def test_heartbeats_feed_supervision_and_battery(home: Home) -> None:
    home.start()
    home.frame(PENDANT, [(bthome.OBJ_BATTERY, 15)], event=False)
    (low,) = home.hub_events()
    assert low["type"] == "battery_low" and low["data"]["battery"] == 15
    home.frame(PENDANT, [(bthome.OBJ_BATTERY, 14)], event=False)
    assert len(home.hub_events()) == 1
    assert home.engine.next_deadline() == T0 + 3 * 3600 + 60  # the toilet door was never heard


def test_buttons_make_no_hub_event_but_count_as_heard(home: Home) -> None:
    home.start()
    home.at(10)
    assert home.frame(PENDANT, bthome.pendant_objects(90, "emergency")) is False
    assert home.hub_events() == []
    urgent = home.store.due(T0 + 10, 1)[0]
    assert urgent.type == "emergency" and urgent.urgent


def test_offline_then_online(home: Home) -> None:
    home.start()
    home.frame(PENDANT, [(bthome.OBJ_BATTERY, 90)], event=False)
    home.frame(TOILET, [(bthome.OBJ_BATTERY, 90), (bthome.OBJ_DOOR, 1)], event=False)
    home.at(3 * 3600 + 59)
    assert home.engine.tick() is False
    home.at(3 * 3600 + 61)
    assert home.engine.tick() is True
    assert sorted(e["data"]["device"]["id"] for e in home.hub_events()) == sorted([PENDANT.id, TOILET.id])
    home.at(4 * 3600)
    home.frame(PENDANT, [(bthome.OBJ_BATTERY, 90)], event=False)
    assert home.hub_events()[-1]["type"] == "device_online"
    assert [a.subject for a in home.store.alarms(open_only=True)] == [TOILET.id]


async def test_run_wakes_at_the_deadline_without_polling(home: Home) -> None:
    engine = home.start()
    home.door(False)
    woken: list[float] = []
    sleeps: list[float] = []
    real_timeout = asyncio.timeout

    def spy(delay):
        sleeps.append(delay)
        return real_timeout(0 if delay is None else 0.01)

    task = asyncio.create_task(engine.run(lambda: woken.append(home.clock.now)))
    asyncio.timeout = spy
    try:
        await asyncio.sleep(0.005)
        home.at(601)
        await asyncio.sleep(0.05)
    finally:
        asyncio.timeout = real_timeout
        task.cancel()
    assert sleeps[0] == pytest.approx(600)  # one sleep to the deadline, not a polling loop
    assert woken == [T0 + 601]


def test_rules_config_is_read_and_bad_fields_are_named(tmp_path: Path) -> None:
    base = {"hub_id": HUB, "home_id": HOME, "state_dir": "s", "platform": {"url": "https://p.example"}}
    cfg = config.parse({**base, "rules": {"timezone": "Asia/Shanghai", "toilet": {"overdue_after_s": 300},
                                          "front_door": {"quiet_windows": ["22:00-07:00"]},
                                          "supervision": {"missed_heartbeats": 2}}}, base_dir=tmp_path)
    assert cfg.rules.toilet.overdue_after_s == 300 and cfg.rules.supervision.missed_heartbeats == 2
    assert str(cfg.rules.front_door.quiet_windows[0]) == "22:00-07:00"
    assert config.parse(base, base_dir=tmp_path).rules == RulesSettings()
    for rules, message in (
        ({"toilet": {"overdue_after_s": "ten"}}, "rules.toilet.overdue_after_s: must be a number"),
        ({"toilet": {"overdue_minutes": 10}}, "rules.toilet.overdue_minutes: unknown key"),
        ({"front_door": {"quiet_windows": ["22-07"]}}, r"rules.front_door.quiet_windows\[0\]: must be"),
        ({"supervision": {"missed_heartbeats": 1.5}}, "rules.supervision.missed_heartbeats: must be a whole"),
        ({"supervision": {"battery_low_pct": 40}}, "rules.supervision.battery_ok_pct: must be above"),
        ({"timezone": "Mars/Olympus"}, "rules.timezone: not a known time zone"),
        ({"toilets": {}}, "rules.toilets: unknown key"),
    ):
        with pytest.raises(config.ConfigError, match=message):
            config.parse({**base, "rules": rules}, base_dir=tmp_path)


def test_a_v1_database_is_migrated_keeping_its_events(tmp_path: Path) -> None:
    import sqlite3

    from safebox.hub.store import schema as store_module

    path = tmp_path / "hub.db"
    with sqlite3.connect(path) as db:  # a hub of the first release, with an event waiting
        db.executescript(store_module.SCHEMA_V1)
        db.execute("INSERT INTO hub_seq (id, value) VALUES (1, 41)")
        db.execute("INSERT INTO outbox (event_id, source, type, urgent, body, created_at) "
                   "VALUES ('240ac4000001-7', '240ac4000001', 'emergency', 1, x'7b7d', 1)")
        db.execute("PRAGMA user_version = 1")
    with HubStore.open(path) as s:
        assert s._read("PRAGMA user_version")[0][0] == store_module.SCHEMA_VERSION
        assert s.pending("240ac4000001-7") and s.next_hub_seq() == 42
        assert s.alarms() == [] and s.rule_states() == {}
        s.commit_rules(bodies=[], raised=[("battery_low", "240ac4000001", T0, "hub-7f3a9c-42")], cleared=[],
                       states={("supervision", "240ac4000001"): {"battery_low": True}})
        assert s.alarms(open_only=True)[0].raised_event == "hub-7f3a9c-42"
        assert s.rule_states() == {("supervision", "240ac4000001"): {"battery_low": True}}

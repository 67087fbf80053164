"""Supervision: offline after N missed heartbeats, online when back, battery_low once per episode."""

from __future__ import annotations

from safebox.hub.rules.model import HEARTBEAT, Clear, Observation, Subject
from safebox.hub.rules.settings import SupervisionSettings
from safebox.hub.rules.supervision import SupervisionMachine

T0 = 1_800_000_000.0
PENDANT = Subject("240ac4000001", "pendant", "bedroom")
S = SupervisionSettings(heartbeat_s=60, missed_heartbeats=3, grace_s=10, battery_low_pct=20, battery_ok_pct=30)


def beat(at: float, battery: int | None = 90) -> Observation:
    return Observation(PENDANT, HEARTBEAT, T0 + at, T0 + at, None, battery)


def machine(state=None, since=T0) -> SupervisionMachine:
    return SupervisionMachine(PENDANT, S, state, watching_since=since)


def test_offline_after_three_missed_heartbeats_plus_grace_not_before():
    m = machine()
    m.observe(beat(0))
    assert m.deadline() == T0 + 190
    assert m.tick(T0 + 189.9) == []
    offline = m.tick(T0 + 190)
    assert [a.type for a in offline] == ["device_offline"] and offline[0].raises == "device_offline"
    assert offline[0].data["missed_heartbeats"] == 3
    assert m.tick(T0 + 1000) == []  # once


def test_each_frame_heard_restarts_the_count():
    m = machine()
    for t in (0, 60, 120, 180):
        assert m.observe(beat(t)) == []
        assert m.tick(T0 + t + 189) == []


def test_back_online_clears_offline():
    m = machine()
    m.observe(beat(0))
    m.tick(T0 + 200)
    back = m.observe(beat(500))
    assert [a.type for a in back] == ["device_online"] and back[0].clears == "device_offline"
    assert m.deadline() == T0 + 690


def test_never_heard_counts_from_when_the_hub_began_watching():
    m = machine(since=T0 + 1000)
    assert m.deadline() == T0 + 1190


def test_hub_downtime_is_not_the_devices_silence():
    m = machine()
    m.observe(beat(0))
    restarted = machine(m.state(), since=T0 + 10_000)  # the hub was away for hours
    assert restarted.tick(T0 + 10_001) == []
    assert restarted.deadline() == T0 + 10_190


def test_battery_low_once_per_episode_and_a_new_battery_ends_it():
    m = machine()
    assert m.observe(beat(0, 25)) == []
    low = m.observe(beat(60, 20))  # at the threshold
    assert [a.type for a in low] == ["battery_low"] and low[0].data == {"battery": 20, "threshold": 20}
    for t, level in ((120, 19), (180, 15), (240, 22), (300, 18)):
        assert m.observe(beat(t, level)) == [], "one alarm per episode, not per heartbeat"
    ended = m.observe(beat(360, 100))
    assert ended == [Clear("battery_low", PENDANT, T0 + 360, None)]
    assert [a.type for a in m.observe(beat(420, 10))] == ["battery_low"]  # a new episode


def test_battery_episode_survives_a_restart():
    m = machine()
    m.observe(beat(0, 10))
    again = machine(m.state())
    assert again.observe(beat(60, 12)) == []


def test_frames_without_battery_leave_it_alone():
    m = machine()
    assert m.observe(beat(0, None)) == []
    assert not m.battery_low

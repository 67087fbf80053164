"""The toilet rule as a pure state machine: door-only in/out, PIR, overdue at the edge."""

from __future__ import annotations

from safebox.hub.rules.model import HEARTBEAT, Emit, Observation, Subject
from safebox.hub.rules.settings import ToiletSettings
from safebox.hub.rules.toilet import ToiletMachine

T0 = 1_800_000_000.0
TOILET = Subject("240ac4000002", "toilet_door", "bathroom")


def obs(type_: str, at: float, occupancy: bool | None = None) -> Observation:
    return Observation(TOILET, type_, T0 + at, T0 + at, f"240ac4000002-{int(at)}", 90, occupancy)


def machine(limit: float = 600.0) -> ToiletMachine:
    return ToiletMachine(TOILET, ToiletSettings(overdue_after_s=limit))


def types(actions) -> list[str]:
    return [a.type for a in actions]


def test_door_closing_means_occupied_and_opening_means_vacated():
    m = machine()
    assert m.observe(obs("door_opened", 0)) == []  # walking in: nothing known yet
    occupied = m.observe(obs("door_closed", 3))
    assert types(occupied) == ["toilet_occupied"] and occupied[0].at == T0 + 3
    assert m.deadline() == T0 + 3 + 600
    vacated = m.observe(obs("door_opened", 300))
    assert types(vacated) == ["toilet_vacated"]
    assert vacated[0].data["duration_s"] == 297 and vacated[0].clears is None
    assert m.deadline() is None and not m.occupied


def test_nine_minutes_fifty_nine_seconds_is_not_overdue():
    m = machine()
    m.observe(obs("door_closed", 0))
    assert m.tick(T0 + 599) == []
    assert types(m.observe(obs("door_opened", 599))) == ["toilet_vacated"]
    assert m.tick(T0 + 10_000) == []


def test_ten_minutes_one_second_is_overdue_once_and_vacating_clears_it():
    m = machine()
    m.observe(obs("door_closed", 0))
    assert m.tick(T0 + 599.999) == []
    overdue = m.tick(T0 + 601)
    assert types(overdue) == ["toilet_overdue"]
    assert overdue[0].raises == "toilet_overdue" and overdue[0].at == T0 + 600  # when it fell due
    assert m.tick(T0 + 5000) == [] and m.deadline() is None  # once per visit
    vacated = m.observe(obs("door_opened", 5001))
    assert types(vacated) == ["toilet_vacated"]
    assert vacated[0].clears == "toilet_overdue" and vacated[0].data["was_overdue"] is True


def test_limit_is_configurable():
    m = machine(limit=120)
    m.observe(obs("door_closed", 0))
    assert m.tick(T0 + 119) == []
    assert types(m.tick(T0 + 120)) == ["toilet_overdue"]


def test_repeated_close_and_heartbeats_change_nothing():
    m = machine()
    m.observe(obs("door_closed", 0))
    assert m.observe(obs("door_closed", 60)) == []
    assert m.observe(obs(HEARTBEAT, 90)) == []
    assert m.deadline() == T0 + 600  # the visit still began at 0


def test_pir_occupancy_overrides_the_door_guess():
    m = machine()
    # door shut from outside, PIR says nobody: not occupied (the door-only blind spot, fixed)
    assert m.observe(obs("door_closed", 0, occupancy=False)) == []
    # door left open with someone inside: the PIR sees them
    assert types(m.observe(obs("door_opened", 10, occupancy=True))) == ["toilet_occupied"]
    assert m.observe(obs("door_closed", 20, occupancy=True)) == []
    assert types(m.observe(obs("door_closed", 30, occupancy=False))) == ["toilet_vacated"]


def test_state_round_trips_through_a_restart():
    m = machine()
    m.observe(obs("door_closed", 0))
    m.tick(T0 + 700)
    again = ToiletMachine(TOILET, ToiletSettings(), m.state())
    assert again.occupied and again.overdue and again.deadline() is None
    vacated = again.observe(obs("door_opened", 800))
    assert isinstance(vacated[0], Emit) and vacated[0].clears == "toilet_overdue"

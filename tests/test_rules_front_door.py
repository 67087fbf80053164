"""The front-door rule: 24 h without an opening, cleared by the next, quiet windows."""

from __future__ import annotations

from zoneinfo import ZoneInfo

from safebox.hub.rules.front_door import FrontDoorMachine, quiet_until
from safebox.hub.rules.model import Clear, Observation, Subject
from safebox.hub.rules.settings import FrontDoorSettings, QuietWindow

SHANGHAI = ZoneInfo("Asia/Shanghai")
T0 = 1_767_225_600.0  # 2026-01-01 08:00 in Shanghai
DOOR = Subject("240ac4000003", "front_door", "hall")
DAY = 86400.0


def opened(at: float) -> Observation:
    return Observation(DOOR, "door_opened", T0 + at, T0 + at, f"240ac4000003-{int(at)}")


def machine(windows=(), limit=DAY) -> FrontDoorMachine:
    return FrontDoorMachine(DOOR, FrontDoorSettings(limit, tuple(windows)), SHANGHAI, None, now=T0)


def test_23h59m_without_opening_is_fine_24h01m_raises_once():
    m = machine()
    assert m.tick(T0 + DAY - 60) == []
    raised = m.tick(T0 + DAY + 60)
    assert [a.type for a in raised] == ["door_inactive"] and raised[0].raises == "door_inactive"
    assert raised[0].at == T0 + DAY and raised[0].data["last_opening_seen"] is False
    assert m.tick(T0 + 3 * DAY) == [] and m.deadline() is None


def test_an_opening_restarts_the_day():
    m = machine()
    assert m.observe(opened(DAY - 60)) == []
    assert m.tick(T0 + DAY + 60) == []
    assert m.deadline() == T0 + 2 * DAY - 60


def test_next_opening_clears_the_alarm_naming_the_event():
    m = machine()
    m.tick(T0 + DAY)
    cleared = m.observe(opened(DAY + 3600))
    assert cleared == [Clear("door_inactive", DOOR, T0 + DAY + 3600, "240ac4000003-90000")]
    assert m.deadline() == T0 + 2 * DAY + 3600


def test_closing_is_not_an_opening():
    m = machine()
    m.observe(Observation(DOOR, "door_closed", T0 + 100, T0 + 100))
    assert m.deadline() == T0 + DAY


def test_quiet_window_holds_the_alarm_to_its_end():
    # due at 08:00 + 24 h... move the start so it falls due at 02:00 local
    start = T0 + 18 * 3600  # 02:00 on Jan 2 in Shanghai
    m = FrontDoorMachine(DOOR, FrontDoorSettings(DAY, (QuietWindow(22 * 60, 7 * 60),)), SHANGHAI, None, now=start)
    assert m.deadline() == start + DAY + 5 * 3600  # held until 07:00
    assert m.tick(start + DAY + 3600) == []
    raised = m.tick(start + DAY + 5 * 3600)
    assert raised[0].type == "door_inactive" and raised[0].at == start + DAY + 5 * 3600


def test_quiet_until_outside_and_chained_windows():
    windows = (QuietWindow(12 * 60, 13 * 60), QuietWindow(13 * 60, 14 * 60))
    assert quiet_until(T0, windows, SHANGHAI) == T0  # 08:00: outside
    noon = T0 + 4 * 3600 + 1800  # 12:30
    assert quiet_until(noon, windows, SHANGHAI) == T0 + 6 * 3600  # through both to 14:00


def test_state_survives_a_restart():
    m = machine()
    m.observe(opened(3600))
    again = FrontDoorMachine(DOOR, FrontDoorSettings(), SHANGHAI, m.state(), now=T0 + 7200)
    assert again.deadline() == T0 + 3600 + DAY

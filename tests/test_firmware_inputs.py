"""The debounce spec (firmware/inputs.py, firmware/README.md), checked on the micropython binary.

Pin edges are injected at exact times inside the firmware's own process (tests/mp/fw_inputs.py),
so each figure below is the filter's, not the simulator's scheduling.
"""

from __future__ import annotations

import json

import pytest

from safebox.tools.sim.firmware_process import SHIMS_DIR

from .conftest import ROOT, run_micropython

SPEC_SLACK_MS = 25  # the filter samples every 5 ms; the unix scheduler adds a little


@pytest.fixture(scope="module")
def played(device_image, micropython) -> dict:
    """Every scenario of tests/mp/fw_inputs.py, played at once (each on its own pin)."""
    out = run_micropython(ROOT / "tests" / "mp" / "fw_inputs.py", path=[SHIMS_DIR, ".frozen", device_image / "lib"])
    assert out.returncode == 0, out.stdout + out.stderr
    return json.loads(out.stdout.strip().splitlines()[-1])


@pytest.fixture
def scenario(played):
    def result(name: str) -> tuple[list[tuple[str, int]], bool]:
        doc = played[name]
        assert doc["busy_after"] is False, "an input stays busy after its level settled: the device would never sleep"
        return [(what, at) for what, at in doc["events"]], doc["busy_after"]
    return result


def _near(at: int, expected: int) -> bool:
    return expected <= at <= expected + SPEC_SLACK_MS


def test_bounce_of_50_ms_on_press_and_release_makes_one_press(scenario):
    events, _ = scenario("bounce_press")
    assert [what for what, _ in events] == ["press"]
    # counted when the release has held 50 ms: last release edge at 350 ms
    assert _near(events[0][1], 350 + 50)


@pytest.mark.parametrize("name", ["short_press", "glitches"])
def test_press_shorter_than_the_minimum_is_ignored(scenario, name):
    assert scenario(name)[0] == []


def test_press_just_over_the_minimum_counts(scenario):
    events, _ = scenario("min_press")
    assert [what for what, _ in events] == ["press"] and _near(events[0][1], 65 + 50)


def test_long_press_fires_at_2_s_while_still_held_and_only_once(scenario):
    events, _ = scenario("long_press")  # held 2.6 s
    assert [what for what, _ in events] == ["long_press"]
    assert _near(events[0][1], 2000)


def test_released_before_2_s_is_a_press(scenario):
    events, _ = scenario("release_at_1950")
    assert [what for what, _ in events] == ["press"]


def test_two_presses_make_two_events(scenario):
    assert [what for what, _ in scenario("two_presses")[0]] == ["press", "press"]


def test_door_open_and_close_within_a_second_with_bounce_yields_both_in_order(scenario):
    events, _ = scenario("door_open_close")
    assert [what for what, _ in events] == ["open", "closed"]
    assert _near(events[0][1], 45 + 50) and _near(events[1][1], 425 + 50)


def test_door_open_for_120_ms_still_yields_both(scenario):
    assert [what for what, _ in scenario("door_quick")[0]] == ["open", "closed"]


def test_door_three_changes_in_order(scenario):
    assert [what for what, _ in scenario("door_open_close_open")[0]] == ["open", "closed", "open"]


@pytest.mark.parametrize("name", ["door_glitch", "door_chatter_then_back"])
def test_contact_that_comes_back_within_the_settle_time_makes_no_event(scenario, name):
    assert scenario(name)[0] == []

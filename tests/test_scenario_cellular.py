"""Scenarios with the home's broadband and a cellular modem (issue 16) on the virtual clock: the real
firmware, hub, receiver over TLS, the emulated modem on a pty, the fake network and SMS gateway."""

from __future__ import annotations

import pytest

from safebox.protocol import sms
from safebox.tools.sim.scenario import runner
from safebox.tools.sim.scenario.spec import ScenarioError, parse

from .test_scenarios import SCENARIOS, result

PENDANT = {"id": "pendant", "role": "pendant", "room": "bedroom"}


def outage(*, modem: dict | None, extra_steps: tuple = (), up_at: str = "20m") -> dict:
    doc = {"duration": "25m", "seed": 7, "home": {"devices": [PENDANT]},
           "steps": [{"at": "1m", "internet": "down"}, {"at": "2m", "device": "pendant", "action": "press:emergency"},
                     {"at": up_at, "internet": "up"}, *extra_steps]}
    if modem is not None:
        doc["home"]["modem"] = modem
    return doc


def test_shipped_outage_scenario_stores_one_event_by_sms_within_90_s_and_tells_the_family() -> None:
    code, res = result("emergency_broadband_down_sms.toml")
    assert code == 0
    (event,) = res["events"]
    assert event["type"] == "emergency" and event["channel"] == "sms+https"
    assert event["received_s"] - event["occurred_s"] <= 90
    assert event["data"] != {}  # the HTTPS copy's full body replaced the SMS-rebuilt one
    to_platform = [m for m in res["cellular"]["sms"] if m["to"] == "+8610690000"]
    assert len(to_platform) == 3  # sent again twice while the line stays down (no delivery report)
    assert {sms.parse(m["text"]).event_id for m in to_platform} == {event["event_id"]}
    (family,) = [m for m in res["cellular"]["sms"] if m["to"] == "+8613900139000"]
    assert "按了紧急求助" in family["text"] and family["delivered_s"] - event["occurred_s"] <= 90
    assert res["cellular"]["modem"]["sms"] == {"sent": 2} and res["cellular"]["modem"]["opens"] == 1


def test_without_a_modem_the_emergency_waits_for_the_line() -> None:
    res = runner.run(parse(outage(modem=None)))
    (event,) = res["events"]
    assert event["channel"] == "https" and event["received_s"] >= 20 * 60
    assert "cellular" not in res


def test_modem_unplugged_during_the_outage_sends_once_plugged_back() -> None:
    doc = outage(modem={"contacts": []}, extra_steps=({"at": "1m30s", "modem": "unplug"},
                                                      {"at": "6m", "modem": "plug"}))
    res = runner.run(parse(doc))
    (event,) = res["events"]
    assert event["channel"] == "sms+https" and 6 * 60 <= event["received_s"] <= 6 * 60 + 30
    assert {m["to"] for m in res["cellular"]["sms"]} == {"+8610690000"}
    assert res["cellular"]["modem"]["opens"] == 2  # at start and once back: no exchange timed out


def test_a_line_back_before_the_bound_sends_no_sms() -> None:
    res = runner.run(parse(outage(modem={}, up_at="2m30s")))
    (event,) = res["events"]
    assert event["channel"] == "https" and res["cellular"]["sms"] == []


@pytest.mark.parametrize("doc, message", [
    ({"home": {"devices": [PENDANT]}, "steps": [{"at": "1m", "modem": "unplug"}]}, "needs a modem in the home"),
    ({"home": {"devices": [PENDANT]}, "steps": [{"at": "1m", "internet": "sideways"}]}, "internet: one of down, up"),
    ({"home": {"devices": [PENDANT], "modem": {"after_s": 1}}}, "home.modem.after_s"),
    ({"home": {"devices": [PENDANT], "modem": {"loss": 1}}}, "home.modem.loss"),
    ({"home": {"devices": [PENDANT], "modem": {"colour": "red"}}}, "home.modem.colour: unknown key"),
    ({"home": {"devices": [PENDANT]}, "expect": [{"type": "emergency", "channel": "fax"}]}, "channel: one of"),
])
def test_bad_cellular_scenarios_name_the_field(doc: dict, message: str) -> None:
    with pytest.raises(ScenarioError, match=message):
        parse(doc)


def test_the_shipped_file_is_there() -> None:
    assert (SCENARIOS / "emergency_broadband_down_sms.toml").is_file()

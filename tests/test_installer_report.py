"""The walk test's verdicts and the install report, without a home: thresholds, problems, rendering."""

from __future__ import annotations

import json

import pytest

from safebox.tools.installer import cli, report
from safebox.tools.installer.walktest import BATTERY_LOW_PCT, RSSI_GOOD_DBM, RSSI_MARGINAL_DBM, signal_verdict
from safebox.tools.sim import hub_toml


@pytest.mark.parametrize(("rssi", "verdict"), [
    (-40, "good"), (-75, "good"), (-76, "marginal"), (-85, "marginal"), (-86, "fail"), (-100, "fail"), (None, None),
])
def test_signal_thresholds(rssi, verdict):
    assert (RSSI_GOOD_DBM, RSSI_MARGINAL_DBM, BATTERY_LOW_PCT) == (-75, -85, 20)
    assert signal_verdict(rssi) == verdict


def _result(**changes) -> dict:
    device = {"id": "240ac4000001", "address": "24:0A:C4:00:00:01", "role": "pendant", "room": "bed|room <1>",
              "battery": 12, "rssi_min": -88, "rssi_max": -70, "signal": "fail", "checks_passed": 1,
              "checks_total": 3, "problems": ["checks", "signal", "battery"], "passed": False}
    checks = [{"device_id": "240ac4000001", "address": "24:0A:C4:00:00:01", "role": "pendant",
               "room": "bed|room <1>", "event": event, "status": status, "event_id": event_id, "counter": None,
               "rssi": rssi, "signal": signal_verdict(rssi), "battery": 12, "hub_at": None,
               "platform_at": None, "reason": None}
              for event, status, event_id, rssi in [("emergency", "passed", "240ac4000001-4", -70),
                                                    ("community_service", "hub", "240ac4000001-5", -88),
                                                    ("life_service", "waiting", None, None)]]
    return {"format": 1, "home_id": "home-0001", "hub_id": "hub-0001", "platform": "https://p.example",
            "platform_listing": True, "installer": None, "started_at": "2026-11-26T07:00:00.000Z",
            "finished_at": "2026-11-26T07:10:00.000Z", "interrupted": False,
            "thresholds": {"rssi_good_dbm": -75, "rssi_marginal_dbm": -85, "battery_low_pct": 20},
            "passed": False, "devices": [device], "checks": checks, **changes}


def test_every_problem_is_named_in_both_languages():
    en = report.problems(_result(), "en")
    assert en == [
        "community-service button of pendant 24:0A:C4:00:00:01 (bed|room <1>) reached the hub but not the platform",
        "daily-life-service button of pendant 24:0A:C4:00:00:01 (bed|room <1>) not received",
        "pendant 24:0A:C4:00:00:01 (bed|room <1>) signal too weak (-88 dBm): move the hub closer, or add one",
        "pendant 24:0A:C4:00:00:01 (bed|room <1>) battery low (12%): replace it",
    ]
    zh = report.problems(_result(interrupted=True), "zh")
    assert len(zh) == 5 and "电量低（12%）" in zh[3] and zh[4] == "走测被中断。"


def test_markdown_and_html_render_the_same_record():
    md = report.markdown(_result(), "en")
    assert "**Result**: FAILED" in md and "bed\\|room <1>" in md  # a | in a room does not break the table
    assert "| 24:0A:C4:00:00:01 | community-service button | hub only | -88 dBm (FAIL) | 240ac4000001-5 | - |" in md
    page = report.html_page(_result(), "zh")
    assert "bed|room &lt;1&gt;" in page and "<1>" not in page and 'lang="zh-CN"' in page and "未通过" in page


def test_the_report_says_what_personal_data_it_holds():
    """docs/PRIVACY.md: the installer's name and the home id are in it; the reader is told so."""
    md = report.markdown(_result(installer="Li Wei"), "en")
    said = md.split("## Personal data in this report\n\n", 1)[1]
    assert said.startswith("The installer's name, the home id") and "Li Wei" in md and "No name, phone" in said
    page = report.html_page(_result(installer="李伟"), "zh")
    assert "<h2>本报告中的个人信息</h2><p>安装人员姓名、住户编号" in page and "李伟" in page


def test_report_command_rerenders_a_saved_report_and_says_if_it_failed(tmp_path, capsys):
    saved = tmp_path / "r.json"
    saved.write_text(json.dumps(_result()))
    assert cli.main(["--lang", "en", "report", str(saved)]) == cli.EXIT_FAILED
    assert "# Safebox install report: home-0001" in capsys.readouterr().out
    saved.write_text(json.dumps(_result(passed=True)))
    assert cli.main(["report", str(saved), "--html", "-o", str(tmp_path / "r.html")]) == 0
    assert cli.main(["report", str(tmp_path / "missing.json")]) == cli.EXIT_REFUSED


def test_walk_test_of_a_home_with_nothing_paired_says_so(tmp_path, capsys):
    config = hub_toml.write(tmp_path / "hub.toml", hub_id="hub-0001", home_id="home-0001",
                            platform_url="https://platform.example.org")
    assert cli.main(["walk-test", "--hub-config", str(config)]) == cli.EXIT_REFUSED
    assert "No device is paired in this home yet" in capsys.readouterr().err
    (tmp_path / "state").mkdir()
    (tmp_path / "state" / "devices.json").write_text("[]")  # readable by others: the hub refuses it too
    assert cli.main(["walk-test", "--hub-config", str(config)]) == cli.EXIT_REFUSED
    assert "Cannot read the hub's device list" in capsys.readouterr().err


def test_report_times_are_local_with_the_offset_shown(monkeypatch):
    from zoneinfo import ZoneInfo
    md = report.markdown(_result(), "en", zone=ZoneInfo("Asia/Shanghai"))
    assert "**Walk test**: 2026-11-26 15:00:00 UTC+08:00 to 2026-11-26 15:10:00 UTC+08:00" in md
    assert "2026-11-26T07:00:00.000Z" not in md  # the record's UTC is for machines
    zh = report.markdown(_result(), "zh", zone=ZoneInfo("Asia/Shanghai"))
    assert "**走测时间**：2026-11-26 15:00:00 UTC+08:00 至 2026-11-26 15:10:00 UTC+08:00" in zh
    monkeypatch.setenv("TZ", "America/New_York")  # no --tz: the system's zone
    assert "2026-11-26 02:00:00 UTC-05:00" in report.markdown(_result(), "en")


def test_the_html_page_says_the_language_it_is_in(tmp_path):
    from safebox.tools.installer import messages
    messages.set_language("zh")
    try:
        assert '<html lang="zh-CN">' in report.html_page(_result())
    finally:
        messages.set_language("en")
    assert '<html lang="en">' in report.html_page(_result())


def test_a_bad_time_zone_or_a_file_that_is_not_a_report_is_refused(tmp_path, capsys):
    saved = tmp_path / "r.json"
    saved.write_text(json.dumps(_result()))
    assert cli.main(["report", str(saved), "--tz", "Mars/Olympus"]) == cli.EXIT_REFUSED
    assert 'Unknown time zone "Mars/Olympus"' in capsys.readouterr().err
    saved.write_text('{"format": 1}')
    assert cli.main(["report", str(saved)]) == cli.EXIT_REFUSED
    assert "is not a walk-test report" in capsys.readouterr().err

"""A home installed from blank, in the simulator, with the installer's real commands.

The practice lab (tools/installer/lab.py) is a simulated home: the hub and the receiver as
their own processes over real TLS, and a blank ESP32 on a serial port whose firmware, once
flashed and paired, is the real image on the micropython binary on the simulated air.
This test does what the README's installer section does: issue an enrolment code, enrol the
hub, flash, pair, walk-test with every button pressed, and read the report.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
import shlex
import threading
import types
from pathlib import Path

import pytest

from safebox.hub import config as hub_config
from safebox.hub.cli import status_doc
from safebox.hub.devices import Devices
from safebox.tools.installer import cli, commands
from safebox.tools.installer.lab import LAB_MAC, Lab
from safebox.tools.receiver import cli as receiver_cli
from safebox.tools.receiver.store import Store


@pytest.fixture(autouse=True)
def _no_reconnect_pause(monkeypatch):
    """pyserial's socket:// close sleeps 0.3 s for servers slow to accept again; the fake board is not."""
    from serial.urlhandler import protocol_socket
    monkeypatch.setattr(protocol_socket, "time", types.SimpleNamespace(sleep=lambda s: None))


@pytest.fixture
def said(monkeypatch):
    """Every message key the command line says, with an event per key to wait on."""
    seen: dict[str, threading.Event] = {}
    original = commands.say

    def say(key, **params):
        seen.setdefault(key, threading.Event()).set()
        original(key, **params)

    monkeypatch.setattr(commands, "say", say)
    return lambda key: seen.setdefault(key, threading.Event())


async def _run(*argv: str) -> int:
    return await asyncio.to_thread(cli.main, list(argv))


async def _started(event: threading.Event, timeout: float = 10) -> None:
    assert await asyncio.to_thread(event.wait, timeout), "the walk test did not start"


async def test_a_blank_board_is_flashed_paired_enrolled_and_walk_tested(tmp_path, device_image, said, capsys):
    async with Lab(tmp_path / "lab") as lab:
        info = json.loads((tmp_path / "lab" / "lab.json").read_text())
        config = info["hub_config"]

        # the platform's operator issues a one-time code; on the hub, the installer enrols it
        out = io.StringIO()
        with contextlib.redirect_stdout(out):
            assert receiver_cli.main(["enrol-code", "--db", info["platform_db"], "--hub-id", info["hub_id"],
                                      "--ttl", "600"]) == 0
        assert await _run("enrol", "--hub-config", config, "--code-file", _code_file(tmp_path, out.getvalue())) == 0

        # the blank board: flash, then pair (which restarts it: the firmware reports ready),
        # by copying the next step flash suggests
        assert lab.board_state() == ("blank", None)
        capsys.readouterr()
        assert await _run("flash", "--port", info["board"], "--image", str(device_image), "--hub-config", config) == 0
        (hint,) = [line for line in capsys.readouterr().out.splitlines() if line.startswith("Next: ")]
        assert lab.board_state() == ("flashed", None)
        command = shlex.split(hint.removeprefix("Next: "))
        assert command[:2] == ["safebox-install", "pair"] and command[command.index("--hub-config") + 1] == config
        assert await _run(*command[1:]) == 0
        assert "The device started and reports ready." in capsys.readouterr().out
        assert lab.board_state() == ("paired", "pendant")
        assert [d.address for d in Devices.load(Path(config).parent / "state" / "devices.json")] == [LAB_MAC]

        # the walk test, while the installer's hands press each button
        reports = tmp_path / "reports"
        walk = asyncio.create_task(_run("walk-test", "--hub-config", config, "--report-dir", str(reports),
                                        "--timeout", "30", "--installer", "W. Zhang"))
        await _started(said("walk_start"))
        pressed_at = len(lab._fw.lines)  # noqa: SLF001 (the lab board's output)
        await lab.press("emergency")
        # the press woke the board from deep sleep: the next ones once it has booted and counted it
        await lab._fw.wait_for_line(r"^event \d+ emergency press$", timeout=15, start=pressed_at)  # noqa: SLF001
        await asyncio.to_thread(cli.main, ["lab-press", "--dir", str(tmp_path / "lab"), "--gap", "0.5",
                                           "community_service", "life_service"])
        assert await asyncio.wait_for(walk, 30) == 0

        # the walk test's presses reached the platform marked as tests, and the hub waits for
        # no operator; once it has ended, a press is real again
        assert not (Path(config).parent / "state" / "walk_test.json").exists()
        await lab.press("emergency")
        platform = Store(Path(info["platform_db"]))
        try:
            for _ in range(200):
                stored = [e.to_json()["body"] for e in platform.events() if e.to_json()["type"] == "emergency"]
                awaiting = status_doc(hub_config.load(config))["awaiting_operator"]
                if len(stored) == 2 and awaiting:
                    break
                await asyncio.sleep(0.1)
        finally:
            platform.close()
        assert [b["data"].get("test") for b in stored] == [True, None]
        assert awaiting == 1  # the real press only: the walk test's wait for no operator

    out = capsys.readouterr().out
    assert "(hub hub-lab-0001): 1 device, 3 checks." in out
    assert "Pressed the community-service button." in out and "Pressed the daily-life-service button." in out
    assert "hub heard pendant 24:0A:C4:00:10:01 (bedroom): emergency button, signal -60 dBm (good)" in out
    assert "platform stored 240ac4001001-1 (emergency button)" in out
    assert out.index("hub heard pendant") < out.index("platform stored") < out.index("Walk test passed.")
    (md,) = reports.glob("install-report-home-lab-0001-*.md")
    result = json.loads(md.with_suffix(".json").read_text())
    assert result["passed"] and result["home_id"] == "home-lab-0001" and result["installer"] == "W. Zhang"
    (device,) = result["devices"]
    assert (device["address"], device["role"], device["room"], device["signal"], device["checks_passed"]) == \
        (LAB_MAC, "pendant", "bedroom", "good", 3)
    # the lab board's cell (lab.BATTERY_UV): 1.975 V behind the 1:2 divider, 3950 mV on the
    # firmware's 3300-4150 mV line: 650 * 100 // 850
    assert device["battery"] == 76
    assert [c["event"] for c in result["checks"] if c["status"] == "passed"] == \
        ["emergency", "community_service", "life_service"]
    assert all(c["test"] is True for c in result["checks"])
    text = md.read_text()
    assert "**Result**: PASSED" in text and "RSSI >= -75 dBm good" in text and "| 24:0A:C4:00:10:01 | pendant |" in text
    # the same report, again, in Chinese and as HTML, in the district's time zone; the
    # options where the installer README puts them
    assert cli.main(["report", str(md.with_suffix(".json")), "--lang", "zh", "--html", "-o",
                     str(tmp_path / "r.html"), "--tz", "Asia/Shanghai"]) == 0
    page = (tmp_path / "r.html").read_text()
    assert "居家安全盒安装报告" in page and '<html lang="zh-CN">' in page and "UTC+08:00" in page


async def test_a_weak_signal_and_a_button_never_pressed_fail_the_walk_test(tmp_path, device_image, said, capsys):
    async with Lab(tmp_path / "lab", rssi=-90) as lab:
        info = lab.describe()
        out = io.StringIO()
        with contextlib.redirect_stdout(out):
            receiver_cli.main(["enrol-code", "--db", info["platform_db"], "--hub-id", info["hub_id"]])
        code_file = _code_file(tmp_path, out.getvalue())
        assert await _run("enrol", "--hub-config", info["hub_config"], "--code-file", code_file) == 0
        assert await _run("flash", "--port", info["board"], "--image", str(device_image)) == 0
        assert await _run("pair", "--port", info["board"], "--hub-config", info["hub_config"],
                          "--role", "pendant", "--room", "bedroom") == 0
        walk = asyncio.create_task(_run("--lang", "zh", "walk-test", "--hub-config", info["hub_config"],
                                        "--report-dir", str(tmp_path), "--timeout", "4"))
        await _started(said("walk_start"))
        await lab.press("emergency")
        assert await asyncio.wait_for(walk, 30) == cli.EXIT_FAILED
    out = capsys.readouterr().out
    assert "信号 -90 dBm（不合格）" in out and "走测没有通过" in out
    result = json.loads(next(tmp_path.glob("install-report-*.json")).read_text())
    assert not result["passed"]
    assert result["devices"][0]["problems"] == ["checks", "signal"]
    assert [c["status"] for c in result["checks"]] == ["passed", "waiting", "waiting"]
    text = next(tmp_path.glob("install-report-*.md")).read_text()
    assert "信号太弱（-90 dBm）" in text and "社区服务按钮没有收到" in text


async def test_a_door_sensor_is_walk_tested_by_opening_and_closing_the_door(tmp_path, device_image, said, capsys):
    async with Lab(tmp_path / "lab") as lab:
        info = lab.describe()
        out = io.StringIO()
        with contextlib.redirect_stdout(out):
            receiver_cli.main(["enrol-code", "--db", info["platform_db"], "--hub-id", info["hub_id"]])
        code_file = _code_file(tmp_path, out.getvalue())
        assert await _run("enrol", "--hub-config", info["hub_config"], "--code-file", code_file) == 0
        assert await _run("flash", "--port", info["board"], "--image", str(device_image)) == 0
        assert await _run("pair", "--port", info["board"], "--hub-config", info["hub_config"],
                          "--role", "front_door", "--room", "hall") == 0
        walk = asyncio.create_task(_run("walk-test", "--hub-config", info["hub_config"],
                                        "--report-dir", str(tmp_path), "--timeout", "20"))
        await _started(said("walk_start"))
        await asyncio.to_thread(cli.main, ["lab-press", "--dir", str(tmp_path / "lab"), "--gap", "1",
                                           "open", "close"])
        rc = await asyncio.wait_for(walk, 30)
        assert rc == 0, "\n".join(lab._fw.lines) + f"\n{lab._fw.bridge.pin_levels}"
    out = capsys.readouterr().out
    assert "[ ] open the door" in out and "[ ] close the door" in out
    assert "hub heard front-door sensor 24:0A:C4:00:10:01 (hall): door opened" in out
    result = json.loads(next(tmp_path.glob("install-report-*.json")).read_text())
    assert result["passed"] and [c["event"] for c in result["checks"]] == ["door_opened", "door_closed"]


def _code_file(tmp_path: Path, code: str) -> str:
    """The enrolment code as the installer takes it: from a file (never on the command line)."""
    path = tmp_path / "enrol.code"
    path.write_text(code)
    return str(path)

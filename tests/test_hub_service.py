"""Service life: sd_notify over a real unix datagram socket, the status file, the clock check,
the installer's CLI, journald-fit logs, the systemd unit."""

from __future__ import annotations

import asyncio
import configparser
import json
import logging
import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from safebox.hub import cli, clock
from safebox.hub.devices import Device, Devices
from safebox.hub.notify import Notifier
from safebox.tools.sim import hub_toml
from tests.hub_world import HubWorld

UNIT = Path(cli.__file__).with_name("systemd") / "safebox-hub.service"


def _datagram_socket(path: str) -> socket.socket:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(path)
    sock.setblocking(False)
    return sock


def _drain(sock: socket.socket) -> list[str]:
    got = []
    while True:
        try:
            got.append(sock.recv(4096).decode())
        except BlockingIOError:
            return got


def test_notifier_speaks_the_sd_notify_protocol_to_a_path_and_an_abstract_socket(tmp_path) -> None:
    path = str(tmp_path / "notify")
    with _datagram_socket(path) as sock:
        n = Notifier({"NOTIFY_SOCKET": path, "WATCHDOG_USEC": "30000000", "WATCHDOG_PID": str(os.getpid())})
        assert n.enabled and n.watchdog_s == 30.0
        assert n.ready("outbox 0, radio scanning") and n.watchdog() and n.status("two\nlines") and n.stopping()
        assert _drain(sock) == ["READY=1\nSTATUS=outbox 0, radio scanning", "WATCHDOG=1", "STATUS=two lines",
                                "STOPPING=1\nSTATUS=stopping"]
    name = f"safebox-test-{os.getpid()}"
    with _datagram_socket("\0" + name) as sock:
        assert Notifier({"NOTIFY_SOCKET": "@" + name}).watchdog()
        assert _drain(sock) == ["WATCHDOG=1"]
    quiet = Notifier({})
    assert not quiet.enabled and not quiet.ready("x") and quiet.watchdog_s is None
    assert Notifier({"NOTIFY_SOCKET": path, "WATCHDOG_USEC": "1000", "WATCHDOG_PID": "1"}).watchdog_s is None


async def test_the_hub_says_ready_pets_the_watchdog_and_writes_its_status(tmp_path, monkeypatch) -> None:
    path = str(tmp_path / "notify")
    with _datagram_socket(path) as sock:
        monkeypatch.setenv("NOTIFY_SOCKET", path)
        monkeypatch.setenv("WATCHDOG_USEC", "300000")  # 0.3 s: pets every 0.15 s
        monkeypatch.delenv("WATCHDOG_PID", raising=False)
        async with HubWorld(tmp_path / "world") as world:
            await world.start_hub()
            await asyncio.sleep(0.5)
            messages = _drain(sock)
            assert messages[0].startswith("READY=1\nSTATUS=outbox 0, radio scanning, platform ")
            assert messages.count("WATCHDOG=1") >= 2
            doc = cli.running_hub(world.cfg)
            assert doc is not None and doc["pid"] == os.getpid()
            assert doc["radio"]["state"] == "scanning" and doc["platform"]["heartbeat_interval_s"] is None
            await world.stop_hub()
            assert _drain(sock)[-1] == "STOPPING=1\nSTATUS=stopping"
            assert cli.running_hub(world.cfg) is None  # a stopped hub is not shown as running


def test_clock_check_says_plainly_when_time_cannot_be_trusted(tmp_path) -> None:
    marker = tmp_path / "synchronized"
    bad = clock.check(kernel=False, marker=marker)
    assert (bad.synchronized, bad.source) == (False, "adjtimex")
    assert bad.problem.startswith("clock not synchronised (the kernel reports TIME_ERROR)")
    marker.touch()  # systemd-timesyncd has synced since boot
    assert clock.check(kernel=False, marker=marker) == clock.ClockStatus(True, "timesyncd", None, None)
    off = clock.check(40.0, kernel=True, marker=tmp_path / "none")
    assert off.synchronized and off.problem == "clock is -40 s off the platform's"
    assert clock.check(3.0, kernel=True, marker=tmp_path / "none").problem is None
    assert clock.kernel_synchronized() in (True, False, None)  # the real adjtimex(2), read only


# -- the CLI -----------------------------------------------------------------------------------

def _config(tmp_path: Path, broken: str = "") -> Path:
    """A good hub.toml, and `broken` (a table the hub must refuse) after it."""
    path = tmp_path / "hub.toml"
    path.write_text(hub_toml.text(hub_id="hub-cli-0001", home_id="home-cli-0001", platform_url="https://127.0.0.1:9",
                                  base_dir=tmp_path) + broken)
    return path


def _cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "safebox.hub.cli", *args], capture_output=True, text=True,
                          timeout=60)


def test_a_bad_config_field_is_named_and_exits_2(tmp_path) -> None:
    cfg = _config(tmp_path, "[relay]\nbatch_max = 500\n")
    for command in ("run", "status", "test-alarm"):
        done = _cli(command, "--config", str(cfg))
        assert done.returncode == 2, done.stderr
        assert done.stderr.strip() == "safebox-hub: relay.batch_max: must be between 1 and 100, not 500"
        assert "Traceback" not in done.stderr
    done = _cli("status", "--config", str(_config(tmp_path, "[relay]\nheartbeat_s = 30\n")))
    assert (done.returncode, done.stderr.strip()) == (
        2, "safebox-hub: relay.heartbeat_s: 0 (no hub heartbeats) or 60 .. 86400, not 30")
    done = _cli("status", "--config", str(_config(tmp_path, '[ble]\nadapter = "usb0"\n')))
    assert done.returncode == 2 and "ble.adapter:" in done.stderr


def test_status_devices_and_test_alarm_when_the_hub_is_not_running(tmp_path) -> None:
    cfg = _config(tmp_path)
    device = Device.new("24:0A:C4:00:03:01", "front_door", "hall")
    Devices.load(tmp_path / "state" / "devices.json").add(device)
    alarm = _cli("test-alarm", "--config", str(cfg), "--json")
    assert alarm.returncode == 1 and "the hub is NOT RUNNING" in alarm.stderr
    result = json.loads(alarm.stdout)
    assert (result["result"], result["hub_running"]) == ("waiting", False)
    assert result["event_id"].startswith("hub-cli-0001-")

    status = _cli("status", "--config", str(cfg), "--json")
    assert status.returncode == 3, status.stderr  # no hub running: says so in its exit status too
    doc = json.loads(status.stdout)
    assert doc["running"] is False and doc["radio"] is None and doc["platform"]["reachable"] is None
    assert (doc["outbox_depth"], doc["outbox_urgent"], doc["dead_letters"]) == (1, 1, 0)  # the test alarm waits
    assert doc["devices"] == [{"id": device.id, "mac": device.address, "role": "front_door", "room": "hall",
                               "last_heard_s_ago": None, "last_counter": None, "battery": None, "rssi": None}]
    assert set(doc["clock"]) == {"synchronized", "source", "platform_offset_s", "problem"}

    text = _cli("status", "--config", str(cfg))
    assert text.returncode == 3 and "NOT RUNNING" in text.stdout and "outbox 1 (1 urgent" in text.stdout
    devices = _cli("devices", "--config", str(cfg), "--json")
    assert json.loads(devices.stdout)[0]["mac"] == device.address
    for out in (status.stdout, text.stdout, devices.stdout, _cli("devices", "--config", str(cfg)).stdout):
        assert device.key.hex() not in out.lower()  # keys never shown


def test_logs_are_one_line_per_record_with_journald_priorities(monkeypatch, capsys) -> None:
    record = logging.LogRecord("safebox.hub.uplink", logging.WARNING, __file__, 1, "event %s: retry\nsoon",
                               ("x-1",), None)
    journal = cli._JournalFormatter(journal=True).format(record)
    assert journal == "<4>WARNING safebox.hub.uplink: event x-1: retry | soon"
    assert cli._JournalFormatter(journal=False).format(record).startswith("WARNING safebox")


# -- the systemd unit --------------------------------------------------------------------------

def test_the_systemd_unit_is_type_notify_with_watchdog_umask_and_hardening(tmp_path) -> None:
    unit = configparser.ConfigParser(strict=False, interpolation=None)
    unit.optionxform = str  # type: ignore[assignment,method-assign]
    unit.read(UNIT)
    service = unit["Service"]
    assert service["Type"] == "notify" and service["NotifyAccess"] == "main"
    assert int(service["WatchdogSec"]) >= 10 and service["Restart"] == "always"
    assert service["UMask"] == "0077" and service["StateDirectoryMode"] == "0700"
    assert service["ExecStart"].endswith("safebox-hub run --config /etc/safebox/hub.toml")
    for key, value in {"NoNewPrivileges": "yes", "ProtectSystem": "strict", "ProtectHome": "yes",
                       "PrivateTmp": "yes", "PrivateDevices": "yes", "CapabilityBoundingSet": "",
                       "RestrictAddressFamilies": "AF_UNIX AF_INET AF_INET6"}.items():
        assert service[key] == value, key
    assert unit["Unit"]["StartLimitIntervalSec"] == "0"
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        pytest.skip("systemd-analyze not installed")
    copy = tmp_path / "safebox-hub.service"
    copy.write_text(UNIT.read_text().replace("/opt/safebox/.venv/bin/safebox-hub", sys.executable))
    done = subprocess.run([analyze, "verify", str(copy)], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert "safebox-hub.service" not in done.stderr  # no complaint about the unit itself

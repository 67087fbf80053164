"""The one builder of the hub's config for simulated homes and tests (tools/sim/hub_toml.py):
what it writes is what the hub's own config code reads, and what that code refuses it refuses."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest

from safebox.hub import config as hub_config
from safebox.tools.sim import hub_toml

SETTINGS = {"hub_id": "hub-sim-0001", "home_id": "home-sim-0001", "platform_url": "https://127.0.0.1:8443/base"}


def test_the_text_is_read_by_the_hub_as_the_settings_said(tmp_path: Path) -> None:
    (tmp_path / "ca.pem").write_text("a CA")
    path = hub_toml.write(tmp_path / "hub" / "hub.toml", **SETTINGS, ca_file=tmp_path / "ca.pem", timeout_s=5,
                          door_moves=True, relay={"backoff_initial_s": 0.2, "operator_poll_s": 1},
                          rules={"startup_grace_s": 3.0, "toilet": {"overdue_after_s": 10.0}},
                          cellular={"port": "/dev/ttyUSB2", "platform_number": "+8610690000",
                                    "who": 'Wang "Xiuying" \\ 王秀英'})
    cfg = hub_config.load(path)
    assert (cfg.hub_id, cfg.home_id, cfg.platform.url) == ("hub-sim-0001", "home-sim-0001", SETTINGS["platform_url"])
    assert cfg.state_dir == tmp_path / "hub" / "state" and cfg.platform.ca_file == tmp_path / "ca.pem"
    assert (cfg.platform.timeout_s, cfg.relay.backoff_initial_s, cfg.relay.operator_poll_s) == (5, 0.2, 1)
    assert (cfg.rules.startup_grace_s, cfg.rules.toilet.overdue_after_s) == (3.0, 10.0)
    assert cfg.privacy.send_door_moves == frozenset(hub_toml.DOOR_MOVES)
    assert cfg.cellular is not None and cfg.cellular.who == 'Wang "Xiuying" \\ 王秀英'
    assert tomllib.loads(path.read_text()) == hub_toml.document(**SETTINGS, ca_file=str(tmp_path / "ca.pem"),
                                                                timeout_s=5, door_moves=True,
                                                                relay={"backoff_initial_s": 0.2, "operator_poll_s": 1},
                                                                rules={"startup_grace_s": 3.0,
                                                                       "toilet": {"overdue_after_s": 10.0}},
                                                                cellular={"port": "/dev/ttyUSB2",
                                                                          "platform_number": "+8610690000",
                                                                          "who": 'Wang "Xiuying" \\ 王秀英'},
                                                                base_dir=tmp_path)


@pytest.mark.parametrize(("settings", "field"), [
    ({"relay": {"heartbeat_s": 30}}, "relay.heartbeat_s"),
    ({"ble": {"adapter": "usb0"}}, "ble.adapter"),
    ({"rules": {"toilet": {"overdue_after_s": 1}}}, "rules.toilet.overdue_after_s"),
    ({"platform_url": "http://127.0.0.1:8443"}, "platform.url"),
    ({"relay": {"verify_tls": False}}, "relay.verify_tls: unknown key"),
])
def test_what_the_hub_refuses_is_refused_naming_the_field_and_nothing_is_written(tmp_path: Path, settings: dict,
                                                                                 field: str) -> None:
    with pytest.raises(hub_config.ConfigError, match=field):
        hub_toml.write(tmp_path / "hub.toml", **{**SETTINGS, **settings})
    assert not (tmp_path / "hub.toml").exists()


def test_a_ca_file_is_looked_for_only_on_the_machine_it_is_written_for(tmp_path: Path) -> None:
    with pytest.raises(hub_config.ConfigError, match="platform.ca_file: no such file"):
        hub_toml.text(**SETTINGS, ca_file="/etc/safebox/platform-ca.pem", base_dir=tmp_path)
    vm = hub_toml.text(**SETTINGS, ca_file="/etc/safebox/platform-ca.pem", state_dir="/var/lib/safebox")
    assert tomllib.loads(vm)["platform"]["ca_file"] == "/etc/safebox/platform-ca.pem"

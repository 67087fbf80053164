"""The hub's configuration and its private state files: config, hub key, device registry."""

from __future__ import annotations

import json
import os
import ssl
import stat
from pathlib import Path

import pytest
import trustme

from safebox.hub import config, keys
from safebox.hub.devices import Device, Devices, DevicesError
from safebox.hub.privacy import Privacy
from safebox.protocol import signing

EXAMPLE = Path(config.__file__).with_name("hub.example.toml")

GOOD = """
hub_id = "hub-7f3a9c"
home_id = "home-0001"
state_dir = "state"
[platform]
url = "https://platform.example.org:8443/district"
timeout_s = 5
[ble]
adapter = "hci1"
connect_attempts = 4
[relay]
backoff_initial_s = 0.5
backoff_max_s = 60
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "hub.toml"
    path.write_text(text)
    return path


# -- config -------------------------------------------------------------------------


def test_example_file_loads_with_defaults() -> None:
    cfg = config.load(EXAMPLE)
    assert cfg == config.HubConfig(
        hub_id="hub-7f3a9c", home_id="home-0001", state_dir=Path("/var/lib/safebox"),
        platform=config.PlatformConfig(url="https://platform.example.org", ca_file=None, timeout_s=10.0),
        ble=config.BleConfig(adapter=None, connect_attempts=3),
        relay=config.RelayConfig(backoff_initial_s=1.0, backoff_max_s=300.0))
    assert cfg.privacy == Privacy() and not cfg.privacy.sends("front_door", "door_opened")  # the least, by default
    assert cfg.db_path == Path("/var/lib/safebox/hub.db")
    assert cfg.key_path == Path("/var/lib/safebox/hub_key.pem")
    assert cfg.devices_path == Path("/var/lib/safebox/devices.json")


def test_full_file_and_relative_paths(tmp_path: Path) -> None:
    ca = trustme.CA()
    ca.cert_pem.write_to_path(str(tmp_path / "ca.pem"))
    cfg = config.load(write(tmp_path, GOOD.replace("timeout_s = 5", 'timeout_s = 5\nca_file = "ca.pem"')))
    assert cfg.state_dir == (tmp_path / "state").resolve()
    assert cfg.platform == config.PlatformConfig(url="https://platform.example.org:8443/district",
                                                 ca_file=(tmp_path / "ca.pem").resolve(), timeout_s=5.0)
    assert cfg.ble == config.BleConfig(adapter="hci1", connect_attempts=4)
    assert cfg.relay == config.RelayConfig(backoff_initial_s=0.5, backoff_max_s=60.0)
    chosen = config.load(write(tmp_path, GOOD + '[privacy]\nsend_door_moves = ["front_door"]\nsend_rssi = "always"\n'))
    assert chosen.privacy == Privacy(frozenset({"front_door"}), "always")
    ctx = cfg.platform.ssl_context()
    assert ctx.verify_mode == ssl.CERT_REQUIRED and ctx.check_hostname
    assert len(ctx.get_ca_certs()) == 1  # only the configured CA, not the system store


URL = 'url = "https://platform.example.org:8443/district"'


@pytest.mark.parametrize("change, field", [
    ((URL, 'url = "http://platform.example.org"'), "platform.url: must be https://"),
    ((URL, 'url = "https://user:pw@platform.example.org"'), "platform.url: must not carry"),
    ((URL, 'url = "https://"'), "platform.url: has no host"),
    (('timeout_s = 5', 'timeout_s = 5\nverify = false'),
     "platform.verify: unknown key (TLS verification cannot be switched off"),
    (('timeout_s = 5', 'timeout_s = "5"'), "platform.timeout_s: must be a number"),
    (('timeout_s = 5', 'timeout_s = true'), "platform.timeout_s: must be a number"),
    (('timeout_s = 5', 'timeout_s = 0'), "platform.timeout_s: must be between"),
    (('timeout_s = 5', 'timeout_s = 5\nca_file = "missing.pem"'), "platform.ca_file: no such file"),
    (('hub_id = "hub-7f3a9c"', 'hub_id = "Hub 7"'), "hub_id: lower-case letters"),
    (('hub_id = "hub-7f3a9c"', 'hub_id = 7'), "hub_id: must be a non-empty string"),
    (('hub_id = "hub-7f3a9c"', 'hub_id = "' + "h" * 64 + '"'), "hub_id: cannot prefix hub event ids"),
    (('home_id = "home-0001"', 'home_id = "home_1"'), "home_id: lower-case letters"),
    (('home_id = "home-0001"\n', ''), "home_id: required"),
    (('state_dir = "state"\n', 'statedir = "state"\n'), "state_dir: required"),
    (('home_id = "home-0001"', 'home_id = "home-0001"\nhubid = "x"'), "hubid: unknown key"),
    (('adapter = "hci1"', 'adapter = "usb0"'), "ble.adapter: a BlueZ adapter name"),
    (('adapter = "hci1"', 'backend = "sim"'), "ble.backend: unknown key"),
    (('connect_attempts = 4', 'connect_attempts = 0'), "ble.connect_attempts"),
    (('backoff_max_s = 60', 'backoff_max_s = 0.1'), "relay.backoff_max_s: must be at least backoff_initial_s"),
    (('backoff_max_s = 60', 'backoff_max_s = 60\njitter = 1'), "relay.jitter: unknown key"),
    (('[platform]', 'platform = "x"\n[other]'), "platform: must be a table"),
    (('[ble]', '[privacy]\nsend_door_moves = ["pendant"]\n[ble]'), "privacy.send_door_moves: a list of roles"),
    (('[ble]', '[privacy]\nsend_door_moves = "front_door"\n[ble]'), "privacy.send_door_moves: a list of roles"),
    (('[ble]', '[privacy]\nsend_rssi = "sometimes"\n[ble]'), "privacy.send_rssi: one of walk_test"),
    (('[ble]', '[privacy]\nsend_everything = true\n[ble]'), "privacy.send_everything: unknown key"),
])
def test_bad_field_is_named(tmp_path: Path, change: tuple[str, str], field: str) -> None:
    old, new = change
    assert old in GOOD
    with pytest.raises(config.ConfigError) as err:
        config.load(write(tmp_path, GOOD.replace(old, new)))
    assert str(err.value).startswith(field), str(err.value)


def test_missing_platform_table(tmp_path: Path) -> None:
    text = GOOD.split("[platform]")[0]
    with pytest.raises(config.ConfigError, match=r"^platform: required table \[platform\] is missing"):
        config.load(write(tmp_path, text))


def test_unreadable_files_are_named(tmp_path: Path) -> None:
    with pytest.raises(config.ConfigError, match="no such config file"):
        config.load(tmp_path / "nope.toml")
    path = write(tmp_path, "hub_id = \n")
    with pytest.raises(config.ConfigError, match=rf"^{path}: not valid TOML"):
        config.load(path)


def test_https_check_shared_with_uplink() -> None:
    assert config.check_https_url("https://127.0.0.1:8443") == "https://127.0.0.1:8443"
    for bad in ("http://x", "https://x/?q=1", "https://x:99999", "ftp://x"):
        with pytest.raises(ValueError):
            config.check_https_url(bad)


# -- hub key --------------------------------------------------------------------------


def test_key_made_once_private_and_stable(tmp_path: Path) -> None:
    path = tmp_path / "state" / "hub_key.pem"
    old_umask = os.umask(0)  # even a careless umask must not make it readable
    try:
        key = keys.load_or_create(path)
    finally:
        os.umask(old_umask)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    again = keys.load_or_create(path)
    assert keys.public_key_text(again) == keys.public_key_text(key)
    text = keys.public_key_text(key)
    assert signing.public_key_from_text(text).public_bytes_raw() == key.public_key().public_bytes_raw()
    assert keys.public_key_text(key.public_key()) == text
    assert [p.name for p in path.parent.iterdir()] == ["hub_key.pem"]  # no temp file left


def test_key_readable_by_others_is_refused_with_fix(tmp_path: Path) -> None:
    path = tmp_path / "hub_key.pem"
    keys.load_or_create(path)
    before = path.read_bytes()
    path.chmod(0o640)
    with pytest.raises(keys.KeyFileError, match=rf"mode 0640.*chmod 600 {path}"):
        keys.load_or_create(path)
    assert path.read_bytes() == before  # never replaced


def test_key_file_with_garbage_is_refused_not_replaced(tmp_path: Path) -> None:
    path = tmp_path / "hub_key.pem"
    path.write_bytes(b"not a key")
    path.chmod(0o600)
    with pytest.raises(keys.KeyFileError, match="not an unencrypted PEM private key"):
        keys.load_or_create(path)
    assert path.read_bytes() == b"not a key"


# -- device registry ------------------------------------------------------------------

PENDANT_KEY = bytes.fromhex("231d39c1d7cc1ab1aee224cd096db932")


def test_devices_add_get_remove_persist(tmp_path: Path) -> None:
    path = tmp_path / "devices.json"
    reg = Devices.load(path)
    assert len(reg) == 0 and not path.exists()
    pendant = Device.new("24:0A:C4:12:34:56", "pendant", "bedroom", key=PENDANT_KEY)
    door = Device.new("24:0a:c4:00:00:01", "front_door", "hall")
    reg.add(pendant)
    reg.add(door)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert json.loads(path.read_text())[0] == {"mac": "24:0A:C4:12:34:56", "role": "pendant",
                                               "room": "bedroom", "key": PENDANT_KEY.hex()}
    again = Devices.load(path)
    assert again.get("24:0a:c4:12:34:56") == pendant
    assert again.get(bytes.fromhex("240ac4123456")) == pendant
    assert again.get("24:0A:C4:00:00:01") == door and door.key != pendant.key and len(door.key) == 16
    assert again.get("24:0A:C4:00:00:02") is None and again.get("junk") is None
    assert pendant.id == "240ac4123456" and pendant.address == "24:0A:C4:12:34:56"
    assert pendant.event_device() == {"id": "240ac4123456", "role": "pendant", "room": "bedroom"}
    assert again.remove("24:0A:C4:12:34:56") == pendant
    assert Devices.load(path).get(pendant.mac) is None and len(Devices.load(path)) == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["devices.json", "devices.json.lock"]


def test_keys_never_in_repr(tmp_path: Path) -> None:
    reg = Devices.load(tmp_path / "devices.json")
    device = Device.new("24:0A:C4:12:34:56", "pendant", "bedroom", key=PENDANT_KEY)
    reg.add(device)
    for text in (repr(device), str(device), repr(reg), repr(list(reg))):
        assert PENDANT_KEY.hex() not in text.lower() and "231d39" not in text
    assert repr(device) == "Device(24:0A:C4:12:34:56, role='pendant', room='bedroom')"


def test_devices_refused_changes_leave_the_file_alone(tmp_path: Path) -> None:
    path = tmp_path / "devices.json"
    reg = Devices.load(path)
    reg.add(Device.new("24:0A:C4:12:34:56", "pendant", "bedroom", key=PENDANT_KEY))
    before = path.read_bytes()
    with pytest.raises(DevicesError, match="24:0A:C4:12:34:56: already paired as pendant"):
        reg.add(Device.new("24:0A:C4:12:34:56", "toilet_door", "toilet"))
    with pytest.raises(DevicesError, match="key: already used by another device"):
        reg.add(Device.new("24:0A:C4:00:00:09", "toilet_door", "toilet", key=PENDANT_KEY))
    with pytest.raises(DevicesError, match="24:0A:C4:00:00:09: not paired"):
        reg.remove("24:0A:C4:00:00:09")
    assert path.read_bytes() == before


@pytest.mark.parametrize("kwargs, message", [
    ({"mac": "24:0A:C4:12:34", "role": "pendant"}, "mac: must look like"),
    ({"mac": "24:0A:C4:12:34:56", "role": "doorbell"}, "role: must be one of front_door, pendant, toilet_door"),
    ({"mac": "24:0A:C4:12:34:56", "role": "pendant", "key": b"\x01" * 15}, "key: must be 16 bytes"),
    ({"mac": "24:0A:C4:12:34:56", "role": "pendant", "key": bytes(16)}, "key: all zeros"),
    ({"mac": "24:0A:C4:12:34:56", "role": "pendant", "room": "a\nb"}, "room: printable text"),
])
def test_device_fields_are_named(kwargs: dict, message: str) -> None:
    with pytest.raises(DevicesError, match="^" + message.replace("(", r"\(")):
        Device.new(**kwargs)


def _entry(**change: object) -> dict:
    entry = {"mac": "24:0A:C4:12:34:56", "role": "pendant", "room": "bedroom", "key": PENDANT_KEY.hex()}
    entry.update(change)
    return {k: v for k, v in entry.items() if v is not None}


@pytest.mark.parametrize("entries, message", [
    ([_entry(), _entry(mac="24:0A:C4:12:34:57", role="sofa")], "entry 1: role: must be one of"),
    ([_entry(key="abcd")], "entry 0: key: must be 32 hex digits"),
    ([_entry(mac=None)], "entry 0: mac: required string"),
    ([_entry(colour="red")], "entry 0: colour: unknown field"),
    ([_entry(room=7)], "entry 0: room: printable text"),
    ([_entry(), _entry(key="11" * 16)], "entry 1: mac: 24:0A:C4:12:34:56 is already entry 0"),
    ([_entry(), _entry(mac="24:0A:C4:12:34:57")], "entry 1: key: same key as entry 0"),
    ([7], "entry 0: entry: must be a JSON object"),
])
def test_bad_registry_entry_is_named(tmp_path: Path, entries: list, message: str) -> None:
    path = tmp_path / "devices.json"
    path.write_text(json.dumps(entries))
    path.chmod(0o600)
    with pytest.raises(DevicesError) as err:
        Devices.load(path)
    assert f"{path} {message}" in str(err.value)
    assert PENDANT_KEY.hex() not in str(err.value)


def test_registry_not_a_list_or_not_json(tmp_path: Path) -> None:
    path = tmp_path / "devices.json"
    for text, message in (("{}", "must hold a JSON list"), ("[", "not UTF-8 JSON")):
        path.write_text(text)
        path.chmod(0o600)
        with pytest.raises(DevicesError, match=message):
            Devices.load(path)


def test_registry_readable_by_others_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "devices.json"
    Devices.load(path).add(Device.new("24:0A:C4:12:34:56", "pendant", "bedroom"))
    path.chmod(0o644)
    with pytest.raises(DevicesError, match=rf"readable by group or others \(mode 0644\); fix with: chmod 600 {path}"):
        Devices.load(path)


def test_two_processes_pairing_do_not_undo_each_other(tmp_path: Path) -> None:
    path = tmp_path / "devices.json"
    hub_view = Devices.load(path)
    first, second = Devices.load(path), Devices.load(path)  # both read the empty registry
    first.add(Device.new("24:0A:C4:00:00:01", "front_door", "hall"))
    second.add(Device.new("24:0A:C4:00:00:02", "toilet_door", "toilet"))
    assert {d.address for d in Devices.load(path)} == {"24:0A:C4:00:00:01", "24:0A:C4:00:00:02"}
    assert hub_view.get("24:0A:C4:00:00:01") is None
    assert hub_view.reload_if_changed() is True
    assert hub_view.get("24:0A:C4:00:00:01") is not None and hub_view.get("24:0A:C4:00:00:02") is not None
    assert hub_view.reload_if_changed() is False


def test_the_platform_url_is_kept_in_its_normal_form(tmp_path: Path) -> None:
    text = GOOD.replace("https://platform.example.org:8443/district", "https://Platform.Example.ORG:08443/a/./district/%7eb")
    assert config.load(write(tmp_path, text)).platform.url == "https://platform.example.org:8443/a/district/~b"

"""Property tests of the hub config parser (hub/config.parse and load): any TOML-like document
gives a HubConfig or a ConfigError naming a field, nothing else.

Bugs found here (paths starting with '~', NUL characters, very long path names, files that
are not UTF-8) are fixed and kept as regression tests at the end."""

from __future__ import annotations

import copy
import datetime
import os
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from safebox.hub import config

# SAFEBOX_FUZZ_EXAMPLES=5000 for a deeper local run; the suite stays bounded.
FUZZ = settings(max_examples=int(os.environ.get("SAFEBOX_FUZZ_EXAMPLES", "300")), deadline=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])

BASE = {
    "hub_id": "hub-fuzz-0001",
    "home_id": "home-fuzz-0001",
    "state_dir": "state",
    "platform": {"url": "https://platform.example:8443", "timeout_s": 5},
    "ble": {"adapter": "hci0", "connect_attempts": 3},
    "relay": {"backoff_initial_s": 0.5, "backoff_max_s": 60},
}
# Where a mutation may land: the top level and every table the parser knows of (and one it does not).
TABLES = [(), ("platform",), ("ble",), ("relay",), ("rules",), ("rules", "toilet"), ("rules", "front_door"),
          ("rules", "supervision"), ("unknown",)]
KEYS = ["hub_id", "home_id", "state_dir", "url", "ca_file", "timeout_s", "adapter", "connect_attempts", "backoff_initial_s",
        "backoff_max_s", "timezone", "startup_grace_s", "overdue_after_s", "inactive_after_s", "quiet_windows",
        "heartbeat_s", "missed_heartbeats", "grace_s", "battery_low_pct", "battery_ok_pct", "verify_tls",
        "platform", "ble", "relay", "rules", "toilet"]

# Any short text, NUL and a leading '~' included (both once let non-ConfigErrors out).
safe_text = st.text(max_size=40)
toml_scalars = (safe_text | st.integers(-(2 ** 63), 2 ** 63 - 1) | st.floats() | st.booleans()
                | st.datetimes() | st.dates() | st.times()
                | st.sampled_from(["https://x.example", "http://x.example", "https://", "tcp-client:1.2.3.4:1",
                                   "22:00-07:00", "24:00-00:00", "Asia/Shanghai", "Europe", "../etc", "", " "]))
toml_values = st.recursive(toml_scalars, lambda inner: st.lists(inner, max_size=3) |
                           st.dictionaries(safe_text, inner, max_size=3), max_leaves=8)


def _parse(doc: dict, base_dir: Path) -> None:
    try:
        cfg = config.parse(doc, base_dir=base_dir)
    except config.ConfigError as exc:
        assert str(exc), "a ConfigError must say what is wrong"
        return
    assert isinstance(cfg, config.HubConfig)
    assert cfg.platform.url.startswith("https://")  # never anything but https


@st.composite
def mutated(draw: st.DrawFn) -> dict:
    doc = copy.deepcopy(BASE)
    for _ in range(draw(st.integers(1, 4))):
        table_path = draw(st.sampled_from(TABLES))
        table = doc
        for name in table_path:
            nxt = table.get(name)
            if not isinstance(nxt, dict):
                nxt = table[name] = {}
            table = nxt
        key = draw(st.sampled_from(KEYS) | safe_text)
        if draw(st.booleans()) and key in table:
            del table[key]
        else:
            table[key] = draw(toml_values)
    return doc


@FUZZ
@given(mutated())
def test_a_mutated_config_is_a_config_or_a_config_error(tmp_path, doc):
    _parse(doc, tmp_path)


@FUZZ
@given(st.dictionaries(safe_text | st.sampled_from(KEYS), toml_values, max_size=8))
def test_an_arbitrary_document_is_a_config_or_a_config_error(tmp_path, doc):
    _parse(doc, tmp_path)


@FUZZ
@given(st.text(max_size=300))
def test_any_utf8_file_loads_to_a_config_or_a_config_error(tmp_path, text):
    path = tmp_path / "hub.toml"
    path.write_text(text, encoding="utf-8")
    try:
        config.load(path)
    except config.ConfigError:
        pass


@FUZZ
@given(st.lists(safe_text | st.sampled_from(["00:00-24:00", "23:59-00:00", "7:00-8:00", "07:00-07:00",
                                                "٣:00-04:00", "²:00-03:00", "1:2:3-4:5"]), max_size=4))
def test_quiet_windows_any_strings(tmp_path, windows):
    doc = copy.deepcopy(BASE)
    doc["rules"] = {"front_door": {"quiet_windows": windows}}
    _parse(doc, tmp_path)


def test_the_example_config_still_parses(tmp_path):
    import tomllib
    example = Path(config.__file__).with_name("hub.example.toml")
    doc = tomllib.loads(example.read_text())
    doc["state_dir"] = str(tmp_path / "state")
    assert isinstance(config.parse(doc, base_dir=tmp_path), config.HubConfig)


# -- bugs found here, fixed, kept as regression tests -----------------------------------------------------------------------

def _with(**changes: object) -> dict:
    doc = copy.deepcopy(BASE)
    for key, value in changes.items():
        if key == "ca_file":
            doc["platform"]["ca_file"] = value
        else:
            doc[key] = value
    return doc


def test_a_home_of_an_unknown_user_is_a_config_error(tmp_path):
    with pytest.raises(config.ConfigError):
        config.parse(_with(state_dir="~nosuchuser-safebox/state"), base_dir=tmp_path)


def test_a_path_with_a_nul_is_a_config_error(tmp_path):
    with pytest.raises(config.ConfigError, match="platform.ca_file"):
        config.parse(_with(ca_file="ca\0.pem"), base_dir=tmp_path)


def test_a_very_long_ca_file_is_a_config_error(tmp_path):
    with pytest.raises(config.ConfigError):
        config.parse(_with(ca_file="c" * 300), base_dir=tmp_path)


def test_a_file_that_is_not_utf8_is_a_config_error(tmp_path):
    path = tmp_path / "hub.toml"
    path.write_bytes(b'hub_id = "hub-\xff"\n')
    with pytest.raises(config.ConfigError):
        config.load(path)


def test_a_datetime_where_a_number_belongs_is_a_config_error(tmp_path):
    doc = _with()
    doc["relay"]["backoff_initial_s"] = datetime.datetime(2026, 1, 1)
    with pytest.raises(config.ConfigError, match="relay.backoff_initial_s"):
        config.parse(doc, base_dir=tmp_path)

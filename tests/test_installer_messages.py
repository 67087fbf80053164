"""The installer's messages: every one in Chinese and English, chosen by locale or flag."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from safebox.tools.installer import cli, messages
from safebox.tools.installer.messages import MESSAGES, InstallerError, placeholders, t

INSTALLER = Path(__file__).resolve().parent.parent / "tools" / "installer"
_HAN = re.compile(r"[\u4e00-\u9fff]")
_KEY_LITERAL = re.compile(r'"((?:board|flash|pair|unpair|enrol|walk|report|cli|lab|hub|image)_[a-z0-9_]+)"')
_NOT_KEYS = {"hub_at", "hub_config", "hub_id", "image_id"}  # field names that look like keys


@pytest.mark.parametrize("key", sorted(MESSAGES))
def test_every_message_has_both_languages_with_the_same_placeholders(key):
    zh, en = MESSAGES[key]
    assert zh.strip() and en.strip()
    assert placeholders(zh) == placeholders(en), key
    if placeholders(en) != {"action"} and not key.startswith("walk_device_heard"):
        assert _HAN.search(zh), f"{key}: the Chinese text has no Chinese in it"
    assert not _HAN.search(en), f"{key}: Chinese in the English text"


def test_every_key_the_code_names_is_in_the_catalogue():
    named = set()
    for source in INSTALLER.glob("*.py"):
        named |= set(_KEY_LITERAL.findall(source.read_text(encoding="utf-8")))
    missing = sorted(named - set(MESSAGES) - _NOT_KEYS)
    assert not missing, f"keys used in tools/installer but not in messages.py: {missing}"


def test_word_tables_have_both_languages():
    for table in (messages.ROLE_NAMES, messages.EVENT_NAMES, messages.ACTION_NAMES, messages.SIGNAL_NAMES,
                  messages.STATUS_NAMES):
        for zh, en in table.values():
            assert _HAN.search(zh) and zh and en and not _HAN.search(en)


@pytest.mark.parametrize(("env", "lang"), [
    ({"LANG": "zh_CN.UTF-8"}, "zh"),
    ({"LC_ALL": "zh_TW.UTF-8", "LANG": "en_US.UTF-8"}, "zh"),
    ({"LC_ALL": "en_GB.UTF-8", "LANG": "zh_CN.UTF-8"}, "en"),
    ({"LANG": "C.UTF-8"}, "en"),
    ({}, "en"),
])
def test_language_follows_the_locale(env, lang):
    assert messages.detect_language(env) == lang


def test_values_that_are_words_are_translated_too():
    err = InstallerError("pair_already_paired", mac="24:0A:C4:00:00:01", role="pendant", room="卧室")
    assert "居家宝" in err.text("zh") and "pendant" in err.text("en")
    assert str(err) == err.text("en")
    line = t("walk_hub", "zh", device={"role": "front_door", "address": "24:0A:C4:00:00:02", "room": ""},
             event="door_opened", rssi=-80, signal="marginal", battery=90)
    assert "大门门磁" in line and "开门" in line and "勉强" in line and "-80 dBm" in line


def test_unknown_key_is_a_programming_error():
    with pytest.raises(KeyError):
        InstallerError("no_such_message")


@pytest.mark.parametrize(("argv", "env", "expect"), [
    (["--lang", "zh"], {"LANG": "en_US.UTF-8"}, "没有“kitchen”这种设备类型"),
    (["--lang", "en"], {"LANG": "zh_CN.UTF-8"}, 'There is no device role "kitchen"'),
    ([], {"LANG": "zh_CN.UTF-8"}, "没有“kitchen”这种设备类型"),
    ([], {"LANG": "en_US.UTF-8"}, 'There is no device role "kitchen"'),
])
def test_the_command_line_speaks_the_chosen_language(argv, env, expect, capsys, monkeypatch, tmp_path):
    for name in ("LC_ALL", "LC_MESSAGES", "LANGUAGE"):
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    try:
        rc = cli.main([*argv, "pair", "--port", "socket://127.0.0.1:1", "--hub-config", str(tmp_path / "x.toml"),
                       "--role", "kitchen"])
    finally:
        messages.set_language("en")
    assert rc == cli.EXIT_REFUSED
    assert expect in capsys.readouterr().err

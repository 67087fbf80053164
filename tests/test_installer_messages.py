"""The installer's messages: every one in Chinese and English, chosen by locale or flag."""

from __future__ import annotations

import pytest

from safebox.tools.installer import cli, messages
from safebox.tools.installer.messages import InstallerError, t


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
    assert "呼叫挂件" in err.text("zh") and "pendant" in err.text("en")
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


def test_plurals_follow_the_number_in_english_and_need_none_in_chinese():
    start = dict(home="h", hub="b", good=-75, marginal=-85, time="-")
    assert "1 device, 3 checks" in t("walk_start", "en", devices=1, checks=3, **start)
    assert "2 devices, 1 check." in t("walk_start", "en", devices=2, checks=1, **start)
    assert "1 个设备，3 项检查" in t("walk_start", "zh", devices=1, checks=3, **start)
    assert t("flash_copying", "en", files=1, kb=1.5) == "Copying 1 file (1.5 KB)..."


def test_a_door_sensor_is_never_given_the_pendants_hint():
    door = {"role": "front_door", "address": "24:0A:C4:00:00:02", "room": "hall"}
    for lang in ("en", "zh"):
        text = t("walk_device_not_heard_door", lang, device=door)
        assert ("press" not in text) and ("按键" not in text)
    assert "按键" in t("walk_device_not_heard_pendant", "zh", device=door | {"role": "pendant"})


@pytest.mark.parametrize("argv", [
    ["--lang", "zh", "report", "--help"],
    ["report", "--lang", "zh", "--help"],
    ["report", "--help", "--lang", "zh"],
])
def test_global_options_are_taken_anywhere_and_help_is_in_the_chosen_language(argv, capsys):
    with pytest.raises(SystemExit) as stop:
        cli.main(argv)
    assert stop.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith("用法：safebox-install report") and "显示这个帮助并退出" in out and "选项：" in out
    assert "usage" not in out and "options" not in out


def test_help_under_a_chinese_locale_is_chinese(monkeypatch, capsys):
    for name in ("LC_ALL", "LC_MESSAGES", "LANGUAGE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("LANG", "zh_CN.UTF-8")
    with pytest.raises(SystemExit):
        cli.main(["--help"])
    out = capsys.readouterr().out
    assert "用法：" in out and "安装居家安全盒" in out and "走测" in out
    messages.set_language("en")


def test_argparse_errors_are_in_the_chosen_language_and_nothing_is_left_behind(capsys):
    import os
    before = os.environ.get("LANGUAGE")
    with pytest.raises(SystemExit) as stop:
        cli.main(["pair", "--lang", "zh"])
    assert stop.value.code == 2
    assert "safebox-install pair：错误：缺少这些参数：--role" in capsys.readouterr().err
    assert os.environ.get("LANGUAGE") == before  # the process's gettext state is put back
    with pytest.raises(SystemExit):
        cli.main(["pair", "--lang", "en"])
    assert "error: the following arguments are required: --role" in capsys.readouterr().err
    messages.set_language("en")

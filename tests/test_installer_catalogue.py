"""The installer's catalogue: complete in both languages, reviewed against the glossary, and
nothing an installer reads comes from anywhere else.

Three nets: the catalogue itself (same messages and placeholders in both languages, the
glossary's terms, full-width punctuation, no nested parentheses once values are filled
in, the shipped .mo files compiled from the .po files); the source (every string the code
shows goes through the catalogue); and the screen (the Chinese command line, run for help
and for its refusals, shows no English sentence outside the 「」 that quote other programs).
"""

from __future__ import annotations

import argparse
import ast
import re
from pathlib import Path

import pytest
from babel.messages.extract import extract_from_file
from babel.messages.pofile import read_po

from safebox.tools.installer import catalogue, cli, messages
from safebox.tools.installer.messages import placeholders, t
from safebox.tools.sim import hub_toml

INSTALLER = Path(catalogue.__file__).resolve().parent
_HAN = re.compile(r"[\u4e00-\u9fff]")
_FULL_PUNCT = "，。：；？！（）“”、【】「」"
# An ASCII mark right after a Chinese character or full-width mark, or an opening one right before.
_ASCII_BESIDE_CJK = re.compile(rf"[\u4e00-\u9fff{_FULL_PUNCT}][,.;:?!()\[\]\"]|[(\[\"][\u4e00-\u9fff]")
# English prose: three words of letters in a row (commands, options, paths and ids have - . / _ or digits).
_PROSE = re.compile(r"(?<![\w./-])[A-Za-z]{2,}(?: [A-Za-z]{2,}){2,}(?![\w./-])")
_CODE = re.compile(r"safebox-(?:install|hub|receiver)(?: [a-z-]+)?|--[a-z-]+(?: [^\s-]\S*)?|\S*[-_./=@:]\S*|\{\w+\}")
_QUOTED = re.compile(r"「[^」]*」")
# Names the code builds from parts, and what it puts in front of them.
_BUILT = ("role_", "event_", "action_", "signal_", "status_", "n_", "cmd_", "lab_board_", "walk_device_not_heard_")


def _entries(lang: str) -> dict[str, object]:
    with catalogue.po_path(lang).open("rb") as f:
        cat = read_po(f)
    return {(m.id[0] if isinstance(m.id, tuple) else m.id): m.string for m in cat if m.id}


def _argparse_msgids() -> set[str]:
    return {m[1][0] if isinstance(m[1], tuple) else m[1] for m in extract_from_file("python", argparse.__file__)}


# Our messages are those of the English catalogue (argparse's own need no English entry).
EN = _entries("en")
ZH = {k: v for k, v in _entries("zh").items() if k in EN}


def _texts(value: object) -> list[str]:
    return list(value) if isinstance(value, tuple) else [str(value)]


def _sample(key: str, template: str) -> dict[str, object]:
    """Values as the code gives them (a device label, an event, numbers), to render a message."""
    device = {"role": "pendant", "address": "24:0A:C4:00:00:01", "room": "卧室"}
    values: dict[str, object] = {}
    for name in placeholders(template):
        values[name] = {"device": device, "event": "emergency", "signal": "marginal", "role": "front_door",
                        "n": 2}.get(name, 3 if messages.exists(f"n_{name}") else f"<{name}>")
    return values


def test_both_languages_have_the_same_messages_and_placeholders():
    assert set(ZH) == set(EN)
    assert set(_entries("zh")) - set(EN) <= _argparse_msgids()
    for key in EN:
        zh, en = _texts(ZH[key]), _texts(EN[key])
        assert all(s.strip() for s in zh + en), key
        assert {frozenset(placeholders(s)) for s in zh} == {frozenset(placeholders(s)) for s in en}, key
        assert not any(_HAN.search(s) for s in en), f"{key}: Chinese in the English text"


def test_every_chinese_message_is_chinese():
    for key, value in ZH.items():
        for text in _texts(value):
            words = _CODE.sub("", text)
            if re.search(r"[A-Za-z]{2,}", words) and key != "mv_pin":  # "名称=GPIO": a name typed as is
                assert _HAN.search(text), f"{key}: no Chinese in {text!r}"


def _glossary() -> list[tuple[str, str, list[str]]]:
    rows = []
    for line in catalogue.GLOSSARY.read_text(encoding="utf-8").split("## Punctuation")[0].splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) == 4 and _HAN.search(cells[1]) and cells[0] != "English":
            rows.append((cells[0], cells[1], [w for w in cells[2].split("、") if w]))
    return rows


def test_the_glossary_is_read():
    terms = {en: zh for en, zh, _ in _glossary()}
    assert terms["hub"] == "网关" and terms["pendant"] == "呼叫挂件" and terms["walk test"] == "走测"
    assert terms["door sensor"] == "门磁" and len(terms) >= 15


def _term(english: str) -> re.Pattern[str]:
    words = r"[ -]".join(map(re.escape, english.replace("-", " ").split()))
    return re.compile(rf"\b{words}s?\b", re.IGNORECASE)


@pytest.mark.parametrize(("english", "chinese", "avoid"), _glossary())
def test_chinese_messages_use_the_glossary_terms(english, chinese, avoid):
    term = _term(english)
    longer = [_term(other) for other, _, _ in _glossary() if other != english and term.search(other)]
    for key, value in EN.items():
        prose = _CODE.sub(" ", " ".join(_texts(value)))
        for other in longer:  # "front-door sensor" is checked as itself, not as "door sensor"
            prose = other.sub(" ", prose)
        if term.search(prose):
            assert chinese in "".join(_texts(ZH[key])), f"{key}: {english!r} should be {chinese} in {ZH[key]!r}"
    for key, value in ZH.items():
        for word in avoid:
            assert word not in "".join(_texts(value)), f"{key}: {word} (glossary: {chinese})"


@pytest.mark.parametrize("key", sorted(ZH))
def test_chinese_punctuation_is_full_width_and_parentheses_are_never_nested(key):
    for template in _texts(ZH[key]):
        rendered = _QUOTED.sub("「」", t(key, "zh", **_sample(key, template)) if not key.startswith("n_")
                               else template.format(n=2))
        prose = _CODE.sub(" ", rendered)
        assert not _ASCII_BESIDE_CJK.search(prose), f"{key}: ASCII punctuation in Chinese: {rendered!r}"
        assert not re.search(rf"[\u4e00-\u9fff{_FULL_PUNCT}]\.\.\.", rendered), f"{key}: use …… not ..."
        depth = 0
        for c in rendered:
            depth += {"（": 1, "(": 1, "）": -1, ")": -1}.get(c, 0)
            assert depth <= 1, f"{key}: nested parentheses: {rendered!r}"


@pytest.mark.parametrize("lang", ["zh", "en"])
def test_the_shipped_mo_files_are_compiled_from_the_po_files(lang):
    shipped = catalogue.po_path(lang).with_suffix(".mo").read_bytes()
    assert shipped == catalogue.compiled(lang), "run: python -m safebox.tools.installer.catalogue compile"


# argparse messages a correct parser never shows (they are about how the parser was built).
_ARGPARSE_PROGRAMMING = {
    ".__call__() not defined", "conflicting subparser: %s", "conflicting subparser alias: %s",
    'argument "-" with mode %r', "cannot merge actions - two groups are named %r",
    "'required' is an invalid argument for positionals", "dest= is required for options like %r",
    "invalid option string %(option)r: must start with a character %(prefix_chars)r",
    "invalid conflict_resolution value: %r", "conflicting option string: %s",
    "mutually exclusive arguments must be optional", "cannot have multiple subparser arguments",
    "%r is not callable",
}


def test_every_word_argparse_can_show_a_user_is_translated():
    zh = _entries("zh")
    shown = _argparse_msgids()
    missing = sorted(m for m in shown - _ARGPARSE_PROGRAMMING if not zh.get(m))
    assert not missing, f"argparse messages with no Chinese in the catalogue: {missing}"


# -- the source --------------------------------------------------------------------------------------
def _calls(tree: ast.AST) -> list[ast.Call]:
    return [n for n in ast.walk(tree) if isinstance(n, ast.Call)]


def _name(call: ast.Call) -> str:
    f = call.func
    return f.attr if isinstance(f, ast.Attribute) else f.id if isinstance(f, ast.Name) else ""


_SPEAKERS = {"t", "say", "show", "tell", "InstallerError", "text", "plural"}
_SOURCES = sorted(p for p in INSTALLER.glob("*.py") if p.name not in ("catalogue.py", "fakeboard.py"))


def _keys_named_in_code() -> tuple[set[str], set[str], list[str]]:
    """(message names given to t/say/InstallerError..., every string constant, shown text that escapes)."""
    named, constants, escapes = set(), set(), []
    for path in _SOURCES:
        tree = ast.parse(path.read_text(encoding="utf-8"))
        constants |= {n.value for n in ast.walk(tree) if isinstance(n, ast.Constant) and isinstance(n.value, str)}
        for call in _calls(tree):
            name = _name(call)
            first = call.args[0] if call.args else None
            if name in _SPEAKERS and isinstance(first, ast.Constant) and isinstance(first.value, str):
                named.add(first.value)
            if name in ("add_argument", "add_parser", "ArgumentParser"):
                for kw in call.keywords:
                    if kw.arg in ("help", "description", "epilog") and isinstance(kw.value, ast.Constant):
                        escapes.append(f"{path.name}:{call.lineno} {kw.arg}={kw.value.value!r}")
            if name in ("print", "write") and any(isinstance(a, (ast.Constant, ast.JoinedStr)) and
                                                   _PROSE.search(ast.unparse(a)) for a in call.args):
                escapes.append(f"{path.name}:{call.lineno} {ast.unparse(call)[:80]}")
    return named, constants, escapes


def test_no_string_the_installer_shows_escapes_the_catalogue():
    named, _, escapes = _keys_named_in_code()
    assert not escapes, "text shown without the catalogue:\n" + "\n".join(escapes)
    unknown = sorted(k for k in named if re.fullmatch(r"[a-z][a-z0-9_]*", k) and not messages.exists(k)
                     and k not in {"en", "zh"})
    assert not unknown, f"named in the code, missing from the catalogue: {unknown}"


def test_every_catalogue_message_is_used():
    _, constants, _ = _keys_named_in_code()
    unused = sorted(k for k in EN if k not in constants and not k.startswith(_BUILT))
    assert not unused, f"catalogue messages no code uses: {unused}"


# -- the screen -------------------------------------------------------------------------------------
def _english_prose(text: str) -> list[str]:
    plain = _CODE.sub(" ", _QUOTED.sub(" ", text))
    return _PROSE.findall(plain)


def _run_zh(argv: list[str], capsys: pytest.CaptureFixture[str]) -> str:
    try:
        cli.main(["--lang", "zh", *argv])
    except SystemExit:
        pass
    finally:
        messages.set_language("en")
    out = capsys.readouterr()
    return out.out + out.err


@pytest.mark.parametrize("argv", [
    ["--help"], *[[name, "--help"] for name, _, _ in cli.COMMANDS],
    ["pair"], ["report"], ["nonsense"], ["walk-test", "--timeout", "soon"],
    ["walk-test", "--hub-config", "/nonexist.toml"], ["enrol", "--code", "x"],
    ["enrol", "--hub-config", "/nonexist.toml", "--code-file", "/nonexist.code"],
    ["report", "/nonexist.json"], ["lab-press", "--dir", "/nonexist", "open"], ["--tz", "Mars/Olympus", "report", "x"],
    ["pair", "--role", "kitchen", "--port", "socket://127.0.0.1:1"], ["pair", "--role", "pendant", "--pin", "x"],
    ["unpair"],
])
def test_the_chinese_screen_shows_no_english_sentence(argv, capsys):
    text = _run_zh(argv, capsys)
    assert _HAN.search(text), text
    assert not _english_prose(text), f"English on the Chinese screen: {_english_prose(text)}\n{text}"


def test_a_bad_hub_config_field_is_named_in_chinese(tmp_path, capsys):
    config = tmp_path / "hub.toml"  # a good config, then a table the hub refuses
    config.write_text(hub_toml.text(hub_id="hub-0001", home_id="home-0001", platform_url="https://platform.example.org")
                      + "\n[relay]\nheartbeat_s = 5\n")
    text = _run_zh(["walk-test", "--hub-config", str(config)], capsys)
    assert f"网关配置文件 {config} 里的 relay.heartbeat_s 一项有错" in text
    assert not _english_prose(text)


def test_the_prose_detector_finds_what_escaped():
    """The net above can catch something: the half-English error of old is caught."""
    assert _english_prose("网关配置有问题：/nonexist.toml: no such config file") == ["no such config file"]
    assert not _english_prose("下一步：safebox-install pair --port socket://127.0.0.1:1 --role pendant --room 卧室")
    assert not _english_prose("设备的原话：「OSError: no space left on device」")

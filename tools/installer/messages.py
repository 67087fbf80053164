"""Every message an installer sees, in Chinese (zh-CN) or English, from the one catalogue.

The words live in locale/ (catalogue.py says why gettext); this module picks the
language and fills in the values. The language is `--lang`, else the locale (LC_ALL,
LC_MESSAGES, LANG, LANGUAGE: anything starting with "zh" is Chinese), else English.
Code never builds an installer-facing sentence itself: it names a message and gives
the values. Values that are words are put into the message's language as well:
`device` (a label), `event` (and the `action` that makes it), `signal`, `role`, and any
whole number whose plural form the catalogue has as "n_<name>" ("1 device", "2 devices").
"""

from __future__ import annotations

import os
import string
from collections.abc import Mapping
from typing import Any

from safebox.tools.installer.catalogue import LOCALES, translations

LANGUAGES = tuple(LOCALES)


def exists(key: str) -> bool:
    """Whether the catalogue has a message of this name (checked in English, the source)."""
    return translations("en").gettext(key) != key or translations("en").ngettext(key, key, 1) != key


def text(key: str, lang: str) -> str:
    """The message's template in `lang`; KeyError if the catalogue has no such message."""
    found = translations(lang).gettext(key)
    if found == key:
        raise KeyError(f"no message {key!r} in the {lang} catalogue")
    return found


def plural(key: str, n: int, lang: str | None = None) -> str:
    """The plural entry `key` for `n` ("1 device", "2 devices"; "2 个设备")."""
    lang = lang or _current
    found = translations(lang).ngettext(key, key, n)
    if found == key:
        raise KeyError(f"no plural message {key!r} in the {lang} catalogue")
    return found.format(n=n)


class InstallerError(Exception):
    """A refusal or a failure the installer can act on: a message name and its values.

    `str()` gives the English text; the CLI shows it in the chosen language.
    """

    def __init__(self, key: str, **params: Any) -> None:
        if not exists(key):
            raise KeyError(f"no message {key!r}")
        super().__init__(key)
        self.key = key
        self.params = params

    def text(self, lang: str | None = None) -> str:
        return t(self.key, lang, **self.params)

    def __str__(self) -> str:
        return self.text("en")


_current = "en"


def detect_language(env: Mapping[str, str] | None = None) -> str:
    """The locale's language: "zh" for any zh_* locale, else "en"."""
    env = os.environ if env is None else env
    for name in ("LC_ALL", "LC_MESSAGES", "LANG", "LANGUAGE"):
        value = env.get(name, "")
        if value:
            return "zh" if value.lower().startswith("zh") else "en"
    return "en"


def normalise(lang: str) -> str:
    """"zh", "zh-CN", "zh_CN.UTF-8" -> "zh"; anything else -> "en"."""
    return "zh" if lang.lower().startswith("zh") else "en"


def set_language(lang: str | None) -> str:
    """Use `lang` ("zh", "en", "zh-CN", "zh_CN.UTF-8"...), or the locale's when None."""
    global _current
    _current = detect_language() if lang is None else normalise(lang)
    return _current


def language() -> str:
    return _current


def _word(prefix: str, value: Any, lang: str | None) -> str:
    try:
        return text(f"{prefix}_{value}", lang or _current)
    except KeyError:
        return str(value)


def role_name(role: str, lang: str | None = None) -> str:
    return _word("role", role, lang)


def event_name(event: str, lang: str | None = None) -> str:
    return _word("event", event, lang)


def action_name(event: str, lang: str | None = None) -> str:
    return _word("action", event, lang)


def signal_name(verdict: str | None, lang: str | None = None) -> str:
    return _word("signal", verdict or "none", lang)


def status_name(status: str, lang: str | None = None) -> str:
    return _word("status", status, lang)


def device_label(device: Any, lang: str | None = None) -> str:
    """"pendant 24:0A:C4:00:00:01 (bedroom)" from a hub Device or a report's device dict."""
    lang = lang or _current
    get = device.get if isinstance(device, dict) else lambda name: getattr(device, name)
    room = get("room") or text("device_no_room", lang)
    return text("device_label", lang).format(role=role_name(get("role"), lang), address=get("address"), room=room)


def t(key: str, lang: str | None = None, **params: Any) -> str:
    """The message `key` in `lang` (default: the current language), with its values filled in."""
    lang = lang or _current
    values = dict(params)
    if "device" in values and not isinstance(values["device"], str):
        values["device"] = device_label(values["device"], lang)
    if "event" in values:
        values.setdefault("action", action_name(values["event"], lang))
        values["event"] = event_name(values["event"], lang)
    if "signal" in values:
        values["signal"] = signal_name(values["signal"], lang)
    if "role" in values:
        values["role"] = role_name(values["role"], lang)
    for name, value in values.items():
        if isinstance(value, int) and not isinstance(value, bool) and exists(f"n_{name}"):
            values[name] = plural(f"n_{name}", value, lang)
    return text(key, lang).format(**values)


def placeholders(template: str) -> set[str]:
    return {name for _, name, _, _ in string.Formatter().parse(template) if name}

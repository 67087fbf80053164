"""The hub's config for simulated homes and tests, built in one place from named settings.

The simulated home, the scenario world, the virtual Pi and the tests each need a hub.toml (or
its decoded document); they say what differs (ids, where the platform is, the tables they set)
and this module writes the rest. Every document it gives has been judged by the hub's own
config code (hub/config.py `parse`), so a setting the hub would refuse stops the tool that
asked for it, not the hub it starts. Tests of the config code itself write their broken
files by hand.

    document(...)  the decoded hub.toml (a dict), judged
    parsed(...)    the HubConfig the hub makes of it
    text(...)      the TOML text, judged as the hub reads it (text -> tomllib -> parse)
    write(path, ...)  that text in a file; relative paths are the file's folder's

The paths in a document are of the machine the hub runs on: with `base_dir=None` (a virtual
Pi's config written on the host) `platform.ca_file` is not looked for.
"""

from __future__ import annotations

import json
import tomllib
from pathlib import Path
from typing import Any

from safebox.hub import config as hub_config

DOOR_MOVES = ("front_door", "toilet_door")  # [privacy] send_door_moves: every door move goes up


def document(*, hub_id: str, home_id: str, platform_url: str, state_dir: str | Path = "state",
             ca_file: str | Path | None = None, timeout_s: float | None = None, door_moves: bool = False,
             relay: dict[str, Any] | None = None, ble: dict[str, Any] | None = None,
             rules: dict[str, Any] | None = None, privacy: dict[str, Any] | None = None,
             cellular: dict[str, Any] | None = None, base_dir: Path | None = None) -> dict[str, Any]:
    """The hub.toml document from named settings (tables as dicts of hub.toml's keys);
    `door_moves` sends every door move to the platform (hub/privacy.py keeps them home by default).
    ConfigError, naming the field, if the hub would refuse it."""
    platform: dict[str, Any] = {"url": platform_url}
    if ca_file is not None:
        platform["ca_file"] = str(ca_file)
    if timeout_s is not None:
        platform["timeout_s"] = timeout_s
    if door_moves:
        privacy = {**(privacy or {}), "send_door_moves": list(DOOR_MOVES)}
    doc: dict[str, Any] = {"hub_id": hub_id, "home_id": home_id, "state_dir": str(state_dir), "platform": platform}
    for name, table in (("ble", ble), ("relay", relay), ("rules", rules), ("privacy", privacy),
                        ("cellular", cellular)):
        if table is not None:
            doc[name] = table
    judge(doc, base_dir)
    return doc


def judge(doc: dict[str, Any], base_dir: Path | None) -> hub_config.HubConfig:
    """What the hub makes of `doc` (ConfigError if nothing); with no `base_dir` the paths are
    another machine's, and the CA file is not looked for."""
    if base_dir is None:
        doc = {**doc, "platform": {k: v for k, v in doc["platform"].items() if k != "ca_file"}}
        base_dir = Path("/nonexistent")
    return hub_config.parse(doc, base_dir=base_dir)


def parsed(base_dir: Path, **settings: Any) -> hub_config.HubConfig:
    """The hub's HubConfig from named settings (see `document`); relative paths are `base_dir`'s."""
    return hub_config.parse(document(base_dir=base_dir, **settings), base_dir=base_dir)


def text(*, base_dir: Path | None = None, **settings: Any) -> str:
    """The hub.toml text from named settings (see `document`), read back as the hub reads it."""
    rendered = render(document(base_dir=base_dir, **settings))
    judge(tomllib.loads(rendered), base_dir)
    return rendered


def write(path: Path, **settings: Any) -> Path:
    """hub.toml at `path` from named settings (see `document`); its folder is made."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text(base_dir=path.parent, **settings), encoding="utf-8")
    return path


def render(doc: dict[str, Any]) -> str:
    """A document as TOML: its keys, then each table as [name] (nested tables as [a.b])."""
    return "\n".join(_table(doc, ())).lstrip("\n") + "\n"


def _table(table: dict[str, Any], name: tuple[str, ...]) -> list[str]:
    lines = [f"\n[{'.'.join(name)}]"] if name else []
    lines += [f"{key} = {_value(value)}" for key, value in table.items() if not isinstance(value, dict)]
    for key, value in table.items():
        if isinstance(value, dict):
            lines += _table(value, (*name, key))
    return lines


def _value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_value(v) for v in value) + "]"
    if isinstance(value, (str, Path)):
        return json.dumps(str(value), ensure_ascii=False)  # a JSON string is a TOML basic string
    raise TypeError(f"no TOML for {value!r}")

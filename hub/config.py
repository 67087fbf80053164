"""The hub's configuration: one TOML file (usually /etc/safebox/hub.toml), read once at start.

A hub runs unattended, so a mistake in this file must stop it at once with a message that
names the field, rather than surface hours later as a lost event. Unknown keys are refused
for the same reason (a misspelt key would otherwise be silently ignored), and there is no
key that turns TLS verification off: the only knob is `platform.ca_file`, which names the
CA to trust instead of the system store. See hub/hub.example.toml for every field.
"""

from __future__ import annotations

import re
import ssl
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal
from urllib.parse import SplitResult, urlsplit

from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from safebox.hub import cellular as hub_cellular
from safebox.hub import privacy as hub_privacy
from safebox.hub.rules.settings import (FrontDoorSettings, QuietWindow, RulesSettings, SupervisionSettings,
                                        ToiletSettings)
from safebox.protocol import events

_TLS_OFF_HINT = " (TLS verification cannot be switched off; use platform.ca_file to trust a private CA)"


class ConfigError(ValueError):
    """The configuration cannot be used; the message starts with the field it is about."""


@dataclass(frozen=True)
class PlatformConfig:
    """Where events go. `url` is the platform's base URL; the uplink adds /v1/events."""

    url: str
    ca_file: Path | None = None
    timeout_s: float = 10.0

    def ssl_context(self) -> ssl.SSLContext:
        """A verifying TLS context: the system CAs, or only `ca_file` when it is set."""
        return ssl.create_default_context(cafile=str(self.ca_file) if self.ca_file else None)


@dataclass(frozen=True)
class BleConfig:
    """The radio: BlueZ through bleak (a simulator gives its own bleak backend from outside)."""

    adapter: str | None = None  # BlueZ adapter, e.g. "hci0"; None: BlueZ's default
    connect_attempts: int = 3  # per ack write (bleak-retry-connector), each with its backoff


@dataclass(frozen=True)
class RelayConfig:
    """The uplink: backoff for transport trouble, batching, the backlog bound, heartbeats, acks."""

    backoff_initial_s: float = 1.0
    backoff_max_s: float = 300.0
    batch_max: int = 100
    max_backlog: int = 10_000
    heartbeat_s: float = 300.0  # 0: no hub heartbeats
    operator_poll_s: float = 5.0
    ack_ttl_s: float = 900.0


@dataclass(frozen=True)
class HubConfig:
    hub_id: str
    home_id: str
    state_dir: Path
    platform: PlatformConfig
    ble: BleConfig = BleConfig()
    relay: RelayConfig = RelayConfig()
    rules: RulesSettings = RulesSettings()
    cellular: hub_cellular.CellularConfig | None = None  # [cellular]: SMS when the platform is unreachable
    privacy: hub_privacy.Privacy = hub_privacy.Privacy()  # [privacy]: what goes up beyond alarms (docs/PRIVACY.md)

    @property
    def db_path(self) -> Path:
        return self.state_dir / "hub.db"

    @property
    def key_path(self) -> Path:
        return self.state_dir / "hub_key.pem"

    @property
    def devices_path(self) -> Path:
        return self.state_dir / "devices.json"


def load(path: str | Path) -> HubConfig:
    """Read and check a TOML file; relative paths in it are taken from the file's folder."""
    path = Path(path)
    try:
        with path.open("rb") as f:
            data = tomllib.load(f)
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such config file") from None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read: {exc.strerror}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from None
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path}: not UTF-8 text: {exc.reason} at byte {exc.start}") from None
    return parse(data, base_dir=path.parent)


def parse(data: dict[str, Any], *, base_dir: Path) -> HubConfig:
    """Check an already-decoded TOML document (the part of `load` tests drive directly)."""
    top = _Table(data, "")
    hub_id = top.string("hub_id")
    home_id = top.string("home_id")
    _check_ids(hub_id, home_id)
    state_dir = _path(top.string("state_dir"), base_dir, "state_dir")

    p = top.table("platform", required=True)
    url = p.string("url")
    try:
        url = check_https_url(url)  # in its normal form: what is sent is what is signed
    except ValueError as exc:
        raise ConfigError(f"platform.url: {exc}") from None
    ca_text = p.string("ca_file", required=False)
    ca_file = _path(ca_text, base_dir, "platform.ca_file") if ca_text is not None else None
    try:
        ca_missing = ca_file is not None and not ca_file.is_file()
    except OSError as exc:  # a name too long for the file system, say
        raise ConfigError(f"platform.ca_file: unusable path: {exc.strerror}") from None
    if ca_missing:
        raise ConfigError(f"platform.ca_file: no such file {ca_file}")
    platform = PlatformConfig(url=url, ca_file=ca_file,
                              timeout_s=p.number("timeout_s", 10.0, low=0.1, high=300.0))
    p.done()

    b = top.table("ble")
    adapter = b.string("adapter", required=False)
    if adapter is not None and not re.fullmatch(r"hci[0-9]{1,2}", adapter):
        raise ConfigError(f"ble.adapter: a BlueZ adapter name like \"hci0\", not {adapter!r}")
    attempts = b.integer("connect_attempts", 3, low=1, high=10)
    b.done()

    r = top.table("relay")
    initial = r.number("backoff_initial_s", 1.0, low=0.01, high=3600.0)
    maximum = r.number("backoff_max_s", 300.0, low=0.01, high=86400.0)
    if maximum < initial:
        raise ConfigError(f"relay.backoff_max_s: must be at least backoff_initial_s ({initial})")
    batch_max = r.integer("batch_max", 100, low=1, high=100)
    max_backlog = r.integer("max_backlog", 10_000, low=100, high=1_000_000)
    heartbeat_s = r.number("heartbeat_s", 300.0, low=0.0, high=86400.0)
    if 0 < heartbeat_s < 60:
        raise ConfigError(f"relay.heartbeat_s: 0 (no hub heartbeats) or 60 .. 86400, not {heartbeat_s:g}")
    poll_s = r.number("operator_poll_s", 5.0, low=1.0, high=300.0)
    ack_ttl_s = r.number("ack_ttl_s", 900.0, low=60.0, high=3600.0)
    r.done()
    rules = _rules(top.table("rules"))
    try:
        cellular = hub_cellular.parse(top._get("cellular"), hub_id=hub_id, home_id=home_id)
        privacy = hub_privacy.parse(top._get("privacy"))
    except ValueError as exc:
        raise ConfigError(str(exc)) from None
    top.done()

    return HubConfig(hub_id=hub_id, home_id=home_id, state_dir=state_dir, platform=platform,
                     ble=BleConfig(adapter=adapter, connect_attempts=attempts),
                     relay=RelayConfig(backoff_initial_s=initial, backoff_max_s=maximum, batch_max=batch_max,
                                       max_backlog=max_backlog, heartbeat_s=heartbeat_s,
                                       operator_poll_s=poll_s, ack_ttl_s=ack_ttl_s), rules=rules, cellular=cellular,
                     privacy=privacy)


def _rules(t: _Table) -> RulesSettings:
    """The [rules] table and its sub-tables (see hub.example.toml)."""
    tz_name = t.string("timezone", required=False)
    try:
        tz = ZoneInfo(tz_name) if tz_name is not None else None
    except (ZoneInfoNotFoundError, ValueError):
        raise ConfigError(f"rules.timezone: not a known time zone like \"Asia/Shanghai\": {tz_name!r}") from None
    grace = t.number("startup_grace_s", 120.0, low=0.0, high=3600.0)
    toilet = t.table("toilet")
    toilet_s = ToiletSettings(overdue_after_s=toilet.number("overdue_after_s", 600.0, low=10.0, high=86400.0))
    toilet.done()
    door = t.table("front_door")
    door_s = FrontDoorSettings(inactive_after_s=door.number("inactive_after_s", 86400.0, low=60.0, high=30 * 86400.0),
                               quiet_windows=_quiet_windows(door, "quiet_windows"))
    door.done()
    sup = t.table("supervision")
    low = sup.integer("battery_low_pct", 20, low=1, high=99)
    ok = sup.integer("battery_ok_pct", 30, low=1, high=100)
    if ok <= low:
        raise ConfigError(f"rules.supervision.battery_ok_pct: must be above battery_low_pct ({low}), not {ok}")
    sup_s = SupervisionSettings(heartbeat_s=sup.number("heartbeat_s", 3600.0, low=1.0, high=7 * 86400.0),
                                missed_heartbeats=sup.integer("missed_heartbeats", 3, low=1, high=100),
                                grace_s=sup.number("grace_s", 60.0, low=0.0, high=86400.0),
                                battery_low_pct=low, battery_ok_pct=ok)
    sup.done()
    t.done()
    return RulesSettings(toilet=toilet_s, front_door=door_s, supervision=sup_s, timezone=tz, startup_grace_s=grace)


def _quiet_windows(t: _Table, key: str) -> tuple[QuietWindow, ...]:
    value = t._get(key)
    if value is None:
        return ()
    field = f"{t._prefix}{key}"
    if not isinstance(value, list):
        raise ConfigError(f'{field}: must be a list like ["22:00-07:00"]')
    windows = []
    for i, item in enumerate(value):
        try:
            start, end = (_minutes(part) for part in item.split("-"))
        except (AttributeError, ValueError):
            raise ConfigError(f'{field}[{i}]: must be "HH:MM-HH:MM" (local time), not {item!r}') from None
        if start == end:
            raise ConfigError(f"{field}[{i}]: start and end are the same time: {item!r}")
        windows.append(QuietWindow(start, end))
    return tuple(windows)


def _minutes(text: str) -> int:
    hours, minutes = text.strip().split(":")
    if not (hours.isdigit() and minutes.isdigit() and len(minutes) == 2):
        raise ValueError(text)
    h, m = int(hours), int(minutes)
    if not (0 <= h <= 24 and 0 <= m < 60) or (h == 24 and m):
        raise ValueError(text)
    return (h * 60 + m) % 1440


def check_https_url(url: str) -> str:
    """`url` in its normal form if it is an https URL with a host and nothing secret in it;
    ValueError says why not.

    Shared by the config and the uplink so that neither can be handed a plain-http platform.
    The normal form (RFC 3986 6.2: lower-case host, no default or zero-padded port, no
    `.`/`..` segments, unreserved characters not percent-encoded, upper-case hex in the rest)
    is what the uplink sends (hub/uplink/https.py) and so what the hub must sign (RFC 9421
    2.2.3, 2.2.6): the URL as written in the config could differ, and the platform would
    refuse every signature.
    """
    parts = urlsplit(url)
    if parts.scheme != "https":
        raise ValueError(f"must be https://host[:port][/path], not {url!r}")
    if not parts.hostname:
        raise ValueError(f"has no host: {url!r}")
    if parts.username is not None or parts.password is not None:
        raise ValueError("must not carry a user name or password")
    if parts.query or parts.fragment:
        raise ValueError("must not have a query or fragment")
    try:
        parts.port
    except ValueError:
        raise ValueError(f"bad port in {url!r}") from None
    return _normal_form(parts, url)


_UNRESERVED = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~")
_PATH_CHARS = _UNRESERVED | frozenset("!$&'()*+,;=:@/")
_PERCENT = re.compile(r"%([0-9A-Fa-f]{2})")


def _normal_form(parts: SplitResult, url: str) -> str:
    host = parts.hostname or ""
    try:
        host = host if host.isascii() else host.encode("idna").decode("ascii")
    except UnicodeError:
        raise ValueError(f"not a usable host name in {url!r}") from None
    if ":" in host:
        host = f"[{host}]"  # an IPv6 literal
    port = parts.port
    authority = host if port in (None, 443) else f"{host}:{port}"
    path = _PERCENT.sub(lambda m: chr(int(m[1], 16)) if chr(int(m[1], 16)) in _UNRESERVED else f"%{m[1].upper()}",
                        parts.path)
    if any(c not in _PATH_CHARS for c in _PERCENT.sub("", path)):
        raise ValueError(f"the path of {url!r} has characters a URL must percent-encode")
    return f"https://{authority}{_without_dot_segments(path)}"


def _without_dot_segments(path: str) -> str:
    """RFC 3986 5.2.4, for an absolute path."""
    out: list[str] = []
    segments = path.split("/")[1:]
    for i, segment in enumerate(segments):
        last = i == len(segments) - 1
        if segment == ".":
            if last:
                out.append("")
        elif segment == "..":
            if out:
                out.pop()
            if last:
                out.append("")
        else:
            out.append(segment)
    return "".join("/" + segment for segment in out)


def _check_ids(hub_id: str, home_id: str) -> None:
    # The protocol owns the id rules, so let it judge: a device event names hub_id and
    # home_id in its errors; a hub event then checks hub_id can also prefix hub event ids.
    try:
        events.make(event_id="000000000000-0", type=events.EMERGENCY, hub_id=hub_id, home_id=home_id,
                    occurred_at=0, device={"id": "000000000000", "role": "pendant"}, counter=0)
    except events.EventError as exc:
        raise ConfigError(str(exc)) from None
    try:
        events.make(event_id=events.hub_event_id(hub_id, 0), type=events.HUB_HEARTBEAT,
                    hub_id=hub_id, home_id=home_id, occurred_at=0)
    except events.EventError as exc:
        raise ConfigError(f"hub_id: cannot prefix hub event ids ({exc})") from None


def _path(text: str, base_dir: Path, field: str) -> Path:
    if "\0" in text:
        raise ConfigError(f"{field}: a path cannot hold a NUL character")
    try:
        p = Path(text).expanduser()
        return p if p.is_absolute() else (base_dir / p).resolve()
    except (RuntimeError, OSError) as exc:  # '~nosuchuser/...', a name too long
        raise ConfigError(f"{field}: unusable path {text[:80]!r}: {exc}") from None


class _Table:
    """One TOML table being read: typed getters that name the field, and `done()` to refuse leftovers."""

    def __init__(self, data: Any, prefix: str) -> None:
        if not isinstance(data, dict):
            raise ConfigError(f"{prefix.rstrip('.')}: must be a table")
        self._data = dict(data)
        self._prefix = prefix
        self._seen: set[str] = set()

    def _get(self, key: str) -> Any:
        self._seen.add(key)
        return self._data.get(key)

    def string(self, key: str, required: bool = True) -> Any:
        value = self._get(key)
        if value is None:
            if required:
                raise ConfigError(f"{self._prefix}{key}: required")
            return None
        if not isinstance(value, str) or not value.strip():
            raise ConfigError(f"{self._prefix}{key}: must be a non-empty string")
        return value

    def number(self, key: str, default: float, *, low: float, high: float) -> float:
        value = self._get(key)
        if value is None:
            return default
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{self._prefix}{key}: must be a number of seconds")
        if not low <= value <= high:
            raise ConfigError(f"{self._prefix}{key}: must be between {low} and {high}, not {value}")
        return float(value)

    def integer(self, key: str, default: int, *, low: int, high: int) -> int:
        value = self._get(key)
        if value is None:
            return default
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{self._prefix}{key}: must be a whole number")
        if not low <= value <= high:
            raise ConfigError(f"{self._prefix}{key}: must be between {low} and {high}, not {value}")
        return value

    def table(self, key: str, required: bool = False) -> _Table:
        value = self._get(key)
        if value is None:
            if required:
                raise ConfigError(f"{self._prefix}{key}: required table [{self._prefix}{key}] is missing")
            value = {}
        return _Table(value, f"{self._prefix}{key}.")

    def done(self) -> None:
        for key in sorted(set(self._data) - self._seen):
            hint = _TLS_OFF_HINT if any(w in key.lower() for w in ("verify", "insecure", "tls", "ssl")) else ""
            raise ConfigError(f"{self._prefix}{key}: unknown key{hint}")

"""Scenario files: TOML in, a checked `Scenario` out; every mistake names its place.

The format is documented in tools/sim/SCENARIOS.md.
"""

from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from safebox.hub import config as hub_config
from safebox.protocol import events
from safebox.tools.sim import hub_toml
from safebox.tools.sim.scenario.cellular_home import ModemSettings

ROLES = ("pendant", "front_door", "toilet_door")
BUTTONS = ("emergency", "community_service", "life_service")
DEVICE_ACTIONS = ("open", "close", "bounce", "power_off", "power_on", "reboot")
DOOR_ACTIONS = ("open", "close", "bounce")
HUB_ACTIONS = ("kill", "restart", "stop", "start")
HUB_CLOCK = "clock"  # hub = "clock:+90s": the hub's clock is set that far off the true time
PLATFORM_ACTIONS = ("down", "up")
INTERNET_ACTIONS = ("down", "up")  # the home's broadband: the hub's way to the platform
MODEM_ACTIONS = ("unplug", "plug")
CHANNELS = ("https", "sms", "sms+https", "https+sms")
_DURATION = re.compile(r"(\d+(?:\.\d+)?)(ms|d|h|m|s)")
DEFAULT_START = "2026-03-02T08:00:00+08:00"


class ScenarioError(ValueError):
    """The scenario file cannot be used; the message names the field."""


def parse_duration(text: Any, where: str) -> float:
    """"0s", "9m59s", "25h", "1d2h", "1.5s", "250ms" -> seconds."""
    if isinstance(text, (int, float)) and not isinstance(text, bool):
        return float(text)
    if not isinstance(text, str) or not text.strip():
        raise ScenarioError(f'{where}: a duration like "9m59s", not {text!r}')
    pos, total, compact = 0, 0.0, text.replace(" ", "")
    for m in _DURATION.finditer(compact):
        if m.start() != pos:
            break
        total += float(m.group(1)) * {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400}[m.group(2)]
        pos = m.end()
    if pos != len(compact) or pos == 0:
        raise ScenarioError(f'{where}: a duration like "9m59s", "25h" or "250ms", not {text!r}')
    return total


def format_duration(seconds: float) -> str:
    sign = "-" if seconds < 0 else ""
    seconds = abs(seconds)
    h, rest = divmod(seconds, 3600)
    m, s = divmod(rest, 60)
    parts = ([f"{int(h)}h"] if h else []) + ([f"{int(m)}m"] if m else [])
    if s or not parts:
        parts.append(f"{s:.3f}".rstrip("0").rstrip(".") + "s")
    return sign + "".join(parts)


@dataclass(frozen=True)
class HomeDevice:
    id: str
    role: str
    room: str = ""
    battery: int = 100
    powered: bool = True


@dataclass(frozen=True)
class Step:
    at: float
    target: str  # "device", "hub", "platform", "internet" or "modem"
    action: str  # e.g. "press", "open", "kill", "down"
    device: str | None = None
    arg: str | None = None  # the button, the battery percentage

    def describe(self) -> str:
        what = f"{self.action}:{self.arg}" if self.arg is not None else self.action
        who = self.device if self.target == "device" else self.target
        return f"{format_duration(self.at)} {who} {what}"


@dataclass(frozen=True)
class Expectation:
    type: str
    device: str | None = None
    earliest: float | None = None
    latest: float | None = None
    count: int | None = None  # None: at least one
    present: bool = True  # False: must NOT occur (in the window, if one is given)
    by: str = "received"  # which time the window applies to: "received" or "occurred"
    channel: str | None = None  # how it reached the platform (SPEC 5.2); None: any

    def describe(self) -> str:
        who = f" from {self.device}" if self.device else ""
        window = ""
        if self.earliest is not None or self.latest is not None:
            lo = format_duration(self.earliest) if self.earliest is not None else "start"
            hi = format_duration(self.latest) if self.latest is not None else "end"
            window = f" {self.by} in [{lo}, {hi}]"
        if not self.present:
            return f"no {self.type}{who}{window}"
        many = f"exactly {self.count} x " if self.count is not None else ""
        by = f" by {self.channel}" if self.channel else ""
        return f"{many}{self.type}{who}{by}{window}"


@dataclass(frozen=True)
class Scenario:
    name: str
    description: str
    path: Path | None
    duration: float
    start: float  # the virtual wall clock (unix s) at 0s
    heartbeat_s: int
    seed: int | None
    devices: tuple[HomeDevice, ...]
    steps: tuple[Step, ...]
    expectations: tuple[Expectation, ...]
    hub: dict[str, Any] = field(default_factory=dict)
    modem: ModemSettings | None = None  # [home.modem]: the hub has a cellular modem

    @property
    def has_router(self) -> bool:
        return any(s.target == "internet" for s in self.steps)


def load(path: str | Path) -> Scenario:
    path = Path(path)
    try:
        with path.open("rb") as f:
            doc = tomllib.load(f)
    except FileNotFoundError:
        raise ScenarioError(f"{path}: no such scenario file") from None
    except tomllib.TOMLDecodeError as exc:
        raise ScenarioError(f"{path}: not valid TOML: {exc}") from None
    try:
        return parse(doc, path=path)
    except ScenarioError as exc:
        raise ScenarioError(f"{path}: {exc}") from None


def _only(table: dict[str, Any], allowed: set[str], where: str) -> None:
    unknown = sorted(set(table) - allowed)
    if unknown:
        raise ScenarioError(f"{where}{unknown[0]}: unknown key")


def parse(doc: dict[str, Any], *, path: Path | None = None) -> Scenario:
    _only(doc, {"name", "description", "duration", "seed", "home", "hub", "steps", "expect", "expect_not"}, "")
    seed = doc.get("seed")
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int)):
        raise ScenarioError(f"seed: a whole number, not {seed!r}")
    name = doc.get("name") or (path.stem if path else "scenario")
    home = doc.get("home", {})
    if not isinstance(home, dict):
        raise ScenarioError("home: must be a table")
    _only(home, {"devices", "heartbeat_s", "start", "modem"}, "home.")
    modem = _modem(home["modem"]) if "modem" in home else None
    heartbeat_s = home.get("heartbeat_s", 3600)
    if isinstance(heartbeat_s, bool) or not isinstance(heartbeat_s, int) or heartbeat_s < 1:
        raise ScenarioError("home.heartbeat_s: a whole number of seconds, at least 1")
    try:
        start = datetime.fromisoformat(str(home.get("start", DEFAULT_START))).timestamp()
    except ValueError:
        raise ScenarioError(f"home.start: an RFC 3339 time with a zone, not {home.get('start')!r}") from None
    devices = []
    for i, d in enumerate(home.get("devices", [])):
        where = f"home.devices[{i}]."
        if not isinstance(d, dict):
            raise ScenarioError(f"home.devices[{i}]: must be a table")
        _only(d, {"id", "role", "room", "battery", "powered"}, where)
        if not isinstance(d.get("id"), str) or not re.fullmatch(r"[a-z][a-z0-9_-]{0,30}", d["id"]):
            raise ScenarioError(f"{where}id: a short name of lower-case letters, digits, '-' or '_'")
        if d.get("role") not in ROLES:
            raise ScenarioError(f"{where}role: one of {', '.join(ROLES)}, not {d.get('role')!r}")
        battery = d.get("battery", 100)
        if isinstance(battery, bool) or not isinstance(battery, int) or not 0 <= battery <= 100:
            raise ScenarioError(f"{where}battery: a percentage 0..100")
        devices.append(HomeDevice(d["id"], d["role"], str(d.get("room", "")), battery, bool(d.get("powered", True))))
    ids = [d.id for d in devices]
    if len(set(ids)) != len(ids):
        raise ScenarioError("home.devices: two devices have the same id")
    by_id = {d.id: d for d in devices}
    steps = tuple(sorted((_step(s, i, by_id) for i, s in enumerate(doc.get("steps", []))), key=lambda s: s.at))
    expectations = [_expect(e, i, "expect", by_id, True) for i, e in enumerate(doc.get("expect", []))]
    expectations += [_expect(e, i, "expect_not", by_id, False) for i, e in enumerate(doc.get("expect_not", []))]
    last = max([s.at for s in steps] + [e.latest or e.earliest or 0 for e in expectations] + [0])
    duration = parse_duration(doc["duration"], "duration") if "duration" in doc else last + 60
    late = next((i for i, s in enumerate(doc.get("steps", [])) if isinstance(s, dict)
                 and parse_duration(s.get("at"), f"steps[{i}].at") > duration), None)
    if late is not None:
        raise ScenarioError(f"steps[{late}].at: after the end of the scenario (duration "
                            f"{format_duration(duration)}); it would never happen")
    _check_doors(steps, by_id)
    needs_modem = next((s for s in steps if s.target == "modem"), None)
    if needs_modem is not None and modem is None:
        raise ScenarioError(f"steps: {needs_modem.describe()} needs a modem in the home ([home.modem])")
    hub = doc.get("hub", {})
    if not isinstance(hub, dict):
        raise ScenarioError("hub: must be a table (the hub.toml tables for the hub under test)")
    _only(hub, {"relay", "rules", "privacy"}, "hub.")
    _check_hub_settings(hub, heartbeat_s)
    return Scenario(name=str(name), description=str(doc.get("description", "")), path=path, duration=duration,
                    start=start, heartbeat_s=heartbeat_s, seed=seed, devices=tuple(devices), steps=steps,
                    expectations=tuple(expectations), hub=hub, modem=modem)


def hub_settings(hub: dict[str, Any], heartbeat_s: int) -> dict[str, Any]:
    """The hub.toml tables of the hub under test: the scenario defaults (quick retries; hourly
    hub heartbeats, 300 s in production, keep a day's report readable) under the scenario's own."""
    doc: dict[str, Any] = {"relay": {"backoff_initial_s": 1, "backoff_max_s": 30, "heartbeat_s": 3600}}
    for table, values in hub.items():
        doc[table] = {**doc.get(table, {}), **values} if isinstance(values, dict) else values
    supervision = dict(doc.setdefault("rules", {}).get("supervision", {}))
    supervision.setdefault("heartbeat_s", heartbeat_s)
    doc["rules"] = {**doc["rules"], "supervision": supervision}
    return doc


def _check_hub_settings(hub: dict[str, Any], heartbeat_s: int) -> None:
    """The [hub] tables judged by the hub's own config code now, not as a traceback mid-run."""
    try:
        hub_toml.document(hub_id="hub-check", home_id="home-check", platform_url="https://127.0.0.1:1",
                          **hub_settings(hub, heartbeat_s))
    except hub_config.ConfigError as exc:
        raise ScenarioError(f"hub.{exc}") from None


def _check_doors(steps: tuple[Step, ...], devices: dict[str, HomeDevice]) -> None:
    """Doors start closed; a step that moves a door to where it already is would do nothing."""
    closed = {name: True for name, d in devices.items() if d.role != "pendant"}
    for step in steps:
        if step.target != "device" or step.action not in ("open", "close"):
            continue
        assert step.device is not None
        if closed[step.device] == (step.action == "close"):
            where = "closed (doors start closed)" if step.action == "close" else "open"
            raise ScenarioError(f"steps: {step.describe()}: the door of {step.device} is already {where}; "
                                f"the step would do nothing")
        closed[step.device] = step.action == "close"


def _step(s: Any, i: int, devices: dict[str, HomeDevice]) -> Step:
    where = f"steps[{i}]."
    if not isinstance(s, dict):
        raise ScenarioError(f"steps[{i}]: must be a table")
    _only(s, {"at", "device", "action", "hub", "platform", "internet", "modem"}, where)
    at = parse_duration(s.get("at"), f"{where}at")
    if isinstance(s.get("hub"), str) and s["hub"].startswith(HUB_CLOCK + ":"):
        offset = s["hub"].partition(":")[2]
        sign = -1.0 if offset.startswith("-") else 1.0
        seconds = parse_duration(offset.lstrip("+-"), f"{where}hub")
        if "device" in s or "action" in s or "platform" in s:
            raise ScenarioError(f"{where}hub: clock:<offset> and nothing else in the step")
        return Step(at, "hub", HUB_CLOCK, arg=format_duration(sign * seconds))
    targets = [t for t in ("hub", "platform", "internet", "modem") if t in s]
    if targets:
        target = targets[0]
        action = s[target]
        allowed = {"hub": (*HUB_ACTIONS, "clock:<+/-offset>"), "platform": PLATFORM_ACTIONS,
                   "internet": INTERNET_ACTIONS, "modem": MODEM_ACTIONS}[target]
        if action not in allowed or "device" in s or "action" in s or len(targets) > 1:
            raise ScenarioError(f"{where}{target}: one of {', '.join(allowed)} (and nothing else in the step)")
        return Step(at, target, action)
    device = s.get("device")
    if device not in devices:
        raise ScenarioError(f"{where}device: not a device of the home: {device!r} (known: {', '.join(devices)})")
    action = s.get("action")
    if not isinstance(action, str):
        raise ScenarioError(f"{where}action: required, e.g. \"press:emergency\", \"open\", \"battery:15\"")
    verb, _, arg = action.partition(":")
    role = devices[device].role
    if verb in ("press", "long_press"):
        if role != "pendant" or arg not in BUTTONS:
            raise ScenarioError(f"{where}action: {verb}:<button> needs a pendant and one of {', '.join(BUTTONS)}")
        return Step(at, "device", verb, device, arg)
    if verb == "battery":
        if not arg.isdigit() or not 0 <= int(arg) <= 100:
            raise ScenarioError(f"{where}action: battery:<percent 0..100>, not {action!r}")
        return Step(at, "device", verb, device, arg)
    if verb in DEVICE_ACTIONS and not arg:
        if verb in DOOR_ACTIONS and role == "pendant":
            raise ScenarioError(f"{where}action: {verb} needs a door sensor, {device} is a pendant")
        return Step(at, "device", verb, device)
    raise ScenarioError(f"{where}action: unknown action {action!r}; one of press:<button>, long_press:<button>, "
                        f"battery:<percent>, {', '.join(DEVICE_ACTIONS)}")


def _expect(e: Any, i: int, table: str, devices: dict[str, HomeDevice], present: bool) -> Expectation:
    where = f"{table}[{i}]."
    if not isinstance(e, dict):
        raise ScenarioError(f"{table}[{i}]: must be a table")
    _only(e, {"type", "device", "earliest", "latest", "count", "by", "channel"}, where)
    channel = e.get("channel")
    if channel is not None and channel not in CHANNELS:
        raise ScenarioError(f"{where}channel: one of {', '.join(CHANNELS)}, not {channel!r}")
    if e.get("type") not in events.TYPES:
        raise ScenarioError(f"{where}type: an event type of the protocol, not {e.get('type')!r}")
    device = e.get("device")
    if device is not None and device not in devices:
        raise ScenarioError(f"{where}device: not a device of the home: {device!r}")
    count = e.get("count")
    if count is not None and (not present or isinstance(count, bool) or not isinstance(count, int) or count < 1):
        raise ScenarioError(f"{where}count: a whole number, at least 1 (and only in [[expect]])")
    by = e.get("by", "received")
    if by not in ("received", "occurred"):
        raise ScenarioError(f'{where}by: "received" (when the platform stored it) or "occurred"')
    earliest = parse_duration(e["earliest"], f"{where}earliest") if "earliest" in e else None
    latest = parse_duration(e["latest"], f"{where}latest") if "latest" in e else None
    if earliest is not None and latest is not None and latest < earliest:
        raise ScenarioError(f"{where}latest: before earliest")
    return Expectation(e["type"], device, earliest, latest, count, present, by, channel)


def _modem(m: Any) -> ModemSettings:
    """`[home.modem]`: the hub's cellular modem, its SMS path's bound and the network's behaviour."""
    if not isinstance(m, dict):
        raise ScenarioError("home.modem: must be a table")
    _only(m, {"after_s", "sms_delay_s", "loss", "contacts"}, "home.modem.")
    after = m.get("after_s", 60)
    if isinstance(after, bool) or not isinstance(after, (int, float)) or not 5 <= after <= 3600:
        raise ScenarioError("home.modem.after_s: 5 .. 3600 seconds (the hub's cellular.after_s)")
    delay = m.get("sms_delay_s", [3, 10])
    if (not isinstance(delay, list) or len(delay) != 2 or not all(isinstance(x, (int, float)) for x in delay)
            or not 0 <= delay[0] <= delay[1]):
        raise ScenarioError("home.modem.sms_delay_s: [shortest, longest] seconds an SMS takes")
    loss = m.get("loss", 0)
    if isinstance(loss, bool) or not isinstance(loss, (int, float)) or not 0 <= loss < 1:
        raise ScenarioError("home.modem.loss: the share of SMS the network loses, 0 .. <1")
    contacts = m.get("contacts", ["+8613900139000"])
    if not isinstance(contacts, list) or not all(isinstance(c, str) and re.fullmatch(r"\+?[0-9]{3,20}", c)
                                                 for c in contacts):
        raise ScenarioError("home.modem.contacts: a list of phone numbers")
    return ModemSettings(after_s=float(after), sms_delay_s=(float(delay[0]), float(delay[1])), loss=float(loss),
                         contacts=tuple(contacts))

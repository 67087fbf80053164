"""The lines the simulated home prints, read in one place: the firmware's console lines and the
hub's log lines, each kind a frozen record.

    lines.Event.read("event 7 emergency press")      -> Event(counter=7, what="emergency press")
    lines.device_line("acked 7 kind 1")                -> Acked(counter=7, kind=1)
    await fw.wait_for_line(lines.Acked.pattern(counter=7))   the regex for "acked 7 kind <k>"
    lines.Refused.read(hub_line)                       -> Refused(address=..., reason=...) or None

Each record names its line once (TEMPLATE, with a regex per field); `pattern(**fixed)` is the
regex for waiting on such a line (the fixed fields written in), `read(line)` the record or None.
Device lines are read from their start (the firmware prints them as its whole line); hub lines
anywhere in the line (the hub's log handler puts a level and a logger name before them).
The firmware writes these with print() (firmware/*.py), the hub with logging (hub/ingest.py,
hub/acks/policy.py, hub/uplink/relay.py); tests/test_sim_lines.py reads real ones.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, fields
from typing import Any, ClassVar, TypeVar

_L = TypeVar("_L", bound="_Line")
_INT = r"\d+"
_NAMED_GROUP = re.compile(r"\(\?P<\w+>")


class _Line:
    TEMPLATE: ClassVar[str]  # the line, {name} where a field stands
    FIELDS: ClassVar[dict[str, str]]  # field -> its regex
    ANCHOR: ClassVar[str] = "^"

    @classmethod
    def pattern(cls, **fixed: Any) -> str:
        """The regex of this kind of line, with the `fixed` fields written in (others as groups)."""
        unknown = fixed.keys() - cls.FIELDS.keys()
        if unknown:
            raise TypeError(f"{cls.__name__} has no field {', '.join(sorted(unknown))}")
        parts = {name: re.escape(str(fixed[name])) if name in fixed else f"(?P<{name}>{regex})"
                 for name, regex in cls.FIELDS.items()}
        return cls.ANCHOR + cls.TEMPLATE.format(**parts)

    @classmethod
    def read(cls: type[_L], line: str) -> _L | None:
        """The record of `line`, or None when it is not this kind of line."""
        m = _compiled(cls).search(line.strip())
        if m is None:
            return None
        return cls(**{f.name: int(m[f.name]) if f.type in ("int", int) else m[f.name]  # type: ignore[call-arg]
                      for f in fields(cls)})  # type: ignore[arg-type]


_COMPILED: dict[type, re.Pattern[str]] = {}


def _compiled(cls: type[_Line]) -> re.Pattern[str]:
    if cls not in _COMPILED:
        _COMPILED[cls] = re.compile(cls.pattern())
    return _COMPILED[cls]


def any_of(*patterns: str) -> str:
    """One regex matching any of `patterns` (e.g. light or deep sleep); their named groups left unnamed."""
    return "|".join("(?:" + _NAMED_GROUP.sub("(?:", p) + ")" for p in patterns)


# -- the firmware's console lines ---------------------------------------------------------------

@dataclass(frozen=True)
class Boot(_Line):
    """`boot safebox <version> reset_cause <n> wake <n>` (firmware/main.py)."""

    TEMPLATE = r"boot safebox {version} reset_cause {reset_cause} wake {wake}$"
    FIELDS = {"version": r"\S+", "reset_cause": _INT, "wake": _INT}
    version: str
    reset_cause: int
    wake: int


@dataclass(frozen=True)
class Ready(_Line):
    """`ready <role> next counter <n> pending <n>`: checks passed, the device runs (firmware/main.py)."""

    TEMPLATE = r"ready {role} next counter {counter} pending {pending}"
    FIELDS = {"role": r"\S+", "counter": _INT, "pending": _INT}
    role: str
    counter: int
    pending: int


@dataclass(frozen=True)
class Event(_Line):
    """`event <counter> <what>`: an event made and stored on flash (firmware/pendant.py, door.py)."""

    TEMPLATE = r"event {counter} {what}$"
    FIELDS = {"counter": _INT, "what": r".+"}
    counter: int
    what: str

    @property
    def type(self) -> str:
        """The event type the platform stores for it (`door open` -> door_opened, `emergency press` -> emergency)."""
        words = self.what.split()
        if words[:1] == ["door"] and len(words) > 1:
            return "door_opened" if words[1] == "open" else "door_closed"
        return words[0] if words else "?"


@dataclass(frozen=True)
class Acked(_Line):
    """`acked <counter> kind <kind>`: the hub's ack taken, the event off flash (firmware/sender.py)."""

    TEMPLATE = r"acked {counter} kind {kind}"
    FIELDS = {"counter": _INT, "kind": _INT}
    counter: int
    kind: int


@dataclass(frozen=True)
class AckShown(_Line):
    """`ack <counter> kind <kind> shown`: a later ack shown to the resident (firmware/sender.py)."""

    TEMPLATE = r"ack {counter} kind {kind} shown"
    FIELDS = {"counter": _INT, "kind": _INT}
    counter: int
    kind: int


@dataclass(frozen=True)
class Dropped(_Line):
    """`store full: dropped <what>` or `dropped <counter> unsent: ...`: an event given up for room."""

    TEMPLATE = r"(?:store full: dropped|dropped) {what}"
    FIELDS = {"what": r".+"}
    what: str


@dataclass(frozen=True)
class LingerEnded(_Line):
    """`linger <counter> ended <how>`: the wait for a later ack is over (firmware/sender.py)."""

    TEMPLATE = r"linger {counter} ended {how}"
    FIELDS = {"counter": _INT, "how": r".+"}
    counter: int
    how: str


@dataclass(frozen=True)
class Heartbeat(_Line):
    """`heartbeat <counter> <objects>` (firmware/sender.py)."""

    TEMPLATE = r"heartbeat {counter} {objects}"
    FIELDS = {"counter": _INT, "objects": r".*"}
    counter: int
    objects: str


@dataclass(frozen=True)
class Sleep(_Line):
    """`sleep <ms> <why>`: light sleep begins (firmware/power.py)."""

    TEMPLATE = r"sleep {ms} {why}"
    FIELDS = {"ms": _INT, "why": r"\S+"}
    ms: int
    why: str


@dataclass(frozen=True)
class DeepSleep(_Line):
    """`deepsleep <ms> <why>`: deep sleep begins; the next line is a boot (firmware/power.py)."""

    TEMPLATE = r"deepsleep {ms} {why}"
    FIELDS = {"ms": _INT, "why": r"\S+"}
    ms: int
    why: str


@dataclass(frozen=True)
class Woke(_Line):
    """`woke <source> <ms slept>`: light sleep over (firmware/power.py)."""

    TEMPLATE = r"woke {source} {ms}"
    FIELDS = {"source": r"\w+", "ms": _INT}
    source: str
    ms: int


@dataclass(frozen=True)
class Heap(_Line):
    """`heap shims <bytes>` / `heap live <bytes> free <bytes>`: the bench's heap report (tools/bench/device.py)."""

    TEMPLATE = r"heap {what} {bytes}"
    FIELDS = {"what": r"shims|live", "bytes": _INT}
    what: str
    bytes: int


DEVICE_LINES: tuple[type[_Line], ...] = (Boot, Ready, Event, Acked, AckShown, Dropped, LingerEnded, Heartbeat,
                                         Sleep, DeepSleep, Woke, Heap)


def device_line(line: str) -> _Line | None:
    """The record of a firmware console line, or None for a line of no kind above."""
    return next((r for kind in DEVICE_LINES if (r := kind.read(line)) is not None), None)


# -- the hub's log lines ---------------------------------------------------------------------------

@dataclass(frozen=True)
class Refused(_Line):
    """`refused frame from <address>: <reason>` (hub/ingest.py)."""

    ANCHOR = ""
    TEMPLATE = r"refused frame from {address}: {reason}$"
    FIELDS = {"address": r"\S+", "reason": r".*"}
    address: str
    reason: str


@dataclass(frozen=True)
class Stored(_Line):
    """`<address>: event <event id> stored (<type>)` (hub/ingest.py)."""

    ANCHOR = ""
    TEMPLATE = r"{address}: event {event_id} stored \({type}\)"
    FIELDS = {"address": r"\S+", "event_id": r"\S+", "type": r"[^)]*"}
    address: str
    event_id: str
    type: str


@dataclass(frozen=True)
class AckWritten(_Line):
    """`<address>: ack kind <k> for counter <n> written ...` (hub/acks/policy.py), recorded or not."""

    ANCHOR = ""
    TEMPLATE = r"{address}: ack kind {kind} for counter {counter} written"
    FIELDS = {"address": r"\S+", "kind": _INT, "counter": _INT}
    address: str
    kind: int
    counter: int


@dataclass(frozen=True)
class Delivered(_Line):
    """`event <event id>: delivered...`: the platform took one event (hub/uplink/relay.py)."""

    ANCHOR = ""
    TEMPLATE = r"event {event_id}: delivered"
    FIELDS = {"event_id": r"\S+"}
    event_id: str


@dataclass(frozen=True)
class Batch(_Line):
    """`batch of <n> ...`: one request carrying n events (hub/uplink/relay.py)."""

    ANCHOR = ""
    TEMPLATE = r"batch of {size}"
    FIELDS = {"size": _INT}
    size: int


HUB_LINES: tuple[type[_Line], ...] = (Refused, Stored, AckWritten, Delivered, Batch)


def hub_line(line: str) -> _Line | None:
    """The record of a hub log line (its message, or the line with its level and logger), or None."""
    return next((r for kind in HUB_LINES if (r := kind.read(line)) is not None), None)


# -- the receiver's ----------------------------------------------------------------------------------

@dataclass(frozen=True)
class Listening(_Line):
    """`listening on <url>`: the receiver serves (tools/receiver/cli.py)."""

    ANCHOR = ""
    TEMPLATE = r"listening on {url}"
    FIELDS = {"url": r"https://\S+"}
    url: str

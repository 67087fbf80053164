"""How the hub is: one object every part reports into, read by `status`, STATUS= and the
hub heartbeat (hub/service.py). Parts write their own section; `changed()` tells the service
that something a person would want to see at once has changed."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any


@dataclass
class PlatformHealth:
    """What the relay knows of the platform."""

    reachable: bool | None = None  # did the last request get an HTTP answer
    last_answer_at: float | None = None
    last_delivered_at: float | None = None
    last_error: str | None = None
    last_error_at: float | None = None
    paused_until: float | None = None
    clock_offset_s: float | None = None  # platform's Date minus the hub clock
    batching: bool = True
    heartbeat_interval_s: float | None = None
    dropped: int = 0  # events dropped over max_backlog since the hub started

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class RadioHealth:
    """How the radio is: `state` is "off", "starting", "scanning", "recovering" or "stopped"."""

    state: str = "starting"
    mode: str | None = None  # "passive" or "active"
    restarts: int = 0
    last_frame_at: float | None = None  # wall clock
    last_problem: str | None = None
    last_problem_at: float | None = None
    acks_written: int = 0
    ack_failures: int = 0

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class Health:
    platform: PlatformHealth = field(default_factory=PlatformHealth)
    radio: RadioHealth = field(default_factory=lambda: RadioHealth(state="off"))
    on_change: Callable[[], None] | None = None

    def changed(self) -> None:
        if self.on_change is not None:
            self.on_change()

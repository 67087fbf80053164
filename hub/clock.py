"""Is the hub's clock right? Events carry the hub's time and signatures are judged on it.

A Raspberry Pi has no battery-backed clock: after a power cut it boots with the time it
last saved (fake-hwclock) or 1970, until NTP sets it. The platform refuses a signature
more than 300 s old or 30 s ahead, and an event stamped with a wrong time misleads the
operator. So the hub checks, and says so plainly when the clock cannot be trusted:

* the kernel's view (adjtimex(2) with no changes, as `timedatectl` reads it): TIME_ERROR
  means no time source has disciplined the clock ("unsynchronised");
* systemd-timesyncd's marker, /run/systemd/timesync/synchronized, made once it has synced;
* the platform's view: the Date header of its answers, compared with the hub clock.

`check()` returns a `ClockStatus`; `problem` is the one line to log, None when all is well.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import sys
import time as _time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Protocol

TIMESYNC_MARKER = Path("/run/systemd/timesync/synchronized")
PLATFORM_TOLERANCE_S = 10.0
_TIME_ERROR = 5  # adjtimex(2): the clock is not synchronised
_TIMEX_SIZE = 512  # larger than struct timex on every Linux ABI; modes = 0 (read only) at offset 0


@dataclass(frozen=True)
class ClockStatus:
    synchronized: bool | None  # None: cannot tell on this system
    source: str  # what said so: "adjtimex", "timesyncd", "none"
    platform_offset_s: float | None  # platform's Date minus the hub clock, when known
    problem: str | None

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def kernel_synchronized() -> bool | None:
    """adjtimex(2) read-only: False when the kernel says TIME_ERROR, None when it cannot be asked."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        buf = ctypes.create_string_buffer(_TIMEX_SIZE)  # zeroed: modes = 0, nothing is changed
        state = libc.adjtimex(buf)
    except (OSError, AttributeError):
        return None
    if state < 0:
        return None
    return state != _TIME_ERROR


def check(platform_offset_s: float | None = None, *, marker: Path = TIMESYNC_MARKER,
          kernel: bool | None | object = ...) -> ClockStatus:
    """The clock as the kernel, timesyncd and the platform see it (`kernel` is for tests)."""
    synced = kernel_synchronized() if kernel is ... else kernel
    source = "adjtimex" if synced is not None else "none"
    if not synced and marker.exists():
        synced, source = True, "timesyncd"
    problem = None
    if synced is False:
        problem = ("clock not synchronised (the kernel reports TIME_ERROR): events carry the hub's own time; "
                   "check network time (timedatectl)")
    if platform_offset_s is not None and abs(platform_offset_s) > PLATFORM_TOLERANCE_S:
        off = f"clock is {-platform_offset_s:+.0f} s off the platform's"
        problem = off if problem is None else f"{problem}; {off}"
    return ClockStatus(synced if isinstance(synced, bool) else None, source, platform_offset_s, problem)


class Clock(Protocol):
    """The hub's one source of time, injected into every part: `time()` is the wall clock
    (what events carry, what is stored), `monotonic()` measures intervals (timeouts, silence).
    The scenario runner gives a virtual one; the hub itself runs on `SYSTEM`."""

    def time(self) -> float: ...

    def monotonic(self) -> float: ...


class SystemClock:
    """The machine's clocks."""

    time = staticmethod(_time.time)
    monotonic = staticmethod(_time.monotonic)


SYSTEM: Clock = SystemClock()

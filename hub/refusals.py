"""Refused frames said without letting a flood fill the log (or the memory) of a hub.

Neighbours' BTHome sensors share our UUID, and anyone can send frames from any address,
including a paired device's. An unpaired address is said once per STRANGER_LOG_S (a
neighbour's sensor is one line an hour). Beyond that, each key (one paired device's address,
or all unpaired addresses together) gets its first `lines` refusals of an interval as WARNING
lines (a paired device's refusals are keyed by their kind too: a MIC mismatch and a replay
are said apart); the rest of that interval are DEBUG lines (`--log-level debug` shows every one) and
counted, and the counts are said in one WARNING line per key once the interval is over. What
is kept is bounded: a count per paired device, one for strangers, and at most DISTINCT_MAX
stranger addresses (forgotten all at once beyond).
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field

STRANGER_LOG_S = 3600.0
INTERVAL_S = 60.0
LINES = 5  # per key per interval in full
DISTINCT_MAX = 4096
UNPAIRED = "unpaired"


@dataclass
class _Count:
    said: int = 0
    quiet: int = 0
    addresses: set[str] = field(default_factory=set)


class RefusalLog:
    def __init__(self, logger: logging.Logger, *, clock: Callable[[], float] = time.monotonic,
                 interval_s: float = INTERVAL_S, lines: int = LINES) -> None:
        self._log = logger
        self._clock = clock
        self._interval_s = interval_s
        self._lines = lines
        self._counts: dict[str, _Count] = {}
        self._strangers: dict[str, float] = {}  # unpaired address -> when it was last said
        self._started = clock()

    def refused(self, address: str, reason: str, *, paired: bool) -> None:
        now = self._clock()
        if now - self._started >= self._interval_s:
            self.flush(now)
        if not paired and now - self._strangers.get(address, -STRANGER_LOG_S) < STRANGER_LOG_S:
            self._log.debug("refused frame from %s: %s", address, reason)  # said in the last hour
            return
        count = self._counts.setdefault(f"{address}: {_kind(reason)}" if paired else UNPAIRED, _Count())
        if count.said < self._lines:
            count.said += 1
            if paired:
                self._log.warning("refused frame from %s: %s", address, reason)
                return
            if len(self._strangers) >= DISTINCT_MAX:
                self._strangers.clear()
            self._strangers[address] = now
            self._log.warning("refused frame from %s: %s (not logged again for %d s)", address, reason,
                              STRANGER_LOG_S)
        else:
            count.quiet += 1
            if not paired and len(count.addresses) < DISTINCT_MAX:
                count.addresses.add(address)
            self._log.debug("refused frame from %s: %s", address, reason)

    def flush(self, now: float | None = None) -> None:
        """Say what was counted and not said, and start a new interval."""
        now = self._clock() if now is None else now
        span = round(now - self._started)
        for key, count in self._counts.items():
            if not count.quiet:
                continue
            if key == UNPAIRED:
                many = len(count.addresses)
                who = f"{many}{'+' if many >= DISTINCT_MAX else ''} unpaired addresses"
            else:
                who = key + "..."
            self._log.warning("refused %d more frames from %s in the last %d s (not logged one by one)",
                              count.quiet, who, span)
        self._counts.clear()
        self._started = now


def _kind(reason: str) -> str:
    """What sort of refusal: its words before the first number or colon ("MIC mismatch",
    "replayed counter", "frame of"), so the counts stay few."""
    return re.split(r"[0-9:]", reason, maxsplit=1)[0].strip()

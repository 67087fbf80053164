# Events from birth to acknowledgement, and the frame counter, on flash.
#
# The counter is the identity of every frame and the hub refuses any counter
# not above the last it accepted, so it must never go backwards: not across a
# reboot, a brown-out or a battery change. Writing it on every frame would wear
# the flash, so a high-water mark is written once per _BLOCK counters and a
# booting device resumes at the mark (skipping at most _BLOCK - 1 values; a
# 32-bit counter lasts 67 million boots).
# Flash writes: one per event created, one per event acknowledged, one per
# _BLOCK frames and one at the first frame after each boot (the mark). With
# hourly heartbeats and 20 events a day: about 41 small writes a day, spread
# by LittleFS's wear levelling over the whole filesystem.
#
# Both files are replaced by write-then-rename, so a reset mid-write leaves the
# old or the new file, never half of one (rename replaces atomically on
# LittleFS, the ESP32 port's default filesystem).
#
# Bounded: at most max_pending events (default MAX_PENDING). When full, the
# oldest event that is not urgent makes room; urgent ones (the emergency
# button) are never dropped, so only they can take the store past its bound.

import json
import os

from micropython import const

_BLOCK = const(64)
MAX_PENDING = const(32)
COUNTER_PATH = "counter"
EVENTS_PATH = "events.json"


def _replace(path, text):
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        f.write(text)
    os.rename(tmp, path)


def _read(path):
    try:
        with open(path) as f:
            return f.read()
    except OSError:
        return None


class EventStore:
    """Pending events, oldest first: [counter, urgent, objects], kept until acknowledged."""

    def __init__(self, counter_path=COUNTER_PATH, events_path=EVENTS_PATH, max_pending=MAX_PENDING):
        self._counter_path = counter_path
        self.max_pending = max_pending
        self._events_path = events_path
        self.problems = []  # what the boot self-test reports
        self.pending = self._load_events()
        mark = self._load_mark()
        # Resume past everything that may have been used: the mark, and any
        # pending event (in case the mark file was lost).
        last_pending = self.pending[-1][0] + 1 if self.pending else 1
        self._next = max(mark, last_pending)
        self._reserved = self._next

    def _load_mark(self):
        text = _read(self._counter_path)
        if text is None:
            return 1
        try:
            return int(text)
        except ValueError:
            self.problems.append("counter file unreadable")
            return 1

    def _load_events(self):
        text = _read(self._events_path)
        if text is None:
            return []
        try:
            pending = json.loads(text)
            return [e for e in pending if isinstance(e, list) and len(e) == 3]
        except ValueError:
            self.problems.append("event store unreadable, started empty")
            return []

    @property
    def next_counter(self):
        return self._next

    def allocate(self):
        """The next counter; the high-water mark reaches flash before it is used."""
        if self._next >= self._reserved:
            self._reserved = self._next + _BLOCK
            _replace(self._counter_path, str(self._reserved))
        counter = self._next
        self._next += 1
        return counter

    def add(self, objects, urgent):
        """Store a new event; returns (its counter, counters dropped to make room).

        When full, the oldest non-urgent event makes room; urgent events (the
        emergency button) are never dropped, so the store may exceed its bound
        only with urgent events.
        """
        counter = self.allocate()
        self.pending.append([counter, 1 if urgent else 0, [list(o) for o in objects]])
        dropped = []
        while len(self.pending) > self.max_pending:
            victim = None
            for entry in self.pending:
                if not entry[1]:
                    victim = entry
                    break
            if victim is None:
                break
            self.pending.remove(victim)
            dropped.append(victim[0])
        self._save()
        return counter, dropped

    def oldest(self):
        return self.pending[0] if self.pending else None

    def is_pending(self, counter):
        for entry in self.pending:
            if entry[0] == counter:
                return True
        return False

    def ack(self, counter):
        """Forget an acknowledged event; False when it was not pending."""
        for entry in self.pending:
            if entry[0] == counter:
                self.pending.remove(entry)
                self._save()
                return True
        return False

    def _save(self):
        _replace(self._events_path, json.dumps(self.pending))

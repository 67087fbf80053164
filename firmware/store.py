# Events from birth to acknowledgement, and the frame counter, on flash.
#
# The counter is the identity of every frame and the hub refuses any counter
# not above the last it accepted, so it must never go backwards: not across a
# reboot, a brown-out or a battery change. Writing it on every frame would wear
# the flash, so a high-water mark is written once per _BLOCK counters and a
# booting device resumes at the mark (skipping at most _BLOCK - 1 values; a
# 32-bit counter lasts 67 million boots).
# Flash writes: one per event created, one per event acknowledged, one per ack
# taken (its number, SPEC 1.7), one per _BLOCK frames and one at the first frame
# after each boot (the mark). With hourly heartbeats and 20 events a day: about
# 81 small writes a day, spread by LittleFS's wear levelling over the filesystem.
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
ACK_NUMBER_PATH = "ack_number"
_ENOENT = const(2)


class CounterLost(OSError):
    """The counter file exists but cannot be read: no counter is known to be unused."""


def _replace(path, text):
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        f.write(text)
    os.rename(tmp, path)


def _read(path, missing_only=False):
    """The file's text; None when it does not exist (or, unless `missing_only`, cannot be read)."""
    try:
        with open(path) as f:
            return f.read()
    except OSError as exc:
        if missing_only and exc.args and exc.args[0] != _ENOENT:
            raise
        return None


class EventStore:
    """Pending events, oldest first: [counter, urgent, objects], kept until acknowledged."""

    def __init__(self, counter_path=COUNTER_PATH, events_path=EVENTS_PATH, max_pending=MAX_PENDING,
                 ack_number_path=ACK_NUMBER_PATH):
        self._counter_path = counter_path
        self._ack_number_path = ack_number_path
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
        text = _read(self._ack_number_path)
        self.ack_number = int(text) if text and text.strip().isdigit() else 0

    def _load_mark(self):
        """The high-water mark; 1 only when there is no counter file at all (a device just
        paired). A file that exists but cannot be read or parsed is no ground to start again
        at 1: every counter from 1 may have sealed other bytes (a CCM nonce used twice) and
        the hub refuses them all as replays. Nor can a jump land safely without knowing
        where the counter was. So the device refuses to send (CounterLost; main.py makes it
        a failed self-test) until it is re-paired with a fresh key."""
        try:
            text = _read(self._counter_path, missing_only=True)
        except OSError as exc:
            raise CounterLost(5, "counter file unreadable: %r" % (exc,))
        if text is None:
            return 1
        try:
            mark = int(text)
        except ValueError:
            raise CounterLost(5, "counter file unreadable: %r" % (text[:16],))
        if mark < 1:
            raise CounterLost(5, "counter file holds %d" % mark)
        return mark

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

    def note_ack(self, number):
        """An ack numbered `number` was accepted: later acks must be numbered above it, across
        reboots and deep sleeps too (SPEC 1.7). One small write per ack accepted."""
        self.ack_number = number
        _replace(self._ack_number_path, str(number))

    def _save(self):
        _replace(self._events_path, json.dumps(self.pending))

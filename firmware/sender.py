# Sends stored events to the hub, oldest first, until each is acknowledged;
# sends a heartbeat when nothing has been sent for heartbeat_s; rests (asleep,
# radio off) in between.
#
# An event is advertised in a burst (every BURST_INTERVAL_MS for BURST_MS)
# while the device listens for the hub's ack. Without one it rests for a
# backoff that doubles from RETRY_FIRST_MS to retry_max_ms (60 s), then tries
# again, for as long as it takes; a newer event ends the rest at once. After
# failed_after_ms (30 s) without an ack the resident is told "could not reach
# anyone" (the device keeps trying).
#
# After kind 1 (heard) the event leaves the store, and the device LINGERS:
# it keeps advertising that same frame (same counter, byte for byte) every
# LINGER_INTERVAL_MS for up to linger_ms (pendant 30 s), so the hub can connect
# again and write kind 2 (delivered). Kind 2 or 3 ends the linger; so does a
# newer event, which is sent at once. A door sensor does not linger (linger_ms
# 0): the hub owes it nothing after kind 1 (SPEC 1.7), so it stops advertising
# and sleeps as soon as kind 1 is taken.
#
# A heartbeat (a boot frame, a receipt) is advertised every HEARTBEAT_INTERVAL_MS
# for HEARTBEAT_WINDOW_MS (1 s, 10 advertisements): the hub may write what it
# owes meanwhile. A door sensor is owed nothing (SPEC 1.7), so it sends the same
# 10 advertisements at the burst's interval, in QUICK_HEARTBEAT_MS (0.3 s), and
# sleeps: the hub hears as many as before, the CPU is on a third as long.
#
# Acks are taken whenever they come, for any counter: the hub writes acks it
# owes (kind 2, 3) when it next hears this device, so every frame (heartbeats
# too) is advertised connectable, and the device stays on the air while a
# central is connected (up to CONNECTED_MAX_MS). An ack is shown to the
# resident only if it says more than was shown for that event and the event is
# one of the last _RECENT_MAX made, less than FRESH_MS ago; others are taken
# silently ("ack 7 kind 2 (not shown: stale)").
#
# Every ack carries the hub's ack number (SPEC 1.7): one above the last accepted
# (kept on flash) or refused. After taking kind 2 or 3 the device sends a
# RECEIPT once no event waits: a heartbeat under a new counter that carries the
# number it accepted last (object 0x3E). Until the hub hears a receipt the ack
# stays owed: a device spoofing this one's address and replaying its last frame
# can take the hub's writes but not forge the receipt.
#
# Each burst of an event carries its re-send number (info bits 3-4, SPEC 1.2),
# so it differs from the burst before: a hub on BlueZ scanning passively is told
# only of changed advertisements. The linger repeats the last burst's bytes: the
# hub knows how long a device lingers and keeps it connectable meanwhile.
#
# Frames go out in counter order and no heartbeat is made while an event
# waits: the hub refuses a counter below one it has already accepted. A frame
# is never sealed twice with different contents under one counter: an event's
# objects are stored with its counter at birth.

import asyncio
import time

from micropython import const

from safebox.protocol import bthome

from . import feedback

BURST_INTERVAL_MS = const(30)
BURST_MS = bthome.BURST_MS  # the hub counts on this and the heartbeat window (SPEC 1.7)
RETRY_FIRST_MS = const(2000)
LINGER_INTERVAL_MS = const(500)
HEARTBEAT_INTERVAL_MS = const(100)
HEARTBEAT_WINDOW_MS = bthome.HEARTBEAT_WINDOW_MS
QUICK_HEARTBEAT_MS = const(300)  # doors: HEARTBEAT_WINDOW_MS's 10 advertisements, at BURST_INTERVAL_MS
CONNECTED_MAX_MS = const(5000)
FRESH_MS = const(900000)
_RECENT_MAX = const(8)
_IDLE_POLL_MS = const(50)
_ACK_FEEDBACK = {
    bthome.ACK_HEARD: feedback.HEARD,
    bthome.ACK_DELIVERED: feedback.DELIVERED,
    bthome.ACK_OPERATOR: feedback.OPERATOR,
}


class Sender:
    def __init__(self, radio, store, cfg, fb, power, heartbeat_objects, battery_low=None):
        self._radio = radio
        self._store = store
        self._key = cfg["key"]
        self._fb = fb
        self._power = power
        self._heartbeat_objects = heartbeat_objects  # () -> objects of a heartbeat frame
        self._battery_low = battery_low  # () -> True when the resident should be told
        self._heartbeat_ms = cfg["heartbeat_s"] * 1000
        self._linger_ms = cfg["linger_ms"]
        # (interval, window) of a heartbeat: quick when the hub can owe this role nothing
        self._beat = ((HEARTBEAT_INTERVAL_MS, HEARTBEAT_WINDOW_MS) if cfg["role"] == "pendant"
                      else (BURST_INTERVAL_MS, QUICK_HEARTBEAT_MS))
        self._failed_after_ms = cfg["failed_after_ms"]
        self._retry_max_ms = cfg["retry_max_ms"]
        self._flag = asyncio.ThreadSafeFlag()
        radio.signal = self.signal
        radio.accept = self._why_not_authentic
        self._next_heartbeat = time.ticks_add(time.ticks_ms(), self._heartbeat_ms)
        self._boot = None  # (reset cause, version) while the boot frame is still to be sent
        self._receipt = False  # an ack of kind 2 or 3 taken and not yet reported (SPEC 1.7)
        self._recent = []  # [counter, made at ms, kind shown], oldest first
        for entry in store.pending:  # re-sent after a reboot: the resident may be waiting
            self._note(entry[0])
        self.made = 0
        self.acked = 0
        self.refused = 0

    def heartbeat_now(self):
        """Woken from deep sleep by the timer: the heartbeat is due."""
        self._next_heartbeat = time.ticks_ms()

    def boot_frame(self, reset_cause, version):
        """Started afresh (not a deep-sleep wake): say so, once the events waiting are acknowledged
        (SPEC 1.8: a heartbeat with the reset cause and the firmware version)."""
        self._boot = (reset_cause, version)

    def signal(self):
        """Something happened (a new event, an ack written, a central gone): look again."""
        self._flag.set()

    def event_made(self, counter):
        self.made += 1
        self._note(counter)
        self._flag.set()

    def _note(self, counter):
        self._recent.append([counter, time.ticks_ms(), 0])
        if len(self._recent) > _RECENT_MAX:
            self._recent.pop(0)

    def _frame(self, counter, objects, event, resend=0):
        return bthome.advertisement(bthome.seal(self._key, self._radio.mac, counter, objects, event, resend))

    async def _wait(self, ms):
        if ms <= 0:
            return
        try:
            await asyncio.wait_for_ms(self._flag.wait(), ms)
        except asyncio.TimeoutError:
            pass

    # -- acks -------------------------------------------------------------------------
    def _why_not_authentic(self, data):
        """The radio's check of every write as it arrives: None for an authentic ack."""
        try:
            number = bthome.unseal_ack(self._key, self._radio.mac, data)[3]
        except ValueError as exc:
            return str(exc)
        if number <= self._store.ack_number:
            return "ack number %d not above %d" % (number, self._store.ack_number)
        return None

    def _take_acks(self, counter):
        """Act on what the hub wrote; the highest kind acknowledging `counter`."""
        best = 0
        for data in self._radio.take_writes():
            try:
                kind, acked, _hub_time, number = bthome.unseal_ack(self._key, self._radio.mac, data)
            except ValueError as exc:
                self.refused += 1
                print("ack refused:", exc)
                continue
            if number <= self._store.ack_number:  # two in the inbox, or one replayed in between
                self.refused += 1
                print("ack refused: ack number %d not above %d" % (number, self._store.ack_number))
                continue
            try:
                self._store.note_ack(number)
            except OSError as exc:
                print("ack number not kept:", exc)
            if kind >= bthome.ACK_DELIVERED:
                self._receipt = True
            if self._store.ack(acked):
                self.acked += 1
                print("acked", acked, "kind", kind)
            if acked == counter and kind > best:
                best = kind
            self._show_ack(acked, kind)
        return best

    def _show_ack(self, counter, kind):
        for r in self._recent:
            if r[0] == counter:
                if kind <= r[2]:
                    return  # said already (the hub repeats acks)
                if time.ticks_diff(time.ticks_ms(), r[1]) > FRESH_MS:
                    break
                r[2] = kind
                low = feedback.BATTERY_LOW if self._battery_low is not None and self._battery_low() else None
                self._fb.show(_ACK_FEEDBACK[kind], low)
                if kind > bthome.ACK_HEARD:
                    print("ack", counter, "kind", kind, "shown")
                return
        print("ack", counter, "kind", kind, "(not shown: stale)")

    async def _listen(self, counter, window_ms, want, stop):
        """Take acks for window_ms (longer while a central is connected, up to
        CONNECTED_MAX_MS more); return early once `counter` has an ack of kind
        >= want or stop() is true. Returns the best kind seen for `counter`."""
        start = time.ticks_ms()
        best = 0
        while True:
            self._radio.police()
            kind = self._take_acks(counter)
            if kind > best:
                best = kind
            if best >= want or stop():
                return best
            elapsed = time.ticks_diff(time.ticks_ms(), start)
            left = window_ms - elapsed
            if left <= 0:
                if not self._radio.connections or elapsed >= window_ms + CONNECTED_MAX_MS:
                    return best
                left = _IDLE_POLL_MS
            if self._radio.connections:
                left = min(left, _IDLE_POLL_MS)  # look at who is connected (radio.police) often
            await self._wait(left)

    # -- sending ----------------------------------------------------------------------
    async def _deliver(self, entry):
        counter, _urgent, objects = entry
        first_try = time.ticks_ms()
        backoff = RETRY_FIRST_MS
        failed = False
        gone = lambda: not self._store.is_pending(counter)  # noqa: E731 (dropped to make room)
        resend = 0
        while True:
            # Each burst differs from the one before in its re-send number (SPEC 1.2): a hub on
            # BlueZ scanning passively hears only changes.
            adv = self._frame(counter, objects, True, resend)
            resend += 1
            self._fb.show(feedback.RETRY if failed else feedback.SENDING)
            self._radio.advertise(adv, BURST_INTERVAL_MS)
            print("sending", counter)
            kind = await self._listen(counter, BURST_MS, bthome.ACK_HEARD, gone)
            if kind >= bthome.ACK_HEARD:
                self._next_heartbeat = time.ticks_add(time.ticks_ms(), self._heartbeat_ms)
                if kind < bthome.ACK_DELIVERED and self._linger_ms:
                    await self._linger(counter, adv)
                self._radio.stop()
                return
            self._radio.stop()
            if gone():
                print("dropped", counter, "unsent: the store was full")
                self._fb.stop()
                return
            waited = time.ticks_diff(time.ticks_ms(), first_try)
            if not failed and waited >= self._failed_after_ms:
                failed = True
                print("not heard", counter, "after", waited, "ms: still trying")
                self._fb.show(feedback.FAILED)
            else:
                self._fb.stop()
            if await self._rest(backoff):
                backoff = RETRY_FIRST_MS  # the resident did something: try again now
            else:
                backoff = min(backoff * 2, self._retry_max_ms)

    async def _linger(self, counter, adv):
        self._radio.advertise(adv, LINGER_INTERVAL_MS)
        print("linger", counter)
        newer = lambda: self._store.oldest() is not None  # noqa: E731
        kind = await self._listen(counter, self._linger_ms, bthome.ACK_DELIVERED, newer)
        print("linger", counter, "ended", "kind %d" % kind if kind else ("newer event" if newer() else "timeout"))

    async def _heartbeat(self):
        objects = self._heartbeat_objects()  # before the radio is on: an unloaded battery reading
        boot, self._boot = self._boot, None
        what = "heartbeat"
        if boot is not None:
            objects = bthome.boot_objects(objects, boot[0], boot[1])
            what = "boot frame"
        elif self._receipt:  # the boot frame has no room for it: the receipt follows it
            self._receipt = False
            objects = objects + [(bthome.OBJ_ACK_SEEN, self._store.ack_number)]
            what = "receipt"
        counter = self._store.allocate()
        interval_ms, window_ms = self._beat
        self._radio.advertise(self._frame(counter, objects, False), interval_ms)
        print(what, counter, objects)
        if self._battery_low is not None and self._battery_low():
            print("battery low", objects[0][1])
        await self._listen(None, window_ms, 99, lambda: self._store.oldest() is not None)
        self._radio.stop()
        self._next_heartbeat = time.ticks_add(time.ticks_ms(), self._heartbeat_ms)

    async def _rest(self, ms):
        """Wait ms, asleep when nothing else is going on; True when a new event cut it short."""
        deadline = time.ticks_add(time.ticks_ms(), ms)
        made = self.made
        while True:
            if self.made != made:
                return True
            left = time.ticks_diff(deadline, time.ticks_ms())
            if left <= 0:
                return False
            self._radio.police()
            if self._power.enabled and self._power.quiet():
                self._power.sleep(left, "rest")
                await asyncio.sleep_ms(0)
            else:
                await self._wait(min(left, _IDLE_POLL_MS))

    def _showable_by(self, ms):
        """True when an ack the hub owes for a recent event, written at the heartbeat due in
        `ms`, could still be shown then (the pendant: "help is coming" after a deep sleep
        would be taken as stale, the list of recent events being gone with the RAM)."""
        now = time.ticks_ms()
        for r in self._recent:
            if r[2] < bthome.ACK_OPERATOR and time.ticks_diff(now, r[1]) + ms <= FRESH_MS:
                return True
        return False

    async def run(self):
        await asyncio.sleep_ms(0)  # let the input tasks start before the first sleep
        while True:
            entry = self._store.oldest()
            if entry is not None:
                await self._deliver(entry)
                continue
            left = time.ticks_diff(self._next_heartbeat, time.ticks_ms())
            if left <= 0 or self._boot is not None or self._receipt:
                await self._heartbeat()
                continue
            self._radio.police()
            if self._power.enabled and self._power.quiet():
                deep_in = self._power.deep_in()  # doors: deep sleep, after a while in light sleep
                if deep_in is not None and deep_in <= 0 and self._power.wakes_on_buttons and self._showable_by(left):
                    deep_in = None  # RAM holds what was shown: light sleep until that heartbeat
                if deep_in is not None and deep_in <= 0:
                    self._power.deep_sleep(left, "idle")  # returns only if it could not
                elif deep_in is not None:
                    left = min(left, deep_in)
                self._power.sleep(left, "idle")
                await asyncio.sleep_ms(0)
            else:
                await self._wait(min(left, _IDLE_POLL_MS))

# Sends stored events to the hub, oldest first, until each is acknowledged;
# sends a heartbeat when there is nothing to send.
#
# An event is advertised in a burst (every BURST_INTERVAL_MS for BURST_MS)
# while the device listens for the hub's ack. Without an ack it goes quiet for
# a backoff that doubles from RETRY_FIRST_MS to RETRY_MAX_MS, then tries again,
# for as long as it takes. After FAILED_AFTER_MS without an ack the resident is
# told "could not reach anyone" (the device keeps trying).
#
# Frames go out in counter order and no heartbeat is made while an event
# waits: the hub refuses a counter below one it has already accepted.

import asyncio
import time

from micropython import const

from safebox.protocol import bthome

from . import feedback

BURST_INTERVAL_MS = const(30)
BURST_MS = const(1500)
RETRY_FIRST_MS = const(2000)
RETRY_MAX_MS = const(60000)
FAILED_AFTER_MS = const(30000)
HEARTBEAT_BURST_MS = const(300)


class Sender:
    def __init__(self, radio, store, key, fb, heartbeat_objects, heartbeat_s):
        self._radio = radio
        self._store = store
        self._key = key
        self._fb = fb
        self._heartbeat_objects = heartbeat_objects  # () -> objects for a heartbeat frame
        self._heartbeat_ms = heartbeat_s * 1000
        self._wake = asyncio.ThreadSafeFlag()
        self.acked = 0

    def wake(self):
        """A new event is stored: stop idling."""
        self._wake.set()

    def _frame(self, counter, objects, event):
        return bthome.advertisement(bthome.seal(self._key, self._radio.mac, counter, objects, event))

    def _take_acks(self, counter):
        """Handle what the hub wrote; True when `counter` is acknowledged."""
        done = False
        for data in self._radio.take_writes():
            try:
                kind, acked, _hub_time = bthome.unseal_ack(self._key, self._radio.mac, data)
            except ValueError as exc:
                print("ack refused:", exc)
                continue
            if acked == counter:
                done = True
            if self._store.ack(acked):
                self.acked += 1
                print("acked", acked, "kind", kind)
            if kind >= bthome.ACK_DELIVERED and self._store.oldest() is None:
                self._fb.show(feedback.DELIVERED)
        return done

    async def _send_until_acked(self, entry):
        counter, _urgent, objects = entry
        adv = self._frame(counter, objects, True)
        self._fb.show(feedback.SENDING)
        first_try = time.ticks_ms()
        backoff = RETRY_FIRST_MS
        while True:
            self._radio.advertise(adv, BURST_INTERVAL_MS)
            print("sending", counter)
            deadline = time.ticks_add(time.ticks_ms(), BURST_MS)
            while time.ticks_diff(deadline, time.ticks_ms()) > 0:
                try:
                    await asyncio.wait_for_ms(self._radio.written.wait(), time.ticks_diff(deadline, time.ticks_ms()))
                except asyncio.TimeoutError:
                    break
                if self._take_acks(counter):
                    self._radio.stop()
                    self._fb.show(feedback.HEARD)
                    return
            self._radio.stop()
            if time.ticks_diff(time.ticks_ms(), first_try) >= FAILED_AFTER_MS:
                self._fb.show(feedback.FAILED)
            await asyncio.sleep_ms(backoff)
            backoff = min(backoff * 2, RETRY_MAX_MS)

    async def _heartbeat(self):
        counter = self._store.allocate()
        self._radio.advertise(self._frame(counter, self._heartbeat_objects(), False), BURST_INTERVAL_MS)
        await asyncio.sleep_ms(HEARTBEAT_BURST_MS)
        self._radio.stop()

    async def run(self):
        while True:
            entry = self._store.oldest()
            if entry is not None:
                await self._send_until_acked(entry)
                continue
            try:
                await asyncio.wait_for_ms(self._wake.wait(), self._heartbeat_ms)
            except asyncio.TimeoutError:
                await self._heartbeat()

"""The hub's radio: scan for our frames and write acknowledgements, through bleak's public API.

The backend is injected (`backend=` on BleakScanner and BleakClient): BlueZ on a
Raspberry Pi by default, the simulator's bumble backend in the simulated home.

Scanning is passive where BlueZ allows it (an advertisement-monitor or-pattern on our
service data), active otherwise. A supervisor watches the scanner: when the adapter goes
away (the `probe` fails: on BlueZ, /sys/class/bluetooth/<adapter> is gone or its rfkill is
on), when bluetoothd stops or restarts (hub/radio_bluez.py), when nothing at all has been heard for `stale_s`, or when the scanner could not be
started, it stops the scanner and starts it again with a jittered exponential backoff,
logging each step, until it works. `health` says how the radio is, for `status` and the
hub heartbeat; the hub keeps relaying and keeping time whatever the radio does.

Acks go through bleak-retry-connector's `establish_connection`, which sorts connection
errors into tiers with their own backoff (out of slots, device missing, transient D-Bus
errors) and ends with an error that says what to do; that final error is logged.

The adapter makes one connection at a time (the controller has one LE initiator; BlueZ
queues the rest), so an attempt must not hold it for a device that is not there. A device
can only be connected while it advertises, and ours advertise only while they have
something to say. So at most `IN_FLIGHT` attempts are made at once (one establishing its
link while another discovers services), each waits its turn here, starts only if the device
was heard in the last `ADVERTISING_S` when its turn comes, and is abandoned once the device
has been silent for `ASLEEP_S` (asleep in its backoff). BlueZ scanning passively reports a
repeated advertisement only once, so "heard" also counts the time the protocol says a
device stays on the air after a frame or an ack (`expect`, told by the ack policy). Its next
frame asks for the ack again. Every ack a device is due goes in one connection, each made
once the link is up, so it says the most the hub knows by then (heard, or already delivered:
one connection, not two).
Without this, a burst of lost acks leaves many devices asleep at once, each attempt to
reach one holds the initiator for the whole connect timeout, the devices that are awake
wait behind them, and the home's acks stall for minutes (`python -m safebox.tools.probe
ack-loss` shows it).
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from bleak import BleakClient, BleakScanner
from bleak.backends.device import BLEDevice
from bleak.backends.scanner import AdvertisementData
from bleak.exc import BleakError
from bleak_retry_connector import establish_connection

from safebox.hub.clock import SYSTEM, Clock
from safebox.hub.health import RadioHealth
from safebox.hub.radio_bluez import BluezWatch, Probe, bluez_scanner_args, sysfs_probe
from safebox.hub.radio_words import in_words
from safebox.hub.waiting import wait_set
from safebox.protocol import bthome

log = logging.getLogger("safebox.hub.radio")

ACK_CHAR_UUID = bthome.ACK_CHAR_UUID
ACK_SERVICE_UUID = bthome.ACK_SERVICE_UUID
RESTART_FIRST_S = 1.0
RESTART_MAX_S = 60.0
CHECK_S = 30.0  # how often the supervisor looks at the adapter
SCANNER_START_S = 20.0
STALE_S = 2 * 3600.0  # twice the devices' heartbeat period: nothing at all heard means trouble
ADVERTISING_S = 1.0  # heard this recently: advertising now (ours advertise every 30-500 ms when they do)
ASLEEP_S = 3.0  # silent this long during an attempt: asleep (connected, it would be silent too, but the
# link and the service discovery that follows take well under this)
IN_FLIGHT = 2  # connection attempts at once
REPEAT_S = 1.0  # the same frame from the same address is handled again only after this
WRITE_TIMEOUT_S = 5.0  # an ack write and its response (the device stays connected up to 5 s)

FrameCallback = Callable[[str, bytes, "int | None"], None]


@dataclass(frozen=True)
class Backends:
    """The bleak backend classes to use; None means bleak's platform default."""

    scanner: type | None = None
    client: type | None = None


class Radio:
    """Scans for BTHome service data 0xFCD2 and hands each frame to `on_frame`.

    Use as an async context manager; `write_acks` connects to a device that is advertising
    and writes its acknowledgements. `heard_recently(address, within_s)` tells whether a
    device was heard in the last `within_s` seconds (it is then likely still advertising).
    """

    def __init__(self, on_frame: FrameCallback, *, backends: Backends = Backends(),
                 connect_timeout_s: float = 10.0, connect_attempts: int = 3, adapter: str | None = None,
                 probe: Probe | None = None, stale_s: float | None = STALE_S, check_s: float = CHECK_S,
                 restart_first_s: float = RESTART_FIRST_S, restart_max_s: float = RESTART_MAX_S,
                 rng: random.Random | None = None, clock: Clock = SYSTEM,
                 health: RadioHealth | None = None, wanted: Callable[[str], bool] | None = None) -> None:
        """`wanted(address)`: is this a device the hub may write to (paired)? Only those are
        remembered, so a flood of made-up addresses costs no memory."""
        self._on_frame = on_frame
        self._wanted = wanted
        self._clock = clock
        self._backends = backends
        self._connect_timeout_s = connect_timeout_s
        self._connect_attempts = connect_attempts
        self._adapter = adapter
        self._watch: BluezWatch | None = None
        if probe is None and backends.scanner is None:  # BlueZ: the adapter, and bluetoothd restarts
            self._watch = BluezWatch(self.report_trouble)
            probe = _both(sysfs_probe(adapter), self._watch.probe)
        self._probe = probe
        self._stale_s = stale_s
        self._check_s = check_s
        self._restart_first_s = restart_first_s
        self._restart_max_s = restart_max_s
        self._rng = rng or random.Random()
        self._scanner: BleakScanner | None = None
        self._seen: dict[str, BLEDevice] = {}
        self._heard: dict[str, float] = {}  # address -> monotonic time last heard
        self._last_data: dict[str, tuple[bytes, float]] = {}  # address -> (frame, when) last handled
        self._on_air_until: dict[str, float] = {}  # address -> monotonic time it is known to advertise until
        self._locks: dict[str, asyncio.Lock] = {}
        self._initiator = asyncio.Semaphore(IN_FLIGHT)
        self._last_any = self._clock.monotonic()
        self._trouble = asyncio.Event()
        self._supervisor: asyncio.Task[None] | None = None
        self.health = health if health is not None else RadioHealth()
        self.health.state = "starting"

    # -- the scanner ------------------------------------------------------------------

    def _scanner_args(self, mode: str) -> dict[str, Any]:
        args: dict[str, Any] = {"detection_callback": self._detected, "backend": self._backends.scanner,
                                "scanning_mode": mode}
        if self._backends.scanner is None:
            args["bluez"] = bluez_scanner_args(self._adapter, mode)
        return args

    async def _start_scanner(self) -> None:
        """Start scanning, passive first; raises when neither mode can be started."""
        try:
            scanner = BleakScanner(**self._scanner_args("passive"))
            async with asyncio.timeout(SCANNER_START_S):  # D-Bus to a wedged bluetoothd can hang
                await scanner.start()
            mode = "passive"
        except (BleakError, ValueError) as exc:
            # Some adapters and kernels refuse passive scanning: fall back to active.
            if isinstance(exc, BleakError) and self._probe is not None:
                await self._probe()  # a missing adapter is not a reason to try active
            log.warning("passive scanning unavailable (%s); scanning actively", in_words(exc))
            scanner = BleakScanner(**self._scanner_args("active"))
            async with asyncio.timeout(SCANNER_START_S):
                await scanner.start()
            mode = "active"
        self._scanner = scanner
        self._last_data.clear()  # a new scanner's first report of each device is news
        self._last_any = self._clock.monotonic()
        self.health.mode = mode
        self.health.state = "scanning"

    async def _stop_scanner(self) -> None:
        scanner, self._scanner = self._scanner, None
        if scanner is not None:
            try:
                async with asyncio.timeout(SCANNER_START_S):
                    await scanner.stop()
            except Exception as exc:  # an adapter that is gone cannot stop cleanly
                log.debug("scanner stop: %s", exc)

    async def __aenter__(self) -> Radio:
        if self._watch is not None:
            await self._watch.start()
        try:
            await self._start_scanner()
        except (BleakError, ValueError, OSError, asyncio.TimeoutError) as exc:
            # The hub still relays and keeps its timers; the supervisor keeps trying.
            self._problem(f"scanner did not start: {in_words(exc)}")
            log.error("radio: scanner did not start (%s); retrying in the background", in_words(exc))
            self._trouble.set()
        self._supervisor = asyncio.create_task(self._supervise(), name="radio-supervisor")
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    async def close(self) -> None:
        """Stop the supervisor and the scanner; safe to call twice."""
        supervisor, self._supervisor = self._supervisor, None
        if supervisor is not None:
            supervisor.cancel()
            await asyncio.gather(supervisor, return_exceptions=True)
        await self._stop_scanner()
        if self._watch is not None:
            await self._watch.close()
        self.health.state = "stopped"

    def report_trouble(self, what: str) -> None:
        """Something outside saw the radio fail (e.g. the adapter vanished): recover now."""
        self._problem(what)
        self._trouble.set()

    def _problem(self, what: str) -> None:
        self.health.last_problem = what
        self.health.last_problem_at = self._clock.time()

    async def _supervise(self) -> None:
        while True:
            await wait_set(self._trouble, self._check_s)
            problem = await self._check()
            if problem is not None:
                await self._recover(problem)

    async def _check(self) -> str | None:
        if self._trouble.is_set():
            self._trouble.clear()
            return self.health.last_problem or "scanner trouble reported"
        if self._scanner is None:
            return "scanner not running"
        if self._probe is not None:
            try:
                await self._probe()
            except Exception as exc:
                return in_words(exc)
        if self._stale_s is not None and self._clock.monotonic() - self._last_any > self._stale_s:
            return f"nothing heard for {self._stale_s:g} s"
        return None

    async def _recover(self, problem: str) -> None:
        """Stop the scanner and start it again, backing off, until it works (or we are cancelled)."""
        self._problem(problem)
        self.health.state = "recovering"
        log.warning("radio: %s; restarting the scanner", problem)
        await self._stop_scanner()
        attempt = 0
        while True:
            attempt += 1
            try:
                if self._probe is not None:
                    await self._probe()
                await self._start_scanner()
            except (BleakError, ValueError, OSError, asyncio.TimeoutError) as exc:
                delay = self._rng.uniform(0.5, 1.0) * min(self._restart_max_s,
                                                           self._restart_first_s * 2 ** min(attempt - 1, 20))
                self._problem(in_words(exc))
                log.warning("radio: scanner restart %d failed (%s); next try in %.1f s", attempt, in_words(exc), delay)
                self._trouble.clear()
                await wait_set(self._trouble, delay)  # or sooner, when told (bluetoothd back: hub/radio_bluez.py)
                continue
            self.health.restarts += 1
            self._trouble.clear()
            log.info("radio: scanning again (%s) after %d attempt(s); it stopped because: %s",
                     self.health.mode, attempt, problem)
            return

    def _detected(self, device: BLEDevice, adv: AdvertisementData) -> None:
        now = self._clock.monotonic()
        self._last_any = now
        data = adv.service_data.get(bthome.SERVICE_UUID)
        if data is None:
            return
        address = device.address.upper()
        self.health.last_frame_at = self._clock.time()
        data = bytes(data)
        # The same bytes again within REPEAT_S: heard, not handled again. Scanning actively,
        # BlueZ reports every advertisement (25 a second from a device advertising every 40 ms);
        # the protocol needs each change only (SPEC 1.9), and on the virtual Pi 18 devices'
        # repeats starved the hub's loop until systemd's watchdog killed it.
        last = self._last_data.get(address)
        if last is None or last[0] != data or now - last[1] >= REPEAT_S:
            if len(self._last_data) >= 1024:  # strangers at random addresses: bounded
                self._last_data.clear()
            self._last_data[address] = (data, now)
            self._on_frame(address, data, adv.rssi)  # first: it notices a device paired just now
        if self._wanted is None or self._wanted(address):
            self._seen[address] = device
            self._heard[address] = now

    def heard_recently(self, address: str, within_s: float) -> bool:
        """Heard in the last `within_s`, or known to be advertising now (`expect`)."""
        address = address.upper()
        now = self._clock.monotonic()
        heard = self._heard.get(address)
        return (heard is not None and now - heard <= within_s) or now < self._on_air_until.get(address, 0.0)

    def expect(self, address: str, seconds: float) -> None:
        """`address` advertises for `seconds` from now (what the protocol says a device does
        after a frame or an ack, SPEC 1.7), whether or not the scanner reports each repeat:
        BlueZ scanning passively reports a repeated advertisement once. 0 ends it."""
        address = address.upper()
        if address not in self._seen:
            return
        now = self._clock.monotonic()
        if seconds <= 0:
            self._on_air_until.pop(address, None)
        else:
            self._on_air_until[address] = max(self._on_air_until.get(address, 0.0), now + seconds)

    # -- acks -------------------------------------------------------------------------

    async def write_acks(self, address: str, next_ack: Callable[[], bytes | None], *, quick: bool = False) -> int:
        """Connect to `address` once and write every ack `next_ack()` gives (each made once the
        link is up, so it says the most the hub knows by then) until it gives None; disconnect.
        `next_ack()` is called again only once the ack it gave before is written (its write
        response came): the caller records it as written then.
        Returns how many were written (0, logged, when the link could not be made: the device
        re-sends its frame and the hub answers that repeat). One connection for all a device is
        owed: a device leaves the air soon after it is answered, and a second connection made
        then finds it gone (seen on BlueZ, issue 10).

        `quick`: one connection attempt, for acks that wait for the device's next frame anyway
        (kinds 2 and 3); else up to `connect_attempts`. Each attempt is made only while the
        device is advertising (see the module's docstring)."""
        device = self._seen.get(address)
        if device is None:
            log.warning("ack to %s not sent: device not seen by the scanner", address)
            return 0
        lock = self._locks.setdefault(address, asyncio.Lock())
        attempts = 1 if quick else self._connect_attempts
        async with lock:
            for attempt in range(1, attempts + 1):
                if attempt > 1:
                    await asyncio.sleep(0.1 * attempt)  # a short pause: other devices' attempts go first
                try:
                    client = await self._connect(device, address)
                except _NotAdvertising:
                    self.health.ack_failures += 1
                    log.info("ack to %s not sent: not advertising now; its next frame asks again", address)
                    return 0
                except (BleakError, asyncio.TimeoutError, OSError) as exc:
                    # establish_connection's error names the tier and what to do about it.
                    self.health.ack_failures += 1
                    log.warning("ack to %s not delivered (attempt %d of %d): %s", address, attempt, attempts,
                                in_words(exc))
                    continue
                written = 0
                try:
                    while (ack := next_ack()) is not None:
                        async with asyncio.timeout(WRITE_TIMEOUT_S):
                            await client.write_gatt_char(ACK_CHAR_UUID, ack, response=True)
                        written += 1
                        self.health.acks_written += 1
                except (BleakError, asyncio.TimeoutError, OSError) as exc:
                    self.health.ack_failures += 1
                    log.warning("ack to %s not delivered: %s", address, in_words(exc) if str(exc) else
                                f"no write response within {WRITE_TIMEOUT_S:.0f} s")
                finally:
                    try:
                        async with asyncio.timeout(WRITE_TIMEOUT_S):
                            await client.disconnect()
                    except (BleakError, asyncio.TimeoutError, OSError) as exc:
                        log.debug("disconnect from %s: %s", address, in_words(exc))
                return written
            return 0

    async def _connect(self, device: BLEDevice, address: str) -> BleakClient:
        """One connection attempt, in turn, while `address` advertises."""
        extra: dict[str, Any] = {}
        if self._adapter and self._backends.client is None:
            extra["bluez"] = {"adapter": self._adapter}
        async with self._initiator:
            if not self.heard_recently(address, ADVERTISING_S):
                raise _NotAdvertising
            attempt = asyncio.ensure_future(establish_connection(
                BleakClient, device, address, max_attempts=1, use_services_cache=False,
                timeout=self._connect_timeout_s, backend=self._backends.client, **extra))
            deadline = self._clock.monotonic() + self._connect_timeout_s + 5.0
            try:
                while True:
                    done, _ = await asyncio.wait({attempt}, timeout=0.2)
                    if done:
                        return attempt.result()
                    silent = not self.heard_recently(address, ASLEEP_S)
                    if silent or self._clock.monotonic() > deadline:
                        break
                attempt.cancel()
                await asyncio.wait({attempt})
                if not attempt.cancelled() and attempt.exception() is None:
                    return attempt.result()  # connected just as it was abandoned: use it
                if silent:
                    raise _NotAdvertising
                raise asyncio.TimeoutError(f"no connection within {self._connect_timeout_s:.0f} s")
            finally:
                if not attempt.done():  # we were cancelled ourselves
                    attempt.cancel()


def _both(first: Probe, second: Probe) -> Probe:
    async def probe() -> None:
        await first()
        await second()
    return probe


class _NotAdvertising(Exception):
    """The device stopped advertising (or never started) before a connection was made."""

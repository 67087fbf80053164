"""The chaos run: thousands of events from a simulated home while faults are injected at random.

    python -m safebox.tools.chaos [--seed 1] [--events 10000] [--devices 16] [--mix pendant:12,...]
                                  [--fault-scale 1] [--faults platform,air,devices] [--pace S]
                                  [--max-minutes 45] [--json] [--write [RESULTS.md]] [--workdir DIR]

A simulated home (tools/sim/home.SimHome: the real firmware on the `micropython` binary, the
hub and the receiver as real processes, real TLS) with --devices devices. Residents press
pendant buttons and open and close doors, concurrently, as fast as the firmware takes them
(each device keeps at most a few events waiting for their ack): 10,000 events are weeks of
a real home's presses, door openings and visits, compressed into minutes. Meanwhile, from a
seeded random schedule:

  platform   hub SIGKILLed and restarted; receiver killed and down for a while; receiver
             answering 500 or 503 to its next requests; requests timing out (a proxy that
             swallows them); answers lost after the platform stored the event (the hub must
             re-send and be told "duplicate"); the network refusing connections
  air        advertisements dropped (a share of them, for a while); acknowledgements lost
             (the ATT write carrying the ack, or its response, lost and the link cut)
  devices    rebooted mid-send (power cycle with events waiting); battery changed (off for
             a few seconds, flash kept)

Between the hub and the receiver sits a TCP proxy in this process (the hub's platform URL
points at it; TLS passes through it untouched), which is how timeouts, lost answers and
refused connections are made.

At the end every fault is undone, the home is given time to drain, and the counts are made:

  created        events the devices stored, from each firmware's own `event <counter> ...` lines
  stored         device events at the platform (its SQLite file)
  not yet        created, not stored, but still waiting in a device's flash or in the
                 hub's outbox at the end (late, not lost; the run is not ok)
  lost           created, not stored and nowhere waiting                    must be 0
  stored twice   more than one row for a (device, counter)                  must be 0
  wrong content  stored with another type than the firmware made           must be 0
  phantom        stored but never created by a firmware                     must be 0
  dead letters   events the hub gave up on (platform refused them)          must be 0
  dropped        events a device dropped because its store was full         must be 0
  alarms         toilet_overdue judged by what the hub heard (the times it put on the two
                 door events of each visit): missed (due, not raised)       must be 0
                 unexpected (raised, not due)                               must be 0
                 and how late they reached the platform (worst delay); visits that faults
                 hid from the hub, or made look long, counted apart with their cause

Exit status 1 when a must-be-zero count is not zero or an event is still waiting. The load
phase stops at --max-minutes, or at SIGINT/SIGTERM (a second one stops at once); the home
then drains as usual and the counts are made. Fixed seed: the same choices of buttons,
doors, faults and their timing; the interleaving of processes still varies from run to run.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import random
import signal
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from safebox.tools.bench import Table, generated_line, machine_line, percentile
from safebox.tools.sim import lines, snapshot

PENDING_CAP = 6  # events a device may have waiting for their ack before the residents wait
TOILET_LIMIT_S = 10.0  # rules.toilet.overdue_after_s for the run (the hub's minimum)
STARTUP_GRACE_S = 3.0  # rules.startup_grace_s for the run
_PENDANT_TYPES = {"emergency", "community_service", "life_service"}
DEFAULT_MIX = "pendant:12,front_door:2,toilet_door:2"


def ack_loss(share: float, rng: random.Random) -> tuple[Callable[[str, str, bytes], bool], Counter[str]]:
    """An Air.acl_filter that loses `share` of ack writes (ATT Write Request, 20-byte ack) and of
    write responses, and the counts of what it lost ("write", "response")."""
    lost = Counter[str]()

    def lose(source: str, destination: str, data: bytes) -> bool:
        if len(data) < 5 or data[2:4] != b"\x04\x00":
            return False  # not ATT
        is_ack_write = data[4] == 0x12 and len(data) == 4 + 3 + 13
        is_write_response = data[4] == 0x13 and len(data) == 5
        if (is_ack_write or is_write_response) and rng.random() < share:
            lost["write" if is_ack_write else "response"] += 1
            return True
        return False

    return lose, lost


# -- the proxy between the hub and the receiver ------------------------------------------------------

class FaultProxy:
    """A TCP proxy whose mode decides what happens to the hub's HTTPS traffic.

    pass      everything goes through
    refuse    the listening socket is closed: connections are refused
    blackhole connections are accepted and nothing is forwarded either way: requests time out
    mute      requests reach the receiver, answers are swallowed: stored, but the hub never hears so
    """

    def __init__(self, target: Callable[[], int]) -> None:
        self._target = target
        self.mode = "pass"
        self.port = 0
        self._server: asyncio.Server | None = None
        self._conns: set[asyncio.StreamWriter] = set()
        self.connections = 0

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self.port}"

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", self.port)
        self.port = self._server.sockets[0].getsockname()[1]

    async def set_mode(self, mode: str) -> None:
        if mode == self.mode:
            return
        old, self.mode = self.mode, mode
        if mode in ("refuse", "blackhole", "mute"):
            for w in list(self._conns):  # kept-alive connections are cut as a failing network would
                w.transport.abort()
        if mode == "refuse" and self._server is not None:
            self._server.close()
            self._server = None
        if old == "refuse" and mode != "refuse":
            for _ in range(50):
                try:
                    await self.start()
                    break
                except OSError:
                    await asyncio.sleep(0.1)

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            self._server = None
        for w in list(self._conns):
            w.transport.abort()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        if self.mode == "refuse":
            writer.transport.abort()
            return
        try:
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self._target())
        except (OSError, ValueError):
            writer.transport.abort()  # the receiver is down: the hub sees the connection drop
            return
        self._conns |= {writer, up_writer}
        try:
            await asyncio.gather(self._pump(reader, up_writer, "up"), self._pump(up_reader, writer, "down"),
                                 return_exceptions=True)
        finally:
            self._conns -= {writer, up_writer}
            for w in (writer, up_writer):
                w.transport.abort()

    async def _pump(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, direction: str) -> None:
        while data := await reader.read(65536):
            if self.mode == "blackhole" or (self.mode == "mute" and direction == "down"):
                continue
            writer.write(data)
            await writer.drain()
        writer.transport.abort()


# -- what happened ---------------------------------------------------------------------------------

@dataclass
class Created:
    device: str
    counter: int
    type: str
    at: float  # when the simulator saw the firmware's line


@dataclass
class Visit:
    """A toilet visit: the door closed at `closed_at`, opened at `opened_at`; the counters of
    the two door events the firmware made (None: not registered, the device was off)."""

    device: str
    closed_at: float
    opened_at: float = 0.0
    close_counter: int | None = None
    open_counter: int | None = None


@dataclass
class Fault:
    kind: str
    start: float
    end: float = 0.0
    detail: str = ""


@dataclass
class Result:
    seed: int
    devices: dict[str, int]
    target: int
    created: int = 0
    stored: int = 0
    lost: int = 0
    undelivered_on_devices: int = 0  # still in a device's flash, unacknowledged, at the end: late, not lost
    undelivered_at_hub: int = 0  # in the hub's outbox at the end: late, not lost
    stored_twice: int = 0
    wrong_content: int = 0
    phantom: int = 0
    dead_letters: int = 0
    dropped: int = 0
    left_in_outbox: int = 0
    presses_not_registered: int = 0
    hub_events_stored: int = 0
    faults: dict[str, int] = field(default_factory=dict)
    seconds_total: float = 0.0
    seconds_load: float = 0.0
    seconds_drain: float = 0.0
    delivery_ms: dict[str, float] = field(default_factory=dict)
    urgent_delivery_ms: dict[str, float] = field(default_factory=dict)
    alarms: dict[str, Any] = field(default_factory=dict)
    acks_per_event: float = 0.0
    pace_s: float = 0.0
    injectors: list[str] = field(default_factory=list)
    lost_ids: list[str] = field(default_factory=list)
    phantom_ids: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    alarms_missed: int = 0  # toilet_overdue the hub should have raised by what it knew, and did not
    alarms_unexpected: int = 0  # toilet_overdue the hub raised though by what it knew the door had opened

    MUST_BE_ZERO = ("lost", "stored_twice", "wrong_content", "phantom", "dead_letters", "dropped",
                    "alarms_missed", "alarms_unexpected")

    @property
    def ok(self) -> bool:
        """Nothing lost or doubled, the target reached, and everything delivered by the end."""
        return all(getattr(self, name) == 0 for name in self.MUST_BE_ZERO) and self.created >= self.target \
            and self.undelivered_on_devices == 0 and self.undelivered_at_hub == 0


# -- the run -----------------------------------------------------------------------------------------

class DrivenDevice:
    """The simulator's view of one device."""

    def __init__(self, sim: Any, role: str, rng: random.Random) -> None:
        self.sim = sim
        self.role = role
        self.rng = rng
        self.on = True
        self.busy_fault = False
        self.parsed = 0
        self.created: dict[int, str] = {}
        self.acked: set[int] = set()
        self.dropped: list[str] = []
        self.is_open = False

    @property
    def fw(self) -> Any:
        return self.sim.firmware

    def sync(self) -> None:
        output = self.fw.lines
        while self.parsed < len(output):
            line = lines.device_line(output[self.parsed])
            self.parsed += 1
            if isinstance(line, lines.Event):
                self.created[line.counter] = line.type
            elif isinstance(line, lines.Acked):
                self.acked.add(line.counter)
            elif isinstance(line, lines.Dropped):
                self.dropped.append(line.what)

    @property
    def pending(self) -> int:
        """Events made and not yet acknowledged, by the firmware's lines (paces the residents)."""
        self.sync()
        return len(self.created.keys() - self.acked)

    def held(self) -> set[int]:
        """The counters of the events on the device's flash, waiting for their ack: its store
        file, the truth even when an `acked` line was lost with the power (a process killed
        just after it took an ack)."""
        try:
            return {int(entry[0]) for entry in json.loads((self.fw.fs_dir / "events.json").read_text())}
        except (OSError, ValueError, TypeError, IndexError):
            self.sync()
            return set(self.created.keys() - self.acked)


class ChaosRun:
    def __init__(self, *, seed: int, events: int, mix: dict[str, int], workdir: Path,
                 fault_scale: float = 1.0, log: Callable[[str], None] | None = None,
                 injectors: tuple[str, ...] = ("platform", "air", "devices"),
                 max_load_s: float = 45 * 60, max_drain_s: float = 10 * 60, pace_s: float = 0.0,
                 fault_limit: int | None = None) -> None:
        self.injectors = injectors
        self.max_load_s = max_load_s
        self.max_drain_s = max_drain_s
        self.hub_lines: list[str] = []  # the output of hub processes that were killed
        self.interrupted = False
        self.pace_s = pace_s
        self.fault_limit = fault_limit
        self._signals: list[int] = []
        self._made: dict[Any, int] = {}  # faults made per injector task
        self.seed = seed
        self.target = events
        self.mix = mix
        self.workdir = workdir
        self.fault_scale = fault_scale
        self.rng = random.Random(seed)
        self.log = log or (lambda text: print(text, file=sys.stderr, flush=True))
        self.devs: list[DrivenDevice] = []
        self.faults: list[Fault] = []
        self.times: dict[tuple[str, int], float] = {}
        self.visits: list[Visit] = []
        self.ended_at = 0.0  # when the counts were made
        self.hub_down: list[tuple[float, float]] = []  # (SIGKILLed at, up again at); rules then wait a grace
        self.not_registered = 0
        self.stop = asyncio.Event()
        self.home: Any = None
        self.proxy: FaultProxy | None = None

    # -- counts ---------------------------------------------------------------------------------
    def created_total(self) -> int:
        return sum(len(d.created) for d in self.devs)

    def platform(self) -> list[snapshot.PlatformEvent]:
        return snapshot.platform(Path(self.home.receiver_db))

    def hub(self) -> snapshot.HubSnapshot:
        return snapshot.hub(Path(self.home.hub_state) / "hub.db")

    # -- residents ----------------------------------------------------------------------------------
    async def _wait_event(self, dev: DrivenDevice, mark: int, timeout: float = 3.0) -> int | None:
        try:
            line = await dev.fw.wait_for_line(lines.Event.pattern(), timeout=timeout, start=mark)
        except TimeoutError:
            self.not_registered += 1
            return None
        counter = lines.Event.read(line).counter
        self.times[(dev.sim.id, counter)] = time.time()
        return counter

    async def _ready(self, dev: DrivenDevice) -> bool:
        while not self.stop.is_set():
            if dev.on and dev.pending < PENDING_CAP:
                return True
            await asyncio.sleep(0.05)
        return False

    async def pendant(self, dev: DrivenDevice) -> None:
        buttons = ["emergency", "community_service", "life_service"]
        while await self._ready(dev):
            button = dev.rng.choices(buttons, weights=(2, 4, 4))[0]
            hold = 2.3 if dev.rng.random() < 0.02 else dev.rng.uniform(0.08, 0.15)
            mark = len(dev.fw.lines)
            await self.home.press(dev.sim, button, hold)
            await self._wait_event(dev, mark)
            await asyncio.sleep(dev.rng.uniform(0.08, 0.3) + self._pause(dev))

    async def door(self, dev: DrivenDevice) -> None:
        while await self._ready(dev):
            dev.is_open = not dev.is_open
            mark = len(dev.fw.lines)
            dev.sim.set_door(dev.is_open)
            await self._wait_event(dev, mark)
            await asyncio.sleep(dev.rng.uniform(0.2, 1.0) + self._pause(dev))

    async def toilet(self, dev: DrivenDevice) -> None:
        """Visits: the door closes (someone in), stays closed a short or a long while, opens."""
        mark = len(dev.fw.lines)
        dev.sim.set_door(True)  # start from an open door (vacant)
        dev.is_open = True
        await self._wait_event(dev, mark)
        while await self._ready(dev):
            mark = len(dev.fw.lines)
            dev.sim.set_door(False)
            dev.is_open = False
            visit = Visit(dev.sim.id, time.time())
            visit.close_counter = await self._wait_event(dev, mark)
            long = dev.rng.random() < 0.35
            stay = TOILET_LIMIT_S + dev.rng.uniform(2.5, 5) if long else dev.rng.uniform(0.5, TOILET_LIMIT_S - 3)
            await self._sleep_unless_stopped(stay)
            mark = len(dev.fw.lines)
            dev.sim.set_door(True)
            dev.is_open = True
            visit.opened_at = time.time()
            self.visits.append(visit)
            visit.open_counter = await self._wait_event(dev, mark)
            await asyncio.sleep(dev.rng.uniform(0.5, 2.0))

    def _pause(self, dev: DrivenDevice) -> float:
        """With --pace: an exponential pause of that mean between a resident's actions."""
        return dev.rng.expovariate(1.0 / self.pace_s) if self.pace_s > 0 else 0.0

    async def _sleep_unless_stopped(self, seconds: float) -> None:
        try:
            await asyncio.wait_for(self.stop.wait(), seconds)
        except TimeoutError:
            pass

    # -- faults ------------------------------------------------------------------------------------------
    def _record(self, kind: str, detail: str = "") -> Fault:
        fault = Fault(kind, time.time(), detail=detail)
        self.faults.append(fault)
        self.log(f"  fault: {kind} {detail}".rstrip())
        return fault

    async def _gap(self, rng: random.Random, mean_s: float) -> bool:
        """Sleep an exponential gap; False once the run is stopping (or this injector made its
        `fault_limit` faults)."""
        task = asyncio.current_task()
        made = self._made.get(task, 0)
        if self.fault_limit is not None and made >= self.fault_limit:
            await self.stop.wait()
            return False
        await self._sleep_unless_stopped(rng.expovariate(1.0 / (mean_s * self.fault_scale)))
        self._made[task] = made + 1
        return not self.stop.is_set()

    async def platform_faults(self, rng: random.Random) -> None:
        kinds: list[tuple[str, int, Callable[[random.Random, Fault], Awaitable[None]]]] = [
            ("hub SIGKILL + restart", 3, self._hub_kill),
            ("receiver killed, down a while", 2, self._receiver_down),
            ("receiver answers 500s", 2, self._receiver_errors),
            ("receiver answers 503 retry-later", 1, self._receiver_busy),
            ("requests time out", 2, self._proxy_mode("blackhole")),
            ("answers lost after storing", 2, self._proxy_mode("mute")),
            ("network refuses connections", 1, self._proxy_mode("refuse")),
        ]
        while await self._gap(rng, 12.0):
            kind, _, act = rng.choices(kinds, weights=[w for _, w, _ in kinds])[0]
            fault = self._record(kind)
            try:
                await act(rng, fault)
            finally:
                fault.end = time.time()

    async def air_faults(self, rng: random.Random) -> None:
        while await self._gap(rng, 10.0):
            if rng.random() < 0.5:
                rate = rng.uniform(0.3, 0.9)
                hold = rng.uniform(3, 10)
                fault = self._record("advertisements dropped", f"{rate:.0%} for {hold:.1f} s")
                self.home.air.drop_rate = rate
                await asyncio.sleep(hold)
                self.home.air.drop_rate = 0.0
            else:
                share = rng.uniform(0.3, 0.8)
                fault = self._record("acknowledgements lost", f"{share:.0%} of ack writes or their responses")
                lose, lost = ack_loss(share, random.Random(rng.random()))
                self.home.air.acl_filter = lose
                await asyncio.sleep(rng.uniform(3, 10))
                self.home.air.acl_filter = None
                fault.detail += f": {lost['write']} ack writes and {lost['response']} responses lost"
            fault.end = time.time()

    async def device_faults(self, rng: random.Random) -> None:
        while await self._gap(rng, 4.0):
            candidates = [d for d in self.devs if d.on and not d.busy_fault]
            if not candidates:
                continue
            waiting = [d for d in candidates if d.pending > 0]
            if rng.random() < 0.6:
                dev = rng.choice(waiting or candidates)
                fault = self._record("device rebooted mid-send", f"{dev.sim.id} with {dev.pending} event(s) waiting")
                await self._power_cycle(dev, 0.0)
            else:
                dev = rng.choice(candidates)
                off = rng.uniform(1.0, 4.0)
                fault = self._record("battery changed", f"{dev.sim.id} off {off:.1f} s, {dev.pending} waiting")
                await self._power_cycle(dev, off)
            fault.end = time.time()

    async def _power_cycle(self, dev: DrivenDevice, off_s: float) -> None:
        dev.on = False
        dev.busy_fault = True
        try:
            await dev.fw.kill()
            if off_s:
                await asyncio.sleep(off_s)
            mark = len(dev.fw.lines)
            await dev.fw.restart()
            try:
                await dev.fw.wait_for_line(lines.Ready.pattern(), timeout=15, start=mark)
            except TimeoutError:
                self.log(f"  {dev.sim.id} did not say ready after its restart")
        finally:
            dev.on = True
            dev.busy_fault = False

    async def _hub_kill(self, rng: random.Random, fault: Fault) -> None:
        killed_at = time.time()
        await self.home.hub.kill()
        self.hub_lines += [*self.home.hub.lines, "---- SIGKILL ----"]
        down = rng.uniform(0.5, 4.0)
        fault.detail = f"down {down:.1f} s"
        await asyncio.sleep(down)
        await self._start_hub()
        self.hub_down.append((killed_at, time.time()))

    async def _start_hub(self) -> None:
        for attempt in range(3):
            try:
                await self.home.start_hub()
                return
            except Exception as exc:  # noqa: BLE001 - retried, and reported if it keeps failing
                self.log(f"  hub did not start (attempt {attempt + 1}): {exc}")
                if self.home.hub is not None:
                    await self.home.hub.kill()
                await asyncio.sleep(1.0)
        raise RuntimeError("the hub does not start again")

    async def _restart_receiver(self, extra: tuple[str, ...] = (), *, kill: bool = True, down_s: float = 0.0) -> None:
        from safebox.tools.sim.processes import ChildProcess
        old = self.home.receiver
        args = list(old.argv[3:])
        for flag in ("--fail-first", "--fail-status"):
            if flag in args:
                i = args.index(flag)
                del args[i:i + 2]
        args[args.index("--port") + 1] = "0"
        await (old.kill() if kill else old.stop())
        if down_s:
            await asyncio.sleep(down_s)
        new = ChildProcess("receiver", old.argv[2], *args, *extra)
        m = await new.start(lines.Listening.pattern())
        self.home.receiver = new
        self.home.platform_url = m["url"]

    async def _receiver_down(self, rng: random.Random, fault: Fault) -> None:
        down = rng.uniform(2.0, 10.0)
        fault.detail = f"down {down:.1f} s"
        await self._restart_receiver(down_s=down)

    async def _receiver_errors(self, rng: random.Random, fault: Fault) -> None:
        n = rng.randint(3, 20)
        fault.detail = f"next {n} requests"
        await self._restart_receiver(("--fail-first", str(n), "--fail-status", "500"), kill=False)

    async def _receiver_busy(self, rng: random.Random, fault: Fault) -> None:
        n = rng.randint(2, 8)
        fault.detail = f"next {n} requests"
        await self._restart_receiver(("--fail-first", str(n), "--fail-status", "503"), kill=False)

    def _proxy_mode(self, mode: str) -> Callable[[random.Random, Fault], Awaitable[None]]:
        async def act(rng: random.Random, fault: Fault) -> None:
            assert self.proxy is not None
            hold = rng.uniform(2.0, 8.0)
            fault.detail = f"for {hold:.1f} s"
            await self.proxy.set_mode(mode)
            await asyncio.sleep(hold)
            await self.proxy.set_mode("pass")
        return act

    # -- the whole run ----------------------------------------------------------------------------------
    async def run(self) -> Result:
        from safebox.tools.sim.home import SimHome

        started = time.time()
        result = Result(self.seed, dict(self.mix), self.target, pace_s=self.pace_s,
                        injectors=list(self.injectors))
        self.proxy = FaultProxy(lambda: int(self.home.platform_url.rsplit(":", 1)[1]))
        await self.proxy.start()
        home = SimHome(self.workdir)
        home.hub_platform_url = self.proxy.url
        home.hub_config_extra = (f"\n[rules]\nstartup_grace_s = {STARTUP_GRACE_S}\n\n"
                                 f"[rules.toilet]\noverdue_after_s = {TOILET_LIMIT_S}\n")
        self.home = home
        try:
            async with home:
                for role, count in self.mix.items():
                    for _ in range(count):
                        sim = await home.add_device(role, role.replace("_", " "))
                        self.devs.append(DrivenDevice(sim, role, random.Random(f"{self.seed}-{len(self.devs)}")))
                self.log(f"home up: {len(self.devs)} devices ({', '.join(f'{n} {r}' for r, n in self.mix.items())}),"
                         f" hub {home.hub_id}, platform {home.platform_url} behind proxy {self.proxy.url}")
                load_started = time.time()
                drivers = [asyncio.create_task(
                    {"pendant": self.pendant, "front_door": self.door, "toilet_door": self.toilet}[d.role](d))
                    for d in self.devs]
                chosen = {"platform": self.platform_faults, "air": self.air_faults, "devices": self.device_faults}
                injectors = [asyncio.create_task(f(random.Random(f"{self.seed}-{f.__name__}")))
                             for name, f in chosen.items() if name in self.injectors]
                last = 0.0
                self._watch_signals()
                while self.created_total() < self.target:
                    if self.interrupted:
                        result.notes.append(f"load stopped by a signal with {self.created_total():,} of "
                                            f"{self.target:,} events created")
                        self.log(result.notes[-1])
                        break
                    if time.time() - load_started > self.max_load_s:
                        result.notes.append(f"load stopped at the time budget ({self.max_load_s / 60:.0f} min) with "
                                            f"{self.created_total():,} of {self.target:,} events created")
                        self.log(result.notes[-1])
                        break
                    await asyncio.sleep(0.5)
                    for task in drivers + injectors:
                        if task.done() and task.exception() is not None:
                            raise task.exception()  # type: ignore[misc]
                    if time.time() - last > 10:
                        last = time.time()
                        rate = self.created_total() / max(time.time() - load_started, 1e-6)
                        self.log(f"  {self.created_total():,} events created, {rate:.1f}/s, "
                                 f"{len(self.faults)} faults so far")
                self.stop.set()
                await asyncio.gather(*drivers, *injectors)
                result.seconds_load = time.time() - load_started
                await self._undo_faults()
                drain_started = time.time()
                await self._drain(result)
                result.seconds_drain = time.time() - drain_started
                self._count(result)
        finally:
            self._unwatch_signals()
            await self.proxy.close()
            self._save_logs()
        result.seconds_total = time.time() - started
        return result

    def _save_logs(self) -> None:
        """Every process's output lines into <workdir>/logs, for looking into a failed count."""
        try:
            logs = self.workdir / "logs"
            logs.mkdir(parents=True, exist_ok=True)
            if self.home is not None and self.home.hub is not None:
                (logs / "hub.log").write_text("\n".join(self.hub_lines + self.home.hub.lines) + "\n")
            if self.home is not None and self.home.receiver is not None:
                (logs / "receiver.log").write_text("\n".join(self.home.receiver.lines) + "\n")
            (logs / "visits.json").write_text(json.dumps({  # what the alarm counts were judged against
                "visits": [asdict(v) for v in self.visits], "hub_down": self.hub_down, "ended_at": self.ended_at}))
            for d in self.devs:
                (logs / f"{d.sim.id}.log").write_text("\n".join(d.fw.lines) + "\n")
            (logs / "faults.json").write_text(json.dumps([asdict(f) for f in self.faults], indent=1))
        except OSError as exc:
            self.log(f"logs not saved: {exc}")

    def _watch_signals(self) -> None:
        """SIGINT/SIGTERM end the load phase: faults are undone, the home drains and the counts are
        made as usual. A second signal stops at once."""
        loop = asyncio.get_running_loop()
        main = asyncio.current_task()

        def first(signum: int) -> None:
            if self.interrupted and main is not None:
                main.cancel()
            self.interrupted = True
            self.log(f"signal {signum}: ending the load phase (again to stop at once)")

        for signum in (signal.SIGINT, signal.SIGTERM):
            try:
                loop.add_signal_handler(signum, first, signum)
                self._signals.append(signum)
            except (NotImplementedError, RuntimeError, ValueError):  # not the main thread, or not Unix
                pass

    def _unwatch_signals(self) -> None:
        loop = asyncio.get_running_loop()
        for signum in self._signals:
            loop.remove_signal_handler(signum)
        self._signals.clear()

    async def _undo_faults(self) -> None:
        assert self.proxy is not None
        await self.proxy.set_mode("pass")
        self.home.air.drop_rate = 0.0
        self.home.air.acl_filter = None
        if not self.home.hub.running:
            await self._start_hub()
        if not self.home.receiver.running:
            await self._restart_receiver()

    async def _drain(self, result: Result) -> None:
        self.log(f"load done: {self.created_total():,} events created; draining (faults undone)")
        deadline = time.time() + self.max_drain_s
        last = 0.0
        while time.time() < deadline:
            for d in self.devs:
                d.sync()
            wanted = {f"{d.sim.id}-{c}" for d in self.devs for c in d.created}
            stored = {e.event_id for e in self.platform()}
            missing = wanted - stored
            held = sum(len(d.held()) for d in self.devs)
            if not missing and held == 0:
                break
            if time.time() - last > 10:
                last = time.time()
                self.log(f"  {len(missing):,} events not at the platform yet, {held} waiting on devices")
            await asyncio.sleep(0.5)
        else:
            result.notes.append(f"drain stopped at its time budget ({self.max_drain_s / 60:.0f} min)")
        await asyncio.sleep(3.0)  # time for a wrong second copy to arrive

    def _count(self, r: Result) -> None:
        self.ended_at = time.time()
        for d in self.devs:
            d.sync()
        created = {(d.sim.id, c): t for d in self.devs for c, t in d.created.items()}
        rows = self.platform()
        hub = self.hub()
        device_rows = [e for e in rows if e.device_id is not None]
        per_key = Counter((e.device_id, e.counter) for e in device_rows)
        stored = {(e.device_id, e.counter): e for e in device_rows}
        r.created = len(created)
        r.stored = len(stored)
        missing = created.keys() - stored.keys()
        on_devices = {(d.sim.id, c) for d in self.devs for c in d.held()}
        at_hub = {tuple(w.event_id.rsplit("-", 1)) for w in hub.outbox}
        at_hub = {(dev, int(c)) for dev, c in at_hub if c.isdigit()}
        r.undelivered_on_devices = len(missing & on_devices)
        r.undelivered_at_hub = len((missing - on_devices) & at_hub)
        r.lost_ids = sorted(f"{dev}-{c}" for dev, c in missing - on_devices - at_hub)
        r.lost = len(r.lost_ids)
        r.stored_twice = sum(n - 1 for n in per_key.values() if n > 1) + \
            sum(n - 1 for n in Counter(e.event_id for e in rows).values() if n > 1)
        r.phantom_ids = sorted(f"{dev}-{c}" for dev, c in stored.keys() - created.keys())
        r.phantom = len(r.phantom_ids)
        r.wrong_content = sum(1 for key, t in created.items() if key in stored and stored[key].type != t)
        r.hub_events_stored = len(rows) - len(device_rows)
        r.dead_letters = len(hub.dead_letters)
        r.left_in_outbox = -1 if hub.error else len(hub.outbox)
        r.dropped = sum(len(d.dropped) for d in self.devs)
        r.presses_not_registered = self.not_registered
        r.faults = dict(Counter(f.kind for f in self.faults))
        from safebox.tools.sim.home import parse_time
        delays = {key: (parse_time(stored[key].received_at) - self.times[key]) * 1000
                  for key in created.keys() & stored.keys() if key in self.times}
        r.delivery_ms = _stats(list(delays.values()))
        r.urgent_delivery_ms = _stats([v for k, v in delays.items() if created[k] in _PENDANT_TYPES])
        acks = sum(1 for line in self.hub_lines + self.home.hub.lines if lines.AckWritten.read(line))
        r.acks_per_event = round(acks / max(1, r.created), 2)
        r.alarms = self._alarms(rows)
        r.alarms_missed, r.alarms_unexpected = r.alarms["missed"], r.alarms["unexpected"]
        if r.lost:
            r.notes.append(f"lost (first 20): {', '.join(r.lost_ids[:20])}")
        if r.phantom:
            r.notes.append(f"phantom (first 20): {', '.join(r.phantom_ids[:20])}")

    def _alarms(self, rows: list[snapshot.PlatformEvent]) -> dict[str, Any]:
        """toilet_overdue at the platform, judged by what the hub heard: its door events, at the
        times it put on them (occurred_at: when it heard them), make its visits (closed -> in,
        opened -> out, the door-only rule). A visit it heard last `limit` or longer (or not end)
        must have its alarm; one it heard end sooner must not. Faults that delay door events
        change what the hub can know, so the residents' real visits are compared with what it
        heard and the differences counted apart, with their cause."""
        from safebox.tools.sim.home import parse_time
        toilets = {d.sim.id for d in self.devs if d.role == "toilet_door"} | {v.device for v in self.visits}
        heard: dict[tuple[str, int], float] = {}
        doors: dict[str, list[tuple[float, str]]] = {}
        raised = []
        for e in rows:
            doc = json.loads(e.body)
            if e.device_id is not None:
                heard[(e.device_id, e.counter)] = parse_time(doc["occurred_at"])
                if e.device_id in toilets and e.type in ("door_opened", "door_closed"):
                    doors.setdefault(e.device_id, []).append((heard[(e.device_id, e.counter)], e.type))
            elif e.type == "toilet_overdue":
                data = doc.get("data", {})
                since = parse_time(data["since"])
                raised.append({"event_id": e.event_id, "device": (data.get("device") or {}).get("id"), "since": since,
                               "due": since + float(data.get("limit_s", TOILET_LIMIT_S)),
                               "received": parse_time(e.received_at)})
        # (device, start rounded to ms) of the hub's visits: alarm due, not due, either (within a
        # second of the limit: the tick and the frames race), excused (due while a restarted hub
        # waited its startup grace, and over before it ended: by design it waits for the frames
        # the devices kept, and here those said the person was out)
        due, not_due, either, excused = set(), set(), set(), set()
        for device, moves in doors.items():
            start = None
            for at, type_ in sorted(moves) + [(self.ended_at, "door_opened")]:
                if type_ == "door_closed" and start is None:
                    start = at
                elif type_ == "door_opened" and start is not None:
                    key, limit_at = (device, round(start, 3)), start + TOILET_LIMIT_S
                    if at - start >= TOILET_LIMIT_S + 1.0:
                        graced = any(k - 1.0 <= limit_at and at <= r + STARTUP_GRACE_S + 1.0 for k, r in self.hub_down)
                        (excused if graced else due).add(key)
                    elif at - start <= TOILET_LIMIT_S - 1.0:
                        not_due.add(key)
                    else:
                        either.add(key)
                    start = None
        alarms = {(a["device"], round(a["since"], 3)): a for a in raised}
        missed = sorted(due - alarms.keys())
        unexpected = [a for key, a in alarms.items() if key not in due | either | excused]
        late = [alarms[key]["received"] - alarms[key]["due"] for key in due & alarms.keys()]
        hidden = looked_long = unregistered = 0
        for v in self.visits:
            start, end = heard.get((v.device, v.close_counter or -1)), heard.get((v.device, v.open_counter or -1))
            if start is None or end is None:
                unregistered += 1  # a door move the device did not register (it was off)
            elif v.opened_at - v.closed_at >= TOILET_LIMIT_S and end - start < TOILET_LIMIT_S - 1.0:
                hidden += 1
            elif v.opened_at - v.closed_at < TOILET_LIMIT_S and end - start >= TOILET_LIMIT_S + 1.0:
                looked_long += 1
        return {
            "limit_s": TOILET_LIMIT_S,
            "visits": len(self.visits),
            "long_visits": sum(1 for v in self.visits if v.opened_at - v.closed_at >= TOILET_LIMIT_S),
            "due": len(due),
            "raised": len(raised),
            "missed": len(missed),
            "unexpected": len(unexpected),
            "hidden_by_late_door_events": hidden,
            "short_visits_that_looked_long": looked_long,
            "door_moves_not_registered": unregistered,
            "due_within_a_restart_grace": len(excused),
            "late_s": _stats([x * 1000 for x in late], scale=0.001),
            "late_over_5s": sum(1 for x in late if x > 5),
            "missed_details": [f"{device} closed (heard) at {start:.3f}" for device, start in missed[:10]],
            "unexpected_details": [f"{a['event_id']} since {a['since']:.3f}" for a in unexpected[:10]],
        }


def _stats(values: list[float], scale: float = 1.0) -> dict[str, float]:
    if not values:
        return {}
    return {"n": len(values), "median": round(percentile(values, 50) * scale, 2),
            "p99": round(percentile(values, 99) * scale, 2), "max": round(max(values) * scale, 2)}


# -- output -------------------------------------------------------------------------------------------

def tables(r: Result) -> list[Table]:
    def verdict(name: str) -> str:
        return "ok" if getattr(r, name) == 0 else "FAIL"

    counts = Table(
        f"Chaos run: {r.created:,} events from {sum(r.devices.values())} devices, seed {r.seed}",
        ["count", "value", "must be"],
        [["events created (firmware `event` lines)", r.created, f">= {r.target:,}"],
         ["stored at the platform (device events)", r.stored, "= created"],
         ["not at the platform yet: still in a device's flash, unacknowledged", r.undelivered_on_devices,
          "0 (late, not lost)"],
         ["not at the platform yet: in the hub's outbox", r.undelivered_at_hub, "0 (late, not lost)"],
         ["lost (neither at the platform, nor on a device, nor at the hub)", r.lost, f"0 ({verdict('lost')})"],
         ["stored twice", r.stored_twice, f"0 ({verdict('stored_twice')})"],
         ["stored with the wrong type", r.wrong_content, f"0 ({verdict('wrong_content')})"],
         ["phantom (stored, never created)", r.phantom, f"0 ({verdict('phantom')})"],
         ["dead letters at the hub", r.dead_letters, f"0 ({verdict('dead_letters')})"],
         ["dropped by a device (store full)", r.dropped, f"0 ({verdict('dropped')})"],
         ["toilet alarms missed (due by what the hub heard, not raised)", r.alarms_missed,
          f"0 ({verdict('alarms_missed')})"],
         ["toilet alarms unexpected (raised, not due by what the hub heard)", r.alarms_unexpected,
          f"0 ({verdict('alarms_unexpected')})"],
         ["left in the hub's outbox at the end", r.left_in_outbox, "-"],
         ["hub events stored (rules, heartbeats)", r.hub_events_stored, "-"],
         ["presses the firmware did not register (device off)", r.presses_not_registered, "-"]],
        [f"devices: {', '.join(f'{n} {k}' for k, n in r.devices.items())}; load {r.seconds_load:.0f} s "
         f"({r.created / max(r.seconds_load, 1e-6):.1f} events/s), drain {r.seconds_drain:.0f} s, "
         f"total {r.seconds_total:.0f} s (real time).",
         f"acks written per event: {r.acks_per_event}, one BLE connection each (kind 2 'delivered' "
         f"in place of kind 1 'heard' when the platform answered while the link was made); "
         f"fault injectors: {', '.join(r.injectors) or 'none'}; residents' pace: "
         + (f"a pause of {r.pace_s:g} s on average between one resident's actions." if r.pace_s else
            "as fast as each device takes them (up to 6 events waiting for their ack)."),
         *r.notes, f"machine: {machine_line()}"])
    faults = Table("Faults injected (seeded schedule)", ["fault", "times"],
                   [[k, n] for k, n in sorted(r.faults.items(), key=lambda kv: -kv[1])],
                   [f"{sum(r.faults.values())} faults in {r.seconds_load:.0f} s of load."])
    d, u, a = r.delivery_ms, r.urgent_delivery_ms, r.alarms
    late = a.get("late_s", {})
    timing = Table("Delivery under faults and alarms", ["measure", "n", "median", "p99", "worst"],
                   [["device event: line seen -> stored at the platform (ms)", d.get("n", 0), d.get("median", "-"),
                     d.get("p99", "-"), d.get("max", "-")],
                    ["pendant button events only (ms)", u.get("n", 0), u.get("median", "-"), u.get("p99", "-"),
                     u.get("max", "-")],
                    [f"toilet_overdue: due -> stored at the platform (s), limit {a.get('limit_s')} s",
                     late.get("n", 0), late.get("median", "-"), late.get("p99", "-"), late.get("max", "-")]],
                   [f"toilet visits {a.get('visits', 0)} ({a.get('long_visits', 0)} longer than the limit); "
                    f"alarms due by what the hub heard {a.get('due', 0)}: raised {a.get('raised', 0)}, missed {a.get('missed', 0)} "
                    f"(must be 0), unexpected {a.get('unexpected', 0)} (must be 0), more than 5 s late "
                    f"{a.get('late_over_5s', 0)}.",
                    f"faults that delay door events change what the hub can know: long visits it heard as short "
                    f"(\"closed\" reached it late) {a.get('hidden_by_late_door_events', 0)}; short visits it heard as "
                    f"long (\"open\" reached it late: an alarm the operator finds needless) "
                    f"{a.get('short_visits_that_looked_long', 0)}; door moves not registered (device off) "
                    f"{a.get('door_moves_not_registered', 0)}; visits that fell due while a restarted hub waited "
                    f"its startup grace ({STARTUP_GRACE_S:g} s, for the frames the devices kept) and ended within it "
                    f"{a.get('due_within_a_restart_grace', 0)} (no alarm, by design).",
                    "delays include the faults: an event made while the hub was down or the platform unreachable "
                    "waits for it; the worst delay is the price of the worst fault, not a steady state.",
                    *[f"missed: {m}" for m in a.get("missed_details", [])],
                    *[f"unexpected: {m}" for m in a.get("unexpected_details", [])]])
    return [counts, faults, timing]


def parse_mix(text: str, devices: int) -> dict[str, int]:
    mix: dict[str, int] = {}
    for part in text.split(","):
        role, _, n = part.partition(":")
        mix[role.strip()] = int(n or 1)
    total = sum(mix.values())
    if total != devices:  # scale the mix to the device count, pendants taking the rest
        scaled = {role: max(0, round(n * devices / total)) for role, n in mix.items()}
        first = next(iter(scaled))
        scaled[first] += devices - sum(scaled.values())
        mix = {role: n for role, n in scaled.items() if n > 0}
    return mix


async def run(*, seed: int = 1, events: int = 10_000, devices: int = 16, mix: str = DEFAULT_MIX,
              workdir: Path | None = None, fault_scale: float = 1.0,
              log: Callable[[str], None] | None = None,
              injectors: tuple[str, ...] = ("platform", "air", "devices"),
              max_load_s: float = 45 * 60, max_drain_s: float = 10 * 60, pace_s: float = 0.0,
              fault_limit: int | None = None) -> Result:
    with tempfile.TemporaryDirectory(prefix="safebox-chaos-") as tmp:
        chaos = ChaosRun(seed=seed, events=events, mix=parse_mix(mix, devices), workdir=Path(workdir or tmp),
                         fault_scale=fault_scale, log=log, injectors=injectors, max_load_s=max_load_s,
                         max_drain_s=max_drain_s, pace_s=pace_s, fault_limit=fault_limit)
        return await chaos.run()


class _QuietRepeats(logging.Filter):
    """Let a log message through a few times, then only count it (a stuck loop must not flood)."""

    def __init__(self, allowed: int = 3) -> None:
        super().__init__()
        self.allowed = allowed
        self.seen: Counter[str] = Counter()

    def filter(self, record: logging.LogRecord) -> bool:
        key = f"{record.name}: {record.msg}"
        self.seen[key] += 1
        return self.seen[key] <= self.allowed


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m safebox.tools.chaos", description=__doc__.split("\n")[0])
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--events", type=int, default=10_000, help="events to create (default 10,000)")
    parser.add_argument("--devices", type=int, default=16)
    parser.add_argument("--mix", default=DEFAULT_MIX, help=f"roles and counts (default {DEFAULT_MIX}); "
                                                           "scaled to --devices")
    parser.add_argument("--fault-scale", type=float, default=1.0,
                        help="multiply the mean gap between faults (smaller: more faults)")
    parser.add_argument("--faults", default="platform,air,devices",
                        help="which fault injectors run (default: platform,air,devices; 'none' for none)")
    parser.add_argument("--max-minutes", type=float, default=45.0, help="time budget of the load phase")
    parser.add_argument("--pace", type=float, default=0.0, metavar="S",
                        help="mean pause in seconds between one resident's actions (default 0: as fast as "
                             "each device takes them, up to 6 waiting for their ack)")
    parser.add_argument("--json", action="store_true", help="one JSON object instead of the tables")
    parser.add_argument("--write", nargs="?", const="", metavar="RESULTS.md",
                        help="update the chaos section of the results page")
    parser.add_argument("--workdir", type=Path, help="keep the simulated home's files here")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr, format="%(levelname)s %(name)s: %(message)s")
    quiet = _QuietRepeats()
    for handler in logging.getLogger().handlers:
        handler.addFilter(quiet)
    result = asyncio.run(run(seed=args.seed, events=args.events, devices=args.devices, mix=args.mix,
                             workdir=args.workdir, fault_scale=args.fault_scale,
                             injectors=tuple(f for f in args.faults.split(",") if f and f != "none"),
                             max_load_s=args.max_minutes * 60, pace_s=args.pace))
    ts = tables(result)
    if args.json:
        print(json.dumps({**asdict(result), "ok": result.ok}, indent=1))
    else:
        for t in ts:
            print(t.text() + "\n")
    if args.write is not None:
        from safebox.tools.bench import default_results_path, update_section
        path = args.write or default_results_path()
        cmd = f"python -m safebox.tools.chaos --seed {args.seed} --events {args.events} --devices {args.devices}" + \
            (f" --pace {args.pace:g}" if args.pace else "") + \
            (f" --faults {args.faults}" if args.faults != "platform,air,devices" else "")
        update_section(path, "chaos", "\n".join([
            "## Chaos run", "", generated_line(cmd + " --write"), "",
            f"Reproduce: `{cmd}` (exit status 1 when a must-be-zero count is not zero). A reduced run "
            "(300 events, a few faults) is in the test suite: `tests/test_chaos.py`.", "",
            *[t.markdown() + "\n" for t in ts]]))
        print(f"wrote the chaos section of {path}", file=sys.stderr)
    print(f"chaos: {'ok' if result.ok else 'FAILED'}", file=sys.stderr)
    return 0 if result.ok else 1


if __name__ == "__main__":
    sys.exit(main())

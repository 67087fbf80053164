"""The residents: the simulator's view of each device, and the people pressing its buttons and moving its doors."""

from __future__ import annotations

import asyncio
import json
import random
import time
from typing import Any

from safebox.tools.chaos.records import PENDING_CAP, TOILET_LIMIT_S, Visit
from safebox.tools.sim import lines


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


async def sleep_unless(stop: asyncio.Event, seconds: float) -> None:
    """Sleep `seconds`, or less if `stop` is set meanwhile."""
    try:
        await asyncio.wait_for(stop.wait(), seconds)
    except TimeoutError:
        pass


class Residents:
    """The people of the home, one task per device (a part of ChaosRun: its home, stop event,
    times and visits)."""

    home: Any
    stop: asyncio.Event
    pace_s: float
    times: dict[tuple[str, int], float]
    visits: list[Visit]
    not_registered: int

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
            await sleep_unless(self.stop, stay)
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


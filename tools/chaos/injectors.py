"""The fault injectors: platform (hub, receiver, network), air (adverts, acks) and devices (reboots, batteries)."""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Awaitable, Callable
from typing import Any

from safebox.tools.chaos.proxy import FaultProxy, ack_loss
from safebox.tools.chaos.records import Fault
from safebox.tools.chaos.residents import DrivenDevice, sleep_unless
from safebox.tools.sim import lines


class Injectors:
    """The seeded fault schedule, one task per injector (a part of ChaosRun: its home, proxy,
    devices, fault list and stop event)."""

    home: Any
    proxy: FaultProxy | None
    devs: list[DrivenDevice]
    faults: list[Fault]
    hub_lines: list[str]
    hub_down: list[tuple[float, float]]
    fault_limit: int | None
    fault_scale: float
    stop: asyncio.Event
    _made: dict[Any, int]
    log: Callable[[str], None]

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
        await sleep_unless(self.stop, rng.expovariate(1.0 / (mean_s * self.fault_scale)))
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

    async def _receiver_down(self, rng: random.Random, fault: Fault) -> None:
        down = rng.uniform(2.0, 10.0)
        fault.detail = f"down {down:.1f} s"
        await self.home.restart_receiver(kill=True, down_s=down)

    async def _receiver_errors(self, rng: random.Random, fault: Fault) -> None:
        n = rng.randint(3, 20)
        fault.detail = f"next {n} requests"
        await self.home.restart_receiver(("--fail-first", str(n), "--fail-status", "500"))

    async def _receiver_busy(self, rng: random.Random, fault: Fault) -> None:
        n = rng.randint(2, 8)
        fault.detail = f"next {n} requests"
        await self.home.restart_receiver(("--fail-first", str(n), "--fail-status", "503"))

    def _proxy_mode(self, mode: str) -> Callable[[random.Random, Fault], Awaitable[None]]:
        async def act(rng: random.Random, fault: Fault) -> None:
            assert self.proxy is not None
            hold = rng.uniform(2.0, 8.0)
            fault.detail = f"for {hold:.1f} s"
            await self.proxy.set_mode(mode)
            await asyncio.sleep(hold)
            await self.proxy.set_mode("pass")
        return act

"""One chaos run: the home brought up, residents and fault injectors run, faults undone, drained, counted."""

from __future__ import annotations

import asyncio
import json
import random
import signal
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import Any

from safebox.tools.chaos import counts
from safebox.tools.chaos.cellular import Broadband, ChaosModem
from safebox.tools.chaos.injectors import Injectors
from safebox.tools.chaos.proxy import FaultProxy
from safebox.tools.chaos.records import DEFAULT_MIX, STARTUP_GRACE_S, TOILET_LIMIT_S, Fault, Result, Visit
from safebox.tools.chaos.residents import DrivenDevice, Residents
from safebox.tools.sim import snapshot


class ChaosRun(Residents, Injectors, Broadband):
    """A chaos run over a simulated home (see the package's docstring); `await ChaosRun(...).run()`."""

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
        self.modem: ChaosModem | None = None  # the home's cellular modem, with the broadband injector

    # -- counts ---------------------------------------------------------------------------------
    def created_total(self) -> int:
        return sum(len(d.created) for d in self.devs)

    def platform(self) -> list[snapshot.PlatformEvent]:
        return snapshot.platform(Path(self.home.receiver_db))

    def hub(self) -> snapshot.HubSnapshot:
        return snapshot.hub(Path(self.home.hub_state) / "hub.db")

    # -- the whole run ----------------------------------------------------------------------------------
    async def run(self) -> Result:
        from safebox.tools.sim.home import SimHome

        started = time.time()
        result = Result(self.seed, dict(self.mix), self.target, pace_s=self.pace_s,
                        injectors=list(self.injectors))
        self.proxy = FaultProxy(lambda: int(self.home.platform_url.rsplit(":", 1)[1]))
        await self.proxy.start()
        if "broadband" in self.injectors:
            self.modem = ChaosModem(self.workdir, random.Random(f"{self.seed}-cellular"))
        # door_moves: every device event is counted at the platform, door moves too
        home = SimHome(self.workdir, receiver_args=self.modem.receiver_args() if self.modem else (), door_moves=True)
        home.hub_platform_url = self.proxy.url
        home.hub_settings = {"rules": {"startup_grace_s": STARTUP_GRACE_S,
                                       "toilet": {"overdue_after_s": TOILET_LIMIT_S}},
                             **({"cellular": self.modem.hub_table()} if self.modem else {})}
        self.home = home
        try:
            async with home:
                if self.modem is not None:
                    await self.modem.attach(home)
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
                chosen = {"platform": self.platform_faults, "air": self.air_faults, "devices": self.device_faults,
                          "broadband": self.broadband_faults}
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
                counts.count(self, result)
                if self.modem is not None:
                    self.count_channels(result)
        finally:
            self._unwatch_signals()
            await self.proxy.close()
            if self.modem is not None:
                await self.modem.close()
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
            await self.home.restart_receiver(kill=True)

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

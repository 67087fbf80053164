"""Firmware on the device side: press-to-advertisement latency, peak heap, modelled battery life.

    python -m safebox.tools.bench.firmware [--quick]

Everything runs the real firmware image on the `micropython` binary through the simulator
(tools/sim), with an in-process stand-in for the hub (`StandInHub`: scans with bleak over
bumble, writes authenticated acks) so that only the device is measured:

* **press -> advertisement**: from the moment the button pin goes down (the pendant asleep,
  radio off) to the first advertisement of the event frame the simulator's radio accepted.
  It includes the 50 ms press debounce *and* the 50 ms release debounce of a 60 ms tap
  (the firmware counts a press when it ends: a long press is decided by the holding),
  waking from light sleep and bringing the radio up.
* **peak heap**: `micropython.mem_peak()` of a whole cycle (boot, press, send, ack, linger,
  heartbeat, sleep), under a small `-X heapsize`, and the smallest heap (in steps of 4 KiB)
  on which that cycle still completes. The simulator's shims run as .mpy like the firmware;
  their own allocations are included (an upper bound for the board).
* **battery life per role**: the energy model of tools/sim/energy.py, fed with the awake,
  radio and sleep times measured here per event and per heartbeat, for its stated cell and
  usage profile, on the ESP32 and the ESP32-C3, in the sleep mode the firmware uses as built
  (doors: deep sleep on the ESP32) and the other one for comparison.

No timed assertions anywhere: tests only check that the figures are there and sane.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import os
import statistics
import subprocess
import tempfile
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from safebox.protocol import bthome
from safebox.tools.sim import lines

ACK_CHAR = bthome.ACK_CHAR_UUID
BOARD = "esp32-devkitc"
FULL_BATTERY_UV = 1_950_000  # 3.9 V behind the 1:2 divider


# -- a hub stand-in ------------------------------------------------------------------------
@dataclass
class Frame:
    """One advertisement the stand-in heard from the device, decoded with its key."""

    t: float  # time.monotonic()
    counter: int
    event: bool
    objects: list[tuple[int, int]]
    adv: bytes


@dataclass
class StandInHub:
    """A hub in this process, on the simulator's air, for device-side tests and benches.

    It hears the device's frames (bleak's public API over bumble, passive scan) and, when
    `auto_ack` is set, answers each new event counter once with kind 1 (heard), and with
    kind 2 (delivered) `deliver_after_s` later if that is not None. `deaf_s` leaves a counter
    unanswered until that long after it was first heard (a lost acknowledgement, as the
    device sees it: its first burst goes unanswered).
    `write(kind, counter)` writes any ack; `owed` acks are written the next time the device
    is heard, as the real hub writes what it owes.
    """

    air: Any
    key: bytes
    mac: str
    auto_ack: bool = True
    deliver_after_s: float | None = None
    deaf_s: float = 0.0
    frames: list[Frame] = field(default_factory=list)
    written: list[tuple[float, int, int, bool]] = field(default_factory=list)  # (t, kind, counter, ok)
    owed: list[tuple[int, int]] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._acked: set[tuple[int, int]] = set()
        self._first_heard: dict[int, float] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._ble_device: Any = None
        self._lock = asyncio.Lock()
        self._heard = asyncio.Condition()
        self._stack = contextlib.AsyncExitStack()
        self._controller: Any = None

    async def __aenter__(self) -> StandInHub:
        from bleak import BleakScanner
        from bumble.device import Device
        from bumble.host import Host
        from bumble.transport.common import AsyncPipeSink

        from safebox.tools.sim.bleak_backend import BumbleScanner, use_device

        self._controller = self.air.plug_hub("stand-in-hub")
        device = Device(host=Host(self._controller, AsyncPipeSink(self._controller)))
        await self._stack.enter_async_context(use_device(device))
        scanner = BleakScanner(self._seen, scanning_mode="passive", backend=BumbleScanner)
        await self._stack.enter_async_context(scanner)
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self._stack.aclose()
        if self._controller is not None:
            self.air.unplug(self._controller)

    def _seen(self, device: Any, adv: Any) -> None:
        data = adv.service_data.get(bthome.SERVICE_UUID)
        if device.address.upper() != self.mac.upper() or data is None:
            return
        self._ble_device = device
        try:
            info, counter, objects = bthome.unseal(self.key, bthome.mac_bytes(self.mac), data)
        except bthome.FrameError:
            return
        event = bool(info & bthome.INFO_EVENT)
        self.frames.append(Frame(time.monotonic(), counter, event, objects, bytes(data)))
        self._spawn(self._notify())
        if self.owed:
            owed, self.owed = self.owed, []
            for kind, c in owed:
                self._spawn(self.write(kind, c))
        if not (event and self.auto_ack) or (1, counter) in self._acked:
            return
        first = self._first_heard.setdefault(counter, time.monotonic())
        if time.monotonic() - first < self.deaf_s:
            return
        self._acked.add((1, counter))
        self._spawn(self._ack(counter))

    async def _ack(self, counter: int) -> None:
        if not await self.write(bthome.ACK_HEARD, counter):
            self._acked.discard((1, counter))  # not written: answer the next repeat
            return
        if self.deliver_after_s is not None:
            await asyncio.sleep(self.deliver_after_s)
            await self.write(bthome.ACK_DELIVERED, counter)

    def _spawn(self, coro: Any) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _notify(self) -> None:
        async with self._heard:
            self._heard.notify_all()

    async def write(self, kind: int, counter: int, *, data: bytes | None = None, timeout: float = 5.0) -> bool:
        """Connect, write one ack (or `data`), disconnect; True when the write was answered."""
        from bleak import BleakClient
        from bleak.exc import BleakError

        from safebox.tools.sim.bleak_backend import BumbleClient

        if data is None:
            data = bthome.seal_ack(self.key, bthome.mac_bytes(self.mac), kind, counter, int(time.time()))
        ok = False
        async with self._lock:
            if self._ble_device is not None:
                try:
                    async with BleakClient(self._ble_device, backend=BumbleClient, timeout=timeout) as client:
                        await client.write_gatt_char(ACK_CHAR, data, response=True)
                    ok = True
                except (BleakError, TimeoutError, OSError, asyncio.TimeoutError):
                    ok = False
        self.written.append((time.monotonic(), kind, counter, ok))
        return ok

    async def wait_frames(self, predicate: Callable[[list[Frame]], bool], timeout: float = 10.0) -> list[Frame]:
        async with asyncio.timeout(timeout), self._heard:
            await self._heard.wait_for(lambda: predicate(self.frames))
        return self.frames

    def event_counters(self) -> list[int]:
        """Distinct event counters heard, in the order first heard."""
        seen: list[int] = []
        for f in self.frames:
            if f.event and f.counter not in seen:
                seen.append(f.counter)
        return seen


# -- a device on the bench -----------------------------------------------------------------
def image_dir(dest: Path) -> Path:
    """The compiled device image in dest (built once per directory)."""
    from safebox.tools import build

    if not (dest / "main.py").exists():
        build.stage(dest)
    return dest


def flash_dir(root: Path, image: Path, role: str, key: bytes, settings: dict[str, Any] | None = None) -> Path:
    """A device's flash folder: main.py from the image and a config.json for `role`."""
    root.mkdir(parents=True, exist_ok=True)
    (root / "main.py").write_text((image / "main.py").read_text())
    doc = {"role": role, "board": BOARD, "key": key.hex(), **(settings or {})}
    (root / "config.json").write_text(json.dumps(doc))
    return root


async def tap(bridge: Any, button: str, hold_s: float) -> float:
    """Press a pendant button (its pin and the diode-OR wake line); the time it went down."""
    from safebox.firmware.boards import BOARDS

    pins = [BOARDS[BOARD][button], BOARDS[BOARD]["button_wake"]]
    down = time.monotonic()
    for pin in pins:
        bridge.set_pin(pin, 0)
    await asyncio.sleep(hold_s)
    for pin in pins:
        bridge.set_pin(pin, 1)
    return down


# The entry for heap figures: the shims as .mpy first on the path (imported first, so their
# share is known), then the firmware as main.py runs it, with a task printing the live heap
# (gc.mem_alloc() after a collection) every 500 ms.
_HEAP_ENTRY = """import sys
sys.path.insert(0, %r)
import asyncio, gc, json, select, socket
import machine, bluetooth
gc.collect()
print("heap shims", gc.mem_alloc())
async def _live():
    while True:
        gc.collect()
        print("heap live", gc.mem_alloc(), "free", gc.mem_free())
        await asyncio.sleep_ms(500)
asyncio.create_task(_live())
from safebox.firmware import main
main.run()
"""


@contextlib.asynccontextmanager
async def bench_device(workdir: Path, role: str = "pendant", *, settings: dict[str, Any] | None = None,
                       heapsize: str = "256k", heap_report: bool = False, hub: bool = True,
                       battery_uv: int = FULL_BATTERY_UV, image: Path | None = None, key: bytes | None = None,
                       **hub_args: Any) -> AsyncIterator[tuple[Any, StandInHub | None]]:
    """A device on a fresh air with the stand-in hub (unless hub=False); yields (FirmwareProcess, hub).

    heap_report: run it with the shims compiled, "heap shims N" once and "heap live N free M"
    every 500 ms."""
    from safebox.tools.sim.air import Air
    from safebox.tools.sim.firmware_process import FirmwareProcess

    image = image or image_dir(workdir / "image")
    key = key or os.urandom(16)
    mac = "24:0A:C4:00:0B:01"
    flash = flash_dir(workdir / role, image, role, key, settings)
    entry = "main.py"
    if heap_report:
        entry = "heap_main.py"
        (flash / entry).write_text(_HEAP_ENTRY % str(compiled_shims(workdir / "shims")))
    async with Air() as air:
        fw = FirmwareProcess(air, flash, mac=mac, lib_dir=image / "lib", heapsize=heapsize, entry=entry,
                             name=f"bench-{role}")
        fw.bridge.set_adc(34, battery_uv)
        async with contextlib.AsyncExitStack() as stack:
            stand_in = None
            if hub:
                stand_in = await stack.enter_async_context(StandInHub(air, key, mac, **hub_args))
            await stack.enter_async_context(fw)
            yield fw, stand_in


def compiled_shims(dest: Path) -> Path:
    """The simulator's shims compiled to .mpy (as the firmware is), for heap figures."""
    from safebox.tools import build
    from safebox.tools.sim.firmware_process import SHIMS_DIR

    for src in SHIMS_DIR.glob("*.py"):
        if src.name != "__init__.py" and not (dest / (src.stem + ".mpy")).exists():
            build.compile_mpy(src, dest / (src.stem + ".mpy"))
    return dest


# -- the measurements ------------------------------------------------------------------------
@dataclass
class Measured:
    latencies_ms: list[float] = field(default_factory=list)
    event: dict[str, Any] = field(default_factory=dict)  # role -> energy.Activity of one event
    heartbeat: dict[str, Any] = field(default_factory=dict)
    heap_live: int | None = None
    heap_shims: int | None = None
    heap_size: str = ""
    min_heap_kib: int | None = None
    min_heap_tried: list[tuple[int, bool]] = field(default_factory=list)


async def _next_line(rec: Any, pattern: str, after: float, timeout: float = 15.0) -> float:
    async with asyncio.timeout(timeout):
        while (t := rec.first(pattern, after)) is None:
            await asyncio.sleep(0.01)
    return t


async def _pendant(workdir: Path, presses: int, out: Measured) -> None:
    from safebox.firmware.boards import BOARDS
    from safebox.tools.sim import energy

    pins = BOARDS[BOARD]
    async with bench_device(workdir, "pendant", deliver_after_s=1.0, settings={"heartbeat_s": 4}) as (fw, _hub):
        rec = energy.LineRecorder(fw)
        idle = lines.Sleep.pattern(why="idle")
        await fw.wait_for_line(idle, timeout=10)
        acts = []
        for _ in range(presses):
            await asyncio.sleep(0.3)
            down = await tap(fw.bridge, "emergency", 0.06)
            advertised = None
            async with asyncio.timeout(5):
                while advertised is None:
                    advertised = next((a.t for a in fw.bridge.advertising if a.t >= down and a.interval_us == 30000),
                                      None)
                    await asyncio.sleep(0.005)
            out.latencies_ms.append((advertised - down) * 1000)
            end = await _next_line(rec, idle, down)
            acts.append(energy.Activity.measure(rec, fw.bridge, down, end, led_pin=pins["led"],
                                                buzzer_pin=pins["buzzer"]))
        out.event["pendant"] = _mean_activity(acts)
        woke = await _next_line(rec, lines.Woke.pattern(source="timer"), time.monotonic())
        end = await _next_line(rec, idle, woke)
        out.heartbeat["pendant"] = energy.Activity.measure(rec, fw.bridge, woke, end, led_pin=pins["led"],
                                                           buzzer_pin=pins["buzzer"])


async def _door(workdir: Path, role: str, out: Measured) -> None:
    from safebox.firmware.boards import BOARDS
    from safebox.tools.sim import energy

    pins = BOARDS[BOARD]
    # As built, a door deep-sleeps (ESP32, EXT0): each change below wakes it from deep sleep and
    # the measure runs from the pin to the next sleep; the light-sleep window after a change
    # (awake_after_event_ms) is set to 0 here and modelled in tools/sim/energy.py instead.
    settings = {"heartbeat_s": 4, "awake_after_event_ms": 0, **({"pir": 1} if role == "toilet_door" else {})}
    asleep = lines.any_of(lines.Sleep.pattern(why="idle"), lines.DeepSleep.pattern(why="idle"))
    async with bench_device(workdir, role, deliver_after_s=1.0, settings=settings) as (fw, _hub):
        rec = energy.LineRecorder(fw)
        await fw.wait_for_line(asleep, timeout=10)
        acts = []
        for level in (0, 1):  # open, then closed
            await asyncio.sleep(0.3)
            moved = time.monotonic()
            fw.bridge.set_pin(pins["contact"], level)
            end = await _next_line(rec, asleep, moved)
            acts.append(energy.Activity.measure(rec, fw.bridge, moved, end, led_pin=pins["led"],
                                                buzzer_pin=pins["buzzer"]))
        out.event[role] = _mean_activity(acts)
        woke = await _next_line(rec, lines.any_of(lines.Woke.pattern(source="timer"),
                                                  lines.Boot.pattern(reset_cause=4, wake=4)), time.monotonic())
        end = await _next_line(rec, asleep, woke)
        out.heartbeat[role] = energy.Activity.measure(rec, fw.bridge, woke, end, led_pin=pins["led"],
                                                      buzzer_pin=pins["buzzer"])


def _mean_activity(acts: list[Any]) -> Any:
    from safebox.tools.sim import energy

    fields = energy.Activity().__dict__.keys()
    return energy.Activity(**{k: statistics.fmean(getattr(a, k) for a in acts) for k in fields})


async def _cycle(workdir: Path, heapsize: str) -> tuple[bool, int | None, int | None]:
    """Boot, press, ack, linger, heartbeat on `heapsize`: (completed, the most live heap seen,
    the shims' share of it)."""
    try:
        async with bench_device(workdir, "pendant", heapsize=heapsize, heap_report=True, deliver_after_s=0.5,
                                settings={"heartbeat_s": 2}) as (fw, _hub):
            await fw.wait_for_line(lines.Ready.pattern(), timeout=10)
            await tap(fw.bridge, "emergency", 0.2)
            await fw.wait_for_line(lines.LingerEnded.pattern(counter=1), timeout=10)
            mark = len(fw.lines)
            await fw.wait_for_line(lines.Heartbeat.pattern(), timeout=10, start=mark)
            await fw.wait_for_line(lines.Sleep.pattern(why="idle"), timeout=10, start=mark)
            await asyncio.sleep(0.6)
            heap = [h for line in fw.lines if (h := lines.Heap.read(line)) is not None]
            live = [h.bytes for h in heap if h.what == "live"]
            shims = [h.bytes for h in heap if h.what == "shims"]
            ok = not any("MemoryError" in line for line in fw.lines)
            return ok, (max(live) if live else None), (shims[0] if shims else None)
    except (TimeoutError, asyncio.TimeoutError):
        return False, None, None


async def measure(workdir: Path, quick: bool = False) -> Measured:
    out = Measured()
    await _pendant(workdir / "pendant", 2 if quick else 5, out)
    await _door(workdir / "front_door", "front_door", out)
    await _door(workdir / "toilet_door", "toilet_door", out)
    out.heap_size = "192k"
    _ok, out.heap_live, out.heap_shims = await _cycle(workdir / "heap", out.heap_size)
    if not quick:
        for kib in (176, 160, 144, 136, 128, 120):
            ok, _live, _shims = await _cycle(workdir / f"heap{kib}", f"{kib}k")
            out.min_heap_tried.append((kib, ok))
            if not ok:
                break
            out.min_heap_kib = kib
    return out


# -- the tables --------------------------------------------------------------------------------
def tables(m: Measured, quick: bool = False) -> list[Any]:
    from safebox.tools.bench import Table, percentile
    from safebox.tools.sim import energy

    lat = m.latencies_ms
    t1 = Table("Firmware, device side: press -> advertisement (pendant asleep, radio off)",
               ["measure", "n", "median ms", "max ms"])
    t1.rows.append(["button down -> first advertisement of its frame", len(lat), f"{percentile(lat, 50):.0f}",
                    f"{max(lat):.0f}"])
    after = [x - 60 - 50 for x in lat]
    t1.rows.append(["  less the 60 ms tap and the 50 ms release debounce", len(after),
                    f"{percentile(after, 50):.0f}", f"{max(after):.0f}"])
    t1.notes += ["a tap of 60 ms: the firmware counts a press when its release has held 50 ms (a long press is "
                 "decided by holding), so 110 ms of every figure is the finger and the filter",
                 "the rest: waking from light sleep, the store's flash write, sealing the frame, bringing the "
                 "radio up (instant in the simulator; the energy model adds 150 ms of NimBLE start-up on a board)"]

    t2 = Table("Firmware RAM over a whole cycle (boot, press, ack, linger, heartbeat, sleep), unix port",
               ["measure", "KiB"])
    kib = lambda n: f"{n / 1024:.1f}" if n else "n/a"  # noqa: E731
    t2.rows.append([f"most live heap seen (gc.mem_alloc() after a collection, every 0.5 s; -X heapsize={m.heap_size})",
                    kib(m.heap_live)])
    t2.rows.append(["  of which the simulator's shims and asyncio (imported first)", kib(m.heap_shims)])
    if m.heap_live and m.heap_shims:
        t2.rows.append(["  the firmware's own (modules loaded from .mpy, its objects)", kib(m.heap_live - m.heap_shims)])
    if m.min_heap_tried:
        t2.rows.append(["smallest -X heapsize on which the cycle completes (tried "
                        + ", ".join(f"{k}{'' if ok else ' x'}" for k, ok in m.min_heap_tried) + ")",
                        f"{m.min_heap_kib}" if m.min_heap_kib else "over 176"])
    t2.notes += ["the unix port is 64-bit: objects and bytecode take up to twice the room they take on a 32-bit ESP32",
                 "budget: an ESP32 without PSRAM gives MicroPython a heap of about 110 KiB with BLE on; loading the "
                 "firmware as .mpy files costs RAM for its bytecode, freezing it (firmware/manifest.py) keeps that in "
                 "flash"]

    t3 = Table("Firmware energy per event and per heartbeat (simulated activity x datasheet currents)",
               ["role", "what", "awake s", "adverts", "ESP32 uAh", "ESP32-C3 uAh"])
    for role in m.event:
        for what, act in (("event", m.event[role]), ("heartbeat", m.heartbeat[role])):
            awake = act.span_s - act.asleep_s
            cells = [f"{energy.charge(energy.Activity(**{**act.__dict__, 'asleep_s': 0.0}), chip, energy.built_mode(role, chip)).total_uah:.1f}"  # noqa: E501
                     for chip in energy.CHIPS]
            t3.rows.append([role, what, f"{awake:.2f}", f"{act.adv_events:.0f}", *cells])
    t3.notes.append("an event: from the pin changing to the device asleep again (heard at once, 'delivered' 1 s "
                    "later ends the linger; the feedback patterns are played out); doors on the ESP32 include the "
                    "350 ms deep-sleep boot of each wake")

    cell = energy.Cell()
    t4 = Table(f"Modelled battery life: one {cell.name}, {cell.capacity_mah:.0f} mAh, {cell.usable:.0%} usable, "
               f"{cell.self_discharge_per_month:.0%}/month self-discharge",
               ["role", "chip", "sleep", "events/day", "mAh/day", "of which asleep", "days", "years"])
    for profile in energy.PROFILES:
        if profile.role not in m.event:
            continue
        for chip in energy.CHIPS:
            built = energy.built_mode(profile.role, chip)
            for mode in (built, "deep" if built == "light" else "light"):
                day = energy.per_day(profile, m.event[profile.role], m.heartbeat[profile.role], chip, mode)
                days = energy.battery_days(day, cell)
                if mode == built:
                    label = "%s (built, %s)" % (mode, chip.wake)
                else:
                    label = "deep (projection)" if mode == "deep" else "light (for comparison)"
                t4.rows.append([profile.role, chip.name, label, f"{profile.events_per_day:g}", f"{day.total_mah:.2f}",
                                f"{day.sleep_mah / day.total_mah:.0%}", f"{days:.0f}", f"{days / 365:.1f}"])
    t4.notes += [f"{p.role}: {p.note}; {p.heartbeats_per_day:g} heartbeats a day" for p in energy.PROFILES]
    t4.notes += ["as built: the doors deep-sleep on the ESP32 (EXT0 on the contact, timer at the heartbeat; a "
                 "350 ms boot per wake and 10 s of light sleep after each change counted), the pendant and every "
                 "role on the C3 light-sleep; ESP32 light sleep is 0.8 mA (datasheet), the C3 without a pin wake in "
                 "MicroPython's machine API polls every 30 ms",
                 "deep (projection): the pendant would need a latch remembering which button woke it; the C3 a pin "
                 "wake its machine API does not offer",
                 "currents and assumptions: tools/sim/energy.py"]
    return [t1, t2, t3, t4]


def run(quick: bool = False) -> list[Any]:
    logging.getLogger("bumble").setLevel(logging.WARNING)
    with tempfile.TemporaryDirectory(prefix="safebox-bench-fw-") as tmp:
        m = asyncio.run(measure(Path(tmp), quick))
    return tables(m, quick)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="two presses, no smallest-heap search")
    args = parser.parse_args(argv)
    from safebox.tools.bench import print_tables

    print_tables(run(args.quick))


if __name__ == "__main__":
    main()

"""Firmware on the device side: press-to-advertisement latency, peak heap, modelled battery life.

    python -m safebox.tools.bench.firmware [--quick]

Everything runs the real firmware image on the `micropython` binary through the simulator
(tools/sim), with an in-process stand-in for the hub (`StandInHub` in standin.py: scans with bleak over
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
import logging
import statistics
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from safebox.tools.sim import lines
from safebox.tools.bench.device import BOARD, bench_device, tap


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

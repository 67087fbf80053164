"""Firmware on the device side: press-to-advertisement latency, peak heap, modelled battery life.

    python -m safebox.tools.bench.firmware [--quick] [--json]

Everything runs the real firmware image on the `micropython` binary through the simulator
(tools/sim), with an in-process stand-in for the hub (`StandInHub`: scans with bleak over
bumble, writes authenticated acks) so that only the device is measured:

* **press -> advertisement**: from the moment the button pin goes down (the pendant in deep
  sleep, radio off) to the first advertisement of the event frame the simulator's radio
  accepted: the simulator's 300 ms for the ROM and bootloader, starting micropython and the
  firmware (this machine), the press counted from the wake pins, the radio brought up; and
  the boot-to-decision time (micropython started -> the waking button counted).
* **peak heap**: `micropython.mem_peak()` of a whole cycle (boot, press, send, ack, linger,
  heartbeat, sleep), under a small `-X heapsize`, and the smallest heap (in steps of 4 KiB)
  on which that cycle still completes. The simulator's shims run as .mpy like the firmware;
  their own allocations are included (an upper bound for the board).
* **battery life per role**: the energy model of tools/sim/energy.py, fed with the awake,
  radio and sleep times measured here per event and per heartbeat, for its stated cell and
  usage profile, on the ESP32 and the ESP32-C3, in the sleep mode the firmware uses as built
  (doors on the ESP32 and the pendant: deep sleep) and the other one for comparison.

No timed assertions anywhere: tests only check that the figures are there and sane.
"""

from __future__ import annotations

import asyncio
import json
import logging
import statistics
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from safebox.tools.bench.device import BOARD, bench_device, tap

WAKE_BOOT_MS = 300  # tools/sim/firmware_process.py WAKE_BOOT_S


# -- the measurements ------------------------------------------------------------------------
@dataclass
class Measured:
    latencies_ms: list[float] = field(default_factory=list)
    boot_ms: list[tuple[float, float]] = field(default_factory=list)  # process start -> boot line, -> button read
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
    # As built the pendant deep-sleeps (EXT1 on its buttons, the timer at the hourly heartbeat):
    # each tap wakes it. An event is measured from the firmware's boot line to its next deep
    # sleep; the ROM and bootloader before it are the model's deep_boot_s (tools/sim/energy.py).
    asleep = r"^(deep)?sleep \d+ idle"
    async with bench_device(workdir, "pendant", deliver_after_s=1.0) as (fw, _hub):
        rec = energy.LineRecorder(fw)
        await fw.wait_for_line(asleep, timeout=15)
        acts = []
        for _ in range(presses):
            await asyncio.sleep(0.3)
            down = await tap(fw.bridge, "emergency", 0.06)
            advertised = None
            async with asyncio.timeout(15):
                while advertised is None:
                    advertised = next((a.t for a in fw.bridge.advertising if a.t >= down and a.interval_us == 30000),
                                      None)
                    await asyncio.sleep(0.005)
            out.latencies_ms.append((advertised - down) * 1000)
            spawned = await _next_line(rec, r"^booted \(pid", down)
            booted = await _next_line(rec, r"^boot safebox ", down)
            decided = await _next_line(rec, r"^input: emergency woke the device", booted)
            out.boot_ms.append(((booted - spawned) * 1000, (decided - spawned) * 1000))
            end = await _next_line(rec, asleep, booted)
            acts.append(energy.Activity.measure(rec, fw.bridge, booted, end, led_pin=pins["led"],
                                                buzzer_pin=pins["buzzer"]))
        out.event["pendant"] = _mean_activity(acts)
    async with bench_device(workdir / "beat", "pendant", settings={"heartbeat_s": 4}) as (fw, _hub):
        rec = energy.LineRecorder(fw)
        await fw.wait_for_line(asleep, timeout=15)
        woke = await _next_line(rec, r"^boot safebox .* reset_cause 4 wake 4$", time.monotonic())
        end = await _next_line(rec, asleep, woke)
        out.heartbeat["pendant"] = energy.Activity.measure(rec, fw.bridge, woke, end, led_pin=pins["led"],
                                                           buzzer_pin=pins["buzzer"])


async def _door(workdir: Path, role: str, out: Measured) -> None:
    from safebox.firmware.boards import BOARDS
    from safebox.tools.sim import energy

    pins = BOARDS[BOARD]
    # As built, a door deep-sleeps (ESP32, EXT0): each change below wakes it, measured as the pendant
    # is from the boot line to the next sleep (the ROM and bootloader are the model's deep_boot_s).
    # The window after a change (awake_after_event_ms) is 0 here, modelled in tools/sim/energy.py.
    # The stand-in answers a door kind 1 only, as the hub does (SPEC 1.7: kinds 2, 3 go to pendants).
    settings = {"heartbeat_s": 4, "awake_after_event_ms": 0, **({"pir": 1} if role == "toilet_door" else {})}
    asleep = r"^(deep)?sleep \d+ idle"
    async with bench_device(workdir, role, settings=settings) as (fw, _hub):
        rec = energy.LineRecorder(fw)
        await fw.wait_for_line(asleep, timeout=10)
        acts = []
        for level in (0, 1):  # open, then closed
            await asyncio.sleep(0.3)
            moved = time.monotonic()
            fw.bridge.set_pin(pins["contact"], level)
            booted = await _next_line(rec, r"^boot safebox .* reset_cause 4 wake 2$", moved)
            end = await _next_line(rec, asleep, booted)
            acts.append(energy.Activity.measure(rec, fw.bridge, booted, end, led_pin=pins["led"],
                                                buzzer_pin=pins["buzzer"]))
        out.event[role] = _mean_activity(acts)
        woke = await _next_line(rec, r"^(woke timer|boot safebox .* reset_cause 4 wake 4$)", time.monotonic())
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
            await fw.wait_for_line(r"^ready ", timeout=10)
            await tap(fw.bridge, "emergency", 0.2)
            await fw.wait_for_line(r"^linger 1 ended", timeout=10)
            mark = len(fw.lines)
            await fw.wait_for_line(r"^heartbeat \d+", timeout=10, start=mark)
            await fw.wait_for_line(r"^sleep \d+ idle", timeout=10, start=mark)
            await asyncio.sleep(0.6)
            live = [int(line.split()[2]) for line in fw.lines if line.startswith("heap live")]
            shims = [int(line.split()[2]) for line in fw.lines if line.startswith("heap shims")]
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
def battery_rows(m: Measured) -> list[dict[str, Any]]:
    """The modelled battery life per role and chip, in the sleep mode as built and the other one."""
    from safebox.tools.sim import energy

    cell = energy.Cell()
    rows: list[dict[str, Any]] = []
    for profile in energy.PROFILES:
        if profile.role not in m.event:
            continue
        for chip in energy.CHIPS:
            built = energy.built_mode(profile.role, chip)
            for mode in (built, "deep" if built == "light" else "light"):
                day = energy.per_day(profile, m.event[profile.role], m.heartbeat[profile.role], chip, mode)
                rows.append({"role": profile.role, "chip": chip.name, "sleep": mode, "built": mode == built,
                             "events_per_day": profile.events_per_day, "mah_per_day": round(day.total_mah, 3),
                             "asleep_share": round(day.sleep_mah / day.total_mah, 3),
                             "days": round(energy.battery_days(day, cell), 1)})
    return rows


def tables(m: Measured, quick: bool = False) -> list[Any]:
    from safebox.tools.bench import Table, percentile
    from safebox.tools.sim import energy

    lat = m.latencies_ms
    t1 = Table("Firmware, device side: press -> advertisement (pendant in deep sleep, radio off)",
               ["measure", "n", "median ms", "max ms"])
    t1.rows.append(["button down -> first advertisement of its frame", len(lat), f"{percentile(lat, 50):.0f}",
                    f"{max(lat):.0f}"])
    after = [x - WAKE_BOOT_MS for x in lat]
    t1.rows.append([f"  less the {WAKE_BOOT_MS} ms the simulator gives the ROM and bootloader", len(after),
                    f"{percentile(after, 50):.0f}", f"{max(after):.0f}"])
    if m.boot_ms:
        boot = [b for b, _d in m.boot_ms]
        decide = [d for _b, d in m.boot_ms]
        t1.rows.append(["micropython started -> firmware's first line (unix port, this machine)", len(boot),
                        f"{percentile(boot, 50):.0f}", f"{max(boot):.0f}"])
        t1.rows.append(["micropython started -> the button that woke it counted", len(decide),
                        f"{percentile(decide, 50):.0f}", f"{max(decide):.0f}"])
    t1.notes += ["a tap of 60 ms while the pendant deep-sleeps: EXT1 wakes the chip, the press is over before the "
                 "firmware runs and is counted from the wake pins at boot (no release debounce to wait for)",
                 "the rest: starting micropython and importing the firmware on this machine, the store's flash "
                 "write, sealing the frame, bringing the radio up (instant in the simulator; the energy model adds "
                 "150 ms of NimBLE start-up on a board)"]

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
    t3.notes.append("an event: from the firmware's boot (woken by the button or the contact) to the device asleep "
                    "again; heard at once (the stand-in hub connects as soon as it hears the frame); the pendant: "
                    "'delivered' 1 s later ends its linger, then its receipt; a door: no linger (the hub owes it "
                    "nothing after kind 1); the feedback patterns are played out; every deep-sleep wake adds the "
                    "model's 350 ms boot")

    cell = energy.Cell()
    t4 = Table(f"Modelled battery life: one {cell.name}, {cell.capacity_mah:.0f} mAh, {cell.usable:.0%} usable, "
               f"{cell.self_discharge_per_month:.0%}/month self-discharge",
               ["role", "chip", "sleep", "events/day", "mAh/day", "of which asleep", "days", "years"])
    for r in battery_rows(m):
        label = r["sleep"] + (" (built)" if r["built"] else " (for comparison)")
        t4.rows.append([r["role"], r["chip"], label, f"{r['events_per_day']:g}", f"{r['mah_per_day']:.2f}",
                        f"{r['asleep_share']:.0%}", f"{r['days']:.0f}", f"{r['days'] / 365:.1f}"])
    t4.notes += [f"{p.role}: {p.note}; {p.heartbeats_per_day:g} heartbeats a day" for p in energy.PROFILES]
    slow = energy.slow_hub_days(m.event, m.heartbeat)
    if slow:
        t4.notes.append("a slow hub (kind 1 only at the end of each 1.5 s burst, every event; as built, ESP32): "
                        + ", ".join(f"{role} {days:.0f} days" for role, days in slow.items()))
    t4.notes += ["as built: the doors deep-sleep on the ESP32 (EXT0 on the contact, timer at the heartbeat; 10 s of "
                 "light sleep after each change counted; no linger after kind 1; heartbeats of 10 advertisements at "
                 "30 ms), the pendant deep-sleeps on both chips (ESP32: EXT1 "
                 "ANY_HIGH on its buttons; C3: GPIO wake, with MicroPython 1.29+'s machine.wake_pins()); doors on "
                 "the C3 light-sleep and poll every 30 ms (no EXT0); a 350 ms boot per deep-sleep wake",
                 "ESP32 light sleep is 0.8 mA (datasheet), deep sleep 10 uA; board: low-Iq LDO 4 uA, divider 2 uA, "
                 "external button pull-downs draw nothing while released",
                 "currents and assumptions: tools/sim/energy.py"]
    return [t1, t2, t3, t4]


def _measured(quick: bool) -> Measured:
    logging.getLogger("bumble").setLevel(logging.WARNING)
    with tempfile.TemporaryDirectory(prefix="safebox-bench-fw-") as tmp:
        return asyncio.run(measure(Path(tmp), quick))


def run(quick: bool = False) -> list[Any]:
    return tables(_measured(quick), quick)


def main(argv: list[str] | None = None) -> None:
    from safebox.tools.bench import bench_parser, print_tables
    from safebox.tools.sim import energy

    parser = bench_parser("firmware", __doc__, "two presses, no smallest-heap search")
    parser.add_argument("--json", action="store_true",
                        help="one JSON object: the measures and `battery`, a list of {role, chip, sleep, built, days}")
    args = parser.parse_args(argv)
    m = _measured(args.quick)
    if args.json:
        print(json.dumps({"latency_ms": m.latencies_ms, "boot_ms": m.boot_ms, "heap_live": m.heap_live,
                          "heap_shims": m.heap_shims, "min_heap_kib": m.min_heap_kib, "battery": battery_rows(m),
                          "slow_hub_days": energy.slow_hub_days(m.event, m.heartbeat)},
                         indent=1))
        return
    print_tables(tables(m, args.quick))


if __name__ == "__main__":
    main()

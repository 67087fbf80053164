"""Advertisement decode + verify rate: the hub's path against Home Assistant's bthome-ble parser.

The same encrypted pendant frames (16 devices, each with its own key, strictly increasing
counters) go through:

* Home Assistant `bthome_ble.BTHomeBluetoothDeviceData.update()` (the baseline): counter
  check, AES-CCM decrypt with `cryptography`'s AESCCM (C), object parsing, a SensorUpdate;
* `bthome.unseal`: our AES-CCM (pure Python on a one-block AES-ECB from `cryptography`,
  the code the ESP32 runs too) and object decoding;
* `Ingest.handle` up to the store: registry look-up, unseal, the role's decoding, the event
  body built, validated and encoded, with the store replaced by a stub that says "new"
  (persisting is measured by the outbox benchmark).

Each runs over every frame in one pass, with fresh parser state; best of three passes.

    python -m safebox.tools.bench.codec [--quick]
"""

from __future__ import annotations

import logging
import tempfile
import time
from pathlib import Path
from typing import Any

from safebox.hub.devices import Device, Devices
from safebox.hub.ingest import Ingest
from safebox.hub.store import Verdict
from safebox.protocol import bthome
from safebox.tools.bench import Table, machine_line, quick_main

DEVICES = 16
_BUTTONS = bthome.PENDANT_BUTTONS


class _StubStore:
    """Stands in for HubStore.accept: every frame is new (no disk)."""

    def accept(self, device_id: str, counter: int, body: bytes | None = None, **_: Any) -> Verdict:
        return Verdict("new", counter - 1, True)


def make_frames(per_device: int, devices: int = DEVICES) -> tuple[list[Device], list[tuple[Device, bytes]]]:
    """Pendant event frames, interleaved across devices as they would arrive."""
    devs = [Device.new(f"24:0A:C4:00:{i >> 8:02X}:{i & 0xFF:02X}", "pendant", "bench") for i in range(1, devices + 1)]
    frames = []
    for n in range(per_device):
        for i, d in enumerate(devs):
            objects = bthome.pendant_objects(80 + (n % 20), _BUTTONS[(n + i) % 3])
            frames.append((d, bthome.seal(d.key, d.mac, 1000 + n, objects)))
    return devs, frames


def _ha_infos(frames: list[tuple[Device, bytes]]) -> list[Any]:
    from bleak.backends.device import BLEDevice
    from habluetooth import BluetoothServiceInfoBleak
    now = time.monotonic()
    return [BluetoothServiceInfoBleak(
        name="pendant", address=d.address, rssi=-60, manufacturer_data={},
        service_data={bthome.SERVICE_UUID: sd}, service_uuids=[bthome.SERVICE_UUID], source="local",
        device=BLEDevice(d.address, "pendant", {}), advertisement=None, connectable=True, time=now, tx_power=None)
        for d, sd in frames]


def _best_pass(one_pass: Any, count: int, repeats: int = 3) -> float:
    best = 0.0
    for _ in range(repeats):
        started = time.perf_counter()
        done = one_pass()
        elapsed = time.perf_counter() - started
        if done != count:
            raise AssertionError(f"only {done} of {count} frames decoded")
        best = max(best, count / elapsed)
    return best


def run(quick: bool = False) -> list[Table]:
    per_device = 20 if quick else 250
    devs, frames = make_frames(per_device)
    count = len(frames)
    logging.getLogger("safebox.hub.ingest").setLevel(logging.WARNING)

    rows: list[list[Any]] = []
    results: dict[str, float] = {}

    try:
        from bthome_ble import BTHomeBluetoothDeviceData
        infos = _ha_infos(frames)

        def ha_pass() -> int:
            parsers = {d.address: BTHomeBluetoothDeviceData(bindkey=d.key) for d in devs}
            ok = 0
            for info in infos:
                update = parsers[info.address].update(info)
                ok += any(e.event_type for e in update.events.values())
            return ok

        results["ha"] = _best_pass(ha_pass, count)
    except ImportError:
        results["ha"] = float("nan")

    def unseal_pass() -> int:
        ok = 0
        for d, sd in frames:
            info, _counter, objects = bthome.unseal(d.key, d.mac, sd)
            ok += bool(info & bthome.INFO_EVENT) and len(objects) == 4
        return ok

    results["unseal"] = _best_pass(unseal_pass, count)

    # A real registry file, as on a hub: ingest stats it on every frame to notice re-pairing.
    registry_dir = tempfile.TemporaryDirectory(prefix="safebox-bench-")
    registry = Devices.load(Path(registry_dir.name) / "devices.json")
    for d in devs:
        registry.add(d)

    def ingest_pass() -> int:
        ingest = Ingest(_StubStore(), registry, "hub-bench", "home-bench")  # type: ignore[arg-type]
        ok = 0
        for d, sd in frames:
            ok += ingest.handle(d.address, sd, -60).kind == "event"
        return ok

    results["ingest"] = _best_pass(ingest_pass, count)
    registry_dir.cleanup()

    forged = [(d, sd[:-1] + bytes([sd[-1] ^ 0x55])) for d, sd in frames]

    def forged_pass() -> int:
        refused = 0
        for d, sd in forged:
            try:
                bthome.unseal(d.key, d.mac, sd)
            except bthome.FrameError:
                refused += 1
        return refused

    results["forged"] = _best_pass(forged_pass, count)

    ha = results["ha"]

    def ratio(x: float) -> str:
        return "n/a" if ha != ha else f"{x / ha:.2f}x"

    rows.append(["Home Assistant bthome-ble 3.25 update() (baseline)", f"{ha:,.0f}", f"{1e6 / ha:.1f}"
                 if ha == ha else "n/a", "1.00x" if ha == ha else "n/a"])
    rows.append(["safebox bthome.unseal (decrypt, MIC, objects)", f"{results['unseal']:,.0f}",
                 f"{1e6 / results['unseal']:.1f}", ratio(results["unseal"])])
    rows.append(["safebox Ingest.handle, store stubbed (+ registry, role, event body)", f"{results['ingest']:,.0f}",
                 f"{1e6 / results['ingest']:.1f}", ratio(results["ingest"])])
    rows.append(["safebox bthome.unseal on forged frames (MIC refused)", f"{results['forged']:,.0f}",
                 f"{1e6 / results['forged']:.1f}", ratio(results["forged"])])
    notes = [f"{count:,} pendant event frames from {DEVICES} devices, strictly increasing counters; "
             "one pass over all of them, best of 3, fresh parser state each pass; every frame verified.",
             "ratio = frames/s divided by the baseline's frames/s (higher is faster).",
             "A hub hears at most a few hundred frames/s (16 devices bursting every 30 ms = ~530/s).",
             f"machine: {machine_line()}"]
    return [Table("Advertisement decode + verify rate (same frames, one process)",
                  ["decoder", "frames/s", "us/frame", "ratio"], rows, notes)]


def main(argv: list[str] | None = None) -> int:
    return quick_main("codec", __doc__, run, argv)


if __name__ == "__main__":
    raise SystemExit(main())

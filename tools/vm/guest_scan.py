"""Inside the virtual Pi: bleak's default backend (BlueZ over D-Bus) scanning, every callback
recorded, in phases the host paces through files in the run's folder.

    python -m safebox.tools.vm.guest_scan DIR passive active

It waits for the adapter first (bluetoothd and hci0 come up beside this job's start). For each
mode in turn: start a `BleakScanner` (passive: an AdvertisementMonitor with an
or_pattern on service data 0xFCD2, which needs `bluetoothd --experimental`; active: bleak's
default discovery), write `DIR/scanning-<mode>`, keep scanning until the host writes
`DIR/end-<mode>`, stop. Each callback with BTHome service data is a line of
`DIR/callbacks.jsonl`: {"mode", "t" (the VM's monotonic clock), "address", "rssi",
"service_data" (hex, after the UUID)}. The stack it ran on goes to `DIR/stack.json`.
"""

from __future__ import annotations

import asyncio
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

BTHOME_UUID = "0000fcd2-0000-1000-8000-00805f9b34fb"
_END_POLL_S = 0.05
_ADAPTER_POLL_S = 0.1


def stack() -> dict[str, str]:
    """What the scan ran on: kernel release, bluetoothd version, PID 1."""
    version = subprocess.run(["/usr/libexec/bluetooth/bluetoothd", "--version"], capture_output=True, text=True)
    return {
        "kernel": platform.release(),
        "bluez": version.stdout.strip(),
        "init": Path("/proc/1/comm").read_text().strip(),
    }


async def _start(scanner, timeout_s: float) -> None:  # type: ignore[no-untyped-def]
    """Start scanning, waiting (polling) for bluetoothd and a powered hci0."""
    from bleak.exc import BleakError

    async with asyncio.timeout(timeout_s):
        while True:
            try:
                await scanner.start()
                return
            except BleakError:
                await asyncio.sleep(_ADAPTER_POLL_S)


async def scan(folder: Path, modes: list[str], timeout_s: float = 120.0) -> None:
    from bleak import BleakScanner
    from bleak.args.bluez import OrPattern
    from bleak.assigned_numbers import AdvertisementDataType

    out = (folder / "callbacks.jsonl").open("a")
    mode = ""

    def callback(device, adv) -> None:  # type: ignore[no-untyped-def]
        data = adv.service_data.get(BTHOME_UUID)
        if data is None:
            return
        out.write(json.dumps({"mode": mode, "t": time.monotonic(), "address": device.address,
                              "rssi": adv.rssi, "service_data": data.hex()}) + "\n")
        out.flush()

    for mode in modes:
        if mode == "passive":
            pattern = OrPattern(0, AdvertisementDataType.SERVICE_DATA_UUID16, b"\xd2\xfc")
            scanner = BleakScanner(callback, scanning_mode="passive", bluez={"or_patterns": [pattern]})
        else:
            scanner = BleakScanner(callback)
        await _start(scanner, timeout_s)
        (folder / f"scanning-{mode}").write_text(f"{time.monotonic()}\n")
        end = folder / f"end-{mode}"
        async with asyncio.timeout(timeout_s):
            while not end.exists():
                await asyncio.sleep(_END_POLL_S)
        await scanner.stop()
    out.close()


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) < 2 or any(m not in ("passive", "active") for m in args[1:]):
        print("usage: python -m safebox.tools.vm.guest_scan DIR passive|active...", file=sys.stderr)
        return 2
    folder = Path(args[0])
    (folder / "stack.json").write_text(json.dumps({**stack(), "pid": os.getpid()}))
    asyncio.run(scan(folder, args[1:]))
    return 0


if __name__ == "__main__":
    sys.exit(main())

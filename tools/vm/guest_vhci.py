"""Inside the virtual Pi: hci0 is a controller on the simulated home's air.

    python -m safebox.tools.vm.guest_vhci tcp-client:10.0.2.2:<port>

Opens the air first (the host's `Air` serves a fresh controller per TCP connection, as
`safebox-hub` attaches), then bumble's `vhci` transport (/dev/vhci: the kernel makes hci0 and
at once sends it HCI Reset), and forwards H4 packets both ways. It tells systemd READY=1
(Type=notify) once /sys/class/bluetooth/hci0 exists, so a unit ordered after it (bluetoothd)
finds the adapter. It exits when either side ends: the adapter goes away with it, as a USB
dongle pulled out would, and comes back when it is started again.
"""

from __future__ import annotations

import asyncio
import os
import socket
import sys
import time
from pathlib import Path


def sd_notify(state: str) -> None:
    """Tell systemd `state` (no-op outside a Type=notify unit)."""
    path = os.environ.get("NOTIFY_SOCKET")
    if not path:
        return
    address = "\0" + path[1:] if path.startswith("@") else path
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.sendto(state.encode(), address)


async def bridge(air_spec: str, adapter: str = "hci0") -> None:
    from bumble.transport import open_transport

    started = time.monotonic()
    air = await open_transport(air_spec)
    vhci = await open_transport("vhci")
    try:
        vhci.source.set_packet_sink(air.sink)
        air.source.set_packet_sink(vhci.sink)
        sysfs = Path("/sys/class/bluetooth") / adapter
        while not sysfs.exists():
            await asyncio.sleep(0.01)
        print(f"{adapter} on the air at {air_spec} ({time.monotonic() - started:.2f} s)", flush=True)
        sd_notify("READY=1")
        ends = [asyncio.ensure_future(t.source.wait_for_termination()) for t in (air, vhci)]  # type: ignore[attr-defined]
        await asyncio.wait(ends, return_when=asyncio.FIRST_COMPLETED)
        print("the air or the adapter went away", flush=True)
    finally:
        await vhci.close()
        await air.close()


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        print("usage: python -m safebox.tools.vm.guest_vhci tcp-client:HOST:PORT", file=sys.stderr)
        return 2
    asyncio.run(bridge(args[0]))
    return 1  # the adapter is gone: a failure for systemd (Restart= may bring it back)


if __name__ == "__main__":
    sys.exit(main())

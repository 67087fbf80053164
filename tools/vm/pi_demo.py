"""`safebox-sim demo --pi`: the demo with the hub in the virtual Pi.

The same press as `safebox-sim demo` (the real pendant firmware on the `micropython` binary, a
GPIO edge), but the hub is the one a Raspberry Pi runs: installed by its install command in the
VM, started by systemd as its service under its own user, scanning with bleak's default BlueZ
backend through bluetoothd and the kernel's HCI stack (tools/vm). The receiver stays on the
host, reached over TLS through QEMU's user network.

The result is the demo's (stored events, signature verified; latencies; what the pendant showed)
plus `radio`, the stack as the VM reported it after the presses: the hub's D-Bus name on the
system bus (backend "bluez"), the running bluetoothd's own `--version`, `uname -r`, PID 1's name,
and the scanning mode the running hub wrote in its status file. `acks` lists every ack line
the pendant printed (kind 1: the hub heard it; 2: the platform has it; 3: help is coming), with
its time from the press.
"""

from __future__ import annotations

import asyncio
import tempfile
import time
from pathlib import Path
from collections.abc import Awaitable, Callable
from typing import Any

from safebox.tools.sim import lines
from safebox.tools.sim.demo import HOLD_S, press_figures, summary
from safebox.tools.sim.home import parse_time
from safebox.tools.vm.pi_home import HUB_ID, PiHome

ACK_TIMEOUT_S = 90  # under TCG the hub's first connection can take tens of seconds
Then = Callable[[PiHome, Any], Awaitable[None]]


async def _one_press(home: PiHome, pendant: Any, n: int) -> dict[str, Any]:
    start = len(pendant.firmware.lines)
    pressed_at = time.time()
    await pendant.press("emergency", HOLD_S)

    async def shown(pattern: str) -> tuple[float, str]:
        line = await pendant.firmware.wait_for_line(pattern, timeout=ACK_TIMEOUT_S, start=start)
        return time.time(), line

    # The press's counter: not n, the pendant's receipts (SPEC 1.7) take counters too.
    made = lines.Event.read(await pendant.firmware.wait_for_line(lines.Event.pattern(), timeout=ACK_TIMEOUT_S,
                                                                 start=start))
    assert made is not None
    (heard_at, first), (delivered_at, _), stored = await asyncio.gather(
        shown(lines.Acked.pattern(counter=made.counter)), shown(f"^(acked|ack) {made.counter} kind [23]( shown)?$"),
        home.stored(n, ACK_TIMEOUT_S))
    acked = lines.Acked.read(first)
    assert acked is not None
    return {"latency_ms": round((parse_time(stored[n - 1]["received_at"]) - pressed_at) * 1000, 1),
            "device_ack_ms": round((heard_at - pressed_at) * 1000, 1), "device_ack_kind": acked.kind,
            "device_delivered_ms": round((delivered_at - pressed_at) * 1000, 1)}


def _acks(firmware_lines: list[str]) -> list[dict[str, Any]]:
    """Every ack line the pendant printed, in order: `acked N kind K` (taken: the event is off
    its flash; its light shows it unless stale) and `ack N kind K shown` (a later, higher kind)."""
    out = []
    for line in firmware_lines:
        for kind in (lines.Acked, lines.AckShown):
            if (found := kind.read(line)) is not None:
                out.append({"counter": found.counter, "kind": found.kind, "line": line.strip()})
    return out


async def run(*, presses: int = 1, workdir: Path | None = None, roles: tuple[str, ...] = ("pendant",),
              scripted: int = 0, then: Then | None = None) -> dict[str, Any]:
    """The demo (see the module's docstring); `then(home, pi)`, if given, runs after it in the
    same boot of the virtual Pi (the tests go on from there), before the VM is powered off.
    `scripted`: more pendants on the air for them (PiHome's)."""
    with tempfile.TemporaryDirectory(prefix="safebox-demo-pi-") as tmp:
        async with PiHome(workdir or Path(tmp), roles, scripted) as home:
            pendant = home.devices[0]
            async with home.virtual_pi(bluetoothd_args=()) as pi:  # --experimental: the installer's
                installed_s = await home.wait_installed(pi)
                results = [await _one_press(home, pendant, n) for n in range(1, presses + 1)]
                stack = await home.stack(pi)
                stored = await home.stored(presses, 5)
                acks = _acks(pendant.firmware.lines)
                if then is not None:
                    await then(home, pi)
                await home.end(pi)
            return {
                "hub_id": HUB_ID,
                "platform": home.platform_url,
                "pendant": pendant.device.id,
                "radio": stack["radio"],
                "hub_service": stack["hub_service"],
                "vm": {"boot_s": round(pi.boot_s or 0.0, 1), "installed_and_running_s": installed_s},
                **press_figures(results),
                "acks": acks,
                "events": [summary(e) for e in stored[:presses]],
            }


def render(result: dict[str, Any]) -> str:
    from safebox.tools.sim import demo

    r, s = result["radio"], result["hub_service"]
    head = [f"virtual Pi: Linux {r['kernel']}, {r['init']} as init, BlueZ {r['bluez']} (bleak's {r['backend']} "
            f"backend, {r['scanning']} scanning); booted in {result['vm']['boot_s']:.0f} s, the hub installed "
            f"and running as its service (user {s['user']}, Type={s['type']}) at "
            f"{result['vm']['installed_and_running_s']:.0f} s (QEMU without KVM: slow)"]
    text = demo.render(result).splitlines()
    shown = "; ".join(a["line"] for a in result["acks"])
    return "\n".join(text[:1] + head + text[1:] + [f"the pendant's ack lines: {shown or 'none'}"])

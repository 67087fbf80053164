"""`safebox-sim demo`: one emergency press, from the pendant's button to the platform's database.

Presses the pendant's emergency button (a real GPIO edge into the real firmware on
the `micropython` binary), and follows it over the virtual air to the hub process
and over signed HTTPS to the receiver process. Reports when the pendant heard its
ack when the platform stored the event, and when the pendant learnt that the platform
has it, each measured from the moment the button went down.
"""

from __future__ import annotations

import asyncio
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from safebox.tools.sim import lines
from safebox.tools.sim.home import SimHome, parse_time

HOLD_S = 0.12  # a deliberate press: longer than the 50 ms debounce, shorter than a long press


async def _one_press(home: SimHome, pendant: Any, n: int) -> dict[str, Any]:
    acked_from = len(pendant.firmware.lines)
    pressed_at = time.time()
    await home.press(pendant, "emergency", HOLD_S)

    async def device_shows(pattern: str) -> tuple[float, str]:
        line = await pendant.firmware.wait_for_line(pattern, timeout=10, start=acked_from)
        return time.time(), line

    # The press's counter: not n, the pendant's receipts (SPEC 1.7) take counters too.
    made = lines.Event.read(await pendant.firmware.wait_for_line(lines.Event.pattern(), timeout=10, start=acked_from))
    assert made is not None
    (heard_at, first), (delivered_at, _), stored = await asyncio.gather(
        device_shows(lines.Acked.pattern(counter=made.counter)),
        device_shows(lines.AckShown.pattern(counter=made.counter, kind=2)), home.wait_stored(n))
    event = stored[n - 1]
    return {
        "latency_ms": round((parse_time(event["received_at"]) - pressed_at) * 1000, 1),
        "device_ack_ms": round((heard_at - pressed_at) * 1000, 1),
        "device_ack_kind": lines.Acked.read(first).kind,
        "device_delivered_ms": round((delivered_at - pressed_at) * 1000, 1),
        "event": event,
    }


def summary(event: dict[str, Any]) -> dict[str, Any]:
    """A stored event as the demo's JSON shows it."""
    return {key: event[key] for key in ("event_id", "type", "hub_id", "device_id", "counter",
                                        "occurred_at", "received_at", "signature_verified")}


def press_figures(results: list[dict[str, Any]]) -> dict[str, Any]:
    """The demo's JSON from its presses (each as `_one_press` measures it), the same here and
    in the virtual Pi's demo (tools/vm/pi_demo.py): each figure a list, a press an entry."""
    return {
        "press_hold_ms": HOLD_S * 1000,
        "latency_ms": [r["latency_ms"] for r in results],
        "latency_ms_median": statistics.median(r["latency_ms"] for r in results),
        "device_ack_ms": [r["device_ack_ms"] for r in results],
        "device_ack_kind": [r["device_ack_kind"] for r in results],
        "device_delivered_ms": [r["device_delivered_ms"] for r in results],
    }


async def run(*, presses: int = 1, workdir: Path | None = None) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="safebox-demo-") as tmp:
        async with SimHome(workdir or Path(tmp)) as home:
            pendant = await home.add_device("pendant", "bedroom")
            results = [await _one_press(home, pendant, n) for n in range(1, presses + 1)]
            stored = await home.stored_events()
            return {
                "hub_id": home.hub_id,
                "platform": home.platform_url,
                "pendant": pendant.id,
                **press_figures(results),
                "events": [summary(e) for e in stored],
            }


def render(result: dict[str, Any]) -> str:
    lines = [
        f"simulated home: hub {result['hub_id']}, platform {result['platform']} (TLS, throwaway CA)",
        f"pendant {result['pendant']} paired; firmware running on the micropython binary",
    ]
    for i, e in enumerate(result["events"]):
        lines.append(f"press {i + 1}: emergency button held {result['press_hold_ms']:.0f} ms")
        lines.append(f"  {result['latency_ms'][i]:5.0f} ms  platform stored {e['event_id']} ({e['type']}, "
                     f"counter {e['counter']}, signature {'verified' if e['signature_verified'] else 'NOT verified'})")
        if result["device_ack_kind"][i] == 1:
            lines.append(f"  {result['device_ack_ms'][i]:5.0f} ms  pendant shows \"the hub heard it\" (ack kind 1)")
            how = "ack kind 2"
        else:  # the platform answered while the hub was connecting: one ack says both
            how = "ack kind 2, its first: the platform answered while the hub connected"
        lines.append(f"  {result['device_delivered_ms'][i]:5.0f} ms  pendant shows \"the platform has it\" ({how})")
    lines.append(f"end-to-end latency, press to stored at the platform: median {result['latency_ms_median']:.0f} ms "
                 f"over {len(result['latency_ms'])} press(es)")
    return "\n".join(lines)

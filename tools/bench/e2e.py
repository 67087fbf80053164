"""End-to-end press latency through the whole simulated home (as `safebox-sim demo --presses N`).

Real pendant firmware on the `micropython` binary, bumble air, the hub process, signed
HTTPS over real TLS, the receiver process. Measured from the moment the button goes down,
so every figure includes the 120 ms the finger holds it and the 50 ms release debounce
(the firmware counts a press when it ends); the row "after the finger" takes those
170 ms off, leaving radio + hub + uplink + platform.

    python -m safebox.tools.bench.e2e [--quick] [--presses N]
"""

from __future__ import annotations

import asyncio
import tempfile
import time
from pathlib import Path
from typing import Any

from safebox.tools.bench import Table, bench_parser, machine_line, percentile, print_tables
from safebox.tools.sim import lines

HOLD_S = 0.12  # as the demo: longer than the 50 ms debounce, shorter than a long press
RELEASE_DEBOUNCE_MS = 50


async def _presses(n: int) -> tuple[list[float], list[float]]:
    """Press the emergency button n times, one at a time; (ms to stored, ms to device ack) per press.

    Events are matched by id (<pendant>-<counter from the firmware's own `event` line>), not by
    position: the platform also stores the hub's own events (heartbeats) in between.
    """
    from safebox.tools.sim.home import SimHome, parse_time

    stored_ms: list[float] = []
    acked_ms: list[float] = []
    with tempfile.TemporaryDirectory(prefix="safebox-bench-e2e-") as tmp:
        async with SimHome(Path(tmp)) as home:
            pendant = await home.add_device("pendant", "bedroom")
            fw = pendant.firmware
            for _ in range(n):
                mark = len(fw.lines)
                pressed_at = time.time()
                await home.press(pendant, "emergency", HOLD_S)
                line = await fw.wait_for_line(lines.Event.pattern(), timeout=5, start=mark)
                counter = lines.Event.read(line).counter
                event_id = f"{pendant.id}-{counter}"
                await fw.wait_for_line(lines.Acked.pattern(counter=counter), timeout=10, start=mark)
                acked_at = time.time()
                async with asyncio.timeout(10):
                    while not (found := [e for e in await home.stored_events() if e["event_id"] == event_id]):
                        await asyncio.sleep(0.005)
                stored_ms.append((parse_time(found[0]["received_at"]) - pressed_at) * 1000)
                acked_ms.append((acked_at - pressed_at) * 1000)
    return stored_ms, acked_ms


def _row(name: str, values: list[float]) -> list[Any]:
    return [name, len(values), f"{percentile(values, 50):.0f}", f"{percentile(values, 90):.0f}",
            f"{percentile(values, 99):.0f}", f"{max(values):.0f}"]


def run(quick: bool = False, presses: int | None = None) -> list[Table]:
    n = presses or (3 if quick else 50)
    stored, acked = asyncio.run(_presses(n))
    hold_ms = HOLD_S * 1000
    finger = hold_ms + RELEASE_DEBOUNCE_MS
    rows = [
        _row("press -> stored at the platform (signature verified)", stored),
        _row("press -> pendant got its first ack (heard, or already delivered)", acked),
        _row(f"stored at the platform, after the finger (-{finger:.0f} ms)", [x - finger for x in stored]),
    ]
    notes = [f"{n} emergency presses, one at a time, each waited for until stored; one pendant, one hub, "
             "one receiver (separate processes), real TLS. The platform's received_at is its own clock "
             "(millisecond resolution); the ack time is when the simulator read the firmware's `acked` line.",
             f"includes the {hold_ms:.0f} ms hold and the 50 ms release debounce (a press is counted when it ends).",
             f"machine: {machine_line()}"]
    return [Table("End-to-end press latency, full simulated home (ms)",
                  ["path", "presses", "median", "p90", "p99", "max"], rows, notes)]


def main(argv: list[str] | None = None) -> int:
    parser = bench_parser("e2e", __doc__, quick_help="3 presses (smoke test)")
    parser.add_argument("--presses", type=int, help="how many presses (default 50)")
    args = parser.parse_args(argv)
    print_tables(run(args.quick, args.presses))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""The hub on a Pi's real stack against the simulator's, in one run (issue 10, item 7).

    python -m safebox.tools.bench.pi [--quick] [--json]

The same press, twice over: the real pendant firmware on the `micropython` binary, held for
120 ms, N times, with the hub
1. **bumble**: the simulated home's hub process, bleak over the project's bumble backend
   (`safebox-sim demo`'s run);
2. **virtual Pi**: the hub installed by its install command in the QEMU VM, run by systemd,
   bleak's default BlueZ backend through bluetoothd and the kernel's HCI stack, passive
   scanning (`safebox-sim demo --pi`'s run), with 16 more pendants paired and on the air.
Per press, from the moment the button went down: the hub has stored the event (the event's
`data.hub_stored_at`, on the platform's clock), the platform has stored it (`received_at`),
the pendant has taken kind 1 ("heard", the ack round trip as the resident sees it) and shows
kind 2. Medians, and the virtual Pi's over bumble's as a ratio.

The VM runs without KVM (TCG: every guest instruction translated), so it is slow in itself:
**emulation** times one CPU-bound Python loop (the same code) in the VM and on the host; the
hub's own work is CPU, so about that factor of its share is emulation, not BlueZ.
**Memory**: the hub's RSS in the VM after the 16 pendants each pressed once (goal ≤ 50 MiB:
no bumble in the process there).

Not in the test suite (about 5 minutes); RESULTS.md keeps its last table.
"""

from __future__ import annotations

import asyncio
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from safebox.tools.bench import Table, bench_parser, machine_line, print_tables
from safebox.tools.sim.home import parse_time

SCRIPTED = 16
GOAL_RSS_MIB = 50
# the same CPU-bound Python on both sides: seconds for 3 million additions in a loop
LOOP = "import time; t = time.perf_counter(); s = 0\nfor i in range(3_000_000): s += i\nprint(time.perf_counter() - t)"


def _hub_stored_ms(db: Path, presses: list[float]) -> list[float]:
    """Press -> stored at the hub, from each stored press's data.hub_stored_at (in order)."""
    from safebox.tools.receiver.store import Store

    store = Store(db)
    try:
        emergencies = [e for e in store.events() if e.type == "emergency"]
    finally:
        store.close()
    out = []
    for event, pressed in zip(sorted(emergencies, key=lambda e: e.received_at), presses):
        stored = json.loads(event.body).get("data", {}).get("hub_stored_at")  # RFC 3339, as occurred_at
        if stored is not None:
            out.append(round((parse_time(stored) - pressed) * 1000, 1))
    return out


async def _loop_s(argv: list[str]) -> float:
    proc = await asyncio.create_subprocess_exec(*argv, "-c", LOOP, stdout=asyncio.subprocess.PIPE)
    out, _ = await proc.communicate()
    return float(out)


async def _on_the_pi(presses: int, folder: Path) -> tuple[dict[str, Any], dict[str, Any]]:
    from safebox.tools.vm import pi_demo

    extra: dict[str, Any] = {}

    async def then(home: Any, pi: Any) -> None:
        _, extra["burst_acked_s"] = await home.scripted_burst(300)
        await asyncio.sleep(2)
        pid = "$(systemctl show safebox-hub -p MainPID --value)"
        extra["rss_kib"] = int((await home.vm(pi, f"ps -o rss= -p {pid}")).strip())
        extra["vm_loop_s"] = float((await home.vm(pi, f"/opt/safebox/.venv/bin/python -c '{LOOP}'")).strip())
        extra["host_loop_s"] = await _loop_s([sys.executable])

    result = await pi_demo.run(presses=presses, workdir=folder, scripted=SCRIPTED, then=then)
    return result, extra


async def measure(presses: int) -> dict[str, Any]:
    from safebox.tools.sim import demo

    with tempfile.TemporaryDirectory(prefix="safebox-bench-pi-") as tmp:
        out: dict[str, Any] = {"presses": presses}
        for name in ("bumble", "vm"):
            folder = Path(tmp) / name
            started = time.time()
            extra: dict[str, Any] = {}
            if name == "bumble":
                result = await demo.run(presses=presses, workdir=folder)
            else:
                result, extra = await _on_the_pi(presses, folder)
            # each press's time: its stored latency back from received_at
            pressed = [parse_time(e["received_at"]) - ms / 1000
                       for e, ms in zip(result["events"], result["latency_ms"])]
            out[name] = {
                "hub_stored_ms": _hub_stored_ms(folder / "platform" / "events.db", pressed),
                "platform_stored_ms": result["latency_ms"],
                "kind1_ms": result["device_ack_ms"],
                "kind2_ms": result["device_delivered_ms"],
                "run_s": round(time.time() - started, 1),
                **extra,
            }
            if name == "vm":
                out[name]["radio"] = result["radio"]
        return out


def tables(m: dict[str, Any]) -> list[Table]:
    b, v = m["bumble"], m["vm"]
    rows = []
    for key, what in (("hub_stored_ms", "press -> stored at the hub"), ("platform_stored_ms", "press -> stored at the platform"),
                      ("kind1_ms", "press -> pendant took its first ack (kind 1, or 2 if the platform was quick)"),
                      ("kind2_ms", "press -> pendant shows kind 2")):
        mb, mv = statistics.median(b[key]), statistics.median(v[key])
        rows.append([what, f"{mb:.0f} ms", f"{mv:.0f} ms", f"{mv / mb:.2f}x"])
    factor = v["vm_loop_s"] / v["host_loop_s"]
    radio = v["radio"]
    latency = Table(f"The hub on a Pi's real stack vs the simulator's ({m['presses']} presses each, medians)",
                    ["from the press (button down)", "bumble backend", "virtual Pi (BlueZ)", "ratio"], rows, [
                        f"virtual Pi: Linux {radio['kernel']}, BlueZ {radio['bluez']}, {radio['scanning']} scanning, "
                        f"{radio['init']}; {SCRIPTED} more pendants paired and on the air",
                        f"emulation: the same Python loop ran {factor:.1f}x slower in the VM than on the host "
                        f"({v['vm_loop_s']:.2f} s vs {v['host_loop_s']:.2f} s; QEMU TCG, no KVM): the hub's CPU work "
                        "is that much slower there, the air's and the firmware's timing (debounce, advertising "
                        "intervals) are not",
                        f"machine: {machine_line()}",
                    ])
    rss = v["rss_kib"] / 1024
    memory = Table("The hub's memory on the virtual Pi", ["process", "RSS", "goal"], [
        [f"safebox-hub, {SCRIPTED + 1} pendants paired, each pressed", f"{rss:.1f} MiB", f"<= {GOAL_RSS_MIB} MiB"]],
        ["bleak's BlueZ backend over D-Bus, no bumble in the process; read with ps in the VM after the presses",
         f"machine: {machine_line()}"])
    burst = v["burst_acked_s"]
    timing = ([f"{burst[0]:.1f} s", f"{statistics.median(burst):.1f} s", f"{burst[-1]:.1f} s",
               f"{len(burst) / burst[-1]:.2f}"] if burst else ["-"] * 4)
    acks = Table(f"{SCRIPTED} pendants pressed at once on the virtual Pi: when each took its first ack",
                 ["acked", "first", "median", "last", "acks per second"],
                 [[f"{len(burst)} of {SCRIPTED}", *timing]],
                 ["each a scripted pendant (tools/sim/scripted.py) re-sending every 2 s until answered, as the "
                  "firmware does; one connection per ack under TCG", f"machine: {machine_line()}"])
    return [latency, acks, memory]


def run(quick: bool = False) -> list[Table]:
    return tables(asyncio.run(measure(2 if quick else 10)))


def main(argv: list[str] | None = None) -> int:
    parser = bench_parser("pi", __doc__)
    parser.add_argument("--json", action="store_true", help="the measurements as JSON")
    args = parser.parse_args(argv)
    m = asyncio.run(measure(2 if args.quick else 10))
    if args.json:
        print(json.dumps(m, indent=2))
    else:
        print_tables(tables(m))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

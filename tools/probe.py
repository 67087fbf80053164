"""How fast the home's acks recover from one burst of trouble.

    python -m safebox.tools.probe ack-loss [--share 0.5] [--devices 16] [--json] [--write [RESULTS.md]]
    python -m safebox.tools.probe adv-drop [--share 0.7]
    python -m safebox.tools.probe hub-kill

A simulated home of pendants (real firmware, hub and receiver processes, real TLS) is pressed
as fast as each pendant takes it; a pendant keeps at most 6 events waiting for their ack, so
the number of new events each second is the rate at which acks come back. At t = 20 s one
burst of trouble: a share of the ack writes lost, a share of the advertisements dropped, or
the hub SIGKILLed and restarted 2 s later. The events per second before, in 10-second
windows after, and how long until the home is back at half its rate.

This found a stall the chaos run had hinted at: after a burst of lost acks many pendants
back off at once (asleep, not advertising), and the hub tried to connect to them one at a
time, each attempt holding the adapter's single initiator for its whole connect timeout,
while the pendants that were awake waited behind them. With 50 % of ack writes lost for
5 s the rate fell from 26 to 0-1 events/s and had not recovered 180 s later. hub/radio.py
now connects only to a device that is advertising (see its docstring); the same probe
recovers in about 13 s.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import sys
import tempfile
from pathlib import Path
from typing import Any

from safebox.tools.bench import Table, generated_line, machine_line
from safebox.tools.chaos import ChaosRun, DrivenDevice, ack_loss

KINDS = ("ack-loss", "adv-drop", "hub-kill")
WARMUP_S = 20
WINDOW_S = 10


async def probe(kind: str, share: float, *, devices: int = 16, burst_s: float = 5.0, observe_s: int = 180,
                seed: int = 1, workdir: Path | None = None) -> dict[str, Any]:
    """Run the probe; the events created each second, before and after the burst."""
    if kind not in KINDS:
        raise ValueError(f"unknown probe {kind!r}: one of {', '.join(KINDS)}")
    from safebox.tools.sim.home import SimHome

    with tempfile.TemporaryDirectory(prefix="safebox-probe-") as tmp:
        run = ChaosRun(seed=seed, events=10 ** 9, mix={"pendant": devices}, workdir=Path(workdir or tmp),
                       injectors=())
        home = run.home = SimHome(run.workdir)
        per_second: list[int] = []
        lose, lost = ack_loss(share, random.Random(seed))
        async with home:
            for i in range(devices):
                run.devs.append(DrivenDevice(await home.add_device("pendant"), "pendant", random.Random(f"{seed}-{i}")))
            drivers = [asyncio.create_task(run.pendant(d)) for d in run.devs]
            last = run.created_total()
            for second in range(WARMUP_S + observe_s):
                if second == WARMUP_S:
                    await _burst(home, kind, share, lose)
                if second == WARMUP_S + int(burst_s):
                    home.air.acl_filter = None
                    home.air.drop_rate = 0.0
                await asyncio.sleep(1.0)
                now = run.created_total()
                per_second.append(now - last)
                last = now
            run.stop.set()
            await asyncio.gather(*drivers)
    before = sum(per_second[5:WARMUP_S]) / (WARMUP_S - 5)
    after = per_second[WARMUP_S:]
    recovered = next((i for i in range(int(burst_s), len(after))
                      if sum(after[i:i + WINDOW_S]) / WINDOW_S >= 0.5 * before), None)
    return {"kind": kind, "share": share, "devices": devices, "burst_s": burst_s,
            "lost_acks": lost["write"] + lost["response"], "before_per_s": round(before, 1),
            "windows_per_s": [sum(after[i:i + WINDOW_S]) / WINDOW_S for i in range(0, len(after), WINDOW_S)],
            "recovered_after_s": recovered, "observed_s": observe_s}


async def _burst(home: Any, kind: str, share: float, lose: Any) -> None:
    if kind == "ack-loss":
        home.air.acl_filter = lose
    elif kind == "adv-drop":
        home.air.drop_rate = share
    else:
        await home.hub.kill()
        await asyncio.sleep(2.0)
        await home.start_hub()


def table(results: list[dict[str, Any]]) -> Table:
    rows = []
    for r in results:
        what = {"ack-loss": f"{r['share']:.0%} of ack writes lost for {r['burst_s']:g} s ({r['lost_acks']} lost)",
                "adv-drop": f"{r['share']:.0%} of advertisements dropped for {r['burst_s']:g} s",
                "hub-kill": "hub SIGKILLed, restarted after 2 s"}[r["kind"]]
        rec = r["recovered_after_s"]
        rows.append([what, r["devices"], f"{r['before_per_s']:.1f}",
                     " ".join(f"{w:.0f}" for w in r["windows_per_s"][:12]),
                     f"{rec} s" if rec is not None else f"not within {r['observed_s']} s"])
    return Table("Probe: the home's event rate around one burst of trouble (pendants pressed at full load)",
                 ["burst (at t = 20 s)", "pendants", "events/s before", "events/s, 10-s windows from t = 20 s",
                  "back to half rate after"], rows,
                 ["a pendant keeps up to 6 events waiting for their ack, so new events per second is the rate "
                  "at which acks come back.",
                  "before the fix in hub/radio.py (connect only to a device that is advertising), 50 % of ack "
                  "writes lost for 5 s took the rate from 26 to 0-1 events/s for more than 180 s.",
                  f"machine: {machine_line()}"])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m safebox.tools.probe", description=__doc__.split("\n")[0])
    parser.add_argument("kind", choices=KINDS)
    parser.add_argument("--share", type=float, default=0.5, help="share of ack writes or advertisements lost")
    parser.add_argument("--devices", type=int, default=16)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--json", action="store_true", help="the figures as JSON")
    parser.add_argument("--write", nargs="?", const="", metavar="RESULTS.md",
                        help="update this probe's section of the results page")
    args = parser.parse_args(argv)
    if not 0.0 <= args.share <= 1.0 or args.devices < 1:
        parser.error("--share must be within 0..1 and --devices at least 1")
    result = asyncio.run(probe(args.kind, args.share, devices=args.devices, seed=args.seed))
    t = table([result])
    print(json.dumps(result, indent=1) if args.json else t.text())
    if args.write is not None:
        from safebox.tools.bench import default_results_path, update_section
        cmd = f"python -m safebox.tools.probe {args.kind}" + (f" --share {args.share:g}"
                                                                if args.kind != "hub-kill" else "")
        update_section(args.write or default_results_path(), f"probe-{args.kind}", "\n".join([
            f"### Probe: {args.kind}", "", generated_line(cmd + " --write"), "", f"Reproduce: `{cmd}`", "",
            t.markdown()]))
    return 0


if __name__ == "__main__":
    sys.exit(main())

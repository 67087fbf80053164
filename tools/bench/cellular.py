"""Time until someone knows, during a broadband outage: the hub with and without its cellular modem.

Each run is a scenario on the virtual clock (tools/sim/scenario): the real firmware, the hub,
the receiver over TLS, and with a modem the emulated modem on a pty, the fake network (each SMS
takes 3-10 s) and the SMS gateway. The home's broadband goes down at 1m, the emergency button is
pressed at 2m, the line comes back at 2m + the outage. Measured per run: press -> stored at the
platform, and press -> the family's phone rings with the SMS. The hub's bound is the default,
`cellular.after_s = 60`; the goal (issue 16) is at most 90 s to the platform.

    python -m safebox.tools.bench.cellular [--quick]
"""

from __future__ import annotations

import statistics
from collections.abc import Sequence

from safebox.tools.bench import Table, machine_line, quick_main
from safebox.tools.sim.scenario import runner
from safebox.tools.sim.scenario.spec import format_duration, parse

FAMILY = "+8613900139000"


def scenario(*, modem: bool, outage_s: int, seed: int, loss: float = 0.0) -> dict:
    doc: dict = {
        "duration": format_duration(120 + outage_s + 300), "seed": seed,
        "home": {"devices": [{"id": "pendant", "role": "pendant", "room": "bedroom"}]},
        "steps": [{"at": "1m", "internet": "down"},
                  {"at": "2m", "device": "pendant", "action": "press:emergency"},
                  {"at": format_duration(120 + outage_s), "internet": "up"}],
    }
    if modem:
        doc["home"]["modem"] = {"after_s": 60, "sms_delay_s": [3, 10], "loss": loss, "contacts": [FAMILY]}
    return doc


def measure(*, modem: bool, outage_s: int, seed: int, loss: float = 0.0) -> dict:
    res = runner.run(parse(scenario(modem=modem, outage_s=outage_s, seed=seed, loss=loss)))
    (event,) = [e for e in res["events"] if e["type"] == "emergency"]
    family = [m["delivered_s"] for m in res.get("cellular", {}).get("sms", [])
              if m["to"] == FAMILY and m["delivered_s"] is not None]
    return {"to_platform_s": event["received_s"] - event["occurred_s"], "channel": event["channel"],
            "to_family_s": (family[0] - event["occurred_s"]) if family else None, "stored": len(res["events"]),
            "wall_s": res["wall_s"]}


def _row(label: str, runs: list[dict]) -> list:
    platform = [r["to_platform_s"] for r in runs]
    family = [r["to_family_s"] for r in runs if r["to_family_s"] is not None]
    channels = sorted({r["channel"] for r in runs})
    return [label, len(runs), f"{statistics.median(platform):.1f}", f"{max(platform):.1f}",
            f"{statistics.median(family):.1f}" if family else "-", f"{len(family)}/{len(runs)}",
            ", ".join(channels), max(r["stored"] for r in runs)]


def run(quick: bool = False) -> Sequence[Table]:
    seeds = range(1, 3 if quick else 11)
    outages = [600] if quick else [300, 1200]
    variants = [("no modem", False, 0.0), ("modem", True, 0.0)]
    if not quick:
        variants.append(("modem, 20 % of SMS lost", True, 0.2))
    rows, wall = [], 0.0
    for outage in outages:
        for label, modem, loss in variants:
            runs = [measure(modem=modem, outage_s=outage, seed=s, loss=loss) for s in seeds]
            wall += sum(r["wall_s"] for r in runs)
            rows.append(_row(f"{label}, outage {format_duration(outage)}", runs))
    table = Table("Broadband down: emergency press -> someone knows (virtual time, seconds)",
                  ["variant", "runs", "to platform median s", "to platform max s", "to family median s",
                   "family SMS", "channel", "events stored"], rows,
                  notes=["cellular.after_s = 60 (default); each SMS 3-10 s on the network; relay backoff 1-30 s",
                         "no delivery report: the platform's SMS goes again after 120 s, 3 times at most; the "
                         "family's once",
                         f"{sum(r[1] for r in rows)} scenario runs in {wall:.1f} s wall",
                         "command: python -m safebox.tools.bench.cellular" + (" --quick" if quick else ""),
                         f"machine: {machine_line()}"])
    return [table]


def main(argv: list[str] | None = None) -> int:
    return quick_main("cellular", __doc__, run, argv)


if __name__ == "__main__":
    raise SystemExit(main())

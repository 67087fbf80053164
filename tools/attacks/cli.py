"""python -m safebox.tools.attacks: the run, its table, the command line."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import tempfile
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

from safebox.tools.attacks import __doc__ as _DOC
from safebox.tools.attacks.abuse import abuse_attacks
from safebox.tools.attacks.attacker import Attacker, Report
from safebox.tools.attacks.acks import ack_attacks
from safebox.tools.attacks.ble import ble_attacks
from safebox.tools.attacks.https import https_attacks


async def run(workdir: Path | None = None) -> Report:
    from safebox.tools.sim.home import SimHome

    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="safebox-attacks-") as tmp:
        # Every refusal line is read as the attack's verdict: the hub says each one at debug level.
        async with SimHome(Path(workdir or tmp), hub_log_level="debug") as home:
            attacker = Attacker(home)
            print("BLE attacks (hub log):", file=sys.stderr)
            await ble_attacks(attacker)
            await ack_attacks(attacker)
            print("HTTPS attacks (receiver answers):", file=sys.stderr)
            await https_attacks(attacker)
            print("Receiver under abuse (connections, deadlines, torn bodies):", file=sys.stderr)
            await abuse_attacks(attacker)
            attacker.report.seconds = time.monotonic() - started
            return attacker.report


# -- output ---------------------------------------------------------------------------------------

def table(report: Report) -> Any:
    from safebox.tools.bench import Table
    rows = []
    for n, a in enumerate(report.attempts, 1):
        verdict = ("accepted, as it should" if a.hop == "control" else "refused") if a.ok else "FAIL"
        rows.append([n, a.hop, a.attack, a.seen[:140], a.stored, "yes" if a.intact else "NO", verdict])
    attacks = report.attacks
    refused = sum(a.ok for a in attacks)
    notes = [f"{refused} of {len(attacks)} attacks refused with data intact; "
             f"{sum(a.ok for a in report.attempts if a.hop == 'control')} of "
             f"{sum(a.hop == 'control' for a in report.attempts)} controls accepted; {report.seconds:.0f} s.",
             "stored = events at the platform before -> after the attempt; intact = no stored body changed or "
             "removed, no device event added, the hub's replay counters and held device events unchanged "
             "(new rows the hub makes itself, e.g. heartbeats, are allowed)."]
    return Table("Attacks: attempts and refusals (simulated home, real processes, real TLS)",
                 ["#", "hop", "attempt", "refusal seen (hub log / receiver answer)", "stored", "intact",
                  "verdict"], rows, notes)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m safebox.tools.attacks", description=_DOC.split("\n")[0])
    parser.add_argument("--json", action="store_true", help="one JSON object instead of the table")
    parser.add_argument("--write", nargs="?", const="", metavar="RESULTS.md",
                        help="update the attacks section of the results page (default: the repository's)")
    parser.add_argument("--workdir", type=Path, help="keep the simulated home's files here")
    args = parser.parse_args(argv)
    report = asyncio.run(run(args.workdir))
    t = table(report)
    if args.json:
        print(json.dumps({"ok": not report.failed, "seconds": round(report.seconds, 1),
                          "attempts": [{**asdict(a), "ok": a.ok} for a in report.attempts]}, indent=1))
    else:
        print(t.text())
    if args.write is not None:
        from safebox.tools.bench import default_results_path, generated_line, update_section
        path = args.write or default_results_path()
        update_section(path, "attacks", "\n".join([
            "## Attacks", "", generated_line("python -m safebox.tools.attacks --write"), "",
            "Reproduce: `python -m safebox.tools.attacks` (add `--json` for one JSON object). "
            "The test suite runs the same table: `tests/test_attacks.py`.", "", t.markdown()]))
        print(f"wrote the attacks section of {path}", file=sys.stderr)
    return 0 if not report.failed else 1


if __name__ == "__main__":
    sys.exit(main())

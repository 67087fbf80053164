"""python -m safebox.tools.chaos: the command line."""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import sys
from collections import Counter
from dataclasses import asdict
from pathlib import Path

from safebox.tools.bench import generated_line
from safebox.tools.chaos import __doc__ as _DOC
from safebox.tools.chaos.records import DEFAULT_MIX
from safebox.tools.chaos.report import tables
from safebox.tools.chaos.runner import run


class _QuietRepeats(logging.Filter):
    """Let a log message through a few times, then only count it (a stuck loop must not flood)."""

    def __init__(self, allowed: int = 3) -> None:
        super().__init__()
        self.allowed = allowed
        self.seen: Counter[str] = Counter()

    def filter(self, record: logging.LogRecord) -> bool:
        key = f"{record.name}: {record.msg}"
        self.seen[key] += 1
        return self.seen[key] <= self.allowed


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m safebox.tools.chaos", description=_DOC.split("\n")[0])
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--events", type=int, default=10_000, help="events to create (default 10,000)")
    parser.add_argument("--devices", type=int, default=16)
    parser.add_argument("--mix", default=DEFAULT_MIX, help=f"roles and counts (default {DEFAULT_MIX}); "
                                                           "scaled to --devices")
    parser.add_argument("--fault-scale", type=float, default=1.0,
                        help="multiply the mean gap between faults (smaller: more faults)")
    parser.add_argument("--faults", default="platform,air,devices",
                        help="which fault injectors run: platform, air, devices, broadband (default: "
                             "platform,air,devices; 'none' for none)")
    parser.add_argument("--max-minutes", type=float, default=45.0, help="time budget of the load phase")
    parser.add_argument("--pace", type=float, default=0.0, metavar="S",
                        help="mean pause in seconds between one resident's actions (default 0: as fast as "
                             "each device takes them, up to 6 waiting for their ack)")
    parser.add_argument("--json", action="store_true", help="one JSON object instead of the tables")
    parser.add_argument("--write", nargs="?", const="", metavar="RESULTS.md",
                        help="update the chaos section of the results page")
    parser.add_argument("--workdir", type=Path, help="keep the simulated home's files here")
    args = parser.parse_args(argv)
    unknown = {f for f in args.faults.split(",") if f} - {"platform", "air", "devices", "broadband", "none"}
    if unknown:
        parser.error(f"--faults: unknown injector(s) {', '.join(sorted(unknown))}")
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr, format="%(levelname)s %(name)s: %(message)s")
    quiet = _QuietRepeats()
    for handler in logging.getLogger().handlers:
        handler.addFilter(quiet)
    result = asyncio.run(run(seed=args.seed, events=args.events, devices=args.devices, mix=args.mix,
                             workdir=args.workdir, fault_scale=args.fault_scale,
                             injectors=tuple(f for f in args.faults.split(",") if f and f != "none"),
                             max_load_s=args.max_minutes * 60, pace_s=args.pace))
    ts = tables(result)
    if args.json:
        print(json.dumps({**asdict(result), "ok": result.ok}, indent=1))
    else:
        for t in ts:
            print(t.text() + "\n")
    if args.write is not None:
        from safebox.tools.bench import default_results_path, update_section
        path = args.write or default_results_path()
        cmd = f"python -m safebox.tools.chaos --seed {args.seed} --events {args.events} --devices {args.devices}" + \
            (f" --pace {args.pace:g}" if args.pace else "") + \
            (f" --faults {args.faults}" if args.faults != "platform,air,devices" else "")
        update_section(path, "chaos", "\n".join([
            "## Chaos run", "", generated_line(cmd + " --write"), "",
            f"Reproduce: `{cmd}` (exit status 1 when a must-be-zero count is not zero). A reduced run "
            "(300 events, a few faults) is in the test suite: `tests/test_chaos.py`.", "",
            *[t.markdown() + "\n" for t in ts]]))
        print(f"wrote the chaos section of {path}", file=sys.stderr)
    print(f"chaos: {'ok' if result.ok else 'FAILED'}", file=sys.stderr)
    return 0 if result.ok else 1


if __name__ == "__main__":
    sys.exit(main())

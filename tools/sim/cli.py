"""`safebox-sim`: the simulated home.

  safebox-sim demo [--json] [--presses N] [--workdir DIR]
  safebox-sim demo --pi [--json] [--presses N] [--workdir DIR]   (the hub in the virtual Pi: tools/vm)
  safebox-sim demo --console [--for SECONDS] [--workdir DIR]   (the call-centre screen, until Ctrl-C)
  safebox-sim run SCENARIO.toml [--json] [--workdir DIR]   (tools/sim/SCENARIOS.md)
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import logging
import sys
from pathlib import Path


def _demo(args: argparse.Namespace) -> int:
    if args.console:
        from safebox.tools.sim import console_demo
        asyncio.run(console_demo.run(workdir=args.workdir, seconds=args.for_s,
                                     say=lambda text: print(text, flush=True)))
        return 0
    if args.pi:
        from safebox.tools.vm import kernel
        from safebox.tools.vm import pi_demo as demo
        try:
            kernel.require()
        except kernel.SetupError as exc:
            print(f"safebox-sim: {exc}", file=sys.stderr)
            return 1
    else:
        from safebox.tools.sim import demo  # type: ignore[no-redef]
    result = asyncio.run(demo.run(presses=args.presses, workdir=args.workdir))
    print(json.dumps(result, indent=1) if args.json else demo.render(result))
    return 0


def _run_scenario(args: argparse.Namespace) -> int:
    from safebox.tools.sim.scenario import runner, spec
    try:
        scenario = spec.load(args.scenario)
        if args.seed is not None:
            scenario = dataclasses.replace(scenario, seed=args.seed)
    except spec.ScenarioError as exc:
        print(f"safebox-sim: {exc}", file=sys.stderr)
        return 2
    result = runner.run(scenario, workdir=args.workdir)
    if not args.json:
        result.pop("device_consoles", None)
    print(json.dumps(result, indent=1) if args.json else runner.render(result))
    return 0 if result["passed"] else 1


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="safebox-sim", description="The simulated home safety box.")
    parser.add_argument("-v", "--verbose", action="store_true", help="show every process's log lines")
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("demo", help="press the pendant's emergency button and follow it to the platform")
    p.add_argument("--json", action="store_true", help="one JSON object: stored events and latencies")
    p.add_argument("--presses", type=int, default=1, help="how many presses (the median latency is shown)")
    p.add_argument("--workdir", type=Path, help="keep the home's files here (default: a temporary folder)")
    p.add_argument("--pi", action="store_true",
                   help="the hub in the virtual Pi (BlueZ, systemd; tools/vm), installed as on a Raspberry Pi")
    p.add_argument("--console", action="store_true",
                   help="keep the home running with the call-centre screen; print its address and a one-time login")
    p.add_argument("--for", dest="for_s", type=float, metavar="SECONDS", help="with --console: stop after this long")
    p.set_defaults(func=_demo)
    p = sub.add_parser("run", help="run a scenario file on simulated time; exit 0 only if every expectation holds")
    p.add_argument("scenario", type=Path, help="the scenario TOML file (format: tools/sim/SCENARIOS.md)")
    p.add_argument("--json", action="store_true", help="stored events and each expectation's result as JSON")
    p.add_argument("--workdir", type=Path, help="keep the home's files here (default: a temporary folder)")
    p.add_argument("--seed", type=int, help="seed the run's randomness (overrides the file's seed)")
    p.set_defaults(func=_run_scenario)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.WARNING, stream=sys.stderr,
                        format="%(relativeCreated)7.0f ms %(name)s: %(message)s")
    if getattr(args, "presses", 1) < 1:
        print("safebox-sim: --presses must be at least 1", file=sys.stderr)
        return 2
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())

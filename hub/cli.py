"""`safebox-hub`: run the hub, and what an installer needs over SSH.

  safebox-hub run --config /etc/safebox/hub.toml
  safebox-hub identity --config ...   the hub id and public key, for enrolment
  safebox-hub status --config ... [--json]

Mistakes (a bad config field, an unreadable key file) end with one line naming
the problem and exit status 2, never a traceback.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import sys
import time
from pathlib import Path

from safebox.hub import config, keys
from safebox.hub.devices import Devices, DevicesError
from safebox.hub.private_files import PrivateFileError
from safebox.hub.store import HubStore, StoreError

DEFAULT_CONFIG = Path("/etc/safebox/hub.toml")
# Problems a user can fix; anything else is a bug and keeps its traceback.
_USER_ERRORS = (config.ConfigError, keys.KeyFileError, DevicesError, PrivateFileError, StoreError, OSError)


def _setup_logging(level: str) -> None:
    # journald stamps each line itself: one line per record, no time, no secrets.
    logging.basicConfig(level=getattr(logging, level.upper()), stream=sys.stderr,
                        format="%(levelname)s %(name)s: %(message)s")


def _run(args: argparse.Namespace) -> int:
    from safebox.hub.app import serve
    asyncio.run(serve(config.load(args.config)))
    return 0


def _identity(args: argparse.Namespace) -> int:
    cfg = config.load(args.config)
    cfg.state_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    key = keys.load_or_create(cfg.key_path)
    info = {"hub_id": cfg.hub_id, "public_key": keys.public_key_text(key)}
    print(json.dumps(info) if args.json else f"hub id:     {info['hub_id']}\npublic key: {info['public_key']}")
    return 0


def _status(args: argparse.Namespace) -> int:
    cfg = config.load(args.config)
    devices = Devices.load(cfg.devices_path)
    with HubStore.open(cfg.db_path) as store:
        seen = {s.device_id: s for s in store.seen_devices()}
        now = time.time()
        rows = []
        for d in devices:
            s = seen.get(d.id)
            rows.append({
                "id": d.id, "role": d.role, "room": d.room,
                "last_heard_s_ago": None if s is None or s.last_heard_at is None else round(now - s.last_heard_at),
                "battery": None if s is None else s.battery,
                "rssi": None if s is None else s.rssi,
            })
        status = {"hub_id": cfg.hub_id, "home_id": cfg.home_id, "devices": rows,
                  "outbox_depth": store.depth(), "dead_letters": len(store.dead_letters())}
    if args.json:
        print(json.dumps(status))
        return 0
    print(f"hub {status['hub_id']} (home {status['home_id']}): outbox {status['outbox_depth']}, "
          f"dead letters {status['dead_letters']}")
    for r in rows:
        heard = "never heard" if r["last_heard_s_ago"] is None else f"heard {r['last_heard_s_ago']} s ago"
        print(f"  {r['id']}  {r['role']:<12} {r['room'] or '-':<12} {heard}, battery {r['battery']}, rssi {r['rssi']}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="safebox-hub", description="The home safety box hub.")
    parser.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"])
    sub = parser.add_subparsers(dest="command", required=True)
    for name, func, text in (("run", _run, "run the hub until stopped"),
                             ("identity", _identity, "show the hub id and public key (made on first use)"),
                             ("status", _status, "devices, last heard, battery, outbox depth")):
        p = sub.add_parser(name, help=text)
        p.add_argument("--config", type=Path, default=DEFAULT_CONFIG)
        if name != "run":
            p.add_argument("--json", action="store_true")
        p.set_defaults(func=func)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    _setup_logging(args.log_level)
    try:
        return args.func(args)
    except _USER_ERRORS as exc:
        print(f"safebox-hub: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())

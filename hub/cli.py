"""`safebox-hub`: run the hub, and what an installer needs over SSH.

  safebox-hub run --config /etc/safebox/hub.toml
  safebox-hub identity --config ... [--json]    the hub id and public key, for enrolment
  safebox-hub status --config ... [--json]      devices, outbox, platform, radio, clock
  safebox-hub devices --config ... [--json]     the paired devices, last heard, battery, signal
  safebox-hub test-alarm --config ... [--json] [--wait S]
                                                a test event, marked as one, end to end

`status` reads the hub's database and the status file the running hub rewrites every 30 s,
and at once when the platform becomes reachable or not (state folder, status.json): the
first for devices and the outbox, the second for what only the running hub knows (radio
health, platform reachability). A hub that is not running, or has not rewritten its status
for three periods (stuck), is said to be not running. `test-alarm` signals the running hub
(SIGUSR1) to look at its outbox at once. Exit status: 0; 1 when `test-alarm` did not reach the
platform; 3 when `status` finds no running hub (what it knows is printed all the same).
`safebox-hub --version` says the installed version.

Mistakes (a bad config field, an unreadable key file) end with one line naming the
problem and exit status 2, never a traceback.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import signal
import sys
import time
from pathlib import Path
from typing import Any

import safebox
from safebox.hub import clock as hub_clock
from safebox.hub import config, keys, walk_test
from safebox.hub.devices import Devices, DevicesError
from safebox.hub.private_files import PrivateFileError
from safebox.hub.service import STATUS_FILE
from safebox.hub.store import HubStore, StoreError
from safebox.hub.uplink.held import held
from safebox.protocol import events

DEFAULT_CONFIG = Path("/etc/safebox/hub.toml")
NOT_RUNNING = 3  # `status`'s exit status when no hub runs (as `systemctl status` says of a stopped unit)
# Problems a user can fix; anything else is a bug and keeps its traceback.
_USER_ERRORS = (config.ConfigError, keys.KeyFileError, DevicesError, PrivateFileError, StoreError, OSError,
                events.EventError)


class _JournalFormatter(logging.Formatter):
    """One line per record, no time (journald stamps it), and under systemd the syslog
    priority prefix `<N>` that journald reads (SyslogLevelPrefix=), so levels survive."""

    _PRIORITY = {logging.DEBUG: 7, logging.INFO: 6, logging.WARNING: 4, logging.ERROR: 3, logging.CRITICAL: 2}

    def __init__(self, journal: bool) -> None:
        super().__init__("%(levelname)s %(name)s: %(message)s")
        self._journal = journal

    def format(self, record: logging.LogRecord) -> str:
        text = super().format(record).replace("\n", " | ")  # a traceback stays one journal entry
        if self._journal:
            return f"<{self._PRIORITY.get(record.levelno, 6)}>{text}"
        return text


def _setup_logging(level: str) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(_JournalFormatter(journal=bool(os.environ.get("JOURNAL_STREAM"))))
    logging.basicConfig(level=getattr(logging, level.upper()), handlers=[handler])


def _run(args: argparse.Namespace) -> int:
    import faulthandler

    from safebox.hub.app import serve
    faulthandler.enable()  # a watchdog SIGABRT leaves every thread's stack in the journal
    cfg = config.load(args.config)
    asyncio.run(serve(cfg) if args.ble is None else serve(cfg, ble=args.ble))
    return 0


def _identity(args: argparse.Namespace) -> int:
    cfg = config.load(args.config)
    cfg.state_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    key = keys.load_or_create(cfg.key_path)
    info = {"hub_id": cfg.hub_id, "public_key": keys.public_key_text(key)}
    print(json.dumps(info) if args.json else f"hub id:     {info['hub_id']}\npublic key: {info['public_key']}")
    return 0


# -- what the running hub says of itself -------------------------------------------------------

def running_hub(cfg: config.HubConfig) -> dict[str, Any] | None:
    """The running hub's status file, or None when no hub is running (or it is stuck)."""
    try:
        doc = json.loads((cfg.state_dir / STATUS_FILE).read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(doc, dict) or not isinstance(doc.get("pid"), int):
        return None
    try:
        os.kill(doc["pid"], 0)
    except ProcessLookupError:
        return None
    except PermissionError:
        pass  # another user's process: it is there
    every = doc.get("status_every_s") or 10
    if time.time() - float(doc.get("written_at", 0)) > 3 * every + 5:
        return None  # not rewritten: the hub is stuck or gone (its watchdog will say so too)
    return doc


def _ago(now: float, at: float | None) -> int | None:
    return None if at is None else round(now - at)


def _device_rows(cfg: config.HubConfig, store: HubStore, now: float) -> list[dict[str, Any]]:
    seen = {s.device_id: s for s in store.seen_devices()}
    rows = []
    for d in Devices.load(cfg.devices_path):
        s = seen.get(d.id)
        rows.append({
            "id": d.id, "mac": d.address, "role": d.role, "room": d.room,
            "last_heard_s_ago": None if s is None else _ago(now, s.last_heard_at),
            "last_counter": None if s is None else s.last_counter,
            "battery": None if s is None else s.battery,
            "rssi": None if s is None else s.rssi,
        })
    return rows


def status_doc(cfg: config.HubConfig) -> dict[str, Any]:
    """Everything `status` shows, as one JSON-ready object."""
    now = time.time()
    live = running_hub(cfg)
    with HubStore.open(cfg.db_path) as store:
        summary = store.outbox_summary()
        doc: dict[str, Any] = {
            "hub_id": cfg.hub_id, "home_id": cfg.home_id,
            "running": live is not None,
            "pid": None if live is None else live["pid"],
            "version": None if live is None else live.get("version"),
            "uptime_s": None if live is None else _ago(now, live.get("started_at")),
            "devices": _device_rows(cfg, store, now),
            "outbox_depth": summary["depth"],
            "outbox_urgent": summary["urgent"],
            "oldest_waiting_s": _ago(now, summary["oldest_at"]),  # type: ignore[arg-type]
            "dead_letters": len(store.dead_letters(limit=1_000_000)),
            "acks_owed": len(store.owed_acks(None, now)),
            "awaiting_operator": len(store.awaiting_operator(now)),
            "urgent_refused": held(store),
        }
    window = walk_test.read_window(cfg.state_dir)
    doc["walk_test"] = None if window is None or now >= window.until else {
        "devices": sorted(window.devices), "ends_in_s": round(window.until - now)}
    platform = dict(live["platform"]) if live else {}
    doc["platform"] = {
        "url": cfg.platform.url,
        "reachable": platform.get("reachable"),
        "last_answer_s_ago": _ago(now, platform.get("last_answer_at")),
        "last_delivered_s_ago": _ago(now, platform.get("last_delivered_at")),
        "last_error": platform.get("last_error"),
        "paused_s": None if not platform.get("paused_until") else max(0, round(platform["paused_until"] - now)),
        "batching": platform.get("batching"),
        "heartbeat_interval_s": platform.get("heartbeat_interval_s"),
        "dropped_since_start": platform.get("dropped"),
    }
    radio = dict(live["radio"]) if live and live.get("radio") else None
    if radio is not None:
        radio["last_frame_s_ago"] = _ago(now, radio.pop("last_frame_at", None))
        radio["last_problem_s_ago"] = _ago(now, radio.pop("last_problem_at", None))
    doc["radio"] = radio
    doc["clock"] = hub_clock.check(platform.get("clock_offset_s")).as_dict()
    doc["cellular"] = live.get("cellular") if live else None
    return doc


def _status(args: argparse.Namespace) -> int:
    doc = status_doc(config.load(args.config))
    code = 0 if doc["running"] else NOT_RUNNING
    if args.json:
        print(json.dumps(doc))
        return code
    state = (f"running (pid {doc['pid']}, up {doc['uptime_s']} s)" if doc["running"] else
             "NOT RUNNING (systemctl status safebox-hub; journalctl -u safebox-hub -n 50)")
    print(f"hub {doc['hub_id']} (home {doc['home_id']}): {state}")
    oldest = "" if doc["oldest_waiting_s"] is None else f", oldest waiting {doc['oldest_waiting_s']} s"
    print(f"  outbox {doc['outbox_depth']} ({doc['outbox_urgent']} urgent{oldest}), dead letters "
          f"{doc['dead_letters']}, acks owed {doc['acks_owed']}, awaiting an operator {doc['awaiting_operator']}")
    if doc["urgent_refused"]:
        u = doc["urgent_refused"]
        print(f"  URGENT EVENTS REFUSED BY THE PLATFORM: {', '.join(u['event_ids'])}: {u['reason']}; held and "
              "retried, never dropped: tell the platform")
    if doc["walk_test"]:
        w = doc["walk_test"]
        print(f"  WALK TEST: events of {', '.join(w['devices'])} are marked as tests for {w['ends_in_s']} s more")
    p = doc["platform"]
    reach = {True: "reachable", False: "UNREACHABLE", None: "not contacted yet" if doc["running"] else "unknown"}
    line = f"  platform {p['url']}: {reach[p['reachable']]}"
    if p["last_delivered_s_ago"] is not None:
        line += f", last delivery {p['last_delivered_s_ago']} s ago"
    if p["last_error"]:
        line += f", last error: {p['last_error']}"
    if p["paused_s"]:
        line += f", paused for {p['paused_s']} s (platform busy)"
    print(line)
    r = doc["radio"]
    if r is None:
        print("  radio: unknown (hub not running)")
    else:
        heard = "nothing heard yet" if r["last_frame_s_ago"] is None else f"last frame {r['last_frame_s_ago']} s ago"
        problem = f", last problem: {r['last_problem']}" if r["last_problem"] else ""
        print(f"  radio: {r['state']} ({r['mode']}), {heard}, {r['restarts']} restarts, "
              f"{r['acks_written']} acks written, {r['ack_failures']} failed{problem}")
    c = doc["clock"]
    print(f"  clock: {'ok' if c['problem'] is None else 'NOT TRUSTED: ' + c['problem']}"
          f" (synchronised: {c['synchronized']}, by {c['source']})")
    if doc["cellular"]:
        m = doc["cellular"]
        print(f"  modem {m['port']}: {m['state']}, signal {m['signal']}, SMS {m['sms']}"
              + (f", PROBLEM: {m['problem']}" if m["problem"] else ""))
    _print_devices(doc["devices"])
    return code


def _print_devices(rows: list[dict[str, Any]]) -> None:
    if not rows:
        print("  no devices paired")
    for r in rows:
        heard = "never heard" if r["last_heard_s_ago"] is None else f"heard {r['last_heard_s_ago']} s ago"
        battery = "-" if r["battery"] is None else f"{r['battery']} %"
        rssi = "-" if r["rssi"] is None else f"{r['rssi']} dBm"
        print(f"  {r['id']}  {r['role']:<12} {r['room'] or '-':<12} {heard}, battery {battery}, signal {rssi}")


def _devices(args: argparse.Namespace) -> int:
    cfg = config.load(args.config)
    with HubStore.open(cfg.db_path) as store:
        rows = _device_rows(cfg, store, time.time())
    if args.json:
        print(json.dumps(rows))
    else:
        print(f"{len(rows)} device(s) paired with hub {cfg.hub_id}")
        _print_devices(rows)
    return 0


# -- test alarm ---------------------------------------------------------------------------

def _test_alarm(args: argparse.Namespace) -> int:
    """Queue a test_alarm (urgent, so it takes an emergency's path) and wait for the platform."""
    cfg = config.load(args.config)
    live = running_hub(cfg)
    started = time.time()
    with HubStore.open(cfg.db_path) as store:
        event_id = events.hub_event_id(cfg.hub_id, store.next_hub_seq())
        body = events.encode(events.make(
            event_id=event_id, type=events.TEST_ALARM, hub_id=cfg.hub_id, home_id=cfg.home_id, occurred_at=started,
            data={"test": True, "note": "installer's end-to-end test; nobody needs to be sent",
                  "requested_by": "safebox-hub test-alarm"}))
        store.enqueue(body)
        if live is not None:
            try:
                os.kill(live["pid"], signal.SIGUSR1)  # look at the outbox now (else within 60 s)
            except OSError:
                pass
        else:
            print(f"safebox-hub: the hub is NOT RUNNING: test alarm {event_id} goes when it starts", file=sys.stderr)
            args.wait = 0.0
        if not args.json:
            print(f"test alarm {event_id} queued; waiting up to {args.wait:g} s for the platform")
        result, reason = "waiting", None
        deadline = started + args.wait
        while True:
            if not store.pending(event_id):
                dead = next((d for d in store.dead_letters(limit=1_000_000) if d.event_id == event_id), None)
                result, reason = ("rejected", dead.reason) if dead else ("delivered", None)
                break
            if time.time() >= deadline:
                item = store.get(event_id)
                reason = item.last_error if item else None
                break
            time.sleep(0.1)
    seconds = round(time.time() - started, 2)
    if args.json:
        print(json.dumps({"event_id": event_id, "result": result, "seconds": seconds, "reason": reason,
                          "hub_running": live is not None}))
    elif result == "delivered":
        print(f"delivered: the platform has stored {event_id} ({seconds} s)")
    elif result == "rejected":
        print(f"REJECTED by the platform: {reason}")
    else:
        print(f"NOT delivered within {args.wait:g} s; it stays in the outbox" + (f" (last error: {reason})"
                                                                                  if reason else ""))
    return 0 if result == "delivered" else 1


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="safebox-hub", description="The home safety box hub.")
    parser.add_argument("--version", action="version", version=f"safebox-hub {safebox.__version__}")
    parser.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"])
    sub = parser.add_subparsers(dest="command", required=True)
    for name, func, text in (("run", _run, "run the hub until stopped"),
                             ("identity", _identity, "show the hub id and public key (made on first use)"),
                             ("status", _status, "devices, outbox, platform reachability, radio health, clock"),
                             ("devices", _devices, "paired devices: last heard, battery, signal"),
                             ("test-alarm", _test_alarm, "send a test event, marked as one, to the platform")):
        p = sub.add_parser(name, help=text)
        p.add_argument("--config", type=Path, default=DEFAULT_CONFIG)
        if name != "run":
            p.add_argument("--json", action="store_true")
        if name == "test-alarm":
            p.add_argument("--wait", type=float, default=75.0, metavar="S",
                           help="seconds to wait for the platform's answer (default 75)")
        p.set_defaults(func=func)
    return parser


def _give_back(config_path: Path) -> None:
    """Run by root (sudo) on a hub whose state folder belongs to its service user, a command
    must not leave files there the service cannot read: what root made goes to the folder's owner."""
    if os.geteuid() != 0:
        return
    try:
        state = config.load(config_path).state_dir
        owner = state.stat()
        if owner.st_uid == 0:
            return
        for path in state.iterdir():
            if path.is_file() and path.stat().st_uid == 0:
                os.chown(path, owner.st_uid, owner.st_gid)
    except (OSError, config.ConfigError):
        pass  # the command itself has said what was wrong, if anything


def main(argv: list[str] | None = None, *, ble: Any = None) -> int:
    """The command line; `ble` gives `run` the bleak backends of a simulated air (tools/sim)."""
    args = build_parser().parse_args(argv)
    args.ble = ble
    _setup_logging(args.log_level)
    try:
        try:
            return args.func(args)
        finally:
            if args.command != "run":
                _give_back(args.config)
    except _USER_ERRORS as exc:
        print(f"safebox-hub: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())

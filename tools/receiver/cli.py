"""`safebox-receiver`: run the reference platform receiver and look into its database.

User mistakes (missing TLS files, an unreadable database, a bad key) end with one
line on stderr and exit status 2, never a traceback.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import re
import signal
import ssl
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from aiohttp import web

from safebox.tools.tlsca import make_ca

from . import guard, retention
from .app import make_app
from .console import i18n
from .console.alarms import parse_deadline
from .console.commands import add_commands as add_console_commands
from .console.thread import ConsoleThread
from .overload import Overload
from .sms_inbound import SmsInbox
from .store import Store, StoreError

_EXIT_USAGE = 2
_EXIT_SIGPIPE = 128 + 13  # what a shell shows for a command ended by SIGPIPE


class _UserError(Exception):
    """A mistake the user can fix; printed without a traceback."""


def _open(db: Path, *, create: bool) -> Store:
    try:
        return Store(db, create=create)
    except StoreError as exc:
        raise _UserError(str(exc)) from None


def _port(text: str) -> int:
    port = int(text)
    if not 0 <= port <= 65535:
        raise argparse.ArgumentTypeError("a port is 0..65535 (0 picks a free one)")
    return port


def _positive(text: str) -> int:
    count = int(text)
    if count < 1:
        raise argparse.ArgumentTypeError("must be 1 or more")
    return count


def _deadline(text: str) -> tuple[str, tuple[int, int]]:
    try:
        return parse_deadline(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _serve(args: argparse.Namespace) -> int:
    if not args.cert or not args.key:
        raise _UserError("serve needs --cert CHAIN and --key KEY: the receiver only speaks TLS "
                         "(for a throwaway CA: safebox-receiver make-ca DIR)")
    tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    try:
        tls.load_cert_chain(args.cert, args.key)
    except (OSError, ssl.SSLError) as exc:
        raise _UserError(f"cannot load TLS certificate {args.cert} and key {args.key}: {exc}") from None
    logging.basicConfig(level=logging.INFO, stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    store = _open(args.db, create=True)
    try:
        app = make_app(store, sms_token=_token(args.sms_token_file), middlewares=args.middlewares)
        app.cleanup_ctx.append(retention.running(store, args.keep_routine_days))
        Overload().install(app)  # backlogs told to come back later while the loop runs late (overload.py)
        console = None if args.operator_port is None else ConsoleThread(
            args.db, tls, args.operator_host, args.operator_port, events_from=store, per_peer=args.max_per_peer,
            zone=args.tz, deadlines=dict(args.deadline or ()))
        asyncio.run(_run(app, args.host, args.port, tls, console, args.operator_host, args.operator_port,
                         per_peer=args.max_per_peer))
    except OSError as exc:  # e.g. the port is taken
        raise _UserError(f"cannot listen on {args.host}:{args.port} or {args.operator_host}:{args.operator_port}: "
                         f"{exc}") from None
    except KeyboardInterrupt:  # Ctrl-C before the signal handlers were in place
        pass
    finally:
        store.close()
    return 0


async def _run(app: web.Application, host: str, port: int, tls: ssl.SSLContext,
               console: ConsoleThread | None = None, operator_host: str = "", operator_port: int | None = None,
               *, per_peer: int = guard.PER_PEER_MAX) -> None:
    """Serve until SIGINT or SIGTERM; announce the real addresses once, for a waiting parent
    (the operators' first: a parent waiting for "listening on" then knows both). Both listeners
    admit connections through a guard (caps and deadlines: guard.py)."""
    runner = web.AppRunner(app)
    await runner.setup()
    try:
        if console is not None:  # its own thread and loop (console/thread.py), behind its own guard
            operators_port = await asyncio.to_thread(console.start)
            shown = f"[{operator_host}]" if ":" in operator_host else operator_host
            print(f"operators on https://{shown}:{operators_port}", flush=True)
        await guard.GuardedSite(runner, host, port, tls, guard.Guard(per_peer=per_peer)).start()
        real_port = runner.addresses[0][1]
        shown = f"[{host}]" if ":" in host else host
        print(f"listening on https://{shown}:{real_port}", flush=True)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(signum, stop.set)
        await stop.wait()
    finally:
        if console is not None:
            await asyncio.to_thread(console.stop)
        await runner.cleanup()


def _purge(args: argparse.Namespace) -> int:
    if args.keep_routine_days <= 0:
        raise _UserError("purge: --keep-routine-days must be more than 0")
    store = _open(args.db, create=False)
    try:
        deleted = retention.purge(store, args.keep_routine_days)
    except StoreError as exc:
        raise _UserError(str(exc)) from None
    finally:
        store.close()
    print(f"deleted {deleted} routine events received more than {args.keep_routine_days:g} days ago; alarms kept")
    return 0


def _add_hub(args: argparse.Namespace) -> int:
    store = _open(args.db, create=True)
    try:
        replaced = store.add_hub(args.hub_id, args.public_key, now=time.time())
    except ValueError as exc:
        raise _UserError(f"hub {args.hub_id!r}: {exc}") from None
    except StoreError as exc:
        raise _UserError(str(exc)) from None
    finally:
        store.close()
    print(f"{'replaced the key of' if replaced else 'enrolled'} hub {args.hub_id}")
    return 0


def _token(path: Path | None) -> str | None:
    if path is None:
        return None
    try:
        token = path.read_text().strip()
    except OSError as exc:
        raise _UserError(f"--sms-token-file {path}: {exc.strerror}") from None
    if len(token) < 16:
        raise _UserError(f"--sms-token-file {path}: the token must be at least 16 characters")
    return token


def _add_sms_number(args: argparse.Namespace) -> int:
    if not re.fullmatch(r"\+?[0-9]{3,20}", args.number):
        raise _UserError(f"{args.number!r} is not a phone number like +8613800138000")
    store = _open(args.db, create=True)
    try:
        SmsInbox(store).add_number(args.hub_id, args.number)
    except StoreError as exc:
        raise _UserError(str(exc)) from None
    finally:
        store.close()
    print(f"SMS from {args.number} are hub {args.hub_id}'s")
    return 0


def _sms_modem(args: argparse.Namespace) -> int:
    from .sms_modem import ModemInbox
    logging.basicConfig(level=logging.INFO, stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    store = _open(args.db, create=True)
    try:
        asyncio.run(ModemInbox(SmsInbox(store), args.port).run())
    except KeyboardInterrupt:
        pass
    finally:
        store.close()
    return 0


def _enrol_code(args: argparse.Namespace) -> int:
    """A one-time enrolment code for a hub: the code alone on stdout (for a file or a pipe), what it
    is for on stderr, without the code (a terminal's scrollback and a captured log keep stderr)."""
    from .enrol import EnrolCodes
    store = _open(args.db, create=True)
    try:
        issued = EnrolCodes(store).issue(args.hub_id, args.ttl, now=time.time())
    except ValueError as exc:
        raise _UserError(str(exc)) from None
    except StoreError as exc:
        raise _UserError(str(exc)) from None
    finally:
        store.close()
    print(issued.code)
    until = time.strftime("%Y-%m-%d %H:%M:%S %Z", time.localtime(issued.expires_at))
    print(f"one-time enrolment code for hub {issued.hub_id} (above, on stdout), valid until {until}; "
          "on the hub: safebox-install enrol, and type it when asked (or --code-file FILE)", file=sys.stderr)
    return 0


def _operator_ack(args: argparse.Namespace) -> int:
    """An operator takes an event up; the hub learns it from its next answer or poll (SPEC 3.6)."""
    store = _open(args.db, create=False)
    try:
        status, ack = store.operator_ack(args.event_id, hub_id=args.hub_id, operator=args.operator, now=time.time())
    except StoreError as exc:
        raise _UserError(str(exc)) from None
    finally:
        store.close()
    if status == "unknown":
        raise _UserError(f"no stored event {args.event_id!r}" + (f" from hub {args.hub_id!r}" if args.hub_id else ""))
    if status == "ambiguous":
        raise _UserError(f"several hubs sent an event {args.event_id!r}: name one with --hub-id")
    if args.json:
        print(json.dumps({"status": status, **(ack or {})}))
    else:
        print(f"{'acknowledged' if status == 'acknowledged' else 'already acknowledged'}: {args.event_id} "
              f"(hub {ack['hub_id']}, at {ack['acked_at']})")
    return 0


def _heartbeat_interval(args: argparse.Namespace) -> int:
    """What the platform asks a hub for in its answers (`off`: ask nothing)."""
    seconds = None if args.seconds == "off" else args.seconds
    if seconds is not None:
        try:
            seconds = int(seconds)
        except ValueError:
            raise _UserError(f"SECONDS must be a whole number or 'off', not {args.seconds!r}") from None
        if not 60 <= seconds <= 86400:
            raise _UserError(f"SECONDS must be 60 .. 86400, not {seconds}")
    store = _open(args.db, create=True)
    try:
        store.set_heartbeat_interval(args.hub_id, seconds)
    except StoreError as exc:
        raise _UserError(str(exc)) from None
    finally:
        store.close()
    print(f"hub {args.hub_id}: heartbeat interval {'left to the hub' if seconds is None else f'{seconds} s'}"
          " (told in the next answer)")
    return 0


_TABLE = ("type", "device_id", "counter", "occurred_at", "received_at", "signature_verified", "channel")


def _events(args: argparse.Namespace) -> int:
    store = _open(args.db, create=False)
    try:
        stored = [event.to_json() for event in store.events()]
    except StoreError as exc:
        raise _UserError(str(exc)) from None
    finally:
        store.close()
    if args.json:
        print(json.dumps(stored, indent=2, ensure_ascii=False))
        return 0
    rows = [["-" if row[name] is None else str(row[name]) for name in _TABLE] for row in stored]
    headings = ["type", "device", "counter", "occurred_at", "received_at", "verified", "channel"]
    widths = [max(len(cell) for cell in column) for column in zip(headings, *rows)]
    for line in [headings, *rows]:
        print("  ".join(cell.ljust(width) for cell, width in zip(line, widths)).rstrip())
    return 0


def _make_ca(args: argparse.Namespace) -> int:
    try:
        files = make_ca(args.directory, tuple(args.hostname or ("localhost", "127.0.0.1")))
    except OSError as exc:
        raise _UserError(f"cannot write the CA files in {args.directory}: {exc}") from None
    print(f"CA certificate (for clients): {files.ca_cert}")
    print(f"server certificate chain:     {files.server_cert_chain}")
    print(f"server key:                   {files.server_key}")
    return 0


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="safebox-receiver",
                                     description="Run the reference platform receiver and look into its database.")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    serve = commands.add_parser("serve", help="serve POST /v1/events over TLS")
    serve.add_argument("--db", type=Path, required=True, help="SQLite file (made if missing)")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=_port, default=8443, help="0 picks a free port")
    serve.add_argument("--cert", type=Path, help="server certificate chain (PEM)")
    serve.add_argument("--key", type=Path, help="server private key (PEM)")
    serve.add_argument("--max-per-peer", type=_positive, default=guard.PER_PEER_MAX, metavar="N",
                       help="open connections one address (an IPv6 /64) may hold; the next is closed unread "
                            f"(default {guard.PER_PEER_MAX}: hubs behind one carrier NAT share an address)")
    serve.add_argument("--operator-host", default="127.0.0.1", help="the operators' listener (the screen)")
    serve.add_argument("--operator-port", type=_port, default=None,
                       help="serve the operators' screen on this port, apart from the hubs' (0 picks one); "
                            "none without it")
    serve.add_argument("--keep-routine-days", type=float, default=retention.KEEP_ROUTINE_DAYS, metavar="N",
                       help="delete routine events after N days, hourly; alarms kept (0 keeps all; retention.py)")
    serve.add_argument("--tz", default=i18n.DEFAULT_ZONE, help="the screen's time zone (default Asia/Shanghai)")
    serve.add_argument("--deadline", type=_deadline, action="append", metavar="TYPE=TAKE,RESOLVE",
                       help="seconds within which an alarm type is to be taken up and resolved (repeatable; "
                            "defaults: emergency=60,1800, community_service=180,86400, ...)")
    serve.add_argument("--sms-token-file", type=Path, metavar="FILE",
                       help="serve POST /v1/sms, an SMS gateway's callback, for this bearer token (SPEC 5.2)")
    serve.set_defaults(run=_serve)

    sms_number = commands.add_parser("add-sms-number", help="the SIM number a hub sends SMS from (SPEC 5.2)")
    sms_number.add_argument("--db", type=Path, required=True)
    sms_number.add_argument("hub_id")
    sms_number.add_argument("number")
    sms_number.set_defaults(run=_add_sms_number)

    sms_modem = commands.add_parser("sms-modem", help="take SMS-borne events from the platform's own modem (SPEC 5.2)")
    sms_modem.add_argument("--db", type=Path, required=True)
    sms_modem.add_argument("--port", required=True, help="the modem's AT serial port, e.g. /dev/ttyUSB2")
    sms_modem.set_defaults(run=_sms_modem)

    add_hub = commands.add_parser("add-hub", help="enrol a hub's public key")
    add_hub.add_argument("--db", type=Path, required=True)
    add_hub.add_argument("hub_id")
    add_hub.add_argument("public_key", metavar="PUBLIC_KEY_TEXT", help="base64 of the raw 32-byte Ed25519 key")
    add_hub.set_defaults(run=_add_hub)

    code = commands.add_parser("enrol-code", help="issue a one-time code with which a hub enrols its key")
    code.add_argument("--db", type=Path, required=True)
    code.add_argument("--hub-id", required=True, help="the hub_id in the hub's hub.toml")
    code.add_argument("--ttl", type=int, default=24 * 3600, metavar="SECONDS",
                      help="how long the code works (60 s .. 7 days; default 1 day)")
    code.set_defaults(run=_enrol_code)

    op = commands.add_parser("operator-ack", help="an operator takes an event up (the hub tells the device)")
    op.add_argument("--db", type=Path, required=True)
    op.add_argument("event_id", metavar="EVENT_ID")
    op.add_argument("--hub-id", help="needed only when two hubs sent the same event id")
    op.add_argument("--operator", help="who took it up (kept with the ack)")
    op.add_argument("--json", action="store_true")
    op.set_defaults(run=_operator_ack)

    hb = commands.add_parser("heartbeat-interval", help="ask a hub for hub_heartbeat events every SECONDS")
    hb.add_argument("--db", type=Path, required=True)
    hb.add_argument("hub_id", metavar="HUB_ID")
    hb.add_argument("seconds", metavar="SECONDS", help="60 .. 86400, or 'off' to leave it to the hub")
    hb.set_defaults(run=_heartbeat_interval)

    purge = commands.add_parser("purge", help="delete routine events older than N days now (alarms are kept)")
    purge.add_argument("--db", type=Path, required=True)
    purge.add_argument("--keep-routine-days", type=float, default=retention.KEEP_ROUTINE_DAYS, metavar="N")
    purge.set_defaults(run=_purge)

    listing = commands.add_parser("events", help="list stored events")
    listing.add_argument("--db", type=Path, required=True)
    listing.add_argument("--json", action="store_true", help="a JSON list instead of a table")
    listing.set_defaults(run=_events)

    add_console_commands(commands, _open, _UserError)

    ca = commands.add_parser("make-ca", help="write a throwaway CA and server certificate (tests, demos)")
    ca.add_argument("directory", type=Path, metavar="DIR")
    ca.add_argument("--hostname", action="append", help="name or IP for the server (repeatable; "
                                                        "default localhost and 127.0.0.1)")
    ca.set_defaults(run=_make_ca)
    return parser


def main(argv: Sequence[str] | None = None, *, middlewares: Sequence[Any] = ()) -> int:
    """The command line; `middlewares` go into the served app (make_app), for a caller that
    wraps the receiver (the simulator's fault injection: tools/sim/receiver_faults.py)."""
    args = _parser().parse_args(argv)
    args.middlewares = tuple(middlewares)
    try:
        return args.run(args)
    except _UserError as exc:
        print(f"safebox-receiver: error: {exc}", file=sys.stderr)
        return _EXIT_USAGE
    except BrokenPipeError:
        # The reader went away (`events --json | head`): stop quietly, as `cat` would, and keep
        # Python's final flush of stdout from raising again.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return _EXIT_SIGPIPE


if __name__ == "__main__":
    sys.exit(main())

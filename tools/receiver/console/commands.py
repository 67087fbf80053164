"""`safebox-receiver operator add|remove|passwd|list` and `safebox-receiver homes import`.

A password is read from a prompt when stdin is a terminal (asked twice), else as the first
line of stdin, so a script can pipe it in; it never appears on the command line.
"""

from __future__ import annotations

import argparse
import getpass
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ..store import Store, StoreError
from .accounts import ROLES, AccountError, Accounts
from .alarms import ActionError, Alarms


def _password(confirm: bool = True) -> str:
    if not sys.stdin.isatty():
        return sys.stdin.readline().rstrip("\r\n")
    first = getpass.getpass("password: ")
    if confirm and getpass.getpass("again: ") != first:
        raise AccountError("the two passwords differ")
    return first


def add_commands(commands: Any, open_store: Callable[..., Store], user_error: type[Exception]) -> None:
    def run(fn: Callable[[argparse.Namespace, Store], str]) -> Callable[[argparse.Namespace], int]:
        def wrapped(args: argparse.Namespace) -> int:
            store = open_store(args.db, create=True)
            try:
                print(fn(args, store))
            except (AccountError, ActionError, StoreError, OSError, UnicodeDecodeError) as exc:
                raise user_error(str(exc)) from None
            finally:
                store.close()
            return 0
        return wrapped

    def add(args: argparse.Namespace, store: Store) -> str:
        Accounts(store).add(args.name, _password(), role=args.role, display=args.display, now=time.time())
        return f"operator {args.name} added ({args.role})"

    def remove(args: argparse.Namespace, store: Store) -> str:
        if not Accounts(store).remove(args.name):
            raise AccountError(f"no operator {args.name!r}")
        return f"operator {args.name} removed (their sessions ended)"

    def passwd(args: argparse.Namespace, store: Store) -> str:
        accounts = Accounts(store)
        if args.name not in {o.name for o in accounts.list()}:
            raise AccountError(f"no operator {args.name!r}")
        accounts.set_password(args.name, _password())
        return f"password of {args.name} changed (their sessions ended, the account unlocked)"

    def listing(args: argparse.Namespace, store: Store) -> str:
        return "\n".join(f"{o.name}\t{o.role}\t{o.display}" for o in Accounts(store).list()) or "no operators"

    def homes_import(args: argparse.Namespace, store: Store) -> str:
        count = Alarms(store).import_csv(Path(args.csv).read_text(encoding="utf-8-sig"))
        return f"{count} home(s) in the directory updated"

    operator = commands.add_parser("operator", help="call-centre operator accounts")
    ops = operator.add_subparsers(dest="operator_command", required=True, metavar="ACTION")
    for name, fn, text in (("add", add, "add an operator (password from a prompt or stdin)"),
                           ("remove", remove, "remove an operator"),
                           ("passwd", passwd, "set an operator's password (prompt or stdin)"),
                           ("list", listing, "list operators")):
        p = ops.add_parser(name, help=text)
        p.add_argument("--db", type=Path, required=True)
        if name != "list":
            p.add_argument("name", metavar="NAME")
        if name == "add":
            p.add_argument("--role", choices=ROLES, default="operator")
            p.add_argument("--display", help="the name shown on the screen (default NAME)")
        p.set_defaults(run=run(fn))

    homes = commands.add_parser("homes", help="the home directory the operators see")
    hs = homes.add_subparsers(dest="homes_command", required=True, metavar="ACTION")
    imp = hs.add_parser("import", help="import residents from CSV: home_id,name,phone,address,contacts")
    imp.add_argument("--db", type=Path, required=True)
    imp.add_argument("csv", metavar="FILE.csv")
    imp.set_defaults(run=run(homes_import))

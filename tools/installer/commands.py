"""What each of `safebox-install`'s commands does, given its parsed arguments (cli.py parses them).

Every command says what it does through `say` (the catalogue's words) and ends with an exit
status; what stops it is an InstallerError, whose message says what to do.
"""

from __future__ import annotations

import argparse
import getpass
import json
import shlex
import sys
from pathlib import Path
from typing import Any

from safebox.tools.installer import messages
from safebox.tools.installer.messages import InstallerError, t
from safebox.tools.installer.progress import ProgressBar

EXIT_FAILED = 1
EXIT_REFUSED = 2


def say(key: str, **params: Any) -> None:
    print(t(key, **params), flush=True)


def load_hub_config(path: Path) -> Any:
    """The hub's config; every way it can be unusable said in the installer's words."""
    from safebox.hub import config
    if not path.exists():
        raise InstallerError("hub_config_missing", path=str(path))
    try:
        return config.load(path)
    except config.ConfigError as exc:
        # The hub's message starts with the file (it cannot be read) or the field it is about.
        where, _, detail = str(exc).partition(": ")
        if where == str(path):
            raise InstallerError("hub_config_unreadable", path=str(path), detail=detail) from None
        raise InstallerError("hub_config_invalid", path=str(path), field=where, detail=detail) from None


def _pins(values: list[str] | None) -> dict[str, int]:
    pins: dict[str, int] = {}
    for value in values or []:
        name, _, gpio = value.partition("=")
        if not name or not gpio.isdigit():
            raise InstallerError("cli_bad_pin", value=value)
        pins[name] = int(gpio)
    return pins


def flash_command(args: argparse.Namespace) -> int:
    from safebox.tools.installer.board import SerialBoard
    from safebox.tools.installer.flash import Image, flash

    if args.image:
        image = Image.from_dir(args.image)
    else:
        say("flash_building")
        image = Image.build()
    with SerialBoard(args.port) as board:
        result = flash(board, image, progress=ProgressBar(t("flash_progress")), say=say, force=args.force)
        say("flash_done", copied=len(result.copied), kb=round(result.bytes_copied / 1024, 1),
            unchanged=len(result.unchanged), image_id=result.image_id)
        paired = board.read("config.json") is not None
        if not args.no_reset and paired:
            board.reset()
    if not paired:
        say("flash_next_pair", port=shlex.quote(board.name), config=shlex.quote(str(args.hub_config)))
    return 0


def pair_command(args: argparse.Namespace) -> int:
    from safebox.tools.installer.board import SerialBoard
    from safebox.tools.installer.pairing import check_inputs, pair

    pins = _pins(args.pin)
    check_inputs(args.role, args.room, args.board, pins)  # before anything is opened
    hub = load_hub_config(args.hub_config)
    with SerialBoard(args.port) as board:
        port = board.name
        result = pair(board, hub, args.role, args.room, board_name=args.board, pins=pins, replace=args.replace,
                      reset=not args.no_reset, say=say, reconnect=lambda: SerialBoard(port))
    d = result.device
    say("pair_done", role=d.role, mac=d.address, room=d.room or "-", home=hub.home_id, hub=hub.hub_id)
    if result.replaced is not None:
        say("pair_done_replaced")
    if not args.no_reset:
        say("pair_boot_ready" if result.boot == "ready" else "pair_boot_unknown")
        for line in result.warnings:
            say("pair_boot_warning", line=line)
    say("pair_next_walk", config=shlex.quote(str(args.hub_config)))
    return 0


def unpair_command(args: argparse.Namespace) -> int:
    from safebox.tools.installer.board import SerialBoard
    from safebox.tools.installer.pairing import unpair

    hub = load_hub_config(args.hub_config)
    if args.device:
        unpair(hub, mac=args.device.upper(), say=say)
        return 0
    with SerialBoard(args.port) as board:
        unpair(hub, board=board, force=args.force, say=say)
    return 0


def enrol_command(args: argparse.Namespace) -> int:
    from safebox.tools.installer.enrol import enrol

    if args.code is not None:  # on the command line a code sits in shell history and in `ps`
        raise InstallerError("enrol_code_argv")
    hub = load_hub_config(args.hub_config)
    say("enrol_sending", hub=hub.hub_id, url=hub.platform.url)
    result = enrol(hub, _read_code(args.code_file))
    say("enrol_already" if result.already else "enrol_done", hub=hub.hub_id)
    if result.replaced:
        say("enrol_replaced")
    return 0


def _read_code(path: str | None) -> str:
    """The code from a file (`-`: standard input), else asked for unechoed on a terminal, else
    the first line of standard input (`... | safebox-install enrol`): never from the command line."""
    if path is not None and path != "-":
        try:
            text = Path(path).read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            detail = getattr(exc, "strerror", None) or str(exc)
            raise InstallerError("enrol_code_file", path=path, detail=detail) from None
        return (text.strip().splitlines() or [""])[0].strip()
    if path is None and sys.stdin.isatty():
        return getpass.getpass(t("enrol_prompt"))  # not echoed: it is a secret until it is spent
    return sys.stdin.readline().strip()


def walk_test_command(args: argparse.Namespace) -> int:
    from safebox.tools.installer import report
    from safebox.tools.installer.walktest import WalkTest

    hub = load_hub_config(args.hub_config)
    walk = WalkTest.for_home(hub, say, only=args.device, zone=args.zone)
    if not walk.devices:
        raise InstallerError("walk_no_devices")
    passed = walk.run(args.timeout)
    result = walk.result(installer=args.installer)
    if passed:
        say("walk_passed")
    else:
        say("walk_failed", problems=t("list_separator").join(report.problems(result)))
    md, js = report.write(result, args.report_dir, messages.language(), zone=args.zone)
    say("walk_report_written", md=str(md), json=str(js))
    return 0 if passed else EXIT_FAILED


def report_command(args: argparse.Namespace) -> int:
    from safebox.tools.installer import report
    path = Path(args.file)
    try:
        result = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise InstallerError("cli_report_missing", path=str(path)) from None
    except OSError as exc:
        raise InstallerError("cli_report_unreadable", path=str(path), detail=exc.strerror or str(exc)) from None
    except ValueError:
        raise InstallerError("cli_report_not_json", path=str(path)) from None
    if not report.is_report(result):
        raise InstallerError("cli_report_not_json", path=str(path))
    render = report.html_page if args.html else report.markdown
    text = render(result, zone=args.zone)
    if args.output:
        Path(args.output).write_text(text, encoding="utf-8")
    else:
        sys.stdout.write(text)
    return 0 if result.get("passed") else EXIT_FAILED


def lab_command(args: argparse.Namespace) -> int:
    from safebox.tools.installer import lab
    return lab.run(args.dir, board_port=args.board_port, rssi=args.rssi, say=say)


def lab_info_command(args: argparse.Namespace) -> int:
    from safebox.tools.installer import lab
    found = lab.info(args.dir, wait_s=args.wait)
    print(found[args.field] if args.field else json.dumps(found, indent=1))
    return 0


def lab_press_command(args: argparse.Namespace) -> int:
    import time
    from safebox.tools.installer import lab
    for n, name in enumerate(args.inputs):
        if n:
            time.sleep(args.gap)  # a person takes a moment between buttons
        lab.press(args.dir, name, hold_s=args.hold)
        if name in lab.DOOR:
            say("lab_opened" if name == "open" else "lab_closed")
        else:
            say("lab_pressed", event=name)
    return 0

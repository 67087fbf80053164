"""`safebox-install`: the installer's one command, a table of subcommands (like mpremote's).

  safebox-install flash     [--port P] [--force]                  copy the firmware onto a board
  safebox-install pair      [--port P] --role R --room ROOM       pair the board with this home's hub
  safebox-install unpair    (--port P | --device MAC) [--force]   remove a device from the home
  safebox-install enrol     [--code CODE]                         enrol the hub with the platform
  safebox-install walk-test [--report-dir DIR]                    press, open, close; the report
  safebox-install report    FILE.json [--html]                    show a saved report again
  safebox-install lab       --dir DIR                             a simulated home to practise on
  safebox-install lab-info  --dir DIR [FIELD]                     its board's port, its hub config
  safebox-install lab-press --dir DIR INPUT...                    the practice lab's hands

The hub's commands (pair, unpair, enrol, walk-test) run on the hub, with its config
(--hub-config, default /etc/safebox/hub.toml): the board is plugged into the hub's USB,
the installer reaches the hub's shell over SSH. Messages are in Chinese or English:
--lang zh|en, else the locale. Exit status: 0 done, 1 walk test failed, 2 refused or failed
(the message says what to do), 130 interrupted.
"""

from __future__ import annotations

import argparse
import getpass
import json
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from safebox.tools.installer import messages
from safebox.tools.installer.messages import InstallerError, t

DEFAULT_HUB_CONFIG = Path("/etc/safebox/hub.toml")
EXIT_FAILED = 1
EXIT_REFUSED = 2


def say(key: str, **params: Any) -> None:
    print(t(key, **params), flush=True)


class ProgressBar:
    """A one-line bar on a terminal; a line at each quarter otherwise (logs, pipes)."""

    def __init__(self, label: str, stream: Any = None) -> None:
        self.label = label
        self.stream = stream or sys.stderr
        self.tty = bool(getattr(self.stream, "isatty", lambda: False)())
        self._quarter = -1

    def __call__(self, done: int, total: int) -> None:
        frac = 1.0 if total == 0 else min(1.0, done / total)
        text = f"{self.label} [{'#' * int(frac * 30):<30}] {frac * 100:3.0f}%  {done / 1024:.1f}/{total / 1024:.1f} KB"
        if self.tty:
            self.stream.write("\r" + text + ("\n" if done >= total else ""))
            self.stream.flush()
        elif int(frac * 4) > self._quarter:
            self._quarter = int(frac * 4)
            print(text, file=self.stream, flush=True)


def _hub_config(path: Path) -> Any:
    from safebox.hub import config
    try:
        return config.load(path)
    except config.ConfigError as exc:
        raise InstallerError("hub_config_error", detail=str(exc)) from None


def _pins(values: list[str] | None) -> dict[str, int]:
    pins: dict[str, int] = {}
    for value in values or []:
        name, _, gpio = value.partition("=")
        if not name or not gpio.isdigit():
            raise InstallerError("cli_bad_pin", value=value)
        pins[name] = int(gpio)
    return pins


# -- the commands ----------------------------------------------------------------------
def _flash(args: argparse.Namespace) -> int:
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
        say("flash_next_pair", port=board.name)
    return 0


def _pair(args: argparse.Namespace) -> int:
    from safebox.tools.installer.board import SerialBoard
    from safebox.tools.installer.pairing import check_inputs, pair

    pins = _pins(args.pin)
    check_inputs(args.role, args.room, args.board, pins)  # before anything is opened
    hub = _hub_config(args.hub_config)
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
    say("pair_next_walk", config=str(args.hub_config))
    return 0


def _unpair(args: argparse.Namespace) -> int:
    from safebox.tools.installer.board import SerialBoard
    from safebox.tools.installer.pairing import unpair

    hub = _hub_config(args.hub_config)
    if args.device:
        unpair(hub, mac=args.device.upper(), say=say)
        return 0
    with SerialBoard(args.port) as board:
        unpair(hub, board=board, force=args.force, say=say)
    return 0


def _enrol(args: argparse.Namespace) -> int:
    from safebox.tools.installer.enrol import enrol

    hub = _hub_config(args.hub_config)
    code = args.code
    if code is None:
        code = getpass.getpass(t("enrol_prompt"))  # not echoed: it is a secret until it is spent
    say("enrol_sending", hub=hub.hub_id, url=hub.platform.url)
    result = enrol(hub, code)
    say("enrol_already" if result.already else "enrol_done", hub=hub.hub_id)
    if result.replaced:
        say("enrol_replaced")
    return 0


def _walk_test(args: argparse.Namespace) -> int:
    from safebox.tools.installer import report
    from safebox.tools.installer.walktest import WalkTest

    hub = _hub_config(args.hub_config)
    walk = WalkTest.for_home(hub, say, only=args.device)
    if not walk.devices:
        raise InstallerError("walk_no_devices")
    passed = walk.run(args.timeout)
    result = walk.result(installer=args.installer)
    if passed:
        say("walk_passed")
    else:
        say("walk_failed", problems="; ".join(report.problems(result)))
    md, js = report.write(result, args.report_dir, messages.language())
    say("walk_report_written", md=str(md), json=str(js))
    return 0 if passed else EXIT_FAILED


def _report(args: argparse.Namespace) -> int:
    from safebox.tools.installer import report
    try:
        result = json.loads(Path(args.file).read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise InstallerError("cli_report_read_error", path=str(args.file), detail=str(exc)) from None
    text = report.html_page(result) if args.html else report.markdown(result)
    if args.output:
        Path(args.output).write_text(text, encoding="utf-8")
    else:
        sys.stdout.write(text)
    return 0 if result.get("passed") else EXIT_FAILED


def _lab(args: argparse.Namespace) -> int:
    from safebox.tools.installer import lab
    return lab.run(args.dir, board_port=args.board_port, rssi=args.rssi, say=say)


def _lab_info(args: argparse.Namespace) -> int:
    from safebox.tools.installer import lab
    found = lab.info(args.dir, wait_s=args.wait)
    print(found[args.field] if args.field else json.dumps(found, indent=1))
    return 0


def _lab_press(args: argparse.Namespace) -> int:
    import time
    from safebox.tools.installer import lab
    for n, name in enumerate(args.inputs):
        if n:
            time.sleep(args.gap)  # a person takes a moment between buttons
        lab.press(args.dir, name, hold_s=args.hold)
        say("lab_pressed", what=name)
    return 0


# name, function, help, arguments
Command = tuple[str, Callable[[argparse.Namespace], int], str, Callable[[argparse.ArgumentParser], None]]


def _port(p: argparse.ArgumentParser) -> None:
    p.add_argument("--port", help="serial port of the board (e.g. /dev/ttyUSB0, or socket://host:port); "
                                  "default: the one USB board plugged in")


def _hub(p: argparse.ArgumentParser) -> None:
    p.add_argument("--hub-config", type=Path, default=DEFAULT_HUB_CONFIG, help="the hub's hub.toml")


def _flash_args(p: argparse.ArgumentParser) -> None:
    _port(p)
    p.add_argument("--image", type=Path, help="a staged image folder (default: build this checkout's firmware)")
    p.add_argument("--force", action="store_true", help="copy every file, even those already on the board")
    p.add_argument("--no-reset", action="store_true", help="do not restart a paired board afterwards")


def _pair_args(p: argparse.ArgumentParser) -> None:
    from safebox.tools.installer.pairing import DEFAULT_BOARD, ROLES
    _port(p)
    _hub(p)
    p.add_argument("--role", required=True, help=f"one of {', '.join(ROLES)}")
    p.add_argument("--room", default="", help="where it is, as the call centre should read it (e.g. bedroom)")
    p.add_argument("--board", default=DEFAULT_BOARD, help=f"the board's pin map (default {DEFAULT_BOARD})")
    p.add_argument("--pin", action="append", metavar="NAME=GPIO", help="override one pin (repeatable)")
    p.add_argument("--replace", action="store_true", help="pair again with a new key (the old one stops working)")
    p.add_argument("--no-reset", action="store_true", help="do not restart the board afterwards")


def _unpair_args(p: argparse.ArgumentParser) -> None:
    _port(p)
    _hub(p)
    p.add_argument("--device", metavar="MAC", help="remove this device from the hub when it is not at hand")
    p.add_argument("--force", action="store_true", help="wipe a board that names another home")


def _enrol_args(p: argparse.ArgumentParser) -> None:
    _hub(p)
    p.add_argument("--code", help="the one-time enrolment code from the platform (asked for if not given)")


def _walk_args(p: argparse.ArgumentParser) -> None:
    _hub(p)
    p.add_argument("--device", action="append", metavar="MAC", help="test only this device (repeatable)")
    p.add_argument("--timeout", type=float, default=600.0, metavar="SECONDS", help="give up after (default 600)")
    p.add_argument("--report-dir", type=Path, default=Path("."), help="where the report goes (default: here)")
    p.add_argument("--installer", help="your name or staff number, for the report")


def _report_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("file", type=Path, metavar="FILE.json")
    p.add_argument("--html", action="store_true", help="HTML instead of Markdown")
    p.add_argument("-o", "--output", type=Path, help="write here instead of to the screen")


def _lab_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--dir", type=Path, required=True, help="the lab's folder (made if missing)")
    p.add_argument("--board-port", type=int, default=0, help="TCP port of the board's serial line (default: free)")
    p.add_argument("--rssi", type=int, default=-60, help="the signal strength the hub measures, dBm (default -60)")


def _lab_info_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--dir", type=Path, required=True, help="the lab's folder")
    p.add_argument("field", nargs="?", choices=["board", "hub_config", "hub_id", "platform_db", "platform"],
                   help="print only this (default: all, as JSON)")
    p.add_argument("--wait", type=float, default=60.0, help="seconds to wait for the lab to be ready (default 60)")


def _lab_press_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--dir", type=Path, required=True, help="the running lab's folder")
    p.add_argument("inputs", nargs="+", metavar="INPUT",
                   help="emergency, community_service, life_service, open, close (in this order)")
    p.add_argument("--hold", type=float, default=0.15, help="seconds a button is held (default 0.15)")
    p.add_argument("--gap", type=float, default=2.0, help="seconds between inputs (default 2)")


COMMANDS: tuple[Command, ...] = (
    ("flash", _flash, "copy the firmware onto a board that runs MicroPython", _flash_args),
    ("pair", _pair, "pair the board with this home: a new key on the device and the hub", _pair_args),
    ("unpair", _unpair, "remove a device from this home", _unpair_args),
    ("enrol", _enrol, "enrol this hub with the platform using a one-time code", _enrol_args),
    ("walk-test", _walk_test, "press every button, open every door; write the install report", _walk_args),
    ("report", _report, "show a saved install report (JSON) as Markdown or HTML", _report_args),
    ("lab", _lab, "a simulated home with a blank board, to practise on", _lab_args),
    ("lab-info", _lab_info, "the practice lab's board port and hub config, once it is ready", _lab_info_args),
    ("lab-press", _lab_press, "press the practice board's buttons or open its door", _lab_press_args),
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="safebox-install", description="Install a home safety box.")
    parser.add_argument("--lang", choices=["zh", "en", "zh-CN"], help="language of the messages (default: the locale)")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, func, text, add_args in COMMANDS:
        p = sub.add_parser(name, help=text)
        add_args(p)
        p.set_defaults(func=func)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    messages.set_language(args.lang)
    if args.command == "unpair" and not args.port and not args.device:
        print(f"safebox-install: {t('cli_need_board_or_device')}", file=sys.stderr)
        return EXIT_REFUSED
    try:
        return int(args.func(args))
    except InstallerError as exc:
        print(f"safebox-install: {exc.text()}", file=sys.stderr)
        return EXIT_REFUSED
    except PermissionError as exc:  # e.g. the hub's state, owned by the hub's user
        print(f"safebox-install: {t('cli_permission', path=exc.filename or exc)}", file=sys.stderr)
        return EXIT_REFUSED
    except KeyboardInterrupt:
        print(f"\nsafebox-install: {t('cli_interrupted')}", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())

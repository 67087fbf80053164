"""`safebox-install`: the installer's one command, a table of subcommands (like mpremote's).

  safebox-install flash     [--port P] [--force]                  copy the firmware onto a board
  safebox-install pair      [--port P] --role R --room ROOM       pair the board with this home's hub
  safebox-install unpair    (--port P | --device MAC) [--force]   remove a device from the home
  safebox-install enrol     [--code-file FILE|-]                  enrol the hub with the platform
  safebox-install walk-test [--report-dir DIR]                    press, open, close; the report
  safebox-install report    FILE.json [--html]                    show a saved report again
  safebox-install lab       --dir DIR                             a simulated home to practise on
  safebox-install lab-info  --dir DIR [FIELD]                     its board's port, its hub config
  safebox-install lab-press --dir DIR INPUT...                    the practice lab's hands

Global options, before or after the command: --lang zh|en (else the locale), --tz ZONE
(report times; else the system's zone), --hub-config FILE (the hub's hub.toml, default
/etc/safebox/hub.toml; flash only names it in its next-step hint). The hub's commands
(pair, unpair, enrol, walk-test) run on the hub: the board is plugged into the hub's USB,
the installer reaches the hub's shell over SSH. Every word shown, argparse's included, comes from the catalogue
(catalogue.py). Exit status: 0 done, 1 walk test failed, 2 refused or failed (the message
says what to do), 130 interrupted.
"""

from __future__ import annotations

import argparse
import getpass
import json
import shlex
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from safebox.tools.installer import catalogue, localtime, messages
from safebox.tools.installer.messages import InstallerError, t
from safebox.tools.installer.progress import ProgressBar

DEFAULT_HUB_CONFIG = Path("/etc/safebox/hub.toml")
EXIT_FAILED = 1
EXIT_REFUSED = 2


def say(key: str, **params: Any) -> None:
    print(t(key, **params), flush=True)


def _hub_config(path: Path) -> Any:
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
        say("flash_next_pair", port=shlex.quote(board.name), config=shlex.quote(str(args.hub_config)))
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
    say("pair_next_walk", config=shlex.quote(str(args.hub_config)))
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

    if args.code is not None:  # on the command line a code sits in shell history and in `ps`
        raise InstallerError("enrol_code_argv")
    hub = _hub_config(args.hub_config)
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


def _walk_test(args: argparse.Namespace) -> int:
    from safebox.tools.installer import report
    from safebox.tools.installer.walktest import WalkTest

    hub = _hub_config(args.hub_config)
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


def _report(args: argparse.Namespace) -> int:
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
        if name in lab.DOOR:
            say("lab_opened" if name == "open" else "lab_closed")
        else:
            say("lab_pressed", event=name)
    return 0


# name, function, arguments; the help text is the message "cmd_<name>".
Command = tuple[str, Callable[[argparse.Namespace], int], Callable[[argparse.ArgumentParser], None]]


def _port(p: argparse.ArgumentParser) -> None:
    p.add_argument("--port", metavar=t("mv_port"), help=t("help_port"))


def _flash_args(p: argparse.ArgumentParser) -> None:
    _port(p)
    p.add_argument("--image", type=Path, metavar=t("mv_dir"), help=t("help_image"))
    p.add_argument("--force", action="store_true", help=t("help_flash_force"))
    p.add_argument("--no-reset", action="store_true", help=t("help_flash_no_reset"))


def _pair_args(p: argparse.ArgumentParser) -> None:
    from safebox.tools.installer.pairing import DEFAULT_BOARD, ROLES
    _port(p)
    p.add_argument("--role", required=True, metavar=t("mv_role"), help=t("help_role", roles=", ".join(ROLES)))
    p.add_argument("--room", default="", metavar=t("mv_room"), help=t("help_room"))
    p.add_argument("--board", default=DEFAULT_BOARD, metavar=t("mv_board"), help=t("help_board", board=DEFAULT_BOARD))
    p.add_argument("--pin", action="append", metavar=t("mv_pin"), help=t("help_pin"))
    p.add_argument("--replace", action="store_true", help=t("help_replace"))
    p.add_argument("--no-reset", action="store_true", help=t("help_pair_no_reset"))


def _unpair_args(p: argparse.ArgumentParser) -> None:
    _port(p)
    p.add_argument("--device", metavar="MAC", help=t("help_unpair_device"))
    p.add_argument("--force", action="store_true", help=t("help_unpair_force"))


def _enrol_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--code-file", metavar=t("mv_file"), help=t("help_code_file"))
    p.add_argument("--code", help=argparse.SUPPRESS)  # refused with why (enrol_code_argv)


def _walk_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--device", action="append", metavar="MAC", help=t("help_walk_device"))
    p.add_argument("--timeout", type=float, default=600.0, metavar=t("mv_seconds"), help=t("help_timeout"))
    p.add_argument("--report-dir", type=Path, default=Path("."), metavar=t("mv_dir"), help=t("help_report_dir"))
    p.add_argument("--installer", metavar=t("mv_name"), help=t("help_installer"))


def _report_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("file", type=Path, metavar="FILE.json", help=t("help_report_file"))
    p.add_argument("--html", action="store_true", help=t("help_html"))
    p.add_argument("-o", "--output", type=Path, metavar=t("mv_file"), help=t("help_output"))


def _lab_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--dir", type=Path, required=True, metavar=t("mv_dir"), help=t("help_lab_dir"))
    p.add_argument("--board-port", type=int, default=0, metavar=t("mv_tcp_port"), help=t("help_board_port"))
    p.add_argument("--rssi", type=int, default=-60, metavar="DBM", help=t("help_rssi"))


def _lab_info_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--dir", type=Path, required=True, metavar=t("mv_dir"), help=t("help_lab_dir_running"))
    p.add_argument("field", nargs="?", choices=["board", "hub_config", "hub_id", "platform_db", "platform"],
                   help=t("help_lab_field"))
    p.add_argument("--wait", type=float, default=60.0, metavar=t("mv_seconds"), help=t("help_lab_wait"))


def _lab_press_args(p: argparse.ArgumentParser) -> None:
    from safebox.tools.installer.lab import BUTTONS, DOOR
    p.add_argument("--dir", type=Path, required=True, metavar=t("mv_dir"), help=t("help_lab_dir_running"))
    p.add_argument("inputs", nargs="+", metavar=t("mv_input"), help=t("help_lab_inputs", inputs=", ".join(BUTTONS + DOOR)))
    p.add_argument("--hold", type=float, default=0.15, metavar=t("mv_seconds"), help=t("help_hold"))
    p.add_argument("--gap", type=float, default=2.0, metavar=t("mv_seconds"), help=t("help_gap"))


COMMANDS: tuple[Command, ...] = (
    ("flash", _flash, _flash_args),
    ("pair", _pair, _pair_args),
    ("unpair", _unpair, _unpair_args),
    ("enrol", _enrol, _enrol_args),
    ("walk-test", _walk_test, _walk_args),
    ("report", _report, _report_args),
    ("lab", _lab, _lab_args),
    ("lab-info", _lab_info, _lab_info_args),
    ("lab-press", _lab_press, _lab_press_args),
)
LANG_CHOICES = ("zh", "en", "zh-CN")


def _global_options(p: argparse.ArgumentParser, *, top: bool) -> None:
    """Options every command takes, before or after its name: on the top parser with their
    defaults, and on each command's parser with SUPPRESS, so a value given after the command
    is kept and one given before it is not overwritten by a default."""
    unset = None if top else argparse.SUPPRESS
    p.add_argument("--lang", choices=LANG_CHOICES, default=unset, help=t("help_lang"))
    p.add_argument("--tz", metavar=t("mv_zone"), default=unset, help=t("help_tz"))
    p.add_argument("--hub-config", type=Path, metavar=t("mv_file"),
                   default=DEFAULT_HUB_CONFIG if top else argparse.SUPPRESS, help=t("help_hub_config"))


class _Formatter(argparse.HelpFormatter):
    """argparse puts an ASCII colon after each section title; Chinese takes "：".

    (The titles themselves, "options" and the rest, are translated through gettext.)
    """

    def __init__(self, prog: str, **kwargs: Any) -> None:
        super().__init__(prog, **kwargs)
        self._headings: list[str] = []

    def start_section(self, heading: str | None) -> None:
        if heading:
            self._headings.append(heading)
        super().start_section(heading)

    def format_help(self) -> str:
        text = super().format_help()
        if messages.language() == "zh":
            for heading in self._headings:
                text = text.replace(f"\n{heading}:\n", f"\n{heading}：\n")
        return text


def build_parser() -> argparse.ArgumentParser:
    """The parser, in the current language (argparse's own words too: see catalogue.speaking)."""
    parser = argparse.ArgumentParser(prog="safebox-install", description=t("cli_description"),
                                     epilog=t("cli_epilog"), formatter_class=_Formatter)
    _global_options(parser, top=True)
    sub = parser.add_subparsers(dest="command", required=True, metavar=t("mv_command"))
    for name, func, add_args in COMMANDS:
        text = t(f"cmd_{name.replace('-', '_')}")
        p = sub.add_parser(name, help=text, description=text, formatter_class=_Formatter)
        add_args(p)
        _global_options(p, top=False)
        p.set_defaults(func=func)
    return parser


def _early_options(argv: Sequence[str]) -> argparse.Namespace:
    """--lang and --tz from anywhere on the line, before the parser (whose words depend on them) exists."""
    early = argparse.ArgumentParser(add_help=False, allow_abbrev=False)
    early.add_argument("--lang")
    early.add_argument("--tz")
    found, _ = early.parse_known_args(list(argv))
    return found


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    early = _early_options(argv)
    lang = messages.set_language(early.lang if early.lang in LANG_CHOICES else None)
    with catalogue.speaking(lang):
        try:
            tz = localtime.zone(early.tz)
        except InstallerError as exc:
            _complain(exc.text())
            return EXIT_REFUSED
        args = build_parser().parse_args(argv)
        args.zone = tz
        return _run(args)


def _run(args: argparse.Namespace) -> int:
    if args.command == "unpair" and not args.port and not args.device:
        _complain(t("cli_need_board_or_device"))
        return EXIT_REFUSED
    try:
        return int(args.func(args))
    except InstallerError as exc:
        _complain(exc.text())
        return EXIT_REFUSED
    except PermissionError as exc:  # e.g. the hub's state, owned by the hub's user
        _complain(t("cli_permission", path=exc.filename or exc))
        return EXIT_REFUSED
    except KeyboardInterrupt:
        print(file=sys.stderr)
        _complain(t("cli_interrupted"))
        return 130


def _complain(message: str) -> None:
    print(t("cli_says", message=message), file=sys.stderr)


if __name__ == "__main__":
    sys.exit(main())

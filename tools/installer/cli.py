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
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from safebox.tools.installer import catalogue, commands, localtime, messages
from safebox.tools.installer.commands import EXIT_FAILED, EXIT_REFUSED
from safebox.tools.installer.messages import InstallerError, t

__all__ = ["COMMANDS", "EXIT_FAILED", "EXIT_REFUSED", "build_parser", "main"]
DEFAULT_HUB_CONFIG = Path("/etc/safebox/hub.toml")


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
    ("flash", commands.flash_command, _flash_args),
    ("pair", commands.pair_command, _pair_args),
    ("unpair", commands.unpair_command, _unpair_args),
    ("enrol", commands.enrol_command, _enrol_args),
    ("walk-test", commands.walk_test_command, _walk_args),
    ("report", commands.report_command, _report_args),
    ("lab", commands.lab_command, _lab_args),
    ("lab-info", commands.lab_info_command, _lab_info_args),
    ("lab-press", commands.lab_press_command, _lab_press_args),
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

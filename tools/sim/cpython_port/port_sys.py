"""`sys` for one boot (see loader.py): what MicroPython firmware uses of it."""

import sys as _sys
import traceback as _traceback

platform = "esp32"
byteorder = "little"
maxsize = 2**31 - 1
version = "3.4.0; MicroPython v1.29 (CPython port of the simulator)"


class _Impl:
    name = "micropython"
    version = (1, 29, 0)
    _machine = "ESP32 module (simulated) with ESP32"


implementation = _Impl()
modules = {}
argv = []
path = ["", "/lib"]
stdout = _sys.stdout
stderr = _sys.stderr


def print_exception(exc, file=None):
    _boot.console("".join(_traceback.format_exception(exc)))  # noqa: F821 (set by the loader)


def exit(code=0):
    # On a board the program stops at the REPL; SystemExit would stop the simulator's loop.
    from safebox.tools.sim.cpython_port.device import Reset

    _boot.console("sys.exit(%r): the board sits at the REPL\n" % (code,))  # noqa: F821
    _boot.end()  # noqa: F821
    raise Reset("sys.exit")

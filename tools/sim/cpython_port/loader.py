"""Imports for one boot of one board: its own port modules and its own firmware modules.

Every module the firmware runs is executed with a builtins dict of this boot
(`__builtins__` in its globals), whose `__import__` resolves:
  * micropython, machine, bluetooth, time, asyncio, os, sys, gc -> this boot's port modules;
  * safebox.firmware.*   -> fresh instances of the firmware sources, for this boot only;
  * safebox.protocol.*   -> the ordinary (shared, stateless) CPython modules;
  * a few standard modules MicroPython also has (json, struct, binascii, errno, ...);
anything else raises ImportError, as it would on the board. `open` and `print` are the
board's too: files are in its flash folder, printed lines go to its console.
"""

from __future__ import annotations

import builtins
import importlib
import importlib.util
import sys
import types
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from safebox.tools.sim.cpython_port.device import Boot

PORT_DIR = Path(__file__).resolve().parent
FIRMWARE_DIR = Path(__file__).resolve().parents[3] / "firmware"
PORT_MODULES = ("micropython", "machine", "esp32", "bluetooth", "time", "asyncio", "os", "sys", "gc")
# Modules of MicroPython's standard set (ESP32 port) the firmware may import as CPython has them.
SHARED_STDLIB = frozenset({"json", "struct", "binascii", "errno", "collections", "re", "hashlib", "random",
                           "math", "array", "io", "heapq"})


class FirmwareImporter:
    def __init__(self, boot: Boot) -> None:
        self.boot = boot
        self.builtins: dict[str, Any] = dict(vars(builtins))
        self.builtins["__import__"] = self._import
        self.builtins["open"] = self._open
        self.builtins["print"] = self._print
        self.builtins.pop("exit", None)
        self.builtins.pop("quit", None)
        self.modules: dict[str, types.ModuleType] = {}
        self._safebox = types.ModuleType("safebox")
        self._safebox.__path__ = []  # type: ignore[attr-defined]
        self._firmware = types.ModuleType("safebox.firmware")
        self._firmware.__path__ = [str(FIRMWARE_DIR)]  # type: ignore[attr-defined]
        self._firmware.__package__ = "safebox.firmware"
        self._safebox.firmware = self._firmware  # type: ignore[attr-defined]
        self._safebox.protocol = importlib.import_module("safebox.protocol")  # type: ignore[attr-defined]
        self.modules["safebox"] = self._safebox
        self.modules["safebox.firmware"] = self._firmware

    # -- the board's builtins --------------------------------------------------------
    def _open(self, file: Any, mode: str = "r", *args: Any, **kwargs: Any) -> Any:
        return builtins.open(self.boot.device.flash_path(file), mode, *args, **kwargs)

    def _print(self, *args: Any, sep: str = " ", end: str = "\n", file: Any = None, **_: Any) -> None:
        self.boot.console(sep.join(str(a) for a in args) + end)

    def _import(self, name: str, globals: dict | None = None, locals: Any = None,
                fromlist: tuple[str, ...] | list[str] | None = (), level: int = 0) -> types.ModuleType:
        self.boot.check_alive()
        if level:
            package = (globals or {}).get("__package__") or ""
            parts = package.split(".")
            base = ".".join(parts[: len(parts) - (level - 1)]) if level > 1 else package
            name = f"{base}.{name}" if name else base
        module = self._load(name)
        if fromlist:
            for item in fromlist:
                if item != "*" and not hasattr(module, item) and name.startswith(("safebox.firmware",
                                                                                   "safebox.protocol")):
                    try:
                        self._load(f"{name}.{item}")
                    except ImportError:
                        pass  # a name inside the module: the import statement reports it
            return module
        top = name.split(".")[0]
        return self._load(top) if top != name else module

    def _load(self, name: str) -> types.ModuleType:
        found = self.modules.get(name)
        if found is not None:
            return found
        if name in PORT_MODULES:
            module = self._exec_file(PORT_DIR / f"port_{name}.py", name, port=True)
        elif name.startswith("safebox.firmware."):
            path = FIRMWARE_DIR / (name.split(".", 2)[2].replace(".", "/") + ".py")
            if not path.is_file():
                raise ImportError(f"no module named '{name}'")
            module = self._exec_file(path, name)
            setattr(self._firmware, name.rsplit(".", 1)[1], module)
        elif name == "safebox.protocol" or name.startswith("safebox.protocol."):
            module = importlib.import_module(name)
        elif name in SHARED_STDLIB:
            module = importlib.import_module(name)
        else:
            raise ImportError(f"no module named '{name}'")
        self.modules[name] = module
        return module

    def _exec_file(self, path: Path, name: str, *, port: bool = False) -> types.ModuleType:
        module = types.ModuleType(name)
        module.__file__ = str(path)
        module.__package__ = name.rpartition(".")[0] if not port else ""
        module.__dict__["__builtins__"] = self.builtins if not port else builtins
        if port:
            module.__dict__["_boot"] = self.boot
        self.modules[name] = module  # before running it: modules that import each other
        code = compile(path.read_text(), str(path), "exec")
        try:
            exec(code, module.__dict__)
        except BaseException:
            self.modules.pop(name, None)
            raise
        return module

    def run_main(self, path: Path) -> None:
        """Run the board's main.py as MicroPython does at boot."""
        g: dict[str, Any] = {"__name__": "__main__", "__file__": str(path), "__builtins__": self.builtins}
        exec(compile(path.read_text(), str(path), "exec"), g)


def real_module(name: str) -> types.ModuleType:
    """The CPython module itself, for port modules that wrap it (time, asyncio, os, sys)."""
    return sys.modules.get(name) or importlib.import_module(name)

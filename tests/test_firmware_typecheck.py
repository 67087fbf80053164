"""Every device file type-checks against MicroPython's ESP32 API (micropython-esp32-stubs).

mypy runs with the stubs' reduced standard library as its typeshed, so code that calls
something the ESP32 port does not have (or calls it wrongly) fails here, before a board.
The stubs are copied out of site-packages first: mypy refuses site-packages on its path.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from importlib import metadata
from pathlib import Path

import pytest

from safebox.tools import build

STUB_DISTS = ("micropython-esp32-stubs", "micropython-stdlib-stubs")


def _typings(dest: Path) -> tuple[Path, Path]:
    """(typeshed dir, mypy_path dir) holding the stubs."""
    mpy = dest / "mpy"
    for dist in STUB_DISTS:
        try:
            files = metadata.distribution(dist).files or []
        except metadata.PackageNotFoundError:
            pytest.fail(f"{dist} is not installed (pip install -e .[test])")
        for f in files:
            if not str(f).endswith(".pyi") and f.name != "VERSIONS":
                continue
            rel = Path(str(f))
            target = dest / rel if rel.parts[0] == "stdlib" else mpy / rel
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(f.locate(), target)
    # mypy wants its own mypy_extensions next to any typeshed it is given
    import mypy

    bundled = Path(mypy.__file__).parent / "typeshed" / "stubs" / "mypy-extensions"
    shutil.copytree(bundled, dest / "stubs" / "mypy-extensions")
    return dest, mpy


def _tree(dest: Path) -> Path:
    """The device files laid out under their import names, as on a board."""
    for src, rel in build.device_sources():
        target = dest / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(src, target)
    return dest


def test_device_files_type_check_against_the_esp32_stubs(tmp_path):
    typeshed, mpy_path = _typings(tmp_path / "typings")
    tree = _tree(tmp_path / "src")
    (tree / "mypy.ini").write_text(
        "[mypy]\npython_version = 3.11\nnamespace_packages = True\nexplicit_package_bases = True\ncheck_untyped_defs = True\n"
        f"mypy_path = {mpy_path}\ncache_dir = {tmp_path / 'cache'}\n"
        # ccm.py picks AES from `cryptography` when it runs on CPython (the hub)
        "[mypy-cryptography.*]\nignore_missing_imports = True\n")
    out = subprocess.run([sys.executable, "-m", "mypy", "--config-file", "mypy.ini", "--custom-typeshed-dir",
                          str(typeshed), "-p", "safebox.firmware", "-p", "safebox.protocol"],
                         cwd=tree, capture_output=True, text=True, timeout=300)
    ours = [line for line in out.stdout.splitlines() if line.startswith("safebox/")]
    assert not ours, "\n".join(ours)
    # it did check them (the stubs' own files have errors of their own, not counted here)
    checked = [line for line in out.stdout.splitlines() if "source file" in line]
    assert checked and f"checked {len(build.device_sources())} source files" in checked[-1], out.stdout[-2000:]


def test_a_wrong_call_is_caught(tmp_path):
    """The check can fail: a call the ESP32 port does not have is reported."""
    typeshed, mpy_path = _typings(tmp_path / "typings")
    bad = tmp_path / "src" / "bad.py"
    bad.parent.mkdir()
    bad.write_text("import machine\nimport time\nmachine.lightsleep('soon')\ntime.ticks_ms(5)\n")
    out = subprocess.run([sys.executable, "-m", "mypy", "--custom-typeshed-dir", str(typeshed),
                          "--cache-dir", str(tmp_path / "cache"), "--python-version", "3.11", "bad.py"],
                         cwd=bad.parent, capture_output=True, text=True, timeout=300,
                         env={"MYPYPATH": str(mpy_path), "PATH": ""})
    ours = [line for line in out.stdout.splitlines() if line.startswith("bad.py") and ": error:" in line]
    assert [line.split(":")[1] for line in ours] == ["3", "4"], out.stdout[-2000:]

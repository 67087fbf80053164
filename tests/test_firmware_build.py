"""Every file that runs on a device compiles for MicroPython; the image is what the build says."""

from __future__ import annotations

import hashlib

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


def test_image_manifest_matches_the_files(device_image):
    manifest = build.stage(device_image)
    assert "lib/safebox/protocol/bthome.mpy" in manifest and "lib/safebox/firmware/sender.mpy" in manifest
    for rel, digest in manifest.items():
        assert hashlib.sha256((device_image / rel).read_bytes()).hexdigest() == digest
    # no CPython-only protocol module goes onto a device
    assert not any(name.endswith(("signing.mpy", "events.mpy")) for name in manifest)


def test_a_file_that_does_not_compile_is_named(tmp_path):
    bad = tmp_path / "broken.py"
    bad.write_text("def f(:\n")
    with pytest.raises(build.BuildError, match="(?s)broken.py.*line 1.*SyntaxError"):
        build.compile_mpy(bad, tmp_path / "x.mpy")

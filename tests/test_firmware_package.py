"""Packaging: firmware/package.json installs with mip, firmware/manifest.py freezes the same files.

`mip` here is MicroPython's own (the unix binary's `micropython -m mip`), fetching over HTTP
from a local server on the repository, as `mpremote mip install` does for a board.
"""

from __future__ import annotations

import functools
import http.server
import json
import os
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from safebox.tools import build

from .conftest import MICROPYTHON, ROOT


def _device_files() -> dict[str, Path]:
    """Install path -> source, for every module a device runs (as tools/build.py stages them)."""
    return {rel: src for src, rel in build.device_sources()}


@pytest.fixture
def repo_over_http() -> Iterator[str]:
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(ROOT))
    handler.log_message = lambda *args: None  # type: ignore[attr-defined]
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def test_package_json_lists_exactly_the_device_files():
    doc = json.loads((ROOT / "firmware" / "package.json").read_text())
    listed = {target: (ROOT / "firmware" / url).resolve() for target, url in doc["urls"]}
    assert listed == {rel: src.resolve() for rel, src in _device_files().items()}
    assert doc["version"] == (ROOT / "firmware" / "main.py").read_text().split('VERSION = "')[1].split('"')[0]


def test_mip_installs_the_firmware_and_it_runs(tmp_path, repo_over_http, micropython):
    env = dict(os.environ, MICROPYPATH=".frozen")
    out = subprocess.run([str(MICROPYTHON), "-m", "mip", "install", "--target", str(tmp_path / "lib"),
                          f"{repo_over_http}/firmware/package.json"], cwd=tmp_path, env=env,
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0 and "Done" in out.stdout, out.stdout + out.stderr
    for rel, src in _device_files().items():
        assert (tmp_path / "lib" / rel).read_bytes() == src.read_bytes(), rel
    # what mip installed imports and works on MicroPython (with the simulator's shims)
    from safebox.tools.sim.firmware_process import SHIMS_DIR

    (tmp_path / "check.py").write_text(
        "from safebox.firmware import config, main\n"
        "cfg = config.parse({'role': 'toilet_door', 'board': 'esp32-c3-devkitm', 'key': 'ab' * 16, 'pir': 1})\n"
        "print(main.VERSION, cfg['pins']['contact'], cfg['linger_ms'], cfg['pir'])\n")
    env["MICROPYPATH"] = f"{SHIMS_DIR}:.frozen:{tmp_path / 'lib'}"
    run = subprocess.run([str(MICROPYTHON), "check.py"], cwd=tmp_path, env=env, capture_output=True, text=True,
                         timeout=30)
    assert run.returncode == 0, run.stdout + run.stderr
    assert run.stdout.split()[1:] == ["5", "0", "1"]  # a door does not linger (SPEC 1.7)


def test_manifest_freezes_the_same_files_under_the_same_names(tmp_path, monkeypatch):
    """Run firmware/manifest.py as MicroPython's manifest processor would (in its folder,
    with metadata() and package() given) and look at what it asked to freeze."""
    calls: dict[str, object] = {}

    def package(path: str, files: object = None, base_path: str = ".", opt: object = None) -> None:
        calls["package"] = (path, files, base_path)

    def metadata(**kwargs: object) -> None:
        calls["metadata"] = kwargs

    monkeypatch.chdir(ROOT / "firmware")
    code = (ROOT / "firmware" / "manifest.py").read_text()
    exec(compile(code, "manifest.py", "exec"), {"package": package, "metadata": metadata, "__file__": "manifest.py"})
    path, files, base = calls["package"]  # type: ignore[misc]
    assert path == "safebox" and files is None
    frozen = {str(p.relative_to(base)): p for p in Path(base).rglob("*.py")}
    assert {rel: p.read_bytes() for rel, p in frozen.items()} == \
        {rel: src.read_bytes() for rel, src in _device_files().items()}
    assert calls["metadata"]["version"] in (ROOT / "firmware" / "package.json").read_text()  # type: ignore[index]


def test_the_firmware_and_the_package_say_the_same_version():
    """One version for what ships: the device's (its boot frame says it, SPEC 1.8), the freeze
    manifest's, mip's package.json and the Python package's."""
    import safebox

    def quoted(path: str) -> str:
        return (ROOT / path).read_text().split('VERSION = "')[1].split('"')[0]

    doc = json.loads((ROOT / "firmware" / "package.json").read_text())
    assert quoted("firmware/main.py") == quoted("firmware/manifest.py") == doc["version"] == safebox.__version__

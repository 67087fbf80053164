"""The practice lab: a simulated home with a blank board on a serial port, to install it for real.

`safebox-install lab --dir DIR` starts, and keeps running until Ctrl-C:

* the simulated home of tools/sim (home.py): the bumble air, the hub as its own process
  (state and hub.toml in DIR/home/hub), the reference receiver as its own process over
  TLS (DIR/home/platform/events.db); the hub is *not* enrolled yet;
* one blank ESP32 (fakeboard.py) on `socket://127.0.0.1:<port>`, with MicroPython and an
  empty flash (DIR/board). When it boots with a main.py (after `pair` restarts it) it runs
  the real firmware image from its own flash on the micropython binary, on the simulated
  air, and its boot lines come out of its serial port as a board's would.

Everything an installer does to it goes through the real tools: `safebox-receiver
enrol-code` and `safebox-install enrol`, `flash`, `pair`, `walk-test`. What a person's
hands do, `safebox-install lab-press --dir DIR emergency ...` does: it asks the lab (over
a local control socket named in DIR/lab.json) to press the board's buttons or open its door.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal
import socket
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from safebox.firmware import config as fw_config
from safebox.tools.installer.messages import InstallerError, t

if TYPE_CHECKING:  # the lab's own side needs the simulator (the sim extra); lab-press and lab-info do not
    from safebox.tools.installer.fakeboard import FakeBoard

LAB_FILE = "lab.json"
LAB_MAC = "24:0A:C4:00:10:01"
HUB_ID = "hub-lab-0001"
HOME_ID = "home-lab-0001"
BATTERY_UV = 1_975_000  # 3.95 V behind the 1:2 divider: a fresh cell, about 75 %
BUTTONS = ("emergency", "community_service", "life_service")
DOOR = ("open", "close")


class _LabFirmware:
    """The board's firmware, running: `running` until it ends at the REPL (a crash, a bad config)."""

    def __init__(self, fw: Any, relay: asyncio.Task[None]) -> None:
        self.fw = fw
        self._exits = len(fw.exits)
        self._relay = relay

    @property
    def running(self) -> bool:
        if self.fw.running:
            return True
        ended = self.fw.exits[self._exits:]
        return not (ended and ended[-1][1] == 0)  # a reboot in progress still counts as running

    async def stop(self) -> None:
        self._relay.cancel()
        await self.fw.kill()


class Lab:
    def __init__(self, folder: Path, *, board_port: int = 0, rssi: int = -60) -> None:
        self.folder = Path(folder)
        self.board_port = board_port
        self.rssi = rssi
        self.home: Any = None
        self.board: FakeBoard | None = None
        self._fw: Any = None
        self._control: asyncio.Server | None = None

    async def __aenter__(self) -> Lab:
        from safebox.tools.installer.fakeboard import FakeBoard
        from safebox.tools.sim.home import SimHome
        self.folder.mkdir(parents=True, exist_ok=True)
        self.home = SimHome(self.folder / "home", hub_id=HUB_ID, home_id=HOME_ID, enrol=False)
        await self.home.__aenter__()
        try:
            self.home.air.rssi_dbm = self.rssi
            self.board = FakeBoard(self.folder / "board", mac=LAB_MAC, on_boot=self._boot, port=self.board_port)
            await self.board.start()
            self._control = await asyncio.start_server(self._serve_control, "127.0.0.1", 0)
            (self.folder / LAB_FILE).write_text(json.dumps(self.describe(), indent=1) + "\n")
        except BaseException:
            await self.aclose()
            raise
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        with contextlib.suppress(FileNotFoundError):
            (self.folder / LAB_FILE).unlink()
        if self._control is not None:
            self._control.close()
        if self.board is not None:
            await self.board.aclose()
        if self._fw is not None:
            await self._fw.aclose()
        if self.home is not None:
            await self.home.aclose()

    def board_state(self) -> tuple[str, str | None]:
        """"blank", "flashed" or "paired" (with the role), as the board's flash holds it now."""
        assert self.board is not None
        flash = self.board.flash_dir
        try:
            role = fw_config.parse(json.loads((flash / fw_config.PATH).read_text()))["role"]
            return "paired", str(role)
        except (OSError, ValueError, KeyError, fw_config.ConfigError):
            pass
        return ("flashed" if (flash / "main.py").exists() else "blank"), None

    def describe(self) -> dict[str, Any]:
        assert self.board is not None and self._control is not None
        return {
            "board": self.board.url, "mac": LAB_MAC,
            "control": self._control.sockets[0].getsockname()[1],
            "hub_config": str(self.home.hub_config), "hub_id": HUB_ID, "home_id": HOME_ID,
            "platform_db": str(self.home.receiver_db), "platform": self.home.platform_url,
        }

    # -- the board's firmware ------------------------------------------------------------
    def _pins(self) -> dict[str, Any]:
        assert self.board is not None
        doc = json.loads((self.board.flash_dir / fw_config.PATH).read_text())
        cfg = fw_config.parse(doc)
        return {"role": cfg["role"], "pins": cfg["pins"], "open_level": cfg.get("contact_open_level", 0)}

    async def _boot(self, board: FakeBoard, out: Callable[[bytes], None]) -> _LabFirmware:
        from safebox.tools.sim.firmware_process import FirmwareProcess
        if self._fw is None:
            self._fw = FirmwareProcess(self.home.air, board.flash_dir, mac=board.mac,
                                       lib_dir=board.flash_dir / "lib", name="lab-board")
        fw = self._fw
        with contextlib.suppress(Exception):  # no usable config: the firmware will say so itself
            setup = self._pins()
            fw.bridge.set_adc(setup["pins"]["battery_adc"], BATTERY_UV)
            if "contact" in setup["pins"] and setup["pins"]["contact"] not in fw.bridge.pin_levels:
                fw.bridge.set_pin(setup["pins"]["contact"], 1 - setup["open_level"])  # the door starts closed
        start = len(fw.lines)

        async def relay() -> None:
            i = start
            while True:
                line = await fw.wait_for_line(r"", timeout=1e9, start=i)
                i += 1
                out(line.encode() + b"\n")

        task = asyncio.get_running_loop().create_task(relay())
        if fw.pid is None:
            await fw.start()
        else:
            await fw.restart()
        return _LabFirmware(fw, task)

    async def press(self, name: str, hold_s: float = 0.15) -> None:
        fw = self.board.firmware if self.board is not None else None
        if fw is None or not fw.running:
            raise InstallerError("lab_no_firmware")
        setup = self._pins()
        inputs = BUTTONS if setup["role"] == "pendant" else DOOR
        if name not in inputs:
            raise InstallerError("lab_bad_input", name=name, names=", ".join(inputs))
        if name in BUTTONS:
            # The button switches 3V3 onto its pin (firmware/boards.py: pull-downs).
            self._fw.bridge.set_pin(setup["pins"][name], 1)
            await asyncio.sleep(hold_s)
            self._fw.bridge.set_pin(setup["pins"][name], 0)
        else:
            level = setup["open_level"] if name == "open" else 1 - setup["open_level"]
            self._fw.bridge.set_pin(setup["pins"]["contact"], level)

    async def _serve_control(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            request = json.loads(await reader.readline())
            try:
                await self.press(request["input"], float(request.get("hold_s", 0.15)))
                answer: dict[str, Any] = {"ok": True}
            except InstallerError as exc:
                answer = {"error": exc.key, "params": exc.params}
            writer.write(json.dumps(answer).encode() + b"\n")
            await writer.drain()
        finally:
            writer.close()


def run(folder: Path, *, board_port: int = 0, rssi: int = -60, say: Callable[..., None]) -> int:
    """`safebox-install lab`: run until Ctrl-C or SIGTERM."""

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        async with Lab(folder, board_port=board_port, rssi=rssi) as lab:
            info = lab.describe()
            state, role = lab.board_state()
            board = t(f"lab_board_{state}", role=role) if role else t(f"lab_board_{state}")
            say("lab_ready", board=board, port=info["board"], config=info["hub_config"], db=info["platform_db"],
                hub=info["hub_id"])
            await stop.wait()

    asyncio.run(main())
    return 0


def info(folder: Path, *, wait_s: float = 60.0) -> dict[str, Any]:
    """The running lab's lab.json (its board's port, hub config, ...), waiting for it to be ready."""
    deadline = time.monotonic() + wait_s
    while True:
        try:
            return json.loads((Path(folder) / LAB_FILE).read_text())
        except (OSError, ValueError):
            if time.monotonic() >= deadline:
                raise InstallerError("lab_not_running", dir=str(folder)) from None
            time.sleep(0.2)


def press(folder: Path, name: str, *, hold_s: float = 0.15) -> None:
    """`safebox-install lab-press`: one input on the running lab's board."""
    try:
        info = json.loads((Path(folder) / LAB_FILE).read_text())
    except (OSError, ValueError):
        raise InstallerError("lab_not_running", dir=str(folder)) from None
    with socket.create_connection(("127.0.0.1", info["control"]), timeout=10) as conn:
        conn.sendall(json.dumps({"input": name, "hold_s": hold_s}).encode() + b"\n")
        answer = json.loads(conn.makefile().readline() or "{}")
    if "error" in answer:
        raise InstallerError(answer["error"], **answer.get("params", {}))

"""A board running MicroPython, as the installer's tools see it: a small filesystem API.

`SerialBoard` drives a board over USB serial with mpremote's `SerialTransport` (raw REPL,
raw-paste): the code that runs on the board is a few lines each time, and everything
it does (open, write, rename, sha256) happens there, so a hash it reports is a hash of
what landed in its flash. `FolderBoard` is the same API over a local folder, for the
simulator's devices, whose flash is a folder.

Paths are relative to the board's root: MicroPython starts in "/" after every boot.
Failures are `InstallerError`s with a message key (messages.py): no board, a board that
is not MicroPython, a board that went away mid-way, a board that is full.
"""

from __future__ import annotations

import ast
import contextlib
import errno
import hashlib
import io
import os
import re
import socket
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from safebox.tools.installer import board_code
from safebox.tools.installer.messages import InstallerError

# USB-serial bridges found on ESP32 boards, and Espressif's own USB.
_USB_VIDS = {0x303A: "Espressif", 0x10C4: "Silicon Labs CP210x", 0x1A86: "WCH CH34x", 0x0403: "FTDI"}
_CHUNK = 1024  # bytes per write on the board: about 4 KB of code to compile, a small part of its heap
Progress = Callable[[int], None]
_NO_SPACE = re.compile(r"ENOSPC|Errno 28\b|OSError: 28\b")


@dataclass(frozen=True)
class BoardInfo:
    platform: str                  # sys.platform: "esp32"
    version: tuple[int, int, int]  # sys.implementation.version
    machine: str                   # sys.implementation._machine: the board's name
    mpy: int                       # sys.implementation._mpy: the .mpy format it loads

    @property
    def version_text(self) -> str:
        return ".".join(map(str, self.version))

    @property
    def mpy_version(self) -> int:
        return self.mpy & 0xFF


class Board(Protocol):
    """What flashing and pairing need from a board."""

    name: str

    def info(self) -> BoardInfo: ...
    def mac(self) -> str: ...
    def read(self, path: str) -> bytes | None: ...
    def write(self, path: str, data: bytes, progress: Progress | None = None) -> None: ...
    def hashes(self, paths: list[str]) -> dict[str, str | None]: ...
    def files(self, folder: str) -> list[str]: ...
    def rename(self, pairs: list[tuple[str, str]]) -> None: ...
    def remove(self, paths: list[str]) -> None: ...
    def free_bytes(self) -> int | None: ...
    def reset(self, watch_s: float = 0.0) -> list[str]: ...
    def close(self) -> None: ...


def find_port() -> str:
    """The one USB serial port that looks like an ESP32; InstallerError if none or several."""
    from serial.tools import list_ports
    ports = [p for p in list_ports.comports() if p.vid in _USB_VIDS]
    if not ports:
        raise InstallerError("board_not_found")
    if len(ports) > 1:
        raise InstallerError("board_several", ports=", ".join(p.device for p in ports))
    return ports[0].device


def _mac_text(raw: bytes) -> str:
    return ":".join(f"{b:02X}" for b in raw)


class SerialBoard:
    """A board on a serial port, through mpremote's transport. Use as a context manager."""

    def __init__(self, port: str | None = None, *, timeout_s: float = 10.0) -> None:
        from mpremote.transport import TransportError
        from mpremote.transport_serial import SerialTransport

        self.name = port or find_port()
        self._folders: set[str] = set()
        with self._guard(connecting=True):
            try:
                self._t = SerialTransport(self.name, baudrate=115200, timeout=timeout_s)
            except TransportError:
                raise InstallerError("board_cannot_open", port=self.name) from None
            if self.name.startswith("socket://"):
                # A network serial bridge (or the test board): no Nagle delay on each small write.
                self._t.serial._socket.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            # Ctrl-C stops the firmware; a soft reset gives a clean interpreter.
            with contextlib.redirect_stdout(io.StringIO()):  # mpremote prints what it got on failure
                try:
                    self._t.enter_raw_repl(soft_reset=True, timeout_overall=timeout_s)
                except TransportError:
                    self.close()
                    raise InstallerError("board_not_micropython", port=self.name) from None
                except BaseException:
                    self.close()
                    raise

    def __enter__(self) -> SerialBoard:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    @contextlib.contextmanager
    def _guard(self, connecting: bool = False) -> Iterator[None]:
        """Serial trouble -> the installer's words: the board went away, or never answered."""
        from mpremote.transport import TransportError, TransportExecError
        from serial import SerialException
        gone = "board_cannot_open" if connecting else "board_gone"
        try:
            yield
        except InstallerError:
            raise
        except SerialException as exc:
            raise InstallerError(gone, port=self.name, detail=str(exc)) from None
        except TransportExecError as exc:
            if _NO_SPACE.search(exc.error_output):
                raise InstallerError("board_full", port=self.name) from None
            last = (exc.error_output.strip().splitlines() or ["?"])[-1]
            raise InstallerError("board_error", port=self.name, detail=last) from None
        except TransportError as exc:  # no "OK", no prompt: it stopped answering
            raise InstallerError(gone, port=self.name, detail=str(exc)) from None
        except OSError as exc:  # mpremote turns a file error on the board into an OSError
            if exc.errno == errno.ENOSPC:
                raise InstallerError("board_full", port=self.name) from None
            if exc.errno in (errno.EIO, errno.EPIPE, errno.ECONNRESET, errno.EBADF, None):
                raise InstallerError(gone, port=self.name, detail=str(exc)) from None
            raise InstallerError("board_error", port=self.name, detail=str(exc)) from None

    def _run(self, code: str) -> bytes:
        with self._guard():
            return self._t.exec(code)

    def _eval(self, code: str) -> object:
        return ast.literal_eval(self._run(code).decode().strip())

    def info(self) -> BoardInfo:
        platform, version, machine, mpy = self._eval(board_code.INFO)  # type: ignore[misc]
        return BoardInfo(platform, tuple(version), machine, mpy)  # type: ignore[arg-type]

    def mac(self) -> str:
        try:
            raw = self._eval(board_code.MAC)
        except InstallerError as exc:
            if exc.key == "board_error":
                raise InstallerError("board_no_bluetooth", port=self.name, detail=exc.params["detail"]) from None
            raise
        return _mac_text(raw)  # type: ignore[arg-type]

    def read(self, path: str) -> bytes | None:
        return self._eval(board_code.READ.format(path=path))  # type: ignore[return-value]

    def write(self, path: str, data: bytes, progress: Progress | None = None) -> None:
        """Write `path` in chunks of _CHUNK bytes, one command each (the first opens, the last closes)."""
        folder = path.rsplit("/", 1)[0] if "/" in path else ""
        if folder and folder not in self._folders:
            self._run(board_code.MAKEDIRS.format(path=folder))
            self._folders.add(folder)
        chunks = [data[i:i + _CHUNK] for i in range(0, len(data), _CHUNK)] or [b""]
        for n, chunk in enumerate(chunks):
            code = f"f=open({path!r},'wb')\nw=f.write\n" if n == 0 else ""
            code += f"w({chunk!r})"
            if n == len(chunks) - 1:
                code += "\nf.close()"
            self._run(code)
            if progress is not None:
                progress(len(chunk))

    def hashes(self, paths: list[str]) -> dict[str, str | None]:
        found = self._eval(board_code.HASHES.format(paths=list(paths)))
        return dict(zip(paths, found))  # type: ignore[arg-type]

    def files(self, folder: str) -> list[str]:
        """Every file under `folder`, recursively (an empty list when there is no such folder)."""
        return sorted(self._eval(board_code.FILES.format(folder=folder)))  # type: ignore[arg-type]

    def rename(self, pairs: list[tuple[str, str]]) -> None:
        """Rename each (src, dst) in order, replacing dst."""
        if pairs:
            self._run(board_code.RENAME.format(pairs=list(pairs)))

    def remove(self, paths: list[str]) -> None:
        if paths:
            self._run(board_code.REMOVE.format(paths=list(paths)))

    def free_bytes(self) -> int | None:
        try:
            return int(self._run(board_code.FREE).strip())
        except (InstallerError, ValueError):
            return None

    def reset(self, watch_s: float = 0.0) -> list[str]:
        """Hard-reset the board (it boots main.py) and return the lines it prints in `watch_s`."""
        import time
        with self._guard():
            self._t.exec_raw_no_follow("import machine\nmachine.reset()")
        self._t.in_raw_repl = False
        lines: list[str] = []
        if watch_s <= 0:
            return lines
        buf = b""
        deadline = time.monotonic() + watch_s
        try:
            while time.monotonic() < deadline:
                if self._t.serial.in_waiting:
                    buf += self._t.serial.read(self._t.serial.in_waiting)
                    *done, buf = buf.split(b"\n")
                    lines += [raw.decode(errors="replace").strip() for raw in done]
                    if any(_boot_verdict(line) in ("ready", "failed") for line in lines) or buf.endswith(b">>> "):
                        break  # the firmware said how it is, or it ended at the REPL prompt
                else:
                    time.sleep(0.02)
        except Exception:  # native-USB boards drop the port while they reboot: fine
            pass
        return [line for line in lines if line]

    def close(self) -> None:
        with contextlib.suppress(Exception):
            if self._t.in_raw_repl:
                self._t.exit_raw_repl()
        raw = getattr(self._t.serial, "_socket", None)  # socket:// only
        with contextlib.suppress(Exception):
            self._t.close()
        with contextlib.suppress(Exception):  # a port whose board went away: close() above gave up early
            self._t.serial.close()
        if raw is not None:  # pyserial skips closing a socket whose peer is gone
            raw.close()


def _boot_verdict(line: str) -> str | None:
    """What a boot line says (firmware/main.py, health.py): "ready", "failed", "warning", or None."""
    if line.startswith("ready "):
        return "ready"
    if line.startswith(("self-test: FAIL", "crash:")) or "Error: " in line or line.endswith("Error"):
        return "failed"
    if line.startswith("self-test:"):
        return "warning"
    return None


boot_verdict = _boot_verdict


class FolderBoard:
    """A board whose flash is a local folder: the simulator's devices. Same API, no serial."""

    def __init__(self, folder: str | os.PathLike[str], mac: str, *,
                 info: BoardInfo | None = None) -> None:
        self.folder = Path(folder)
        self.name = str(self.folder)
        self._mac = mac.upper()
        self._info = info or BoardInfo("esp32", (1, 24, 1), "simulated ESP32", 6)

    def __enter__(self) -> FolderBoard:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def _path(self, rel: str) -> Path:
        path = (self.folder / rel).resolve()
        if not path.is_relative_to(self.folder.resolve()):
            raise ValueError(f"{rel!r} is outside the board")
        return path

    def info(self) -> BoardInfo:
        return self._info

    def mac(self) -> str:
        return self._mac

    def read(self, path: str) -> bytes | None:
        try:
            return self._path(path).read_bytes()
        except OSError:
            return None

    def write(self, path: str, data: bytes, progress: Progress | None = None) -> None:
        target = self._path(path)
        target.parent.mkdir(parents=True, exist_ok=True)
        # Born private: config.json holds the device key (a real board's flash has no modes).
        fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        if progress is not None:
            progress(len(data))

    def hashes(self, paths: list[str]) -> dict[str, str | None]:
        out: dict[str, str | None] = {}
        for p in paths:
            data = self.read(p)
            out[p] = None if data is None else hashlib.sha256(data).hexdigest()
        return out

    def files(self, folder: str) -> list[str]:
        root = self._path(folder)
        return sorted(p.relative_to(self.folder.resolve()).as_posix() for p in root.rglob("*") if p.is_file()) \
            if root.is_dir() else []

    def rename(self, pairs: list[tuple[str, str]]) -> None:
        for src, dst in pairs:
            os.replace(self._path(src), self._path(dst))

    def remove(self, paths: list[str]) -> None:
        for p in paths:
            with contextlib.suppress(FileNotFoundError):
                self._path(p).unlink()

    def free_bytes(self) -> int | None:
        return None

    def reset(self, watch_s: float = 0.0) -> list[str]:
        return []

    def close(self) -> None:
        pass

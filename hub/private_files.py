"""Files only the hub's user may read: the hub's signing key and the devices' BLE keys.

One place for two rules. Reading refuses a file that group or others can read (a key
that has leaked cannot be un-leaked, so the hub stops and says how to fix the mode
rather than carry on). Writing is atomic and born private: a temporary file made with
mode 0600, fsynced, then renamed over the old one and the folder fsynced, so a power cut
leaves either the old file or the new one, never half of either, and never a moment when
the secret is readable by others.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

PRIVATE_MODE = 0o600


class PrivateFileError(Exception):
    """A private file is unsafe or unreadable; the message says what to do."""


def check_private(path: Path) -> None:
    """Raise PrivateFileError unless `path` is a regular file that only its owner can read."""
    try:
        st = os.stat(path)
    except OSError as exc:
        raise PrivateFileError(f"{path}: {exc.strerror}") from None
    if not stat.S_ISREG(st.st_mode):
        raise PrivateFileError(f"{path}: not a regular file")
    if st.st_mode & 0o077:
        raise PrivateFileError(
            f"{path}: holds secrets but is readable by group or others (mode {stat.S_IMODE(st.st_mode):04o}); "
            f"fix with: chmod 600 {path}  (and consider the secret exposed: re-key if others had access)")


def read_private(path: Path) -> bytes:
    """The contents of a private file; FileNotFoundError passes through for "not made yet"."""
    if not os.path.lexists(path):
        raise FileNotFoundError(path)
    check_private(path)
    try:
        return Path(path).read_bytes()
    except OSError as exc:
        raise PrivateFileError(f"{path}: cannot read: {exc.strerror}") from None


def write_private(path: Path, data: bytes, *, replace: bool = True) -> None:
    """Atomically make `path` hold `data`, mode 0600.

    With `replace=False` an existing file is never overwritten (FileExistsError): used
    for the hub key, where two first runs racing must not end up with two keys.
    """
    path = Path(path)
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, PRIVATE_MODE)
    try:
        try:
            os.fchmod(fd, PRIVATE_MODE)  # whatever the umask said
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view):]
            os.fsync(fd)
        finally:
            os.close(fd)
        if replace:
            os.replace(tmp, path)
        else:
            os.link(tmp, path)  # fails if `path` exists, unlike rename
            os.unlink(tmp)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
    _fsync_dir(path.parent)


def _fsync_dir(folder: Path) -> None:
    # The rename is only durable once the folder's entry is on disk too.
    fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)

"""`os` for one boot (see loader.py): the board's filesystem is its flash folder."""

import os as _os

from safebox.tools.sim.cpython_port.device import Reset as _Reset


def _p(path):
    if not _boot.alive:  # noqa: F821 (set by the loader)
        raise _Reset("this boot has ended")
    return _boot.device.flash_path(path)  # noqa: F821


def rename(old, new):
    _os.replace(_p(old), _p(new))


def remove(path):
    _os.remove(_p(path))


def stat(path):
    st = _os.stat(_p(path))
    return (st.st_mode, 0, 0, 0, 0, 0, st.st_size, int(st.st_atime), int(st.st_mtime), int(st.st_ctime))


def listdir(path="/"):
    return sorted(_os.listdir(_p(path)))


def ilistdir(path="/"):
    for name in listdir(path):
        full = _p(path) / name
        yield (name, 0x4000 if full.is_dir() else 0x8000, 0, full.stat().st_size)


def mkdir(path):
    _os.mkdir(_p(path))


def rmdir(path):
    _os.rmdir(_p(path))


def getcwd():
    return "/"


def sync():
    pass


def urandom(n):
    return _os.urandom(n)


def uname():
    return ("esp32", "safebox-sim", "1.29.0", "cpython-port", "ESP32 module with ESP32")

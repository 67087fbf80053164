"""Set-up of the virtual Pi: Debian packages checked, Debian 12's stock kernel fetched.

The kernel is the one `linux-image-amd64` depends on (Debian 12: 6.1, as Raspberry Pi OS
Bookworm), its `-unsigned` package downloaded with `apt-get download` and unpacked with
`dpkg-deb -x`, never installed; the package ships no `modules.dep`, so `depmod -b` makes it.
The compressed image is also unpacked to an ELF `vmlinux` (Python's lzma: Debian builds it with
XZ), which QEMU boots through PVH: no decompression under TCG (5-6 s saved per boot).
Everything lands in one cache folder (`cache_dir()`), shared by every clone on the machine,
and `ready.json` there says it is done. (The initramfs is built for each run: `initramfs.build`.)

Installing the Debian packages needs root: `./dev vm-setup` does it (apt-get) and then this.
"""

from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import json
import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

# What the VM runs: the emulator, busybox for the initramfs, BlueZ and D-Bus (used from the
# host's root filesystem inside the VM), kmod's depmod for the unpacked kernel.
DEBIAN_PACKAGES = ("qemu-system-x86", "busybox-static", "bluez", "dbus", "kmod")
SETUP_COMMAND = "sudo ./dev vm-setup"
_META_PACKAGE = "linux-image-amd64"


class SetupError(RuntimeError):
    """The virtual Pi is not set up; the message names the command that sets it up."""


@dataclasses.dataclass(frozen=True)
class Kernel:
    """An unpacked kernel package."""

    folder: Path
    release: str  # e.g. 6.1.0-57-amd64
    version: str  # the Debian package version, e.g. 6.1.192-3

    @property
    def root(self) -> Path:
        return self.folder / "root"

    @property
    def vmlinuz(self) -> Path:
        return self.root / "boot" / f"vmlinuz-{self.release}"

    @property
    def vmlinux(self) -> Path:
        """The uncompressed ELF kernel (PVH boot), made by `setup`."""
        return self.folder / "vmlinux"

    @property
    def boot_image(self) -> Path:
        return self.vmlinux if self.vmlinux.exists() else self.vmlinuz

    @property
    def modules(self) -> Path:
        return self.root / "lib" / "modules" / self.release


def cache_dir() -> Path:
    """$SAFEBOX_VM_CACHE, else /var/cache/safebox/vm for root, else ~/.cache/safebox/vm."""
    if env := os.environ.get("SAFEBOX_VM_CACHE"):
        return Path(env)
    if os.geteuid() == 0:
        return Path("/var/cache/safebox/vm")
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "safebox" / "vm"


def missing_packages() -> list[str]:
    """The Debian packages of DEBIAN_PACKAGES that are not installed."""
    missing = []
    for name in DEBIAN_PACKAGES:
        out = subprocess.run(["dpkg-query", "-W", "-f=${Status}", name], capture_output=True, text=True)
        if out.returncode != 0 or not out.stdout.endswith(" installed"):
            missing.append(name)
    return missing


def find() -> Kernel | None:
    """The kernel set up in the cache, or None."""
    for ready in sorted(cache_dir().glob("*/ready.json")):
        meta = json.loads(ready.read_text())
        kernel = Kernel(ready.parent, meta["release"], meta["version"])
        if kernel.vmlinuz.exists() and (kernel.modules / "modules.dep").exists():
            return kernel
    return None


def require() -> Kernel:
    """The kernel set up, or SetupError naming the command that sets it up."""
    missing = missing_packages()
    if missing:
        raise SetupError(f"the virtual Pi needs the Debian packages {', '.join(missing)}: run `{SETUP_COMMAND}`")
    kernel = find()
    if kernel is None:
        raise SetupError(f"the virtual Pi's kernel is not set up in {cache_dir()}: run `{SETUP_COMMAND}`")
    return kernel


@contextlib.contextmanager
def _locked(folder: Path) -> Iterator[None]:
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


def _run(*argv: str, cwd: Path | None = None) -> str:
    out = subprocess.run(argv, cwd=cwd, capture_output=True, text=True)
    if out.returncode != 0:
        raise SetupError(f"{' '.join(argv)} failed: {(out.stderr or out.stdout).strip()}")
    return out.stdout


def kernel_package() -> tuple[str, str, str]:
    """(release, package, version) of the kernel Debian's `linux-image-amd64` depends on."""
    depends = _run("apt-cache", "depends", _META_PACKAGE)
    for line in depends.splitlines():
        line = line.strip()
        if line.startswith("Depends: linux-image-"):
            release = line.split("linux-image-", 1)[1]
            package = f"linux-image-{release}-unsigned"
            show = _run("apt-cache", "show", "--no-all-versions", package)
            version = next(v.split(":", 1)[1].strip() for v in show.splitlines() if v.startswith("Version:"))
            return release, package, version
    raise SetupError(f"apt-cache names no kernel for {_META_PACKAGE} (run apt-get update?)")


def unpack_vmlinux(kernel: Kernel) -> Path:
    """vmlinuz (a bzImage whose payload is XZ-compressed) -> the ELF vmlinux inside it."""
    import lzma

    data = kernel.vmlinuz.read_bytes()
    start = data.find(b"\xfd7zXZ\x00")
    if start < 0:
        raise SetupError(f"{kernel.vmlinuz}: no XZ payload found")
    elf = lzma.LZMADecompressor(format=lzma.FORMAT_XZ).decompress(data[start:])
    if not elf.startswith(b"\x7fELF"):
        raise SetupError(f"{kernel.vmlinuz}: the XZ payload is not an ELF kernel")
    tmp = kernel.vmlinux.with_suffix(".tmp")
    tmp.write_bytes(elf)
    tmp.rename(kernel.vmlinux)
    return kernel.vmlinux


def setup(log: object = print) -> Kernel:
    """Fetch, unpack and prepare the kernel (once; later calls return at once)."""
    missing = missing_packages()
    if missing:
        raise SetupError(f"the virtual Pi needs the Debian packages {', '.join(missing)}: run `{SETUP_COMMAND}`")
    say = log if callable(log) else print
    top = cache_dir()
    with _locked(top):
        if (kernel := find()) is not None:
            if not kernel.vmlinux.exists():
                unpack_vmlinux(kernel)
            return kernel
        release, package, version = kernel_package()
        kernel = Kernel(top / f"{release}_{version}", release, version)
        if not kernel.vmlinuz.exists():
            say(f"safebox-vm: downloading {package} {version} (about 70 MB) and unpacking it in {kernel.folder}")
            with tempfile.TemporaryDirectory(dir=top) as tmp:
                _run("apt-get", "download", f"{package}={version}", cwd=Path(tmp))
                deb = next(Path(tmp).glob("*.deb"))
                unpacked = Path(tmp) / "root"
                _run("dpkg-deb", "-x", str(deb), str(unpacked))
                _run("depmod", "-b", str(unpacked), release)
                if kernel.folder.exists():
                    shutil.rmtree(kernel.folder)
                kernel.folder.mkdir(parents=True)
                unpacked.rename(kernel.root)
        unpack_vmlinux(kernel)
        (kernel.folder / "ready.json").write_text(json.dumps({"release": release, "version": version, "package": package}))
        return kernel

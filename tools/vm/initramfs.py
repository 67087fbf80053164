"""The virtual Pi's initramfs: static busybox, a few kernel modules and `/init`.

`/init` loads the modules Debian builds as modules but the VM needs before its root exists
(virtio PCI and network, 9p, overlay) and the Bluetooth ones (bluetooth, hci_vhci and the
crypto that LE Secure Connections' ECDH self-test needs), mounts the host's `/` read-only
over 9p (tag `hostroot`) under a tmpfs overlay, mounts the run's folder (tag `job`, writable)
at /vmjob, copies /vmjob/etc over /etc (the run's units and masks), points
/usr/lib/modules/<release> at the unpacked kernel package, sets a static address on eth0
(QEMU's user network: 10.0.2.15, the host is 10.0.2.2) and hands over to systemd.

It does not use `switch_root`: that deletes the initramfs, and the kernel's module
autoloader (`/proc/sys/kernel/modprobe`) keeps running in the initramfs root. Here it finds
`/sbin/modprobe`, which runs the real root's modprobe through /proc/1/root.

Built for each run (it takes milliseconds): a newc cpio archive written here, so no root
privileges are needed for its /dev/console node.
"""

from __future__ import annotations

import io
import shutil
from pathlib import Path

BUSYBOX = "/bin/busybox"  # Debian's busybox-static
# Loaded in this order's dependency closure; names as modules.dep spells them.
MODULES = (
    "virtio_pci", "virtio_net", "9pnet_virtio", "9p", "overlay",
    "sha3_generic", "jitterentropy_rng", "drbg", "ecdh_generic", "cmac", "ecb", "ccm", "algif_hash", "algif_skcipher",
    "bluetooth", "hci_vhci",
)

INIT = r"""#!/bin/busybox sh
/bin/busybox mkdir -p /proc /sys /dev /lower /upper /newroot
/bin/busybox --install -s /bin
export PATH=/bin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
fail() { echo "safebox-vm init: $*"; sleep 1; poweroff -f; }
echo /sbin/modprobe > /proc/sys/kernel/modprobe
for m in $(cat /modules/order); do insmod /modules/$m.ko || fail "insmod $m"; done
arg() { sed -n "s/.*$1=\([^ ]*\).*/\1/p" /proc/cmdline; }
msize=512000
mount -t 9p -o trans=virtio,version=9p2000.L,ro,cache=loose,msize=$msize hostroot /lower || fail "9p root"
mount -t tmpfs -o mode=0755 upper /upper
mkdir /upper/data /upper/work
mount -t overlay -o lowerdir=/lower,upperdir=/upper/data,workdir=/upper/work overlay /newroot || fail overlay
rm -f /newroot/.dockerenv
mkdir -p /newroot/vmjob
mount -t 9p -o trans=virtio,version=9p2000.L,msize=$msize job /newroot/vmjob || fail "9p job"
mkdir -p /newroot/usr/lib/modules
ln -sfn "$(arg safebox.modules)" /newroot/usr/lib/modules/$(uname -r)
[ -d /newroot/vmjob/etc ] && cp -a /newroot/vmjob/etc/. /newroot/etc/
ip link set lo up
ip link set eth0 up
ip addr add 10.0.2.15/24 dev eth0
ip route add default via 10.0.2.2
cd /newroot && mount --move . / && exec chroot . /lib/systemd/systemd
fail "no systemd"
"""

# The kernel's module autoloader runs this in the initramfs root; the real modprobe runs in
# PID 1's root (nothing to do before that root exists).
MODPROBE = """#!/bin/busybox sh
[ -e /proc/1/root/etc/debian_version ] || exit 1
exec /bin/busybox chroot /proc/1/root /sbin/modprobe "$@"
"""


def _deps(modules_dir: Path) -> dict[str, tuple[str, list[str]]]:
    """module name -> (its path under modules_dir, its dependencies' names)."""
    table: dict[str, tuple[str, list[str]]] = {}
    for line in (modules_dir / "modules.dep").read_text().splitlines():
        path, _, deps = line.partition(":")
        table[_name(path)] = (path, [_name(d) for d in deps.split()])
    return table


def _name(path: str) -> str:
    return Path(path).name.split(".ko")[0]


def load_order(modules_dir: Path, wanted: tuple[str, ...] = MODULES) -> list[tuple[str, str]]:
    """(name, path) of the wanted modules and their dependencies, each after what it needs;
    built-in ones (modules.builtin) are left out."""
    table = _deps(modules_dir)
    builtin = {_name(p) for p in (modules_dir / "modules.builtin").read_text().split()}
    order: list[tuple[str, str]] = []
    seen: set[str] = set()

    def visit(name: str) -> None:
        name_ = name.replace("-", "_")
        key = name if name in table else name_
        if key in seen or name in builtin or name_ in builtin:
            return
        if key not in table:
            raise FileNotFoundError(f"kernel module {name} not in {modules_dir / 'modules.dep'}")
        seen.add(key)
        for dep in table[key][1]:
            visit(dep)
        order.append((key, table[key][0]))

    for name in wanted:
        visit(name)
    return order


class _Cpio:
    """A newc ("070701") archive."""

    def __init__(self) -> None:
        self.out = io.BytesIO()
        self._ino = 1

    def _entry(self, name: str, mode: int, data: bytes = b"", rdev: tuple[int, int] = (0, 0)) -> None:
        fields = (self._ino, mode, 0, 0, 1, 0, len(data), 0, 0, rdev[0], rdev[1], len(name) + 1, 0)
        self._ino += 1
        header = b"070701" + b"".join(b"%08X" % f for f in fields) + name.encode() + b"\0"
        self.out.write(header + b"\0" * (-len(header) % 4))
        self.out.write(data + b"\0" * (-len(data) % 4))

    def dir(self, name: str) -> None:
        self._entry(name, 0o040755)

    def file(self, name: str, data: bytes, mode: int = 0o644) -> None:
        self._entry(name, 0o100000 | mode, data)

    def chardev(self, name: str, major: int, minor: int) -> None:
        self._entry(name, 0o020600, rdev=(major, minor))

    def finish(self) -> bytes:
        self._entry("TRAILER!!!", 0)
        return self.out.getvalue()


def build(modules_dir: Path, out: Path, busybox: str = BUSYBOX) -> Path:
    """Write the initramfs for the kernel whose modules are in `modules_dir` to `out`."""
    if shutil.which(busybox) is None:
        raise FileNotFoundError(f"{busybox} not found (Debian package busybox-static)")
    order = load_order(modules_dir)
    cpio = _Cpio()
    for d in ("bin", "sbin", "dev", "modules"):
        cpio.dir(d)
    cpio.chardev("dev/console", 5, 1)
    cpio.file("bin/busybox", Path(busybox).read_bytes(), 0o755)
    cpio.file("init", INIT.encode(), 0o755)
    cpio.file("sbin/modprobe", MODPROBE.encode(), 0o755)
    for name, path in order:
        cpio.file(f"modules/{name}.ko", (modules_dir / path).read_bytes())
    cpio.file("modules/order", "\n".join(name for name, _ in order).encode() + b"\n")
    out.write_bytes(cpio.finish())
    return out

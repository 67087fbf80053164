"""The systemd configuration a run of the virtual Pi adds to the host's /etc (in the overlay).

The VM boots `safebox-vm.target` (kernel command line `systemd.unit=`), which pulls in what a
Pi's Bluetooth stack is made of: D-Bus (socket-activated), `safebox-vhci.service` (hci0 on the
air: `guest_vhci`, Type=notify, ready when hci0 exists) and Debian's own bluetooth.service (with
a drop-in for its arguments), then the run's job, whose end powers the VM off.

They start side by side, as on a Pi whose UART adapter is attached by its own service:
bluetoothd needs only the bluetooth module (/sys/class/bluetooth) and takes hci0 when it
appears. Under TCG the vhci bridge's Python start (bumble's imports: 5-9 s) is the longest
step of the boot; the job's own start (bleak's imports) runs meanwhile, and a job waits for
the adapter itself (`guest_scan` does).

Masked (linked to /dev/null), because they only cost boot time in a VM on the host's root: the
units the host's admin enabled (/etc/systemd/system/*.wants: postgresql, avahi, timesyncd...,
bluetooth excepted), timers, gettys, and sysinit units that have nothing to do here (binfmt,
firstboot, repart, pcrphase, debug/tracing/config mounts, hugepages, mqueue, pstore, utmp), and
the sysinit work listed below that costs seconds over 9p under TCG and that nothing here needs;
and every generator (`generators()`).
"""

from __future__ import annotations

import shlex
import sys
from pathlib import Path

TARGET = "safebox-vm.target"
JOB = "safebox-job.service"
VHCI = "safebox-vhci.service"
# Where the run's folder is mounted in the VM (initramfs.INIT).
JOB_DIR = "/vmjob"

_ALWAYS_MASKED = (
    "timers.target", "getty.target", "serial-getty@ttyS0.service", "getty@tty1.service",
    "systemd-tmpfiles-clean.timer", "dev-hugepages.mount", "dev-mqueue.mount",
    "proc-sys-fs-binfmt_misc.automount", "sys-fs-fuse-connections.mount", "sys-kernel-config.mount",
    "sys-kernel-debug.mount", "sys-kernel-tracing.mount", "systemd-binfmt.service",
    "systemd-firstboot.service", "systemd-pcrphase-sysinit.service", "systemd-pcrphase.service",
    "systemd-repart.service", "systemd-machine-id-commit.service", "systemd-update-utmp.service",
    "systemd-pstore.service", "systemd-timesyncd.service", "e2scrub_reap.service",
    "systemd-journal-catalog-update.service", "systemd-hwdb-update.service", "ldconfig.service",
    # Boot-time work that on the host's root over 9p costs seconds under TCG and that nothing
    # here needs: users, modules, sysctls and /dev nodes exist already; bluetoothd and the
    # hub's units make their own state and runtime folders (StateDirectory=, RuntimeDirectory=);
    # the journal stays in /run; udev (device units, coldplug): nothing here waits on a device unit.
    "systemd-tmpfiles-setup.service", "systemd-tmpfiles-setup-dev.service", "systemd-sysusers.service",
    "systemd-sysctl.service", "systemd-random-seed.service", "systemd-modules-load.service",
    "systemd-journal-flush.service", "systemd-remount-fs.service", "kmod-static-nodes.service",
    "systemd-rfkill.service", "systemd-rfkill.socket", "systemd-udev-trigger.service", "systemd-udevd.service",
    "systemd-udevd-control.socket", "systemd-udevd-kernel.socket", "systemd-udev-settle.service",
)
_KEPT = {"bluetooth.service", "dbus.service", "dbus.socket"}


def masked(host_etc: Path = Path("/etc/systemd/system")) -> list[str]:
    """Units masked in the VM (see the module doc)."""
    enabled = {p.name for p in host_etc.glob("*.wants/*")}
    return sorted((enabled | set(_ALWAYS_MASKED)) - _KEPT)


def generators() -> list[str]:
    """systemd's generators, all masked in the VM: each is a program started at every boot and
    daemon-reload (fstab, getty, sysv, gpt-auto, cryptsetup, the host's postgresql...), and
    none has anything to generate here. Masked by name in /etc/systemd/system-generators."""
    found = {p.name for d in ("/usr/lib/systemd/system-generators", "/lib/systemd/system-generators")
             for p in Path(d).glob("*")}
    return sorted(found)


def vhci_service(air_spec: str) -> str:
    python = shlex.quote(sys.executable)
    return f"""[Unit]
Description=hci0 on the simulated home's air (bumble vhci <-> {air_spec})

[Service]
Type=notify
NotifyAccess=main
Environment=PYTHONUNBUFFERED=1
ExecStart={python} -m safebox.tools.vm.guest_vhci {air_spec}
StandardOutput=journal+console
"""


def bluetooth_dropin(bluetoothd_args: tuple[str, ...]) -> str:
    return f"""[Service]
ExecStart=
ExecStart=/usr/libexec/bluetooth/bluetoothd {' '.join(bluetoothd_args)}
"""


def job_service() -> str:
    """The run's job: {JOB_DIR}/job.sh, its output in {JOB_DIR}/job.log; the VM powers off when
    it ends (SuccessAction/FailureAction belong in [Unit]: in [Service] they are ignored)."""
    return f"""[Unit]
Description=the virtual Pi's job ({JOB_DIR}/job.sh)
Wants=bluetooth.service
After=bluetooth.service dbus.socket
SuccessAction=poweroff-force
FailureAction=poweroff-force

[Service]
Type=exec
WorkingDirectory={JOB_DIR}
Environment=PYTHONUNBUFFERED=1
ExecStart=/bin/sh {JOB_DIR}/job.sh
StandardOutput=append:{JOB_DIR}/job.log
StandardError=append:{JOB_DIR}/job.log
"""


def target(with_air: bool, with_job: bool) -> str:
    wants = ["dbus.socket", "bluetooth.service"] + ([VHCI] if with_air else []) + ([JOB] if with_job else [])
    return f"""[Unit]
Description=the virtual Pi: D-Bus, bluetoothd, hci0 on the air
Requires=basic.target
After=basic.target
Wants={' '.join(wants)}
AllowIsolate=yes
"""


def write_etc(etc: Path, *, air_spec: str | None, job: bool, bluetoothd_args: tuple[str, ...],
              extra: dict[str, str] | None = None) -> None:
    """Write the run's /etc additions under `etc` (copied over the VM's /etc at boot)."""
    system = etc / "systemd" / "system"
    system.mkdir(parents=True, exist_ok=True)
    gens = etc / "systemd" / "system-generators"
    gens.mkdir(parents=True, exist_ok=True)
    for folder, names in ((system, masked()), (gens, generators())):
        for name in names:
            link = folder / name
            if not link.is_symlink():
                link.symlink_to("/dev/null")
    files = {
        TARGET: target(air_spec is not None, job),
        # none without arguments: Debian's own unit as it is (the hub's installer adds its own)
        **({"bluetooth.service.d/safebox-vm.conf": bluetooth_dropin(bluetoothd_args)} if bluetoothd_args else {}),
        **({VHCI: vhci_service(air_spec)} if air_spec is not None else {}),
        **({JOB: job_service()} if job else {}),
        **(extra or {}),
    }
    for name, text in files.items():
        path = system / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    (etc / "hostname").write_text("safebox-pi\n")

"""One run of the virtual Pi: QEMU (TCG) booting Debian's kernel on the host's own root.

    async with VirtualPi(workdir, air_port=air.hci_port, job="bluetoothctl show") as pi:
        await pi.wait_file("job.log")
        code = await pi.wait_exit(timeout=60)

The run's folder (`workdir`) is the VM's /vmjob, shared writable over 9p: `job.sh` (the job,
run by systemd once bluetoothd is up; its output in `job.log`; the VM powers off when it ends),
`etc/` (the units, `units.write_etc`), `console.log` (the serial console), `started` (the VM's
uptime when the job started). The host and the VM can talk through files there.

Why HCI over a TCP socket through QEMU's user network rather than virtio-serial: the simulated
air already serves HCI over TCP, one fresh controller per connection (`Air.hci_spec`), so the
VM attaches exactly as a hub process does, the adapter's life follows the vhci bridge inside
the VM (stopping it is pulling the dongle; starting it again is a new adapter), and nothing
host-side depends on QEMU's lifetime; the same user network carries the hub's HTTPS to the
receiver (10.0.2.2 is the host's 127.0.0.1). Measured: the bridge adds no measurable latency
next to TCG's own.

KVM on these machines cannot boot a stock kernel: TCG (`-accel tcg -cpu max`).
"""

from __future__ import annotations

import asyncio
import contextlib
import shlex
import time
from pathlib import Path

from safebox.tools.vm import initramfs, kernel, units

HOST_FROM_VM = "10.0.2.2"  # QEMU user network: the host's loopback, as the VM sees it


class VirtualPi:
    """The VM as an async context manager (powered off, or killed, on the way out)."""

    def __init__(
        self,
        workdir: Path,
        *,
        air_port: int | None = None,
        job: str | None = None,
        bluetoothd_args: tuple[str, ...] = ("--experimental",),
        cpus: int = 2,
        memory_mb: int = 1024,
        verbose: bool = False,
        extra_units: dict[str, str] | None = None,
    ) -> None:
        self.workdir = Path(workdir).resolve()
        self.air_spec = f"tcp-client:{HOST_FROM_VM}:{air_port}" if air_port is not None else None
        self.job = job
        self.bluetoothd_args = bluetoothd_args
        self.cpus = cpus
        self.memory_mb = memory_mb
        self.verbose = verbose
        self.extra_units = extra_units
        self.console: list[str] = []
        self.started_at = 0.0  # time.monotonic() when QEMU was started
        self.boot_s: float | None = None  # QEMU start -> the job started (seen from the host)
        self.first_line_s: float | None = None  # QEMU start -> the console's first line
        self._proc: asyncio.subprocess.Process | None = None
        self._reader: asyncio.Task[None] | None = None

    # -- lifecycle -----------------------------------------------------------------------
    async def __aenter__(self) -> VirtualPi:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    def argv(self, kern: kernel.Kernel) -> list[str]:
        cmdline = [
            "console=ttyS0", "panic=-1", "rdinit=/init", "net.ifnames=0", "edd=off", "mitigations=off",
            "random.trust_cpu=on", "tsc=reliable", "no_timer_check",
            "cryptomgr.notests",  # the crypto self-tests take seconds under TCG
            f"safebox.modules={kern.modules}", f"systemd.unit={units.TARGET}",
        ]
        cmdline += ["loglevel=6", "systemd.show_status=1"] if self.verbose else ["quiet", "loglevel=3"]
        return [
            "qemu-system-x86_64", "-nodefaults", "-no-user-config", "-display", "none", "-no-reboot",
            "-machine", "pc", "-accel", "tcg", "-cpu", "max", "-smp", str(self.cpus), "-m", str(self.memory_mb),
            "-kernel", str(kern.boot_image), "-initrd", str(self.workdir / "initramfs.cpio"),
            "-append", " ".join(cmdline),
            "-serial", "stdio",
            "-fsdev", "local,id=hostroot,path=/,security_model=none,readonly=on,multidevs=remap",
            "-device", "virtio-9p-pci,fsdev=hostroot,mount_tag=hostroot",
            "-fsdev", f"local,id=job,path={self.workdir},security_model=none,multidevs=remap",
            "-device", "virtio-9p-pci,fsdev=job,mount_tag=job",
            "-netdev", "user,id=net0", "-device", "virtio-net-pci,netdev=net0",
        ]

    def prepare(self) -> kernel.Kernel:
        """Write the run's folder: initramfs, /etc additions, job.sh."""
        kern = kernel.require()
        self.workdir.mkdir(parents=True, exist_ok=True)
        initramfs.build(kern.modules, self.workdir / "initramfs.cpio")
        units.write_etc(self.workdir / "etc", air_spec=self.air_spec, job=self.job is not None,
                        bluetoothd_args=self.bluetoothd_args, extra=self.extra_units)
        for name in ("started", "job.log", "console.log", "job.status"):
            (self.workdir / name).unlink(missing_ok=True)
        if self.job is not None:
            d = units.JOB_DIR
            (self.workdir / "job.sh").write_text(
                f"cut -d' ' -f1 /proc/uptime > {d}/started\n(\n{self.job}\n)\nrc=$?\necho $rc > {d}/job.status\nexit $rc\n")
        return kern

    async def start(self) -> None:
        kern = self.prepare()
        self.started_at = time.monotonic()
        self._proc = await asyncio.create_subprocess_exec(
            *self.argv(kern), stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
        self._reader = asyncio.create_task(self._read_console())

    async def _read_console(self) -> None:
        assert self._proc is not None and self._proc.stdout is not None
        with open(self.workdir / "console.log", "w") as log:
            async for raw in self._proc.stdout:
                line = raw.decode(errors="replace").rstrip("\r\n")
                if self.first_line_s is None:
                    self.first_line_s = time.monotonic() - self.started_at
                self.console.append(line)
                log.write(line + "\n")
                log.flush()
                if self.verbose:
                    print(f"[vm] {line}", flush=True)

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.returncode is None

    async def wait_file(self, name: str, timeout: float, poll_s: float = 0.05) -> Path:
        """Wait until the VM (or anyone) has made `name` in the run's folder."""
        path = self.workdir / name
        async with asyncio.timeout(timeout):
            while not path.exists():
                if not self.running:
                    raise RuntimeError(f"the VM stopped before {name} appeared:\n{self.tail()}")
                await asyncio.sleep(poll_s)
        if name == "started" and self.boot_s is None:
            self.boot_s = time.monotonic() - self.started_at
        return path

    async def wait_started(self, timeout: float = 90) -> float:
        """Wait until the job started; returns the boot time seen from the host (s)."""
        await self.wait_file("started", timeout)
        assert self.boot_s is not None
        return self.boot_s

    async def wait_exit(self, timeout: float) -> int:
        """Wait for the VM to power off (after its job); returns QEMU's exit status."""
        assert self._proc is not None
        try:
            async with asyncio.timeout(timeout):
                code = await self._proc.wait()
        except TimeoutError:
            raise TimeoutError(f"the VM did not power off within {timeout} s:\n{self.tail()}") from None
        if self._reader is not None:
            await self._reader
        return code

    def job_status(self) -> int | None:
        """The job's exit status (None: it did not end)."""
        path = self.workdir / "job.status"
        return int(path.read_text()) if path.exists() else None

    def tail(self, lines: int = 30) -> str:
        job_log = self.workdir / "job.log"
        text = "\n".join(self.console[-lines:])
        if job_log.exists():
            text += "\n--- job.log ---\n" + "\n".join(job_log.read_text(errors="replace").splitlines()[-lines:])
        return text

    async def aclose(self) -> None:
        if self._proc is not None and self._proc.returncode is None:
            self._proc.kill()
            await self._proc.wait()
        if self._reader is not None:
            with contextlib.suppress(Exception):
                await self._reader


def job_python(module: str, *args: str) -> str:
    """A job line running `python -m module args` with this interpreter (the VM sees the host's)."""
    import sys
    return shlex.join([sys.executable, "-m", module, *args])

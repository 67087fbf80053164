"""A home around the virtual Pi: what stays on the host while the hub runs in the VM.

    async with PiHome(folder, roles=("pendant", "front_door")) as home:
        async with home.virtual_pi() as pi:           # the VM installs and runs the hub
            await home.wait_installed(pi)
            await home.devices[0].press("emergency")
            events = await home.stored(1, timeout=60)
            await home.vm(pi, "systemctl restart bluetooth")   # a shell line as root in the VM
            await home.end(pi)

On the host: a throwaway TLS CA naming 10.0.2.2 (the host as QEMU's user network shows it to
the VM), the reference receiver (a real process, HTTPS, SQLite), the hub's identity made by
`safebox-hub identity` and enrolled with the receiver's `add-hub`, the simulated air with real
firmware devices on the `micropython` binary, paired by the installer's own tools. Then
`pi_hub.prepare` writes into the run's folder (the VM's /vmjob) what the VM's install command
needs. `JOB` is the VM's job: install (`installed` says its exit status, written whole and
renamed, as every file the host waits for), then run the host's commands (`vm()`) until the
host says `end()`, then keep the hub's journal in the run's folder.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from safebox.tools.vm import pi_hub

HUB_ID = "hub-vm-0001"
HOME_ID = "home-vm-0001"
BOOT_TIMEOUT_S = 150
INSTALL_TIMEOUT_S = 300  # boot, the install (a venv from wheels under TCG) and the hub's start

JOB_INSTALL = ("sh /vmjob/install-hub.sh > /vmjob/install.log 2>&1; echo $? > /vmjob/tmp; "
               "mv /vmjob/tmp /vmjob/installed\n")
# Then the job runs what the host asks (`PiHome.vm`) until the host writes /vmjob/end: each
# cmd/N.sh in turn, its output in cmd/N.out, its exit status in cmd/N.rc (written last).
JOB_SERVE = ("mkdir -p /vmjob/cmd\n"
             "while [ ! -e /vmjob/end ]; do\n"
             "  for f in /vmjob/cmd/*.sh; do [ -e \"$f\" ] || continue; n=${f%.sh}\n"
             "    sh \"$f\" > \"$n.out\" 2>&1; echo $? > \"$n.tmp\"; mv \"$n.tmp\" \"$n.rc\"; rm -f \"$f\"; done\n"
             "  sleep 0.2\n"
             "done\n")
# What the VM says of the stack the hub runs on (read by `stack()`): run with `vm()`.
REPORT = (
    "hub=$(systemctl show safebox-hub -p MainPID --value)\n"
    "bt=$(systemctl show bluetooth -p MainPID --value)\n"
    "{ echo \"bluez=$(\"$(readlink /proc/$bt/exe)\" --version)\"; echo \"kernel=$(uname -r)\";\n"
    "  echo \"init=$(cat /proc/1/comm)\"; echo \"bluetoothd=$(tr '\\0' ' ' < /proc/$bt/cmdline)\";\n"
    "  echo \"hub_user=$(ps -o user= -p $hub)\";\n"
    "  busctl --system --no-pager --no-legend list | awk -v p=$hub '$2 == p && $1 ~ /^:/ {print \"hub_dbus=\" $1}';\n"
    "  systemctl show safebox-hub -p Type,User,ActiveState,NRestarts,WatchdogUSec | sed 's/^/unit./';\n"
    "} > /vmjob/stack.txt\n"
    "cat /var/lib/safebox/status.json > /vmjob/status.json\n")  # what the running hub says of itself
# The job's last lines: the hub's journal, kept in the run's folder.
JOB_END = "journalctl -u safebox-hub --no-pager > /vmjob/hub-journal.txt\n"
JOB = JOB_INSTALL + JOB_SERVE + JOB_END


def host_cli(module: str, *args: str) -> str:
    out = subprocess.run([sys.executable, "-m", module, *args], capture_output=True, text=True, timeout=120)
    if out.returncode != 0:
        raise RuntimeError(f"{module} {' '.join(args)}: {out.stderr.strip()}")
    return out.stdout


class PiHome:
    """The host's side of a virtual-Pi run (see the module's docstring)."""

    def __init__(self, folder: Path, roles: tuple[str, ...] = ("pendant",), scripted: int = 0) -> None:
        """`scripted`: that many more pendants, paired and on the air, played by Python
        (tools/sim/scripted.py: the cheap stand-in when a test needs many devices)."""
        self.folder = Path(folder)
        self.roles = roles
        self.scripted_count = scripted
        self.scripted: list[Any] = []
        self.db = self.folder / "platform" / "events.db"
        self.run_dir = self.folder / "vm"
        self.platform_url = ""
        self.devices: list[Any] = []  # airside.FirmwareDevice, in the order of `roles`
        self._stack = contextlib.AsyncExitStack()
        self._commands = 0

    async def __aenter__(self) -> PiHome:
        from safebox.tools import tlsca
        from safebox.tools.sim.air import Air
        from safebox.tools.vm import kernel
        from safebox.tools.vm.airside import firmware_device

        kernel.require()  # before anything starts: a missing set-up says what to run
        try:
            # the hub's wheels first: pip is busy for seconds, before any firmware's watchdog runs
            await asyncio.to_thread(pi_hub.build_wheels, self.run_dir / "wheels")
            tls = tlsca.make_ca(self.folder / "tls", hostnames=("localhost", "127.0.0.1", "10.0.2.2"))
            self.db.parent.mkdir(parents=True, exist_ok=True)
            self._tls = tls
            url = await self.platform_up()
            port = int(url.rsplit(":", 1)[1])
            self.platform_url = f"https://10.0.2.2:{port}"
            host_cfg = pi_hub.host_config(self.folder / "hub", HUB_ID, HOME_ID, tls.ca_cert)
            ident = json.loads(host_cli("safebox.hub.cli", "identity", "--config", str(host_cfg), "--json"))
            host_cli("safebox.tools.receiver.cli", "add-hub", "--db", str(self.db), ident["hub_id"], ident["public_key"])
            self.air = await self._stack.enter_async_context(Air())
            for n, role in enumerate(self.roles, start=1):
                device = await firmware_device(self.air, self.folder / "home", role, n, hub_config=host_cfg)
                self._stack.push_async_callback(device.firmware.aclose)
                self.devices.append(device)
            await self._scripted(host_cfg.parent / "state" / "devices.json")
            self.run_dir.mkdir(parents=True, exist_ok=True)
            pi_hub.prepare(self.run_dir, host_cfg.parent, port, tls.ca_cert, HUB_ID, HOME_ID)
        except BaseException:
            await self._stack.aclose()
            raise
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self._stack.aclose()

    async def _scripted(self, paired_file: Path) -> None:
        from safebox.hub.devices import Device, Devices
        from safebox.tools.sim.scripted import ScriptedDevice

        paired = Devices.load(paired_file)
        for n in range(self.scripted_count):
            device = Device.new(f"24:0A:C4:01:00:{n:02X}", "pendant")
            paired.add(device)
            played = ScriptedDevice(self.air, device, resend_s=2.0)  # re-sends as the firmware does
            await played.start()
            self._stack.push_async_callback(played.stop)
            self.scripted.append(played)

    async def platform_up(self) -> str:
        """Start the receiver (on the port it had, if it ran before); returns its URL."""
        from safebox.tools.sim.processes import ChildProcess

        port = self.platform_url.rsplit(":", 1)[1] if self.platform_url else "0"
        tls = self._tls
        self._receiver = ChildProcess("receiver", "safebox.tools.receiver.cli", "serve", "--db", str(self.db),
                                      "--host", "127.0.0.1", "--port", port, "--cert", str(tls.server_cert_chain),
                                      "--key", str(tls.server_key))
        self._stack.push_async_callback(self._receiver.stop)
        return (await self._receiver.start(r"listening on (https://\S+)")).group(1)

    async def platform_down(self) -> None:
        """Stop the receiver: the platform is unreachable until `platform_up()`."""
        await self._receiver.stop()

    @contextlib.asynccontextmanager
    async def virtual_pi(self, job: str = JOB, **options: Any) -> AsyncIterator[Any]:
        """The VM running `job` (JOB: install, run the host's commands until /vmjob/end, keep
        the hub's journal);
        on the way out, a run that is still going is told to end and given time
        to collect what it reports before it is powered off."""
        from safebox.tools.vm.machine import VirtualPi

        async with VirtualPi(self.run_dir, air_port=self.air.hci_port, job=job, **options) as pi:
            try:
                yield pi
            finally:
                if pi.running:
                    (self.run_dir / "end").touch()
                    with contextlib.suppress(Exception):
                        await pi.wait_exit(90)

    async def wait_installed(self, pi: Any) -> float:
        """Wait until the VM's install command ended; it must have succeeded. Returns the seconds
        from QEMU's start."""
        await pi.wait_started(BOOT_TIMEOUT_S)
        await pi.wait_file("installed", INSTALL_TIMEOUT_S)
        status = (self.run_dir / "installed").read_text().strip()
        if status != "0":
            raise RuntimeError(f"the install in the virtual Pi failed ({status}):\n"
                               + (self.run_dir / "install.log").read_text()[-4000:])
        return round(time.monotonic() - pi.started_at, 1)

    async def vm(self, pi: Any, command: str, timeout: float = 120, check: bool = True) -> str:
        """Run the shell line `command` as root in the VM (the job's JOB_SERVE loop); its output.
        `check`: a non-zero exit status raises."""
        self._commands += 1
        folder = self.run_dir / "cmd"
        folder.mkdir(exist_ok=True)
        name = f"{self._commands:03d}"
        (folder / f"{name}.new").write_text(command + "\n")
        (folder / f"{name}.new").rename(folder / f"{name}.sh")
        await pi.wait_file(f"cmd/{name}.rc", timeout, poll_s=0.1)
        status = int((folder / f"{name}.rc").read_text())
        out = (folder / f"{name}.out").read_text(errors="replace")
        if check and status != 0:
            raise RuntimeError(f"in the virtual Pi, {command!r} exited {status}:\n{out[-3000:]}")
        return out

    async def end(self, pi: Any, timeout: float = 90) -> None:
        """Tell the job to end (it reports, then the VM powers off) and wait for that."""
        (self.run_dir / "end").write_text("")
        await pi.wait_exit(timeout)
        if pi.job_status() != 0:
            raise RuntimeError(f"the virtual Pi's job failed ({pi.job_status()}):\n{pi.tail()}")

    async def scripted_burst(self, timeout: float) -> tuple[list[int], list[float]]:
        """Every scripted pendant presses at once; returns their counters and, sorted, the seconds
        from the presses until each took its first ack (those that took none by `timeout`
        missing). Then they go quiet, as the firmware does once its event is acknowledged."""
        started = time.monotonic()
        counters = await asyncio.gather(*(d.send_event("emergency") for d in self.scripted))
        acked: dict[int, float] = {}
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout):
                while len(acked) < len(counters):
                    for n, (d, c) in enumerate(zip(self.scripted, counters)):
                        if n not in acked and any(counter == c for _, counter in d.acks):
                            acked[n] = round(time.monotonic() - started, 1)
                    await asyncio.sleep(0.05)
        for d in self.scripted:
            await d.go_quiet()
        return list(counters), sorted(acked.values())

    async def stored(self, count: int, timeout: float) -> list[dict[str, Any]]:
        """The devices' events the platform stored (not the hub's own, such as its heartbeats),
        once there are `count`, read from its database (its listing is for hubs, signed)."""
        from safebox.tools.receiver.store import Store

        async with asyncio.timeout(timeout):
            while True:
                store = Store(self.db)
                try:
                    events = [j for e in store.events() if (j := e.to_json())["device_id"] is not None]
                finally:
                    store.close()
                if len(events) >= count:
                    return events
                await asyncio.sleep(0.2)

    async def stack(self, pi: Any) -> dict[str, Any]:
        """What the VM reports of the stack now (REPORT): `radio` in the demo's words, the hub's
        service, bluetoothd's command line, the running hub's radio status."""
        await self.vm(pi, REPORT, 60)
        facts: dict[str, str] = {}
        for line in (self.run_dir / "stack.txt").read_text().splitlines():
            key, _, value = line.partition("=")
            facts[key.strip()] = value.strip()
        status = json.loads((self.run_dir / "status.json").read_text() or "{}")
        radio = status.get("radio") or {}
        return {
            "radio": {
                # bleak's default backend on Linux is BlueZ over D-Bus: the hub's process has a
                # name on the system bus (where bluetoothd is) only if it talks to BlueZ.
                "backend": "bluez" if facts.get("hub_dbus") else "unknown",
                "bluez": facts.get("bluez"),
                "kernel": facts.get("kernel"),
                "scanning": radio.get("mode"),
                "init": facts.get("init"),
            },
            "hub_service": {"type": facts.get("unit.Type"), "user": facts.get("hub_user"),
                            "active": facts.get("unit.ActiveState"), "restarts": facts.get("unit.NRestarts"),
                            "watchdog": facts.get("unit.WatchdogUSec")},
            "bluetoothd": facts.get("bluetoothd"),
            "hub_status_radio": radio,
        }

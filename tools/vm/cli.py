"""`safebox-vm`: the virtual Pi.

  safebox-vm setup                      fetch and unpack the kernel (after `sudo ./dev vm-setup`'s packages)
  safebox-vm check                      is it set up? (exit 1 with the command to run if not)
  safebox-vm run [--air] [--verbose] [--workdir DIR] [--no-experimental] -- COMMAND...
                                        boot, run COMMAND (a shell line) once bluetoothd is up, power off;
                                        prints its output, the boot and run times; exits with its status
"""

from __future__ import annotations

import argparse
import asyncio
import shlex
import sys
import tempfile
import time
from pathlib import Path

from safebox.tools.vm import kernel


def _setup(args: argparse.Namespace) -> int:
    try:
        k = kernel.setup(log=lambda m: print(m, file=sys.stderr))
    except kernel.SetupError as exc:
        print(f"safebox-vm: {exc}", file=sys.stderr)
        return 1
    print(f"safebox-vm: kernel {k.release} (Debian {k.version}) ready in {k.folder}")
    return 0


def _check(args: argparse.Namespace) -> int:
    try:
        k = kernel.require()
    except kernel.SetupError as exc:
        print(f"safebox-vm: {exc}", file=sys.stderr)
        return 1
    print(f"safebox-vm: ready: kernel {k.release} (Debian {k.version}) in {k.folder}")
    return 0


async def _run_vm(args: argparse.Namespace, workdir: Path) -> int:
    from safebox.tools.vm.machine import VirtualPi

    started = time.monotonic()
    air = None
    if args.air:
        from safebox.tools.sim.air import Air
        air = Air()
        await air.__aenter__()
    try:
        bluetoothd = ("--experimental",) if args.experimental else ()
        async with VirtualPi(workdir, air_port=air.hci_port if air else None, job=shlex.join(args.command)
                             if len(args.command) > 1 else args.command[0],
                             bluetoothd_args=bluetoothd, verbose=args.verbose, cpus=args.cpus) as pi:
            boot_s = await pi.wait_started(args.timeout)
            await pi.wait_exit(args.timeout)
            status = pi.job_status()
            uptime = (workdir / "started").read_text().strip()
    finally:
        if air is not None:
            await air.aclose()
    log = workdir / "job.log"
    if log.exists():
        sys.stdout.write(log.read_text(errors="replace"))
    print(f"safebox-vm: boot {boot_s:.1f} s (QEMU start to the job; the VM's uptime then {uptime} s), in all "
          f"{time.monotonic() - started:.1f} s; job status {status}", file=sys.stderr)
    return 1 if status is None else status


def _run(args: argparse.Namespace) -> int:
    if not args.command:
        print("safebox-vm run: give the command after --", file=sys.stderr)
        return 2
    try:
        kernel.require()
    except kernel.SetupError as exc:
        print(f"safebox-vm: {exc}", file=sys.stderr)
        return 1
    if args.workdir is not None:
        return asyncio.run(_run_vm(args, args.workdir))
    with tempfile.TemporaryDirectory(prefix="safebox-vm-") as tmp:
        return asyncio.run(_run_vm(args, Path(tmp)))


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="safebox-vm", description="The virtual Pi (tools/vm/README.md).")
    sub = parser.add_subparsers(dest="cmd", required=True)
    sub.add_parser("setup", help="fetch and unpack Debian 12's kernel package into the cache").set_defaults(func=_setup)
    sub.add_parser("check", help="exit 0 if the virtual Pi is set up").set_defaults(func=_check)
    p = sub.add_parser("run", help="boot, run a command once bluetoothd is up, power off")
    p.add_argument("--air", action="store_true", help="hci0 on a simulated air served by this process")
    p.add_argument("--no-experimental", dest="experimental", action="store_false",
                   help="bluetoothd without --experimental (no passive scanning)")
    p.add_argument("--verbose", action="store_true", help="show the serial console (kernel and systemd)")
    p.add_argument("--workdir", type=Path, help="the run's folder (the VM's /vmjob); default: a temporary one")
    p.add_argument("--cpus", type=int, default=2)
    p.add_argument("--timeout", type=float, default=300, help="seconds for the boot, and again for the job")
    p.add_argument("command", nargs=argparse.REMAINDER, help="-- then the command (one shell line, or words)")
    p.set_defaults(func=_run)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if getattr(args, "command", None) and args.command[0] == "--":
        args.command = args.command[1:]
    return int(args.func(args))


if __name__ == "__main__":
    sys.exit(main())

"""The hub follows bluetoothd on D-Bus (hub/radio_bluez.py): on the virtual Pi, after
`systemctl restart bluetooth` the hub heard nothing until it was restarted itself, because
its supervisor only looked at the adapter (issue 10). Here a real dbus-daemon and a real
process that owns org.bluez, as bluetoothd does, killed for real; the virtual Pi's test
(tests/test_vm_hub.py) restarts the real bluetoothd under the real hub.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from bleak.exc import BleakError

from safebox.hub.radio_bluez import BluezWatch

# a stand-in bluetoothd: owns org.bluez on the bus until it is killed
OWNER = """
import asyncio, sys
from dbus_fast.aio import MessageBus
async def main():
    bus = await MessageBus(bus_address=sys.argv[1]).connect()
    await bus.request_name("org.bluez")
    print(bus.unique_name, flush=True)
    await asyncio.Event().wait()
asyncio.run(main())
"""


@pytest.fixture
def bus(tmp_path: Path):
    daemon = subprocess.Popen(["dbus-daemon", "--session", "--nofork", "--print-address=1",
                               f"--address=unix:path={tmp_path / 'bus'}"], stdout=subprocess.PIPE, text=True)
    try:
        yield daemon.stdout.readline().strip()
    finally:
        daemon.kill()
        daemon.wait()


async def _owner(address: str) -> tuple[asyncio.subprocess.Process, str]:
    proc = await asyncio.create_subprocess_exec(sys.executable, "-c", OWNER, address, stdout=subprocess.PIPE)
    assert proc.stdout is not None
    name = (await asyncio.wait_for(proc.stdout.readline(), 20)).decode().strip()
    return proc, name


async def _said(changes: list[str], count: int) -> None:
    async with asyncio.timeout(10):
        while len(changes) < count:
            await asyncio.sleep(0.02)


async def test_bluetoothd_going_and_coming_back_is_told_at_once(bus: str) -> None:
    changes: list[str] = []
    watch = BluezWatch(changes.append, bus_address=bus)
    await watch.start()
    try:
        assert watch.owner == ""  # not running yet
        first, name = await _owner(bus)
        await _said(changes, 1)
        assert changes == ["bluetoothd started"] and watch.owner == name
        await watch.probe()  # the one the watch saw: nothing to say
        os.kill(first.pid, signal.SIGKILL)  # a crash: the bus daemon drops its name
        await first.wait()
        await _said(changes, 2)
        assert changes[1] == "bluetoothd stopped" and watch.owner == ""
        second, name = await _owner(bus)
        await _said(changes, 3)
        assert changes[2] == "bluetoothd started" and watch.owner == name
        second.kill()
        await second.wait()
    finally:
        await watch.close()


async def test_a_restart_the_watch_missed_is_found_by_the_probe(bus: str) -> None:
    """The signal lost (the hub's bus connection was down meanwhile): the supervisor's check
    compares bluetoothd's name now with the one the scanner was started on."""
    watch = BluezWatch(lambda what: None, bus_address=bus)
    await watch.start()
    owner, name = await _owner(bus)
    try:
        watch.owner = ":1.999"  # what it saw before the restart it missed
        with pytest.raises(BleakError, match=rf"bluetoothd restarted \(was :1.999, now {name}\)"):
            await watch.probe()
        await watch.probe()  # once said, the new one is the one the scanner restarts on
    finally:
        owner.kill()
        await owner.wait()
        await watch.close()


async def test_no_bus_is_logged_and_the_hub_goes_on(tmp_path: Path, caplog) -> None:
    watch = BluezWatch(lambda what: None, bus_address=f"unix:path={tmp_path / 'none'}")
    await watch.start()
    assert "cannot follow bluetoothd on D-Bus" in caplog.text
    await watch.probe()  # nothing known: nothing raised
    await watch.close()

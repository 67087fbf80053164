"""What the hub's command line tells an owner (issue 10, item 6): its version, a status that
fails when no hub runs (tests/test_hub_service.py), and radio errors in words: what bleak and
D-Bus raise on a Pi whose bluetoothd is stopped, started without --experimental, or that has no
adapter (the texts bleak 3.1's BlueZ backend raises; tests/test_vm_hub.py sees them for real).
"""

from __future__ import annotations

import subprocess
import sys

from bleak.exc import BleakBluetoothNotAvailableError, BleakBluetoothNotAvailableReason, BleakDBusError, BleakError

import safebox
from safebox.hub.radio import _text


def test_version() -> None:
    out = subprocess.run([sys.executable, "-m", "safebox.hub.cli", "--version"], capture_output=True, text=True,
                         timeout=60)
    assert (out.returncode, out.stdout.strip()) == (0, f"safebox-hub {safebox.__version__}")


def test_radio_errors_say_what_is_wrong_in_words() -> None:
    stopped = BleakDBusError("org.freedesktop.DBus.Error.ServiceUnknown",
                             ["The name org.bluez was not provided by any .service files"])
    assert _text(stopped).startswith("bluetoothd is not running (systemctl start bluetooth): ")
    no_monitor = BleakError("passive scanning on Linux requires BlueZ >= 5.56 with --experimental enabled and "
                            "Linux kernel >= 5.10")
    assert _text(no_monitor).startswith("passive scanning needs bluetoothd --experimental: passive scanning on")
    none = BleakBluetoothNotAvailableError("No Bluetooth adapters found.", BleakBluetoothNotAvailableReason.NO_BLUETOOTH)
    assert _text(none) == "no Bluetooth adapter: No Bluetooth adapters found."
    assert _text(BleakError("Not connected")) == "Not connected"  # nothing to add: as it was
    assert _text(TimeoutError()) == "TimeoutError"

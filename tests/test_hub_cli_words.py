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
from safebox.hub.radio_words import in_words
from safebox.tools.sim import hub_toml


def test_version() -> None:
    out = subprocess.run([sys.executable, "-m", "safebox.hub.cli", "--version"], capture_output=True, text=True,
                         timeout=60)
    assert (out.returncode, out.stdout.strip()) == (0, f"safebox-hub {safebox.__version__}")


def test_radio_errors_say_what_is_wrong_in_words() -> None:
    stopped = BleakDBusError("org.freedesktop.DBus.Error.ServiceUnknown",
                             ["The name org.bluez was not provided by any .service files"])
    assert in_words(stopped).startswith("bluetoothd is not running (systemctl start bluetooth): ")
    no_monitor = BleakError("passive scanning on Linux requires BlueZ >= 5.56 with --experimental enabled and "
                            "Linux kernel >= 5.10")
    assert in_words(no_monitor).startswith("passive scanning needs bluetoothd --experimental: passive scanning on")
    none = BleakBluetoothNotAvailableError("No Bluetooth adapters found.", BleakBluetoothNotAvailableReason.NO_BLUETOOTH)
    assert in_words(none) == "no Bluetooth adapter: No Bluetooth adapters found."
    assert in_words(BleakError("Not connected")) == "Not connected"  # nothing to add: as it was
    assert in_words(TimeoutError()) == "TimeoutError"


def test_a_command_run_as_root_leaves_the_hubs_files_to_the_hubs_user(tmp_path) -> None:
    # sudo safebox-hub identity on a Pi: the key it makes must be readable by the service's user
    import os

    import pytest
    if os.geteuid() != 0:
        pytest.skip("needs root (sudo), as on the Pi")
    state = tmp_path / "state"
    state.mkdir(mode=0o700)
    os.chown(state, 65534, 65534)  # the service user's folder (here: nobody)
    cfg = hub_toml.write(tmp_path / "hub.toml", hub_id="hub-root-0001", home_id="home-0001", state_dir=state,
                         platform_url="https://127.0.0.1:1")
    out = subprocess.run([sys.executable, "-m", "safebox.hub.cli", "identity", "--config", str(cfg)],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    key = state / "hub_key.pem"
    assert (key.stat().st_uid, key.stat().st_gid, key.stat().st_mode & 0o777) == (65534, 65534, 0o600)

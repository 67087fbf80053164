"""The hub on the virtual Pi, installed as a Raspberry Pi owner installs it: by the repository's
own `packaging/hub/install.sh` (the service user `safebox` in group bluetooth, /etc/safebox,
/var/lib/safebox owned by that user, /opt/safebox/.venv with only the hub, the unit from the
installed package, the bluetoothd drop-in for passive scanning; idempotent).

`prepare(run_dir, ...)` writes into the run's folder (the VM's /vmjob) what the owner would have:
`install.sh` (a copy of the repository's: a checkout under /tmp is hidden in the VM by its
tmpfs), `wheels/` (the hub built from this checkout, `pip wheel packaging/hub`, with its
dependencies: the VM installs offline, `--wheels`, the way the README tells an owner whose Pi
cannot or must not reach PyPI), `hub/hub.toml`, `hub/platform-ca.pem` and `hub/state/` (the
hub's key and its paired devices, made on the host by the project's own tools: `safebox-hub
identity`, the installer's `pair`), and `install-hub.sh`, the one command the VM runs.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import safebox
from safebox.tools.sim import hub_toml as sim_hub_toml

VM_STATE_DIR = "/var/lib/safebox"
VM_CONFIG = "/etc/safebox/hub.toml"
VM_VENV = "/opt/safebox/.venv"
CHECKOUT = Path(safebox.__file__).resolve().parent.parent.parent  # src/safebox -> the checkout
INSTALLER = CHECKOUT / "packaging" / "hub" / "install.sh"

INSTALL = """#!/bin/sh
# The owner's one command, as the virtual Pi runs it: offline, from the wheels of this checkout.
exec sh /vmjob/install.sh --wheels /vmjob/wheels --from "$(ls /vmjob/wheels/safebox_hub-*.whl)" \\
    --config /vmjob/hub/hub.toml --ca /vmjob/hub/platform-ca.pem --state /vmjob/hub/state "$@"
"""


def hub_toml(platform_url: str, state_dir: str, ca_file: str, hub_id: str, home_id: str) -> str:
    # door_moves: the virtual Pi's tests follow each door event to the platform (hub/privacy.py
    # keeps them at home by default)
    return sim_hub_toml.text(hub_id=hub_id, home_id=home_id, state_dir=state_dir, platform_url=platform_url,
                             ca_file=ca_file, timeout_s=10, ble={"connect_attempts": 3}, door_moves=True)


def host_config(folder: Path, hub_id: str, home_id: str, ca_cert: Path) -> Path:
    """A config for the host-side tools (identity, pair) whose state folder is `folder/state`."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "host.toml"
    path.write_text(hub_toml("https://10.0.2.2", "state", str(ca_cert), hub_id, home_id))
    return path


def build_wheels(dest: Path) -> Path:
    """The hub's wheel built from this checkout (packaging/hub) and its dependencies' wheels
    (pip's cache, else PyPI), in `dest`."""
    dest.mkdir(parents=True, exist_ok=True)
    out = subprocess.run([sys.executable, "-m", "pip", "wheel", "--quiet", "--disable-pip-version-check",
                          "--wheel-dir", str(dest), str(CHECKOUT / "packaging" / "hub")],
                         capture_output=True, text=True, timeout=600)
    if out.returncode != 0:
        raise RuntimeError(f"pip wheel packaging/hub failed:\n{out.stderr[-3000:]}")
    return dest


def prepare(run_dir: Path, host_folder: Path, platform_port: int, ca_cert: Path,
            hub_id: str, home_id: str) -> Path:
    """Write the installer, the wheels, hub/ and install-hub.sh into the run's folder from
    `host_folder` (host_config's, after identity and pairing); returns install-hub.sh's path."""
    dest = run_dir / "hub"
    if dest.exists():
        shutil.rmtree(dest)
    (dest / "state").mkdir(parents=True)
    for name in ("hub_key.pem", "devices.json"):
        shutil.copy(host_folder / "state" / name, dest / "state" / name)
    shutil.copy(ca_cert, dest / "platform-ca.pem")
    (dest / "hub.toml").write_text(hub_toml(f"https://10.0.2.2:{platform_port}", VM_STATE_DIR,
                                            "/etc/safebox/platform-ca.pem", hub_id, home_id))
    shutil.copy(INSTALLER, run_dir / "install.sh")
    if not (run_dir / "wheels").exists():
        build_wheels(run_dir / "wheels")
    script = run_dir / "install-hub.sh"
    script.write_text(INSTALL)
    script.chmod(0o755)
    return script

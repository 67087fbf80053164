"""The hub on the virtual Pi, as systemd runs it on a Raspberry Pi: `hub/systemd/safebox-hub.service`
unchanged (Type=notify, WatchdogSec, its own user `safebox` in group bluetooth, the hardening),
bleak's default BlueZ backend (what the hub always uses), the platform reached over QEMU's
user network (https://10.0.2.2:<port>, a CA that names 10.0.2.2).

`prepare(run_dir, ...)` writes into the run's folder (the VM's /vmjob) what an installer brings to
a Pi: `hub/hub.toml`, `hub/platform-ca.pem`, `hub/state/` (the hub's key and its paired devices,
made on the host by the project's own tools: `safebox-hub identity`, the installer's `pair`), and
`install-hub.sh`, the one command that installs it in the VM (idempotent):

* the service user `safebox` (system user, group bluetooth);
* /etc/safebox/hub.toml and the CA; /var/lib/safebox owned by safebox, mode 0700, keys 0600
  (only if not there yet: the hub's own key and registry are never overwritten);
* /opt/safebox/.venv: a virtual environment on Debian's own python3 (3.11, as Bookworm's). In
  the VM it takes the project's code and packages from this checkout's venv (a path line), so
  the VM needs no package index; a Pi's install puts the same packages in it from a wheel;
* the unit file as the repository has it, with one drop-in: ExecStart= that venv's python
  (the unit's own ExecStart names /opt/safebox/.venv/bin/safebox-hub, a console script a
  wheel install makes);
* `systemctl daemon-reload` if a unit file changed, `enable`, and `start` (returns once the
  hub said READY=1), or `restart` if it runs and a file of it changed; a second run with
  nothing changed does nothing.
"""

from __future__ import annotations

import shutil
import sysconfig
from pathlib import Path

import safebox
import safebox.hub

UNIT = Path(safebox.hub.__file__).parent / "systemd" / "safebox-hub.service"  # as the hub package ships it
VM_STATE_DIR = "/var/lib/safebox"
VM_CONFIG = "/etc/safebox/hub.toml"
VM_VENV = "/opt/safebox/.venv"
# Where the hub's service sees this checkout: the unit's ProtectHome= and PrivateTmp= hide a
# checkout under /home, /root or /tmp, so the checkout (whole: src/safebox/ links to its top-level
# folders) and its venv's site-packages are bound read-only to these paths.
VM_CHECKOUT = ("/opt/safebox/checkout", "/opt/safebox/site")

INSTALL = r"""#!/bin/sh
# Install the safebox hub as a systemd service (run as root; safe to run again: what is
# already in place is left alone, and the hub is restarted only if a file of it changed).
set -eu
SRC=$(dirname "$0")/hub
changed=0
put() {{  # put MODE SOURCE DEST [OWNER]: install SOURCE as DEST unless it is the same already
    if ! cmp -s "$2" "$3"; then install -m "$1" ${{4:+-o $4 -g $4}} "$2" "$3"; changed=1; fi
}}
getent group bluetooth >/dev/null || groupadd --system bluetooth
id -u safebox >/dev/null 2>&1 || useradd --system --home-dir {state} --shell /usr/sbin/nologin \
    --user-group --groups bluetooth safebox
install -d -m 0755 /etc/safebox /etc/systemd/system/safebox-hub.service.d
put 0644 "$SRC/hub.toml" {config}
put 0644 "$SRC/platform-ca.pem" /etc/safebox/platform-ca.pem
install -d -m 0700 -o safebox -g safebox {state}
for f in "$SRC"/state/*; do [ -e "{state}/${{f##*/}}" ] || put 0600 "$f" "{state}/${{f##*/}}" safebox; done
[ -x {venv}/bin/python ] || python3 -m venv --without-pip {venv}
SITE=$({venv}/bin/python -c 'import sysconfig; print(sysconfig.get_path("purelib"))')
install -d -m 0755 {targets}
printf '%s\n' {pth} > "$SRC/checkout.pth"
put 0644 "$SRC/checkout.pth" "$SITE/safebox-checkout.pth"
printf '[Service]\nExecStart=\nExecStart=%s\nBindReadOnlyPaths=%s\n' \
    '{venv}/bin/python -m safebox.hub.cli run --config {config}' '{binds}' > "$SRC/venv.conf"
put 0644 "$SRC/venv.conf" /etc/systemd/system/safebox-hub.service.d/venv.conf
put 0644 "$SRC/safebox-hub.service" /etc/systemd/system/safebox-hub.service
[ $changed = 0 ] || systemctl daemon-reload
systemctl is-enabled -q safebox-hub || systemctl enable safebox-hub
if ! systemctl is-active -q safebox-hub; then
    systemctl start safebox-hub || {{ journalctl -u safebox-hub -n 40 --no-pager; exit 1; }}
elif [ $changed = 1 ]; then systemctl restart safebox-hub
fi
"""


def checkout_paths() -> list[str]:
    """The folders the VM's venv takes the project from: this checkout (its src/ goes on the
    path) and its venv's site-packages (pure Python and abi3/cp311 wheels: Debian's 3.11 runs them)."""
    checkout = Path(safebox.__file__).resolve().parent.parent.parent  # src/safebox -> the checkout
    return [str(checkout), sysconfig.get_path("purelib")]


def hub_toml(platform_url: str, state_dir: str, ca_file: str, hub_id: str, home_id: str) -> str:
    return (f'hub_id = "{hub_id}"\nhome_id = "{home_id}"\nstate_dir = "{state_dir}"\n\n'
            f'[platform]\nurl = "{platform_url}"\nca_file = "{ca_file}"\ntimeout_s = 10\n\n'
            '[ble]\nconnect_attempts = 3\n')


def host_config(folder: Path, hub_id: str, home_id: str, ca_cert: Path) -> Path:
    """A config for the host-side tools (identity, pair) whose state folder is `folder/state`."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "host.toml"
    path.write_text(hub_toml("https://10.0.2.2", "state", str(ca_cert), hub_id, home_id))
    return path


def prepare(run_dir: Path, host_folder: Path, platform_port: int, ca_cert: Path,
            hub_id: str, home_id: str) -> Path:
    """Write hub/ and install-hub.sh into the run's folder from `host_folder` (host_config's,
    after identity and pairing); returns the install script's path."""
    dest = run_dir / "hub"
    if dest.exists():
        shutil.rmtree(dest)
    (dest / "state").mkdir(parents=True)
    for name in ("hub_key.pem", "devices.json"):
        shutil.copy(host_folder / "state" / name, dest / "state" / name)
    shutil.copy(ca_cert, dest / "platform-ca.pem")
    shutil.copy(UNIT, dest / "safebox-hub.service")
    (dest / "hub.toml").write_text(hub_toml(f"https://10.0.2.2:{platform_port}", VM_STATE_DIR,
                                            "/etc/safebox/platform-ca.pem", hub_id, home_id))
    script = run_dir / "install-hub.sh"
    binds = " ".join(f"{host}:{guest}" for host, guest in zip(checkout_paths(), VM_CHECKOUT, strict=True))
    script.write_text(INSTALL.format(state=VM_STATE_DIR, config=VM_CONFIG, venv=VM_VENV,
                                     targets=" ".join(VM_CHECKOUT), binds=binds,
                                     pth=f"{VM_CHECKOUT[0]}/src {VM_CHECKOUT[1]}"))
    script.chmod(0o755)
    return script

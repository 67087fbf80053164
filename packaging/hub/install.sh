#!/bin/sh
# Install the safebox hub on a Raspberry Pi (Raspberry Pi OS Bookworm / Trixie, or any Debian
# with systemd and BlueZ), as root, from a clone of the repository:
#
#   sudo packaging/hub/install.sh                  the hub from this clone; its dependencies from PyPI
#   sudo packaging/hub/install.sh --wheels DIR     offline: only the wheel files in DIR
#   sudo packaging/hub/install.sh --from FILE.whl  the hub from a wheel file
#   sudo packaging/hub/install.sh --uninstall [--purge]
#
# Other options: --config FILE (installed as /etc/safebox/hub.toml; without it the example is
# put there once, to edit), --ca FILE (/etc/safebox/platform-ca.pem), --state DIR (files made
# elsewhere, such as the hub's key and its paired devices, copied into the state folder unless
# there already), --active (no bluetoothd drop-in: BlueZ scans actively), --python PY (the
# interpreter of the venv, default python3), --no-start (install and enable, do not start),
# --prefix DIR (the venv goes to DIR/.venv, default /opt/safebox: the unit names that path),
# --venv-only (only the venv, no user, files or service: to try an interpreter; no root needed).
#
# What it does, each step only if it is not so already (run it again: nothing changes, and a
# running hub is restarted only when a file of it changed):
# * the service user `safebox` (a system user, no login) in group bluetooth;
# * /etc/safebox/hub.toml (0644); /var/lib/safebox (0700) and everything in it owned by safebox,
#   so files left there by commands run as root (identity, pairing) are the service's to read;
# * /opt/safebox/.venv: a virtual environment with only the hub (packaging/hub: the hub and the
#   protocol, and their dependencies), never the package named "safebox" on PyPI, an unrelated
#   project: the hub is installed from a path or a file, never by name;
# * the systemd unit from the installed package (/etc/systemd/system/safebox-hub.service);
# * a drop-in starting bluetoothd with --experimental (BlueZ's advertisement monitor: the hub
#   scans passively; without it the hub scans actively and logs why), unless --active;
# * the hub's identity made as the service user (its key stays in /var/lib/safebox), printed for
#   enrolment at the platform; `systemctl enable`, and start or restart.
# --uninstall stops and removes the service, the drop-ins and /opt/safebox; it keeps
# /etc/safebox and /var/lib/safebox (the hub's key is enrolled at the platform); --purge removes
# them and the user too.
set -eu

HERE=$(cd "$(dirname "$0")" && pwd)
PREFIX=/opt/safebox
ETC=/etc/safebox
STATE=/var/lib/safebox
USER_NAME=safebox
UNIT=/etc/systemd/system/safebox-hub.service
BT_DROPIN=/etc/systemd/system/bluetooth.service.d/safebox-passive.conf

T0=$(date +%s)
say() { echo "install: [$(( $(date +%s) - T0 )) s] $*"; }
die() { echo "install: $*" >&2; exit 1; }

from=$HERE wheels= config= ca= state_from= passive=1 python=python3 start=1 uninstall=0 purge=0 venv_only=0
while [ $# -gt 0 ]; do
    case $1 in
        --from) from=$2; shift ;;
        --wheels) wheels=$2; shift ;;
        --config) config=$2; shift ;;
        --ca) ca=$2; shift ;;
        --state) state_from=$2; shift ;;
        --active) passive=0 ;;
        --python) python=$2; shift ;;
        --no-start) start=0 ;;
        --uninstall) uninstall=1 ;;
        --purge) purge=1 ;;
        --prefix) PREFIX=$2; shift ;;
        --venv-only) venv_only=1 ;;
        -h|--help) sed -n '2,33s/^# \{0,1\}//p' "$0"; exit 0 ;;
        *) die "unknown option $1 (see --help)" ;;
    esac
    shift
done
VENV=$PREFIX/.venv
if [ $venv_only = 0 ]; then
    [ "$(id -u)" = 0 ] || die "run it as root: sudo $0"
    command -v systemctl >/dev/null || die "systemd is needed (systemctl not found)"
fi

changed=0  # a file of the hub changed: restart it
bt_changed=0
put() {  # put MODE SOURCE DEST [OWNER]: install SOURCE as DEST unless it is the same already
    if ! cmp -s "$2" "$3"; then
        install -m "$1" ${4:+-o "$4" -g "$4"} "$2" "$3"
        changed=1
        say "wrote $3"
    fi
}

if [ $uninstall = 1 ]; then
    if systemctl cat safebox-hub >/dev/null 2>&1; then
        systemctl disable --now safebox-hub 2>/dev/null || true
    fi
    rm -rf "$UNIT" "$UNIT.d" "$VENV" "$PREFIX/.installed"
    rmdir "$PREFIX" 2>/dev/null || true
    if [ -e "$BT_DROPIN" ]; then rm -f "$BT_DROPIN"; bt_changed=1; fi
    systemctl daemon-reload
    [ $bt_changed = 0 ] || systemctl try-restart bluetooth || true
    if [ $purge = 1 ]; then
        rm -rf "$ETC" "$STATE"
        if id -u $USER_NAME >/dev/null 2>&1; then userdel $USER_NAME; fi
        say "removed the hub, its configuration, its state (keys) and the user $USER_NAME"
    else
        say "removed the hub; kept $ETC and $STATE (the hub's key: --purge removes them)"
    fi
    exit 0
fi

# -- the virtual environment with only the hub -----------------------------------------------
# What is installed is remembered by a digest of its source: the same source is not installed again.
if [ -d "$from" ]; then
    [ -f "$from/pyproject.toml" ] || die "$from has no pyproject.toml (give the clone's packaging/hub)"
    digest=$(cd "$from" && find -L pyproject.toml src \( -name __pycache__ -o -name '*.egg-info' \) -prune -o -type f -print \
             | LC_ALL=C sort | xargs sha256sum | sha256sum | cut -d' ' -f1)
else
    [ -f "$from" ] || die "no such wheel or folder: $from"
    digest=$(sha256sum "$from" | cut -d' ' -f1)
fi
if [ ! -x $VENV/bin/safebox-hub ] || [ "$(cat $PREFIX/.installed 2>/dev/null)" != "$digest" ]; then
    command -v "$python" >/dev/null || die "$python not found (Debian: apt-get install python3-venv)"
    # The system's pip installs into the venv (pip --python, pip 22.3 and later: Debian 12's is
    # 23.0): the venv then holds only the hub, and making it takes a second, not the minute
    # ensurepip takes on a small board. Without a system pip, the venv gets its own.
    if "$python" -m pip --help 2>/dev/null | grep -q -- '--python '; then
        pip="$python -m pip --python $VENV/bin/python"
        venv_args=--without-pip
    else
        pip="$VENV/bin/python -m pip"
        venv_args=
    fi
    if [ ! -x $VENV/bin/python ]; then
        "$python" -c 'import sys; sys.exit(0 if sys.version_info[:2] >= (3, 11) else 1)' \
            || die "the hub needs Python 3.11 or later ($python is $("$python" -V 2>&1))"
        install -d -m 0755 $PREFIX
        "$python" -m venv $venv_args $VENV || die "could not make a venv (Debian: apt-get install python3-venv)"
        say "made $VENV ($($VENV/bin/python -V))"
    fi
    [ -n "$venv_args" ] || [ -x $VENV/bin/pip ] || $VENV/bin/python -m ensurepip --default-pip >/dev/null
    # A path or a file, never a name: `pip install safebox` would fetch an unrelated project.
    if [ -n "$wheels" ]; then
        set -- --no-index --find-links "$wheels"
    else
        set --
    fi
    if [ -d "$from" ] && [ -n "$wheels" ]; then
        target=safebox-hub  # from the folder of wheels only (--no-index): built from this clone
    else
        target=$from
    fi
    $pip install --quiet --disable-pip-version-check "$@" "$target" \
        || die "pip could not install the hub (from $target${wheels:+, offline from $wheels})"
    echo "$digest" > $PREFIX/.installed
    changed=1
    say "installed $($VENV/bin/safebox-hub --version) in $VENV"
fi
PKG=$($VENV/bin/python -c 'import pathlib, safebox.hub; print(pathlib.Path(safebox.hub.__file__).parent)')

if [ $venv_only = 1 ]; then
    say "the hub is in $VENV (--venv-only: no user, configuration or service)"
    exit 0
fi

# -- the user -------------------------------------------------------------------------------
getent group bluetooth >/dev/null || groupadd --system bluetooth
if ! id -u $USER_NAME >/dev/null 2>&1; then
    useradd --system --home-dir $STATE --no-create-home --shell /usr/sbin/nologin --user-group \
        --groups bluetooth $USER_NAME
    say "made the service user $USER_NAME (group bluetooth)"
elif ! id -nG $USER_NAME | tr ' ' '\n' | grep -qx bluetooth; then
    usermod -a -G bluetooth $USER_NAME
    changed=1
fi

# -- configuration and state ------------------------------------------------------------------
install -d -m 0755 $ETC
if [ -n "$config" ]; then
    put 0644 "$config" $ETC/hub.toml
elif [ ! -e $ETC/hub.toml ]; then
    put 0644 "$PKG/hub.example.toml" $ETC/hub.toml
    say "EDIT $ETC/hub.toml (hub_id, home_id, the platform's url), then run this again"
    start=0
fi
[ -z "$ca" ] || put 0644 "$ca" $ETC/platform-ca.pem
install -d -m 0700 -o $USER_NAME -g $USER_NAME $STATE
if [ -n "$state_from" ]; then
    for f in "$state_from"/*; do
        [ -e "$f" ] || continue
        [ -e "$STATE/${f##*/}" ] || put 0600 "$f" "$STATE/${f##*/}" $USER_NAME
    done
fi
# Files made there by root (identity, pairing run with sudo) become the service's.
chown -R $USER_NAME:$USER_NAME $STATE
chmod -R go-rwx $STATE

# -- systemd ----------------------------------------------------------------------------------
put 0644 "$PKG/systemd/safebox-hub.service" $UNIT
if [ $passive = 1 ]; then
    bluetoothd=$(systemctl show bluetooth -p ExecStart --value 2>/dev/null | sed -n 's/.*path=\([^ ;]*\).*/\1/p')
    for b in "$bluetoothd" /usr/libexec/bluetooth/bluetoothd /usr/lib/bluetooth/bluetoothd; do
        if [ -n "$b" ] && [ -x "$b" ]; then bluetoothd=$b; break; fi
    done
    [ -x "$bluetoothd" ] || die "bluetoothd not found: apt-get install bluez (or use --active)"
    install -d -m 0755 "${BT_DROPIN%/*}"
    tmp=$(mktemp)
    printf '# safebox: BlueZ advertisement monitors, so the hub scans passively\n[Service]\nExecStart=\nExecStart=%s --experimental\n' \
        "$bluetoothd" > "$tmp"
    if ! cmp -s "$tmp" $BT_DROPIN; then install -m 0644 "$tmp" $BT_DROPIN; bt_changed=1; say "wrote $BT_DROPIN"; fi
    rm -f "$tmp"
elif [ -e $BT_DROPIN ]; then
    rm -f $BT_DROPIN
    bt_changed=1
fi
if [ $changed = 1 ] || [ $bt_changed = 1 ]; then systemctl daemon-reload; fi
if [ $bt_changed = 1 ] && systemctl -q is-active bluetooth; then
    systemctl restart bluetooth
    say "restarted bluetoothd ($([ $passive = 1 ] && echo with || echo without) --experimental)"
    changed=1
fi

# -- the hub's identity, made by its own user ---------------------------------------------------
if [ ! -e $STATE/hub_key.pem ] && [ -e $ETC/hub.toml ] && grep -q "^state_dir *= *\"$STATE\"" $ETC/hub.toml; then
    runuser -u $USER_NAME -- $VENV/bin/safebox-hub identity --config $ETC/hub.toml \
        || die "the hub could not make or read its key (see above)"
fi

systemctl is-enabled -q safebox-hub 2>/dev/null || systemctl enable -q safebox-hub
if [ $start = 0 ]; then
    say "installed; not started"
elif ! systemctl -q is-active safebox-hub; then
    systemctl start safebox-hub || { journalctl -u safebox-hub -n 40 --no-pager; die "the hub did not start"; }
    say "the hub is running: systemctl status safebox-hub; journalctl -u safebox-hub -f"
elif [ $changed = 1 ]; then
    systemctl restart safebox-hub
    say "the hub restarted with the new files"
else
    say "nothing changed; the hub keeps running"
fi

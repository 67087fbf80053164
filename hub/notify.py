"""systemd's notify protocol (sd_notify(3)) in plain Python: READY=1, WATCHDOG=1, STATUS=, STOPPING=1.

The hub runs as a `Type=notify` service with `WatchdogSec=`: systemd hands it a unix
datagram socket in $NOTIFY_SOCKET (a path, or an abstract name starting with "@") and,
with the watchdog on, the interval in $WATCHDOG_USEC (for the process in $WATCHDOG_PID,
when set). Without $NOTIFY_SOCKET (a shell, a test) every call is a quiet no-op.

Each message is one datagram of newline-separated KEY=VALUE lines. A failed send is
logged once and otherwise ignored: systemd's watchdog then restarts a hub that truly
cannot reach it, which is the point.
"""

from __future__ import annotations

import logging
import os
import socket
from collections.abc import Mapping

log = logging.getLogger("safebox.hub.notify")


class Notifier:
    def __init__(self, environ: Mapping[str, str] | None = None) -> None:
        env = os.environ if environ is None else environ
        path = env.get("NOTIFY_SOCKET") or None
        if path is not None and path.startswith("@"):
            path = "\0" + path[1:]  # an abstract socket
        self._address = path
        self._watchdog_s = self._watchdog_interval(env)
        self._warned = False

    @staticmethod
    def _watchdog_interval(env: Mapping[str, str]) -> float | None:
        try:
            usec = int(env.get("WATCHDOG_USEC", ""))
        except ValueError:
            return None
        pid = env.get("WATCHDOG_PID")
        if usec <= 0 or (pid and pid != str(os.getpid())):
            return None
        return usec / 1_000_000

    @property
    def enabled(self) -> bool:
        return self._address is not None

    @property
    def watchdog_s(self) -> float | None:
        """The watchdog interval systemd expects, or None when there is no watchdog for us."""
        return self._watchdog_s if self.enabled else None

    def send(self, **fields: str | int) -> bool:
        """One notification, e.g. send(READY=1, STATUS="ready"); True when it was sent."""
        if self._address is None:
            return False
        lines = []
        for key, value in fields.items():
            text = str(value).replace("\n", " ")  # one line per field
            lines.append(f"{key}={text}")
        message = "\n".join(lines).encode("utf-8", errors="replace")
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
                sock.connect(self._address)
                sock.sendall(message)
            return True
        except OSError as exc:
            if not self._warned:
                self._warned = True
                log.warning("cannot notify systemd at $NOTIFY_SOCKET: %s", exc)
            return False

    def ready(self, status: str) -> bool:
        return self.send(READY=1, STATUS=status)

    def status(self, status: str) -> bool:
        return self.send(STATUS=status)

    def watchdog(self) -> bool:
        return self.send(WATCHDOG=1)

    def stopping(self, status: str = "stopping") -> bool:
        return self.send(STOPPING=1, STATUS=status)

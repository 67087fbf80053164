"""Times as the installer reads them: in a local time zone, with its offset from UTC shown.

The records (the report's JSON, the protocol) keep UTC; people see their own clock. The
zone is `--tz` (an IANA name: the district's is Asia/Shanghai), else the system's (the
TZ variable, else /etc/localtime), else UTC. The offset is always written out, so a time
read on another machine, or in a report sent elsewhere, cannot be mistaken.
"""

from __future__ import annotations

import os
from datetime import datetime, timezone, tzinfo
from pathlib import Path
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from safebox.tools.installer.messages import InstallerError

_SYSTEM_ZONE_FILE = Path("/etc/localtime")


def zone(name: str | None = None) -> tzinfo:
    """The zone `name`, or the system's when None; InstallerError for a name that is not a zone."""
    if name:
        try:
            return ZoneInfo(name)
        except (ZoneInfoNotFoundError, ValueError):
            raise InstallerError("cli_bad_tz", tz=name) from None
    env = os.environ.get("TZ", "").lstrip(":")
    if env:
        try:
            return ZoneInfo(env)
        except (ZoneInfoNotFoundError, ValueError):
            pass  # a POSIX rule string ("CST-8"): the C library's view, through astimezone()
        local = datetime.now().astimezone().tzinfo
        return local if local is not None else timezone.utc
    try:
        with _SYSTEM_ZONE_FILE.open("rb") as f:
            return ZoneInfo.from_file(f, key="localtime")
    except (OSError, ValueError):
        return timezone.utc


def parse(stamp: str) -> datetime:
    """An RFC 3339 time of the protocol ("2026-12-02T18:01:11.505Z")."""
    return datetime.fromisoformat(stamp.replace("Z", "+00:00"))


def show(when: str | float | datetime | None, tz: tzinfo) -> str:
    """"2026-12-03 02:01:11 UTC+08:00": to the second, in `tz`, its offset written out."""
    if when is None:
        return "-"
    if isinstance(when, str):
        moment = parse(when)
    elif isinstance(when, datetime):
        moment = when
    else:
        moment = datetime.fromtimestamp(when, timezone.utc)
    local = moment.astimezone(tz)
    offset = local.strftime("%z")  # "+0800"
    return f"{local:%Y-%m-%d %H:%M:%S} UTC{offset[:3]}:{offset[3:]}"

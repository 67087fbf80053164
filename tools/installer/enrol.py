"""Enrol the hub with the platform: one-time code from the platform, public key from the hub.

The hub's Ed25519 key is made on the hub (hub/keys.py) and never leaves it. The installer
types the one-time enrolment code the platform issued for this hub id; the hub sends
`POST <platform>/v1/enrol` with its id, home, public key and the code, signed with the
RFC 9421 profile of the event uplink under the new key (keyid = hub id): the platform
learns the key and that the sender holds its private half, and the code is spent.
TLS is verified exactly as for events (`platform.ca_file` or the system store).
Protocol: protocol/SPEC.md section "Hub enrolment".
"""

from __future__ import annotations

import json
import ssl
import urllib.error
import urllib.request
from dataclasses import dataclass

from safebox.hub import keys
from safebox.hub.config import HubConfig
from safebox.protocol import signing
from safebox.tools.installer.messages import InstallerError

ENROL_PATH = "/v1/enrol"
# The platform's machine-readable refusals, and the message each gets here.
_ERRORS = {
    "code_unknown": "enrol_code_unknown",
    "code_expired": "enrol_code_expired",
    "code_used": "enrol_code_used",
    "wrong_hub": "enrol_wrong_hub",
    "bad_signature": "enrol_refused",
    "bad_request": "enrol_refused",
}


@dataclass(frozen=True)
class EnrolResult:
    hub_id: str
    public_key: str
    already: bool  # the platform had this key for this hub from this code already
    replaced: bool  # the platform had another key for this hub before


def idempotency_key(hub_id: str) -> str:
    return f"{hub_id}-enrol"


def enrol(hub: HubConfig, code: str, *, timeout_s: float = 20.0) -> EnrolResult:
    code = code.strip()
    if not code:
        raise InstallerError("enrol_code_unknown")
    try:
        hub.state_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        key = keys.load_or_create(hub.key_path)
    except (keys.KeyFileError, OSError) as exc:
        raise InstallerError("enrol_hub_key", detail=str(exc)) from None
    public = keys.public_key_text(key)
    body = json.dumps({"hub_id": hub.hub_id, "home_id": hub.home_id, "public_key": public, "code": code},
                      separators=(",", ":")).encode()
    url = hub.platform.url.rstrip("/") + ENROL_PATH
    headers = signing.signed_headers(key, hub.hub_id, url, body, idempotency_key(hub.hub_id))
    request = urllib.request.Request(url, data=body, headers=headers, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=timeout_s, context=hub.platform.ssl_context()) as resp:
            status, answer = resp.status, _json(resp.read())
    except urllib.error.HTTPError as exc:
        status, answer = exc.code, _json(exc.read())
    except urllib.error.URLError as exc:
        if isinstance(exc.reason, ssl.SSLError):
            raise InstallerError("enrol_tls", url=url, detail=str(exc.reason)) from None
        raise InstallerError("enrol_unreachable", url=url, detail=str(exc.reason)) from None
    except (OSError, ssl.SSLError) as exc:
        raise InstallerError("enrol_unreachable", url=url, detail=str(exc)) from None
    if status in (200, 201):
        return EnrolResult(hub.hub_id, public, already=status == 200, replaced=bool(answer.get("replaced")))
    error = str(answer.get("error") or "")
    reason = str(answer.get("reason") or f"HTTP {status}")
    if status in (429, 503) or answer.get("status") == "retry_later":
        raise InstallerError("enrol_busy", url=url, detail=reason)
    raise InstallerError(_ERRORS.get(error, "enrol_refused"), url=url, detail=reason, status=status)


def _json(raw: bytes) -> dict:
    try:
        doc = json.loads(raw)
    except ValueError:
        return {}
    return doc if isinstance(doc, dict) else {}

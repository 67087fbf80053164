"""The platform's record of a walk test: what it stored for this hub since the test began.

`GET /v1/events` is the hubs' listing: signed with the hub's key (the GET profile, SPEC 3.6),
it shows a hub its own events only.
"""

from __future__ import annotations

import json
import ssl
import urllib.error
import urllib.request
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from safebox.protocol import signing


class PlatformListing:
    """The platform's `GET /v1/events`, paged from the end as it was when the walk test began.

    Signed with the hub's key (the GET profile, SPEC 3.6): the platform shows a hub its own
    events only."""

    def __init__(self, url: str, ssl_context: ssl.SSLContext, hub_id: str, key: Ed25519PrivateKey | None = None,
                 timeout_s: float = 5.0) -> None:
        self._url = url.rstrip("/") + "/v1/events"
        self._ssl = ssl_context
        self._hub_id = hub_id
        self._key = key
        self._timeout = timeout_s
        self._since = 0
        self.available: bool | None = None
        self.error: str | None = None

    def _page(self) -> list[dict[str, Any]]:
        url = f"{self._url}?since_id={self._since}"
        headers = {} if self._key is None else signing.signed_get_headers(self._key, self._hub_id, url)
        with urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=self._timeout,
                                    context=self._ssl) as resp:
            doc = json.loads(resp.read())
        self._since = int(doc.get("next_since_id", self._since))
        return list(doc.get("events") or [])

    def start(self) -> None:
        """Skip everything stored before now."""
        try:
            while self._page():
                pass
            self.available = True
        except (urllib.error.URLError, OSError, ValueError) as exc:
            self.available = False
            self.error = str(getattr(exc, "reason", exc))

    def new(self) -> list[dict[str, Any]]:
        """Events of this hub stored since the last call (an empty list when the platform cannot be read)."""
        if not self.available:
            return []
        try:
            found = self._page()
        except (urllib.error.URLError, OSError, ValueError) as exc:
            self.error = str(getattr(exc, "reason", exc))
            return []
        return [e for e in found if e.get("hub_id") == self._hub_id]

"""The body limits the receiver enforces are the ones protocol/SPEC.md states.

For each endpoint with a stated limit (one event, a batch, an enrolment), a genuine request
whose body is exactly the stated size (padded with JSON whitespace) is taken, and the same
one byte longer is refused with 413; over real TLS to the real application and SQLite file.
The sizes are read from the SPEC's text, never from the code's constants, so a limit changed
in the code alone (or in the SPEC alone) fails here.
"""

from __future__ import annotations

import json
import re

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from safebox.protocol import events
from safebox.protocol.signing import public_key_to_text, signed_headers
from safebox.tools.receiver.enrol import EnrolCodes

from .conftest import ROOT
from .test_receiver import NOW, Platform, _event, db_path, hub_key, platform, tls  # noqa: F401 (fixtures)

SPEC = (ROOT / "protocol" / "SPEC.md").read_text()
_UNITS = {"KiB": 1024, "MiB": 1024 * 1024}


def spec_limit(pattern: str) -> int:
    """The size in bytes the SPEC states where `pattern` (ending in `(\\d+) (KiB|MiB)`) matches."""
    found = re.findall(pattern, SPEC, re.MULTILINE)
    assert len(found) == 1, f"the SPEC states this limit once: {pattern!r} {found}"
    number, unit = found[0]
    return int(number) * _UNITS[unit]


EVENT_LIMIT = spec_limit(r"^### Body \(`application/json`, UTF-8, at most (\d+) (KiB|MiB)\)$")
BATCH_LIMIT = spec_limit(r"at most \d+ elements and (\d+) (KiB|MiB);$")
ENROL_LIMIT = spec_limit(r"^### 4\.2 `POST /v1/enrol`\nBody \(`application/json`, at most (\d+) (KiB|MiB)\):$")


def padded(body: bytes, size: int, close: bytes = b"") -> bytes:
    """`body` + JSON whitespace (+ `close`), `size` bytes in all."""
    room = size - len(body) - len(close)
    assert room >= 0
    return body + b" " * room + close


async def send(p: Platform, path: str, body: bytes, key_id: str, idempotency_key: str,
               key: Ed25519PrivateKey | None = None) -> tuple[int, dict]:
    url = p.url + path
    headers = signed_headers(key or p.key, key_id, url, body, idempotency_key, now=NOW)
    async with p.session.post(url, data=body, headers=headers) as response:
        return response.status, await response.json()


def event(counter: int) -> tuple[str, bytes]:
    event_id = f"5448e68f80a5-{counter}"
    return event_id, events.encode(_event(event_id=event_id, counter=counter))


async def test_one_event_of_exactly_the_spec_limit_is_stored_one_byte_more_is_413(platform: Platform) -> None:
    event_id, body = event(1)
    status, answer = await send(platform, "/v1/events", padded(body, EVENT_LIMIT), "hub-7f3a9c", event_id)
    assert (status, answer["status"]) == (201, "accepted"), answer
    event_id, body = event(2)
    status, answer = await send(platform, "/v1/events", padded(body, EVENT_LIMIT + 1), "hub-7f3a9c", event_id)
    assert (status, answer["status"]) == (413, "rejected"), answer
    assert [e.event_id for e in platform.store.events()] == ["5448e68f80a5-1"]


async def test_a_batch_of_exactly_the_spec_limit_is_stored_one_byte_more_is_413(platform: Platform) -> None:
    key = "batch-" + "0" * 32
    _, body = event(3)
    status, answer = await send(platform, "/v1/events:batch", padded(b"[" + body, BATCH_LIMIT, b"]"), "hub-7f3a9c", key)
    assert (status, [r["status"] for r in answer["results"]]) == (200, ["accepted"]), answer
    _, body = event(4)
    status, answer = await send(platform, "/v1/events:batch", padded(b"[" + body, BATCH_LIMIT + 1, b"]"),
                                "hub-7f3a9c", "batch-" + "1" * 32)
    assert (status, answer["status"]) == (413, "rejected"), answer
    assert [e.event_id for e in platform.store.events()] == ["5448e68f80a5-3"]


async def test_an_enrolment_of_exactly_the_spec_limit_is_taken_one_byte_more_is_413(platform: Platform) -> None:
    codes = EnrolCodes(platform.store)
    answers = []
    for n, size in ((2, ENROL_LIMIT), (3, ENROL_LIMIT + 1)):
        hub_id, key = f"hub-limits-000{n}", Ed25519PrivateKey.generate()
        doc = json.dumps({"hub_id": hub_id, "home_id": "home-limits", "code": codes.issue(hub_id, 600, now=NOW).code,
                          "public_key": public_key_to_text(key.public_key())}).encode()
        status, answer = await send(platform, "/v1/enrol", padded(doc, size), hub_id, f"{hub_id}-enrol", key)
        answers.append((status, answer["status"]))
    assert answers == [(201, "enrolled"), (413, "rejected")]

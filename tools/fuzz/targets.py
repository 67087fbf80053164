"""Fuzz targets: each takes arbitrary bytes and raises `Unexpected` (or lets an exception out)
when the code under test does something it must never do. The same targets feed the long
atheris run (`python -m safebox.tools.fuzz`) and its hypothesis fallback; the test suite has
hypothesis property tests of its own (tests/test_fuzz_*.py) with structured strategies.

The rules, from the design's "bad input gets a clear answer, never a crash":

  codec     bthome.unseal / decode_objects / unseal_ack / service_data_in on any bytes raise
            nothing but FrameError / ValueError; a frame that decodes re-encodes to itself
  ccm       our CCM (pure Python on one-block AES) equals cryptography's AESCCM, both ways
  events    events.decode on any bytes: a valid body or EventError
  config    hub config: any TOML text (and any file bytes) -> a HubConfig or ConfigError
  verifier  RFC 9421 verifier on a genuine request with one part mutated: Refusal, or success
            only when nothing signed was changed
  receiver  the receiver app over HTTP (in process): any headers and body -> never a 500,
            always a JSON answer with a status

`KNOWN` lists bugs already reported, by the message they raise: a long run counts them and
carries on instead of stopping at the first, so it can look for new ones.
"""

from __future__ import annotations

import asyncio
import atexit
import json
import logging
import os
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from safebox.protocol import bthome, ccm, events, signing


class Unexpected(AssertionError):
    """The code under test broke one of the target's rules."""


# Known limits, by the message they raise: (target, exception type name, text in the message, what it is).
# Found by these targets and fixed since (kept as regression tests in tests/test_fuzz_*.py):
#   events.decode let RecursionError (deep nesting), ValueError (numbers over 4300 digits) and
#   TypeError (device.role a list) out, so a signed body made the receiver answer 500;
#   config.parse/load let RuntimeError ('~nouser'), OSError (long path), ValueError (NUL) and
#   UnicodeDecodeError (file not UTF-8) out instead of ConfigError;
#   the receiver answered 500 to Content-Encoding gzip/deflate with a plain body and to a
#   Content-Type aiohttp cannot parse (';0*'), before any authentication.
KNOWN: list[tuple[str, str, str, str]] = [
    ("receiver", "Unexpected", "[content-encoding=br]", "receiver: Content-Encoding br is refused by aiohttp's own "
                                                        "parser with a plain-text 400, before the app (a known limit)"),
]


def known_bug(target: str, exc: BaseException) -> str | None:
    """The description of a reported bug that `exc` is an instance of, or None (a new finding)."""
    name, text = type(exc).__name__, str(exc)
    for t, exc_name, needle, description in KNOWN:
        if t == target and name == exc_name and needle in text:
            return description
    return None


def _split(data: bytes, *sizes: int) -> list[bytes]:
    parts, i = [], 0
    for size in sizes:
        parts.append(data[i:i + size].ljust(size, b"\0"))
        i += size
    parts.append(data[i:])
    return parts


# -- the BLE codec ----------------------------------------------------------------------------

def codec(data: bytes) -> None:
    key, mac, rest = _split(data, 16, 6)
    for call in (lambda: bthome.unseal(key, mac, rest), lambda: bthome.unseal_ack(key, mac, rest)):
        try:
            call()
        except ValueError:  # FrameError is a ValueError; ccm raises ValueError for impossible sizes
            pass
    try:
        objects = bthome.decode_objects(rest)
    except bthome.FrameError:
        pass
    else:
        # The decoder takes objects in any order (only an authentic device can send them);
        # in the SPEC's ascending order they must re-encode to the same bytes.
        ids = [obj_id for obj_id, _ in objects]
        if ids == sorted(ids) and bthome.encode_objects(objects) != rest:
            raise Unexpected(f"decode_objects/encode_objects do not round-trip {rest.hex()}")
    found = bthome.service_data_in(rest)
    if found is not None and not isinstance(found, bytes):
        raise Unexpected(f"service_data_in returned {type(found).__name__}")


def ccm_differential(data: bytes) -> None:
    from cryptography.hazmat.primitives.ciphers.aead import AESCCM
    key, nonce, plaintext = _split(data, 16, 13)
    plaintext = plaintext[:512]
    ct, tag = ccm.encrypt(key, nonce, plaintext)
    reference = AESCCM(key, tag_length=ccm.TAG_LEN).encrypt(nonce, plaintext, None)
    if ct + tag != reference:
        raise Unexpected(f"CCM differs from AESCCM for key {key.hex()} nonce {nonce.hex()} pt {plaintext.hex()}")
    if ccm.decrypt(key, nonce, ct, tag) != plaintext:
        raise Unexpected("CCM decrypt does not invert encrypt")
    if ct:
        try:
            ccm.decrypt(key, nonce, bytes([ct[0] ^ 1]) + ct[1:], tag)
        except ccm.AuthError:
            pass
        else:
            raise Unexpected("CCM accepted an altered ciphertext")


# -- event bodies ------------------------------------------------------------------------------

def event_body(data: bytes) -> None:
    try:
        body = events.decode(data)
    except events.EventError:
        return
    # What decodes must validate again after re-encoding, unchanged.
    again = events.decode(events.encode(body))
    if again != body:
        raise Unexpected("a valid body changes when re-encoded")


# -- the hub config --------------------------------------------------------------------------------

_CONFIG_DIR = Path(tempfile.gettempdir()) / f"safebox-fuzz-config-{os.getpid()}"


def config_text(data: bytes) -> None:
    import tomllib

    from safebox.hub import config
    _CONFIG_DIR.mkdir(exist_ok=True)
    try:
        doc = tomllib.loads(data.decode("utf-8", "replace"))
    except tomllib.TOMLDecodeError:
        doc = None
    if doc is not None:
        try:
            config.parse(doc, base_dir=_CONFIG_DIR)
        except config.ConfigError:
            pass
    path = _CONFIG_DIR / "hub.toml"
    path.write_bytes(data)
    try:
        config.load(path)
    except config.ConfigError:
        pass


# -- the RFC 9421 verifier -------------------------------------------------------------------------

_HUB = "hub-fuzz-0001"
_URL = "https://platform.example:8443/v1/events"
_NOW = 1_790_000_000.0


def _fuzz_key() -> Any:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
    return Ed25519PrivateKey.from_private_bytes(bytes(range(32)))


def genuine_request(url: str = _URL) -> tuple[str, str, dict[str, str], bytes]:
    """(method, url, headers, body) of a request to `url` that verifies at _NOW."""
    body = events.encode(events.make(event_id="240ac4000001-7", type=events.EMERGENCY, hub_id=_HUB,
                                     home_id="home-fuzz-0001", occurred_at=_NOW,
                                     device={"id": "240ac4000001", "role": "pendant", "room": ""}, counter=7))
    return "POST", url, sign(body, "240ac4000001-7", url), body


def sign(body: bytes, event_id: str, url: str = _URL) -> dict[str, str]:
    """Headers signing `body` for `url` with the enrolled fuzz hub's key, at _NOW (fresh nonce)."""
    return signing.signed_headers(_fuzz_key(), _HUB, url, body, event_id, now=_NOW)


def make_verifier() -> signing.Verifier:
    public = _fuzz_key().public_key()
    return signing.Verifier(lambda k: public if k == _HUB else None, signing.MemoryNonceStore(lambda: _NOW),
                            clock=lambda: _NOW)


_GENUINE = None


def _header_text(raw: bytes) -> str:
    """What an HTTP server can hand over as a header value: latin-1, no CR, LF or NUL."""
    return raw.decode("latin-1").replace("\r", "").replace("\n", "").replace("\0", "")


def mutate_request(data: bytes, genuine: tuple[str, str, dict[str, str], bytes] | None = None
                   ) -> tuple[str, str, dict[str, str], bytes]:
    """A genuine request (by default one to _URL) with one part changed as `data` says."""
    global _GENUINE
    if genuine is None:
        if _GENUINE is None:
            _GENUINE = genuine_request()
        genuine = _GENUINE
    method, url, headers, body = genuine
    headers = dict(headers)
    if not data:
        return method, url, headers, body
    op, pick, rest = data[0] % 8, (data[1] if len(data) > 1 else 0), data[2:]
    names = sorted(headers)
    name = names[pick % len(names)]
    if op == 0:
        headers[name] = _header_text(rest)
    elif op == 1:
        del headers[name]
    elif op == 2:
        headers[_header_text(rest[:20]) or "X"] = _header_text(rest[20:])
    elif op == 3:
        body = rest
    elif op == 4:
        value = headers[name]
        at = pick % (len(value) + 1)
        headers[name] = value[:at] + _header_text(rest[:8]) + value[at + len(rest[8:9]):]
    elif op == 5:
        method = _header_text(rest[:8]) or "GET"
    elif op == 6:
        sig = headers["Signature"]
        at = 6 + pick % max(1, len(sig) - 8)
        headers["Signature"] = sig[:at] + ("A" if sig[at] != "A" else "B") + sig[at + 1:]
    else:
        url = "https://" + _header_text(rest[:30]) + "/v1/events"
    return method, url, headers, body


def verifier(data: bytes) -> None:
    global _GENUINE
    method, url, headers, body = mutate_request(data)
    try:
        key_id = make_verifier().verify(method, url, headers, body)
    except signing.Refusal:
        return
    assert _GENUINE is not None
    g_method, g_url, g_headers, g_body = _GENUINE
    # HTTP strips a header value's surrounding whitespace, and so does RFC 9421's signature base.
    lower = {k.lower(): v.strip(" \t") for k, v in headers.items()}
    g_lower = {k.lower(): v.strip(" \t") for k, v in g_headers.items()}
    signed_same = (method == g_method and url == g_url and body == g_body and key_id == _HUB
                   and all(lower.get(h) == g_lower.get(h)
                           for h in ("content-type", "content-digest", "idempotency-key")))
    if not signed_same:
        raise Unexpected(f"verified a request whose signed parts were changed: {method} {url} {headers!r} {body!r}")


# -- the receiver over HTTP ---------------------------------------------------------------------------

class ReceiverHarness:
    """The receiver app on a private event loop, in process, over plain HTTP (TLS is not its code)."""

    def __init__(self, directory: Path) -> None:
        from aiohttp.test_utils import TestClient, TestServer

        from safebox.tools.receiver.app import make_app
        from safebox.tools.receiver.store import Store
        self.loop = asyncio.new_event_loop()
        self.store = Store(Path(directory) / "events.db")
        public = signing.public_key_to_text(_fuzz_key().public_key())
        self.store.add_hub(_HUB, public, now=_NOW)
        # The receiver's clock is the genuine request's time, so mutations of it get past the time window.
        self.client = TestClient(TestServer(make_app(self.store, clock=lambda: _NOW)), loop=self.loop)
        self.loop.run_until_complete(self.client.start_server())
        # Every refusal is a WARNING line; thousands of them say nothing here.
        self._quiet = [logging.getLogger(name) for name in ("safebox.receiver", "aiohttp.server", "aiohttp.access")]
        self._levels = [lg.level for lg in self._quiet]
        for lg in self._quiet:
            lg.setLevel(logging.CRITICAL + 1)
        self.closed = False

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        self.loop.run_until_complete(self.client.close())
        self.store.close()
        self.loop.close()
        for lg, level in zip(self._quiet, self._levels):
            lg.setLevel(level)

    @property
    def events_url(self) -> str:
        """The URL the receiver sees for POST /v1/events (what a signature must cover)."""
        return str(self.client.make_url("/v1/events"))

    def genuine(self) -> tuple[str, str, dict[str, str], bytes]:
        """A genuine request to this receiver (fresh nonce: it verifies once)."""
        return genuine_request(self.events_url)

    def request(self, method: str, path: str, headers: dict[str, str], body: bytes) -> tuple[int, bytes, str]:
        async def go() -> tuple[int, bytes, str]:
            async with self.client.request(method, path, headers=headers, data=body,
                                           skip_auto_headers=("Content-Type",)) as resp:
                return resp.status, await resp.read(), resp.content_type
        return self.loop.run_until_complete(go())

    def check(self, method: str, path: str, headers: dict[str, str], body: bytes) -> tuple[int, Any] | None:
        """Send it; Unexpected unless the answer is a non-500 JSON object with a status. Returns (status, JSON),
        or None when the HTTP client itself refused to send such headers (control characters)."""
        try:
            status, raw, _ = self.request(method, path, headers, body)
        except ValueError as exc:
            if "header" in str(exc).lower() or "control character" in str(exc).lower():
                return None
            raise
        try:
            answer = json.loads(raw)
        except (UnicodeDecodeError, json.JSONDecodeError):
            answer = None
        enc = next((v for k, v in headers.items() if k.lower() == "content-encoding"), None)
        marker = f" [content-encoding={enc.strip().lower()}]" if enc is not None else ""
        if not _content_type_parses(headers):
            marker += " [content-type unparseable by aiohttp]"
        if status >= 500 and status != 503:
            raise Unexpected(f"answered {status} to {method} {path}{marker}: {raw[:120]!r}")
        if not isinstance(answer, dict) or "status" not in answer:
            raise Unexpected(f"answer {status} to {method} {path} is not the SPEC's JSON object{marker}: {raw[:120]!r}")
        return status, answer


def _content_type_parses(headers: dict[str, str]) -> bool:
    """Whether aiohttp can read this request's Content-Type (`request.content_type`) without raising."""
    from aiohttp.test_utils import make_mocked_request
    try:
        make_mocked_request("POST", "/", headers=headers).content_type  # noqa: B018 - the property parses
    except Exception:  # noqa: BLE001 - any failure is the point
        return False
    return True


_HARNESS: ReceiverHarness | None = None
TOKEN = set(b"!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ")


def receiver(data: bytes) -> None:
    global _HARNESS
    if _HARNESS is None:
        _HARNESS = ReceiverHarness(Path(tempfile.mkdtemp(prefix="safebox-fuzz-receiver-")))
        atexit.register(_HARNESS.close)
    if data[:1] and data[0] % 4 == 0:
        # A genuine request with one part mutated: reaches deep into verification.
        _, _, headers, body = mutate_request(data[1:], _HARNESS.genuine())
        headers = {k: v for k, v in headers.items() if k and set(k.encode("latin-1")) <= TOKEN}
    else:
        # Headers and body from raw bytes: "name: value" lines, a blank line, the body.
        head, _, body = data[1:].partition(b"\n\n")
        headers = {}
        for line in head.split(b"\n"):
            name, _, value = line.partition(b":")
            name = bytes(c for c in name if c in TOKEN)
            if name:
                headers[name.decode()] = _header_text(value.strip())
    headers.pop("Host", None)
    headers.pop("Content-Length", None)
    headers.pop("Transfer-Encoding", None)
    path = "/v1/enrol" if data[-1:] and data[-1] % 5 == 0 else "/v1/events"
    _HARNESS.check("POST", path, headers, body)


TARGETS: dict[str, Callable[[bytes], None]] = {
    "codec": codec,
    "ccm": ccm_differential,
    "events": event_body,
    "config": config_text,
    "verifier": verifier,
    "receiver": receiver,
}

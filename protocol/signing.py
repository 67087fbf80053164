"""The RFC 9421 signature profile of protocol v1 (SPEC.md section 3). CPython only.

The hub signs every event POST with `signed_headers`; the platform checks it with
`Verifier`. Both sides lean on `http-message-signatures` for the signature base,
the Ed25519 maths and the Content-Digest comparison, and add what the library
leaves to its caller: the exact profile (components, parameters, tag), time
windows on an injectable clock, that the digest really is compared with the body,
and replay protection through a nonce store.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
import secrets
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, Protocol, cast

import http_sf
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from http_message_signatures import (
    HTTPMessageSignaturesException,
    HTTPMessageSigner,
    HTTPMessageVerifier,
    MappingKeyResolver,
    algorithms,
)
from http_message_signatures.structures import get_header_fields

TAG = "safebox-v1"
LABEL = "sig1"
ALG = "ed25519"
COVERED_COMPONENTS = ("@method", "@authority", "@path", "content-type", "content-digest", "idempotency-key")
# The profile adapted for GET (SPEC 3.5): no body, so no content headers; the query is covered.
GET_COMPONENTS = ("@method", "@authority", "@path", "@query")
CONTENT_TYPE = "application/json"
LIFETIME_S = 60  # expires = created + LIFETIME_S

# Headers that must be on every request; the first three are covered by the signature.
_REQUIRED_HEADERS = ("content-type", "content-digest", "idempotency-key", "signature-input", "signature")
_PARAM_TYPES: dict[str, type] = {
    "created": int, "expires": int, "nonce": str, "alg": str, "keyid": str, "tag": str,
}
# 128 random bits are 22 base64url characters; allow longer, never shorter.
_NONCE = re.compile(r"^[A-Za-z0-9_-]{22,128}$")


class Refusal(Exception):
    """A request the platform will not accept as sent.

    `reason` is precise and safe to log (peer-supplied values appear as repr);
    `status` is 401 when authentication failed, 400 when the request is malformed;
    `key_id` is the keyid the request claimed, when it could be read.
    """

    def __init__(self, status: int, reason: str, key_id: str | None = None) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason
        self.key_id = key_id


class NonceStore(Protocol):
    """Remembers nonces until their signatures can no longer be accepted anyway."""

    def check_and_add(self, key_id: str, nonce: str, expires_at: float) -> bool:
        """Record the nonce; False if it was already recorded for this key."""
        ...


class MemoryNonceStore:
    """An in-process `NonceStore`, forgotten on restart (the receiver persists its own).

    `clock` must be the verifier's clock: entries are purged once `expires_at`
    has passed on it, and a different clock would forget nonces too early.
    """

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self._clock = clock
        self._seen: dict[tuple[str, str], float] = {}
        self._lock = threading.Lock()

    def check_and_add(self, key_id: str, nonce: str, expires_at: float) -> bool:
        with self._lock:
            now = self._clock()
            self._seen = {k: t for k, t in self._seen.items() if t >= now}
            if (key_id, nonce) in self._seen:
                return False
            self._seen[(key_id, nonce)] = expires_at
            return True


@dataclass
class _Message:
    """The request shape the library resolves components from (method, absolute URL, headers)."""

    method: str
    url: str
    headers: Any


class _ProfileVerifier(HTTPMessageVerifier):
    """The library's verifier with its own time checks switched off.

    The library judges `created`/`expires` on the wall clock with a 5 s skew; the
    profile wants 300 s / 30 s windows on an injectable clock, which `Verifier`
    checks before the library is called.
    """

    def validate_created_and_expires(self, sig_input: Any, max_age: Any = None) -> None:
        return None


def _sign(message: _Message, private_key: Ed25519PrivateKey, key_id: str, components: tuple[str, ...],
          now: float | None, body: bytes | None) -> None:
    """Add Signature-Input and Signature (and Content-Digest, given a body) to `message`."""
    created = int(time.time() if now is None else now)
    signer = HTTPMessageSigner(
        signature_algorithm=algorithms.ED25519,
        key_resolver=MappingKeyResolver(public_keys={}, private_keys={key_id: private_key}),
    )
    signer.sign(
        message,
        key_id=key_id,
        created=datetime.fromtimestamp(created, timezone.utc),
        expires=datetime.fromtimestamp(created + LIFETIME_S, timezone.utc),
        nonce=secrets.token_urlsafe(16),
        label=LABEL,
        tag=TAG,
        covered_component_ids=components,
        body=body,
    )


def signed_headers(private_key: Ed25519PrivateKey, key_id: str, url: str, body: bytes,
                   idempotency_key: str, *, now: float | None = None,
                   method: str = "POST") -> dict[str, str]:
    """The headers that make `body`, sent to `url`, a signed request of the profile.

    `body` must be the exact bytes that go on the wire. A re-sent event calls this
    again: fresh `created` and nonce, same idempotency key.
    """
    message = _Message(method, url, {"Content-Type": CONTENT_TYPE, "Idempotency-Key": idempotency_key})
    _sign(message, private_key, key_id, COVERED_COMPONENTS, now, body)
    names = ("Content-Type", "Content-Digest", "Idempotency-Key", "Signature-Input", "Signature")
    return {name: message.headers[name] for name in names}


def signed_get_headers(private_key: Ed25519PrivateKey, key_id: str, url: str, *,
                       now: float | None = None) -> dict[str, str]:
    """The headers that make a GET of `url` (query included) a signed request of the GET profile."""
    message = _Message("GET", url, {})
    _sign(message, private_key, key_id, GET_COMPONENTS, now, None)
    return {name: message.headers[name] for name in ("Signature-Input", "Signature")}


@dataclass(frozen=True)
class _SignatureInput:
    components: tuple[str, ...]
    params: dict[str, Any]


def _parse_signature_input(value: str) -> _SignatureInput:
    """The one reading of Signature-Input: exactly one signature, labelled `sig1`."""
    try:
        members = cast(dict[str, Any], http_sf.parse(value.encode("latin-1"), tltype="dictionary"))
    except (ValueError, UnicodeEncodeError) as exc:
        raise Refusal(400, f"malformed Signature-Input: {exc}") from None
    if list(members) != [LABEL]:
        raise Refusal(400, f"Signature-Input must hold exactly one signature labelled {LABEL!r}, "
                           f"got {sorted(members)!r}")
    inner, params = members[LABEL]
    if not isinstance(inner, list):
        raise Refusal(400, f"Signature-Input {LABEL!r} is not an inner list")
    # A component with parameters (e.g. ;sf) is spelled out so it can never equal a bare name.
    components = tuple(";".join([str(item)] + list(item_params)) for item, item_params in inner)
    return _SignatureInput(components, dict(params))


def _check_params(params: dict[str, Any]) -> None:
    for name in params:
        if name not in _PARAM_TYPES:
            raise Refusal(400, f"unexpected signature parameter {name!r}")
    for name, kind in _PARAM_TYPES.items():
        if name not in params:
            raise Refusal(400, f"missing signature parameter {name!r}")
        if type(params[name]) is not kind:
            raise Refusal(400, f"signature parameter {name!r} must be {'an integer' if kind is int else 'a string'}")
    if params["alg"] != ALG:
        raise Refusal(400, f"unsupported alg {params['alg']!r}, the profile uses {ALG!r}")
    if not _NONCE.match(params["nonce"]):
        raise Refusal(400, "nonce must be base64url of at least 128 bits")
    if params["expires"] <= params["created"]:
        raise Refusal(400, "expires must be later than created")


def _check_digest_form(value: str) -> None:
    """The profile's digest is one sha-256 member; comparing it with the body is the library's job."""
    try:
        members = http_sf.parse(value.encode("latin-1"), tltype="dictionary")
    except (ValueError, UnicodeEncodeError):
        members = None
    if not isinstance(members, dict) or list(members) != ["sha-256"] \
            or not isinstance(members["sha-256"][0], bytes) \
            or len(members["sha-256"][0]) != hashlib.sha256().digest_size:
        raise Refusal(400, "content-digest must be sha-256=:<base64 of 32 bytes>: (RFC 9530)")


class Verifier:
    """Checks signed requests against the profile; `verify` returns the hub id (keyid).

    `key_lookup` maps a keyid to its enrolled public key, or None. `nonce_store`
    must judge expiry on the same `clock`. Cheap structural checks come first and
    the nonce is recorded last, so a forged request cannot burn a real hub's nonce.
    """

    def __init__(self, key_lookup: Callable[[str], Ed25519PublicKey | None], nonce_store: NonceStore, *,
                 max_age: float = 300, max_future: float = 30,
                 clock: Callable[[], float] = time.time) -> None:
        self._key_lookup = key_lookup
        self._nonces = nonce_store
        self._max_age = max_age
        self._max_future = max_future
        self._clock = clock

    def verify(self, method: str, url: str, headers: Mapping[str, str], body: bytes) -> str:
        """The keyid of a request that passes every check; otherwise Refusal for the first that fails.

        `url` is the absolute URL as the client addressed it (its authority and path
        are signed); `body` the exact bytes received. A GET is checked against the GET
        profile (`GET_COMPONENTS`, no body, no digest).
        """
        fields = get_header_fields(headers)
        is_get = method.upper() == "GET"
        for name in (_REQUIRED_HEADERS[-2:] if is_get else _REQUIRED_HEADERS):
            if name not in fields:
                raise Refusal(400, f"missing header {name}")
        sig_input = _parse_signature_input(fields["signature-input"])
        params = sig_input.params
        claimed = params.get("keyid") if isinstance(params.get("keyid"), str) else None
        try:
            self._check_form(sig_input, None if is_get else fields["content-digest"])
            key = self._key_lookup(params["keyid"])
            if key is None:
                raise Refusal(401, f"unknown keyid {params['keyid']!r}")
            self._check_times(params["created"], params["expires"])
            self._check_signature(_Message(method, url, headers), key, params["keyid"], None if is_get else body)
            # Past this moment the time checks refuse the request anyway.
            expires_at = min(params["expires"], params["created"] + self._max_age)
            if not self._nonces.check_and_add(params["keyid"], params["nonce"], expires_at):
                raise Refusal(401, "nonce already used")
        except Refusal as refusal:
            refusal.key_id = claimed
            raise
        return params["keyid"]

    @staticmethod
    def _check_form(sig_input: _SignatureInput, content_digest: str | None) -> None:
        """`content_digest` None: a GET, checked against the GET profile (no body, no digest)."""
        expected = GET_COMPONENTS if content_digest is None else COVERED_COMPONENTS
        if sig_input.components != expected:
            raise Refusal(400, f"covered components must be {' '.join(expected)} in this order, "
                               f"got {' '.join(sig_input.components)!r}")
        _check_params(sig_input.params)
        if sig_input.params["tag"] != TAG:
            raise Refusal(401, f"wrong tag {sig_input.params['tag']!r}, expected {TAG!r}")
        if content_digest is not None:
            _check_digest_form(content_digest)

    def _check_times(self, created: int, expires: int) -> None:
        now = self._clock()
        if created - now > self._max_future:
            raise Refusal(401, f"created {created - now:.0f} s in the future, more than {self._max_future:g} s")
        if now - created > self._max_age:
            raise Refusal(401, f"created {now - created:.0f} s ago, older than {self._max_age:g} s")
        if expires < now:
            raise Refusal(401, f"expired {now - expires:.0f} s ago")

    @staticmethod
    def _check_signature(message: _Message, key: Ed25519PublicKey, key_id: str, body: bytes | None) -> None:
        """`body` None: a GET, whose signature covers no body."""
        verifier = _ProfileVerifier(
            signature_algorithm=algorithms.ED25519,
            key_resolver=MappingKeyResolver(public_keys={key_id: key}, private_keys={}),
        )
        try:
            results = verifier.verify(message, max_age=None, expect_tag=TAG,
                                      require_components=COVERED_COMPONENTS if body is not None else GET_COMPONENTS)
        except HTTPMessageSignaturesException as exc:
            detail = str(exc)
            raise Refusal(401, "signature does not verify" + (f" ({detail})" if detail else "")) from None
        if body is None:
            return
        # Without body= the library authenticates the Content-Digest header but never
        # compares it with the body; this is the step that catches an altered body.
        try:
            verifier.verify_body(message, results, body)
        except HTTPMessageSignaturesException:
            raise Refusal(401, "content-digest mismatch: body was altered") from None


def public_key_to_text(pub: Ed25519PublicKey) -> str:
    """The enrolment form of a hub key: base64 of the raw 32 bytes."""
    return base64.b64encode(pub.public_bytes(Encoding.Raw, PublicFormat.Raw)).decode("ascii")


def public_key_from_text(text: str) -> Ed25519PublicKey:
    """Parse `public_key_to_text` output; ValueError says what is wrong with it."""
    try:
        raw = base64.b64decode(text.strip(), validate=True)
    except (binascii.Error, ValueError):
        raise ValueError("public key is not valid base64") from None
    if len(raw) != 32:
        raise ValueError(f"public key must be 32 raw Ed25519 bytes in base64, got {len(raw)} bytes")
    return Ed25519PublicKey.from_public_bytes(raw)

"""The RFC 9421 profile (SPEC.md section 3): what the hub signs and what the platform refuses."""

from __future__ import annotations

import base64
import hashlib
import re
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from http_message_signatures import HTTPMessageSigner, HTTPMessageVerifier, MappingKeyResolver, algorithms

from safebox.protocol.signing import (
    COVERED_COMPONENTS,
    TAG,
    MemoryNonceStore,
    Refusal,
    Verifier,
    public_key_from_text,
    public_key_to_text,
    signed_headers,
)

URL = "https://platform.example:8443/v1/events"
HUB = "hub-7f3a9c"
EVENT_ID = "5448e68f80a5-1122867"
BODY = b'{"event_id":"5448e68f80a5-1122867","type":"emergency"}'
NOW = 1_800_000_000


@pytest.fixture
def key() -> Ed25519PrivateKey:
    return Ed25519PrivateKey.generate()


@pytest.fixture
def verifier(key: Ed25519PrivateKey) -> Verifier:
    return Verifier({HUB: key.public_key()}.get, MemoryNonceStore(clock=lambda: NOW), clock=lambda: NOW)


def _sign(key: Ed25519PrivateKey, **overrides) -> dict[str, str]:
    args = {"key_id": HUB, "url": URL, "body": BODY, "idempotency_key": EVENT_ID, "now": NOW, **overrides}
    return signed_headers(key, args.pop("key_id"), args.pop("url"), args.pop("body"),
                          args.pop("idempotency_key"), now=args.pop("now"))


def _refusal(verifier: Verifier, headers: dict[str, str], *, body: bytes = BODY, url: str = URL) -> Refusal:
    with pytest.raises(Refusal) as caught:
        verifier.verify("POST", url, headers, body)
    return caught.value


@dataclass
class _Request:
    method: str
    url: str
    headers: dict[str, str]


def _sign_with_library(key: Ed25519PrivateKey, *, components=COVERED_COMPONENTS, tag: str | None = TAG,
                       nonce: str | None = "AAAAAAAAAAAAAAAAAAAAAA", include_alg: bool = True,
                       expires: int | None = NOW + 60) -> dict[str, str]:
    """A client that gets the profile wrong in one chosen way, signed correctly otherwise."""
    request = _Request("POST", URL, {"Content-Type": "application/json", "Idempotency-Key": EVENT_ID})
    HTTPMessageSigner(signature_algorithm=algorithms.ED25519,
                      key_resolver=MappingKeyResolver(public_keys={}, private_keys={HUB: key})).sign(
        request, key_id=HUB, label="sig1", tag=tag, nonce=nonce, include_alg=include_alg,
        created=datetime.fromtimestamp(NOW, timezone.utc),
        expires=None if expires is None else datetime.fromtimestamp(expires, timezone.utc),
        covered_component_ids=components, body=BODY)
    return request.headers


def test_signed_headers_follow_the_profile(key: Ed25519PrivateKey) -> None:
    headers = _sign(key)
    assert list(headers) == ["Content-Type", "Content-Digest", "Idempotency-Key", "Signature-Input", "Signature"]
    assert headers["Content-Type"] == "application/json"
    assert headers["Content-Digest"] == "sha-256=:" + base64.b64encode(hashlib.sha256(BODY).digest()).decode() + ":"
    assert headers["Idempotency-Key"] == EVENT_ID
    match = re.fullmatch(
        r'sig1=\("@method" "@authority" "@path" "content-type" "content-digest" "idempotency-key"\)'
        r';created=1800000000;keyid="hub-7f3a9c";alg="ed25519";expires=1800000060'
        r';nonce="(?P<nonce>[A-Za-z0-9_-]+)";tag="safebox-v1"', headers["Signature-Input"])
    assert match, headers["Signature-Input"]
    assert len(base64.urlsafe_b64decode(match["nonce"] + "==")) == 16
    assert re.fullmatch(r"sig1=:[A-Za-z0-9+/]{86}==:", headers["Signature"])


def test_every_signing_has_a_fresh_nonce(key: Ed25519PrivateKey) -> None:
    assert _sign(key)["Signature-Input"] != _sign(key)["Signature-Input"]


def test_signature_verifies_against_a_hand_built_signature_base(key: Ed25519PrivateKey) -> None:
    """RFC 9421 section 2.5 done by hand, as in appendix B: the library builds the base we specify."""
    headers = _sign(key)
    params = headers["Signature-Input"].removeprefix("sig1=")
    base = "\n".join([
        '"@method": POST',
        '"@authority": platform.example:8443',
        '"@path": /v1/events',
        '"content-type": application/json',
        f'"content-digest": {headers["Content-Digest"]}',
        f'"idempotency-key": {EVENT_ID}',
        f'"@signature-params": {params}',
    ]).encode()
    signature = base64.b64decode(headers["Signature"].removeprefix("sig1=:").removesuffix(":"))
    key.public_key().verify(signature, base)  # raises InvalidSignature if the base differs


def test_library_reproduces_rfc9421_appendix_b26() -> None:
    """The RFC's Ed25519 test key and request give the RFC's signature, byte for byte."""
    rfc_key = Ed25519PrivateKey.from_private_bytes(
        base64.urlsafe_b64decode("n4Ni-HpISpVObnQMW0wOhCKROaIKqKtW_2ZYb2p9KcU="))
    assert public_key_to_text(rfc_key.public_key()) == "JrQLj5P/89iXES9+vFgrIy29clF9CC/oPPsw3c5D0bs="
    request = _Request("POST", "https://example.com/foo?param=Value&Pet=dog", {
        "Host": "example.com", "Date": "Tue, 20 Apr 2021 02:07:55 GMT",
        "Content-Type": "application/json", "Content-Length": "18"})
    resolver = MappingKeyResolver(public_keys={"test-key-ed25519": rfc_key.public_key()},
                                  private_keys={"test-key-ed25519": rfc_key})
    HTTPMessageSigner(signature_algorithm=algorithms.ED25519, key_resolver=resolver).sign(
        request, key_id="test-key-ed25519", label="sig-b26", include_alg=False,
        created=datetime.fromtimestamp(1618884473, timezone.utc),
        covered_component_ids=("date", "@method", "@path", "@authority", "content-type", "content-length"))
    assert request.headers["Signature-Input"] == (
        'sig-b26=("date" "@method" "@path" "@authority" "content-type" "content-length")'
        ';created=1618884473;keyid="test-key-ed25519"')
    assert request.headers["Signature"] == (
        "sig-b26=:wqcAqbmYJ2ji2glfAMaRy4gruYYnx2nEFN2HN6jrnDnQCK1u02Gb04v9EDgwUPiu4A0w6vuQv5lIp5WPpBKRCw==:")
    HTTPMessageVerifier(signature_algorithm=algorithms.ED25519, key_resolver=resolver).verify(request, max_age=None)


def test_a_correct_request_verifies_once(key: Ed25519PrivateKey, verifier: Verifier) -> None:
    headers = _sign(key)
    assert verifier.verify("POST", URL, headers, BODY) == HUB
    refusal = _refusal(verifier, headers)
    assert (refusal.status, refusal.reason, refusal.key_id) == (401, "nonce already used", HUB)


def test_header_names_are_case_insensitive(key: Ed25519PrivateKey, verifier: Verifier) -> None:
    headers = {name.lower(): value for name, value in _sign(key).items()}
    assert verifier.verify("POST", URL, headers, BODY) == HUB


def test_altered_body_is_refused_even_though_the_headers_verify(key: Ed25519PrivateKey, verifier: Verifier) -> None:
    headers = _sign(key)
    refusal = _refusal(verifier, headers, body=BODY.replace(b"emergency", b"door_opened"))
    assert (refusal.status, refusal.reason) == (401, "content-digest mismatch: body was altered")
    # The refused request did not use up the nonce of the genuine one.
    assert verifier.verify("POST", URL, headers, BODY) == HUB


def test_altered_body_with_a_recomputed_digest_fails_the_signature(key: Ed25519PrivateKey, verifier: Verifier) -> None:
    body = BODY.replace(b"emergency", b"door_opened")
    headers = _sign(key)
    headers["Content-Digest"] = "sha-256=:" + base64.b64encode(hashlib.sha256(body).digest()).decode() + ":"
    refusal = _refusal(verifier, headers, body=body)
    assert (refusal.status, refusal.reason) == (401, "signature does not verify")


@pytest.mark.parametrize(("signed_at", "status", "reason"), [
    (NOW - 412, 401, "created 412 s ago, older than 300 s"),
    (NOW + 45, 401, "created 45 s in the future, more than 30 s"),
])
def test_created_outside_the_window_is_refused(key: Ed25519PrivateKey, verifier: Verifier,
                                                signed_at: int, status: int, reason: str) -> None:
    refusal = _refusal(verifier, _sign(key, now=signed_at))
    assert (refusal.status, refusal.reason) == (status, reason)


def test_a_few_seconds_of_skew_either_way_is_accepted(key: Ed25519PrivateKey, verifier: Verifier) -> None:
    """The library's default 5 s skew would refuse a hub 10 s fast; the profile allows 30 s."""
    assert verifier.verify("POST", URL, _sign(key, now=NOW + 29), BODY) == HUB
    assert verifier.verify("POST", URL, _sign(key, now=NOW - 50), BODY) == HUB


def test_expired_signature_is_refused(key: Ed25519PrivateKey) -> None:
    lenient = Verifier({HUB: key.public_key()}.get, MemoryNonceStore(clock=lambda: NOW),
                       max_age=3600, clock=lambda: NOW)
    refusal = _refusal(lenient, _sign(key, now=NOW - 100))
    assert (refusal.status, refusal.reason) == (401, "expired 40 s ago")


def test_unknown_keyid_is_refused(key: Ed25519PrivateKey, verifier: Verifier) -> None:
    refusal = _refusal(verifier, _sign(key, key_id="hub-unknown"))
    assert (refusal.status, refusal.reason, refusal.key_id) == (401, "unknown keyid 'hub-unknown'", "hub-unknown")


def test_another_hubs_key_does_not_verify(verifier: Verifier) -> None:
    refusal = _refusal(verifier, _sign(Ed25519PrivateKey.generate()))
    assert (refusal.status, refusal.reason) == (401, "signature does not verify")


def test_another_authority_does_not_verify(key: Ed25519PrivateKey, verifier: Verifier) -> None:
    refusal = _refusal(verifier, _sign(key), url="https://other.example:8443/v1/events")
    assert (refusal.status, refusal.reason) == (401, "signature does not verify")


@pytest.mark.parametrize("missing", ["Content-Type", "Content-Digest", "Idempotency-Key", "Signature-Input",
                                     "Signature"])
def test_missing_header_is_refused(key: Ed25519PrivateKey, verifier: Verifier, missing: str) -> None:
    headers = _sign(key)
    del headers[missing]
    refusal = _refusal(verifier, headers)
    assert (refusal.status, refusal.reason) == (400, f"missing header {missing.lower()}")


@pytest.mark.parametrize(("options", "status", "reason"), [
    ({"tag": "other-v1"}, 401, "wrong tag 'other-v1', expected 'safebox-v1'"),
    ({"tag": None}, 400, "missing signature parameter 'tag'"),
    ({"nonce": None}, 400, "missing signature parameter 'nonce'"),
    ({"expires": None}, 400, "missing signature parameter 'expires'"),
    ({"include_alg": False}, 400, "missing signature parameter 'alg'"),
    ({"nonce": "short"}, 400, "nonce must be base64url of at least 128 bits"),
    ({"expires": NOW}, 400, "expires must be later than created"),
    ({"components": ("@authority", "@method", "@path", "content-type", "content-digest", "idempotency-key")},
     400, "covered components must be @method @authority @path content-type content-digest idempotency-key "
          "in this order, got '@authority @method @path content-type content-digest idempotency-key'"),
    ({"components": COVERED_COMPONENTS[:-1]}, 400, "covered components must be"),
    ({"components": ("@method", "@authority", "@path", "content-type", '"content-digest";sf', "idempotency-key")},
     400, "covered components must be"),
])
def test_profile_violations_are_refused(key: Ed25519PrivateKey, verifier: Verifier,
                                        options: dict, status: int, reason: str) -> None:
    refusal = _refusal(verifier, _sign_with_library(key, **options))
    assert refusal.status == status
    assert refusal.reason.startswith(reason)


def test_the_profile_signed_by_the_plain_library_verifies(key: Ed25519PrivateKey, verifier: Verifier) -> None:
    """Guards the table above: its helper gets everything right unless told otherwise."""
    assert verifier.verify("POST", URL, _sign_with_library(key), BODY) == HUB


@pytest.mark.parametrize(("field", "value", "reason"), [
    ("Signature-Input", 'sig1=("@method"', "malformed Signature-Input"),
    ("Signature-Input", "sig1=1", "Signature-Input 'sig1' is not an inner list"),
    ("Content-Digest", "sha-512=:AAAA:", "content-digest must be sha-256=:<base64 of 32 bytes>:"),
    ("Content-Digest", "sha-256=:AAAA:", "content-digest must be sha-256=:<base64 of 32 bytes>:"),
])
def test_malformed_fields_are_refused(key: Ed25519PrivateKey, verifier: Verifier,
                                      field: str, value: str, reason: str) -> None:
    headers = _sign(key)
    headers[field] = value
    refusal = _refusal(verifier, headers)
    assert refusal.status == 400
    assert refusal.reason.startswith(reason)


def test_a_second_signature_label_is_refused(key: Ed25519PrivateKey, verifier: Verifier) -> None:
    headers = _sign(key)
    headers["Signature-Input"] += ", " + headers["Signature-Input"].replace("sig1=", "sig2=", 1)
    headers["Signature"] += ", " + headers["Signature"].replace("sig1=", "sig2=", 1)
    refusal = _refusal(verifier, headers)
    assert (refusal.status, refusal.reason) == (
        400, "Signature-Input must hold exactly one signature labelled 'sig1', got ['sig1', 'sig2']")


def test_memory_nonce_store_forgets_only_after_expiry() -> None:
    now = [100.0]
    store = MemoryNonceStore(clock=lambda: now[0])
    assert store.check_and_add(HUB, "n1", 160.0)
    assert not store.check_and_add(HUB, "n1", 160.0)
    assert store.check_and_add("hub-other", "n1", 160.0)  # nonces are per key
    now[0] = 160.0
    assert not store.check_and_add(HUB, "n1", 160.0)
    now[0] = 160.5
    assert store.check_and_add(HUB, "n1", 220.0)


def test_public_key_text_round_trip(key: Ed25519PrivateKey) -> None:
    text = public_key_to_text(key.public_key())
    assert len(base64.b64decode(text)) == 32
    assert public_key_from_text(f" {text}\n") == key.public_key()


@pytest.mark.parametrize(("text", "message"), [
    ("not base64!", "public key is not valid base64"),
    (base64.b64encode(bytes(31)).decode(), "public key must be 32 raw Ed25519 bytes in base64, got 31 bytes"),
])
def test_public_key_from_text_says_what_is_wrong(text: str, message: str) -> None:
    with pytest.raises(ValueError, match=re.escape(message)):
        public_key_from_text(text)



def replay_later_is_refused(key: Ed25519PrivateKey, nonce_store: Any, now: list[float], later: int) -> None:
    """The nonce is kept until the request can no longer be accepted (its `expires`), not until
    `created`: a replay one second or a minute later is as refused as one at once. (Before, every
    replay test resent at the very instant the request was made, so a store that kept the nonce
    only until `created` passed them all.) tests/test_receiver.py runs it on the receiver's
    SQLite store, which is not part of the hub."""
    verifier = Verifier({HUB: key.public_key()}.get, nonce_store, clock=lambda: now[0])
    headers = _sign(key)  # created NOW, expires NOW + 60
    assert verifier.verify("POST", URL, headers, BODY) == HUB
    now[0] = NOW + later
    refusal = _refusal(verifier, headers)
    assert (refusal.status, refusal.reason) == (401, "nonce already used")
    now[0] = NOW + 61  # past its expiry the request is refused for that, whatever the store holds
    assert _refusal(verifier, headers).reason == "expired 1 s ago"


@pytest.mark.parametrize("later", [0, 1, 30, 59, 60])
def test_a_replay_is_refused_anywhere_in_the_acceptance_window(key: Ed25519PrivateKey, later: int) -> None:
    now = [float(NOW)]
    replay_later_is_refused(key, MemoryNonceStore(clock=lambda: now[0]), now, later)

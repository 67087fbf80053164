"""Property tests of the receiver's request handling (hypothesis, bounded).

* the RFC 9421 verifier, called directly: any headers and body give a Refusal, never another
  exception; a genuine request with one part changed verifies only if nothing signed changed;
* the receiver application over HTTP, in process (aiohttp test server, the real app and
  store): any headers and body, arbitrary or a genuine request mutated, signed arbitrary
  JSON, and arbitrary enrolment requests are answered with the SPEC's JSON object, never 500.

Bugs found here (now fixed) stay as regression tests at the end; the general properties keep away from
their triggers until they are fixed.
"""

from __future__ import annotations

import copy
import json
import os

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from safebox.protocol import signing
from safebox.tools.fuzz import targets

# SAFEBOX_FUZZ_EXAMPLES=5000 for a deeper local run; the suite stays bounded.
EXAMPLES = int(os.environ.get("SAFEBOX_FUZZ_EXAMPLES", "300"))
FUZZ = settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.too_slow])
HTTP_FUZZ = settings(max_examples=max(EXAMPLES // 2, 50), deadline=None,
                     suppress_health_check=[HealthCheck.too_slow])

HEADER_NAMES = ["Content-Type", "Content-Digest", "Idempotency-Key", "Signature-Input", "Signature",
                "Content-Encoding", "X-Other", "content-digest", "signature-input"]
# What an HTTP server can hand over as a header value: printable latin-1, no CR/LF/NUL.
header_text = st.text(st.characters(min_codepoint=0x20, max_codepoint=0xFF, blacklist_characters="\x7f"),
                      max_size=200)
token = st.text("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_", min_size=1, max_size=20)
SF_PIECES = ['sig1=', '("@method" "@authority" "@path" "content-type" "content-digest" "idempotency-key")',
             ';created=1790000000', ';expires=1790000060', ';keyid="hub-fuzz-0001"', ';alg="ed25519"',
             ';nonce="AAAAAAAAAAAAAAAAAAAAAA"', ';tag="safebox-v1"', ':AAAA:', 'sha-256=', ', ', '"', '(', ')', ';',
             '=', '?1', '-1', '1e3', '*']
sf_text = st.lists(st.sampled_from(SF_PIECES) | header_text.map(lambda s: s[:10]), max_size=10).map("".join)


def _not_brotli(headers: dict[str, str]) -> bool:
    """Content-Encoding br is refused by aiohttp's own parser in plain text, before the app (a known
    limit, pinned below): the properties about the app's JSON answers leave it out."""
    return not any(k.lower() == "content-encoding" and v.strip().lower() == "br" for k, v in headers.items())



headers_strategy = st.dictionaries(st.sampled_from(HEADER_NAMES) | token, header_text | sf_text, max_size=7)


@pytest.fixture(scope="module")
def harness(tmp_path_factory):
    h = targets.ReceiverHarness(tmp_path_factory.mktemp("receiver"))
    yield h
    h.close()


# -- the verifier, directly ---------------------------------------------------------------------------

@FUZZ
@given(headers_strategy, st.binary(max_size=200), st.sampled_from(["POST", "GET", "PUT", "post", ""]))
def test_verifier_refuses_arbitrary_requests_with_a_refusal(headers, body, method):
    try:
        targets.make_verifier().verify(method, "https://platform.example:8443/v1/events", headers, body)
    except signing.Refusal as refusal:
        assert refusal.status in (400, 401) and refusal.reason
    else:
        pytest.fail(f"verified an arbitrary request: {headers!r}")


@FUZZ
@given(st.binary(max_size=80))
def test_a_genuine_request_with_one_part_changed_verifies_only_if_nothing_signed_changed(data):
    targets.verifier(data)


def test_the_genuine_request_itself_verifies_once():
    method, url, headers, body = targets.genuine_request()
    verifier = targets.make_verifier()
    assert verifier.verify(method, url, headers, body) == "hub-fuzz-0001"
    with pytest.raises(signing.Refusal, match="nonce already used"):
        verifier.verify(method, url, headers, body)


# -- the receiver over HTTP ---------------------------------------------------------------------------

@HTTP_FUZZ
@given(headers_strategy, st.binary(max_size=300))
def test_receiver_answers_arbitrary_posts_with_json_never_500(harness, headers, body):
    assume(_not_brotli(headers))
    headers = {k: v for k, v in headers.items() if k.lower() not in ("host", "content-length", "transfer-encoding")}
    answered = harness.check("POST", "/v1/events", headers, body)
    assume(answered is not None)  # None: the HTTP client would not send such headers
    assert answered[0] != 201, f"stored an arbitrary request: {headers!r}"


@HTTP_FUZZ
@given(st.binary(max_size=80))
def test_receiver_answers_mutated_genuine_requests_with_json_never_500(harness, data):
    _, _, headers, body = targets.mutate_request(data, harness.genuine())
    # Header names that are not HTTP tokens never reach the app (aiohttp's parser answers 400 itself).
    headers = {k: v for k, v in headers.items() if k and set(k.encode("latin-1")) <= targets.TOKEN}
    harness.check("POST", "/v1/events", headers, body)


def test_the_harness_accepts_a_genuine_request(harness):
    """The mutations start from a request that really verifies (else they would test nothing)."""
    _, _, headers, body = harness.genuine()
    status, answer = harness.check("POST", "/v1/events", headers, body)
    assert status in (200, 201) and answer["status"] in ("accepted", "duplicate")


json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2 ** 64), 2 ** 64) | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=10), inner, max_size=3),
    max_leaves=10)
FIELDS = ["event_id", "type", "hub_id", "home_id", "device", "counter", "occurred_at", "data", "extra"]


def _genuine_body() -> dict:
    return json.loads(targets.genuine_request()[3])


@HTTP_FUZZ
@given(st.sampled_from(FIELDS), json_values, st.integers(0, 10_000))
def test_receiver_answers_signed_bodies_with_one_field_changed_with_json_never_500(harness, field, value, n):
    """Bodies signed by the enrolled hub's key: past the signature, into the body validator."""
    body = _genuine_body()
    body[field] = value
    raw = json.dumps(body).encode()
    event_id = f"240ac4000001-{n}"
    harness.check("POST", "/v1/events", targets.sign(raw, event_id, harness.events_url), raw)


@HTTP_FUZZ
@given(st.dictionaries(st.sampled_from(["hub_id", "home_id", "public_key", "code", "extra"]) | st.text(max_size=8),
                       json_values, max_size=5) | json_values, headers_strategy)
def test_receiver_answers_arbitrary_enrolments_with_json_never_500(harness, doc, headers):
    assume(_not_brotli(headers))
    headers = {k: v for k, v in headers.items() if k.lower() not in ("host", "content-length", "transfer-encoding")}
    headers.setdefault("Content-Type", "application/json")
    answered = harness.check("POST", "/v1/enrol", headers, json.dumps(doc).encode())
    assert answered is None or answered[0] not in (200, 201)


# -- bugs found here, fixed, kept as regression tests ------------------------------------------------------------------------------

def test_content_encoding_gzip_with_a_plain_body_is_refused_with_json(harness):
    harness.check("POST", "/v1/events", {"Content-Type": "application/json", "Content-Encoding": "gzip"}, b"{}")


@pytest.mark.xfail(strict=True, raises=targets.Unexpected,
                   reason="known limit: aiohttp's HTTP parser refuses Content-Encoding br (no Brotli) with its "
                          "own plain-text 400 before the application sees the request; refused, but not in "
                          "the SPEC's JSON form")
def test_content_encoding_br_is_refused_with_json(harness):
    harness.check("POST", "/v1/events", {"Content-Type": "application/json", "Content-Encoding": "br"}, b"{}")


@pytest.mark.parametrize("path", ["/v1/events", "/v1/enrol"])
def test_an_unparseable_content_type_is_refused_with_json(harness, path):
    harness.check("POST", path, {"Content-Type": ";0*"}, b"{}")


def test_a_signed_body_with_a_list_as_role_is_refused_with_json(harness):
    body = _genuine_body()
    body["device"]["role"] = []
    raw = json.dumps(body).encode()
    harness.check("POST", "/v1/events", targets.sign(raw, body["event_id"], harness.events_url), raw)


def test_the_idempotency_key_is_the_last_covered_component():
    # (the body limits: tests/test_receiver_limits.py sends bodies of the SPEC's sizes)
    assert copy.deepcopy(signing.COVERED_COMPONENTS)[-1] == "idempotency-key"

"""The HTTPS attempts: requests sent straight to the receiver, judged by its answer."""

from __future__ import annotations

import gzip
import json
import time

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from safebox.protocol import events, signing
from safebox.tools.attacks.attacker import Attacker


async def https_attacks(a: Attacker) -> None:
    home = a.home
    # Controls: a genuine new event, then the same event re-sent (signed afresh).
    eid, body = a.event_body(1)
    genuine = a.sign(body, eid)
    await a.https("control: genuine signed event", body, genuine, 201, "", hop="control",
                  allowed_new=lambda k: k[1] == eid)
    await a.https("control: same event re-sent, signed afresh", body, a.sign(body, eid), 200, "", hop="control")

    tampered = body.replace(b'"emergency"', b'"life_service"')
    await a.https("tampered body (digest left as signed)", tampered, genuine, 401, "content-digest")
    h = a.sign(body, eid, then={"Content-Digest": a.sign(tampered, eid)["Content-Digest"]})
    await a.https("tampered body with a recomputed Content-Digest", tampered, h, 401, "signature does not verify")
    h = a.sign(body, eid, then={"Idempotency-Key": "240ac4aaaaaa-2"})
    await a.https("Idempotency-Key header altered after signing", body, h, 401, "signature does not verify")

    eid2, body2 = a.event_body(2)
    fresh = a.sign(body2, eid2)
    await a.https("control: genuine signed event (to be replayed)", body2, fresh, 201, "", hop="control",
                  allowed_new=lambda k: k[1] == eid2)
    await a.https("replayed request, byte for byte (same nonce)", body2, fresh, 401, "nonce already used")

    now = time.time()
    eid3, body3 = a.event_body(3)
    await a.https("stale: created 301 s ago", body3, a.sign(body3, eid3, created=now - 301, expires=now + 60),
                  401, "older than")
    await a.https("future-dated: created 60 s ahead", body3, a.sign(body3, eid3, created=now + 60), 401, "future")
    await a.https("expired: created 100 s ago, expired 40 s ago", body3, a.sign(body3, eid3, created=now - 100),
                  401, "expired")
    await a.https("expires before created", body3, a.sign(body3, eid3, expires=now - 10), 400, "expires")
    await a.https("wrong key (right keyid, another private key)", body3,
                  a.sign(body3, eid3, key=Ed25519PrivateKey.generate()), 401, "signature does not verify")
    _, other_body = a.event_body(3, hub_id="hub-intruder-0001")
    await a.https("unknown keyid (a hub nobody enrolled)", other_body,
                  a.sign(other_body, eid3, key=Ed25519PrivateKey.generate(), key_id="hub-intruder-0001"),
                  401, "unknown keyid")
    await a.https("wrong tag", body3, a.sign(body3, eid3, tag="other-app"), 401, "wrong tag")
    h = a.sign(body3, eid3)
    h["Signature-Input"] = h["Signature-Input"].replace('alg="ed25519"', 'alg="rsa-pss-sha512"')
    await a.https("alg parameter rsa-pss-sha512", body3, h, 400, "alg")
    await a.https("nonce shorter than 128 bits", body3, a.sign(body3, eid3, nonce="abc"), 400, "nonce")
    await a.https("signature covers fewer components (no content-digest)", body3,
                  a.sign(body3, eid3, components=("@method", "@authority", "@path", "content-type",
                                                  "idempotency-key")), 400, "covered components")
    await a.https("signed for another authority", body3,
                  a.sign(body3, eid3, url="https://platform.example:443/v1/events"), 401, "signature does not verify")
    await a.https("signed for another path", body3,
                  a.sign(body3, eid3, url=home.platform_url + "/v1/other"), 401, "signature does not verify")
    h = a.sign(body3, eid3)
    h["Signature-Input"] += ", " + a.sign(body3, eid3, label="sig2")["Signature-Input"]
    await a.https("two signatures in Signature-Input", body3, h, 400, "exactly one signature")
    for header in ("Content-Digest", "Idempotency-Key", "Signature-Input", "Signature"):
        h = a.sign(body3, eid3)
        del h[header]
        await a.https(f"missing header {header}", body3, h, 400, f"missing header {header.lower()}")
    h = a.sign(body3, eid3)
    del h["Content-Type"]
    await a.https("missing header Content-Type", body3, h, 415, "Content-Type")
    await a.https("Content-Type text/plain (signed as such)", body3, a.sign(body3, eid3, content_type="text/plain"),
                  415, "Content-Type")
    await a.https("Content-Encoding gzip", body3, a.sign(body3, eid3, then={"Content-Encoding": "gzip"}), 415,
                  "Content-Encoding")
    await a.https("Content-Type that does not parse (';0*', unsigned)", body3,
                  a.sign(body3, eid3, then={"Content-Type": ";0*"}), 415, "Content-Type")
    # aiohttp's own parser refuses br (no Brotli) before the app: refused, in plain text.
    await a.https("Content-Encoding br", body3, a.sign(body3, eid3, then={"Content-Encoding": "br"}), 400,
                  "content-encoding", require_json=False)
    bomb = gzip.compress(b"\0" * (4 << 20), 9)
    await a.https(f"gzip bomb ({len(bomb) // 1024} KiB expanding to 4 MiB)", bomb,
                  {"Content-Type": "application/json", "Content-Encoding": "gzip"}, 415, "Content-Encoding")
    for name, then, status, reason in [
            ("malformed Signature-Input", {"Signature-Input": 'sig1=("@method" "@path";created=notanumber'}, 400,
             "Signature-Input"),
            ("Signature of the wrong length", {"Signature": "sig1=:AAAA:"}, 401, "signature does not verify"),
            ("Content-Digest with sha-512", {"Content-Digest": "sha-512=:" + "A" * 86 + "==:"}, 400,
             "content-digest")]:
        await a.https(name, body3, a.sign(body3, eid3, then=then), status, reason)

    big = b'{"pad":"' + b"x" * events.MAX_BODY + b'"}'
    await a.https("oversized body (16 KiB + 12 B, signed)", big, a.sign(big, eid3), 413, "exceeds")
    huge = b"x" * (1 << 20)
    await a.https("oversized body (1 MiB, unsigned)", huge, {"Content-Type": "application/json"}, 413, "exceeds")
    for what, raw in (("not JSON", b"\xff\xfe not json"), ("a JSON array", b"[1,2,3]"),
                      ("unknown event type", body3.replace(b'"emergency"', b'"fire_alarm"')),
                      ("unknown field", body3[:-1] + b',"admin":true}'),
                      ("counter not matching the event id", body3.replace(b'"counter":3', b'"counter":4'))):
        await a.https(f"malformed body, signed: {what}", raw, a.sign(raw, eid3), 422, ".")
    # Bodies that reach the JSON decoder only when signed by an enrolled hub's key.
    nested = b"[" * 5000 + b"]" * 5000
    await a.https("malformed body, signed: 5,000 nested arrays", nested, a.sign(nested, eid3), 422, ".")
    bigint = body3.replace(b'"battery":90', b'"battery":' + b"9" * 5000)
    await a.https("malformed body, signed: a 5,000-digit number", bigint, a.sign(bigint, eid3), 422, ".")

    role_list = body3.replace(b'"role":"pendant"', b'"role":[]')
    await a.https("malformed body, signed: device.role a JSON list", role_list, a.sign(role_list, eid3), 422, ".")

    _, foreign = a.event_body(3, hub_id="hub-other-0002")
    await a.https("body names another hub than the signing keyid", foreign, a.sign(foreign, eid3), 401, "keyid")
    await a.https("Idempotency-Key differs from the body's event_id", body3, a.sign(body3, "240ac4aaaaaa-9"),
                  400, "differs")
    _, altered = a.event_body(1, data={"battery": 5, "action": "long_press"})
    await a.https("idempotency key reused with a different body", altered, a.sign(altered, eid), 409,
                  "different body")
    await a.https("wrong method (PUT /v1/events)", body3, a.sign(body3, eid3), 405, "", method="PUT",
                  require_json=False)

    # Enrolment: a hub nobody issued a code for tries to enrol its own key.
    intruder = Ed25519PrivateKey.generate()
    doc = json.dumps({"hub_id": "hub-intruder-0002", "home_id": home.home_id, "code": "ABCD-EFGH-JKMN",
                      "public_key": signing.public_key_to_text(intruder.public_key())}).encode()
    await a.https("enrolment with a made-up one-time code (signed by the key it enrols)", doc,
                  a.sign(doc, "enrol", key=intruder, key_id="hub-intruder-0002",
                         url=home.platform_url + "/v1/enrol"), 401, "code", path="/v1/enrol")
    doc = json.dumps({"hub_id": home.hub_id, "home_id": home.home_id, "code": "ABCD-EFGH-JKMN",
                      "public_key": signing.public_key_to_text(intruder.public_key())}).encode()
    await a.https("enrolment replacing the real hub's key, made-up code", doc,
                  a.sign(doc, "enrol", key=intruder, key_id=home.hub_id, url=home.platform_url + "/v1/enrol"),
                  401, "code", path="/v1/enrol")

    # Replay after the platform restarts: the nonce store is in its SQLite file.
    eid4, body4 = a.event_body(4)
    captured = a.sign(body4, eid4)
    await a.https("control: genuine signed event (captured for later)", body4, captured, 201, "", hop="control",
                  allowed_new=lambda k: k[1] == eid4)
    await home.restart_receiver(same_port=True)
    await a.https("replayed request after the platform restarted", body4, captured, 401, "nonce already used")

"""The attack table: forged, replayed and malformed input at both hops, each refused, nothing harmed.

    python -m safebox.tools.attacks [--json] [--write [RESULTS.md]] [--workdir DIR]

Runs against the real simulated home (tools/sim/home.SimHome): the pendant firmware on the
`micropython` binary, the hub and the receiver as their own processes, real TLS.

* BLE: frames put on the air by an attacker's radio (`SimHome.transmit`) claiming a paired
  device's address or its own. The refusal reason is read from the hub's log
  ("refused frame from <address>: <reason>").
* HTTPS: requests sent straight to the receiver over TLS. Several need a signature that
  verifies except for the one thing under test; those are signed with the hub's real key,
  standing for a request captured on the wire or a hub that misbehaves. The refusal reason
  is the receiver's JSON answer.

Every attempt is judged twice: was it refused (the expected status or log line), and is
the stored data intact: the platform's rows (id and body digest), the hub's replay counters
and the device events in its outbox are compared before and after. A few controls (genuine
requests) are run alongside to show the refusals are not a receiver that refuses everything.

Exit status: 0 when every attack was refused and left the data intact, 1 otherwise.
"""

from __future__ import annotations

import argparse
import asyncio
import gzip
import hashlib
import json
import os
import re
import ssl
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import aiohttp
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from http_message_signatures import HTTPMessageSigner, MappingKeyResolver, algorithms

from safebox.protocol import bthome, ccm, events, signing
from safebox.tools.sim import lines, snapshot

PENDANT_BUTTON_WAIT_S = 5.0
LOG_WAIT_S = 2.0
_STRANGER_PREFIX = "24:0A:C4:EE:EE:"


@dataclass
class Attempt:
    """One row of the table."""

    hop: str  # "BLE", "HTTPS" or "control"
    attack: str
    expected: str  # what a refusal must look like
    refused: bool = False  # the expected refusal was seen (for a control: the expected acceptance)
    seen: str = ""  # what the hub logged / the receiver answered
    intact: bool = False  # stored data unchanged (for a control: changed only as it should)
    stored: str = ""  # platform rows before -> after
    clear: bool = True  # a clear answer: JSON with a reason (HTTPS), a log line with a reason (BLE)
    note: str = ""

    @property
    def ok(self) -> bool:
        return self.refused and self.intact and self.clear


@dataclass
class Report:
    attempts: list[Attempt] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def attacks(self) -> list[Attempt]:
        return [a for a in self.attempts if a.hop != "control"]

    @property
    def failed(self) -> list[Attempt]:
        return [a for a in self.attempts if not a.ok]


# -- what is stored, before and after --------------------------------------------------------

def platform_rows(db: Path) -> dict[tuple[str, str], str]:
    """(hub id, event id) -> sha256 of the stored body, for every event the platform holds."""
    return {(e.hub_id, e.event_id): hashlib.sha256(e.body).hexdigest() for e in snapshot.platform(db, timeout=5)}


class Ledger:
    """Before/after snapshots of the platform and the hub around one attempt."""

    def __init__(self, home: Any) -> None:
        self._platform_db = Path(home.receiver_db)
        self._hub_db = Path(home.hub_state) / "hub.db"

    def snapshot(self) -> tuple[dict[tuple[str, str], str], snapshot.HubSnapshot]:
        return platform_rows(self._platform_db), snapshot.hub(self._hub_db, timeout=5)

    @staticmethod
    def judge(before: tuple[dict, snapshot.HubSnapshot], after: tuple[dict, snapshot.HubSnapshot], *,
              allowed_new: Callable[[tuple[str, str]], bool] = lambda key: False,
              check_hub: bool = True) -> tuple[bool, str]:
        """(intact, 'rows before -> after'): nothing changed or removed, nothing new but what is allowed.

        New rows the hub makes on its own (hub events: heartbeats, rules) are allowed; a new
        device event, or any change to a stored body, is not.
        """
        (p0, h0), (p1, h1) = before, after
        changed = [k for k, digest in p0.items() if p1.get(k) != digest]
        new = [k for k in p1.keys() - p0.keys() if not allowed_new(k) and not _hub_made(k)]
        intact = not changed and not new
        if check_hub:
            intact = intact and not h1.error and h0.counters == h1.counters \
                and h1.device_events_held <= h0.device_events_held
        return intact, f"{len(p0)} -> {len(p1)}"


def _hub_made(key: tuple[str, str]) -> bool:
    hub_id, event_id = key
    return event_id.startswith(hub_id + "-")


# -- BLE ----------------------------------------------------------------------------------

def _frame(key: bytes, mac: bytes, counter: int, plaintext: bytes, info: int = 0x45) -> bytes:
    """Service data sealed with `key` around any plaintext (encode_objects would refuse bad objects)."""
    ct, tag = ccm.encrypt(key, bthome.nonce(mac, info, counter), plaintext)
    return bytes((info,)) + ct + bthome._u32le(counter) + tag  # noqa: SLF001 - the wire's own helper


def _adv(service_data: bytes) -> bytes:
    """An advertisement carrying `service_data` under UUID 0xFCD2 (no length check: attackers do not check)."""
    sd = b"\xd2\xfc" + service_data
    return b"\x02\x01\x06" + bytes((len(sd) + 1, 0x16)) + sd


async def _wait_refusal(output: list[str], start: int, address: str, timeout: float) -> lines.Refused | None:
    """The hub's next `refused frame from <address>` line from index `start`, or None after `timeout`."""
    deadline = time.monotonic() + timeout
    while True:
        for line in output[start:]:
            if (refused := lines.Refused.read(line)) is not None and refused.address == address:
                return refused
        if time.monotonic() > deadline:
            return None
        await asyncio.sleep(0.02)


class Attacker:
    """Runs the attempts against one SimHome."""

    def __init__(self, home: Any) -> None:
        self.home = home
        self.ledger = Ledger(home)
        self.report = Report()
        self._strangers = 0
        self._ssl = ssl.create_default_context(cafile=str(Path(home.workdir) / "tls" / "ca.pem"))
        from safebox.hub import keys
        self.hub_key = keys.load_or_create(Path(home.hub_state) / "hub_key.pem")

    # -- helpers ---------------------------------------------------------------------------
    def add(self, attempt: Attempt) -> Attempt:
        self.report.attempts.append(attempt)
        mark = "ok " if attempt.ok else "FAIL"
        print(f"  {mark} {attempt.hop:<7} {attempt.attack}: {attempt.seen[:110]}", file=sys.stderr, flush=True)
        return attempt

    def stranger(self) -> str:
        """A fresh unpaired address (the hub logs a stranger once an hour per address)."""
        self._strangers += 1
        return f"{_STRANGER_PREFIX}{self._strangers:02X}"

    async def press(self, device: Any, button: str = "emergency") -> int:
        """A genuine press, waited for until the platform stores it; returns its counter."""
        fw = device.firmware
        mark = len(fw.lines)
        await self.home.press(device, button)
        line = await fw.wait_for_line(lines.Event.pattern(), timeout=PENDANT_BUTTON_WAIT_S, start=mark)
        counter = lines.Event.read(line).counter
        await fw.wait_for_line(lines.Acked.pattern(counter=counter), timeout=10, start=mark)
        event_id = f"{device.id}-{counter}"
        db = Path(self.home.receiver_db)
        async with asyncio.timeout(10):
            while not any(e == event_id for _, e in platform_rows(db)):
                await asyncio.sleep(0.02)
        return counter

    @staticmethod
    def sent_frame(device: Any, counter: int) -> bytes:
        """The advertisement the firmware itself sent for `counter` (as captured off the air)."""
        for adv in device.firmware.bridge.advertising:
            sd = bthome.service_data_in(adv.adv_data) if adv.interval_us else None
            if sd and len(sd) >= bthome.FRAME_OVERHEAD and bthome._le(sd[-8:-4]) == counter:  # noqa: SLF001
                return adv.adv_data
        raise LookupError(f"no advertisement for counter {counter} of {device.id}")

    # -- one BLE attempt -------------------------------------------------------------------
    async def ble(self, attack: str, address: str, adv: bytes, expected: str, *,
                  expect_log: bool = True, duration_s: float = 0.25) -> Attempt:
        """Put `adv` on the air from `address`; refused when the hub logs `expected` (a regex) for it."""
        before = self.ledger.snapshot()
        mark = len(self.home.hub.lines)
        await self.home.transmit(address, adv, duration_s=duration_s)
        refusal = await _wait_refusal(self.home.hub.lines, mark, address, LOG_WAIT_S if expect_log else 0.3)
        await asyncio.sleep(0.1)  # anything wrongly accepted is in SQLite by now (stored before acked)
        after = self.ledger.snapshot()
        intact, stored = self.ledger.judge(before, after)
        alive = self.home.hub.running
        if expect_log:
            reason = refusal.reason if refusal else ""
            refused = bool(refusal) and re.search(expected, reason) is not None and alive
            seen = reason or "no refusal logged"
        else:
            refused = refusal is None and alive
            seen = "nothing logged, nothing stored; hub still running" if refused else (
                f"refused frame from {address}: {refusal.reason}" if refusal else "hub not running")
        if not alive:
            seen += " (HUB PROCESS ENDED)"
        return self.add(Attempt("BLE", attack, expected, refused, seen, intact, stored, clear=True))

    # -- one HTTPS attempt ------------------------------------------------------------------
    async def https(self, attack: str, body: bytes, headers: dict[str, str], expected_status: int,
                    expected_reason: str, *, method: str = "POST", path: str = "/v1/events",
                    hop: str = "HTTPS", allowed_new: Callable[[tuple[str, str]], bool] = lambda k: False,
                    require_json: bool = True) -> Attempt:
        before = self.ledger.snapshot()
        status, answer, text = await self.send(body, headers, method=method, path=path)
        after = self.ledger.snapshot()
        intact, stored = self.ledger.judge(before, after, allowed_new=allowed_new, check_hub=False)
        reason = answer.get("reason") if isinstance(answer, dict) else None
        verdict = answer.get("status") if isinstance(answer, dict) else None
        if isinstance(answer, dict):
            seen = f"{status} {verdict}" + (f": {reason}" if reason else "")
        else:
            seen = f"{status} (not JSON): {' '.join(text.split())[:80]}"
        clear = isinstance(answer, dict) and (hop == "control" or bool(reason)) if require_json else True
        if hop == "control":
            refused = status == expected_status
        else:
            refused = status == expected_status and (not require_json or verdict == "rejected") \
                and re.search(expected_reason, reason or text or "") is not None
        expected = f"{expected_status} {expected_reason}"
        return self.add(Attempt(hop, attack, expected, refused, seen, intact, stored, clear))

    async def send(self, body: bytes, headers: dict[str, str], *, method: str = "POST",
                   path: str = "/v1/events") -> tuple[int, Any, str]:
        url = self.home.platform_url + path
        try:
            async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=self._ssl)) as session:
                async with session.request(method, url, data=body, headers=headers,
                                           skip_auto_headers=("Content-Type",)) as resp:
                    text = (await resp.read()).decode("utf-8", "replace")
                    try:
                        return resp.status, json.loads(text), text
                    except json.JSONDecodeError:
                        return resp.status, None, text
        except aiohttp.ClientError as exc:
            return 0, None, f"connection: {type(exc).__name__}: {exc}"

    # -- signing with knobs -------------------------------------------------------------------
    def event_body(self, counter: int, *, device_id: str = "240ac4aaaaaa", type_: str = events.EMERGENCY,
                   hub_id: str | None = None, data: dict | None = None) -> tuple[str, bytes]:
        hub_id = hub_id or self.home.hub_id
        event_id = f"{device_id}-{counter}"
        body = events.make(event_id=event_id, type=type_, hub_id=hub_id, home_id=self.home.home_id,
                           occurred_at=time.time(), device={"id": device_id, "role": "pendant", "room": "hall"},
                           counter=counter, data=data or {"battery": 90, "action": "press"})
        return event_id, events.encode(body)

    def sign(self, body: bytes, idempotency_key: str, *, key: Ed25519PrivateKey | None = None,
             key_id: str | None = None, created: float | None = None, expires: float | None = None,
             nonce: str | None = None, tag: str = signing.TAG, url: str | None = None,
             components: tuple[str, ...] = signing.COVERED_COMPONENTS,
             content_type: str = signing.CONTENT_TYPE, label: str = signing.LABEL,
             then: dict[str, str] | None = None) -> dict[str, str]:
        """Headers of a request signed as the profile says, except for what the caller changes;
        `then`: headers set after signing (the tampering)."""
        key = key or self.hub_key
        key_id = key_id or self.home.hub_id
        created = int(time.time() if created is None else created)
        expires = int(created + signing.LIFETIME_S if expires is None else expires)
        url = url or self.home.platform_url + "/v1/events"

        @dataclass
        class _Msg:
            method: str
            url: str
            headers: dict[str, str]

        message = _Msg("POST", url, {"Content-Type": content_type, "Idempotency-Key": idempotency_key})
        signer = HTTPMessageSigner(signature_algorithm=algorithms.ED25519,
                                   key_resolver=MappingKeyResolver(public_keys={}, private_keys={key_id: key}))
        signer.sign(message, key_id=key_id, created=datetime.fromtimestamp(created, timezone.utc),
                    expires=datetime.fromtimestamp(expires, timezone.utc),
                    nonce=nonce or os.urandom(16).hex()[:22], label=label, tag=tag,
                    covered_component_ids=components, body=body)
        return {**message.headers, **(then or {})}


# -- the attempts -----------------------------------------------------------------------------

async def ble_attacks(a: Attacker) -> None:
    home = a.home
    p1 = await home.add_device("pendant", "bedroom")
    p2 = await home.add_device("pendant", "kitchen")
    c1 = await a.press(p1)
    c2 = await a.press(p1)
    await a.press(p2)
    first, last = a.sent_frame(p1, c1), a.sent_frame(p1, c2)
    p2_frame = a.sent_frame(p2, (await _last_counter(p2)))
    mac1 = p1.device.address
    sd_last = bthome.service_data_in(last)
    assert sd_last is not None

    await a.ble("forged: MIC bytes altered", mac1, _adv(sd_last[:-1] + bytes([sd_last[-1] ^ 0xFF])), "MIC mismatch")
    await a.ble("forged: ciphertext altered", mac1, _adv(sd_last[:1] + bytes([sd_last[1] ^ 0x01]) + sd_last[2:]),
                "MIC mismatch")
    raised = sd_last[:-8] + bthome._u32le(c2 + 100) + sd_last[-4:]  # noqa: SLF001
    await a.ble("forged: genuine frame with its counter raised (no key)", mac1, _adv(raised), "MIC mismatch")
    wrong_key = bthome.seal(os.urandom(16), p1.device.mac, c2 + 1000, bthome.pendant_objects(90, "emergency"))
    await a.ble("wrong key: frame sealed with a key the hub does not know", mac1, _adv(wrong_key), "MIC mismatch")
    await a.ble("another device's genuine frame sent from this address", mac1, p2_frame, "MIC mismatch")
    await a.ble("replayed frame (counter below the last accepted)", mac1, first,
                rf"replay.*counter {c1}\b.*last accepted {c2}")
    await a.ble("frames for an unpaired device (genuine frame, stranger address)", a.stranger(), last,
                "unpaired device")
    await a.ble("unencrypted BTHome frame", mac1, _adv(bytes((0x40,)) + bthome.encode_objects(
        bthome.pendant_objects(90, "emergency")) + bytes(8)), "not encrypted")
    await a.ble("wrong BTHome version in the info byte", mac1, _adv(bytes((0x85,)) + sd_last[1:]), "not BTHome v2")
    await a.ble("garbage: truncated frame (5 bytes)", mac1, _adv(sd_last[:5]), "too short")
    await a.ble("garbage: random service data, longest an advertisement carries (24 B)", mac1,
                _adv(bytes((0x45,)) + os.urandom(23)), "MIC mismatch")
    await a.ble("garbage: AD structure whose length runs past the end", mac1,
                b"\x02\x01\x06\x1a\x16\xd2\xfc" + bytes((0x45,)) + os.urandom(7), "too short|MIC mismatch")
    await a.ble("garbage: service data AD too short to hold the UUID", mac1, b"\x02\x01\x06\x02\x16\xd2",
                "", expect_log=False)
    # Authentic (sealed with the device's real key: a device bug, or a key that leaked) but unreadable.
    key1, m1 = p1.device.key, p1.device.mac
    await a.ble("authentic frame with an unknown object id", mac1, _adv(_frame(key1, m1, c2 + 50, b"\x01\x5a\x99\x01")),
                "unknown object id")
    await a.ble("authentic frame with an object cut short", mac1, _adv(_frame(key1, m1, c2 + 51, b"\x01\x5a\x50\x01")),
                "cut short")
    await a.ble("authentic event frame with no button pressed", mac1,
                _adv(_frame(key1, m1, c2 + 52, bthome.encode_objects(bthome.pendant_objects(90))),),
                "no button pressed")
    await a.ble("authentic event frame with two button objects", mac1, _adv(_frame(
        key1, m1, c2 + 53, bthome.encode_objects([(1, 90), (0x3A, 1), (0x3A, 0)]))), "button objects")
    await a.ble("authentic frame, button value unknown (0x07)", mac1, _adv(_frame(
        key1, m1, c2 + 54, bthome.encode_objects([(1, 90), (0x3A, 7), (0x3A, 0), (0x3A, 0)]))), "unknown value")

    # Across a hub restart: the replay guard is in SQLite, not in memory.
    await home.hub.kill()
    await home.start_hub()
    await a.ble("replayed frame after the hub was SIGKILLed and restarted", mac1, first,
                rf"replay.*counter {c1}\b")
    before = a.ledger.snapshot()
    mark = len(home.hub.lines)
    await home.transmit(mac1, last, duration_s=0.25)
    await asyncio.sleep(0.3)
    intact, stored = a.ledger.judge(before, a.ledger.snapshot())
    refusals = [ln for ln in home.hub.lines[mark:] if (r := lines.Refused.read(ln)) and r.address == mac1]
    a.add(Attempt("BLE", "repeat of the last accepted frame after the hub restart", "not stored again",
                  intact and home.hub.running, "accepted as a repeat: no new event, counter unchanged" if intact
                  else "stored again", intact, stored, note="; ".join(refusals)[:200]))

    # Across a battery change: the firmware process is killed and restarted with its flash kept.
    fw = p1.firmware
    await fw.kill()
    await asyncio.sleep(0.5)
    mark = len(fw.lines)
    await fw.restart()
    ready = await fw.wait_for_line(lines.Ready.pattern(), timeout=10, start=mark)
    c3 = await a.press(p1)
    await a.ble(f"replayed pre-battery-change frame (device resumed at counter {c3}; {ready.strip()!r})",
                mac1, last, rf"replay.*counter {c2}\b")
    if c3 <= c2:
        a.add(Attempt("BLE", "device counter after a battery change", f"above {c2}", False,
                      f"device reused counter {c3}", False, ""))


async def _last_counter(device: Any) -> int:
    made = [e for ln in device.firmware.lines if (e := lines.Event.read(ln)) is not None]
    return made[-1].counter


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
    await restart_receiver(home)
    await a.https("replayed request after the platform restarted", body4, captured, 401, "nonce already used")


async def restart_receiver(home: Any) -> None:
    """Stop the receiver process and start it again on the same port (same database)."""
    from safebox.tools.sim.processes import ChildProcess
    old = home.receiver
    args = list(old.argv[3:])  # after: python -m <module>
    port = home.platform_url.rsplit(":", 1)[1]
    args[args.index("--port") + 1] = port
    await old.stop()
    new = ChildProcess("receiver", old.argv[2], *args)
    for _ in range(50):  # the port may linger for a moment
        try:
            await new.start(lines.Listening.pattern())
            break
        except Exception:  # noqa: BLE001 - retried, then raised below
            await new.stop()
            new = ChildProcess("receiver", old.argv[2], *args)
            await asyncio.sleep(0.1)
    else:
        raise RuntimeError("receiver did not come back on its port")
    home.receiver = new


async def run(workdir: Path | None = None) -> Report:
    from safebox.tools.sim.home import SimHome

    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="safebox-attacks-") as tmp:
        async with SimHome(Path(workdir or tmp)) as home:
            attacker = Attacker(home)
            print("BLE attacks (hub log):", file=sys.stderr)
            await ble_attacks(attacker)
            print("HTTPS attacks (receiver answers):", file=sys.stderr)
            await https_attacks(attacker)
            attacker.report.seconds = time.monotonic() - started
            return attacker.report


# -- output ---------------------------------------------------------------------------------------

def table(report: Report) -> Any:
    from safebox.tools.bench import Table
    rows = []
    for n, a in enumerate(report.attempts, 1):
        verdict = ("accepted, as it should" if a.hop == "control" else "refused") if a.ok else "FAIL"
        rows.append([n, a.hop, a.attack, a.seen[:140], a.stored, "yes" if a.intact else "NO", verdict])
    attacks = report.attacks
    refused = sum(a.ok for a in attacks)
    notes = [f"{refused} of {len(attacks)} attacks refused with data intact; "
             f"{sum(a.ok for a in report.attempts if a.hop == 'control')} of "
             f"{sum(a.hop == 'control' for a in report.attempts)} controls accepted; {report.seconds:.0f} s.",
             "stored = events at the platform before -> after the attempt; intact = no stored body changed or "
             "removed, no device event added, the hub's replay counters and held device events unchanged "
             "(new rows the hub makes itself, e.g. heartbeats, are allowed)."]
    return Table("Attacks: attempts and refusals (simulated home, real processes, real TLS)",
                 ["#", "hop", "attempt", "refusal seen (hub log / receiver answer)", "stored", "intact",
                  "verdict"], rows, notes)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m safebox.tools.attacks", description=__doc__.split("\n")[0])
    parser.add_argument("--json", action="store_true", help="one JSON object instead of the table")
    parser.add_argument("--write", nargs="?", const="", metavar="RESULTS.md",
                        help="update the attacks section of the results page (default: the repository's)")
    parser.add_argument("--workdir", type=Path, help="keep the simulated home's files here")
    args = parser.parse_args(argv)
    report = asyncio.run(run(args.workdir))
    t = table(report)
    if args.json:
        print(json.dumps({"ok": not report.failed, "seconds": round(report.seconds, 1),
                          "attempts": [{**asdict(a), "ok": a.ok} for a in report.attempts]}, indent=1))
    else:
        print(t.text())
    if args.write is not None:
        from safebox.tools.bench import default_results_path, generated_line, update_section
        path = args.write or default_results_path()
        update_section(path, "attacks", "\n".join([
            "## Attacks", "", generated_line("python -m safebox.tools.attacks --write"), "",
            "Reproduce: `python -m safebox.tools.attacks` (add `--json` for one JSON object). "
            "The test suite runs the same table: `tests/test_attacks.py`.", "", t.markdown()]))
        print(f"wrote the attacks section of {path}", file=sys.stderr)
    return 0 if not report.failed else 1


if __name__ == "__main__":
    sys.exit(main())

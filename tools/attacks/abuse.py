"""The receiver under abuse (issue 11, item 7): connections and bytes, not forged content.

Each row is an attempt on the receiver's listener, judged by what the receiver did to it (closed
it, answered 408, refused it unread) and by a genuine request still being served: a slowloris
is "refused" when a genuine emergency sent in its midst is stored within `GENUINE_WITHIN_S`.
For the slowloris the receiver process is held to the kernel's default 1,024 descriptors (what
a service without LimitNOFILE gets), as in the review that found it. Then guessing enrolment
codes (item 8), and a request replayed later in its acceptance window (item 12).
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
import sys
import time
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from safebox.protocol import events, signing
from safebox.tools.attacks import wire
from safebox.tools.attacks.attacker import Attacker, Attempt

GENUINE_WITHIN_S = 5.0
LORIS_CONNECTIONS = 1100
LORIS_SOURCES = [f"127.0.1.{n}" for n in range(1, 23)]  # 50 each: under the per-peer cap
PER_PEER = 64  # the receiver's default --max-per-peer
HANDSHAKE_S = HEAD_S = 10.0  # the receiver's deadlines (tools/receiver/guard.py)
BODY_S = 10.0
REPLAY_AFTER_S = 12.0  # its signature expires 60 s after it was made
ENROL_FAILURES = 10  # the receiver's FAILURES_MAX


def _attempt(a: Attacker, attack: str, expected: str, refused: bool, seen: str, before: Any,
             hop: str = "HTTPS", allowed: tuple[str, ...] = ()) -> Attempt:
    intact, stored = a.ledger.judge(before, a.ledger.snapshot(), allowed_new=lambda k: k[1] in allowed,
                                    check_hub=False)
    return a.add(Attempt(hop, attack, expected, refused, seen, intact, stored, clear=bool(seen)))


async def _silent_tcp(url: str) -> float | None:
    reader, writer = await wire.connect(url, None, source="127.0.4.1", tls=False)  # type: ignore[arg-type]
    try:
        return await wire.closed_after(reader, HANDSHAKE_S + 5)
    finally:
        writer.close()


async def _half_head(a: Attacker) -> float | None:
    reader, writer = await wire.connect(a.home.platform_url, a._ssl, source="127.0.4.2")
    writer.write(b"POST /v1/events HTTP/1.1\r\nHost: platform\r\nContent-Type: appl")
    try:
        return await wire.closed_after(reader, HEAD_S + 5)
    finally:
        writer.close()


async def _trickled_body(a: Attacker) -> tuple[int, Any]:
    eid, body = a.event_body(11)
    url = a.home.platform_url + "/v1/events"
    reader, writer = await wire.connect(a.home.platform_url, a._ssl, source="127.0.4.3")
    writer.write(wire.head("POST", url, a.sign(body, eid), len(body)) + body[:5])
    try:
        return await wire.read_answer(reader, timeout=BODY_S + 10)
    finally:
        writer.close()


async def _slowloris(a: Attacker) -> tuple[bool, str]:
    home = a.home
    wire.raise_fd_limit(LORIS_CONNECTIONS + 512)
    old = wire.hold_fd_limit(home.receiver.pid, 1024)
    loris = wire.Slowloris(home.platform_url, a._ssl, LORIS_CONNECTIONS, LORIS_SOURCES)
    try:
        await loris.open()
        held = len(loris.writers)
        eid, body = a.event_body(10)
        url = home.platform_url + "/v1/events"
        t0 = time.monotonic()
        try:
            status, answer = await wire.send_split(url, a._ssl, a.sign(body, eid), body, pause_s=0)
        except (OSError, TimeoutError) as exc:
            status, answer = 0, f"not connected: {type(exc).__name__}"
        took = time.monotonic() - t0
    finally:
        loris.close()
        wire.hold_fd_limit(home.receiver.pid, old[0])
    ok = status == 201 and took <= GENUINE_WITHIN_S and held >= 1014
    what = answer.get("status") if isinstance(answer, dict) else answer
    return ok, (f"{held} half-sent heads held; genuine emergency {status} {what} {took:.1f} s after it was sent "
                f"(receiver at 1,024 descriptors)")


async def _per_peer(a: Attacker) -> tuple[bool, str]:
    url = a.home.platform_url
    held = []
    try:
        for _ in range(PER_PEER):
            held.append(await wire.connect(url, a._ssl, source="127.0.4.4"))
        try:
            extra = await wire.connect(url, a._ssl, source="127.0.4.4")
            extra[1].close()
            refused, why = False, "accepted"
        except (OSError, ConnectionError, TimeoutError) as exc:
            refused, why = True, f"closed before TLS ({type(exc).__name__})"
        status, _ = await _health(a, source="127.0.4.5")
    finally:
        for _, writer in held:
            writer.transport.abort()
    return refused and status == 200, (f"{len(held)} held from one address; connection {PER_PEER + 1}: {why}; "
                                       f"another address meanwhile: GET /v1/health {status}")


async def _health(a: Attacker, source: str) -> tuple[int, Any]:
    reader, writer = await wire.connect(a.home.platform_url, a._ssl, source=source)
    try:
        writer.write(wire.head("GET", a.home.platform_url + "/v1/health", {"Connection": "close"}, None))
        return await wire.read_answer(reader)
    finally:
        writer.close()


async def _issue_code(a: Attacker, hub_id: str) -> str:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "safebox.tools.receiver.cli", "enrol-code", "--db", str(a.home.receiver_db),
        "--hub-id", hub_id, "--ttl", "600", stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.DEVNULL)
    out, _ = await proc.communicate()
    return out.decode().strip()


def _code_spent(a: Attacker, hub_id: str) -> bool:
    con = sqlite3.connect(f"file:{a.home.receiver_db}?mode=ro", uri=True, timeout=5)
    try:
        return any(used for (used,) in con.execute("SELECT used_at FROM enrol_codes WHERE hub_id = ?", (hub_id,)))
    finally:
        con.close()


async def _enrol_from(a: Attacker, source: str, hub_id: str, code: str) -> tuple[int, Any]:
    key = Ed25519PrivateKey.generate()
    doc = json.dumps({"hub_id": hub_id, "home_id": a.home.home_id, "code": code,
                      "public_key": signing.public_key_to_text(key.public_key())}).encode()
    url = a.home.platform_url + "/v1/enrol"
    return await wire.send_split(url, a._ssl, a.sign(doc, f"{hub_id}-enrol", key=key, key_id=hub_id, url=url), doc,
                                 pause_s=0, source=source)


async def _brute_force(a: Attacker) -> None:
    """Issue 11 item 8: guessing enrolment codes from one address stops after FAILURES (10)."""
    hub_id = "hub-brute-0001"
    code = await _issue_code(a, hub_id)
    before = a.ledger.snapshot()
    answers = [await _enrol_from(a, "127.0.5.1", hub_id, f"ABCD-EFGH-{n:04d}") for n in range(ENROL_FAILURES)]
    status, answer = await _enrol_from(a, "127.0.5.1", hub_id, code)
    guessed = [s for s, _ in answers]
    reason = answer.get("reason") if isinstance(answer, dict) else answer
    _attempt(a, f"brute-forcing enrolment codes: {ENROL_FAILURES} made-up codes, then the right one, from one "
                "address", "429 too_many_failures, the code not spent",
             guessed == [401] * ENROL_FAILURES and status == 429 and not _code_spent(a, hub_id),
             f"guesses answered {sorted(set(guessed))}; the right code then: {status} {reason}; code spent: "
             f"{_code_spent(a, hub_id)}", before)
    before = a.ledger.snapshot()
    status, answer = await _enrol_from(a, "127.0.5.1", "hub-brute-0002", "ABCD-EFGH-JKMN")
    reason = answer.get("reason") if isinstance(answer, dict) else answer
    _attempt(a, "the same address goes on guessing for another hub id", "429 too_many_failures",
             status == 429, f"{status} {reason}", before)
    before = a.ledger.snapshot()
    status, answer = await _enrol_from(a, "127.0.5.2", hub_id, code)
    _attempt(a, "control: that hub enrols with its code from its own address meanwhile", "201 enrolled",
             status == 201, f"{status} accepted: {answer.get('status')}" if status == 201 else f"{status} {answer}",
             before, hop="control")


async def abuse_attacks(a: Attacker) -> None:
    home = a.home
    before = a.ledger.snapshot()
    ok, seen = await _slowloris(a)
    _attempt(a, f"slowloris: {LORIS_CONNECTIONS:,} half-sent TLS requests from {len(LORIS_SOURCES)} addresses",
             f"genuine emergency stored within {GENUINE_WITHIN_S:.0f} s", ok, seen, before,
             allowed=(a.event_body(10)[0],))

    # Three slow ones in the background (their deadlines are 10 s), judged at the end.
    before_all = a.ledger.snapshot()
    slow = [asyncio.create_task(_silent_tcp(home.platform_url)), asyncio.create_task(_half_head(a)),
            asyncio.create_task(_trickled_body(a))]
    genuine: list[str] = []

    before = a.ledger.snapshot()
    ok, seen = await _per_peer(a)
    _attempt(a, f"{PER_PEER + 1} connections from one address (per-peer cap {PER_PEER})",
             f"connection {PER_PEER + 1} closed unread", ok, seen, before)

    # Bodies in two TCP segments: read whole (content.read(n) returned only the first part).
    intruder = Ed25519PrivateKey.generate()
    doc = json.dumps({"hub_id": "hub-intruder-0003", "home_id": home.home_id, "code": "ABCD-EFGH-JKMN",
                      "public_key": signing.public_key_to_text(intruder.public_key())}).encode()
    url = home.platform_url + "/v1/enrol"
    before = a.ledger.snapshot()
    status, answer = await wire.send_split(url, a._ssl, a.sign(doc, "enrol", key=intruder, key_id="hub-intruder-0003",
                                                                url=url), doc)
    reason = answer.get("reason", "") if isinstance(answer, dict) else str(answer)
    _attempt(a, "enrolment with a made-up code, body in two TCP segments (judged on the code, not a torn digest)",
             "401 code", status == 401 and answer.get("error") == "code_unknown", f"{status} {reason}", before)

    eids, parts = zip(*(a.event_body(n, type_=events.DOOR_OPENED, device_id="240ac4bbbbbb") for n in (1, 2)))
    body = b"[" + b",".join(parts) + b"]"
    url = home.platform_url + "/v1/events:batch"
    before = a.ledger.snapshot()
    status, answer = await wire.send_split(url, a._ssl, a.sign(body, "batch-" + "5e" * 16, url=url), body)
    results = [r["status"] for r in answer.get("results", [])] if isinstance(answer, dict) else []
    _attempt(a, "control: genuine batch of 2 events, body in two TCP segments", "200, both accepted",
             status == 200 and results == ["accepted", "accepted"], f"{status} {answer.get('status')}: {results}"
             if isinstance(answer, dict) else f"{status} {answer}", before, hop="control", allowed=eids)
    genuine += eids

    eid, body = a.event_body(12)
    url = home.platform_url + "/v1/events"
    before = a.ledger.snapshot()
    captured = a.sign(body, eid)
    captured_at = time.monotonic()
    status, answer = await wire.send_split(url, a._ssl, captured, body, cut=7)
    _attempt(a, "control: genuine event, its body's first 7 bytes in their own TCP segment", "201 accepted",
             status == 201, f"{status} {answer.get('status') if isinstance(answer, dict) else answer}", before,
             hop="control", allowed=(eid,))
    genuine.append(eid)

    await _brute_force(a)

    # Replayed later in its window, not at the instant it was made (issue 11 item 12).
    await asyncio.sleep(max(0.0, REPLAY_AFTER_S - (time.monotonic() - captured_at)))
    await a.https(f"replayed request {REPLAY_AFTER_S:.0f}+ s later, still inside its acceptance window", body,
                  captured, 401, "nonce already used")

    silent, half, (status, answer) = await asyncio.gather(*slow)
    _attempt(a, "TCP connection that never starts TLS", f"closed within {HANDSHAKE_S + 3:.0f} s",
             silent is not None and silent <= HANDSHAKE_S + 3,
             f"closed after {silent:.1f} s" if silent is not None else "still open", before_all,
             allowed=tuple(genuine))
    _attempt(a, "request head never finished (slow header)", f"closed within {HEAD_S + 3:.0f} s",
             half is not None and half <= HEAD_S + 3,
             f"closed after {half:.1f} s" if half is not None else "still open", before_all,
             allowed=tuple(genuine))
    reason = answer.get("reason", "") if isinstance(answer, dict) else str(answer)
    _attempt(a, "body trickled: signed head, 5 bytes of the body, then nothing", "408 body not received",
             status == 408 and "body not received" in reason, f"{status} rejected: {reason}", before_all,
             allowed=tuple(genuine))

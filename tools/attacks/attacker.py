"""One attempt at either hop, judged (refused? data intact?), and the means to make them: frames sealed around anything, requests signed with knobs."""

from __future__ import annotations

import asyncio
import json
import os
import re
import ssl
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import aiohttp
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from http_message_signatures import HTTPMessageSigner, MappingKeyResolver, algorithms

from safebox.protocol import bthome, ccm, events, signing
from safebox.tools.attacks.ledger import Ledger, platform_rows
from safebox.tools.sim import lines

PENDANT_BUTTON_WAIT_S = 5.0
LOG_WAIT_S = 2.0
_STRANGER_PREFIX = "24:0A:C4:EE:EE:"
_MARKER_PREFIX = "24:0A:C4:EF:"


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

def sealed_frame(key: bytes, mac: bytes, counter: int, plaintext: bytes, info: int = 0x45) -> bytes:
    """Service data sealed with `key` around any plaintext (encode_objects would refuse bad objects)."""
    ct, tag = ccm.encrypt(key, bthome.nonce(mac, info, counter), plaintext)
    return bytes((info,)) + ct + bthome._u32le(counter) + tag  # noqa: SLF001 - the wire's own helper


def advertisement(service_data: bytes) -> bytes:
    """An advertisement carrying `service_data` under UUID 0xFCD2 (no length check: attackers do not check)."""
    sd = b"\xd2\xfc" + service_data
    return b"\x02\x01\x06" + bytes((len(sd) + 1, 0x16)) + sd


async def _wait_refusal(output: list[str], start: int, address: str, timeout: float,
                        end: int | None = None) -> tuple[int, lines.Refused] | None:
    """The hub's first `refused frame from <address>` line from index `start` (before `end`, when
    given: then nothing is waited for), with its index; None when none came in `timeout`."""
    deadline = time.monotonic() + timeout
    while True:
        for n, line in enumerate(output[start:end], start):
            if (refused := lines.Refused.read(line)) is not None and refused.address == address:
                return n, refused
        if end is not None or time.monotonic() > deadline:
            return None
        await asyncio.sleep(0.02)


class Attacker:
    """Runs the attempts against one SimHome."""

    def __init__(self, home: Any) -> None:
        self.home = home
        self.ledger = Ledger(home)
        self.report = Report()
        self._strangers = 0
        self._markers = 0
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
        # Then its receipt (SPEC 1.7: a heartbeat naming the ack taken): waited for until the hub
        # has it, so the device's counter at the hub is settled before the next attempt.
        line = await fw.wait_for_line(r"^receipt \d+ ", timeout=10, start=mark)
        heard = f"{device.device.address}: heartbeat, counter {line.split()[1]}"
        async with asyncio.timeout(10):
            while not any(heard in ln for ln in self.home.hub.lines):
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

    async def heard_up_to_now(self, start: int) -> int | None:
        """Put a frame from a fresh stranger on the air and wait for the hub's refusal of it; its
        index in the hub's lines, or None when it never came. The hub handles frames one at a
        time, in the order the air brings them, and logs or stores each before the next: so
        whatever an earlier transmission made the hub do (a refusal, a stored event) is done
        and said before this line. (A fixed pause would prove nothing on a slow machine.)"""
        self._markers += 1
        marker = f"{_MARKER_PREFIX}{self._markers >> 8:02X}:{self._markers & 0xFF:02X}"
        await self.home.transmit(marker, advertisement(bytes((0x45,)) + os.urandom(23)), duration_s=0.1)
        found = await _wait_refusal(self.home.hub.lines, start, marker, LOG_WAIT_S)
        return found[0] if found else None

    # -- one BLE attempt -------------------------------------------------------------------
    async def ble(self, attack: str, address: str, adv: bytes, expected: str, *,
                  expect_log: bool = True, duration_s: float = 0.25) -> Attempt:
        """Put `adv` on the air from `address`; refused when the hub logs `expected` (a regex) for
        it, and nothing stored changed once the hub has handled every frame up to a later one."""
        before = self.ledger.snapshot()
        mark = len(self.home.hub.lines)
        await self.home.transmit(address, adv, duration_s=duration_s)
        end = await self.heard_up_to_now(mark)
        found = await _wait_refusal(self.home.hub.lines, mark, address, 0, end=end)
        refusal = found[1] if found else None
        after = self.ledger.snapshot()
        intact, stored = self.ledger.judge(before, after)
        alive = self.home.hub.running and end is not None
        if expect_log:
            reason = refusal.reason if refusal else ""
            refused = bool(refusal) and re.search(expected, reason) is not None and alive
            seen = reason or "no refusal logged"
        else:
            refused = refusal is None and alive
            seen = "nothing logged, nothing stored; hub still running" if refused else (
                f"refused frame from {address}: {refusal.reason}" if refusal else "hub not running")
        if not self.home.hub.running:
            seen += " (HUB PROCESS ENDED)"
        elif end is None:
            seen += " (the hub never refused the later stranger frame: not listening)"
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

"""An urgent event as one SMS (SPEC.md section 5), and the contacts' message. CPython only.

The machine message is GSM 7-bit text, so that it survives any SMS path (a modem in PDU or
text mode, an SMS gateway's HTTP callback, an operator's SMSC that mangles 8-bit data):

    SB1 <hub_id> <home_id> <kind> <source> <time> <signature>

`kind` is the event type's letter, then the device role's letter for a device event;
`source` is the event id for a device event and `-<seq>` for the hub's own (its id is
`<hub_id>-<seq>`); `time` is occurred_at in Unix milliseconds, base 36; `signature` is the
hub's Ed25519 signature (the key the platform enrolled) over `safebox-sms-v1\\n` + the text
before it, base64 without padding. From it the platform rebuilds the event body (data {}).
"""

from __future__ import annotations

import base64
import re
import time
from datetime import datetime
from dataclasses import dataclass
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from safebox.protocol import events, smspdu

VERSION = "SB1"
DOMAIN = b"safebox-sms-v1\n"
MAX_CHARS = smspdu.MAX_SEPTETS
_SIG_CHARS = 86  # 64 octets in base64 without padding
TYPE_LETTERS = {events.EMERGENCY: "E", events.COMMUNITY_SERVICE: "C", events.LIFE_SERVICE: "L",
                events.TOILET_OVERDUE: "O", events.DOOR_INACTIVE: "I", events.TEST_ALARM: "T"}
ROLE_LETTERS = {"pendant": "P", "front_door": "F", "toilet_door": "W"}
_TYPES = {v: k for k, v in TYPE_LETTERS.items()}
_ROLES = {v: k for k, v in ROLE_LETTERS.items()}
_ID = r"[a-z0-9][a-z0-9-]{1,62}[a-z0-9]"
_FORM = re.compile(rf"^{VERSION} ({_ID}) ({_ID}) ([A-Z][A-Z]?) ([0-9a-f]{{12}}-[0-9]{{1,10}}|-[0-9]{{1,10}}) "
                   rf"([0-9a-z]{{1,9}}) ([A-Za-z0-9+/]{{{_SIG_CHARS}}})$")
assert set(TYPE_LETTERS) == events.URGENT, "every urgent type needs a letter"


class SmsError(ValueError):
    """A message that is not an SB1 event, or one that cannot be made; the message says why."""


@dataclass(frozen=True)
class SmsEvent:
    hub_id: str
    home_id: str
    type: str
    event_id: str
    device: dict[str, str] | None
    counter: int | None
    occurred_ms: int
    signed: bytes  # what the signature covers
    signature: bytes

    def body(self) -> dict[str, Any]:
        """The event body the platform stores, as the hub would have sent it with empty data."""
        return events.make(event_id=self.event_id, type=self.type, hub_id=self.hub_id, home_id=self.home_id,
                           occurred_at=self.occurred_ms / 1000, device=self.device, counter=self.counter)

    def verify(self, key: Ed25519PublicKey) -> bool:
        try:
            key.verify(self.signature, self.signed)
            return True
        except InvalidSignature:
            return False


def _b36(n: int) -> str:
    digits = "0123456789abcdefghijklmnopqrstuvwxyz"
    out = ""
    while True:
        n, r = divmod(n, 36)
        out = digits[r] + out
        if n == 0:
            return out


def fits(hub_id: str, home_id: str) -> bool:
    """True when any urgent event of this hub fits one SMS (counter and time at their longest)."""
    longest = f"{VERSION} {hub_id} {home_id} EP {'0' * 12}-{'9' * 10} {'z' * 9} {'A' * _SIG_CHARS}"
    return len(longest) <= MAX_CHARS


def compose(body: dict[str, Any], key: Ed25519PrivateKey) -> str:
    """The SB1 text for an urgent event body; SmsError when the type is not urgent or it does not fit."""
    kind = TYPE_LETTERS.get(body["type"])
    if kind is None:
        raise SmsError(f"{body['type']!r} is not an urgent type: it does not go by SMS")
    device = body.get("device")
    if device is not None:
        kind += ROLE_LETTERS[device["role"]]
        source = body["event_id"]
    else:
        prefix = body["hub_id"] + "-"
        if not body["event_id"].startswith(prefix):
            raise SmsError(f"hub event id {body['event_id']!r} does not start with the hub id")
        source = "-" + body["event_id"][len(prefix):]
    when = _parse_time(body["occurred_at"])
    head = f"{VERSION} {body['hub_id']} {body['home_id']} {kind} {source} {_b36(round(when * 1000))}"
    signature = key.sign(DOMAIN + head.encode("ascii"))
    text = head + " " + base64.b64encode(signature).decode("ascii").rstrip("=")
    if len(text) > MAX_CHARS:
        raise SmsError(f"{len(text)} characters do not fit one SMS ({MAX_CHARS}): shorten hub_id or home_id")
    return text


def _parse_time(text: str) -> float:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


def looks_like(text: str) -> bool:
    """An SB1 message (to be verified), as opposed to any other SMS a number receives."""
    return text.startswith(VERSION + " ")


def parse(text: str) -> SmsEvent:
    """Read an SB1 text (not yet verified: see SmsEvent.verify); SmsError says what is wrong."""
    m = _FORM.match(text.strip())
    if m is None:
        raise SmsError("not an SB1 event message (SPEC 5.1)")
    hub_id, home_id, kind, source, when, sig = m.groups()
    type_ = _TYPES.get(kind[0])
    if type_ is None:
        raise SmsError(f"unknown event letter {kind[0]!r}")
    if source.startswith("-"):
        if len(kind) != 1:
            raise SmsError("a hub event carries no device role")
        event_id, device, counter = f"{hub_id}{source}", None, None
    else:
        role = _ROLES.get(kind[1:])
        if role is None:
            raise SmsError(f"a device event needs a known role letter, got {kind[1:]!r}")
        dev, _, count = source.partition("-")
        event_id, device, counter = source, {"id": dev, "role": role}, int(count)
        if counter > 0xFFFFFFFF:
            raise SmsError("counter: 0 .. 2^32-1")
    head = text.strip().rsplit(" ", 1)[0]
    return SmsEvent(hub_id, home_id, type_, event_id, device, counter, int(when, 36),
                    DOMAIN + head.encode("ascii"), base64.b64decode(sig + "=="))


# -- the contacts' message (Chinese, UCS-2: at most 70 characters, one SMS) ---------------

WHAT_ZH = {events.EMERGENCY: "按了紧急求助", events.COMMUNITY_SERVICE: "请求社区服务",
           events.LIFE_SERVICE: "请求生活服务", events.TOILET_OVERDUE: "在卫生间超时未出",
           events.DOOR_INACTIVE: "24小时未开门", events.TEST_ALARM: "测试报警（无需出动）"}
CONTACT_MAX = smspdu.MAX_OCTETS // 2


def contact_text(body: dict[str, Any], who: str, *, utc_offset_s: int = 8 * 3600) -> str:
    """`who` (e.g. 王秀英，幸福里3号) + what + when (local hh:mm) + that the platform was not reached.
    `who` is shortened so the whole stays one SMS."""
    when = time.gmtime(_parse_time(body["occurred_at"]) + utc_offset_s)
    what = WHAT_ZH.get(body["type"], body["type"])
    tail = f"{what}（{when.tm_mon}月{when.tm_mday}日{when.tm_hour:02d}:{when.tm_min:02d}）。网络中断，平台未收到，请尽快联系。"
    prefix = "【安全盒】"
    room = CONTACT_MAX - len(prefix) - len(tail)
    return prefix + who[:max(room, 0)] + tail

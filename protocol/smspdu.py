"""SMS PDUs as a modem speaks them in PDU mode (3GPP TS 23.040, alphabet of TS 23.038). CPython only.

What the safebox needs, no more: one-part SMS-SUBMIT (the hub sends) and SMS-DELIVER (a
modem receives), the GSM 7-bit default alphabet with its extension table, UCS-2 for Chinese,
8-bit data read back, international and national numbers. A concatenated message (user data
header) is read as its text after the header; the hub never sends one (SPEC 5 fits one SMS).

On the AT line a PDU is hex, led by the service-centre address (`00`: the SIM's own) for
`AT+CMGS` in PDU mode; `AT+CMGS=<length>` counts the octets after that address.
"""

from __future__ import annotations

import calendar
import time
from dataclasses import dataclass

# TS 23.038 6.2.1: the default alphabet, in code order; \x1b is the escape to the extension table.
GSM7 = ("@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞ\x1bÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?"
        "¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà")
GSM7_EXT = {0x0A: "\f", 0x14: "^", 0x28: "{", 0x29: "}", 0x2F: "\\", 0x3C: "[", 0x3D: "~", 0x3E: "]",
            0x40: "|", 0x65: "€"}
_TO_GSM7 = {ch: code for code, ch in enumerate(GSM7) if code != 0x1B}
_TO_EXT = {ch: code for code, ch in GSM7_EXT.items()}

DCS_GSM7, DCS_8BIT, DCS_UCS2 = 0x00, 0x04, 0x08
MAX_SEPTETS, MAX_OCTETS = 160, 140


class PduError(ValueError):
    """A PDU that cannot be read, or a message that does not fit one SMS; the message says which."""


def gsm7_septets(text: str) -> list[int]:
    """Text -> septet codes (an extension character takes two); PduError names a character outside."""
    out: list[int] = []
    for ch in text:
        if ch in _TO_GSM7:
            out.append(_TO_GSM7[ch])
        elif ch in _TO_EXT:
            out += [0x1B, _TO_EXT[ch]]
        else:
            raise PduError(f"{ch!r} is not in the GSM 7-bit alphabet")
    return out


def is_gsm7(text: str) -> bool:
    return all(ch in _TO_GSM7 or ch in _TO_EXT for ch in text)


def gsm7_text(septets: list[int]) -> str:
    out, escaped = [], False
    for code in septets:
        if escaped:
            out.append(GSM7_EXT.get(code, " "))  # TS 23.038: an unknown extension shows as a space
            escaped = False
        elif code == 0x1B:
            escaped = True
        else:
            out.append(GSM7[code])
    return "".join(out)


def pack_septets(septets: list[int], fill_bits: int = 0) -> bytes:
    """Septets packed LSB-first into octets, after `fill_bits` zero bits (a header's padding)."""
    acc, nbits, out = 0, fill_bits, bytearray()
    for s in septets:
        acc |= (s & 0x7F) << nbits
        nbits += 7
        while nbits >= 8:
            out.append(acc & 0xFF)
            acc >>= 8
            nbits -= 8
    if nbits:
        out.append(acc & 0xFF)
    return bytes(out)


def unpack_septets(data: bytes, count: int, fill_bits: int = 0) -> list[int]:
    value = int.from_bytes(data, "little") >> fill_bits
    if (len(data) * 8 - fill_bits) // 7 < count:
        raise PduError(f"user data holds fewer than {count} septets")
    return [(value >> (7 * i)) & 0x7F for i in range(count)]


# -- addresses and times (TS 23.040 9.1.2.5, 9.2.3.11) -----------------------------------

def _semi_octets(digits: str) -> bytes:
    if len(digits) % 2:
        digits += "F"
    return bytes.fromhex("".join(digits[i + 1] + digits[i] for i in range(0, len(digits), 2)))


def _digits(data: bytes, count: int) -> str:
    text = "".join(f"{b & 0x0F:X}{b >> 4:X}" for b in data)
    return text[:count]


def encode_address(number: str) -> bytes:
    """'+8613800138000' -> length (digits), type 0x91 (international) or 0x81, semi-octets."""
    digits = number[1:] if number.startswith("+") else number
    if not digits.isdigit() or not 1 <= len(digits) <= 20:
        raise PduError(f"phone number {number!r}: digits only, optionally led by '+'")
    return bytes([len(digits), 0x91 if number.startswith("+") else 0x81]) + _semi_octets(digits)


def decode_address(data: bytes, at: int) -> tuple[str, int]:
    """(number, next index); an alphanumeric sender (type 0x50) is read as GSM 7-bit text."""
    count, kind = data[at], data[at + 1]
    size = (count + 1) // 2
    raw = data[at + 2: at + 2 + size]
    if len(raw) < size:
        raise PduError("address runs past the end of the PDU")
    if kind & 0x70 == 0x50:
        number = gsm7_text(unpack_septets(raw, count * 4 // 7))
    else:
        number = ("+" if kind & 0x70 == 0x10 else "") + _digits(raw, count)
    return number, at + 2 + size


def encode_scts(t: float, tz_quarters: int = 0) -> bytes:
    """Service-centre time stamp: local time at `tz_quarters` quarter-hours from UTC."""
    tm = time.gmtime(int(t) + tz_quarters * 900)
    digits = f"{tm.tm_year % 100:02d}{tm.tm_mon:02d}{tm.tm_mday:02d}{tm.tm_hour:02d}{tm.tm_min:02d}{tm.tm_sec:02d}"
    tz = f"{abs(tz_quarters):02d}"
    tz_octet = _semi_octets(tz)[0] | (0x08 if tz_quarters < 0 else 0)
    return _semi_octets(digits) + bytes([tz_octet])


def decode_scts(data: bytes) -> float:
    """Seven octets -> Unix seconds (UTC)."""
    if len(data) != 7:
        raise PduError("time stamp must be 7 octets")
    d = _digits(data[:6], 12)
    try:
        fields = [int(d[i:i + 2]) for i in range(0, 12, 2)]
    except ValueError:
        raise PduError(f"time stamp digits {d!r} are not decimal") from None
    tz_raw = data[6]
    quarters = (tz_raw & 0x07) * 10 + (tz_raw >> 4)
    if tz_raw & 0x08:
        quarters = -quarters
    year, month, day, hour, minute, second = fields
    return calendar.timegm(((2000 if year < 90 else 1900) + year, month, day, hour, minute, second, 0, 0, 0)) - quarters * 900


# -- user data -----------------------------------------------------------------------------

def _user_data(text: str | bytes) -> tuple[int, int, bytes]:
    """(dcs, udl, ud) for one SMS; PduError when it does not fit."""
    if isinstance(text, bytes):
        if len(text) > MAX_OCTETS:
            raise PduError(f"{len(text)} octets of data do not fit one SMS ({MAX_OCTETS})")
        return DCS_8BIT, len(text), text
    if is_gsm7(text):
        septets = gsm7_septets(text)
        if len(septets) > MAX_SEPTETS:
            raise PduError(f"{len(septets)} GSM 7-bit characters do not fit one SMS ({MAX_SEPTETS})")
        return DCS_GSM7, len(septets), pack_septets(septets)
    ud = text.encode("utf-16-be")
    if len(ud) > MAX_OCTETS:
        raise PduError(f"{len(ud) // 2} UCS-2 characters do not fit one SMS ({MAX_OCTETS // 2})")
    return DCS_UCS2, len(ud), ud


def _alphabet(dcs: int) -> int:
    """TS 23.038 4: the alphabet of a data coding scheme (general, message waiting, class groups)."""
    group = dcs >> 4
    if group <= 0x7:
        return {0x00: DCS_GSM7, 0x04: DCS_8BIT, 0x08: DCS_UCS2}.get(dcs & 0x0C, DCS_8BIT)
    if group == 0xF:
        return DCS_8BIT if dcs & 0x04 else DCS_GSM7
    return DCS_UCS2 if group == 0xE else DCS_GSM7


def _read_user_data(pdu: bytes, at: int, dcs: int, udhi: bool) -> str | bytes:
    if at >= len(pdu):
        raise PduError("no user data length")
    udl, ud = pdu[at], pdu[at + 1:]
    alphabet = _alphabet(dcs)
    header = 0
    if udhi:
        if not ud:
            raise PduError("user data header announced but absent")
        header = ud[0] + 1
    if alphabet == DCS_GSM7:
        fill = (7 - (header * 8) % 7) % 7
        total = udl
        septets = unpack_septets(ud, total)
        skip = (header * 8 + fill) // 7
        if header:
            septets = unpack_septets(ud[header:], total - skip, fill)
        return gsm7_text(septets)
    if len(ud) < udl:
        raise PduError(f"user data shorter ({len(ud)}) than its length ({udl})")
    body = ud[header:udl]
    if alphabet == DCS_UCS2:
        try:
            return body.decode("utf-16-be")
        except UnicodeDecodeError:
            raise PduError("UCS-2 user data is not valid UTF-16") from None
    return bytes(body)


@dataclass(frozen=True)
class Submit:
    """SMS-SUBMIT: what a phone hands its service centre."""

    number: str
    text: str | bytes
    reference: int = 0
    validity_minutes: int | None = None


@dataclass(frozen=True)
class Deliver:
    """SMS-DELIVER: what a phone receives."""

    sender: str
    text: str | bytes
    sent_at: float  # the service centre's time stamp, Unix seconds


def _validity(minutes: int) -> int:
    """TS 23.040 9.2.3.12.1: the relative validity period octet (rounded up)."""
    if minutes <= 720:
        return max(0, -(-minutes // 5) - 1)
    if minutes <= 1440:
        return 143 + -(-(minutes - 720) // 30)
    if minutes <= 30 * 1440:
        return 166 + -(-minutes // 1440)
    return min(255, 192 + -(-minutes // 10080))


def encode_submit(msg: Submit) -> tuple[str, int]:
    """(hex for AT+CMGS in PDU mode, the length AT+CMGS=<length> takes); SCA 00 = the SIM's centre."""
    dcs, udl, ud = _user_data(msg.text)
    first = 0x01 | (0x10 if msg.validity_minutes is not None else 0)
    tpdu = bytes([first, msg.reference & 0xFF]) + encode_address(msg.number) + bytes([0x00, dcs])
    if msg.validity_minutes is not None:
        tpdu += bytes([_validity(msg.validity_minutes)])
    tpdu += bytes([udl]) + ud
    return "00" + tpdu.hex().upper(), len(tpdu)


def _skip_sca(pdu: bytes) -> int:
    if not pdu:
        raise PduError("empty PDU")
    return 1 + pdu[0]


def decode_submit(hex_pdu: str, *, with_sca: bool = True) -> Submit:
    """What a service centre (or the emulated modem) reads from AT+CMGS in PDU mode."""
    pdu = _bytes(hex_pdu)
    try:
        at = _skip_sca(pdu) if with_sca else 0
        first = pdu[at]
        if first & 0x03 != 0x01:
            raise PduError(f"first octet {first:#04x} is not an SMS-SUBMIT")
        reference = pdu[at + 1]
        number, at = decode_address(pdu, at + 2)
        dcs = pdu[at + 1]
        at += 2
        vpf = (first >> 3) & 0x03
        validity = None
        if vpf == 0x02:
            validity, at = pdu[at], at + 1
        elif vpf in (0x01, 0x03):
            at += 7
        text = _read_user_data(pdu, at, dcs, bool(first & 0x40))
    except IndexError:
        raise PduError("PDU ends too early") from None
    return Submit(number, text, reference, None if validity is None else _validity_minutes(validity))


def _validity_minutes(octet: int) -> int:
    if octet <= 143:
        return (octet + 1) * 5
    if octet <= 167:
        return 720 + (octet - 143) * 30
    if octet <= 196:
        return (octet - 166) * 1440
    return (octet - 192) * 10080


def encode_deliver(msg: Deliver, *, smsc: str | None = None, tz_quarters: int = 0) -> tuple[str, int]:
    """(hex as +CMT/+CMGR show it, with the service-centre address; the TPDU length)."""
    dcs, udl, ud = _user_data(msg.text)
    tpdu = bytes([0x04]) + encode_address(msg.sender) + bytes([0x00, dcs]) \
        + encode_scts(msg.sent_at, tz_quarters) + bytes([udl]) + ud
    if smsc is None:
        sca = b"\x00"
    else:
        addr = encode_address(smsc)
        sca = bytes([len(addr) - 1]) + addr[1:]  # the SCA's length counts octets, not digits
    return (sca + tpdu).hex().upper(), len(tpdu)


def decode_deliver(hex_pdu: str) -> Deliver:
    """An SMS-DELIVER as a modem shows it (+CMT, +CMGR, +CMGL in PDU mode)."""
    pdu = _bytes(hex_pdu)
    try:
        at = _skip_sca(pdu)
        first = pdu[at]
        if first & 0x03 != 0x00:
            raise PduError(f"first octet {first:#04x} is not an SMS-DELIVER")
        sender, at = decode_address(pdu, at + 1)
        dcs = pdu[at + 1]
        sent_at = decode_scts(pdu[at + 2: at + 9])
        text = _read_user_data(pdu, at + 9, dcs, bool(first & 0x40))
    except IndexError:
        raise PduError("PDU ends too early") from None
    return Deliver(sender, text, sent_at)


def _bytes(hex_pdu: str) -> bytes:
    try:
        return bytes.fromhex(hex_pdu.strip())
    except ValueError:
        raise PduError("PDU is not hexadecimal") from None

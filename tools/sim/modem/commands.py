"""The emulated modem's AT command table (3GPP TS 27.007 for the phone, TS 27.005 for SMS).

Each handler answers through the emulator (`final`, `prompt`); error codes are the
standard's: +CME ERROR 10 SIM not inserted, 30 no network service, 50 incorrect parameters,
100 unknown; +CMS ERROR 304 invalid PDU mode parameter, 305 invalid text mode parameter,
310 SIM not inserted, 321 invalid memory index, 330 SMSC address unknown, 331 no network
service, 332 network timeout, 500 unknown error.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

from safebox.protocol import smspdu

from .network import SMSC

if TYPE_CHECKING:
    from .emulator import ModemEmulator

CME_TEXT = {3: "operation not allowed", 4: "operation not supported", 10: "SIM not inserted",
            30: "no network service", 50: "incorrect parameters", 100: "unknown"}
CMS_TEXT = {304: "invalid PDU mode parameter", 305: "invalid text mode parameter", 310: "SIM not inserted",
            321: "invalid memory index", 330: "SMSC address unknown", 331: "no network service",
            332: "network timeout", 500: "unknown error"}
COMMAND_S = 0.02  # a plain command's answer time


@dataclass
class Settings:
    echo: bool = True
    cmee: int = 0
    creg: int = 0
    pdu_mode: bool = True  # TS 27.005: +CMGF defaults to 0 (PDU)
    charset: str = "GSM"
    cnmi_mt: int = 0


@dataclass(frozen=True)
class Prompt:
    number: str | None  # text mode: the destination; PDU mode: None
    length: int | None  # PDU mode: the TPDU length announced


def _cme(modem: ModemEmulator, code: int) -> None:
    if modem.cmd.cmee == 0:
        modem.final([], "ERROR")
    else:
        modem.final([], f"+CME ERROR: {code if modem.cmd.cmee == 1 else CME_TEXT[code]}")


def _cms(modem: ModemEmulator, code: int) -> None:
    if modem.cmd.cmee == 0:
        modem.final([], "ERROR")
    else:
        modem.final([], f"+CMS ERROR: {code if modem.cmd.cmee == 1 else CMS_TEXT[code]}")


def scts_text(t: float) -> str:
    tm = time.gmtime(int(t) + 8 * 3600)
    return f"{tm.tm_year % 100:02d}/{tm.tm_mon:02d}/{tm.tm_mday:02d},{tm.tm_hour:02d}:{tm.tm_min:02d}:{tm.tm_sec:02d}+32"


def show(modem: ModemEmulator, text: str | bytes) -> str:
    """A received text as text mode shows it under the current AT+CSCS."""
    if isinstance(text, bytes):
        return text.hex().upper()
    if modem.cmd.charset == "UCS2" or not smspdu.is_gsm7(text):
        return text.encode("utf-16-be").hex().upper()
    return text


def _split(line: str) -> list[str] | None:
    """'AT+CMGF=0;+CNMI=2,2' -> ['+CMGF=0', '+CNMI=2,2']; None when it is not an AT line."""
    if not line[:2].upper() == "AT":
        return None
    rest = line[2:]
    if not rest:
        return [""]
    parts = [p.strip() for p in rest.split(";") if p.strip()]
    return parts or [""]


async def run_line(modem: ModemEmulator, line: str) -> None:
    parts = _split(line)
    if parts is None:
        modem.final([], "ERROR")
        return
    await modem.pause(COMMAND_S)
    body: list[str] = []
    for i, part in enumerate(parts):
        result = await _one(modem, part, body, last=i == len(parts) - 1)
        if result is None:  # the handler answered (an error or a prompt) itself
            return
    modem.final(body, "OK")


async def _one(modem: ModemEmulator, cmd: str, body: list[str], *, last: bool) -> bool | None:
    upper = cmd.upper()
    basic = re.fullmatch(r"(E|Z|I|&F|V)([01]?)", upper)
    if upper == "" or basic:
        if basic and basic.group(1) == "E":
            modem.cmd.echo = basic.group(2) != "0"
        elif basic and basic.group(1) in ("Z", "&F"):
            echo = modem.cmd.echo
            modem.cmd.__init__()  # type: ignore[misc]
            modem.cmd.echo = echo
        elif basic and basic.group(1) == "I":
            body += ["Quectel", modem.model, "Revision: EC25EFAR06A03M4G"]
        return True
    m = re.fullmatch(r"\+([A-Z]+)(=\?|\?|=(.*))?", cmd, re.IGNORECASE)
    if m is None:
        modem.final([], "ERROR")
        return None
    name, op, arg = m.group(1).upper(), m.group(2) or "", m.group(3)
    handler = _TABLE.get(name)
    if handler is None:
        modem.final([], "ERROR")
        return None
    if name in _NEEDS_SIM and not modem.sim:
        if name.startswith("CM"):
            _cms(modem, 310)
        else:
            _cme(modem, 10)
        return None
    if name in _IDENTITY:
        return await _identity(modem, op, arg, body, name)
    return await handler(modem, op, arg, body)


def _ints(arg: str | None) -> list[int] | None:
    try:
        return [int(x) if x.strip() else 0 for x in (arg or "").split(",")]
    except ValueError:
        return None


# Identification: answered with one line, whatever the operator ("AT+CGMI", "AT+CGMI?").
_IDENTITY = {"CGMI": lambda m: "Quectel", "CGMM": lambda m: m.model, "CGMR": lambda m: "Revision: EC25EFAR06A03M4G",
             "CGSN": lambda m: m.imei, "CIMI": lambda m: "460001234567890"}


async def _identity(modem, op, arg, body, name=""):
    body.append(_IDENTITY[name](modem))
    return True


async def _cmee(modem, op, arg, body):
    if op == "?":
        body.append(f"+CMEE: {modem.cmd.cmee}")
    elif op == "=?":
        body.append("+CMEE: (0-2)")
    else:
        vals = _ints(arg)
        if vals is None or vals[0] not in (0, 1, 2):
            _cme(modem, 50)
            return None
        modem.cmd.cmee = vals[0]
    return True


async def _cfun(modem, op, arg, body):
    if op == "?":
        body.append("+CFUN: 1")
    return True


async def _cpin(modem, op, arg, body):
    if op != "?":
        _cme(modem, 4)
        return None
    body.append("+CPIN: READY")
    return True


async def _creg(modem, op, arg, body):
    if op == "?":
        body.append(f"+CREG: {modem.cmd.creg},{modem.registration()}")
    elif op == "=?":
        body.append("+CREG: (0-2)")
    else:
        vals = _ints(arg)
        if vals is None or vals[0] not in (0, 1, 2):
            _cme(modem, 50)
            return None
        modem.cmd.creg = vals[0]
    return True


async def _csq(modem, op, arg, body):
    rssi = modem.rssi if modem.registered() else 99
    body.append(f"+CSQ: {rssi},99")
    return True


async def _cops(modem, op, arg, body):
    if op == "?":
        body.append('+COPS: 0,0,"CHINA MOBILE",7' if modem.registered() else "+COPS: 0")
    return True


async def _cmgf(modem, op, arg, body):
    if op == "?":
        body.append(f"+CMGF: {0 if modem.cmd.pdu_mode else 1}")
    elif op == "=?":
        body.append("+CMGF: (0,1)")
    else:
        vals = _ints(arg)
        if vals is None or vals[0] not in (0, 1):
            _cms(modem, 500)
            return None
        modem.cmd.pdu_mode = vals[0] == 0
    return True


async def _cscs(modem, op, arg, body):
    if op == "?":
        body.append(f'+CSCS: "{modem.cmd.charset}"')
    elif op == "=?":
        body.append('+CSCS: ("GSM","IRA","UCS2")')
    else:
        value = (arg or "").strip('"').upper()
        if value not in ("GSM", "IRA", "UCS2"):
            _cme(modem, 50)
            return None
        modem.cmd.charset = value
    return True


async def _csca(modem, op, arg, body):
    if op == "?":
        body.append(f'+CSCA: "{SMSC}",145')
    return True


async def _accept(modem, op, arg, body):
    return True  # +CSMP, +CLIP, +CRC, +CVHU: accepted and not modelled


async def _cnmi(modem, op, arg, body):
    if op == "?":
        body.append(f"+CNMI: 2,{modem.cmd.cnmi_mt},0,0,0")
    elif op == "=?":
        body.append("+CNMI: (0-2),(0-3),(0,2),(0-2),(0,1)")
    else:
        vals = _ints(arg)
        if vals is None or len(vals) < 2 or vals[1] not in (0, 1, 2, 3):
            _cms(modem, 500)
            return None
        modem.cmd.cnmi_mt = min(vals[1], 2)
    return True


async def _cpms(modem, op, arg, body):
    used = sum(1 for m in modem.stored if m is not None)
    if op == "=?":
        body.append('+CPMS: ("SM","ME"),("SM","ME"),("SM","ME")')
    elif op == "?":
        body.append(f'+CPMS: "SM",{used},30,"SM",{used},30,"SM",{used},30')
    else:
        body.append(f"+CPMS: {used},30,{used},30,{used},30")
    return True


async def _cmgs(modem, op, arg, body):
    if op == "=?":
        return True
    if modem.cmd.pdu_mode:
        vals = _ints(arg)
        if vals is None or not 7 <= vals[0] <= 164:
            _cms(modem, 304)
            return None
        modem.prompt(Prompt(None, vals[0]))
    else:
        number = (arg or "").split(",")[0].strip().strip('"')
        if modem.cmd.charset == "UCS2":
            try:
                number = bytes.fromhex(number).decode("utf-16-be")
            except ValueError:
                _cms(modem, 305)
                return None
        if not re.fullmatch(r"\+?[0-9]{1,20}", number):
            _cms(modem, 305)
            return None
        modem.prompt(Prompt(number, None))
    return None


async def finish_send(modem: ModemEmulator, prompt: Prompt, payload: str) -> None:
    """After Ctrl-Z: read the message, take the network's time, answer +CMGS or +CMS ERROR."""
    if prompt.number is None:
        try:
            submit = smspdu.decode_submit(payload)
            if len(bytes.fromhex(payload)) - 1 - bytes.fromhex(payload)[0] != prompt.length:
                raise smspdu.PduError("length differs from AT+CMGS")
        except (smspdu.PduError, ValueError):
            await modem.pause(0.1)
            _cms(modem, 304)
            return
        number, text = submit.number, submit.text
    else:
        number, text = prompt.number, payload
        if modem.cmd.charset == "UCS2":
            try:
                text = bytes.fromhex(payload.strip()).decode("utf-16-be")
            except ValueError:
                _cms(modem, 305)
                return
    low, high = modem.send_s
    if not modem.registered():
        await modem.pause(low)
        _cms(modem, 331)
        return
    await modem.pause(modem.rng.uniform(low, high))
    if modem.refuse_sms is not None:
        _cms(modem, modem.refuse_sms)
        return
    if not modem.registered():  # lost the network while sending
        _cms(modem, 332)
        return
    mr = modem.next_mr()
    modem.sent.append((mr, number, text))
    modem.network.submit(modem.number, number, text)
    modem.final([f"+CMGS: {mr}"], "OK")


_STAT = {"REC UNREAD": 0, "REC READ": 1, "ALL": 4}


def _listing(modem: ModemEmulator, index: int, msg: dict, prefix: str) -> list[str]:
    stat = 1 if msg["read"] else 0
    if modem.cmd.pdu_mode:
        hex_pdu, length = smspdu.encode_deliver(smspdu.Deliver(msg["sender"], msg["text"], msg["sent_at"]),
                                                smsc=SMSC, tz_quarters=32)
        head = f"{prefix}: {index},{stat},,{length}" if prefix == "+CMGL" else f"{prefix}: {stat},,{length}"
        return [head, hex_pdu]
    name = "REC READ" if msg["read"] else "REC UNREAD"
    where = f"{index}," if prefix == "+CMGL" else ""
    return [f'{prefix}: {where}"{name}","{msg["sender"]}",,"{scts_text(msg["sent_at"])}"', show(modem, msg["text"])]


async def _cmgl(modem, op, arg, body):
    if op == "=?":
        body.append("+CMGL: (0-4)" if modem.cmd.pdu_mode else '+CMGL: ("REC UNREAD","REC READ","ALL")')
        return True
    raw = (arg or "").strip('"').upper() or ("0" if modem.cmd.pdu_mode else "REC UNREAD")
    want = int(raw) if raw.isdigit() else _STAT.get(raw)
    if want is None:
        _cms(modem, 500)
        return None
    for index, msg in enumerate(modem.stored, start=1):
        if msg is None or (want != 4 and (1 if msg["read"] else 0) != want):
            continue
        body += _listing(modem, index, msg, "+CMGL")
        msg["read"] = True
    return True


async def _cmgr(modem, op, arg, body):
    vals = _ints(arg)
    if vals is None or not 1 <= vals[0] <= len(modem.stored) or modem.stored[vals[0] - 1] is None:
        _cms(modem, 321)
        return None
    msg = modem.stored[vals[0] - 1]
    body += _listing(modem, vals[0], msg, "+CMGR")
    msg["read"] = True
    return True


async def _cmgd(modem, op, arg, body):
    if op == "=?":
        body.append("+CMGD: (1-30),(0-4)")
        return True
    vals = _ints(arg)
    if vals is None:
        _cms(modem, 321)
        return None
    flag = vals[1] if len(vals) > 1 else 0
    if flag == 4:
        modem.stored = [None] * len(modem.stored)
    elif 1 <= vals[0] <= len(modem.stored):
        modem.stored[vals[0] - 1] = None
    elif flag == 0:
        _cms(modem, 321)
        return None
    return True


_TABLE = {**{name: _identity for name in _IDENTITY}, "CMEE": _cmee,
          "CFUN": _cfun, "CPIN": _cpin, "CREG": _creg, "CSQ": _csq, "COPS": _cops, "CMGF": _cmgf,
          "CSCS": _cscs, "CSCA": _csca, "CSMP": _accept, "CLIP": _accept, "CRC": _accept, "CVHU": _accept,
          "CNMI": _cnmi, "CPMS": _cpms, "CMGS": _cmgs, "CMGL": _cmgl, "CMGR": _cmgr, "CMGD": _cmgd}
_NEEDS_SIM = {"CIMI", "CPIN", "CMGS", "CMGL", "CMGR", "CMGD", "CPMS", "CSCA"}

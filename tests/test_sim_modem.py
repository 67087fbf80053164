"""The emulated modem (tools/sim/modem) checked on its own: raw AT exchanges as TS 27.005 / 27.007
write them, and a kept modem library (python-gsmmodem-new) driving it, so it is not shaped to our client."""

from __future__ import annotations

import asyncio
import random

import pytest
import serial_asyncio_fast
from gsmmodem.modem import GsmModem

from safebox.protocol import smspdu
from safebox.tools.sim.modem.emulator import ModemEmulator
from safebox.tools.sim.modem.network import CellularNetwork

A, B = "+8613800138000", "+8613900139000"


class Raw:
    """Bytes in, bytes out: no AT parsing of ours between the test and the emulator."""

    def __init__(self, reader, writer) -> None:
        self.reader, self.writer = reader, writer

    async def until(self, *ends: bytes, timeout_s: float = 10.0) -> bytes:
        out = b""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        while not any(out.endswith(end) for end in ends):
            out += await asyncio.wait_for(self.reader.read(256), max(0.01, deadline - loop.time()))
        return out

    async def at(self, line: str) -> bytes:
        self.writer.write(line.encode() + b"\r")
        return await self._final()

    async def _final(self) -> bytes:
        out = b""
        while True:
            out += await self.until(b"\r\n", b"> ")
            if out.endswith(b"> ") or out.endswith(b"OK\r\n") or b"ERROR" in out.splitlines()[-1]:
                return out


@pytest.fixture
async def world(tmp_path):
    net = CellularNetwork(delay_s=(0.05, 0.1), rng=random.Random(3))
    a = ModemEmulator(net, A, tmp_path / "a", time_scale=0.05)
    b = ModemEmulator(net, B, tmp_path / "b", time_scale=0.05)
    a.plug()
    b.plug()
    yield net, a, b
    a.close()
    b.close()
    await net.close()


async def _open(modem) -> Raw:
    reader, writer = await serial_asyncio_fast.open_serial_connection(url=str(modem.link), baudrate=115200)
    return Raw(reader, writer)


async def test_text_mode_send_as_ts_27005_shows_it(world):
    net, a, b = world
    raw = await _open(a)
    assert await raw.at("AT") == b"AT\r\r\nOK\r\n"  # echo is on until ATE0, as on real modems
    assert await raw.at("ATE0") == b"ATE0\r\r\nOK\r\n"
    assert await raw.at("AT+CMGF=1") == b"\r\nOK\r\n"
    assert await raw.at('AT+CMGS="+8613900139000"') == b"\r\n> "
    raw.writer.write(b"This is a test\x1a")
    assert await raw._final() == b"\r\n+CMGS: 1\r\n\r\nOK\r\n"
    for _ in range(100):
        if b.stored or any(c.delivered_at for c in net.log):
            break
        await asyncio.sleep(0.05)
    assert b.stored[0]["text"] == "This is a test" and b.stored[0]["sender"] == A


async def test_errors_follow_cmee_and_the_standard_codes(world):
    net, a, b = world
    raw = await _open(a)
    await raw.at("ATE0")
    assert await raw.at("AT+CMGS=5") == b"\r\nERROR\r\n"  # CMEE=0: plain ERROR
    await raw.at("AT+CMEE=1")
    assert await raw.at("AT+CMGS=5") == b"\r\n+CMS ERROR: 304\r\n"
    await raw.at("AT+CMEE=2")
    assert await raw.at("AT+FOO") == b"\r\nERROR\r\n"
    a.sim = False
    assert await raw.at("AT+CPIN?") == b"\r\n+CME ERROR: SIM not inserted\r\n"
    a.sim = True
    await raw.at("AT+CMEE=1")
    net.set_coverage(False)
    hex_pdu, length = smspdu.encode_submit(smspdu.Submit(B, "hi"))
    assert await raw.at(f"AT+CMGS={length}") == b"\r\n> "
    raw.writer.write(hex_pdu.encode() + b"\x1a")
    assert await raw._final() == b"\r\n+CMS ERROR: 331\r\n"
    assert await raw.at("AT+CSQ") == b"\r\n+CSQ: 99,99\r\n\r\nOK\r\n"
    assert await raw.at("AT+CMGS=12") == b"\r\n> "
    raw.writer.write(b"\x1b")  # ESC: quit without sending
    assert await raw._final() == b"\r\nOK\r\n"
    assert a.sent == []


async def test_registration_urc_and_incoming_sms_in_pdu_mode(world):
    net, a, b = world
    raw = await _open(b)
    await raw.at("ATE0")
    await raw.at("AT+CREG=1;+CMGF=0;+CNMI=2,2,0,0,0")
    net.set_coverage(False)
    assert await raw.until(b"+CREG: 2\r\n") == b"\r\n+CREG: 2\r\n"
    net.set_coverage(True)
    assert await raw.until(b"+CREG: 1\r\n") == b"\r\n+CREG: 1\r\n"
    net.submit(A, B, "紧急求助")
    out = b""
    while out.count(b"\r\n") < 3:  # "\r\n+CMT: ,<length>\r\n<pdu>\r\n"
        out += await raw.until(b"\r\n")
    _, head, pdu_line = out.split(b"\r\n")[:3]
    assert head.startswith(b"+CMT: ,")
    pdu, length = pdu_line.decode(), int(head.split(b",")[1])
    assert len(bytes.fromhex(pdu)) - 1 - bytes.fromhex(pdu)[0] == length
    msg = smspdu.decode_deliver(pdu)
    assert (msg.sender, msg.text) == (A, "紧急求助")


def _library_session(port: str, number: str, text: str) -> tuple:
    received = []
    modem = GsmModem(port, 115200, smsReceivedCallbackFunc=received.append)
    modem.connect()
    try:
        info = (modem.manufacturer, modem.model, modem.signalStrength, modem.networkName)
        sent = modem.sendSms(number, text)
        return info, sent.reference, received
    finally:
        modem.close()


async def test_a_kept_modem_library_drives_the_emulator(world):
    net, a, b = world
    info, reference, _ = await asyncio.to_thread(_library_session, str(a.link), B, "您好 hello")
    assert info == ("Quectel", "EC25", 22, "CHINA MOBILE") and reference == 1
    for _ in range(100):
        if b.stored:
            break
        await asyncio.sleep(0.05)
    assert b.stored[0]["text"] == "您好 hello" and a.sent == [(1, B, "您好 hello")]


async def test_the_kept_library_reads_an_sms_it_is_told_of(world):
    net, a, b = world
    received: list = []

    def session() -> None:
        modem = GsmModem(str(b.link), 115200, smsReceivedCallbackFunc=received.append)
        modem.connect()
        try:
            net_loop.call_soon_threadsafe(net.submit, A, B, "来自家人的回复")
            for _ in range(200):
                if received:
                    return
                import time
                time.sleep(0.05)
        finally:
            modem.close()

    net_loop = asyncio.get_running_loop()
    await asyncio.to_thread(session)
    assert [(m.number, m.text) for m in received] == [(A, "来自家人的回复")]

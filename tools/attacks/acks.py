"""The ack attempts (SPEC 1.7): a device that spoofs a pendant's address takes its acks.

The real pendant (firmware on the `micropython` binary) presses, is heard and delivered, and
goes off the air (out of range, or its battery out). An operator takes the alarm up: the hub
owes kind 3, "help is coming". An attacker's radio then advertises the pendant's last frame,
captured off the air, from the pendant's address, and offers the ack characteristic: the hub
hears a repeat, connects and writes. Every ATT write to that address is sniffed off the air.

The spoofer first advertises an older captured frame (refused as a replay) and then the last
one: a hub scanning passively reports an advertisement only when the address's data changed.

* "an address spoofer ... takes its ack": refused when the hub still owes kind 3 after its
  write to the spoofer succeeded, and settles it only once the real pendant is back and names
  the ack in a receipt (a new frame under its key).
* "a re-sent ack never repeats a nonce with other bytes": the same ack (kind 3 for that
  counter) went out twice, to the spoofer and to the pendant; refused when no two acks sniffed
  share a nonce (MAC, 0x80 | kind, ack number) with other bytes.
"""

from __future__ import annotations

import asyncio
import re
import sqlite3
import time
from pathlib import Path
from typing import Any

from bumble import gatt
from bumble.core import UUID
from bumble.device import Device as BumbleDevice
from bumble.hci import Address, OwnAddressType

from safebox.protocol import bthome
from safebox.tools.attacks.attacker import Attacker, Attempt

WAIT_S = 15.0
_ATT_CID = b"\x04\x00"
_ATT_WRITE_REQUEST = 0x12


async def ack_attacks(a: Attacker) -> None:
    home = a.home
    pendant = await home.add_device("pendant", "living room")
    device, fw = pendant.device, pendant.firmware
    sniffed: list[bytes] = []
    earlier = home.air.acl_filter

    def sniff(source: str, destination: str, data: bytes) -> bool:
        # An L2CAP basic frame: length, CID, then the ATT PDU (opcode, handle, value).
        if destination == device.address and data[2:4] == _ATT_CID and len(data) > 7 \
                and data[4] == _ATT_WRITE_REQUEST:
            sniffed.append(bytes(data[7:]))
        return earlier(source, destination, data) if earlier is not None else False

    home.air.acl_filter = sniff
    try:
        counter = await a.press(pendant)
        event_id = f"{device.id}-{counter}"
        await _hub_line(home, rf"{device.address}: the device confirmed ack \d+ \(kind 2 for counter {counter}\)")
        last = _last_frame(fw)
        older = Attacker.sent_frame(pendant, counter)  # the event frame: a replay, refused, but it
        # changes what the hub's scanner last saw from the address (BlueZ scanning passively
        # reports a repeated advertisement once), so the last frame is reported again after it
        await fw.kill()  # off the air
        await home._run_cli("safebox.tools.receiver.cli", "operator-ack", "--db", str(home.receiver_db), event_id)
        await _hub_line(home, rf"event {event_id}: taken up by an operator; ack kind 3 owed")

        before = a.ledger.snapshot()
        spoofer = _Spoofer(home.air, device.address)
        await spoofer.start(older)
        await asyncio.sleep(0.3)
        await spoofer.advertise(last)
        async with asyncio.timeout(WAIT_S):
            while not spoofer.writes:
                await asyncio.sleep(0.05)
        # the hub records a write (owed until confirmed, or settled) before it logs it: judged
        # after that line, not after a pause
        await _wait(_hub_line(home, rf"{device.address}: ack kind 3 for counter {counter} written"))
        await spoofer.stop()
        intact, stored = a.ledger.judge(before, a.ledger.snapshot())
        taken = [_read(device, w) for w in spoofer.writes]
        owed_after_spoof = _owes(home, device.id, counter, bthome.ACK_OPERATOR)

        await asyncio.sleep(2.0)  # the pendant comes back a little later (the hub answers one ack per second)
        mark = len(fw.lines)
        await fw.restart()  # the real pendant is back: its boot frame is heard
        line = await _wait(fw.wait_for_line(rf"^ack {counter} kind 3\b", timeout=WAIT_S, start=mark))
        confirmed = await _wait(_hub_line(home, rf"{device.address}: the device confirmed ack \d+ "
                                                rf"\(kind 3 for counter {counter}\)"))
        settled = not _owes(home, device.id, counter, bthome.ACK_OPERATOR)
    finally:
        home.air.acl_filter = earlier

    stolen = (bthome.ACK_OPERATOR, counter) in [t[:2] for t in taken if t is not None]
    refused = stolen and owed_after_spoof and line is not None and confirmed is not None and settled
    seen = (f"spoofer took {len(taken)} ack(s) {[t[:2] for t in taken if t]}; kind 3 still owed after: "
            f"{owed_after_spoof}; the pendant back: {(line or 'no ack').strip()!r}, receipt "
            f"{'heard' if confirmed else 'not heard'}, settled {settled}")
    a.add(Attempt("BLE", "an address spoofer replays the pendant's frame and takes its ack (kind 3): the hub "
                  "keeps owing it until the real pendant confirms", "still owed after the write; settled by the "
                  "pendant's receipt", refused, seen, intact, stored))

    acks = [(w, _read(device, w)) for w in sniffed if len(w) == bthome.ACK_LEN]
    nonces: dict[bytes, set[bytes]] = {}
    for w, _ in acks:
        nonces.setdefault(w[:5], set()).add(w)  # kind + ack number: the nonce's variable part
    again = [r for _, r in acks if r is not None and r[:2] == (bthome.ACK_OPERATOR, counter)]
    reused = [n.hex() for n, ws in nonces.items() if len(ws) > 1]
    refused = len(again) >= 2 and not reused and all(r is not None for _, r in acks)
    a.add(Attempt("BLE", "a re-sent ack never repeats a nonce with other bytes (kind 3 sealed for the spoofer, "
                  "then again for the pendant)", "every ack sniffed under its own nonce", refused,
                  f"{len(acks)} acks sniffed to {device.address}, kind 3 for counter {counter} {len(again)} times, "
                  f"hub times {sorted({r[2] for r in again})}; nonces reused with other bytes: {reused or 'none'}",
                  True, "", note="ack numbers " + ", ".join(str(r[3]) for _, r in acks if r is not None)))


class _Spoofer:
    """An attacker's radio at someone else's address: advertises a captured frame, connectably,
    and offers the ack characteristic, keeping whatever is written to it."""

    def __init__(self, air: Any, address: str) -> None:
        self._air = air
        self._address = address
        self._controller: Any = None
        self._radio: BumbleDevice | None = None
        self.writes: list[bytes] = []

    async def start(self, adv: bytes) -> None:
        self._controller = self._air.plug_device(f"spoofer-{self._address}", self._address)
        radio = BumbleDevice.with_hci("spoofer", Address(self._address), self._controller, self._controller)
        ack: gatt.Characteristic[bytes] = gatt.Characteristic(
            UUID(bthome.ACK_CHAR_UUID), gatt.Characteristic.Properties.WRITE, gatt.Characteristic.WRITEABLE,
            gatt.CharacteristicValue(write=lambda _conn, value: self.writes.append(bytes(value))))  # type: ignore[arg-type]
        radio.add_service(gatt.Service(UUID(bthome.ACK_SERVICE_UUID), [ack]))
        await radio.power_on()
        self._radio = radio
        await self.advertise(adv)

    async def advertise(self, adv: bytes) -> None:
        assert self._radio is not None
        if self._radio.is_advertising:
            await self._radio.stop_advertising()
        self._radio.advertising_data = adv
        await self._radio.start_advertising(own_address_type=OwnAddressType.PUBLIC, advertising_interval_min=30,
                                            advertising_interval_max=30)

    async def stop(self) -> None:
        if self._radio is not None:
            await self._radio.stop_advertising()
        self._air.unplug(self._controller)


def _read(device: Any, data: bytes) -> tuple[int, int, int, int] | None:
    try:
        return bthome.unseal_ack(device.key, device.mac, data)
    except bthome.FrameError:
        return None


def _last_frame(fw: Any) -> bytes:
    """The last advertisement the firmware put on the air (as captured off it)."""
    for adv in reversed(fw.bridge.advertising):
        if adv.interval_us and bthome.service_data_in(adv.adv_data):
            return bytes(adv.adv_data)
    raise LookupError("the pendant sent nothing")


def _owes(home: Any, device_id: str, counter: int, kind: int) -> bool:
    """The hub's database (read-only): is `kind` for `counter` still owed to the device?"""
    db = sqlite3.connect(f"file:{Path(home.hub_state) / 'hub.db'}?mode=ro", uri=True, timeout=5)
    try:
        row = db.execute("SELECT kind, written FROM owed_acks WHERE device_id = ? AND counter = ? AND expires_at > ?",
                         (device_id, counter, time.time())).fetchone()
    finally:
        db.close()
    return row is not None and row[0] >= kind > row[1]


async def _hub_line(home: Any, pattern: str, timeout: float = WAIT_S) -> str:
    regex = re.compile(pattern)
    async with asyncio.timeout(timeout):
        start = 0
        while True:
            end = len(home.hub.lines)
            for line in home.hub.lines[start:end]:
                if regex.search(line):
                    return str(line)
            start = end
            await asyncio.sleep(0.05)


async def _wait(coro: Any) -> Any:
    """The awaited line, or None when it did not come in time."""
    try:
        return await coro
    except (TimeoutError, asyncio.TimeoutError):
        return None


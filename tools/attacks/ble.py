"""The BLE attempts: frames an attacker's radio puts on the air, judged by the hub's log."""

from __future__ import annotations

import asyncio
import os
from typing import Any

from safebox.protocol import bthome
from safebox.tools.attacks.attacker import Attacker, Attempt, advertisement, sealed_frame
from safebox.tools.sim import lines


async def ble_attacks(a: Attacker) -> None:
    home = a.home
    p1 = await home.add_device("pendant", "bedroom")
    p2 = await home.add_device("pendant", "kitchen")
    c1 = await a.press(p1)
    c2 = await a.press(p1)
    await a.press(p2)
    first, last = a.sent_frame(p1, c1), a.sent_frame(p1, c2)
    receipt = a.sent_frame(p1, c2 + 1)  # after kind 2 the pendant's receipt (SPEC 1.7): its last frame accepted
    p2_frame = a.sent_frame(p2, (await _last_counter(p2)))
    mac1 = p1.device.address
    sd_last = bthome.service_data_in(last)
    assert sd_last is not None

    await a.ble("forged: MIC bytes altered", mac1, advertisement(sd_last[:-1] + bytes([sd_last[-1] ^ 0xFF])), "MIC mismatch")
    await a.ble("forged: ciphertext altered", mac1, advertisement(sd_last[:1] + bytes([sd_last[1] ^ 0x01]) + sd_last[2:]),
                "MIC mismatch")
    raised = sd_last[:-8] + bthome._u32le(c2 + 100) + sd_last[-4:]  # noqa: SLF001
    await a.ble("forged: genuine frame with its counter raised (no key)", mac1, advertisement(raised), "MIC mismatch")
    wrong_key = bthome.seal(os.urandom(16), p1.device.mac, c2 + 1000, bthome.pendant_objects(90, "emergency"))
    await a.ble("wrong key: frame sealed with a key the hub does not know", mac1, advertisement(wrong_key), "MIC mismatch")
    await a.ble("another device's genuine frame sent from this address", mac1, p2_frame, "MIC mismatch")
    await a.ble("replayed frame (counter below the last accepted)", mac1, first,
                rf"replay.*counter {c1}\b.*last accepted {c2 + 1}")
    await a.ble("frames for an unpaired device (genuine frame, stranger address)", a.stranger(), last,
                "unpaired device")
    await a.ble("unencrypted BTHome frame", mac1, advertisement(bytes((0x40,)) + bthome.encode_objects(
        bthome.pendant_objects(90, "emergency")) + bytes(8)), "not encrypted")
    await a.ble("wrong BTHome version in the info byte", mac1, advertisement(bytes((0x85,)) + sd_last[1:]), "not BTHome v2")
    await a.ble("garbage: truncated frame (5 bytes)", mac1, advertisement(sd_last[:5]), "too short")
    await a.ble("garbage: random service data, longest an advertisement carries (24 B)", mac1,
                advertisement(bytes((0x45,)) + os.urandom(23)), "MIC mismatch")
    await a.ble("garbage: AD structure whose length runs past the end", mac1,
                b"\x02\x01\x06\x1a\x16\xd2\xfc" + bytes((0x45,)) + os.urandom(7), "too short|MIC mismatch")
    await a.ble("garbage: service data AD too short to hold the UUID", mac1, b"\x02\x01\x06\x02\x16\xd2",
                "", expect_log=False)
    # Authentic (sealed with the device's real key: a device bug, or a key that leaked) but unreadable.
    key1, m1 = p1.device.key, p1.device.mac
    await a.ble("authentic frame with an unknown object id", mac1, advertisement(sealed_frame(key1, m1, c2 + 50, b"\x01\x5a\x99\x01")),
                "unknown object id")
    await a.ble("authentic frame with an object cut short", mac1, advertisement(sealed_frame(key1, m1, c2 + 51, b"\x01\x5a\x50\x01")),
                "cut short")
    await a.ble("authentic event frame with no button pressed", mac1,
                advertisement(sealed_frame(key1, m1, c2 + 52, bthome.encode_objects(bthome.pendant_objects(90))),),
                "no button pressed")
    await a.ble("authentic event frame with two button objects", mac1, advertisement(sealed_frame(
        key1, m1, c2 + 53, bthome.encode_objects([(1, 90), (0x3A, 1), (0x3A, 0)]))), "button objects")
    await a.ble("authentic frame, button value unknown (0x07)", mac1, advertisement(sealed_frame(
        key1, m1, c2 + 54, bthome.encode_objects([(1, 90), (0x3A, 7), (0x3A, 0), (0x3A, 0)]))), "unknown value")
    # A key read off a board: one authentic frame at the top of the counter space would make
    # every later frame of the real device a "replay" (SPEC 1.4: the jump is bounded).
    await a.ble("stolen key: one authentic press at counter 2^32-1", mac1, advertisement(bthome.seal(
        key1, m1, 0xFFFFFFFF, bthome.pendant_objects(90, "emergency"))), r"counter 4294967295 jumps")

    # Across a hub restart: the replay guard is in SQLite, not in memory.
    await home.hub.kill()
    await home.start_hub()
    await a.ble("replayed frame after the hub was SIGKILLed and restarted", mac1, first,
                rf"replay.*counter {c1}\b")
    before = a.ledger.snapshot()
    mark = len(home.hub.lines)
    await home.transmit(mac1, receipt, duration_s=0.25)
    end = await a.heard_up_to_now(mark)  # the hub has handled the repeat (not a fixed pause)
    intact, stored = a.ledger.judge(before, a.ledger.snapshot())
    refusals = [ln for ln in home.hub.lines[mark:end] if (r := lines.Refused.read(ln)) and r.address == mac1]
    a.add(Attempt("BLE", "repeat of the last accepted frame after the hub restart", "not stored again",
                  intact and home.hub.running and end is not None,
                  ("accepted as a repeat: no new event, counter unchanged" if intact else "stored again")
                  + ("" if end is not None else " (the hub never refused the later stranger frame)"),
                  intact, stored, note="; ".join(refusals)[:200]))

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

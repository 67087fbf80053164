"""One device and a stand-in hub on the simulated air: the firmware's side of the protocol.

The real firmware image runs on the `micropython` binary (tools/sim); the hub is
`StandInHub` (tools/bench/standin.py), in this process, so each test decides which acks
are written and when: lost acknowledgements, late "delivered", acks the hub owes, forged
ones. Timing settings are shortened through config.json where the production value
(firmware/config.py) would make a test slow; the defaults are never changed.
"""

from __future__ import annotations

import asyncio
import os
import signal
import time

import pytest

from safebox.firmware.boards import BOARDS
from safebox.protocol import bthome
from safebox.tools.bench.device import bench_device, tap
from safebox.tools.sim.firmware_process import WDT_RESET

PINS = BOARDS["esp32-devkitc"]
LED, BUZZER = PINS["led"], PINS["buzzer"]


def beeps(fw, after: float = 0.0) -> list[tuple[float, float]]:
    """(start, length in s) of each buzzer pulse the firmware drove since `after`."""
    levels = [(t, v) for t, v in fw.bridge.output_levels(BUZZER) if t >= after]
    out = []
    for (t0, v0), (t1, _v1) in zip(levels, levels[1:]):
        if v0 == 1:
            out.append((t0, t1 - t0))
    return out


def beep_ms(fw, after: float = 0.0) -> list[int]:
    return [round(length * 1000) for _, length in beeps(fw, after)]


def like(measured: list[int], pattern: list[int], slack_ms: int = 40) -> bool:
    """The beeps are the pattern's (each within slack: the simulator's scheduling)."""
    return len(measured) == len(pattern) and all(abs(m - p) <= slack_ms for m, p in zip(measured, pattern))


async def ready(fw) -> None:
    await fw.wait_for_line(r"^ready ", timeout=10)


async def idle_after(fw, line: str, timeout: float = 10.0) -> None:
    """Until the device sleeps idle after the line matching `line`: it sleeps so only once no
    feedback is playing, nothing is to be sent and no input is being judged, so every beep
    and frame it was to make of what came before is made (no pause long enough "by luck")."""
    start = fw.lines.index(await fw.wait_for_line(line, timeout=timeout))
    await fw.wait_for_line(r"^(deep)?sleep \d+ idle$", timeout=timeout, start=start)


async def test_lost_ack_the_event_is_re_sent_with_its_re_send_number_until_heard(tmp_path, device_image):
    async with bench_device(tmp_path, image=device_image, deaf_s=1.7) as (fw, hub):
        await ready(fw)
        await tap(fw.bridge, "emergency", 0.12)
        await fw.wait_for_line(r"^acked 1 kind 1$", timeout=15)
        frames = [f for f in hub.frames if f.counter == 1]
        # the first burst went unanswered: the device rested, then sent the same frame again
        # (counter, objects), its re-send number counting up in the info byte (SPEC 1.2)
        assert len({(f.counter, tuple(f.objects), f.event) for f in frames}) == 1 and frames[0].event
        bursts = sum(line == "sending 1" for line in fw.lines)
        resends = [(f.adv[0] & bthome.INFO_RESEND_MASK) >> bthome.INFO_RESEND_SHIFT  # adv: the service data
                   for f in frames]
        assert bursts >= 2 and sorted(set(resends)) == list(range(min(bursts, 4)))
        assert resends == sorted(resends)
        assert "sleep 2000 rest" in " ".join(fw.lines), "it rests radio-off between bursts (2 s first)"
        assert (fw.fs_dir / "events.json").read_text() == "[]"
        # the objects: battery, then the emergency button pressed, the others not
        assert frames[0].objects[1:] == [(bthome.OBJ_BUTTON, bthome.BUTTON_PRESS),
                                         (bthome.OBJ_BUTTON, 0), (bthome.OBJ_BUTTON, 0)]


async def test_linger_until_delivered_then_owed_operator_ack_at_the_heartbeat(tmp_path, device_image):
    """Heard -> linger on the same frame -> delivered ends it; later the hub writes what it
    owes (operator) when it hears the next heartbeat; after a reboot an old ack is taken
    but not shown; a forged ack is refused."""
    # light sleep only (deep_sleep 0): the counters below are those of one boot, and a press
    # landing in a deep sleep between two heartbeats would start a new one
    async with bench_device(tmp_path, image=device_image, deliver_after_s=1.0,
                            settings={"heartbeat_s": 3, "deep_sleep": 0}) as (fw, hub):
        await ready(fw)
        pressed = await tap(fw.bridge, "emergency", 0.12)
        await idle_after(fw, r"^linger 1 ended kind 2$")
        lingered = [a for a in fw.bridge.advertising if a.interval_us == sender_linger_us()]
        assert lingered and {a.adv_data for a in lingered} == {a.adv_data for a in fw.bridge.advertising
                                                                if a.interval_us == 30000}
        # the click of the press, heard (one 150 ms beep), delivered (two 100 ms beeps); no more
        assert like(beep_ms(fw, pressed), [40, 150, 100, 100]), beep_ms(fw, pressed)

        hub.owed = [(bthome.ACK_OPERATOR, 1)]
        await idle_after(fw, r"^ack 1 kind 3 shown$")
        heartbeat = next(f for f in hub.frames if not f.event)
        assert heartbeat.counter > 1, "frames in counter order"
        assert any(line.startswith("woke timer") for line in fw.lines), "it slept until the heartbeat was due"
        # operator: "help is coming", three 200 ms beeps; no more
        assert like(beep_ms(fw, pressed)[4:], [200, 200, 200]), beep_ms(fw, pressed)

        # a power cut: RAM is gone, so an old "delivered" is taken silently
        await fw.kill()
        mark = len(fw.lines)
        await fw.restart()
        await fw.wait_for_line(r"^ready ", timeout=10, start=mark)
        hub.owed = [(bthome.ACK_DELIVERED, 1)]
        await fw.wait_for_line(r"^ack 1 kind 2 \(not shown: stale\)$", timeout=10)
        # a forged ack (wrong MIC) is refused and counted, never acted on
        forged = hub.seal(1, 7, key=bytes(16))
        await hub.wait_frames(lambda fr: sum(not f.event for f in fr) >= 2, timeout=10)
        await hub.write(1, 7, data=forged)
        await fw.wait_for_line(r"^ack refused: ack MIC mismatch$", timeout=10)


def sender_linger_us() -> int:
    return 500 * 1000  # firmware/sender.py LINGER_INTERVAL_MS


async def test_unheard_event_no_heartbeat_meanwhile_failed_shown_then_a_newer_event_ends_the_linger(
        tmp_path, device_image):
    async with bench_device(tmp_path, image=device_image, auto_ack=False,  # one boot: light sleep only
                            settings={"heartbeat_s": 1, "failed_after_ms": 2000, "deep_sleep": 0}) as (fw, hub):
        await ready(fw)
        await hub.wait_frames(lambda fr: any(not f.event for f in fr))  # a heartbeat: the hub knows it
        pressed = await tap(fw.bridge, "community_service", 0.12)
        await fw.wait_for_line(r"^not heard 2 after \d+ ms: still trying$", timeout=10)
        # "could not reach anyone": three long beeps, after the click
        await fw.bridge.wait_for(lambda: len(beeps(fw, pressed)) >= 4, timeout=10)
        assert like(beep_ms(fw, pressed)[1:4], [600, 600, 600]), beep_ms(fw, pressed)
        # while the event waited (heartbeat_s is 1) no heartbeat was made: nothing after counter 2
        # on the air so far, and (below) the next counter goes to the next press
        assert all(f.counter <= 2 for f in hub.frames)
        assert [f.counter for f in hub.frames] == sorted(f.counter for f in hub.frames), "counter order on the air"

        # the hub answers at last; the pendant lingers for "delivered" ...
        await hub.wait_frames(lambda fr: fr[-1].counter == 2 and time.monotonic() - fr[-1].t < 0.1, timeout=70)
        assert await hub.write(bthome.ACK_HEARD, 2)
        await fw.wait_for_line(r"^linger 2$", timeout=5)
        # ... until the resident presses again: the newer event goes out at once
        hub.auto_ack = True
        await tap(fw.bridge, "life_service", 0.12)
        await fw.wait_for_line(r"^linger 2 ended newer event$", timeout=5)
        await fw.wait_for_line(r"^acked 3 kind 1$", timeout=5)
        assert hub.event_counters() == [2, 3]
        assert "event 3 life_service press" in fw.lines, "no heartbeat took a counter while 2 waited"


async def test_a_hung_device_is_reset_by_the_watchdog_and_still_delivers_its_event(tmp_path, device_image):
    async with bench_device(tmp_path, image=device_image, auto_ack=False, settings={"wdt_ms": 2000}) as (fw, hub):
        await ready(fw)
        await tap(fw.bridge, "emergency", 0.12)
        await fw.wait_for_line(r"^sending 1$", timeout=5)
        os.kill(fw.pid, signal.SIGSTOP)  # a hang: nothing feeds the watchdog any more
        hung = time.monotonic()
        await fw.wait_for_line(rf"^boot safebox \S+ reset_cause {WDT_RESET} ", timeout=10)
        assert time.monotonic() - hung < 4, "reset within the 2 s timeout (and the simulator's slack)"
        await fw.wait_for_line(r"^self-test: warning: the last reset was the watchdog's$", timeout=5)
        await fw.wait_for_line(r"^ready pendant next counter \d+ pending 1$", timeout=5)
        hub.auto_ack = True
        await fw.wait_for_line(r"^acked 1 kind 1$", timeout=10)
        assert hub.event_counters() == [1], "the same event, under the same counter"


BAD_CONFIGS = [
    (None, r"config: config\.json is missing \(the device is not paired\)"),
    ("{not json", r"config: config\.json is not valid JSON"),
    ('{"role": "pendant", "board": "esp32-devkitc"}', r"key: must be 32 hex digits"),
    ('{"role": "pendant", "board": "esp32-devkitc", "key": "' + "00" * 16 + '"}', r"key: the all-zero key is refused"),
    ('{"role": "front_door", "board": "esp32-devkitc", "key": "' + "ab" * 16 + '", "pins": {"contact": 2}}',
     r"pins\.contact: GPIO 2 is also pins\.led"),
    ('{"role": "pendant", "board": "esp32-devkitc", "key": "' + "ab" * 16 + '", "heartbeat_s": 0}',
     r"heartbeat_s: must be an integer from 1 to 86400"),
]


async def test_failed_self_test_is_shown_printed_and_retried_later(tmp_path, device_image):
    """Each bad config.json (five boards booting side by side): a "self-test: FAIL" line with
    the reason, the fault pattern three times, then deep sleep for an hour and a fresh try."""
    from safebox.tools.sim.air import Air
    from safebox.tools.sim.firmware_process import FirmwareProcess

    async def boot(n: int, config: str | None, reason: str) -> None:
        flash = tmp_path / f"flash{n}"
        flash.mkdir()
        (flash / "main.py").write_text((device_image / "main.py").read_text())
        if config is not None:
            (flash / "config.json").write_text(config)
        async with FirmwareProcess(air, flash, mac=f"24:0A:C4:00:0F:0{n}", lib_dir=device_image / "lib") as fw:
            await fw.wait_for_line(rf"^self-test: FAIL config: {reason}$", timeout=10)
            await fw.bridge.wait_for(lambda: fw.bridge.last_sleep == ("deep", 3600 * 1000), timeout=15)
            # the fault pattern: five fast blinks and a 1 s tone, three times
            assert [v for _, v in fw.bridge.output_levels(LED)].count(1) == 15
            assert len(beeps(fw)) == 3 and all(0.95 < length < 1.1 for _, length in beeps(fw))
            assert not any(line.startswith("ready") for line in fw.lines)

    async with Air() as air:
        await asyncio.gather(*[boot(n, config, reason) for n, (config, reason) in enumerate(BAD_CONFIGS)])


async def test_low_and_implausible_battery_are_reported(tmp_path, device_image):
    async with bench_device(tmp_path / "low", image=device_image, battery_uv=1_700_000) as (fw, hub):  # 3.4 V
        await fw.wait_for_line(r"^checks ok: .* battery 11% \(3400 mV\)$", timeout=10)
        await fw.wait_for_line(r"^battery low 11$", timeout=5)
        await fw.wait_for_line(r"^(deep)?sleep \d+ idle$", timeout=10)  # the power-on chirps are over
        pressed = await tap(fw.bridge, "emergency", 0.12)
        await fw.wait_for_line(r"^acked 1 kind 1$", timeout=10)
        await fw.bridge.wait_for(lambda: len(beeps(fw, pressed)) >= 4, timeout=10)
        # click, heard, then the two battery chirps
        assert like(beep_ms(fw, pressed)[:4], [40, 150, 50, 50]), beep_ms(fw, pressed)
        assert hub.frames[0].objects[0] == (bthome.OBJ_BATTERY, 11)
    async with bench_device(tmp_path / "none", image=device_image, battery_uv=0, hub=False) as (fw, _):
        await fw.wait_for_line(r"^self-test: warning: battery reading 0 mV is implausible", timeout=10)
        await fw.wait_for_line(r"^checks passed with 1 warning\(s\)", timeout=5)
        await fw.wait_for_line(r"^ready ", timeout=5)


async def test_doors_open_and_close_within_a_second_two_frames_in_order_and_the_state_in_heartbeats(
        tmp_path, device_image):
    contact, pir = PINS["contact"], PINS["pir"]
    async with bench_device(tmp_path / "front", image=device_image, role="front_door",
                            settings={"heartbeat_s": 2}) as (fw, hub), \
            bench_device(tmp_path / "toilet", image=device_image, role="toilet_door", key=os.urandom(16),
                         settings={"pir": 1}) as (toilet, toilet_hub):
        await ready(fw)
        await ready(toilet)
        await fw.wait_for_line(r"^sleep \d+ idle", timeout=5)
        # open (with reed bounce), closed again 400 ms later
        for level, hold in ((0, 0.005), (1, 0.01), (0, 0.4), (1, 0.0)):
            fw.bridge.set_pin(contact, level)
            await asyncio.sleep(hold)
        await fw.wait_for_line(r"^acked 2 kind 1$", timeout=10)
        assert [line for line in fw.lines if line.startswith("event")] == ["event 1 door open", "event 2 door closed"]
        doors = [(f.counter, dict(f.objects)[bthome.OBJ_DOOR]) for f in hub.frames if f.event]
        assert sorted(set(doors)) == [(1, 1), (2, 0)] and doors == sorted(doors), "open then closed, in counter order"
        assert any(line.startswith("woke pin") for line in fw.lines), "the contact woke it from light sleep"
        # a door sensor never beeps at the resident; it blinks once when the hub heard it
        assert beeps(fw) == []
        # the door stays open: the heartbeat says so
        fw.bridge.set_pin(contact, 0)
        await fw.wait_for_line(r"^acked 3 kind 1$", timeout=10)
        beat = await hub.wait_frames(lambda fr: any(not f.event and f.counter > 3 for f in fr), timeout=10)
        assert dict(next(f for f in beat if not f.event and f.counter > 3).objects)[bthome.OBJ_DOOR] == 1

        # the toilet door, with a PIR that sees someone: occupancy rides along
        toilet.bridge.set_pin(pir, 1)
        toilet.bridge.set_pin(contact, 0)
        await toilet.wait_for_line(r"^acked 1 kind 1$", timeout=10)
        assert toilet_hub.frames[0].objects[1:] == [(bthome.OBJ_DOOR, 1), (bthome.OBJ_OCCUPANCY, 1)]


async def test_a_device_whose_counter_file_is_unreadable_refuses_to_send(tmp_path, device_image):
    """firmware/store.py: a counter file that exists but cannot be read means no counter is
    known to be unused. The device says so on its console, shows the fault pattern and sends
    nothing (restarting at 1 would seal other bytes under used nonces, and the hub would refuse
    it all as replays); it tries again in an hour (a re-pair with a fresh key fixes it)."""
    from safebox.tools.bench.device import flash_dir
    from safebox.tools.sim.air import Air
    from safebox.tools.sim.firmware_process import FirmwareProcess

    flash = flash_dir(tmp_path / "pendant", device_image, "pendant", os.urandom(16), None)
    (flash / "counter").write_text("\x00\x00garbage")  # a flash fault, not a torn write (those rename)
    async with Air() as air:
        async with FirmwareProcess(air, flash, mac="24:0A:C4:00:0F:11", lib_dir=device_image / "lib") as fw:
            await fw.wait_for_line(r"^self-test: FAIL store: counter file unreadable: .*; not sending: re-pair "
                                   r"this device \(a fresh key\)$", timeout=10)
            await fw.bridge.wait_for(lambda: fw.bridge.last_sleep == ("deep", 3600 * 1000), timeout=15)
            assert fw.bridge.advertising == [] and not any(line.startswith("ready") for line in fw.lines)
    assert (flash / "counter").read_text() == "\x00\x00garbage"  # left for the installer to see

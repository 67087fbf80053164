"""The whole path in the simulated home: real firmware on micropython, bumble air,
the hub process over bleak, signed HTTPS over real TLS, the receiver process."""

from __future__ import annotations

import time

from safebox.protocol import bthome
from safebox.tools.sim.home import SimHome, parse_time


async def _press_and_store(home: SimHome, pendant, n: int = 1) -> dict:
    await home.press(pendant, "emergency")
    stored = await home.wait_stored(n)
    return stored[n - 1]


async def test_emergency_press_reaches_the_platform_signed_and_acked(tmp_path):
    async with SimHome(tmp_path) as home:
        pendant = await home.add_device("pendant", "bedroom")
        pressed = time.time()
        event = await _press_and_store(home, pendant)
        await pendant.firmware.wait_for_line(r"^acked 1 kind [12]$", timeout=5)
        assert event["event_id"] == f"{pendant.id}-1"
        assert (event["type"], event["device_id"], event["counter"], event["hub_id"]) == \
            ("emergency", pendant.id, 1, home.hub_id)
        assert event["signature_verified"] is True
        assert pressed < parse_time(event["received_at"]) < pressed + 5
        # the firmware forgot the event only after the ack: its flash store is empty again
        assert (pendant.firmware.fs_dir / "events.json").read_text() == "[]"
        # the hub relayed it and holds nothing back
        status = await home.hub_status()
        assert status["outbox_depth"] == 0 and status["devices"][0]["battery"] is not None


async def test_home_assistant_bthome_parser_decodes_the_firmware_advertisement(tmp_path):
    from bleak.backends.device import BLEDevice
    from bthome_ble import BTHomeBluetoothDeviceData
    from habluetooth import BluetoothServiceInfoBleak

    async with SimHome(tmp_path) as home:
        pendant = await home.add_device("pendant", "bedroom")
        stored = await _press_and_store(home, pendant)
        # what the firmware itself asked its radio to send
        sent = [a.adv_data for a in pendant.firmware.bridge.advertising if a.interval_us]
    service_data = bthome.service_data_in(sent[0])
    info = BluetoothServiceInfoBleak(
        name="pendant", address=pendant.device.address, rssi=-60, manufacturer_data={},
        service_data={bthome.SERVICE_UUID: service_data}, service_uuids=[bthome.SERVICE_UUID],
        source="local", device=BLEDevice(pendant.device.address, "pendant", {}), advertisement=None,
        connectable=True, time=time.monotonic(), tx_power=None)
    parser = BTHomeBluetoothDeviceData(bindkey=pendant.device.key)
    update = parser.update(info)
    assert parser.bindkey_verified
    presses = {key.key: ev.event_type for key, ev in update.events.items() if ev.event_type}
    assert presses == {"button_1": "press"}  # the first button, emergency, and only it
    battery = [v.native_value for k, v in update.entity_values.items() if k.key == "battery"]
    # the very battery level the hub decoded from this frame and the platform stored (not just 0..100)
    assert battery == [stored["body"]["data"]["battery"]]


async def test_receiver_failing_twice_still_ends_with_one_stored_event(tmp_path):
    async with SimHome(tmp_path, receiver_args=("--fail-first", "2", "--fail-status", "500")) as home:
        pendant = await home.add_device("pendant")
        await _press_and_store(home, pendant)
        # a later event is the proof nothing else came: the hub keeps one device's events in order,
        # so a wrong extra copy of the first (or a third 500) would be in before the second is stored
        second = (await _press_and_store(home, pendant, 2))["counter"]
        stored = await home.stored_events()
        assert [e["event_id"] for e in stored] == [f"{pendant.id}-1", f"{pendant.id}-{second}"]
        assert sum(": HTTP 500" in line for line in home.hub.lines) == 2


async def test_forged_and_replayed_frames_are_refused_and_logged(tmp_path):
    async with SimHome(tmp_path) as home:
        pendant = await home.add_device("pendant")
        await _press_and_store(home, pendant)
        captured = [a.adv_data for a in pendant.firmware.bridge.advertising if a.interval_us][0]
        mac = pendant.device.address

        # replay: the genuine first frame, sent again after the pendant moved on to counter 2
        second = (await _press_and_store(home, pendant, 2))["counter"]  # 2, or 65 after a deep sleep between
        # first the hub owes the pendant nothing: a spoofer on its address is connectable too, and
        # an ack link then due may reach the spoofer (the hub retries), which stops advertising
        # once connected and so is never heard
        await home.hub.wait_for_line(rf"the device confirmed ack \d+ \(kind 2 for counter {second}\)", timeout=10)
        # forgery: the same frame with its MIC changed; a stranger: a frame from an address nobody paired
        forged = captured[:-1] + bytes([captured[-1] ^ 0xFF])
        for address, frame, refusal in (
                (mac, captured, r"replayed counter 1 \(last accepted \d+\)"),  # {second}, or a receipt's after it
                (mac, forged, "MIC mismatch"),
                ("24:0A:C4:EE:EE:EE", captured, "unpaired device")):
            # on the air until the hub refuses it, as an attacker's would be (and as it must be to be
            # heard at all if the hub is making a connection then)
            await home.transmit(address, frame, duration_s=10, until=home.hub.wait_for_line(
                f"refused frame from {address}: {refusal}", timeout=10))
        # a later genuine press, stored, is the proof none of the three was stored in between
        third = (await _press_and_store(home, pendant, 3))["counter"]
        assert [e["counter"] for e in await home.stored_events()] == [1, second, third] and 1 < second < third

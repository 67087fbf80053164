"""Property tests of the BLE codec (hypothesis, bounded): arbitrary bytes never raise anything
but FrameError/ValueError; what is sealed unseals to itself; our CCM equals cryptography's."""

from __future__ import annotations

import os
import time

import pytest
from cryptography.hazmat.primitives.ciphers.aead import AESCCM
from hypothesis import HealthCheck, assume, example, given, settings
from hypothesis import strategies as st

from safebox.protocol import bthome, ccm
from safebox.tools.fuzz import targets

# SAFEBOX_FUZZ_EXAMPLES=5000 for a deeper local run; the suite stays bounded.
FUZZ = settings(max_examples=int(os.environ.get("SAFEBOX_FUZZ_EXAMPLES", "300")), deadline=None, suppress_health_check=[HealthCheck.too_slow])

keys = st.binary(min_size=16, max_size=16)
macs = st.binary(min_size=6, max_size=6)
counters = st.integers(0, bthome.COUNTER_MAX)

_SPECS = {  # object id -> (size, signed)
    obj_id: (size, obj_id in bthome._SIGNED) for obj_id, size in bthome._OBJ_LEN.items()  # noqa: SLF001
}


@st.composite
def objects(draw: st.DrawFn, max_payload: int = bthome.MAX_PAYLOAD) -> list[tuple[int, int]]:
    """Objects in ascending id order whose encoding fits `max_payload` bytes."""
    chosen = draw(st.lists(st.sampled_from(sorted(_SPECS)), max_size=6))
    out, size = [], 0
    for obj_id in sorted(chosen):
        length, signed = _SPECS[obj_id]
        if size + 1 + length > max_payload:
            break
        bits = 8 * length
        value = draw(st.integers(-(1 << (bits - 1)), (1 << (bits - 1)) - 1) if signed else st.integers(0, (1 << bits) - 1))
        out.append((obj_id, value))
        size += 1 + length
    return out


@FUZZ
@given(st.binary(max_size=96))
def test_the_codec_target_holds_on_arbitrary_bytes(data):
    targets.codec(data)  # only FrameError/ValueError inside; decode/encode round trip


@FUZZ
@given(keys, macs, st.binary(max_size=64))
def test_unseal_and_unseal_ack_raise_only_frame_errors(key, mac, data):
    for call in (bthome.unseal, bthome.unseal_ack):
        try:
            call(key, mac, data)
        except bthome.FrameError:
            pass


@FUZZ
@given(st.binary(max_size=64))
def test_decode_objects_raises_only_frame_errors_and_round_trips_in_order(data):
    try:
        decoded = bthome.decode_objects(data)
    except bthome.FrameError:
        return
    ids = [obj_id for obj_id, _ in decoded]
    if ids == sorted(ids):
        assert bthome.encode_objects(decoded) == data


@FUZZ
@given(st.binary(max_size=64))
def test_service_data_in_never_raises(adv):
    found = bthome.service_data_in(adv)
    assert found is None or isinstance(found, bytes)


@FUZZ
@given(st.binary(max_size=24))
def test_service_data_survives_the_advertisement(sd):
    assert bthome.service_data_in(bthome.advertisement(sd)) == sd


@FUZZ
@given(keys, macs, counters, objects(), st.booleans(), st.integers(0, 9))
# the edges, every run: a signed 16-bit value's both ends and -1, unsigned 0 and all ones,
# the counter's first and last value (random draws missed -32768 read wrong, 4 runs of 4)
@example(bytes(16), bytes(6), 0, [(bthome.OBJ_TEMPERATURE, -32768)], False, 0)
@example(bytes(16), bytes(6), bthome.COUNTER_MAX, [(bthome.OBJ_TEMPERATURE, 32767)], True, 3)
@example(b"\xff" * 16, b"\xff" * 6, bthome.COUNTER_MAX, [(bthome.OBJ_TEMPERATURE, -1)], False, 9)
@example(bytes(16), bytes(6), 1, [(obj_id, 0) for obj_id in sorted(_SPECS)[:3]], False, 0)
@example(bytes(16), bytes(6), 2, [(obj_id, (1 << 8 * _SPECS[obj_id][0]) - 1) for obj_id in sorted(_SPECS)[:3]
                                  if not _SPECS[obj_id][1]], False, 0)
def test_seal_then_unseal_gives_back_the_frame(key, mac, counter, objs, event, resend):
    sealed = bthome.seal(key, mac, counter, objs, event, resend)
    assert len(bthome.advertisement(sealed)) <= 31
    info, got_counter, got = bthome.unseal(key, mac, sealed)
    assert (got_counter, got, bool(info & bthome.INFO_EVENT)) == (counter, objs, event)
    assert (info & bthome.INFO_RESEND_MASK) >> bthome.INFO_RESEND_SHIFT == resend % 4
    if resend % 4:  # each re-send's bytes differ from the first's (BlueZ reports changes only)
        assert sealed != bthome.seal(key, mac, counter, objs, event)


@FUZZ
@given(keys, macs, counters, objects(), st.data())
def test_any_change_to_a_sealed_frame_is_refused(key, mac, counter, objs, data):
    sealed = bytearray(bthome.seal(key, mac, counter, objs))
    at = data.draw(st.integers(0, len(sealed) - 1))
    flip = data.draw(st.integers(1, 255))
    sealed[at] ^= flip
    with pytest.raises(bthome.FrameError):
        bthome.unseal(key, mac, bytes(sealed))


@FUZZ
@given(keys, macs, counters, st.data())
def test_a_frame_does_not_verify_under_another_key_or_address(key, mac, counter, data):
    other_key = data.draw(keys)
    other_mac = data.draw(macs)
    assume(other_key != key and other_mac != mac)
    sealed = bthome.seal(key, mac, counter, bthome.pendant_objects(50, "emergency"))
    for k, m in ((other_key, mac), (key, other_mac)):
        with pytest.raises(bthome.FrameError):
            bthome.unseal(k, m, sealed)


@FUZZ
@given(keys, macs, st.sampled_from([bthome.ACK_HEARD, bthome.ACK_DELIVERED, bthome.ACK_OPERATOR]), counters,
       st.integers(0, 0xFFFFFFFF), st.integers(1, 0xFFFFFFFF))
def test_ack_round_trip_and_no_confusion_with_frames(key, mac, kind, counter, hub_time, number):
    ack = bthome.seal_ack(key, mac, kind, counter, hub_time, number)
    assert bthome.unseal_ack(key, mac, ack) == (kind, counter, hub_time, number)
    with pytest.raises(bthome.FrameError):
        bthome.unseal(key, mac, ack)  # an ack can never be taken for a frame


@FUZZ
@given(keys, st.binary(min_size=13, max_size=13), st.binary(max_size=200))
def test_our_ccm_equals_cryptographys_aesccm(key, nonce, plaintext):
    targets.ccm_differential(key + nonce + plaintext)
    ct, tag = ccm.encrypt(key, nonce, plaintext)
    assert AESCCM(key, tag_length=4).decrypt(nonce, ct + tag, None) == plaintext


@settings(max_examples=40, deadline=None)
@given(keys, st.integers(0, 100), st.sampled_from(bthome.PENDANT_BUTTONS),
       st.sampled_from([bthome.BUTTON_PRESS, bthome.BUTTON_LONG_PRESS]), st.integers(1, 0xFFFF), st.integers(0, 3))
def test_home_assistants_parser_reads_what_we_seal(key, battery, button, action, counter, resend):
    """Conformance, fuzzed: bthome-ble decrypts our frames (re-sends too: their number is in
    info bits BTHome reserves) and reads the same battery and button."""
    import bthome_ble  # a pinned test dependency: never skipped
    from bleak.backends.device import BLEDevice
    from habluetooth import BluetoothServiceInfoBleak
    mac = bytes.fromhex("240ac4123456")
    sd = bthome.seal(key, mac, counter, bthome.pendant_objects(battery, button, action), resend=resend)
    address = bthome.mac_text(mac)
    info = BluetoothServiceInfoBleak(
        name="p", address=address, rssi=-60, manufacturer_data={}, service_data={bthome.SERVICE_UUID: sd},
        service_uuids=[bthome.SERVICE_UUID], source="local", device=BLEDevice(address, "p", {}),
        advertisement=None, connectable=True, time=time.monotonic(), tx_power=None)
    parser = bthome_ble.BTHomeBluetoothDeviceData(bindkey=key)
    update = parser.update(info)
    assert parser.bindkey_verified
    battery_values = [v.native_value for k, v in update.entity_values.items() if k.key == "battery"]
    assert battery_values == [battery]
    pressed = {k.key: e.event_type for k, e in update.events.items() if e.event_type}
    position = bthome.PENDANT_BUTTONS.index(button) + 1
    assert pressed == {f"button_{position}": "press" if action == bthome.BUTTON_PRESS else "long_press"}

"""Protocol vectors on both runtimes, and the codec's refusals."""

from __future__ import annotations

import json
import subprocess
import sys
from binascii import unhexlify
from typing import Any

import pytest

from safebox.protocol import bthome, ccm

from .conftest import ROOT, VECTORS, run_micropython

CHECKER = ROOT / "tests" / "mp" / "check_vectors.py"
DOC = json.loads(VECTORS.read_text())


def test_bthome_io_example_reproduces_exactly():
    v = DOC["ccm"][0]
    assert v["source"] == "bthome.io encryption example"
    key, mac = unhexlify(v["key"]), bthome.mac_bytes(v["mac"])
    ct, tag = ccm.encrypt(key, bthome.nonce(mac, 0x41, 0x00112233), unhexlify("02CA0903BF13"))
    assert (ct.hex(), tag.hex()) == ("e445f3c9962b", "6c7c4519")
    info, counter, objects = bthome.unseal(key, mac, unhexlify(v["service_data"]))
    assert (info, counter, objects) == (0x41, 0x00112233, [(0x02, 2506), (0x03, 5055)])


def test_vectors_on_cpython():
    out = subprocess.run([sys.executable, str(CHECKER), str(VECTORS)], capture_output=True, text=True,
                         cwd=ROOT)
    assert out.returncode == 0, out.stdout + out.stderr
    assert " 0 failed" in out.stdout


def test_vectors_on_micropython(micropython, device_image):
    out = run_micropython(CHECKER, str(VECTORS), path=[device_image / "lib"])
    assert out.returncode == 0, out.stdout + out.stderr
    passed = int(out.stdout.split()[-4])
    assert passed >= 40 and out.stdout.strip().endswith("0 failed")


def test_checker_fails_on_a_wrong_vector(micropython, device_image, tmp_path):
    doc = json.loads(VECTORS.read_text())
    doc["frames"][0]["service_data"] = doc["frames"][0]["service_data"][:-2] + "00"
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps(doc))
    out = run_micropython(CHECKER, str(bad), path=[device_image / "lib"])
    assert out.returncode == 1
    assert "FAIL pendant_emergency_press seal" in out.stdout


@pytest.mark.parametrize("objects, why", [
    ([(bthome.OBJ_BUTTON, 1), (bthome.OBJ_BATTERY, 50)], "ascending"),
    ([(0x04, 1)], "unknown object id"),
    ([(bthome.OBJ_TEMPERATURE, -40000)], "does not fit"),
    ([(bthome.OBJ_BATTERY, 256)], "does not fit"),
    ([(bthome.OBJ_TIMESTAMP, 1)] * 4, "does not fit an advertisement"),
])
def test_seal_refuses_what_it_cannot_send(objects, why):
    with pytest.raises(ValueError, match=why):
        bthome.seal(bytes(range(16)), bytes(6), 1, objects)


def test_unseal_refuses_cut_objects():
    key, mac = bytes(range(16)), bytes(6)
    # a payload whose last object is cut short, sealed by hand
    ct, tag = ccm.encrypt(key, bthome.nonce(mac, 0x45, 9), b"\x01\x50\x50\x01")
    with pytest.raises(bthome.FrameError, match="cut short"):
        bthome.unseal(key, mac, b"\x45" + ct + b"\x09\x00\x00\x00" + tag)


def test_forged_ack_is_refused():
    key, mac = bytes(range(16)), bytes(6)
    ack = bytearray(bthome.seal_ack(key, mac, bthome.ACK_HEARD, 7, 1000, 1))
    ack[5] ^= 1  # claim another counter (it is encrypted: flip a bit of it)
    with pytest.raises(bthome.FrameError, match="MIC"):
        bthome.unseal_ack(key, mac, bytes(ack))
    ack = bytearray(bthome.seal_ack(key, mac, bthome.ACK_HEARD, 7, 1000, 1))
    ack[1] = 2  # claim another ack number
    with pytest.raises(bthome.FrameError, match="MIC"):
        bthome.unseal_ack(key, mac, bytes(ack))


def test_ack_nonce_never_equals_a_frame_nonce():
    mac = bytes(6)
    frame_nonces = {bthome.nonce(mac, info, 5) for info in (0x41, 0x45)}
    ack_nonces = {bthome.nonce(mac, 0x80 | k, 5) for k in (1, 2, 3)}
    assert not frame_nonces & ack_nonces


def test_a_re_sent_ack_never_reuses_a_nonce_with_other_bytes():
    """SPEC 1.7: the same kind for the same counter, sent again with a new hub time, is sealed
    under the next ack number; under one number the keystream would be shared (the two
    ciphertexts XOR to the plaintexts' difference). The vectors hold such a pair."""
    a, b = [v for v in DOC["acks"] if (v["kind"], v["counter"]) == (2, 1)]
    assert a["hub_time"] != b["hub_time"] and a["number"] != b["number"]
    key, mac = unhexlify(a["key"]), bthome.mac_bytes(a["mac"])
    xor = lambda x, y: bytes(i ^ j for i, j in zip(x, y))  # noqa: E731
    plain = [bthome._u32le(v["counter"]) + bthome._u32le(v["hub_time"]) for v in (a, b)]  # noqa: SLF001
    assert xor(unhexlify(a["ack"])[5:13], unhexlify(b["ack"])[5:13]) != xor(*plain)  # no shared keystream
    with pytest.raises(ValueError, match="ack number"):
        bthome.seal_ack(key, mac, 2, 1, 0, 0)
    assert bthome.unseal_ack(key, mac, unhexlify(b["ack"]))[3] == b["number"]


def _home_assistant_reads(v: dict) -> tuple[Any, dict]:
    """A vector's frame through Home Assistant's BTHome parser, with its key: the update and
    its values by key (the key checked)."""
    import time

    from bleak.backends.device import BLEDevice
    from bthome_ble import BTHomeBluetoothDeviceData
    from habluetooth import BluetoothServiceInfoBleak

    info = BluetoothServiceInfoBleak(
        name="device", address=v["mac"], rssi=-60, manufacturer_data={},
        service_data={bthome.SERVICE_UUID: unhexlify(v["service_data"])}, service_uuids=[bthome.SERVICE_UUID],
        source="local", device=BLEDevice(v["mac"], "device", {}), advertisement=None, connectable=True,
        time=time.monotonic(), tx_power=None)
    parser = BTHomeBluetoothDeviceData(bindkey=unhexlify(v["key"]))
    update = parser.update(info)
    assert parser.bindkey_verified
    return update, {k.key: x.native_value for k, x in update.entity_values.items()}


def test_receipt_vector_reads_in_home_assistants_parser():
    """The receipt's ack number is BTHome's own count object (0x3E, uint32): Home Assistant's
    parser reads the frame (battery, buttons, and the count) with the key."""
    [v] = [v for v in DOC["frames"] if "ack_seen" in v]
    _, values = _home_assistant_reads(v)
    assert values["count"] == v["ack_seen"] and values["battery"] == v["objects"][0][1]


def test_boot_frame_vectors_read_in_home_assistants_parser():
    """The boot frame's objects are BTHome's own (0x09 count, 0xF2 firmware version): Home
    Assistant's parser reads the battery, the reset cause as a count and the version."""
    boots = [v for v in DOC["frames"] if "boot" in v]
    assert {v["name"] for v in boots} == {"pendant_boot", "toilet_door_boot"}
    for v in boots:
        update, values = _home_assistant_reads(v)
        assert values["count"] == v["boot"]["reset_cause"]
        assert values["battery"] == v["objects"][0][1]
        assert [d.sw_version for d in update.devices.values()] == [v["boot"]["version"]]


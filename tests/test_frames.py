"""What a frame means (protocol/frames.py), from literal object bytes as a device sends them
(SPEC 1.5: id, value), on CPython and on the real micropython binary."""

from __future__ import annotations

import shutil

import pytest

from safebox.protocol import bthome, frames

from .conftest import ROOT, run_micropython

PENDANT, FRONT, TOILET = "pendant", "front_door", "toilet_door"


def read(role: str, plaintext: bytes) -> frames.Reading:
    return frames.read(role, bthome.decode_objects(plaintext))


def test_a_pendant_press_and_long_press() -> None:
    # battery 90 %, then the three buttons: emergency pressed, the other two not
    assert read(PENDANT, bytes.fromhex("015a 3a01 3a00 3a00")) == \
        frames.Reading("emergency", {"battery": 90, "action": "press"}, None, None)
    assert read(PENDANT, bytes.fromhex("0150 3a00 3a00 3a04")) == \
        frames.Reading("life_service", {"battery": 80, "action": "long_press"}, None, None)


def test_several_buttons_the_emergency_wins_and_says_so() -> None:
    reading = read(PENDANT, bytes.fromhex("0150 3a00 3a01 3a04"))
    assert (reading.type, reading.data["action"]) == ("community_service", "press")
    assert reading.note == "2 buttons pressed; taking community_service"


def test_doors_with_and_without_occupancy_and_a_timestamp() -> None:
    assert read(FRONT, bytes.fromhex("0164 1a01")) == frames.Reading("door_opened", {"battery": 100}, None, None)
    # closed, occupancy 1, unix time 1_790_000_000 = 0x6AB1_3B80, little-endian
    assert read(TOILET, bytes.fromhex("0132 1a00 2301 50803bb16a")) == \
        frames.Reading("door_closed", {"battery": 50, "occupancy": True}, 1_790_000_000, None)


@pytest.mark.parametrize(("role", "plaintext", "reason"), [
    (PENDANT, "0150 3a00 3a00 3a00", "no button pressed"),
    (PENDANT, "0150 3a01 3a00", "2 button objects, expected 3"),
    (PENDANT, "0150 3a02 3a00 3a00", "button emergency has unknown value 0x02"),
    (FRONT, "0150", "without a door object"),
    (FRONT, "0150 1a02", "door object has unknown value 2"),
    ("kettle", "0150 1a01", "no events are known for role 'kettle'"),
])
def test_frames_that_mean_nothing_are_refused_with_the_reason(role: str, plaintext: str, reason: str) -> None:
    with pytest.raises(frames.MeaningError, match=reason):
        read(role, bytes.fromhex(plaintext))


def test_door_objects_are_read_back() -> None:
    assert frames.read(TOILET, frames.door_objects(77, True, occupancy=False)) == \
        frames.Reading("door_opened", {"battery": 77, "occupancy": False}, None, None)
    assert frames.door_objects(77, False) == [(bthome.OBJ_BATTERY, 77), (bthome.OBJ_DOOR, 0)]


CHECK = """
from safebox.protocol import bthome, frames
r = frames.read("pendant", bthome.decode_objects(bytes.fromhex("015a3a003a013a00")))
print(r.type, r.data["action"], r.data["battery"])
r = frames.read("toilet_door", frames.door_objects(5, False, occupancy=True))
print(r.type, r.data["occupancy"])
try:
    frames.read("pendant", bthome.decode_objects(bytes.fromhex("0150")))
except frames.MeaningError as exc:
    print("refused:", exc)
"""


def test_the_same_on_micropython(micropython, tmp_path) -> None:
    lib = tmp_path / "lib" / "safebox" / "protocol"
    lib.mkdir(parents=True)
    (lib.parent / "__init__.py").write_text("")
    for name in ("__init__.py", "ccm.py", "bthome.py", "frames.py"):
        shutil.copy(ROOT / "protocol" / name, lib / name)
    script = tmp_path / "check.py"
    script.write_text(CHECK)
    out = run_micropython(script, path=[tmp_path / "lib"])
    assert out.returncode == 0, out.stderr
    assert out.stdout.splitlines() == ["community_service press 90", "door_closed True",
                                       "refused: pendant frame has 0 button objects, expected 3"]

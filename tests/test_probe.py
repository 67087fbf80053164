"""The probe's pieces that need no home: the ack-loss filter the chaos run shares, the table,
and the command's refusal of bad arguments. (The probe itself runs for over three minutes; the
stall it found is pinned by tests/test_hub_radio.py's asleep-device test.)"""

from __future__ import annotations

import random

import pytest

from safebox.tools import probe
from safebox.protocol import bthome
from safebox.tools.chaos import ack_loss


def _l2cap_att(pdu: bytes) -> bytes:
    return len(pdu).to_bytes(2, "little") + b"\x04\x00" + pdu  # L2CAP header, ATT channel 4


def test_ack_loss_loses_only_ack_writes_and_write_responses():
    lose, lost = ack_loss(1.0, random.Random(1))
    # Write Request, handle, an ack as the hub seals it (its length is the protocol's, not this test's)
    ack_write = _l2cap_att(b"\x12" + b"\x2a\x00" + bthome.seal_ack(bytes(16), bytes(6), 1, 1, 1_800_000_000, 1))
    response = _l2cap_att(b"\x13")
    read = _l2cap_att(b"\x0a\x2a\x00")
    other_channel = len(b"\x12" + bytes(15)).to_bytes(2, "little") + b"\x05\x00" + b"\x12" + bytes(15)
    assert lose("hub", "dev", ack_write) and lose("dev", "hub", response)
    assert not lose("hub", "dev", read) and not lose("hub", "dev", other_channel) and not lose("a", "b", b"\x01")
    assert lost == {"write": 1, "response": 1}
    never, none_lost = ack_loss(0.0, random.Random(1))
    assert not never("hub", "dev", ack_write) and not none_lost


def test_the_table_names_the_burst_and_whether_the_rate_came_back():
    result = {"kind": "ack-loss", "share": 0.5, "devices": 16, "burst_s": 5.0, "lost_acks": 30,
              "before_per_s": 26.2, "windows_per_s": [4.0, 1.0, 0.0], "recovered_after_s": None, "observed_s": 180}
    text = probe.table([result, {**result, "kind": "hub-kill", "recovered_after_s": 5}]).text()
    assert "50% of ack writes lost for 5 s (30 lost)" in text and "not within 180 s" in text
    assert "hub SIGKILLed" in text and "5 s" in text and "machine:" in text


@pytest.mark.parametrize("argv", [["ack-loss", "--share", "1.5"], ["adv-drop", "--devices", "0"], ["no-such-kind"]])
def test_bad_arguments_are_refused(argv, capsys):
    with pytest.raises(SystemExit) as exit_:
        probe.main(argv)
    assert exit_.value.code == 2 and "error:" in capsys.readouterr().err


async def test_an_unknown_kind_is_refused_before_any_home_starts():
    with pytest.raises(ValueError, match="unknown probe 'x'"):
        await probe.probe("x", 0.5)

"""SPEC 5: the SB1 message, the contacts' message and the PDU codec, against protocol/vectors/sms.json;
the PDUs we make are read back by an independent decoder (smspdudecoder)."""

from __future__ import annotations

import json

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from smspdudecoder.easy import read_incoming_sms

from safebox.protocol import events, sms, smspdu
from safebox.protocol.signing import public_key_to_text

from .conftest import ROOT

DOC = json.loads((ROOT / "protocol" / "vectors" / "sms.json").read_text())
KEY = Ed25519PrivateKey.from_private_bytes(bytes.fromhex(DOC["private_key_seed"]))


def test_vector_key_is_rfc8032_test1():
    assert public_key_to_text(KEY.public_key()) == DOC["public_key"]
    assert KEY.public_key().public_bytes_raw().hex() == \
        "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a"


@pytest.mark.parametrize("vector", DOC["messages"], ids=lambda v: v["body"]["type"])
def test_sb1_messages_reproduce_and_verify(vector):
    text = sms.compose(vector["body"], KEY)
    assert text == vector["text"]
    assert len(text) <= 160 and smspdu.is_gsm7(text)
    parsed = sms.parse(text)
    assert parsed.verify(KEY.public_key())
    assert parsed.body() == vector["body"]
    assert sms.contact_text(vector["body"], vector["contact_who"]) == vector["contact_text"]


def test_any_changed_character_breaks_the_signature():
    text = DOC["messages"][0]["text"]
    head, sig = text.rsplit(" ", 1)
    for i in range(4, len(head)):
        if head[i] == " ":
            continue
        altered = head[:i] + ("1" if head[i] != "1" else "2") + head[i:][1:] + " " + sig
        try:
            parsed = sms.parse(altered)
        except sms.SmsError:
            continue
        assert not parsed.verify(KEY.public_key()), altered
    other = Ed25519PrivateKey.generate()
    assert not sms.parse(text).verify(other.public_key())


@pytest.mark.parametrize("vector", DOC["refused"], ids=lambda v: v["why"])
def test_malformed_messages_are_refused_with_a_reason(vector):
    with pytest.raises(sms.SmsError, match=vector["why"]):
        sms.parse(vector["text"])


def test_routine_events_do_not_go_by_sms_and_long_ids_do_not_fit():
    body = events.make(event_id="240ac4000001-3", type="door_opened", hub_id="hub-sim-0001", home_id="home-0001",
                       occurred_at=1764745441.0, device={"id": "240ac4000001", "role": "front_door"}, counter=3)
    with pytest.raises(sms.SmsError, match="not an urgent type"):
        sms.compose(body, KEY)
    assert sms.fits("hub-sim-0001", "home-0001")
    assert not sms.fits("h" * 30, "home-" + "x" * 20)
    long = dict(DOC["messages"][0]["body"], hub_id="h" * 40, home_id="home-" + "x" * 30)
    with pytest.raises(sms.SmsError, match="do not fit one SMS"):
        sms.compose(long, KEY)


def test_contact_text_is_one_ucs2_sms_even_for_a_long_name():
    body = DOC["messages"][0]["body"]
    text = sms.contact_text(body, "王" * 100)
    assert len(text) == 70 and text.endswith("请尽快联系。")
    assert "15:04" in text  # 07:04 UTC at UTC+8
    hex_pdu, _ = smspdu.encode_submit(smspdu.Submit("+8613900139000", text))
    assert smspdu.decode_submit(hex_pdu).text == text


@pytest.mark.parametrize("vector", DOC["pdus"], ids=lambda v: v["source"][:40])
def test_pdu_vectors(vector):
    if vector["kind"] == "submit":
        msg = smspdu.decode_submit(vector["hex"])
        assert (msg.number, msg.text, msg.validity_minutes) == (vector["number"], vector["text"],
                                                                  vector["validity_minutes"])
        assert smspdu.encode_submit(msg) == (vector["hex"], vector["length"])
    else:
        msg = smspdu.decode_deliver(vector["hex"])
        assert (msg.sender, msg.text, msg.sent_at) == (vector["sender"], vector["text"], vector["sent_at"])
        if "smsc" in vector:
            again, _ = smspdu.encode_deliver(msg, smsc=vector["smsc"], tz_quarters=vector["tz_quarters"])
            assert again == vector["hex"]


@pytest.mark.parametrize("text", ["SB1 hub [x] {y} €5 ^~|\\", "紧急求助：王秀英", "hello\nworld @£$"])
def test_deliver_pdus_read_by_an_independent_decoder(text):
    hex_pdu, _ = smspdu.encode_deliver(smspdu.Deliver("+8613800138000", text, 1764745441),
                                       smsc="+8613800100500", tz_quarters=32)
    theirs = read_incoming_sms(hex_pdu)
    assert (theirs["sender"], theirs["content"], theirs["date"].timestamp()) == ("+8613800138000", text, 1764745441)


def test_pdu_refusals_name_the_problem():
    with pytest.raises(smspdu.PduError, match="not hexadecimal"):
        smspdu.decode_submit("zz")
    with pytest.raises(smspdu.PduError, match="ends too early|fewer than"):
        smspdu.decode_submit("0011000B916407281553F80000AA0AE832")
    with pytest.raises(smspdu.PduError, match="not an SMS-DELIVER"):
        smspdu.decode_deliver("0011000B916407281553F80000AA0AE8329BFD4697D9EC37")
    with pytest.raises(smspdu.PduError, match="do not fit one SMS"):
        smspdu.encode_submit(smspdu.Submit("+1", "x" * 161))
    with pytest.raises(smspdu.PduError, match="UCS-2"):
        smspdu.encode_submit(smspdu.Submit("+1", "王" * 71))

"""Property tests of the event body validator (events.decode): any bytes or any JSON give a valid
body or EventError, nothing else; valid bodies survive re-encoding unchanged.

Three bugs found here (deep nesting, huge integers, a list as device.role) are fixed and kept
as regression tests at the end."""

from __future__ import annotations

import os
import json

import pytest
from hypothesis import HealthCheck, assume, example, given, settings
from hypothesis import strategies as st

from safebox.protocol import events
from safebox.tools.fuzz import targets

# SAFEBOX_FUZZ_EXAMPLES=5000 for a deeper local run; the suite stays bounded.
FUZZ = settings(max_examples=int(os.environ.get("SAFEBOX_FUZZ_EXAMPLES", "300")), deadline=None, suppress_health_check=[HealthCheck.too_slow])

json_scalars = st.none() | st.booleans() | st.integers(-(2 ** 64), 2 ** 64) | \
    st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=30)
json_values = st.recursive(json_scalars, lambda inner: st.lists(inner, max_size=4) |
                           st.dictionaries(st.text(max_size=12), inner, max_size=4), max_leaves=12)


def _genuine(counter: int = 7) -> dict:
    return events.make(event_id=f"240ac4000001-{counter}", type=events.EMERGENCY, hub_id="hub-fuzz-0001",
                       home_id="home-fuzz-0001", occurred_at=1_790_000_000.5,
                       device={"id": "240ac4000001", "role": "pendant", "room": "bedroom"}, counter=counter,
                       data={"battery": 80, "action": "press", "rssi": -60})


def _decode_or_refuse(raw: bytes) -> dict | None:
    try:
        body = events.decode(raw)
    except events.EventError:
        return None
    assert events.decode(events.encode(body)) == body
    return body



@FUZZ
@given(st.binary(max_size=300))
def test_arbitrary_bytes_give_a_body_or_event_error(raw):
    targets.event_body(raw)


@FUZZ
@given(json_values)
def test_arbitrary_json_gives_a_body_or_event_error(value):
    _decode_or_refuse(json.dumps(value).encode())


@FUZZ
@given(st.sampled_from(["event_id", "type", "hub_id", "home_id", "device", "counter", "occurred_at", "data",
                        "extra"]), json_values)
def test_one_field_of_a_genuine_body_replaced_by_anything(field, value):
    body = _genuine()
    body[field] = value
    decoded = _decode_or_refuse(events.encode(body))
    if decoded is not None:  # accepted: then it really is valid, by the validator's own rules
        events.validate(decoded)


@FUZZ
@given(st.sampled_from(["id", "role", "room", "other"]), json_values)
def test_one_device_field_replaced_by_anything(field, value):
    body = _genuine()
    body["device"][field] = value
    _decode_or_refuse(events.encode(body))


@FUZZ
@given(st.text(max_size=40))
def test_occurred_at_any_text(text):
    body = _genuine()
    body["occurred_at"] = text
    _decode_or_refuse(events.encode(body))


@FUZZ
@given(st.integers(0, 0xFFFFFFFF), st.sampled_from(sorted(events.TYPES - {events.HUB_HEARTBEAT})),
       st.floats(0, 4_000_000_000), st.text(max_size=20).filter(str.isprintable))
@example(0, events.EMERGENCY, 0.0, "")  # the edges, every run
@example(0xFFFFFFFF, events.EMERGENCY, 4_000_000_000.0, "卫生间")
def test_make_encode_decode_round_trip(counter, type_, when, room):
    body = events.make(event_id=f"240ac4000001-{counter}", type=type_, hub_id="hub-fuzz-0001",
                       home_id="home-fuzz-0001", occurred_at=when,
                       device={"id": "240ac4000001", "role": "pendant", "room": room}, counter=counter)
    raw = events.encode(body)
    assert events.decode(raw) == body
    assert events.encode(events.decode(raw)) == raw  # the signed bytes are stable


# -- bugs found here, fixed, kept as regression tests ------------------------------------------------------------------------

def test_deeply_nested_json_is_an_event_error():
    with pytest.raises(events.EventError):
        events.decode(b"[" * 5000 + b"]" * 5000)


def test_a_huge_number_is_an_event_error():
    with pytest.raises(events.EventError, match="unreadable number"):
        events.decode(b'{"counter": ' + b"9" * 5000 + b"}")


def test_a_device_role_that_is_a_list_is_an_event_error():
    body = _genuine()
    body["device"]["role"] = []
    with pytest.raises(events.EventError):
        events.decode(events.encode(body))

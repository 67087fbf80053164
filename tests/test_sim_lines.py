"""tools/sim/lines.py: each kind of line read from the text the firmware and the hub really
write (their print and log format strings, found in their source), and the wait patterns."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from safebox.tools.sim import lines

ROOT = Path(__file__).resolve().parents[1]


def _source(*parts: str) -> str:
    return "\n".join((ROOT / p).read_text() for p in parts)


@pytest.mark.parametrize("line, record", [
    ("boot safebox 0.2.0 reset_cause 4 wake 4", lines.Boot("0.2.0", 4, 4)),
    ("ready pendant next counter 65 pending 1", lines.Ready("pendant", 65, 1)),
    ("event 5 community_service press", lines.Event(5, "community_service press")),
    ("event 2 door closed", lines.Event(2, "door closed")),
    ("acked 3 kind 1", lines.Acked(3, 1)),
    ("ack 1 kind 2 shown", lines.AckShown(1, 2)),
    ("store full: dropped [1, 2]", lines.Dropped("[1, 2]")),
    ("dropped 7 unsent: the store was full", lines.Dropped("7 unsent: the store was full")),
    ("linger 1 ended kind 2", lines.LingerEnded(1, "kind 2")),
    ("heartbeat 9 [(1, 90)]", lines.Heartbeat(9, "[(1, 90)]")),
    ("sleep 4000 idle", lines.Sleep(4000, "idle")),
    ("deepsleep 60000 idle", lines.DeepSleep(60000, "idle")),
    ("woke timer 3998", lines.Woke("timer", 3998)),
    ("heap live 51234 free 140000", lines.Heap("live", 51234)),
])
def test_device_lines_read_as_their_record(line: str, record: lines._Line) -> None:
    assert lines.device_line(line) == record
    assert re.search(type(record).pattern(), line)


@pytest.mark.parametrize("line", ["event lost: flash write failed: [Errno 28]", "ack refused: ack MIC mismatch",
                                  "self-test: FAIL config: no key", "sending 1", "linger 2"])
def test_other_lines_are_none(line: str) -> None:
    assert lines.device_line(line) is None


def test_event_types_as_the_platform_stores_them() -> None:
    assert lines.Event(1, "emergency press").type == "emergency"
    assert lines.Event(1, "life_service long_press").type == "life_service"
    assert lines.Event(1, "door open").type == "door_opened"
    assert lines.Event(1, "door closed").type == "door_closed"


def test_the_firmware_prints_what_is_read() -> None:
    """The print() calls the records stand for are still in the firmware, word for word."""
    src = _source("firmware/main.py", "firmware/pendant.py", "firmware/door.py", "firmware/sender.py",
                  "firmware/power.py")
    for call in ['print("boot safebox", VERSION, "reset_cause", WOKE[0], "wake", WOKE[1])',
                 'print("ready", cfg["role"], "next counter", store.next_counter, "pending", len(store.pending))',
                 'print("event", counter, name, action)', 'print("event", counter, "door"',
                 'print("acked", acked, "kind", kind)', 'print("ack", counter, "kind", kind, "shown")',
                 'print("store full: dropped", dropped)', 'print("dropped", counter, "unsent',
                 'print("linger", counter, "ended"',
                 'what = "boot frame"', 'what = "receipt"', 'print(what, counter, objects)',
                 'print("sleep", ms, why)', 'print("deepsleep", ms, why)', 'print("woke", woke, slept)']:
        assert call in src, call


@pytest.mark.parametrize("fmt, args, record", [
    ("refused frame from %s: %s", ("24:0A:C4:12:34:56", "replayed counter 9 (last accepted 10)"),
     lines.Refused("24:0A:C4:12:34:56", "replayed counter 9 (last accepted 10)")),
    ("%s: event %s stored (%s)", ("24:0A:C4:12:34:56", "240ac4123456-3", "emergency"),
     lines.Stored("24:0A:C4:12:34:56", "240ac4123456-3", "emergency")),
    ("%s: ack kind %d for counter %d written in %d ms (ack %d%s)", ("24:0A:C4:12:34:56", 2, 3, 41, 7, ""),
     lines.AckWritten("24:0A:C4:12:34:56", 2, 3)),
    ("event %s: delivered, %d in %d ms%s", ("240ac4123456-3", 201, 12, ""), lines.Delivered("240ac4123456-3")),
    ("batch of %d (%s .. %s): %d delivered, %d rejected, %d to retry, in %d ms%s",
     (100, "a-1", "a-100", 100, 0, 0, 30, ""), lines.Batch(100)),
])
def test_hub_log_lines_read_from_its_format_strings(fmt: str, args: tuple, record: lines._Line) -> None:
    assert f'"{fmt}"' in _source("hub/ingest.py", "hub/refusals.py", "hub/acks/policy.py", "hub/uplink/relay.py"), fmt
    message = fmt % args
    assert lines.hub_line(message) == record
    assert lines.hub_line(f"WARNING safebox.hub.x: {message}") == record  # as a child process's output line


def test_patterns_with_fixed_fields() -> None:
    assert re.search(lines.Acked.pattern(counter=3), "acked 3 kind 2")
    assert not re.search(lines.Acked.pattern(counter=3), "acked 33 kind 2")
    assert re.search(lines.Stored.pattern(event_id="a.b-1"), "x: event a.b-1 stored (emergency)")
    assert not re.search(lines.Stored.pattern(event_id="a.b-1"), "x: event aXb-1 stored (emergency)")
    either = lines.any_of(lines.Sleep.pattern(why="idle"), lines.DeepSleep.pattern(why="idle"))
    assert re.search(either, "deepsleep 5 idle") and re.search(either, "sleep 5 idle")
    assert not re.search(either, "sleep 5 linger")
    with pytest.raises(TypeError):
        lines.Acked.pattern(count=3)
    assert re.search(lines.Listening.pattern(), "listening on https://127.0.0.1:4433")["url"] == \
        "https://127.0.0.1:4433"

"""The device's event store and counter, on the real micropython binary.

Each step runs in a fresh micropython process in the same directory: a real
reboot as far as the store can tell (RAM gone, flash files kept).
"""

from __future__ import annotations

import json

import pytest

from .conftest import run_micropython

PRELUDE = "from safebox.firmware.store import EventStore, MAX_PENDING\ns = EventStore()\n"


@pytest.fixture
def flash(tmp_path, device_image, micropython):
    """A device filesystem; boot(code) runs `code` after the store is opened."""
    def boot(code: str) -> list[str]:
        script = tmp_path / "step.py"
        script.write_text(PRELUDE + code)
        out = run_micropython(script, path=[device_image / "lib"], cwd=tmp_path)
        assert out.returncode == 0, out.stdout + out.stderr
        return out.stdout.split()
    boot.dir = tmp_path
    return boot


def test_counter_never_goes_backwards_across_reboots(flash):
    seen = []
    for _ in range(5):
        seen += [int(x) for x in flash("for _ in range(3): print(s.allocate())\n")]
    assert seen == sorted(seen) and len(set(seen)) == len(seen)
    # skipping ahead costs at most one block per boot
    assert seen[-1] - seen[0] < 5 * 64


def test_counter_mark_is_written_once_per_block_not_per_frame(flash):
    flash("for _ in range(200): s.allocate()\n")
    assert (flash.dir / "counter").read_text() == str(1 + 4 * 64)  # four blocks reserved for 200 frames


def test_pending_events_survive_a_reboot_oldest_first(flash):
    flash("s.add([(1, 80), (58, 1)], True)\ns.add([(1, 80), (58, 0)], False)\n")
    out = flash("print(s.oldest()[0], len(s.pending), s.next_counter)\n")
    first, count, next_counter = map(int, out)
    assert count == 2 and first == 1 and next_counter > 2


def test_ack_forgets_only_that_event(flash):
    flash("s.add([(1, 80)], True)\ns.add([(1, 81)], False)\n")
    out = flash("print(s.ack(1), s.ack(1), s.ack(99), len(s.pending), s.oldest()[0])\n")
    assert out == ["True", "False", "False", "1", "2"]


def test_lost_counter_file_resumes_above_pending_events(flash):
    flash("for _ in range(3): s.add([(1, 50)], False)\n")
    (flash.dir / "counter").unlink()
    assert int(flash("print(s.allocate())\n")[0]) > 3


@pytest.mark.parametrize("content", ["garbage", "", "0", "-5"])
def test_unreadable_counter_file_never_restarts_the_counter(flash, device_image, content):
    """A counter file that is there but unreadable: no counter is known to be unused (restarting
    at 1 would reuse CCM nonces with other bytes, and the hub would refuse every frame as a
    replay). The store refuses to open (CounterLost); the events file is left as it was."""
    flash("for _ in range(3): s.add([(1, 50)], False)\n")
    events = (flash.dir / "events.json").read_text()
    (flash.dir / "counter").write_text(content)
    script = flash.dir / "lost.py"
    script.write_text("from safebox.firmware.store import EventStore, CounterLost\n"
                      "try:\n    s = EventStore()\n    print('opened next', s.next_counter)\n"
                      "except CounterLost as exc:\n    print('lost:', exc.args[1])\n")
    out = run_micropython(script, path=[device_image / "lib"], cwd=flash.dir)
    assert out.stdout.startswith("lost: counter file"), out.stdout + out.stderr
    assert (flash.dir / "events.json").read_text() == events


def test_ack_number_is_kept_across_reboots(flash):
    assert flash("print(s.ack_number)\ns.note_ack(1796293001)\n") == ["0"]
    assert flash("print(s.ack_number)\n") == ["1796293001"]


def test_full_store_drops_oldest_ordinary_event_never_an_emergency(flash):
    code = (
        "s.add([(1, 1)], True)\n"
        "for i in range(MAX_PENDING - 1): s.add([(1, 2)], False)\n"
        "c, dropped = s.add([(1, 3)], True)\n"
        "print(len(s.pending), dropped, s.oldest()[1])\n"
    )
    out = flash(code)
    assert out[0] == "32"
    assert out[1] == "[2]"  # the first ordinary event went, counter 2
    assert out[2] == "1"  # the first emergency is still the oldest
    pending = json.loads((flash.dir / "events.json").read_text())
    assert [e[1] for e in pending].count(1) == 2


def test_store_of_only_emergencies_keeps_them_all(flash):
    out = flash("for i in range(MAX_PENDING + 3): s.add([(1, 1)], True)\nprint(len(s.pending))\n")
    assert out == [str(32 + 3)]


def test_reset_during_write_leaves_old_file(flash):
    flash("s.add([(1, 1)], True)\n")
    (flash.dir / "events.json.tmp").write_text("[[2, 0, [[1")  # a write cut by a reset
    assert flash("print(len(s.pending), s.oldest()[0])\n") == ["1", "1"]

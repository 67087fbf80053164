"""The event store under brown-outs: the micropython process is killed (SIGKILL) at random
moments while it writes, then booted again on the same flash. Whatever the moment, the
store opens cleanly, the counter resumes above every counter that was handed out, and
no event that was stored is lost."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import time

from .conftest import MICROPYTHON

# Adds events as fast as it can, acknowledging every other one; prints each counter
# once the store has it, with the ones it dropped to make room ("stored N [D ...]"),
# and each acknowledged one ("acked N"). Each line is one write.
WRITER = """
from safebox.firmware.store import EventStore
s = EventStore(max_pending=%d)
while True:
    c, dropped = s.add([(1, 50)], False)
    print("stored %%d %%s" %% (c, " ".join(str(d) for d in dropped)))
    if c %% 2:
        s.ack(c)
        print("acked %%d" %% c)
"""

CHECK = """
from safebox.firmware.store import EventStore
s = EventStore(max_pending=%d)
print("problems", len(s.problems))
print("next", s.next_counter)
print("pending", " ".join(str(e[0]) for e in s.pending))
"""


def _env(device_image) -> dict[str, str]:
    return dict(os.environ, MICROPYPATH=f".frozen:{device_image / 'lib'}")


def test_killed_at_random_moments_while_writing_the_store_stays_whole(tmp_path, device_image, micropython):
    rng = random.Random(3)
    (tmp_path / "writer.py").write_text(WRITER % 8)
    (tmp_path / "check.py").write_text(CHECK % 8)
    handed_out: set[int] = set()
    acked: set[int] = set()
    dropped: set[int] = set()
    for round_ in range(10):
        proc = subprocess.Popen([str(MICROPYTHON), "-X", "heapsize=128k", "writer.py"], cwd=tmp_path,
                                env=_env(device_image), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        time.sleep(rng.uniform(0.03, 0.15))
        proc.send_signal(signal.SIGKILL)  # the brown-out
        out, _err = proc.communicate(timeout=10)
        for line in out.splitlines():
            what, *numbers = line.split()
            if numbers and all(n.isdigit() for n in numbers):
                (handed_out if what == "stored" else acked).add(int(numbers[0]))
                dropped.update(int(n) for n in numbers[1:])
        check = subprocess.run([str(MICROPYTHON), "check.py"], cwd=tmp_path, env=_env(device_image),
                               capture_output=True, text=True, timeout=10)
        assert check.returncode == 0, check.stdout + check.stderr
        lines = dict(line.split(" ", 1) if " " in line else (line, "") for line in check.stdout.splitlines())
        assert lines["problems"] == "0", f"round {round_}: the store did not open cleanly"
        assert int(lines["next"]) > max(handed_out, default=0), f"round {round_}: the counter went backwards"
        pending = {int(n) for n in lines["pending"].split()}
        # Every event the store confirmed is still there unless it was acked or dropped.
        # The cut may fall between a write and its line: the last event may have been
        # acked unseen, and one more may have been stored unseen (with the oldest one
        # dropped to make room for it).
        last = max(handed_out, default=0)
        unseen = pending - handed_out
        assert len(unseen) <= 1 and all(u > last for u in unseen), f"round {round_}: an event nobody stored"
        missing = handed_out - acked - dropped - {last} - pending
        assert len(missing) <= len(unseen), f"round {round_}: stored events lost: {sorted(missing)}"
        dropped |= missing
        if last not in pending:
            acked.add(last)
        handed_out |= unseen
    assert len(handed_out) > 50, "the writer wrote enough to be cut in the middle of writes"


def test_configured_bound_drops_the_oldest_ordinary_event(tmp_path, device_image, micropython):
    (tmp_path / "bound.py").write_text(
        "from safebox.firmware.store import EventStore\n"
        "s = EventStore(max_pending=3)\n"
        "s.add([(1, 1)], True)\n"
        "for i in range(4): print(s.add([(1, 2)], False))\n"
        "print([e[0] for e in s.pending])\n")
    out = subprocess.run([str(MICROPYTHON), "bound.py"], cwd=tmp_path, env=_env(device_image),
                         capture_output=True, text=True, timeout=10)
    assert out.stdout.splitlines() == ["(2, [])", "(3, [])", "(4, [2])", "(5, [3])", "[1, 4, 5]"]

"""A reduced chaos run, as the command runs it: faults at random with a fixed seed (hub
SIGKILLed, receiver down or failing, adverts and acks lost, devices rebooted mid-send),
and still every event at the platform exactly once."""

from __future__ import annotations

import json
import subprocess
import sys

from .conftest import ROOT


def test_reduced_chaos_run_loses_nothing_and_stores_nothing_twice(tmp_path):
    out = subprocess.run(
        [sys.executable, "-m", "safebox.tools.chaos", "--events", "150", "--devices", "4", "--seed", "7",
         "--fault-scale", "0.25", "--json", "--workdir", str(tmp_path)],
        capture_output=True, text=True, timeout=240, cwd=ROOT)
    result = json.loads(out.stdout)
    assert result["created"] >= 150
    assert (result["lost"], result["stored_twice"], result["phantom"], result["wrong_content"]) == (0, 0, 0, 0), \
        result.get("lost_ids")
    assert result["stored"] == result["created"]
    assert len(result["faults"]) >= 3, "the run must actually have injected faults"
    assert result["ok"] is True and out.returncode == 0

"""The attack table, run against the simulated home as a user would run it: every attack
refused with its reason, nothing stored harmed, and the genuine controls still accepted."""

from __future__ import annotations

import json
import subprocess
import sys

from .conftest import ROOT


def test_every_attack_is_refused_and_nothing_stored_is_harmed(tmp_path):
    out = subprocess.run([sys.executable, "-m", "safebox.tools.attacks", "--json", "--workdir", str(tmp_path)],
                         capture_output=True, text=True, timeout=180, cwd=ROOT)
    table = json.loads(out.stdout)
    attacks = [row for row in table["attempts"] if row["hop"] != "control"]
    controls = [row for row in table["attempts"] if row["hop"] == "control"]
    failed = [f"{row['attack']}: {row['seen']}" for row in table["attempts"] if not row["ok"]]
    assert not failed, "\n".join(failed)
    assert out.returncode == 0 and table["ok"] is True
    assert len(attacks) >= 60 and {row["hop"] for row in attacks} == {"BLE", "HTTPS"}
    assert all(row["refused"] and row["intact"] for row in attacks)
    for must in ("replayed frame after the hub was SIGKILLed and restarted", "replayed pre-battery-change frame",
                 "replayed request, byte for byte", "replayed request after the platform restarted",
                 "idempotency key reused with a different body", "enrolment with a made-up one-time code"):
        assert any(row["attack"].startswith(must) and row["ok"] for row in attacks), must
    # the controls prove the same path accepts what is genuine (else "refused" would mean nothing)
    assert len(controls) >= 4 and all(row["ok"] and ("accepted" in row["seen"] or "duplicate" in row["seen"])
                                      for row in controls)

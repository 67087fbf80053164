"""The quick start's main job (`./dev demo`): presses cross the simulated air, the hub and the
signed HTTPS hop, and the printout says what the pendant showed and when."""

from __future__ import annotations

import subprocess
import sys

from safebox.tools.sim import demo

from .conftest import ROOT


async def test_the_demo_reports_each_press_stored_verified_and_shown_on_the_pendant(tmp_path):
    result = await demo.run(presses=2, workdir=tmp_path)
    assert [e["event_id"] for e in result["events"]] == [f"{result['pendant']}-1", f"{result['pendant']}-2"]
    assert all(e["signature_verified"] and e["type"] == "emergency" for e in result["events"])
    for i in range(2):
        # stored after the finger let go; the first ack and "the platform has it" after the press
        assert result["press_hold_ms"] < result["latency_ms"][i] < 10_000
        assert 0 < result["device_ack_ms"][i] <= result["device_delivered_ms"][i]
        assert result["device_ack_kind"][i] in (1, 2)
    text = demo.render(result)
    assert text.count("platform stored") == 2 and text.count("the platform has it") == 2
    assert text.count("the hub heard it") == result["device_ack_kind"].count(1)
    assert "median" in text and "NOT verified" not in text


def test_render_names_a_first_ack_that_was_already_delivered():
    event = {"event_id": "240ac4000001-1", "type": "emergency", "counter": 1, "signature_verified": True}
    result = {"hub_id": "hub-1", "platform": "https://x", "pendant": "240ac4000001", "press_hold_ms": 120.0,
              "latency_ms": [190.0, 185.0], "latency_ms_median": 187.5, "device_ack_ms": [230.0, 240.0],
              "device_ack_kind": [1, 2], "device_delivered_ms": [245.0, 240.0], "events": [event, event]}
    lines = demo.render(result).splitlines()
    assert sum("the hub heard it" in line for line in lines) == 1
    assert any("ack kind 2, its first" in line and "240 ms" in line for line in lines)


def test_the_demo_command_rejects_a_bad_press_count():
    out = subprocess.run([sys.executable, "-m", "safebox.tools.sim.cli", "demo", "--presses", "0"],
                         capture_output=True, text=True, timeout=60, cwd=ROOT)
    assert out.returncode == 2 and "presses" in out.stderr

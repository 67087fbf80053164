"""`safebox-sim demo --pi --json` (issue 10, item 8): the demo with the hub in the virtual Pi.

The command is run as a user runs it; its JSON must name the stack the VM really ran, checked
here against sources the demo does not read: the kernel release the set-up unpacked, the bluez
package installed on this machine (the VM's root is this machine's, read-only), the running
bluetoothd's command line and the hub's journal kept from the VM. As root this never skips
(see test_vm_bluez.py).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from safebox.tools.vm import pi_demo

from .conftest import ROOT


def test_the_demo_on_the_virtual_pi_names_the_stack_and_the_press_reaches_the_platform(vm_kernel, tmp_path: Path):
    out = subprocess.run([sys.executable, "-m", "safebox.tools.sim.cli", "demo", "--pi", "--json",
                          "--workdir", str(tmp_path)], capture_output=True, text=True, timeout=600, cwd=ROOT)
    assert out.returncode == 0, out.stderr[-4000:]
    result = json.loads(out.stdout)
    run_dir = tmp_path / "vm"
    journal = (run_dir / "hub-journal.txt").read_text()
    bluez_deb = subprocess.run(["dpkg-query", "-W", "-f=${Version}", "bluez"], capture_output=True, text=True,
                               check=True).stdout  # e.g. 5.66-1+deb12u2

    radio = result["radio"]
    assert radio["backend"] == "bluez"
    assert radio["kernel"] == vm_kernel.release
    assert radio["bluez"] and bluez_deb.startswith(radio["bluez"] + "-")
    assert radio["init"] == "systemd"
    # bluetoothd ran with --experimental (the VM's drop-in), so the hub scans passively; it
    # would have logged the fall-back to active scanning otherwise
    assert "--experimental" in (run_dir / "stack.txt").read_text()
    assert radio["scanning"] == "passive" and "passive scanning unavailable" not in journal
    assert result["hub_service"] == {"type": "notify", "user": "safebox", "active": "active", "restarts": "0",
                                     "watchdog": "1min"}

    pendant = result["pendant"]
    assert [(e["event_id"], e["type"], e["hub_id"], e["signature_verified"]) for e in result["events"]] == \
        [(f"{pendant}-1", "emergency", "hub-vm-0001", True)]
    text = pi_demo.render(result)
    assert "the platform has it" in text and f"BlueZ {radio['bluez']}" in text and "passive scanning" in text
    # the pendant took an ack for its press, and showed "the platform has it" (kind 2 or more)
    assert any(a["counter"] == 1 and a["kind"] >= 2 for a in result["acks"]), result["acks"]
    assert result["device_ack_kind"][0] in (1, 2, 3) and result["device_delivered_ms"][0] > 0
    print(f"\ndemo --pi: {radio}; boot {result['vm']}; latency {result['latency_ms']} ms; acks {result['acks']}")

"""The quick start's main job (`./dev demo`): presses cross the simulated air, the hub and the
signed HTTPS hop, and the printout says what the pendant showed and when."""

from __future__ import annotations

import subprocess
import sys

from safebox.tools.sim import demo

from .conftest import ROOT


async def test_the_demo_reports_each_press_stored_verified_and_shown_on_the_pendant(tmp_path):
    result = await demo.run(presses=2, workdir=tmp_path)
    # counter 1, then the next press's (the pendant's receipt after the first press, SPEC 1.7,
    # takes a counter in between unless the second press came first)
    counters = [e["counter"] for e in result["events"]]
    assert counters[0] == 1 and counters[1] in (2, 3), counters
    assert [e["event_id"] for e in result["events"]] == [f"{result['pendant']}-{c}" for c in counters]
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


async def test_the_console_demo_prints_the_screen_and_a_login_that_works(tmp_path):
    # ./dev demo --console: the address and a one-time login are printed, and they let one in
    import asyncio
    import re

    import aiohttp

    from safebox.tools.sim import console_demo

    said: list[str] = []
    demo_task = asyncio.create_task(console_demo.run(workdir=tmp_path, seconds=8, say=said.append))
    async with asyncio.timeout(60):
        while not any("running for" in line for line in said):
            await asyncio.sleep(0.1)
    url = re.search(r"screen: (https://\S+)/", said[0]).group(1)
    name, password = re.search(r"login: (\S+) / (\S+)", said[1]).groups()
    import ssl
    tls = ssl.create_default_context(cafile=str(tmp_path / "tls" / "ca.pem"))
    async with aiohttp.ClientSession(url, cookie_jar=aiohttp.CookieJar(unsafe=True),
                                     connector=aiohttp.TCPConnector(ssl=tls)) as http:
        async with http.get("/login") as page:
            token = re.search(r'name="csrf" value="([^"]+)"', await page.text()).group(1)
        async with http.post("/login", data={"csrf": token, "name": name, "password": password}) as screen:
            assert screen.status == 200 and "Call centre" in await screen.text()
        async with asyncio.timeout(10):
            while True:  # the press is stored a few hundred ms after it was made
                async with http.get("/", headers={"Accept": "text/html"}) as screen:
                    text = await screen.text()
                if 'data-kind="emergency"' in text:
                    break
                await asyncio.sleep(0.2)
    assert 'class="toilet' in text
    await demo_task


def test_the_demo_on_the_virtual_pi_says_how_to_set_it_up_when_it_is_not(tmp_path):
    # (the run itself is tests/test_vm_hub.py's: one boot of the VM for everything asked of it)
    import os
    out = subprocess.run([sys.executable, "-m", "safebox.tools.sim.cli", "demo", "--pi", "--json"],
                         capture_output=True, text=True, timeout=60, cwd=ROOT,
                         env=dict(os.environ, SAFEBOX_VM_CACHE=str(tmp_path / "empty")))
    assert out.returncode == 1 and out.stdout == ""
    assert "safebox-sim: the virtual Pi" in out.stderr and "vm-setup" in out.stderr, out.stderr

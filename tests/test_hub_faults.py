"""The hub as real processes (SimHome: hub and receiver are their own processes, over real
TLS): SIGKILL in the middle of relaying loses nothing and duplicates nothing; the
installer's CLI against the running hub; no key material in the hub's logs."""

from __future__ import annotations

import asyncio
import base64
import json
import sqlite3
import time

from safebox.hub import keys
from safebox.hub.devices import Device, Devices
from safebox.hub.store import HubStore
from safebox.protocol import events
from safebox.tools.sim.home import SimHome

DEVICES, EACH, PRESSES = 4, 60, 5


def _stored(db) -> list[str]:
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        return [row[0] for row in conn.execute("SELECT event_id FROM events ORDER BY id")]
    finally:
        conn.close()


def _fill_outbox(home: SimHome) -> list[str]:
    """What a hub stores while its platform is unreachable: door events of four devices and,
    among them, five button presses (exactly as `HubStore.accept` stores frames)."""
    ids = []
    with HubStore.open(home.hub_state / "hub.db") as store:
        for n in range(1, EACH + 1):
            for d in range(DEVICES):
                device_id = f"240ac4aa00{d:02x}"
                ids.append(f"{device_id}-{n}")
                store.accept(device_id, n, events.encode(events.make(
                    event_id=ids[-1], type=events.DOOR_OPENED if n % 2 else events.DOOR_CLOSED,
                    hub_id=home.hub_id, home_id=home.home_id, occurred_at=time.time(),
                    device={"id": device_id, "role": "front_door", "room": "hall"}, counter=n)))
            if n % (EACH // PRESSES) == 0:
                press = f"240ac4bb0001-{n}"
                ids.append(press)
                store.accept("240ac4bb0001", n, events.encode(events.make(
                    event_id=press, type=events.EMERGENCY, hub_id=home.hub_id, home_id=home.home_id,
                    occurred_at=time.time(), device={"id": "240ac4bb0001", "role": "pendant"}, counter=n,
                    data={"action": "press"})))
    return ids


async def test_sigkill_in_the_middle_of_relaying_loses_nothing_and_duplicates_nothing(tmp_path) -> None:
    # The receiver answers each stored event (or batch) 400 ms after storing it: a hub killed
    # then has been stored at the platform without having heard so.
    async with SimHome(tmp_path, receiver_args=("--answer-delay-ms", "400")) as home:
        paired = Device.new("24:0A:C4:00:04:01", "pendant")
        Devices.load(home.hub_state / "devices.json").add(paired)
        await home.kill_hub()
        expected = _fill_outbox(home)
        assert len(expected) == DEVICES * EACH + PRESSES

        await home.restart_hub()
        async with asyncio.timeout(20):
            while len(_stored(home.receiver_db)) < PRESSES + 100:  # the presses, then the first batch
                await asyncio.sleep(0.01)
        assert await home.kill_hub() == -9  # SIGKILL while the batch's answer is on its way
        with HubStore.open(home.hub_state / "hub.db") as store:
            assert store.depth() > len(expected) - len(_stored(home.receiver_db))  # stored there, not known here

        await home.restart_hub()
        async with asyncio.timeout(30):
            while (status := await home.hub_status())["outbox_depth"]:
                await asyncio.sleep(0.1)
        stored = _stored(home.receiver_db)
        assert len(stored) == len(set(stored)) == len(expected)  # nothing duplicated
        assert set(stored) == set(expected)  # nothing lost
        assert stored[:PRESSES] == [e for e in expected if e.startswith("240ac4bb0001")]  # urgent first
        for d in range(DEVICES):  # each device's events in the order they happened
            counters = [int(e.rsplit("-", 1)[1]) for e in stored if e.startswith(f"240ac4aa00{d:02x}")]
            assert counters == list(range(1, EACH + 1))
        assert any("100 duplicate" in line for line in home.receiver.lines)  # the batch was sent twice
        assert status["dead_letters"] == 0 and status["running"] is True

        # The installer's view of the running hub, and a test alarm end to end.
        assert status["radio"]["state"] == "scanning" and status["platform"]["reachable"] is True
        assert status["platform"]["last_delivered_s_ago"] is not None
        alarm = json.loads(await home._run_cli("safebox.hub.cli", "test-alarm", "--config", str(home.hub_config),
                                               "--json", "--wait", "20"))
        assert alarm["result"] == "delivered" and alarm["hub_running"] is True
        [event] = [e for e in await home.stored_events() if e["event_id"] == alarm["event_id"]]
        assert event["type"] == "test_alarm" and event["body"]["data"]["test"] is True

        # No key material in anything the hub wrote to its log, in any of its runs.
        log = "\n".join(line for run in [*home.hub_runs, home.hub.lines] for line in run)
        hub_key = keys.load_or_create(home.hub_state / "hub_key.pem")
        raw = hub_key.private_bytes_raw()
        for secret in (raw.hex(), base64.b64encode(raw).decode(), "PRIVATE KEY", paired.key.hex(),
                       paired.key.hex().upper(), base64.b64encode(paired.key).decode()):
            assert secret not in log
        assert "hub ready" in log and "delivered" in log

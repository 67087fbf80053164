"""Honest time (SPEC 2, "Time"): a hub whose clock is off says when things happened by the
platform's clock, remembered across restarts. The real Hub in-process on a bumble air, the
reference receiver over real TLS."""

from __future__ import annotations

import asyncio
import time
from datetime import datetime

from safebox.hub.app import OFFSET_SETTING
from safebox.hub.store import HubStore
from tests.hub_world import HubWorld


async def test_the_offset_kept_from_the_last_run_corrects_events_until_the_platform_answers(tmp_path) -> None:
    async with HubWorld(tmp_path) as world:
        world.cfg.state_dir.mkdir(parents=True, exist_ok=True)
        with HubStore.open(world.cfg.db_path) as store:  # the last run measured the hub 125 s behind
            store.set_setting(OFFSET_SETTING, "125.0")
        hub = await world.start_hub()
        assert hub.health.platform.clock_offset_s == 125.0
        pendant = await world.add_device("pendant")
        before = time.time()
        await pendant.send_event("emergency")
        stored = await world.wait_stored(1, timeout=30)
        [body] = [e["body"] for e in stored if e["body"]["type"] == "emergency"]
        assert body["data"]["hub_clock_offset_s"] == 125.0
        occurred = datetime.fromisoformat(body["occurred_at"].replace("Z", "+00:00")).timestamp()
        assert 124.0 <= occurred - before <= 125.0 + (time.time() - before)  # heard between the two
        # The platform's Date says the clocks agree now: that is what the next start begins with.
        async with asyncio.timeout(30):
            while abs(float(hub.store.setting(OFFSET_SETTING))) > 5:
                await asyncio.sleep(0.05)

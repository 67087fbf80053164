"""The hub and the boot frame (protocol/SPEC.md 1.8): a heartbeat with the reset cause and the
firmware version. Stored as a heartbeat (the device is heard: battery, last seen, counter), no
event and no ack; the hub logs the restart."""

from __future__ import annotations

import logging

import pytest

from safebox.hub.ingest import Ingest, Outcome
from safebox.hub.store import HubStore, SeenDevice
from safebox.protocol import bthome
from tests.test_hub_ingest import NOW, PENDANT, frame, ingest, state, store  # noqa: F401 (fixtures)


def test_a_boot_frame_is_a_heartbeat_the_hub_logs(ingest: Ingest, store: HubStore,  # noqa: F811
                                                  caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="safebox.hub.ingest")
    objects = bthome.boot_objects(bthome.pendant_objects(100), bthome.RESET_POWER_ON, "0.2.0")
    out = ingest.handle(PENDANT.address, frame(PENDANT, 129, objects, event=False), -58)
    assert out == Outcome(kind="heartbeat", counter=129, device=PENDANT)
    assert store.seen(PENDANT.id) == SeenDevice(PENDANT.id, NOW, 129, 100, -58) and store.depth() == 0
    said = [r.getMessage() for r in caplog.records if r.name == "safebox.hub.ingest"]
    assert f"{PENDANT.address}: boot frame, counter 129: reset cause 1, firmware 0.2.0" in said

"""A device holds its ground against other centrals on the air (firmware/radio.py).

Real firmware on the `micropython` binary; the hub stand-in (tools/bench/standin.py) plays
both the genuine hub and a rogue central that connects and writes nothing, junk, or a genuine
ack captured earlier. Without these rules a rogue that connects and sits keeps the device awake
for as long as it likes (it never sleeps while connected): days of battery instead of months.
"""

from __future__ import annotations

import os

from safebox.protocol import bthome
from safebox.tools.bench.device import bench_device, tap

LINGER = {"linger_ms": 8000, "deep_sleep": 0}  # one boot; long enough to connect during the linger


async def lingering(fw, hub, counter: int = 1) -> None:
    """Until the pendant lingers on event `counter` (heard, not yet delivered)."""
    await fw.wait_for_line(rf"^linger {counter}$", timeout=15)
    await hub.wait_frames(lambda fr: any(f.counter == counter for f in fr), timeout=10)


async def test_a_central_that_writes_nothing_is_dropped_within_about_a_second(tmp_path, device_image):
    async with bench_device(tmp_path, image=device_image, settings=LINGER) as (fw, hub):
        await fw.wait_for_line(r"^ready ", timeout=15)
        await tap(fw.bridge, "emergency", 0.12)
        await lingering(fw, hub)
        stayed, dropped = await hub.hold(20.0)
        assert dropped, "the device never let go of a silent central"
        assert stayed < 5.0, stayed  # TRUST_MS is 1 s; the rest is the loop's 50 ms polls on a loaded machine
        line = await fw.wait_for_line(r"^central dropped: no authentic ack after \d+ ms, 0 writes refused$",
                                      timeout=5)
        assert 1000 <= int(line.split()[6]) < 5000, line
        # and the device goes on: "delivered" still arrives through a genuine hub's connection
        assert await hub.write(bthome.ACK_DELIVERED, 1)
        await fw.wait_for_line(r"^linger 1 ended kind 2$", timeout=10)
        await fw.wait_for_line(r"^sleep \d+ idle$", timeout=15)


async def test_a_flood_of_junk_writes_cannot_push_out_a_genuine_ack(tmp_path, device_image):
    async with bench_device(tmp_path, image=device_image, settings=LINGER) as (fw, hub):
        await fw.wait_for_line(r"^ready ", timeout=15)
        await tap(fw.bridge, "community_service", 0.12)
        await lingering(fw, hub)
        junk = [os.urandom(13) for _ in range(20)] + [b"\x02" * 5, os.urandom(32)]
        forged = hub.seal(bthome.ACK_DELIVERED, 1, key=bytes(16))
        genuine = hub.seal(bthome.ACK_DELIVERED, 1)
        # one connection: 22 junk writes and a forged ack, then the genuine "delivered"
        stayed, dropped = await hub.hold(0.0, [*junk, forged, genuine])
        await fw.wait_for_line(r"^linger 1 ended kind 2$", timeout=10)
        await fw.wait_for_line(r"^ack 1 kind 2 shown$", timeout=5)
        refusals = [line for line in fw.lines if line.startswith("ack refused:")]
        assert len(refusals) == 1, refusals  # said once per connection, the rest counted


async def test_a_replayed_genuine_ack_earns_no_trust_and_a_genuine_one_five_seconds_at_most(tmp_path, device_image):
    """A genuine ack captured on the air and written again carries an ack number the device
    has taken: refused (SPEC 1.7), so the rogue is dropped as untrusted after TRUST_MS (1 s).
    A central with a fresh genuine ack stays no longer than CENTRAL_MAX_MS (5 s)."""
    async with bench_device(tmp_path, image=device_image, settings={**LINGER, "linger_ms": 20000}) as (fw, hub):
        await fw.wait_for_line(r"^ready ", timeout=15)
        await tap(fw.bridge, "life_service", 0.12)
        await lingering(fw, hub)
        replayed = hub.sealed[0]  # the "heard" the device took
        stayed, dropped = await hub.hold(30.0, [replayed])
        assert dropped and 0.8 < stayed < 3.0, stayed
        await fw.wait_for_line(r"^central dropped: no authentic ack after \d+ ms", timeout=5)
        await fw.wait_for_line(r"^ack refused: ack number \d+ not above \d+$", timeout=5)
        stayed, dropped = await hub.hold(30.0, [hub.seal(bthome.ACK_HEARD, 1)])
        assert dropped and 4.5 < stayed < 10.0, stayed
        await fw.wait_for_line(r"^central dropped: connected too long after \d+ ms", timeout=5)

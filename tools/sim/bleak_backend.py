"""bleak 3.1 backends over a bumble host: the hub's adapter in the simulator.

The hub speaks only bleak's public API and takes its backend by injection:

    async with attach_hci(air.hci_spec):                  # or use_device(device)
        scanner = BleakScanner(on_adv, scanning_mode="passive", backend=BumbleScanner)
        async with BleakClient(ble_device, backend=BumbleClient) as client:
            await client.write_gatt_char(ACK_UUID, frame, response=True)

`attach_hci` opens a bumble HCI transport (the Air's TCP server, or any bumble spec),
powers on a bumble `Device` as the adapter and makes it the current host for backends
created inside the block (a ContextVar, so two hubs in one process stay apart; tasks
started before the block get the newest open host; a backend also accepts
`bumble_host=` through bleak's keyword pass-through).

Reported as BlueZ reports: service data keyed by the full 128-bit UUID string
('0000fcd2-0000-1000-8000-00805f9b34fb'), the local name, RSSI; scanning actively, one
detection per advertisement received; scanning passively, one per change of an address's
data (BlueZ's advertisement monitor; measured in tools/vm). Unlike BlueZ, a detection carries only that
advertisement's data, not fields merged from earlier ones. The client exchanges the MTU
right after connecting (BlueZ does), so the peripheral sees IRQ 21.

The parts: bumble_host.py (the host and its blocks), bleak_scanner.py, bleak_client.py.
"""

from safebox.tools.sim.bleak_client import BumbleClient
from safebox.tools.sim.bleak_scanner import BumbleScanner, parse_advertisement
from safebox.tools.sim.bumble_host import BumbleHost, attach_hci, current_host, use_device

__all__ = ["BumbleClient", "BumbleHost", "BumbleScanner", "attach_hci", "current_host", "parse_advertisement",
           "use_device"]

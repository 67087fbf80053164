"""The hub's own command line, with its radio on the simulated air instead of BlueZ.

    python -m safebox.tools.sim.hub_process --hci tcp-client:127.0.0.1:9000 run --config hub.toml

Everything after `--hci SPEC` is `safebox-hub`'s arguments, handled by the hub's own code
(hub/cli.py); only the bleak backends differ: bumble's, attached to the air's HCI (a bumble
transport spec, Air.hci_spec). The hub's production code never imports the simulator: the
backends are given to it from here.
"""

from __future__ import annotations

import argparse
import contextlib
import sys
from collections.abc import AsyncIterator, Callable
from typing import Any

from safebox.hub import cli
from safebox.hub.config import HubConfig
from safebox.hub.radio import Backends

_TRANSPORTS = ("tcp-client:", "tcp-server:", "unix:", "serial:", "usb:", "file:")


def air_backends(spec: str):  # type: ignore[no-untyped-def]
    """A `ble=` factory for the hub: bumble's bleak backends on the HCI at `spec`."""

    @contextlib.asynccontextmanager
    async def ble(cfg: HubConfig) -> AsyncIterator[Backends]:
        from safebox.tools.sim import bleak_backend
        async with bleak_backend.attach_hci(spec):
            yield Backends(scanner=bleak_backend.BumbleScanner, client=bleak_backend.BumbleClient)

    return ble


def in_process_backends(air: Any, name: Callable[[], str] = lambda: "hub-local"):  # type: ignore[no-untyped-def]
    """A `ble=` factory for a hub in this process: bumble's bleak backends on a hub controller
    plugged into `air` (tools/sim/air.py) for as long as the radio runs, named `name()` at each start."""

    @contextlib.asynccontextmanager
    async def ble(cfg: HubConfig) -> AsyncIterator[Backends]:
        from bumble.device import Device as BumbleDevice
        from bumble.hci import Address

        from safebox.tools.sim import bleak_backend
        controller = air.plug_hub(name())
        radio = BumbleDevice.with_hci("safebox-hub", Address.generate_static_address(), controller, controller)
        try:
            async with bleak_backend.use_device(radio):
                yield Backends(scanner=bleak_backend.BumbleScanner, client=bleak_backend.BumbleClient)
        finally:
            air.unplug(controller)

    return ble


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="hub_process", description=__doc__.split("\n\n")[0])
    parser.add_argument("--hci", required=True, help="the air's HCI, a bumble transport like tcp-client:127.0.0.1:9000")
    args, rest = parser.parse_known_args(argv)
    if not args.hci.startswith(_TRANSPORTS):
        parser.error(f"--hci: not a bumble transport like \"tcp-client:127.0.0.1:9000\": {args.hci!r}")
    return cli.main(rest, ble=air_backends(args.hci))


if __name__ == "__main__":
    sys.exit(main())

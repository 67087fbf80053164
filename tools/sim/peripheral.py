"""A MicroPython peripheral's radio on bumble, as both tiers of the simulator run it: the
bridge for firmware on the `micropython` binary (bridge.py) and the in-process CPython port
(cpython_port/port_bluetooth.py). The API semantics are shims/_bleapi.py's; this is how
its flags, advertising calls and connection events map onto a bumble Device, NimBLE-like.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from bumble import gatt, hci
from bumble.att import Attribute
from bumble.core import UUID
from bumble.device import AdvertisingType, Connection

from safebox.tools.sim.shims._bleapi import (
    ADV_UNIT_US,
    FLAG_READ,
    FLAG_WRITE,
    FLAG_WRITE_NO_RESPONSE,
    IRQ_CENTRAL_CONNECT,
    IRQ_CENTRAL_DISCONNECT,
    IRQ_CONNECTION_UPDATE,
    IRQ_MTU_EXCHANGED,
)

NIMBLE_DEFAULT_ADV_MS = (30.0, 60.0)  # NimBLE's fast interval 1, used for interval 0

Irq = Callable[[int, tuple[Any, ...], "bytes | None"], None]  # event, args, peer address (display order)


def permissions(flags: int) -> Attribute.Permissions:
    """bumble attribute permissions for MicroPython's FLAG_* bits."""
    made = Attribute.Permissions(0)
    if flags & FLAG_READ:
        made |= Attribute.READABLE
    if flags & (FLAG_WRITE | FLAG_WRITE_NO_RESPONSE):
        made |= Attribute.WRITEABLE
    return made


def advertising_args(interval_us: int, adv: bytes, resp: bytes, connectable: bool) -> dict[str, Any]:
    """Keyword arguments for bumble's Device.start_advertising, as NimBLE would advertise
    gap_advertise(interval_us, adv, resp_data=resp, connectable=...)."""
    if units := interval_us // ADV_UNIT_US:  # NimBLE's conversion; 0.625 ms is exact in binary
        min_ms = max_ms = units * 0.625
    else:
        min_ms, max_ms = NIMBLE_DEFAULT_ADV_MS
    if connectable:
        kind = AdvertisingType.UNDIRECTED_CONNECTABLE_SCANNABLE
    else:
        kind = AdvertisingType.UNDIRECTED_SCANNABLE if resp else AdvertisingType.UNDIRECTED
    return {"advertising_type": kind, "own_address_type": hci.OwnAddressType.PUBLIC, "advertising_data": adv,
            "scan_response_data": resp, "advertising_interval_min": min_ms, "advertising_interval_max": max_ms}


def register_services(device: Any, services: Any, value: Callable[[], Any],
                      uuid: Callable[[Any], UUID]) -> tuple[list[list[int]], dict[int, Attribute[Any]]]:
    """gatts_register_services on bumble: `device`'s GATT server holds the firmware's services
    and only them (registering again replaces everything, as on NimBLE).

    `services` as MicroPython takes them: [(uuid, [(uuid, flags, [(uuid, flags), ...]), ...]), ...];
    `uuid` turns the tier's UUIDs into bumble's; `value()` makes each attribute's value (a
    CharacteristicValue whose `handle` is set here once bumble numbered it). Returns the value
    handles per service, as the firmware gets them (the stack's CCCDs left out), and the
    attributes by handle.
    """
    server = device.gatt_server
    server.attributes.clear()
    server.attributes_by_handle.clear()
    server.services.clear()
    device.add_default_services()
    handles: list[list[int]] = []
    attributes: dict[int, Attribute[Any]] = {}
    for service_uuid, chars in services:
        made = []
        for c_uuid, flags, descs in chars:
            descriptors = [gatt.Descriptor(uuid(d_uuid), permissions(d_flags), value()) for d_uuid, d_flags in descs]
            made.append(gatt.Characteristic(uuid(c_uuid), gatt.Characteristic.Properties(flags & 0xFF),
                                            permissions(flags), value(), descriptors))
        server.add_service(gatt.Service(uuid(service_uuid), made))
        ours = []
        for characteristic in made:
            for attribute in [characteristic, *characteristic.descriptors]:
                if attribute.type == gatt.GATT_CLIENT_CHARACTERISTIC_CONFIGURATION_DESCRIPTOR:
                    continue  # the stack's CCCD: MicroPython does not return its handle
                held: Any = attribute.value  # made by value(), which has a handle
                held.handle = attribute.handle
                ours.append(attribute.handle)
                attributes[attribute.handle] = attribute
        handles.append(ours)
    return handles, attributes


def watch_connection(connection: Connection, irq: Irq) -> None:
    """Raise MicroPython's IRQs 1, 2, 21 and 27 for a central's connection to us."""
    if connection.role != hci.Role.PERIPHERAL:
        return
    handle = connection.handle
    peer = connection.peer_address
    addr = bytes(reversed(peer.address_bytes))
    addr_type = 0 if peer.is_public else 1
    irq(IRQ_CENTRAL_CONNECT, (handle, addr_type), addr)

    def on_disconnection(reason: int) -> None:
        irq(IRQ_CENTRAL_DISCONNECT, (handle, addr_type), addr)

    def on_mtu() -> None:
        irq(IRQ_MTU_EXCHANGED, (handle, connection.att_mtu), None)

    def on_update() -> None:
        p = connection.parameters  # in ms; IRQ 27 has HCI units (1.25 ms, 10 ms)
        interval, timeout = round(p.connection_interval / 1.25), round(p.supervision_timeout / 10)
        irq(IRQ_CONNECTION_UPDATE, (handle, interval, p.peripheral_latency, timeout, 0), None)

    connection.on(Connection.EVENT_DISCONNECTION, on_disconnection)
    connection.on(Connection.EVENT_CONNECTION_ATT_MTU_UPDATE, on_mtu)
    connection.on(Connection.EVENT_CONNECTION_PARAMETERS_UPDATE, on_update)

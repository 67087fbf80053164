"""The simulator's air: one bumble `LocalLink` every simulated radio transmits on.

Firmware devices get a controller on the link from the bridge (`Air.plug_device`).
Hubs attach from any process through an HCI-over-TCP server (`Air.hci_spec`): each TCP
connection gets a fresh controller, so a hub process that is killed and restarted
attaches again as a new adapter would; when the TCP connection drops, the hub's links
drop as a supervision timeout would end them.

Where bumble 0.0.236's virtual controller differs from the radios we simulate, this
module corrects it (the ESP32 is a Bluetooth 4.2 part: legacy advertising only):

* `LegacyAdvertiser` re-arms its timer after `advertising_interval_min / 1000` s, reading
  the interval (units of 0.625 ms) as milliseconds. `_TimedLegacyAdvertiser` uses
  `units * 0.625 ms`, so firmware asking for `interval_us` advertises every `interval_us`.
  The HCI parameters stay what NimBLE would send (`interval_us // 625`).
* The controller reports every ADV_IND twice: as ADV_IND and as a SCAN_RSP carrying the
  advertising data again, even to a passive scanner. Hub controllers drop the SCAN_RSP
  when scanning passively and carry the advertiser's real scan response otherwise.
* Peripheral-to-central ACL data is sent from the controller's random address, so a
  device advertising with its public address never gets its ATT responses through.
  `AirLink.send_acl_data` sends from the connection's own address.
* Non-connectable advertising (`gap_advertise(..., connectable=False)`) is not sent at
  all; here it is, reported as ADV_NONCONN_IND / ADV_SCAN_IND, and cannot be connected.
* LE Create Connection Cancel is answered but the attempt never ends: no LE Connection
  Complete (Unknown Connection Identifier, Core spec Vol 4 Part E 7.8.13) and the attempt
  stays pending. A hub whose connect timed out (the device went to sleep before the hub
  reached it) then waits for ever, and every later connect is refused. `HubController`
  ends the attempt as the spec has it.
* A hub controller reports no advertisements while it makes a connection: Linux stops
  scanning for that ("some controllers are not able to scan and connect at the same
  time", net/bluetooth/hci_sync.c), so a hub on a Pi hears nothing meanwhile.
* A CONNECT_IND nobody takes (the device stopped advertising, or left the air, between the
  advertisement the hub answered and the CONNECT_IND) leaves the central's link up for ever
  and its host waiting on it. A real central's controller ends it after six connection
  events without an answer, "Connection Failed to be Established" (0x3E, Core spec Vol 6
  Part B 4.5.2); `AirLink` does the same.

Faults: `drop_rate` loses that share of advertising PDUs on their way to each hub
(a seeded `random.Random`, so a run repeats), and `drop_filter(address, data)` can drop
chosen ones. `rssi_dbm` sets the RSSI hubs report, per advertiser address if wanted.
`acl_filter(source, destination, data)` loses chosen LE ACL packets (e.g. the ATT write
that carries an ack) and cuts that link, as a supervision timeout would end it: both
ends see the disconnection at once.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import random
from collections.abc import Callable
from typing import Any

from bumble import hci, ll
from bumble.controller import Controller, LegacyAdvertiser
from bumble.core import PhysicalTransport
from bumble.link import LocalLink
from bumble.transport.common import StreamPacketSink, StreamPacketSource

logger = logging.getLogger(__name__)

_ADV_TYPE = hci.HCI_LE_Set_Advertising_Parameters_Command.AdvertisingType
_REPORT_TYPE = hci.HCI_LE_Advertising_Report_Event.EventType
# A Bluetooth 4.2 controller: no extended or periodic advertising (and so the bumble
# host uses the legacy advertising and scanning commands the ESP32 and BlueZ use).
_LEGACY_FEATURES = Controller.le_features & ~(
    hci.LeFeatureMask.LE_EXTENDED_ADVERTISING | hci.LeFeatureMask.LE_PERIODIC_ADVERTISING
)


@dataclasses.dataclass
class _NonConnectableAdv(ll.AdvInd):
    """An ADV_NONCONN_IND or ADV_SCAN_IND (the LL model only knows ADV_IND)."""

    scannable: bool = False


@dataclasses.dataclass
class _TimedLegacyAdvertiser(LegacyAdvertiser):
    def _on_timer_fired(self) -> None:
        self.send_advertising_data()
        period_s = self.advertising_interval_min * 0.625 / 1000.0
        self.timer_handle = asyncio.get_running_loop().call_later(period_s, self._on_timer_fired)

    def send_advertising_data(self) -> None:
        if not self.enabled:
            return
        if self.advertising_type == _ADV_TYPE.ADV_IND:
            pdu: ll.AdvInd = ll.AdvInd(advertiser_address=self.address, data=self.advertising_data)
        elif self.advertising_type in (_ADV_TYPE.ADV_NONCONN_IND, _ADV_TYPE.ADV_SCAN_IND):
            pdu = _NonConnectableAdv(
                advertiser_address=self.address,
                data=self.advertising_data,
                scannable=self.advertising_type == _ADV_TYPE.ADV_SCAN_IND,
            )
        else:
            return
        self.controller.send_advertising_pdu(pdu)


class DeviceController(Controller):
    """The controller of a simulated ESP32: legacy advertising on the real interval."""

    def __init__(self, name: str, link: LocalLink, public_address: str) -> None:
        super().__init__(name, link=link, public_address=public_address)
        self.le_features = _LEGACY_FEATURES
        self.le_legacy_advertiser = _TimedLegacyAdvertiser(self)

    def on_le_connect_ind(self, packet: ll.ConnectInd) -> None:
        if self.le_legacy_advertiser.advertising_type != _ADV_TYPE.ADV_IND:
            return  # not connectable
        super().on_le_connect_ind(packet)


class HubController(Controller):
    """The controller behind a hub's HCI socket: reports advertisements as BlueZ would see
    them and ends a cancelled connection attempt (see the module doc)."""

    def __init__(self, name: str, air: Air, host_source: Any = None, host_sink: Any = None) -> None:
        super().__init__(name, host_source=host_source, host_sink=host_sink, link=air.link)
        self.le_features = _LEGACY_FEATURES
        self._air = air
        self._pdu: ll.AdvInd | None = None

    def on_hci_le_create_connection_cancel_command(self, command: Any) -> Any:
        pending, self.pending_le_connection = self.pending_le_connection, None
        if pending is None:
            return hci.HCI_StatusReturnParameters(hci.HCI_ErrorCode.COMMAND_DISALLOWED_ERROR)
        # After the Command Complete for the cancel, the attempt ends with this event.
        asyncio.get_running_loop().call_soon(self.send_hci_packet, hci.HCI_LE_Connection_Complete_Event(
            status=hci.HCI_ErrorCode.UNKNOWN_CONNECTION_IDENTIFIER_ERROR, connection_handle=0,
            role=hci.Role.CENTRAL, peer_address_type=pending.peer_address_type, peer_address=pending.peer_address,
            connection_interval=0, peripheral_latency=0, supervision_timeout=0, central_clock_accuracy=0))
        return hci.HCI_StatusReturnParameters(hci.HCI_ErrorCode.SUCCESS)

    def on_advertising_pdu(self, pdu: ll.AdvInd | ll.AdvExtInd) -> None:
        self._pdu = pdu if isinstance(pdu, ll.AdvInd) else None
        try:
            super().on_advertising_pdu(pdu)
        finally:
            self._pdu = None

    def send_hci_packet(self, packet: hci.HCI_Packet) -> None:
        if isinstance(packet, hci.HCI_LE_Advertising_Report_Event) and self.pending_le_connection is not None:
            return  # Linux does not scan while it makes a connection (hci_sync): no reports meanwhile
        if self._pdu is not None and isinstance(packet, hci.HCI_LE_Advertising_Report_Event):
            reports = [r for r in map(self._rewrite, packet.reports) if r is not None]
            if not reports:
                return
            packet = hci.HCI_LE_Advertising_Report_Event(reports)
        super().send_hci_packet(packet)

    def _rewrite(
        self, report: hci.HCI_LE_Advertising_Report_Event.Report
    ) -> hci.HCI_LE_Advertising_Report_Event.Report | None:
        pdu = self._pdu
        assert pdu is not None
        event_type = report.event_type
        data = report.data
        if event_type == _REPORT_TYPE.SCAN_RSP:
            scannable = not isinstance(pdu, _NonConnectableAdv) or pdu.scannable
            if self.le_scan_type == hci.HCI_LE_Set_Scan_Parameters_Command.PASSIVE_SCANNING or not scannable:
                return None
            data = self._air.scan_response_of(pdu.advertiser_address)
        elif isinstance(pdu, _NonConnectableAdv):
            event_type = _REPORT_TYPE.ADV_SCAN_IND if pdu.scannable else _REPORT_TYPE.ADV_NONCONN_IND
        return dataclasses.replace(
            report, event_type=event_type, data=data, rssi=self._air.rssi_of(pdu.advertiser_address)
        )


class AirLink(LocalLink):
    """The shared link, with ACL source addresses fixed and the advertising fault hook."""

    def __init__(self, air: Air) -> None:
        super().__init__()  # type: ignore[no-untyped-call]
        self._air = air

    def send_ll_control_pdu(self, sender_address: hci.Address, receiver_address: hci.Address,
                            packet: ll.ControlPdu) -> None:
        """As on a radio, a control PDU for a peer that left the air (a device killed while a
        hub's link to it was up or being made) goes nowhere; bumble raises, which left the
        sender's connection in place and refused every later one to that device."""
        if self.find_le_controller(receiver_address) is None:
            return
        super().send_ll_control_pdu(sender_address, receiver_address, packet)

    def send_acl_data(
        self,
        sender_controller: Controller,
        destination_address: hci.Address,
        transport: PhysicalTransport,
        data: bytes,
    ) -> None:
        if transport == PhysicalTransport.LE:
            connection = sender_controller.le_connections.get(destination_address)
            receiver = self.find_le_controller(destination_address)
            if connection is None or receiver is None:
                logger.debug("ACL to %s dropped: no such connection", destination_address)
                return
            source = connection.self_address
            if self._air.acl_filter is not None and self._air.acl_filter(
                    source.to_string(with_type_qualifier=False),
                    destination_address.to_string(with_type_qualifier=False), bytes(data)):
                asyncio.get_running_loop().call_soon(self._cut, sender_controller, receiver, connection)
                return
            asyncio.get_running_loop().call_soon(receiver.on_link_acl_data, source, transport, data)
            return
        super().send_acl_data(sender_controller, destination_address, transport, data)

    @staticmethod
    def _cut(sender: Controller, receiver: Controller, connection: Any,
             reason: int = hci.HCI_CONNECTION_TIMEOUT_ERROR) -> None:
        """End a link at both ends, as a supervision timeout would (a packet was lost on it)."""
        if sender.le_connections.get(connection.peer_address) is connection:
            sender.on_le_disconnected(connection, reason)
        other = receiver.le_connections.get(connection.self_address)
        if other is not None:
            receiver.on_le_disconnected(other, reason)

    def send_advertising_pdu(self, sender_controller: Controller, packet: ll.AdvertisingPdu) -> None:
        loop = asyncio.get_running_loop()
        for controller in list(self.controllers):
            if controller is sender_controller:
                continue
            if isinstance(packet, ll.AdvInd) and isinstance(controller, HubController):
                if self._air.drops(packet):
                    continue
            loop.call_soon(controller.on_ll_advertising_pdu, packet)
        if isinstance(packet, ll.ConnectInd):
            link = sender_controller.le_connections.get(packet.advertiser_address)
            if link is not None:  # six connection events (units of 1.25 ms) for the first answer
                loop.call_later(6 * max(packet.interval, 6) * 0.00125, self._established, sender_controller, link)

    def _established(self, central: Controller, link: Any) -> None:
        """End the central's new `link` (0x3E) unless its peripheral took the CONNECT_IND."""
        if central.le_connections.get(link.peer_address) is not link:
            return  # ended already
        peripheral = self.find_le_controller(link.peer_address)
        if peripheral is not None and link.self_address in peripheral.le_connections:
            return
        logger.debug("link to %s failed to be established: the CONNECT_IND went unanswered", link.peer_address)
        central.on_le_disconnected(link, hci.HCI_CONNECTION_FAILED_TO_BE_ESTABLISHED_ERROR)


DropFilter = Callable[[str, bytes], bool]
AclFilter = Callable[[str, str, bytes], bool]  # (source, destination, L2CAP bytes) -> lose it and cut the link


class Air:
    """The virtual air, as an async context manager that also serves HCI to hub processes.

    >>> async with Air(seed=1) as air:
    ...     spec = air.hci_spec          # "tcp-client:127.0.0.1:<port>" for attach_hci()
    """

    def __init__(
        self,
        *,
        seed: int = 0,
        drop_rate: float = 0.0,
        drop_filter: DropFilter | None = None,
        rssi_dbm: int = -60,
        hci_port: int = 0,
    ) -> None:
        self.link = AirLink(self)
        self.drop_rate = drop_rate
        self.drop_filter = drop_filter
        self.acl_filter: AclFilter | None = None
        self.rssi_dbm = rssi_dbm
        self.rssi_by_address: dict[str, int] = {}
        self.hub_attaches = 0
        self._rng = random.Random(seed)
        self._hci_port = hci_port
        self._server: asyncio.Server | None = None
        self._hubs: set[_HubConnection] = set()
        self._attached = asyncio.Condition()

    async def __aenter__(self) -> Air:
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(lambda: _HubConnection(self), "127.0.0.1", self._hci_port)
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Stop serving HCI and unplug every hub; safe to call twice."""
        if self._server is not None:
            self._server.close()
            self._server = None
        for hub in list(self._hubs):
            hub.close()

    # -- hub side --------------------------------------------------------------------
    @property
    def hci_port(self) -> int:
        assert self._server is not None, "use Air as an async context manager"
        return int(self._server.sockets[0].getsockname()[1])

    @property
    def hci_spec(self) -> str:
        """The bumble transport spec a hub opens to attach (`bleak_backend.attach_hci`)."""
        return f"tcp-client:127.0.0.1:{self.hci_port}"

    @property
    def hubs_attached(self) -> int:
        return len(self._hubs)

    async def wait_hubs(self, count: int, timeout: float = 5.0) -> None:
        """Wait until `count` hubs are attached at the same time."""
        async with asyncio.timeout(timeout), self._attached:
            await self._attached.wait_for(lambda: len(self._hubs) >= count)

    def _hub_changed(self, hub: _HubConnection, attached: bool) -> None:
        if attached:
            self._hubs.add(hub)
            self.hub_attaches += 1
        else:
            self._hubs.discard(hub)

        async def notify() -> None:
            async with self._attached:
                self._attached.notify_all()

        asyncio.get_running_loop().create_task(notify())

    def plug_hub(self, name: str = "hub-local") -> HubController:
        """A hub controller in this process (for `bleak_backend.use_device`), no TCP."""
        return HubController(name, self, None, None)

    # -- device side -----------------------------------------------------------------
    def plug_device(self, name: str, mac: str) -> DeviceController:
        """A controller for a simulated device whose public address is `mac`."""
        return DeviceController(name, self.link, mac)

    def unplug(self, controller: Controller, reason: int = hci.HCI_CONNECTION_TIMEOUT_ERROR) -> None:
        """Take a controller off the air; its peers see their links end with `reason`."""
        controller.host = None
        controller.le_legacy_advertiser.stop()
        for connection in list(controller.le_connections.values()):
            controller.on_hci_disconnect_command(
                hci.HCI_Disconnect_Command(connection_handle=connection.handle, reason=reason)
            )
        if controller in self.link.controllers:
            self.link.remove_controller(controller)

    # -- what the air does to advertisements -------------------------------------------
    def drops(self, pdu: ll.AdvInd) -> bool:
        address = pdu.advertiser_address.to_string(with_type_qualifier=False)
        if self.drop_filter is not None and self.drop_filter(address, pdu.data):
            return True
        return self.drop_rate > 0 and self._rng.random() < self.drop_rate

    def rssi_of(self, address: hci.Address) -> int:
        return self.rssi_by_address.get(address.to_string(with_type_qualifier=False), self.rssi_dbm)

    def scan_response_of(self, address: hci.Address) -> bytes:
        for controller in self.link.controllers:
            if controller.public_address == address or controller.random_address == address:
                return controller.le_legacy_advertiser.scan_response_data
        return b""


class _HubConnection(asyncio.Protocol):
    """One hub's HCI socket: H4 packets in and out of its own HubController."""

    def __init__(self, air: Air) -> None:
        self._air = air
        self._source = StreamPacketSource()
        self._controller: HubController | None = None
        self._transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self._transport = transport
        name = f"hub-{self._air.hub_attaches + 1}"
        self._controller = HubController(name, self._air, self._source, StreamPacketSink(transport))
        logger.info("%s attached over HCI", name)
        self._air._hub_changed(self, True)

    def data_received(self, data: bytes) -> None:
        self._source.data_received(data)

    def connection_lost(self, exc: Exception | None) -> None:
        if self._controller is not None:
            logger.info("%s detached", self._controller.name)
            self._air.unplug(self._controller)
            self._controller = None
        self._air._hub_changed(self, False)

    def close(self) -> None:
        if self._transport is not None:
            self._transport.close()

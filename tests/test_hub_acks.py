"""Acknowledgements back to devices (SPEC 1.7): heard, delivered, operator.

The flow tests run the real Hub in-process on a bumble air with scripted devices (they
advertise sealed frames and record the acks the hub writes, checked with their key) and
the reference receiver's app over real TLS. The unit tests drive the ack policy and its
writer (hub/acks) with a fake radio.
"""

from __future__ import annotations

import asyncio
import logging
import time

from safebox.hub.acks import AckPolicy
from safebox.hub.devices import Device
from safebox.hub.store import HubStore
from safebox.protocol import bthome, events
from tests.hub_world import HUB_ID, HubWorld

HEARD, DELIVERED, OPERATOR = bthome.ACK_HEARD, bthome.ACK_DELIVERED, bthome.ACK_OPERATOR


async def _no_acks_owed(store: HubStore) -> None:
    """The device has the ack a moment before the hub records it written."""
    async with asyncio.timeout(2):
        while store.owed_acks(None, time.time()):
            await asyncio.sleep(0.01)


async def test_pendant_hears_heard_delivered_then_help_is_coming(tmp_path) -> None:
    async with HubWorld(tmp_path) as world:
        hub = await world.start_hub()
        pendant = await world.add_device("pendant")
        counter = await pendant.send_event("emergency")
        event_id = f"{pendant.device.id}-{counter}"
        # Kind 2 once the platform has it: in the first connection when the platform answered
        # while the link was made, else while the pendant lingers after kind 1.
        await pendant.wait_ack(counter, DELIVERED)
        assert [e["event_id"] for e in world.stored()] == [event_id]
        assert [a.event_id for a in hub.store.awaiting_operator(time.time())] == [event_id]

        # An operator takes it up (as `safebox-receiver operator-ack` does); the hub's signed
        # poll learns of it and the pendant is told "help is coming" with its next frame (a
        # device repeating the same frame is not heard again: BlueZ reports changes only).
        status, ack = world.platform.operator_ack(event_id, now=time.time())
        assert status == "acknowledged"
        async with asyncio.timeout(6):
            while hub.store.awaiting_operator(time.time()):
                await asyncio.sleep(0.02)
        await pendant.send_heartbeat()
        await pendant.wait_ack(counter, OPERATOR, timeout=6)
        assert hub.store.awaiting_operator(time.time()) == []
        await _no_acks_owed(hub.store)
        assert hub.store.setting("operator_ack_cursor") == str(ack["seq"])
        assert pendant.refused_acks == 0
        assert [k for k, _ in pendant.acks] in ([HEARD, DELIVERED, OPERATOR], [DELIVERED, OPERATOR])


async def test_owed_ack_waits_for_the_next_frame_heard(tmp_path, caplog) -> None:
    caplog.set_level(logging.INFO, logger="safebox.hub.acks")
    # The platform answers 1.5 s after storing: by then the pendant has gone quiet.
    async with HubWorld(tmp_path, answer_delay_s=1.5) as world:
        hub = await world.start_hub()
        pendant = await world.add_device("pendant")
        counter = await pendant.send_event("life_service")
        await pendant.wait_ack(counter, HEARD)
        await pendant.go_quiet()
        connections = pendant.connections
        await world.wait_stored(1)
        async with asyncio.timeout(5):
            while not hub.store.owed_acks(pendant.device.id, time.time()):
                await asyncio.sleep(0.02)
        await asyncio.sleep(2.5)  # asleep (sooner than a pendant should: it lingers): owed, not written
        assert pendant.connections == connections and not pendant.has_ack(counter, DELIVERED)
        [owed] = hub.store.owed_acks(pendant.device.id, time.time())
        assert (owed.counter, owed.kind) == (counter, DELIVERED)
        # Any frame wakes it: here a heartbeat, which carries no event of its own.
        await pendant.send_heartbeat()
        await pendant.wait_ack(counter, DELIVERED)
        await _no_acks_owed(hub.store)
        assert len([r for r in caplog.records if "ack kind 2" in r.getMessage()]) == 1


async def test_operator_ack_piggybacks_on_the_next_answer(tmp_path) -> None:
    # No polling (300 s): the operator ack of the first press reaches the hub in the answer
    # to the second press, and both pendants get what they are owed.
    async with HubWorld(tmp_path, relay={"operator_poll_s": 300}) as world:
        await world.start_hub()
        first, second = await world.add_device("pendant"), await world.add_device("pendant")
        c1 = await first.send_event("emergency")
        await first.wait_ack(c1, DELIVERED)
        world.platform.operator_ack(f"{first.device.id}-{c1}", now=time.time())
        c2 = await second.send_event("community_service")
        await second.wait_ack(c2, DELIVERED)
        await first.wait_ack(c1, OPERATOR)  # first is still advertising its event
        assert not second.has_ack(c2, OPERATOR)


# -- Acks with a fake radio ---------------------------------------------------------------

class FakeRadio:
    """Records (address, kind, counter, quick) of each ack written, read with the device's key,
    and the ack numbers (`numbers`), as the device at that address would take them."""

    def __init__(self) -> None:
        self.devices: dict[str, Device] = {}
        self.written: list[tuple[str, int, int, bool]] = []
        self.numbers: list[int] = []
        self.recent: set[str] = set()
        self.fail = False
        self.before_link = None
        self.windows: list[tuple[str, float]] = []  # what the ack policy told the radio to expect
        self.links: list[list[tuple[int, int]]] = []  # (kind, counter) written, per connection
        self.unmade = 0  # this many next connections fail to be made (nothing written)
        self.after_write = None  # (ack number) -> None: what happens as the device takes an ack

    def heard_recently(self, address: str, within_s: float) -> bool:
        return address in self.recent

    def expect(self, address: str, seconds: float) -> None:
        self.windows.append((address, seconds))

    async def write_acks(self, address: str, next_ack, *, quick: bool = False) -> int:
        if self.before_link is not None:
            self.before_link()  # what happens while the link is being made
        await asyncio.sleep(0)  # the link: more acks may be asked for meanwhile
        if self.unmade:
            self.unmade -= 1
            self.links.append([])
            return 0
        device = self.devices[address]
        written = []
        while (frame := next_ack()) is not None:  # each made once the link is up
            kind, counter, _hub_time, number = bthome.unseal_ack(device.key, device.mac, frame)
            written.append((address, kind, counter, quick))
            self.numbers.append(number)
            if self.after_write is not None:
                self.after_write(number)
            if self.fail:
                break  # its write failed: the radio asks for no more
        self.written += written
        self.links.append([(kind, counter) for _a, kind, counter, _q in written])
        return 0 if self.fail else len(written)


class FakeDevices(list):
    def by_id(self, device_id: str) -> Device | None:
        return next((d for d in self if d.id == device_id), None)


def _policy(radio: FakeRadio, store: HubStore, devices: list[Device], **kwargs) -> AckPolicy:
    radio.devices.update({d.address: d for d in devices})
    policy = AckPolicy(store, FakeDevices(devices), **kwargs)  # type: ignore[arg-type]
    policy.attach(radio)  # type: ignore[arg-type]
    return policy


def _owing(store: HubStore, device: Device, counter: int, kind: int) -> tuple[FakeRadio, AckPolicy]:
    """`device`, on the air now, is owed ack `kind` for `counter`."""
    store.owe_ack(device.id, counter, kind, f"{device.id}-{counter}", until=time.time() + 900)
    radio = FakeRadio()
    radio.recent.add(device.address)
    return radio, _policy(radio, store, [device])


async def _settle(acks: AckPolicy) -> None:
    for _ in range(5):
        await asyncio.sleep(0)
    await asyncio.gather(*list(acks.writer._tasks))


def _receipts(acks: AckPolicy, radio: FakeRadio, device: Device) -> None:
    """The device took every ack written and reports each in a receipt (SPEC 1.7)."""
    for number in radio.numbers:
        acks.receipt(device, number)


async def test_owed_acks_are_durable_replaced_by_higher_kinds_and_expire(tmp_path) -> None:
    now = [1_800_000_000.0]
    device = Device.new("24:0A:C4:00:00:07", "pendant")
    with HubStore.open(tmp_path / "hub.db", clock=lambda: now[0]) as store:
        store.owe_ack(device.id, 5, DELIVERED, f"{device.id}-5", until=now[0] + 900)
        store.owe_ack(device.id, 5, OPERATOR, f"{device.id}-5", until=now[0] + 900)
        store.owe_ack(device.id, 6, DELIVERED, f"{device.id}-6", until=now[0] + 10)
    # A restart: a new store on the same file still owes them.
    with HubStore.open(tmp_path / "hub.db", clock=lambda: now[0]) as store:
        radio = FakeRadio()
        acks = _policy(radio, store, [device], clock=lambda: now[0])
        now[0] += 20  # counter 6's ack has expired
        acks.heard(device)
        await _settle(acks)
        assert radio.written == [(device.address, OPERATOR, 5, True)]
        # written is not confirmed: whatever answered at the address may not be the device
        assert [(a.counter, a.kind) for a in store.owed_acks(device.id, now[0])] == [(5, OPERATOR)]
        acks.receipt(device, radio.numbers[0] + 1)  # a number it was not given confirms nothing
        assert store.owed_acks(device.id, now[0])
        _receipts(acks, radio, device)
        assert store.owed_acks(device.id, now[0]) == []
        store.owe_ack(device.id, 5, DELIVERED, f"{device.id}-5", until=now[0] + 900)  # late: never again
        assert store.owed_acks(device.id, now[0]) == []


async def test_owed_ack_is_written_at_once_only_to_a_device_advertising_now(tmp_path) -> None:
    device = Device.new("24:0A:C4:00:00:08", "pendant")
    with HubStore.open(tmp_path / "hub.db") as store:
        radio = FakeRadio()
        acks = _policy(radio, store, [device])
        store.owe_ack(device.id, 3, DELIVERED, f"{device.id}-3", until=time.time() + 900)
        acks.owed(device.id)
        await _settle(acks)
        assert radio.written == []  # not heard lately: wait for its next frame
        radio.recent.add(device.address)
        radio.fail = True
        acks.owed(device.id)
        await _settle(acks)
        assert radio.written == [(device.address, DELIVERED, 3, True)]
        assert store.owed_acks(device.id, time.time())  # the write failed: still owed
        radio.fail = False
        acks.writer._done.clear()
        acks.heard(device)
        await _settle(acks)
        assert store.owed_acks(device.id, time.time())  # written, not yet confirmed
        _receipts(acks, radio, device)
        assert store.owed_acks(device.id, time.time()) == []


def test_settling_a_delivery_owes_kind_2_to_pendants_and_awaits_an_operator_for_urgent_ones(tmp_path) -> None:
    with HubStore.open(tmp_path / "hub.db") as store:
        policy = AckPolicy(store, FakeDevices())  # type: ignore[arg-type]

        def device_event(device_id: str, counter: int, type_: str, role: str) -> str:
            body = events.encode(events.make(
                event_id=f"{device_id}-{counter}", type=type_, hub_id=HUB_ID, home_id="home-0001",
                occurred_at=time.time(), device={"id": device_id, "role": role}, counter=counter))
            store.accept(device_id, counter, body)
            return f"{device_id}-{counter}"

        press = device_event("240ac4000009", 1, events.EMERGENCY, "pendant")
        later = device_event("240ac4000009", 2, events.LIFE_SERVICE, "pendant")
        door = device_event("240ac400000a", 7, events.DOOR_OPENED, "front_door")
        hub_event = store.enqueue(events.encode(events.make(
            event_id=events.hub_event_id(HUB_ID, store.next_hub_seq()), type=events.TOILET_OVERDUE,
            hub_id=HUB_ID, home_id="home-0001", occurred_at=time.time())))
        now = time.time()
        owes = policy.delivered([store.get(e) for e in (press, later, door, hub_event)])
        settled = store.settle_delivered([press, later, door, hub_event, "nope-1"], owes)
        assert settled.event_ids == [press, later, door, hub_event]
        assert settled.owed_devices == ["240ac4000009"]  # a door sensor has its kind 1; it shows nothing more
        assert [(a.counter, a.kind) for a in store.owed_acks(None, now)] == [(1, DELIVERED), (2, DELIVERED)]
        assert [a.event_id for a in store.awaiting_operator(now)] == [press, later]
        assert store.operator_acked(door, now + 900) is None
        assert store.operator_acked(press, now + 900).counter == 1
        assert [(a.counter, a.kind) for a in store.owed_acks(None, now)] == [(1, OPERATOR), (2, DELIVERED)]
        pendant = Device.new("24:0A:C4:00:00:09", "pendant")
        policy._record(pendant, 2, DELIVERED, 77, 77, 10.0)
        assert len(store.owed_acks(None, now)) == 2  # written, not confirmed
        policy.receipt(pendant, 77)  # kind 2 confirmed: settles kind 2 before it, not 3
        assert [(a.counter, a.kind) for a in store.owed_acks(None, now)] == [(1, OPERATOR)]
        assert store.depth() == 0


async def test_only_the_newest_kind_2_is_written_and_never_a_lower_kind_after_a_higher(tmp_path) -> None:
    device = Device.new("24:0A:C4:00:00:09", "pendant")
    with HubStore.open(tmp_path / "hub.db") as store:
        for counter in (3, 4, 5):
            store.owe_ack(device.id, counter, DELIVERED, f"{device.id}-{counter}", until=time.time() + 900)
        store.owe_ack(device.id, 3, OPERATOR, f"{device.id}-3", until=time.time() + 900)
        radio = FakeRadio()
        acks = _policy(radio, store, [device])
        acks.heard(device)
        await _settle(acks)
        assert radio.written == [(device.address, OPERATOR, 3, True), (device.address, DELIVERED, 5, True)]
        _receipts(acks, radio, device)
        assert store.owed_acks(device.id, time.time()) == []
        acks.writer._done.clear()
        acks.writer.request(device, 3, DELIVERED)  # e.g. a late repeat of frame 3 answered "delivered"
        await _settle(acks)
        assert len(radio.written) == 2


async def test_everything_a_device_is_due_goes_in_one_connection_and_its_receipt_confirms_it(tmp_path) -> None:
    """On BlueZ an owed kind 3 written in a second connection, after the pendant had taken its
    kind 1 and left the air, never reached it (issue 10). Now a new event's kind 1 and every
    ack owed go in one connection; the device's receipt names the last ack it took, and that
    confirms those before it in the same connection, but never an ack of another connection (a
    spoofer at the device's address may have taken that one)."""
    device = Device.new("24:0A:C4:00:00:0B", "pendant")
    until = time.time() + 900
    with HubStore.open(tmp_path / "hub.db") as store:
        store.owe_ack(device.id, 1, OPERATOR, f"{device.id}-1", until=until)
        store.owe_ack(device.id, 2, DELIVERED, f"{device.id}-2", until=until)
        radio = FakeRadio()
        acks = _policy(radio, store, [device])
        acks.writer.request(device, 3, HEARD)  # a new press heard...
        acks.heard(device)  # ...brings what it is owed
        await _settle(acks)
        assert radio.links == [[(HEARD, 3), (OPERATOR, 1), (DELIVERED, 2)]]
        acks.receipt(device, radio.numbers[-1])  # one receipt, naming the last
        assert store.owed_acks(device.id, time.time()) == []

        # a spoofer takes the kind 3 owed for press 4 (that connection gets no receipt); in a
        # later connection the real pendant takes kind 2 of press 5 and a kind 1 of press 6
        # after it, and names that kind 1 in its receipt: kind 2 of press 5 is confirmed, kind 3
        # of press 4 (another connection) is still owed
        store.owe_ack(device.id, 4, OPERATOR, f"{device.id}-4", until=until)
        acks.heard(device)
        await _settle(acks)
        store.owe_ack(device.id, 5, DELIVERED, f"{device.id}-5", until=until)
        acks.writer.request(device, 5, DELIVERED)
        acks.writer.request(device, 6, HEARD)
        await _settle(acks)
        assert radio.links[1:] == [[(OPERATOR, 4)], [(DELIVERED, 5), (HEARD, 6)]]
        acks.receipt(device, radio.numbers[-1])
        assert [(a.counter, a.kind) for a in store.owed_acks(device.id, time.time())] == [(4, OPERATOR)]


async def test_a_frame_heard_while_a_link_fails_gets_its_acks_in_a_new_link(tmp_path) -> None:
    """A link that fails to be made (the device stopped advertising as the hub connected) while
    the device's next frame is heard: that frame asked for the same owed ack, already on its way,
    so it was dropped, and the ack then waited for yet another frame. Seen in CI: the pendant
    never heard "help is coming". A frame heard meanwhile means the device is on the air now:
    one more link. With no frame heard meanwhile, the ack waits for the next one."""
    device = Device.new("24:0A:C4:00:00:0C", "pendant")
    with HubStore.open(tmp_path / "hub.db") as store:
        radio, acks = _owing(store, device, 1, OPERATOR)
        radio.unmade = 1
        acks.heard(device)
        await _settle(acks)
        assert radio.links == [[]]  # no frame meanwhile: no second link

        radio.unmade = 1
        radio.before_link = lambda: (setattr(radio, "before_link", None), acks.heard(device))
        acks.heard(device)
        await _settle(acks)
        await _settle(acks)
        assert radio.links == [[], [], [(OPERATOR, 1)]]
        _receipts(acks, radio, device)
        assert store.owed_acks(device.id, time.time()) == []


async def test_a_receipt_heard_before_its_write_is_recorded_still_confirms_it(tmp_path) -> None:
    """The device advertises its receipt as soon as it took kind 2; the hub heard it before its
    write's response was handled, when the ack was not yet recorded as written, and the receipt
    confirmed nothing: kind 2 stayed owed (the hub benchmark waited for the confirmation in vain)."""
    device = Device.new("24:0A:C4:00:00:0D", "pendant")
    with HubStore.open(tmp_path / "hub.db") as store:
        radio, acks = _owing(store, device, 7, DELIVERED)
        radio.after_write = lambda number: acks.receipt(device, number)
        acks.heard(device)
        await _settle(acks)
        assert radio.written == [(device.address, DELIVERED, 7, True)]
        assert store.owed_acks(device.id, time.time()) == []


async def test_heard_becomes_delivered_when_the_platform_answers_while_the_link_is_made(tmp_path) -> None:
    """One connection instead of two: the ack is made once the link is up, with the most the hub
    knows by then; the kind 2 asked for next finds it written and makes no connection."""
    device = Device.new("24:0A:C4:00:00:0A", "pendant")
    with HubStore.open(tmp_path / "hub.db") as store:
        radio = FakeRadio()
        radio.recent.add(device.address)
        radio.before_link = lambda: store.owe_ack(device.id, 4, DELIVERED, f"{device.id}-4", until=time.time() + 900)
        acks = _policy(radio, store, [device])
        acks.writer.request(device, 4, HEARD)
        acks.owed(device.id)  # the uplink settled it meanwhile
        await _settle(acks)
        assert radio.written == [(device.address, DELIVERED, 4, False)]
        _receipts(acks, radio, device)
        assert store.owed_acks(device.id, time.time()) == []
        radio.before_link = None
        acks.writer.request(device, 4, HEARD)  # a late repeat of frame 4: nothing lower after a higher
        await _settle(acks)
        assert len(radio.written) == 1


def test_a_v4_database_migrates_keeping_what_is_owed_and_numbers_acks_from_the_clock(tmp_path) -> None:
    """Schema v5 (acks confirmed by the device, the ack number): a hub database of v4 with an
    ack owed opens, still owes it, and the ack numbers start at the clock (a database remade
    after a loss does not go back below numbers devices have taken) and never repeat."""
    import sqlite3

    from safebox.hub.store.schema import MIGRATIONS

    path = tmp_path / "hub.db"
    db = sqlite3.connect(path)
    for version in range(1, 5):
        db.executescript(MIGRATIONS[version])
    db.execute("INSERT INTO hub_seq (id, value) VALUES (1, 1)")
    db.execute("INSERT INTO owed_acks (device_id, counter, kind, written, event_id, owed_since, expires_at) "
               "VALUES ('240ac4000007', 5, 3, 0, '240ac4000007-5', 0, 4000000000)")
    db.execute("PRAGMA user_version = 4")
    db.commit()
    db.close()
    with HubStore.open(path, clock=lambda: 1_800_000_000.0) as store:
        [owed] = store.owed_acks("240ac4000007", 1_800_000_000.0)
        assert (owed.counter, owed.kind) == (5, OPERATOR)
        numbers = [store.next_ack_number() for _ in range(3)]
        assert numbers == [1_800_000_001, 1_800_000_002, 1_800_000_003]
        store.ack_sent("240ac4000007", 5, OPERATOR, numbers[2])
        assert store.owed_acks("240ac4000007", 1_800_000_000.0)  # sent, not confirmed
        assert store.ack_confirmed("240ac4000007", numbers[1]) == []
        assert store.ack_confirmed("240ac4000007", numbers[2]) == [(5, OPERATOR)]
        assert store.owed_acks("240ac4000007", 1_800_000_000.0) == []
    with HubStore.open(path, clock=lambda: 1_700_000_000.0) as store:  # a restart, the clock behind
        assert store.next_ack_number() == 1_800_000_004

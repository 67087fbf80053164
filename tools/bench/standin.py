"""A hub stand-in for device-side tests and benches (tools/bench/firmware.py, tests/test_firmware_device.py).

`StandInHub` runs in the test's own process on the simulator's air: it hears the device's
frames with bleak's public API over bumble (passive scan) and writes authenticated acks.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from safebox.protocol import bthome

ACK_CHAR = bthome.ACK_CHAR_UUID


@dataclass
class Frame:
    """One advertisement the stand-in heard from the device, decoded with its key."""

    t: float  # time.monotonic()
    counter: int
    event: bool
    objects: list[tuple[int, int]]
    adv: bytes


@dataclass
class StandInHub:
    """A hub in this process, on the simulator's air, for device-side tests and benches.

    It hears the device's frames (bleak's public API over bumble, passive scan) and, when
    `auto_ack` is set, answers each new event counter once with kind 1 (heard), and with
    kind 2 (delivered) `deliver_after_s` later if that is not None. `deaf_s` leaves a counter
    unanswered until that long after it was first heard (a lost acknowledgement, as the
    device sees it: its first burst goes unanswered).
    `write(kind, counter)` writes any ack; `owed` acks are written the next time the device
    is heard, as the real hub writes what it owes.
    """

    air: Any
    key: bytes
    mac: str
    auto_ack: bool = True
    deliver_after_s: float | None = None
    deaf_s: float = 0.0
    frames: list[Frame] = field(default_factory=list)
    written: list[tuple[float, int, int, bool]] = field(default_factory=list)  # (t, kind, counter, ok)
    owed: list[tuple[int, int]] = field(default_factory=list)
    ack_number: int = 0  # the last ack number sealed (SPEC 1.7: each ack under a new one)
    sealed: list[bytes] = field(default_factory=list)  # every ack sealed, in order

    def __post_init__(self) -> None:
        self._acked: set[tuple[int, int]] = set()
        self._first_heard: dict[int, float] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._ble_device: Any = None
        self._lock = asyncio.Lock()
        self._heard = asyncio.Condition()
        self._stack = contextlib.AsyncExitStack()
        self._controller: Any = None

    async def __aenter__(self) -> StandInHub:
        from bleak import BleakScanner
        from bumble.device import Device
        from bumble.host import Host
        from bumble.transport.common import AsyncPipeSink

        from safebox.tools.sim.bleak_backend import BumbleScanner, use_device

        self._controller = self.air.plug_hub("stand-in-hub")
        device = Device(host=Host(self._controller, AsyncPipeSink(self._controller)))
        await self._stack.enter_async_context(use_device(device))
        scanner = BleakScanner(self._seen, scanning_mode="passive", backend=BumbleScanner)
        await self._stack.enter_async_context(scanner)
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self._stack.aclose()
        if self._controller is not None:
            self.air.unplug(self._controller)

    def _seen(self, device: Any, adv: Any) -> None:
        data = adv.service_data.get(bthome.SERVICE_UUID)
        if device.address.upper() != self.mac.upper() or data is None:
            return
        self._ble_device = device
        try:
            info, counter, objects = bthome.unseal(self.key, bthome.mac_bytes(self.mac), data)
        except bthome.FrameError:
            return
        event = bool(info & bthome.INFO_EVENT)
        self.frames.append(Frame(time.monotonic(), counter, event, objects, bytes(data)))
        self._spawn(self._notify())
        if self.owed:
            owed, self.owed = self.owed, []
            for kind, c in owed:
                self._spawn(self.write(kind, c))
        if not (event and self.auto_ack) or (1, counter) in self._acked:
            return
        first = self._first_heard.setdefault(counter, time.monotonic())
        if time.monotonic() - first < self.deaf_s:
            return
        self._acked.add((1, counter))
        self._spawn(self._ack(counter))

    async def _ack(self, counter: int) -> None:
        if not await self.write(bthome.ACK_HEARD, counter):
            self._acked.discard((1, counter))  # not written: answer the next repeat
            return
        if self.deliver_after_s is not None:
            await asyncio.sleep(self.deliver_after_s)
            await self.write(bthome.ACK_DELIVERED, counter)

    def _spawn(self, coro: Any) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _notify(self) -> None:
        async with self._heard:
            self._heard.notify_all()

    def seal(self, kind: int, counter: int, key: bytes | None = None) -> bytes:
        """An ack under the next ack number (a hub never seals two under one, SPEC 1.7); kept in `sealed`."""
        self.ack_number += 1
        data = bthome.seal_ack(key or self.key, bthome.mac_bytes(self.mac), kind, counter, int(time.time()),
                               self.ack_number)
        self.sealed.append(data)
        return data

    async def write(self, kind: int, counter: int, *, data: bytes | None = None, timeout: float = 5.0) -> bool:
        """Connect, write one ack (or `data`), disconnect; True when the write was answered."""
        from bleak import BleakClient
        from bleak.exc import BleakError

        from safebox.tools.sim.bleak_backend import BumbleClient

        if data is None:
            data = self.seal(kind, counter)
        ok = False
        async with self._lock:
            if self._ble_device is not None:
                try:
                    async with BleakClient(self._ble_device, backend=BumbleClient, timeout=timeout) as client:
                        await client.write_gatt_char(ACK_CHAR, data, response=True)
                    ok = True
                except (BleakError, TimeoutError, OSError, asyncio.TimeoutError):
                    ok = False
        self.written.append((time.monotonic(), kind, counter, ok))
        return ok

    async def hold(self, seconds: float, writes: list[bytes] = (), *, timeout: float = 5.0) -> tuple[float, bool]:  # type: ignore[assignment]
        """A rogue central: connect, write each of `writes`, then stay connected up to `seconds`.
        Returns (seconds it stayed connected, True when the device dropped it)."""
        from bleak import BleakClient
        from bleak.exc import BleakError

        from safebox.tools.sim.bleak_backend import BumbleClient

        dropped = asyncio.Event()
        async with self._lock:
            if self._ble_device is None:
                raise RuntimeError("nothing heard from the device yet")
            client = BleakClient(self._ble_device, backend=BumbleClient, timeout=timeout,
                                 disconnected_callback=lambda _c: dropped.set())
            await client.connect()
            start = time.monotonic()
            try:
                for data in writes:
                    try:
                        await client.write_gatt_char(ACK_CHAR, data, response=True)
                    except (BleakError, OSError):
                        break  # dropped meanwhile
                with contextlib.suppress(TimeoutError, asyncio.TimeoutError):
                    await asyncio.wait_for(dropped.wait(), max(0.0, seconds - (time.monotonic() - start)))
                return time.monotonic() - start, dropped.is_set()
            finally:
                if not dropped.is_set():
                    with contextlib.suppress(BleakError, OSError):
                        await client.disconnect()

    async def wait_frames(self, predicate: Callable[[list[Frame]], bool], timeout: float = 10.0) -> list[Frame]:
        async with asyncio.timeout(timeout), self._heard:
            await self._heard.wait_for(lambda: predicate(self.frames))
        return self.frames

    def event_counters(self) -> list[int]:
        """Distinct event counters heard, in the order first heard."""
        seen: list[int] = []
        for f in self.frames:
            if f.event and f.counter not in seen:
                seen.append(f.counter)
        return seen
